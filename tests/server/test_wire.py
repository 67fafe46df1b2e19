"""The wire contract (``jina_connectors.server.wire``): every error code a route sends reaches
a client as the same typed error, the server's modules name codes only through ``ErrorCode``,
and base64 rows travel bit-exactly."""

from __future__ import annotations

import ast
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import HTTPException
from paths import REPO_ROOT
from server_support import serve_app

from embedder_core import (
    Embedder,
    ModelNotFoundError,
    Reranker,
    RerankInputError,
    TokenLimitError,
    UnsupportedModelError,
    get_reranker,
)
from embedder_core.testing_rerankers import write_tiny_reranker_v2_checkpoint
from jina_connectors.server.app import create_app
from jina_connectors.server.http import guarded_h11_protocol
from jina_connectors.server.wire import (
    ROW_DTYPES,
    AuthenticationError,
    ErrorCode,
    ExtensionUnavailableError,
    ServerError,
    client_error,
    decode_base64_rows,
    encode_base64_rows,
)

KEY = "wire-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
SERVER_DIR = REPO_ROOT / "jina_connectors" / "server"

# What a client raises for each code (``client_error``, as RemoteEmbedder/RemoteReranker do).
EXPECTED: dict[ErrorCode, type[Exception]] = {
    ErrorCode.EMPTY_INPUT: ValueError,
    ErrorCode.TOO_MANY_INPUTS: ValueError,
    ErrorCode.INVALID_INPUT: ValueError,
    ErrorCode.INVALID_TEXT: ValueError,
    ErrorCode.INVALID_TYPE: TypeError,
    ErrorCode.INVALID_VALUE: ValueError,
    ErrorCode.TOKEN_LIMIT: TokenLimitError,
    ErrorCode.UNSUPPORTED: UnsupportedModelError,
    ErrorCode.TOO_MANY_SPANS: ValueError,
    ErrorCode.INVALID_SPAN: ValueError,
    ErrorCode.INVALID_RERANK_INPUT: RerankInputError,
    ErrorCode.INVALID_HOST: ValueError,
    ErrorCode.INVALID_HTTP: ValueError,
    ErrorCode.INVALID_API_KEY: AuthenticationError,
    ErrorCode.MODEL_NOT_FOUND: ModelNotFoundError,
    ErrorCode.NOT_FOUND: ServerError,
    ErrorCode.METHOD_NOT_ALLOWED: ServerError,
    ErrorCode.HTTP_ERROR: ServerError,
    ErrorCode.REQUEST_TIMEOUT: ServerError,
    ErrorCode.REQUEST_TOO_LARGE: ValueError,
    ErrorCode.INVALID_REQUEST: ValueError,
    ErrorCode.HEADERS_TOO_LARGE: ServerError,
    ErrorCode.QUEUE_FULL: ServerError,
    ErrorCode.INTERNAL_ERROR: ServerError,
    ErrorCode.MODEL_LOADING: ServerError,
    ErrorCode.MODEL_FAILED: ServerError,
    ErrorCode.SHUTTING_DOWN: ServerError,
}


class Answer:
    """An error answer as the client sees it: status, ``error`` object, path asked."""

    def __init__(self, status: int, body: dict[str, Any], path: str) -> None:
        self.status = status
        self.error = body["error"]
        self.path = path

    @property
    def code(self) -> ErrorCode:
        return ErrorCode(self.error["code"])

    def client_error(self, base_url: str) -> Exception:
        return client_error(
            self.status, self.error, self.error["message"], base_url=base_url, path=self.path
        )


def http_answer(response: httpx.Response, path: str) -> Answer:
    assert response.headers["content-type"] == "application/json", response.text
    return Answer(response.status_code, response.json(), path)


def raw_answer(url: str, data: bytes, path: str) -> Answer:
    """Send ``data`` on a raw socket; the JSON answer (the server closes after it)."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return Answer(int(head.split()[1]), json.loads(body), path)


@pytest.fixture(scope="module")
def v2_reranker(tmp_path_factory: pytest.TempPathFactory) -> Reranker:
    model_dir = write_tiny_reranker_v2_checkpoint(tmp_path_factory.mktemp("wire-rr"))
    return get_reranker(str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def cls_embedder(minilm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Embedder:
    """MiniLM pooling its CLS token: a model that refuses late chunking at call time."""
    target = tmp_path_factory.mktemp("minilm-cls")
    for item in minilm_dir.iterdir():
        if item.name != "1_Pooling":
            (target / item.name).symlink_to(item)
    (target / "1_Pooling").mkdir()
    config = json.loads((minilm_dir / "1_Pooling" / "config.json").read_text())
    config.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    (target / "1_Pooling" / "config.json").write_text(json.dumps(config))
    return Embedder.from_pretrained(str(target), device="cpu")


def provoke_main_server(
    tiny_jina_embedder: Embedder, v2_reranker: Reranker
) -> Iterator[tuple[str, Answer]]:
    """(base URL, answer) for every code the serving path of a loaded model can send."""
    app = create_app(
        tiny_jina_embedder,
        api_keys=[KEY],
        max_inputs=4,
        max_spans=4,
        max_request_bytes=256 * 1024,
        allowed_hosts=["127.0.0.1"],
        body_timeout=0.5,
        reranker=v2_reranker,
    )

    @app.get("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("a bug")

    @app.get("/v1/conflict")
    async def conflict() -> None:
        raise HTTPException(status_code=409, detail="conflict")

    options = {"http": guarded_h11_protocol(2.0), "h11_max_incomplete_event_size": 16384}
    with serve_app(app, **options) as url, httpx.Client(base_url=url, timeout=60) as client:

        def post(path: str, body: Any, headers: dict[str, str] = AUTH) -> Answer:
            return http_answer(client.post(path, json=body, headers=headers), path)

        def post_raw(path: str, content: bytes) -> Answer:
            headers = {**AUTH, "Content-Type": "application/json"}
            return http_answer(client.post(path, content=content, headers=headers), path)

        def get(path: str) -> Answer:
            return http_answer(client.get(path, headers=AUTH), path)

        embeddings = "/v1/embeddings"
        spans = "/v1/x/embed-spans"
        yield url, post(embeddings, {"input": []})
        yield url, post(embeddings, {"input": ["a", "b", "c", "d", "e"]})
        yield url, post(embeddings, {"input": [{"words": "a"}]})
        yield url, post_raw(embeddings, b'{"input": ["a\\ud800b"]}')
        yield url, post(embeddings, {"input": [[101, 102], "text"]})
        yield url, post(embeddings, {"input": ["a"], "task": "no-such-task"})
        long_text = " ".join(["word"] * 10000)
        yield url, post(embeddings, {"input": [long_text], "truncate": False})
        yield url, post(spans, {"documents": [{"text": "ab", "spans": [[0, 1], [1, 2], [0, 2]]}]})
        yield url, post(spans, {"documents": [{"text": "abc", "spans": [[2, 1]]}]})
        yield url, post("/v1/rerank", {"query": " ", "documents": ["a"]})
        wrong_host = client.get("/v1/models", headers={**AUTH, "Host": "evil.example"})
        yield url, http_answer(wrong_host, "/v1/models")
        yield url, post(embeddings, {"input": ["a"]}, {})
        yield url, post(embeddings, {"input": ["a"], "model": "another-model"})
        yield url, get("/v1/nothing-here")
        yield url, get("/v1/x/nothing-here")
        yield url, get(embeddings)
        yield url, get("/v1/conflict")
        # A fresh connection: after a 500 uvicorn closes the one it came on.
        broken_answer = httpx.get(url + "/v1/broken", headers=AUTH, timeout=30)
        yield url, http_answer(broken_answer, "/v1/broken")
        yield url, post_raw(embeddings, b'{"input": "' + b"a" * 300 * 1024 + b'"}')
        yield url, post(embeddings, {"inputs": ["a"]})
        big = client.get("/health", headers={"X-Big": "a" * 2**20})
        yield url, http_answer(big, "/health")
        yield url, raw_answer(url, b"NOT HTTP AT ALL\r\n\r\n", "/")
        slow_body = (
            b"POST /v1/embeddings HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            + KEY.encode()
            + b'\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"input": '
        )
        yield url, raw_answer(url, slow_body, embeddings)


def provoke_lifecycle() -> Iterator[tuple[str, Answer]]:
    """model_loading, model_failed, shutting_down: a model loader the test controls."""
    release = threading.Event()

    def load() -> Embedder:
        release.wait(30)
        raise RuntimeError("no model today")

    app = create_app(load)
    with serve_app(app) as url:
        yield url, http_answer(httpx.get(url + "/health", timeout=30), "/health")
        release.set()
        deadline = time.monotonic() + 30
        while app.state.server.load_error is None and time.monotonic() < deadline:
            time.sleep(0.01)
        yield url, http_answer(httpx.get(url + "/health", timeout=30), "/health")
        app.state.server.begin_draining()
        yield url, http_answer(httpx.get(url + "/health", timeout=30), "/health")


def provoke_model_rules(cls_embedder: Embedder) -> Iterator[tuple[str, Answer]]:
    """unsupported (late chunking on a CLS model) and queue_full (a held queue)."""
    scheduler = cls_embedder.scheduler
    held, holding = threading.Event(), threading.Event()

    def hold(stats: Any) -> None:
        if not held.is_set():
            holding.set()
            held.wait(30)

    limit = scheduler.max_queued_tokens
    app = create_app(cls_embedder, max_queued_tokens=64)
    scheduler.add_batch_listener(hold)
    text = " ".join(["word"] * 40)
    try:
        with serve_app(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            late = {"input": ["a b", "c d"], "late_chunking": True}
            yield url, http_answer(client.post("/v1/embeddings", json=late), "/v1/embeddings")
            waiting = []
            for _ in range(2):  # one in the held batch, one queued behind it
                sender = threading.Thread(
                    target=httpx.post,
                    args=(url + "/v1/embeddings",),
                    kwargs={"json": {"input": [text]}, "timeout": 60},
                )
                sender.start()
                waiting.append(sender)
                holding.wait(30)
                time.sleep(0.2)
            refused = client.post("/v1/embeddings", json={"input": [text]})
            held.set()
            for sender in waiting:
                sender.join(60)
            yield url, http_answer(refused, "/v1/embeddings")
    finally:
        held.set()
        scheduler.remove_batch_listener(hold)
        scheduler.max_queued_tokens = limit


def test_every_error_code_reaches_the_client_as_its_typed_error(
    tiny_jina_embedder: Embedder, v2_reranker: Reranker, cls_embedder: Embedder
) -> None:
    seen: dict[ErrorCode, list[Exception]] = {}
    answers = [
        *provoke_main_server(tiny_jina_embedder, v2_reranker),
        *provoke_lifecycle(),
        *provoke_model_rules(cls_embedder),
    ]
    for url, answer in answers:
        error = answer.client_error(url)
        seen.setdefault(answer.code, []).append(error)
        expected = EXPECTED[answer.code]
        if answer.path.startswith("/v1/x/") and answer.status in (404, 405):
            expected = ExtensionUnavailableError  # a server without our extension routes
        assert type(error) is expected, (answer.code, answer.status, error)
        if isinstance(error, ServerError):
            assert error.code == answer.code and error.status == answer.status
    assert set(seen) == set(ErrorCode), sorted(set(ErrorCode) - set(seen))
    # One code, two client errors by route: a missing extension route says what it needs.
    not_found = {type(error) for error in seen[ErrorCode.NOT_FOUND]}
    assert not_found == {ServerError, ExtensionUnavailableError}


def _server_modules() -> list[Path]:
    return sorted(path for path in SERVER_DIR.rglob("*.py") if path.name != "wire.py")


def test_server_modules_name_error_codes_only_through_error_code() -> None:
    codes = {code.value for code in ErrorCode}
    found = []
    for path in _server_modules():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in codes:
                found.append(f"{path.name}:{node.lineno}: {node.value!r}")
            # ApiError(status, message, code, ...): the code is never a literal.
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "ApiError"
                and len(node.args) >= 3
            ):
                assert not isinstance(node.args[2], ast.Constant), (path.name, node.lineno)
    assert found == []
    assert len(_server_modules()) >= 5  # the check saw the server


@pytest.mark.parametrize("embedding_type", sorted(ROW_DTYPES))
def test_base64_rows_round_trip_bit_exactly(embedding_type: str) -> None:
    dtype = np.dtype(ROW_DTYPES[embedding_type]).newbyteorder("=")
    rng = np.random.default_rng(17)
    if dtype.kind == "f":
        rows = rng.standard_normal((5, 33)).astype(dtype)
        rows[0, :6] = [0.0, -0.0, np.inf, -np.inf, np.finfo(dtype).tiny, np.finfo(dtype).max]
        rows[1, 0] = np.nan
    else:
        info = np.iinfo(dtype)
        rows = rng.integers(info.min, info.max, size=(5, 33), endpoint=True).astype(dtype)
        rows[0, :2] = [info.min, info.max]
    encoded = encode_base64_rows(rows)
    assert all(isinstance(value, str) for value in encoded) and len(encoded) == 5
    decoded = decode_base64_rows(encoded, embedding_type)
    assert decoded.dtype == dtype and decoded.shape == rows.shape
    assert decoded.tobytes() == rows.tobytes()  # bit-exact, NaN and -0.0 included
    # Big-endian input is written little-endian: the same bytes on the wire.
    assert encode_base64_rows(rows.astype(dtype.newbyteorder(">"))) == encoded
    empty = decode_base64_rows([], embedding_type, width=33)
    assert empty.shape == (0, 33) and empty.dtype == dtype


def test_base64_float_rows_are_the_float_answer_bit_exactly(tiny_jina_embedder: Embedder) -> None:
    texts = ["one sentence", "and another, longer one"]
    app = create_app(tiny_jina_embedder)
    with serve_app(app) as url:
        answers = {
            kind: httpx.post(
                url + "/v1/embeddings",
                json={"input": texts, "embedding_type": kind},
                timeout=60,
            ).json()["data"]
            for kind in ("float", "base64")
        }
    floats = np.asarray([item["embedding"] for item in answers["float"]], np.float32)
    decoded = decode_base64_rows([item["embedding"] for item in answers["base64"]])
    local = tiny_jina_embedder.encode(texts)
    assert decoded.tobytes() == local.tobytes()
    np.testing.assert_array_equal(floats, local)
