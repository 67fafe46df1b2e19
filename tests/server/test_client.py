"""RemoteEmbedder against a real server: the same vectors, spans and errors as the model in
this process, through the Embedder API, ``get_embedder("http://...")``, every adapter, the
ingestion pipeline, the sinks' search and the CLI."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from paths import REPO_ROOT
from server_support import free_port, serve_app

import embedder_core
import embedder_core.loading
import embedder_core.registry
import jina_connectors.server.client
from embedder_core import (
    Embedder,
    EmbedderProtocol,
    LateChunkingOptions,
    ModelInfo,
    ModelNotFoundError,
    TokenLimitError,
    canonical_model_id,
    get_embedder,
    inspect_model,
)
from jina_connectors.server import create_app
from jina_connectors.server.client import (
    AuthenticationError,
    ExtensionUnavailableError,
    RemoteEmbedder,
    ServerError,
)
from jina_connectors.server.wire import decode_base64_rows

tomllib = pytest.importorskip("tomllib")

PYPROJECT = REPO_ROOT / "pyproject.toml"
TEXT = (
    "The committee met on Monday to review the harbour project. "
    "Engineers reported that the new sea wall had passed its first winter without damage. "
    "The budget, however, had grown by a third since the plans were approved. "
    "Local fishermen asked for a second landing stage on the northern side. "
    "Meanwhile the school board discussed the shortage of science teachers. "
    "Two retired chemists offered to teach evening classes for free."
)
SHORT = ["a harbour wall.", "science teachers wanted", "the budget grew by a third"]


def min_cosine(a: Any, b: Any) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a64.shape == b64.shape, (a64.shape, b64.shape)
    dots = (a64 * b64).sum(axis=1)
    return float((dots / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))).min())


def declared_backends() -> list[EntryPoint]:
    """The ``embedder_core.backends`` entry points pyproject.toml declares."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    table = project["entry-points"][embedder_core.loading.BACKENDS_GROUP]
    group = embedder_core.loading.BACKENDS_GROUP
    return [EntryPoint(name, value, group) for name, value in table.items()]


@pytest.fixture
def installed_backends(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Entry point discovery sees what pyproject.toml declares, as after ``pip install``
    (the test environment's install metadata may predate the declaration)."""
    entries = declared_backends()
    monkeypatch.setattr(
        embedder_core.loading,
        "entry_points",
        lambda group: [entry for entry in entries if entry.group == group],
    )
    yield
    for remote in embedder_core.registry._URL_CACHE.values():
        remote.close()
    embedder_core.registry._URL_CACHE.clear()


@pytest.fixture(scope="module")
def server(tiny_jina_embedder: Embedder) -> Iterator[str]:
    # The model's folder as its id, so remote and local collections match (docs/guide/server.md).
    with serve_app(create_app(tiny_jina_embedder, expose_model_path=True)) as url:
        yield url


@pytest.fixture
def remote(server: str) -> Iterator[RemoteEmbedder]:
    with RemoteEmbedder(server) as embedder:
        yield embedder


# ----------------------------------------------------------------- discovery
def test_pyproject_declares_the_remote_backend_for_http_and_https() -> None:
    entries = {entry.name: entry for entry in declared_backends()}
    assert set(entries) == {"http", "https"}
    for entry in entries.values():
        assert entry.load() is RemoteEmbedder


def test_url_model_references(monkeypatch: pytest.MonkeyPatch) -> None:
    assert canonical_model_id("HTTP://LocalHost:8080/") == "http://localhost:8080"
    assert canonical_model_id("https://example.com/api/") == "https://example.com/api"
    with pytest.raises(ValueError, match="applies to Hub ids"):
        canonical_model_id("http://localhost:8080", revision="main")
    with pytest.raises(ValueError, match="no scheme or host"):
        canonical_model_id("http://")
    with pytest.raises(ModelNotFoundError, match=r"get_embedder\(url\)"):
        Embedder.from_pretrained("http://localhost:8080")
    monkeypatch.setattr(embedder_core.loading, "entry_points", lambda group: [])
    with pytest.raises(ModelNotFoundError, match=r"jina-connectors\[remote\]"):
        get_embedder("http://localhost:8080")


def test_the_core_imports_no_web_package() -> None:
    code = (
        "import sys, embedder_core\n"
        "embedder_core.canonical_model_id('http://127.0.0.1:8080')\n"
        "web = ('fastapi', 'starlette', 'uvicorn', 'httpx', 'tenacity', 'jina_connectors')\n"
        "print([name for name in web if name in sys.modules])\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PYPROJECT.parent)}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_get_embedder_returns_one_remote_embedder_per_url(
    installed_backends: None, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = get_embedder(server)
    assert isinstance(remote, RemoteEmbedder)
    assert get_embedder(server + "/") is remote
    assert get_embedder(server, device=None, dtype=None) is remote  # as the adapters call it
    monkeypatch.setenv("JINA_CONNECTORS_MODEL", server)
    assert get_embedder() is remote
    assert get_embedder(server, api_key="other") is not remote
    with pytest.raises(TypeError, match="device"):
        get_embedder(server, device="cpu")


def test_both_backends_implement_the_protocol(
    remote: RemoteEmbedder, tiny_jina_embedder: Embedder
) -> None:
    assert isinstance(remote, EmbedderProtocol)
    assert isinstance(tiny_jina_embedder, EmbedderProtocol)


# ---------------------------------------------------------------------- results
def test_model_description_matches(remote: RemoteEmbedder, tiny_jina_embedder: Embedder) -> None:
    local = tiny_jina_embedder
    assert remote.model_name == local.model_name  # collections match either way
    assert remote.dimension == local.dimension
    assert remote.max_tokens == local.max_tokens
    assert remote.tasks == local.tasks
    assert remote.has_adapters == local.has_adapters
    assert remote.pooling == local.pooling
    assert remote.supports_late_chunking == local.supports_late_chunking
    for task in (*local.tasks, None):
        assert remote.instruction(task) == local.instruction(task)


def test_one_model_description_for_local_served_and_inspected(
    remote: RemoteEmbedder, tiny_jina_embedder: Embedder, tiny_jina_dir: Path
) -> None:
    """``RemoteEmbedder.info``, ``Embedder.info`` and ``inspect_model`` are one ``ModelInfo``."""
    local = tiny_jina_embedder.info
    assert isinstance(remote.info, ModelInfo)
    assert remote.info == local == inspect_model(str(tiny_jina_dir))
    assert remote.info.instructions == local.instructions
    assert remote.info.default_instruction == local.default_instruction
    assert ModelInfo.from_json(local.to_json()) == local
    assert not hasattr(jina_connectors.server.client, "_ModelInfo")


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"task": "retrieval.query"},
        {"task": ["retrieval.query", None, "text-matching"]},
        {"task": "separation", "dimensions": 8, "normalized": False},
        {"task": "text-matching", "late_chunking": True},
        {"late_chunking": True, "late_chunking_options": LateChunkingOptions(window=16, overlap=4)},
        {"embedding_type": "base64", "dimensions": 16},
        {"embedding_type": "binary"},
        {"embedding_type": "ubinary", "dimensions": 12},
        {"embedding_type": "int8"},
        {"embedding_type": "uint8"},
    ],
    ids=lambda options: "-".join(f"{k}={v}" for k, v in options.items()) or "defaults",
)
def test_encode_equals_local(
    remote: RemoteEmbedder, tiny_jina_embedder: Embedder, options: dict[str, Any]
) -> None:
    got = remote.encode(SHORT, **options)
    expected = tiny_jina_embedder.encode(SHORT, **options)
    kind = options.get("embedding_type", "float")
    if kind == "base64":
        assert got == expected
    elif kind == "float":
        assert got.dtype == np.float32 and got.shape == expected.shape
        assert min_cosine(got, expected) >= 0.99999
        assert np.allclose(np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1))
    else:
        assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_base64_from_encode_is_deprecated_and_decodes_to_the_float_rows(
    remote: RemoteEmbedder,
) -> None:
    """encode returns arrays; base64 is the wire's business (one release of warning)."""
    with pytest.warns(DeprecationWarning, match='embedding_type="base64" is deprecated'):
        rows = remote.encode(SHORT, embedding_type="base64")
    assert all(isinstance(row, str) for row in rows)
    np.testing.assert_array_equal(decode_base64_rows(rows), remote.encode(SHORT))


def test_encode_edges_equal_local(remote: RemoteEmbedder, tiny_jina_embedder: Embedder) -> None:
    one = remote.encode("a single string")
    assert one.shape == (1, 32)
    assert min_cosine(one, tiny_jina_embedder.encode("a single string")) >= 0.99999
    long_text = "word " * 400  # past the 128-token limit: cut by default, as locally
    assert min_cosine(remote.encode(long_text), tiny_jina_embedder.encode(long_text)) >= 0.99999
    for kind in ("float", "binary", "base64"):
        empty = remote.encode([], task="retrieval.query", dimensions=9, embedding_type=kind)
        local = tiny_jina_embedder.encode(
            [], task="retrieval.query", dimensions=9, embedding_type=kind
        )
        if kind == "base64":
            assert empty == local == []
        else:
            assert empty.shape == local.shape and empty.dtype == local.dtype


def test_document_calls_equal_local(remote: RemoteEmbedder, tiny_jina_embedder: Embedder) -> None:
    local = tiny_jina_embedder
    texts = [TEXT, "One sentence only."]
    assert remote.count_tokens(texts, task="retrieval.passage") == local.count_tokens(
        texts, task="retrieval.passage"
    )
    assert remote.count_tokens([]) == []
    for chunker in ("sentences", "tokens"):
        assert remote.chunk(texts, chunker=chunker, chunk_size=12) == local.chunk(
            texts, chunker=chunker, chunk_size=12
        )

    def halves(text: str) -> list[tuple[int, int]]:
        return [(0, len(text) // 2), (len(text) // 2, len(text))]

    assert remote.chunk(texts, chunker=halves) == local.chunk(texts, chunker=halves)
    spans = [(TEXT, [(0, 58), (40, 200), (59, len(TEXT))]), ("One sentence only.", [(0, 3)])]
    options = LateChunkingOptions(window=48, overlap=8)  # several windows over TEXT
    for task in ("retrieval.passage", None):
        got = remote.embed_spans(spans, task=task, dimensions=20, late_chunking_options=options)
        expected = local.embed_spans(spans, task=task, dimensions=20, late_chunking_options=options)
        for a, b in zip(got, expected, strict=True):
            assert min_cosine(a, b) >= 0.99999
    got_docs = remote.embed_documents(texts, chunker="sentences", chunk_size=20)
    expected_docs = local.embed_documents(texts, chunker="sentences", chunk_size=20)
    for got_chunks, expected_chunks in zip(got_docs, expected_docs, strict=True):
        assert [(c.text, c.start, c.end) for c in got_chunks] == [
            (c.text, c.start, c.end) for c in expected_chunks
        ]
        assert (
            min_cosine([c.embedding for c in got_chunks], [c.embedding for c in expected_chunks])
            >= 0.99999
        )
    one = remote.embed_document(TEXT, chunk_size=16, task="text-matching")
    assert [c.text for c in one] == [c.text for c in local.embed_document(TEXT, chunk_size=16)]


def test_many_inputs_are_split_within_the_server_limits(tiny_jina_embedder: Embedder) -> None:
    local = tiny_jina_embedder
    texts = [f"{i}: " + " ".join(SHORT[i % 3] for _ in range(1 + i % 5)) for i in range(30)]
    documents = [(text, [(0, 2), (3, len(text))]) for text in texts[:12]]
    app = create_app(local, max_inputs=8, max_request_bytes=4096)
    with serve_app(app) as url, RemoteEmbedder(url) as remote:
        got = remote.encode(texts, task="retrieval.query")
        assert min_cosine(got, local.encode(texts, task="retrieval.query")) >= 0.99999
        assert remote.count_tokens(texts) == local.count_tokens(texts)
        assert remote.chunk(texts, chunk_size=4) == local.chunk(texts, chunk_size=4)
        for rows, expected in zip(remote.embed_spans(documents), local.embed_spans(documents)):
            assert min_cosine(rows, expected) >= 0.99999
        counted = [
            line
            for line in httpx.get(url + "/metrics").text.splitlines()
            if line.startswith("jina_connectors_requests_total{")
        ]
        assert all('status="200"' in line for line in counted), counted  # none refused
        with pytest.raises(ValueError, match="over the limit of 4096 bytes"):
            remote.encode(["word " * 2000])  # one input past the body limit


def test_bad_input_raises_what_the_core_raises(
    remote: RemoteEmbedder, tiny_jina_embedder: Embedder
) -> None:
    local = tiny_jina_embedder
    cases: list[tuple[Any, dict[str, Any]]] = [
        (["ok", "  "], {}),
        (["ok"], {"task": "summarize"}),
        (["ok"], {"dimensions": 33}),
        (["ok"], {"embedding_type": "int4"}),
        (["ok", "fine"], {"task": ["retrieval.query"]}),
        (["ok", "fine"], {"late_chunking": True, "task": ["retrieval.query", None]}),
        ([], {"task": "summarize"}),
        ([], {"dimensions": 0}),
        ([b"bytes"], {}),
    ]
    for texts, options in cases:
        with pytest.raises((ValueError, TypeError)) as local_error:
            local.encode(texts, **options)
        with pytest.raises(type(local_error.value)) as remote_error:
            remote.encode(texts, **options)
        assert str(remote_error.value) == str(local_error.value)
    with pytest.raises(TokenLimitError) as limit:
        remote.encode(["ok", "word " * 400], truncate=False)
    assert (limit.value.index, limit.value.max_tokens) == (1, 128)
    assert limit.value.token_count == local.count_tokens("word " * 400)[0]
    with pytest.raises(ValueError, match="span 0"):
        remote.embed_spans([(TEXT, [(5, 5)])])
    with pytest.raises(ValueError, match="unknown chunker"):
        remote.chunk(TEXT, chunker="paragraphs")  # type: ignore[arg-type]


def test_model_name_and_key_errors(server: str, tiny_jina_embedder: Embedder) -> None:
    wrong = RemoteEmbedder(server, model="text-embedding-3-small")
    with wrong, pytest.raises(ModelNotFoundError, match="not served here"):
        wrong.encode("x")
    with RemoteEmbedder(server, model="jina-embeddings-v3") as hosted_name:
        assert min_cosine(hosted_name.encode("x"), tiny_jina_embedder.encode("x")) >= 0.99999
    app = create_app(tiny_jina_embedder, api_keys=["k1"])
    with serve_app(app) as keyed:
        with RemoteEmbedder(keyed) as anonymous, pytest.raises(AuthenticationError, match="key"):
            anonymous.encode("x")
        with RemoteEmbedder(keyed, api_key="k1") as keyed_client:
            assert keyed_client.encode("x").shape == (1, 32)


def test_key_from_environment(
    tiny_jina_embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JINA_CONNECTORS_API_KEY", "k2")
    with (
        serve_app(create_app(tiny_jina_embedder, api_keys=["k2"])) as url,
        RemoteEmbedder(url) as client,
    ):
        assert client.dimension == 32


# ---------------------------------------------------------------------- retries
def test_retries_wait_for_a_loading_server(tiny_jina_dir: Path) -> None:
    release = threading.Event()

    def load() -> Embedder:
        release.wait(30)
        return Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")

    with serve_app(create_app(load)) as url:
        with RemoteEmbedder(url, retries=0) as impatient, pytest.raises(ServerError) as refused:
            impatient.encode("x")
        assert refused.value.status == 503 and refused.value.code == "model_loading"
        result: list[Any] = []
        started = time.monotonic()
        with RemoteEmbedder(url, retries=30) as patient:
            caller = threading.Thread(target=lambda: result.append(patient.encode("x")))
            caller.start()
            time.sleep(0.3)  # at least one 503 answered and waited on
            assert not result
            release.set()
            caller.join(60)
    assert result and result[0].shape == (1, 32)
    assert time.monotonic() - started >= 0.3


def test_unreachable_server_is_a_server_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with RemoteEmbedder(url, retries=1) as remote, pytest.raises(ServerError, match="cannot reach"):
        remote.encode("x")


# ------------------------------------------------------------------- overload
def test_concurrent_large_encodes_against_a_small_queue_all_complete(tiny_jina_dir: Path) -> None:
    """8 clients each encode more tokens than the whole queue holds (--max-queued-tokens
    300): such a request only gets in when the queue is empty, so they keep being refused.
    The client splits what can never fit and retries by a time budget: all complete."""
    local = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")
    local.scheduler.add_batch_listener(lambda stats: time.sleep(0.2))  # a slower model
    texts = [[f"{c} {i}: " + SHORT[(c + i) % 3] for i in range(30)] for c in range(8)]
    assert min(sum(local.count_tokens(t)) for t in texts) > 300
    results: dict[int, Any] = {}

    def client(index: int, remote: RemoteEmbedder) -> None:
        try:
            results[index] = remote.encode(texts[index])
        except Exception as error:  # reported below
            results[index] = error

    with serve_app(create_app(local, max_queued_tokens=300)) as url:
        remotes = [RemoteEmbedder(url) for _ in texts]
        threads = [threading.Thread(target=client, args=pair) for pair in enumerate(remotes)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        for remote in remotes:
            remote.close()
    failures = {i: r for i, r in results.items() if isinstance(r, Exception)}
    assert not failures and len(results) == 8, failures
    for index, rows in results.items():
        assert min_cosine(rows, local.encode(texts[index])) >= 0.99999


def refusing_app(refusals: int, attempts: dict[str, list[float]]) -> Any:
    """An embeddings server that answers each client's first ``refusals`` requests with a
    429 (``Retry-After: 1``), and records when every attempt arrived."""
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        times = attempts.setdefault(body["input"][0], [])
        times.append(time.monotonic())
        if len(times) <= refusals:
            error = {"message": "busy", "type": "rate_limit_error", "code": "queue_full"}
            return JSONResponse({"error": error}, 429, headers={"Retry-After": "1"})
        row = np.ones(4, "<f4").tobytes()
        data = [{"object": "embedding", "index": 0, "embedding": base64.b64encode(row).decode()}]
        return JSONResponse({"object": "list", "data": data, "usage": {"total_tokens": 1}})

    return app


def test_refused_clients_retry_by_time_with_jitter() -> None:
    """Refused 6 times with Retry-After 1, 8 clients still get their answer (retries run by
    a time budget), and they do not come back in lockstep (jitter over Retry-After)."""
    attempts: dict[str, list[float]] = {}
    with serve_app(refusing_app(6, attempts)) as url:
        barrier = threading.Barrier(8)
        results: list[Any] = []

        def client(name: str) -> None:
            with RemoteEmbedder(url) as remote:
                barrier.wait()
                try:
                    results.append(remote.encode(name))
                except ServerError as error:
                    results.append(error)

        threads = [threading.Thread(target=client, args=(f"c{i}",)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert len(results) == 8 and all(isinstance(r, np.ndarray) for r in results), results
    assert all(len(times) == 7 for times in attempts.values())
    firsts = [times[1] for times in attempts.values()]  # after the first Retry-After
    assert max(firsts) - min(firsts) >= 0.1, sorted(firsts)
    for times in attempts.values():
        assert all(b - a >= 1.0 for a, b in pairwise(times))  # Retry-After honoured


def test_the_retry_budget_bounds_the_wait() -> None:
    attempts: dict[str, list[float]] = {}
    with (
        serve_app(refusing_app(1000, attempts)) as url,
        RemoteEmbedder(url, retry_budget=2.0) as remote,
    ):
        started = time.monotonic()
        with pytest.raises(ServerError, match=r"429: busy \(still refused after \d attempts") as e:
            remote.encode("x")
        assert 2.0 <= time.monotonic() - started < 4.0
    assert e.value.status == 429 and e.value.code == "queue_full"


def test_a_read_timeout_is_retried_and_named(tiny_jina_dir: Path) -> None:
    """A busy server that answers after the client's timeout: the request is sent again
    (embedding is idempotent) and succeeds; a server that never answers is named as such,
    not as unreachable."""
    local = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")
    slow_batches = [1]

    def slow_first_batch(stats: Any) -> None:
        if slow_batches:
            slow_batches.pop()
            time.sleep(1.5)

    local.scheduler.add_batch_listener(slow_first_batch)
    with serve_app(create_app(local)) as url, RemoteEmbedder(url, timeout=1.0) as remote:
        remote.dimension  # noqa: B018 - the model route answers at once
        assert min_cosine(remote.encode(SHORT), local.encode(SHORT)) >= 0.99999
    assert not slow_batches
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        remote = RemoteEmbedder(url, timeout=0.3, retry_budget=0)
        with remote, pytest.raises(ServerError, match=r"did not answer within timeout=0.3 s \(2 "):
            remote.encode("x")


def test_a_200_that_is_not_json_is_a_server_error() -> None:
    portal = FastAPI()  # e.g. a captive portal or a proxy's login page

    @portal.post("/v1/embeddings")
    def page() -> HTMLResponse:
        return HTMLResponse("<html><body>Please log in</body></html>")

    with (
        serve_app(portal) as url,
        RemoteEmbedder(url) as remote,
        pytest.raises(ServerError, match=r"not a JSON object \(text/html") as error,
    ):
        remote.encode("x")
    assert error.value.status == 200


def test_a_lone_surrogate_is_a_value_error_naming_the_input(remote: RemoteEmbedder) -> None:
    for call in (
        lambda: remote.encode(["fine", "bro\ud800ken"]),
        lambda: remote.count_tokens(["fine", "bro\ud800ken"]),
        lambda: remote.chunk(["fine", "bro\ud800ken"]),
    ):
        with pytest.raises(ValueError, match=r"input 1 has a lone UTF-16 surrogate \(U\+D800\) at"):
            call()
    with pytest.raises(ValueError, match="document 1 has a lone UTF-16 surrogate"):
        remote.embed_spans([("fine", [(0, 4)]), ("\udfffx", [(0, 2)])])


def test_a_request_over_a_lower_body_limit_is_split(tiny_jina_embedder: Embedder) -> None:
    """Behind a proxy that hides the model route (so the client cannot read the limits) and
    with a body limit below the client's default: a 413 on several inputs splits them."""
    inner = create_app(tiny_jina_embedder, max_request_bytes=4096)

    async def proxy(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/x/"):
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        await inner(scope, receive, send)

    texts = [f"{i}: " + " ".join(SHORT) * 3 for i in range(40)]  # about 9 KB in all
    with serve_app(proxy) as url, RemoteEmbedder(url) as remote:
        got = remote.encode(texts)
        with pytest.raises(ValueError, match="over the limit of 4096 bytes"):
            remote.encode(["word " * 2000])  # one input past the limit: nothing to split
    assert min_cosine(got, tiny_jina_embedder.encode(texts)) >= 0.99999


def test_a_plain_embeddings_server_works_for_encode_only(tiny_jina_embedder: Embedder) -> None:
    """A server with only /v1/embeddings (as the hosted APIs): encode works, the calls that
    need our extension routes say so."""
    from fastapi import FastAPI

    plain = FastAPI()

    @plain.post("/v1/embeddings")
    def embeddings(body: dict[str, Any]) -> dict[str, Any]:
        rows = tiny_jina_embedder.encode(
            body["input"], task=body.get("task"), embedding_type=body["embedding_type"]
        )
        data = [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)]
        return {"object": "list", "model": "m", "data": data, "usage": {"total_tokens": 1}}

    with serve_app(plain) as url, RemoteEmbedder(url) as remote:
        got = remote.encode(SHORT, task="retrieval.query")
        assert min_cosine(got, tiny_jina_embedder.encode(SHORT, task="retrieval.query")) >= 0.99999
        for call in (
            lambda: remote.dimension,
            lambda: remote.count_tokens("x"),
            lambda: remote.chunk("x"),
            lambda: remote.embed_spans([("x", [(0, 1)])]),
            lambda: remote.embed_documents(["x"]),
        ):
            with pytest.raises(ExtensionUnavailableError, match="jina-connectors serve"):
                call()


# ------------------------------------------------------------ adapters, unchanged
def test_llama_index_remote_equals_local(
    installed_backends: None, server: str, tiny_jina_dir: Path
) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

    from jina_connectors import JinaEmbedding, JinaLateChunking

    local = JinaEmbedding(model=str(tiny_jina_dir), device="cpu", dimensions=16)
    remote = JinaEmbedding(model=server, dimensions=16)
    assert remote.model_name == local.model_name
    assert (
        min_cosine([remote.get_query_embedding("harbour")], [local.get_query_embedding("harbour")])
        >= 0.99999
    )
    assert (
        min_cosine(remote.get_text_embedding_batch(SHORT), local.get_text_embedding_batch(SHORT))
        >= 0.99999
    )

    def nodes() -> list[Any]:
        splitter = SentenceSplitter(chunk_size=40, chunk_overlap=10)
        return splitter.get_nodes_from_documents([Document(text=TEXT, id_="doc")])

    local_nodes = JinaLateChunking(model=str(tiny_jina_dir), device="cpu")(nodes())
    remote_nodes = JinaLateChunking(model=server)(nodes())
    assert len(local_nodes) > 1
    assert (
        min_cosine([n.embedding for n in remote_nodes], [n.embedding for n in local_nodes])
        >= 0.99999
    )


def test_haystack_remote_equals_local(
    installed_backends: None, server: str, tiny_jina_dir: Path
) -> None:
    pytest.importorskip("haystack")
    from haystack import Document

    from jina_connectors import (
        JinaDocumentEmbedder,
        JinaLateChunkingDocumentEmbedder,
        JinaTextEmbedder,
    )

    def both(component: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        local = component(*args, model=str(tiny_jina_dir), device="cpu", **kwargs)
        remote = component(*args, model=server, **kwargs)
        return local, remote

    local, remote = both(JinaTextEmbedder, dimensions=24)
    local_out, remote_out = local.run("harbour wall"), remote.run("harbour wall")
    assert min_cosine([remote_out["embedding"]], [local_out["embedding"]]) >= 0.99999
    assert remote_out["meta"] == local_out["meta"]

    documents = [Document(content=text) for text in SHORT]
    local, remote = both(JinaDocumentEmbedder, progress_bar=False)
    local_docs = local.run(documents)["documents"]
    remote_docs = remote.run(documents)["documents"]
    assert (
        min_cosine([d.embedding for d in remote_docs], [d.embedding for d in local_docs]) >= 0.99999
    )

    local, remote = both(JinaLateChunkingDocumentEmbedder, chunk_size=16, progress_bar=False)
    local_out = local.run([Document(content=TEXT, id="whole")])
    remote_out = remote.run([Document(content=TEXT, id="whole")])
    assert [d.content for d in remote_out["documents"]] == [
        d.content for d in local_out["documents"]
    ]
    assert (
        min_cosine(
            [d.embedding for d in remote_out["documents"]],
            [d.embedding for d in local_out["documents"]],
        )
        >= 0.99999
    )
    assert remote_out["meta"] == local_out["meta"]


def test_ingest_and_search_through_a_server(
    installed_backends: None, server: str, tiny_jina_dir: Path, tmp_path: Path
) -> None:
    pytest.importorskip("qdrant_client")
    from jina_connectors import QdrantSink
    from jina_connectors.ingest import ingest

    documents = [
        {"id": "harbour", "text": TEXT},
        {"id": "schools", "text": "Teachers are short. Chemists offer evening classes."},
    ]
    local_sink = QdrantSink("local", location=":memory:")
    remote_sink = QdrantSink("remote", client=local_sink.client)
    settings: dict[str, Any] = {"chunk_size": 16, "show_progress": False}
    local_report = ingest(documents, local_sink, model=str(tiny_jina_dir), **settings)
    remote_report = ingest(documents, remote_sink, model=server, **settings)
    assert remote_report.chunks == local_report.chunks > 2
    assert remote_sink.stored_spec() == local_sink.stored_spec()  # the same collection spec
    for query in ("harbour sea wall", "evening classes"):
        local_hits = local_sink.search(query, k=3, model=str(tiny_jina_dir))
        for sink in (remote_sink, local_sink):  # a local collection searched remotely too
            hits = sink.search(query, k=3, model=server)
            assert [(h.doc_id, h.chunk_index) for h in hits] == [
                (h.doc_id, h.chunk_index) for h in local_hits
            ]
            assert np.allclose([h.score for h in hits], [h.score for h in local_hits], atol=1e-5)


def test_cli_model_flag_takes_a_server(
    installed_backends: None,
    server: str,
    tiny_jina_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("qdrant_client")
    from jina_connectors.cli import main

    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "harbour.txt").write_text(TEXT, encoding="utf-8")
    (folder / "schools.md").write_text("Teachers are short. Chemists teach.", encoding="utf-8")
    outputs = []
    for model, location in ((server, "remote"), (str(tiny_jina_dir), "local")):
        where = ["--location", str(tmp_path / location)]
        args = ["--model", model, "--chunk-size", "16", "--no-progress"]
        assert main(["ingest", str(folder), *where, *args]) == 0
        assert main(["search", "sea wall damage", "-k", "2", "--model", model, *where]) == 0
        outputs.append(capsys.readouterr().out.splitlines()[-4:])
    assert outputs[0] == outputs[1]  # the same hits, scores and snippets


def test_the_client_imports_no_torch() -> None:
    """A process that only talks to a server never pays torch's import (about 2 s)."""
    code = (
        "import sys\n"
        "from jina_connectors.server.client import RemoteEmbedder\n"
        "from embedder_core import DocumentChunk\n"
        "from embedder_core.output import convert_embeddings\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "False"
