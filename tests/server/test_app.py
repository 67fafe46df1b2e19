"""The embedding server, for real: uvicorn on loopback, real clients (the official OpenAI SDK,
httpx, raw sockets), real load. Every answer is compared with the in-process ``encode`` of
the same request."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from paths import REPO_ROOT
from server_support import free_port, serve_app

from embedder_core import Embedder
from jina_connectors.server import create_app, server_api_keys

KEY = "test-key-1"

# The launch announcement's request body, as written (the curl -d payload).
LAUNCH_BODY = """{
  "model": "jina-embeddings-v3", "task": "text-matching", "dimensions": 1024, "late_chunking": true,
  "input": ["Organic skincare for sensitive skin with aloe vera and chamomile: ...",
            "Bio-Hautpflege für empfindliche Haut mit Aloe Vera und Kamille: Erleben Sie die wohltuende Wirkung...",
            "Cuidado de la piel orgánico para piel sensible con aloe vera y manzanilla: Descubre el poder ...",
            "针对敏感肌专门设计的天然有机护肤产品:体验由芦荟和洋甘菊提取物带来的自然呵护。我们的护肤产品特别为敏感肌设计,...",
            "新しいメイクのトレンドは鮮やかな色と革新的な技術に焦点を当てています: 今シーズンのメイクアップトレンドは、大胆な色彩と革新的な技術に注目しています。..."]}"""  # noqa: E501

WORDS = tuple(
    "the river carries light over stones while children count the boats and a dog "  # noqa: SIM905
    "sleeps near the warm wall of an old house in the quiet town by the sea".split()
)


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a64.shape == b64.shape, (a64.shape, b64.shape)
    dots = (a64 * b64).sum(axis=1)
    return float((dots / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))).min())


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)) + "."


def decode_rows(data: list[dict[str, Any]], embedding_type: str) -> np.ndarray:
    rows = [item["embedding"] for item in sorted(data, key=lambda item: item["index"])]
    if embedding_type == "base64":
        return np.stack([np.frombuffer(base64.b64decode(row), "<f4") for row in rows])
    return np.asarray(rows)


@pytest.fixture(scope="module")
def open_server(tiny_jina_embedder: Embedder) -> Iterator[str]:
    """The session's tiny jina-v3 embedder, served without keys."""
    with serve_app(create_app(tiny_jina_embedder)) as url:
        yield url


@pytest.fixture(scope="module")
def keyed_server(tiny_jina_embedder: Embedder) -> Iterator[str]:
    with serve_app(create_app(tiny_jina_embedder, api_keys=[KEY, "another-key"])) as url:
        yield url


@pytest.fixture(scope="module")
def wide_jina_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A jina-v3-format checkpoint 1024 wide (as the real one), so ``dimensions: 1024``
    is valid; still tiny otherwise (2 layers, 128 usable tokens)."""
    from embedder_core.testing import write_tiny_jina_checkpoint

    return write_tiny_jina_checkpoint(
        tmp_path_factory.mktemp("wide-jina-v3"), hidden_size=1024, intermediate_size=256
    )


# ------------------------------------------------------------------- real clients
def test_openai_sdk_float_and_base64_equal_in_process_encode(
    keyed_server: str, tiny_jina_embedder: Embedder
) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=keyed_server + "/v1", api_key=KEY, max_retries=0)
    texts = [sentence(random.Random(i), 5 + 7 * i) for i in range(6)]
    expected = tiny_jina_embedder.encode(texts)
    for encoding_format in ("float", "base64"):
        answer = client.embeddings.create(
            model="jina-embeddings-v3", input=texts, encoding_format=encoding_format
        )
        if encoding_format == "float":
            rows = np.asarray([item.embedding for item in answer.data])
        else:  # the SDK returns base64 as the server sent it
            rows = np.stack(
                [np.frombuffer(base64.b64decode(item.embedding), "<f4") for item in answer.data]
            )
        assert [item.index for item in answer.data] == list(range(len(texts)))
        assert min_cosine(rows, expected) >= 0.99999
        assert answer.usage.total_tokens == sum(tiny_jina_embedder.count_tokens(texts))
    # The SDK's default asks for base64 and decodes it to floats itself.
    default = client.embeddings.create(model="jina-embeddings-v3", input=texts[0], dimensions=16)
    assert (
        min_cosine(
            np.asarray([default.data[0].embedding]),
            tiny_jina_embedder.encode(texts[0], dimensions=16),
        )
        >= 0.99999
    )


def test_openai_sdk_reads_our_errors(keyed_server: str) -> None:
    import openai

    client = openai.OpenAI(base_url=keyed_server + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="missing or invalid API key"):
        client.embeddings.create(model="jina-embeddings-v3", input="hello")
    client = openai.OpenAI(base_url=keyed_server + "/v1", api_key=KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError, match="'text-embedding-3-small' is not served"):
        client.embeddings.create(model="text-embedding-3-small", input="hello")
    with pytest.raises(openai.BadRequestError, match="dimensions must be between 1 and 32"):
        client.embeddings.create(model="jina-embeddings-v3", input="hello", dimensions=64)


def test_launch_announcement_request_as_written(wide_jina_dir: Path) -> None:
    embedder = Embedder.from_pretrained(str(wide_jina_dir), device="cpu")
    with serve_app(create_app(embedder, api_keys=[KEY])) as url:
        response = httpx.post(
            url + "/v1/embeddings",
            content=LAUNCH_BODY.encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"},
            timeout=60,
        )
    assert response.status_code == 200, response.text
    answer = response.json()
    request = json.loads(LAUNCH_BODY)
    assert answer["object"] == "list" and answer["model"] == "jina-embeddings-v3"
    assert [item["object"] for item in answer["data"]] == ["embedding"] * 5
    rows = decode_rows(answer["data"], "float")
    assert rows.shape == (5, 1024)
    expected = embedder.encode(
        request["input"], task="text-matching", dimensions=1024, late_chunking=True
    )
    assert min_cosine(rows, expected) >= 0.99999
    # Late chunking: the pieces are one document, more than one window of this model.
    assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"] > 128


def test_both_request_shapes_and_every_output_type(
    open_server: str, tiny_jina_embedder: Embedder
) -> None:
    texts = ["a first short text.", "and a second, somewhat longer text about boats."]
    with httpx.Client(base_url=open_server, timeout=30) as client:
        objects = client.post(
            "/v1/embeddings",
            json={"input": [{"text": t} for t in texts], "task": "retrieval.passage"},
        )
        assert objects.status_code == 200
        assert (
            min_cosine(
                decode_rows(objects.json()["data"], "float"),
                tiny_jina_embedder.encode(texts, task="retrieval.passage"),
            )
            >= 0.99999
        )
        for embedding_type in ("float", "base64", "binary", "ubinary", "int8", "uint8"):
            response = client.post(
                "/v1/embeddings",
                json={
                    "input": texts,
                    "task": "separation",
                    "dimensions": 24,
                    "embedding_type": embedding_type,
                    "normalized": False,
                },
            )
            assert response.status_code == 200, response.text
            expected = tiny_jina_embedder.encode(
                texts,
                task="separation",
                dimensions=24,
                embedding_type=embedding_type,
                normalized=False,
            )
            rows = decode_rows(response.json()["data"], embedding_type)
            if embedding_type == "base64":  # exactly the core's float32 bytes
                assert [item["embedding"] for item in response.json()["data"]] == expected
            elif embedding_type == "float":
                assert min_cosine(rows, expected) >= 0.99999
                assert np.allclose(np.linalg.norm(rows, axis=1), np.linalg.norm(expected, axis=1))
            else:  # integers: exactly the core's
                assert np.array_equal(rows, expected)
        openai_shape = client.post(
            "/v1/embeddings", json={"input": texts[0], "encoding_format": "base64", "user": "u1"}
        )
        assert openai_shape.status_code == 200
        assert (
            min_cosine(
                decode_rows(openai_shape.json()["data"], "base64"),
                tiny_jina_embedder.encode(texts[0]),
            )
            >= 0.99999
        )


# ---------------------------------------------------------------------------- errors
ERRORS = [
    # (request body, status, code, a fragment of the message)
    ({"input": []}, 400, "empty_input", "input is empty"),
    ({"input": ""}, 400, "invalid_value", "input 0 is empty or whitespace-only"),
    ({"input": ["ok", 3]}, 400, "invalid_type", "input 1 is int, not str"),
    ({"input": [{"image": "x.png"}]}, 400, "invalid_input", "input[0] has fields ['image']"),
    ({"input": "x", "task": "summarize"}, 400, "invalid_value", "unknown task 'summarize'"),
    ({"input": "x", "dimensions": 0}, 400, "invalid_value", "dimensions must be between 1 and 32"),
    ({"input": "x", "dimensions": 33}, 400, "invalid_value", "dimensions must be between 1 and 32"),
    ({"input": "x", "dimensions": "8"}, 422, "invalid_request", "dimensions: Input should be"),
    ({"input": ["x"] * 9}, 400, "too_many_inputs", "9 items, over this server's limit of 8"),
    ({"input": "x " * 300}, 400, "token_limit", "over the model's limit of 128"),
    ({"input": "x", "embedding_type": "int4"}, 422, "invalid_request", "embedding_type"),
    (
        {"input": "x", "embedding_type": "int8", "encoding_format": "base64"},
        400,
        "invalid_value",
        "disagree",
    ),
    ({"input": "x", "dimension": 8}, 422, "invalid_request", "dimension: Extra inputs"),
    ({"model": "jina-embeddings-v3"}, 422, "invalid_request", "input: Field required"),
    ({"input": "x", "model": "gpt-4"}, 404, "model_not_found", "'gpt-4' is not served here"),
    (
        {"input": "x", "late_chunking_options": {"overlap": -1}},
        400,
        "invalid_value",
        "overlap must be at least 0",
    ),
]


@pytest.fixture(scope="module")
def strict_server(tiny_jina_embedder: Embedder) -> Iterator[str]:
    app = create_app(tiny_jina_embedder, max_inputs=8, max_request_bytes=4096)
    with serve_app(app) as url:
        yield url


@pytest.mark.parametrize(("body", "status", "code", "fragment"), ERRORS)
def test_bad_requests_get_json_errors_with_status_and_message(
    strict_server: str, body: dict[str, Any], status: int, code: str, fragment: str
) -> None:
    response = httpx.post(strict_server + "/v1/embeddings", json=body, timeout=30)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["detail"] == answer["error"]["message"]
    assert fragment in answer["detail"]
    assert answer["error"]["code"] == code
    assert answer["error"]["type"] == "invalid_request_error" or status == 404
    assert "Traceback" not in response.text


def test_transport_errors_are_json_too(strict_server: str) -> None:
    with httpx.Client(base_url=strict_server, timeout=30) as client:
        malformed = client.post(
            "/v1/embeddings",
            content=b'{"input": ["x"',
            headers={"Content-Type": "application/json"},
        )
        assert malformed.status_code == 422 and "JSON" in malformed.json()["detail"]
        too_large = client.post("/v1/embeddings", json={"input": ["word " * 1000]})
        assert too_large.status_code == 413
        assert too_large.json()["error"]["code"] == "request_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: the streamed body is counted
            yield b'{"input": ["'
            for _ in range(10):
                yield b"word " * 100
            yield b'"]}'

        streamed = client.post(
            "/v1/embeddings", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413
        assert "over the limit of 4096 bytes" in streamed.json()["detail"]
        missing = client.get("/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        wrong_method = client.get("/v1/embeddings")
        assert wrong_method.status_code == 405
        assert wrong_method.json()["error"]["code"] == "method_not_allowed"


def test_a_bug_is_a_json_500_without_traceback(tiny_jina_embedder: Embedder) -> None:
    app = create_app(tiny_jina_embedder)

    @app.get("/v1/broken")
    async def broken() -> None:
        raise RuntimeError("secret internals")

    with serve_app(app) as url:
        response = httpx.get(url + "/v1/broken", timeout=30)
    assert response.status_code == 500
    assert response.json()["error"] == {
        "message": "internal server error (RuntimeError); see the server log",
        "type": "server_error",
        "code": "internal_error",
        "param": None,
    }
    assert "secret internals" not in response.text and "Traceback" not in response.text


# ------------------------------------------------------------------------------ auth
def test_auth_on(keyed_server: str) -> None:
    body = {"input": "hello"}
    with httpx.Client(base_url=keyed_server, timeout=30) as client:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
            response = client.post("/v1/embeddings", json=body, headers=headers)
            assert response.status_code == 401
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert response.json()["error"]["type"] == "authentication_error"
            assert client.get("/v1/models", headers=headers).status_code == 401
            assert client.get("/metrics", headers=headers).status_code == 401
        for key in (KEY, "another-key"):
            ok = client.post(
                "/v1/embeddings", json=body, headers={"Authorization": f"Bearer {key}"}
            )
            assert ok.status_code == 200
        # Probes and the docs need no key.
        assert client.get("/health").status_code == 200
        assert client.get("/docs").status_code == 200
        assert "/v1/embeddings" in client.get("/openapi.json").json()["paths"]


def test_auth_off(open_server: str) -> None:
    response = httpx.post(open_server + "/v1/embeddings", json={"input": "hello"}, timeout=30)
    assert response.status_code == 200
    anything = httpx.post(
        open_server + "/v1/embeddings",
        json={"input": "hello"},
        headers={"Authorization": "Bearer whatever"},
        timeout=30,
    )
    assert anything.status_code == 200


def test_api_keys_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JINA_CONNECTORS_API_KEYS", " k2 , k3,,k1")
    assert server_api_keys(["k1"]) == ["k1", "k2", "k3"]
    monkeypatch.delenv("JINA_CONNECTORS_API_KEYS")
    assert server_api_keys() == []


# --------------------------------------------------------- models, health, metrics
def test_models_and_model_names(open_server: str, tiny_jina_dir: Path) -> None:
    with httpx.Client(base_url=open_server, timeout=30) as client:
        listed = client.get("/v1/models").json()["data"]
        assert [entry["id"] for entry in listed] == [tiny_jina_dir.name]
        # The directory is accepted as a name but never shown (see test_server_limits.py).
        assert listed[0]["aliases"] == ["jina-embeddings-v3"]
        for name in (tiny_jina_dir.name, "jina-embeddings-v3", str(tiny_jina_dir), None):
            body = {"input": "x"} if name is None else {"input": "x", "model": name}
            response = client.post("/v1/embeddings", json=body)
            assert response.status_code == 200
            assert response.json()["model"] == (name or tiny_jina_dir.name)


def test_minilm_is_not_called_jina_embeddings_v3(minilm_dir: Path) -> None:
    from embedder_core import get_embedder

    embedder = get_embedder(str(minilm_dir))  # the session's shared instance, if loaded
    with serve_app(create_app(embedder, served_model_name="minilm")) as url:
        response = httpx.post(
            url + "/v1/embeddings", json={"input": "x", "model": "jina-embeddings-v3"}
        )
        assert response.status_code == 404
        assert "serves 'minilm'" in response.json()["detail"]
        assert httpx.post(url + "/v1/embeddings", json={"input": "x", "model": "minilm"}).is_success


def test_health_is_503_until_the_model_is_loaded(tiny_jina_dir: Path) -> None:
    release = threading.Event()

    def load() -> Embedder:
        release.wait(30)
        return Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")

    with serve_app(create_app(load)) as url, httpx.Client(base_url=url, timeout=30) as client:
        loading = client.get("/health")
        assert loading.status_code == 503
        assert loading.json()["error"]["code"] == "model_loading"
        early = client.post("/v1/embeddings", json={"input": "x"})
        assert early.status_code == 503 and "Retry-After" in early.headers
        assert client.get("/v1/models").status_code == 503
        release.set()
        deadline = time.monotonic() + 30
        while client.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.post("/v1/embeddings", json={"input": "x"}).status_code == 200


def test_requests_during_shutdown_get_503(tiny_jina_embedder: Embedder) -> None:
    app = create_app(tiny_jina_embedder)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.post("/v1/embeddings", json={"input": "x"}).status_code == 200
        app.state.server.begin_draining()  # what SIGTERM does first
        late = client.post("/v1/embeddings", json={"input": "x"})
        assert late.status_code == 503 and late.json()["error"]["code"] == "shutting_down"
        assert client.get("/health").status_code == 503


def test_failed_load_keeps_answering_503_and_reports_it() -> None:
    errors: list[BaseException] = []

    def load() -> Embedder:
        raise OSError("disk on fire")

    app = create_app(load, on_load_error=errors.append)
    with serve_app(app) as url:
        deadline = time.monotonic() + 10
        while not errors:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        health = httpx.get(url + "/health")
    assert health.status_code == 503
    assert "disk on fire" in health.json()["detail"]
    assert isinstance(errors[0], OSError)


def test_metrics(tiny_jina_embedder: Embedder) -> None:
    app = create_app(tiny_jina_embedder)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        texts = ["one text.", "two texts here."]
        assert client.post("/v1/embeddings", json={"input": texts}).status_code == 200
        assert client.post("/v1/embeddings", json={"input": []}).status_code == 400
        page = client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    metrics = _parse_metrics(page.text)
    assert metrics['jina_connectors_requests_total{route="/v1/embeddings",status="200"}'] == 1
    assert metrics['jina_connectors_requests_total{route="/v1/embeddings",status="400"}'] == 1
    assert metrics["jina_connectors_tokens_total"] == sum(tiny_jina_embedder.count_tokens(texts))
    assert metrics["jina_connectors_inputs_total"] == 2
    assert metrics["jina_connectors_batch_tokens_count"] >= 1
    assert metrics["jina_connectors_batch_sequences_sum"] >= 2
    assert metrics["jina_connectors_queued_tokens"] == 0
    assert metrics["jina_connectors_queued_requests"] == 0
    assert metrics['jina_connectors_request_duration_seconds_count{route="/v1/embeddings"}'] == 2
    assert metrics["jina_connectors_model_loaded"] == 1


def _parse_metrics(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


# -------------------------------------------------------------------------- load
def test_64_concurrent_clients_get_their_own_results(
    open_server: str, tiny_jina_embedder: Embedder
) -> None:
    rng = random.Random(64)
    tasks = [*tiny_jina_embedder.tasks, None]
    requests = []
    for _ in range(64):
        count = rng.randint(1, 6)
        truncate = rng.random() < 0.5  # past 35 words, an input may pass the 128-token limit
        body: dict[str, Any] = {
            "input": [sentence(rng, rng.randint(1, 60 if truncate else 35)) for _ in range(count)],
            "dimensions": rng.choice([None, 8, 16, 32]),
            "embedding_type": rng.choice(["float", "base64"]),
            "late_chunking": rng.random() < 0.2,
            "truncate": truncate,
        }
        task = rng.choice(tasks)
        if task is not None:
            body["task"] = task
        requests.append(body)

    async def one(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
        return await client.post("/v1/embeddings", json=body)

    async def all_at_once() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=64)
        async with httpx.AsyncClient(base_url=open_server, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(one(client, body) for body in requests))

    responses = asyncio.run(all_at_once())
    for body, response in zip(requests, responses, strict=True):
        assert response.status_code == 200, response.text
        expected = tiny_jina_embedder.encode(
            body["input"],
            task=body.get("task"),
            dimensions=body["dimensions"],
            late_chunking=body["late_chunking"],
            truncate=body["truncate"],
        )
        rows = decode_rows(response.json()["data"], body["embedding_type"])
        assert min_cosine(rows, expected) >= 0.99999


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_overload_gives_429_and_every_accepted_request_completes(tiny_jina_dir: Path) -> None:
    # A model of its own: the queue limit is set on its scheduler. Each batch is slowed
    # down, so a flood of requests really queues.
    embedder = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu", max_batch_tokens=256)
    embedder.scheduler.add_batch_listener(lambda stats: time.sleep(0.01))
    rng = random.Random(429)
    bodies = [{"input": [sentence(rng, 30) for _ in range(4)]} for _ in range(48)]
    limit = 600  # a few requests' worth of tokens

    async def flood(url: str) -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=48)
        async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
            return await asyncio.gather(*(client.post("/v1/embeddings", json=b) for b in bodies))

    app = create_app(embedder, max_queued_tokens=limit)
    resident = []
    with serve_app(app) as url:
        for _ in range(3):
            responses = asyncio.run(flood(url))
            resident.append(_resident_bytes())
            statuses = [r.status_code for r in responses]
            assert set(statuses) == {200, 429}, statuses
            for body, response in zip(bodies, responses, strict=True):
                if response.status_code == 429:
                    assert response.json()["error"]["code"] == "queue_full"
                    assert 1 <= int(response.headers["Retry-After"]) <= 60
                    continue
                rows = decode_rows(response.json()["data"], "float")
                assert min_cosine(rows, embedder.encode(body["input"])) >= 0.99999
            assert embedder.scheduler.queued_tokens == 0
    # Refused requests leave nothing behind: memory does not grow round after round.
    assert resident[2] - resident[0] < 64 * 2**20, resident


def test_a_client_that_disconnects_leaves_no_work_queued(tiny_jina_dir: Path) -> None:
    embedder = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")
    running = threading.Event()
    release = threading.Event()
    computed: list[int] = []

    def hold_first_batch(stats: Any) -> None:  # runs on the worker, after each batch
        computed.append(stats.tokens)
        running.set()
        release.wait(30)

    embedder.scheduler.add_batch_listener(hold_first_batch)
    app = create_app(embedder)
    with serve_app(app) as url:
        port = int(url.rsplit(":", 1)[1])
        first = threading.Thread(
            target=httpx.post, args=(url + "/v1/embeddings",), kwargs={"json": {"input": "a"}}
        )
        first.start()
        assert running.wait(30)  # the worker is busy with the first request
        leaving = socket.create_connection(("127.0.0.1", port))
        body = json.dumps({"input": [sentence(random.Random(1), 50)] * 20}).encode()
        leaving.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.monotonic() + 30
        while embedder.scheduler.queued_requests < 2:  # the second request is queued
            assert time.monotonic() < deadline
            time.sleep(0.01)
        queued = embedder.scheduler.queued_tokens
        leaving.close()  # the client goes away
        while embedder.scheduler.queued_requests > 1:
            assert time.monotonic() < deadline, "the departed client's work is still queued"
            time.sleep(0.01)
        assert embedder.scheduler.queued_tokens < queued
        release.set()
        first.join(30)
        metrics = _parse_metrics(httpx.get(url + "/metrics").text)
    # Only the first request's batch ever ran: the departed client's work never did.
    assert len(computed) == 1
    assert metrics["jina_connectors_cancelled_requests_total"] == 1
    assert metrics['jina_connectors_requests_total{route="/v1/embeddings",status="499"}'] == 1


# -------------------------------------------------------------------- shutdown
def test_sigterm_under_load_finishes_accepted_requests(
    tiny_jina_dir: Path, tiny_jina_embedder: Embedder, tmp_path: Path
) -> None:
    port = free_port()
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "JINA_CONNECTORS_API_KEYS": KEY}
    command = [sys.executable, "-m", "jina_connectors.cli", "serve", "--model", str(tiny_jina_dir)]
    command += ["--port", str(port), "--device", "cpu", "--max-batch-tokens", "64"]
    log_file = tmp_path / "server.log"  # a file, not a pipe: nothing can block the server
    log_out = log_file.open("w")
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stderr=log_out, stdout=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log_file.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rng = random.Random(15)
        # One sequence per forward (64-token batches): each request takes many batches.
        bodies = [{"input": [sentence(rng, 30) for _ in range(200)]} for _ in range(6)]
        results: list[httpx.Response | BaseException] = [None] * len(bodies)  # type: ignore[list-item]

        def post(i: int) -> None:
            try:
                results[i] = httpx.post(
                    url + "/v1/embeddings", json=bodies[i], headers=headers, timeout=60
                )
            except BaseException as error:
                results[i] = error

        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        while True:  # every request accepted and queued
            text = httpx.get(url + "/metrics", headers=headers, timeout=5).text
            if _parse_metrics(text)["jina_connectors_queued_requests"] >= len(bodies):
                break
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(60)
        # After shutdown, nothing is accepted any more and the process is gone.
        process.wait(30)
        with pytest.raises(httpx.TransportError):
            httpx.get(url + "/health", timeout=2)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log_out.close()
    log = log_file.read_text()
    for body, response in zip(bodies, results, strict=True):
        assert isinstance(response, httpx.Response), (response, log[-2000:])
        assert response.status_code == 200, response.text
        rows = decode_rows(response.json()["data"], "float")
        assert min_cosine(rows, tiny_jina_embedder.encode(body["input"])) >= 0.99999
    assert process.returncode in (0, -signal.SIGTERM), log[-2000:]
    assert re.search(r"Shutting down", log), log[-2000:]


def test_serve_refuses_a_bad_model_before_opening_a_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jina_connectors.cli import main

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert main(["serve", "--model", str(tmp_path / "missing"), "--port", "0"]) == 1
    error = capsys.readouterr().err
    assert "is not a directory" in error and "--model" in error
    # The server's OpenMP threads sleep when idle (unless the user chose otherwise).
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert main(["serve", "--model", str(tmp_path / "missing"), "--port", "0"]) == 1
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    capsys.readouterr()
    assert main(["serve", "--model", "http://127.0.0.1:9", "--port", "0"]) == 1
    assert "is a server URL" in capsys.readouterr().err


def test_serve_stops_with_exit_code_1_when_the_model_fails_to_load(
    tiny_jina_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jina_connectors.cli import main

    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "tokenizer.json"):  # a model directory without weights
        (broken / name).write_bytes((tiny_jina_dir / name).read_bytes())
    started = time.monotonic()
    assert main(["serve", "--model", str(broken), "--port", "0", "--log-level", "critical"]) == 1
    assert "the model failed to load" in capsys.readouterr().err
    assert time.monotonic() - started < 60
