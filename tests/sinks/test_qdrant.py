"""QdrantSink beyond the sink contract (``test_sink_contract.py``): a shared client, named
vectors, binary quantization, and server requests (retries, binary quantization, payload
indexes) against a local HTTP endpoint."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from ingest_corpus import CORPUS_V1

pytest.importorskip("qdrant_client")

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from jina_connectors import ingest
from jina_connectors.errors import CollectionMismatchError
from jina_connectors.sinks import CollectionSpec, VectorSink
from jina_connectors.sinks.qdrant import QdrantSink

SETTINGS: dict[str, Any] = {"chunk_size": 16, "show_progress": False}


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


def test_a_given_client_is_shared_and_left_open(minilm: Any) -> None:
    client = QdrantClient(location=":memory:")
    with QdrantSink("a", client=client) as a:
        assert isinstance(a, VectorSink)
        ingest(CORPUS_V1[:1], a, model=minilm, **SETTINGS)
    with QdrantSink("b", client=client) as b:
        ingest(CORPUS_V1[1:2], b, model=minilm, **SETTINGS)
        infos = {info.name: info.count for info in b.describe_collections()}
    assert infos == {"a": client.count("a").count, "b": client.count("b").count}
    assert min(infos.values()) > 0


def test_named_vectors_collection_is_refused(minilm: Any) -> None:
    with QdrantSink("docs", location=":memory:") as sink:
        sink.client.create_collection(
            "docs",
            vectors_config={
                "dense": models.VectorParams(size=384, distance=models.Distance.COSINE)
            },
        )
        with pytest.raises(CollectionMismatchError, match="uses named vectors"):
            ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        assert sink.client.count("docs").count == 0


def test_binary_quantization_in_embedded_mode_searches_exactly(minilm: Any) -> None:
    with QdrantSink("docs", location=":memory:", binary_quantization=True) as sink:
        ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "search_params has no effect" in local mode
            hit = sink.search("How do I brew black tea?", k=1)[0]
        assert hit.doc_id == "tea"


# -- against an HTTP endpoint that answers like a Qdrant server ------------------------------


class _Endpoint:
    """Scripted responses per (method, path); records every request it receives."""

    def __init__(self) -> None:
        self.responses: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        self.requests: list[tuple[str, str, Any]] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = self.path.split("?")[0]
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                endpoint.requests.append((self.command, path, body))
                script = endpoint.responses.get((self.command, path)) or [(404, {})]
                status, payload = script.pop(0) if len(script) > 1 else script[0]
                if path == "/":  # the version probe answers unwrapped
                    body = payload
                elif status == 200:
                    body = {"result": payload, "status": "ok", "time": 0.0}
                else:
                    body = {"status": {"error": f"scripted {status}"}, "time": 0.0}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.responses[("GET", "/")] = [(200, {"title": "qdrant", "version": "1.20.0"})]

    def calls(self, method: str, path: str) -> list[Any]:
        return [body for m, p, body in self.requests if (m, p) == (method, path)]


@pytest.fixture
def endpoint() -> Iterator[_Endpoint]:
    server = _Endpoint()
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    # qdrant-client checks the server version on a background thread: let it finish.
    deadline = time.monotonic() + 10
    while not server.calls("GET", "/") and time.monotonic() < deadline:
        time.sleep(0.05)
    server.server.shutdown()
    server.server.server_close()


def test_transient_server_errors_are_retried(endpoint: _Endpoint) -> None:
    endpoint.responses[("GET", "/collections/docs/exists")] = [
        (503, None),
        (503, None),
        (200, {"exists": True}),
    ]
    endpoint.responses[("POST", "/collections/docs/points/count")] = [(200, {"count": 7})]
    with QdrantSink("docs", location=endpoint.url) as sink:
        assert sink.count() == 7
    assert len(endpoint.calls("GET", "/collections/docs/exists")) == 3


def test_client_errors_are_not_retried(endpoint: _Endpoint) -> None:
    endpoint.responses[("GET", "/collections/docs/exists")] = [(400, None)]
    with QdrantSink("docs", location=endpoint.url) as sink, pytest.raises(UnexpectedResponse):
        sink.count()
    assert len(endpoint.calls("GET", "/collections/docs/exists")) == 1


def test_server_collection_gets_binary_quantization_and_payload_indexes(
    endpoint: _Endpoint,
) -> None:
    endpoint.responses[("GET", "/collections/docs/exists")] = [(200, {"exists": False})]
    endpoint.responses[("PUT", "/collections/docs")] = [(200, True)]
    endpoint.responses[("PUT", "/collections/docs/index")] = [
        (200, {"operation_id": 1, "status": "completed"})
    ]
    with QdrantSink("docs", location=endpoint.url, binary_quantization=True) as sink:
        sink.ensure_collection(CollectionSpec("some-model", 256))
    [created] = endpoint.calls("PUT", "/collections/docs")
    assert created["vectors"] == {"size": 256, "distance": "Cosine"}
    assert created["quantization_config"] == {"binary": {"always_ram": True}}
    indexes = endpoint.calls("PUT", "/collections/docs/index")
    assert sorted((i["field_name"], i["field_schema"]) for i in indexes) == [
        ("chunk_index", "integer"),
        ("doc_id", "keyword"),
    ]
