"""``POST /v1/rerank`` on a real server (uvicorn on 127.0.0.1), and ``RemoteReranker``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from server_support import serve_app

from embedder_core import Embedder, Reranker, RerankInputError, get_reranker
from embedder_core.testing_rerankers import (
    write_tiny_reranker_v2_checkpoint,
    write_tiny_reranker_v3_checkpoint,
)
from jina_connectors.server.app import create_app
from jina_connectors.server.client import AuthenticationError, RemoteReranker

QUERY = "What do machine learning models turn sentences into?"
DOCS = [
    "Machine learning models turn sentences into vectors for retrieval and search.",
    "The quick brown fox jumps over the lazy dog.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Embeddings, chunking, documents, passages, queries, questions and answers.",
]


@pytest.fixture(scope="module")
def v2_reranker(tmp_path_factory: pytest.TempPathFactory) -> Reranker:
    model_dir = write_tiny_reranker_v2_checkpoint(tmp_path_factory.mktemp("rr-v2"))
    return get_reranker(str(model_dir), device="cpu")


@pytest.fixture(scope="module")
def v3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_reranker_v3_checkpoint(tmp_path_factory.mktemp("rr-v3"))


@pytest.fixture(scope="module")
def server(tiny_jina_embedder: Embedder, v2_reranker: Reranker) -> Iterator[str]:
    app = create_app(tiny_jina_embedder, reranker=v2_reranker, served_reranker_name="my-reranker")
    with serve_app(app) as url:
        yield url


def test_rerank_route_has_the_hosted_shape_and_the_local_numbers(
    server: str, v2_reranker: Reranker
) -> None:
    local = v2_reranker.rerank(QUERY, DOCS, top_n=3)
    documents = [DOCS[0], {"text": DOCS[1]}, DOCS[2], {"text": DOCS[3]}]
    body = {"model": "my-reranker", "query": QUERY, "documents": documents, "top_n": 3}
    answer = httpx.post(server + "/v1/rerank", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert set(data) == {"model", "usage", "results"}
    assert data["model"] == "my-reranker"
    assert data["usage"]["total_tokens"] > len(DOCS)
    assert [r["index"] for r in data["results"]] == [r.index for r in local]
    assert [r["document"] for r in data["results"]] == [{"text": r.document} for r in local]
    np.testing.assert_allclose(
        [r["relevance_score"] for r in data["results"]], [r.relevance_score for r in local]
    )
    bare = httpx.post(
        server + "/v1/rerank",
        json={"query": QUERY, "documents": DOCS, "return_documents": False},
        timeout=30,
    ).json()
    assert len(bare["results"]) == len(DOCS)
    assert all("document" not in r for r in bare["results"])
    # The hosted name is accepted too, as for jina-embeddings-v3.
    hosted = {"model": "jina-reranker-v2-base-multilingual", "query": QUERY, "documents": DOCS}
    assert httpx.post(server + "/v1/rerank", json=hosted, timeout=30).status_code == 200


def test_models_lists_the_embedder_and_the_reranker(server: str) -> None:
    data = httpx.get(server + "/v1/models").json()["data"]
    assert len(data) == 2
    assert data[0]["id"] != "my-reranker" and "type" not in data[0]
    assert (data[1]["id"], data[1]["type"]) == ("my-reranker", "reranker")
    assert "jina-reranker-v2-base-multilingual" in data[1]["aliases"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"query": " ", "documents": DOCS}, 400, "invalid_rerank_input"),
        ({"query": QUERY, "documents": []}, 400, "empty_input"),
        ({"query": QUERY, "documents": DOCS, "top_n": 0}, 400, "invalid_rerank_input"),
        ({"query": QUERY, "documents": ["a", 3]}, 400, "invalid_type"),
        ({"query": QUERY, "documents": [{"txt": "a"}]}, 400, "invalid_input"),
        ({"query": QUERY, "documents": DOCS, "rank": 1}, 422, "invalid_request"),
        ({"query": QUERY, "documents": DOCS, "model": "nope"}, 404, "model_not_found"),
        # The embedder's name is not a reranker's.
        (
            {"query": QUERY, "documents": DOCS, "model": "jina-embeddings-v3"},
            404,
            "model_not_found",
        ),
    ],
)
def test_bad_requests_get_json_errors(server: str, body: dict, status: int, code: str) -> None:
    answer = httpx.post(server + "/v1/rerank", json=body, timeout=30)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["code"] == code


def test_auth_and_metrics(tiny_jina_embedder: Embedder, v2_reranker: Reranker) -> None:
    app = create_app(tiny_jina_embedder, reranker=v2_reranker, api_keys=["sesame"])
    body = {"query": QUERY, "documents": DOCS}
    with serve_app(app) as url:
        assert httpx.post(url + "/v1/rerank", json=body).status_code == 401
        headers = {"Authorization": "Bearer sesame"}
        answer = httpx.post(url + "/v1/rerank", json=body, headers=headers, timeout=30)
        assert answer.status_code == 200
        tokens = answer.json()["usage"]["total_tokens"]
        page = httpx.get(url + "/metrics", headers=headers).text
        with pytest.raises(AuthenticationError):
            RemoteReranker(url, api_key="wrong", retries=0).rerank(QUERY, DOCS)
        assert RemoteReranker(url, api_key="sesame").score(QUERY, DOCS).shape == (len(DOCS),)
    assert 'jina_connectors_requests_total{route="/v1/rerank",status="401"} 1.0' in page
    assert 'jina_connectors_requests_total{route="/v1/rerank",status="200"} 1.0' in page
    assert f"jina_connectors_tokens_total {float(tokens)}" in page


def test_overload_gives_429(tiny_jina_embedder: Embedder, tmp_path: Path) -> None:
    model_dir = write_tiny_reranker_v2_checkpoint(tmp_path / "v2")
    reranker = get_reranker(str(model_dir), device="cpu", max_batch_tokens=1024)
    reranker.scheduler.add_batch_listener(lambda stats: time.sleep(0.02))  # type: ignore[attr-defined]
    docs = [" ".join(DOCS) * 3] * 8
    # create_app sets the limit on the shared embedder's scheduler too: put it back after.
    embedder_limit = tiny_jina_embedder.scheduler.max_queued_tokens
    app = create_app(tiny_jina_embedder, reranker=reranker, max_queued_tokens=3000)

    async def flood(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            body = {"query": QUERY, "documents": docs}
            return await asyncio.gather(*(client.post("/v1/rerank", json=body) for _ in range(16)))

    try:
        with serve_app(app) as url:
            responses = asyncio.run(flood(url))
    finally:
        tiny_jina_embedder.scheduler.max_queued_tokens = embedder_limit
    statuses = {r.status_code for r in responses}
    assert statuses == {200, 429}, statuses
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["code"] == "queue_full"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert reranker.queued_tokens == 0


def test_remote_reranker_has_the_local_surface(server: str, v2_reranker: Reranker) -> None:
    remote = get_reranker(server)
    assert isinstance(remote, RemoteReranker)
    np.testing.assert_allclose(remote.score(QUERY, DOCS), v2_reranker.score(QUERY, DOCS))
    assert remote.rerank(QUERY, DOCS, top_n=2) == v2_reranker.rerank(QUERY, DOCS, top_n=2)
    with pytest.raises(RerankInputError):
        remote.rerank("", DOCS)
    with pytest.raises(RerankInputError):
        remote.rerank(QUERY, DOCS, top_n=0)
    with pytest.raises(TypeError):
        remote.rerank(QUERY, [1])  # type: ignore[list-item]
    # The server's own refusal is typed too (past the client's checks).
    client = remote._http  # type: ignore[attr-defined]
    with pytest.raises(RerankInputError, match="top_n"):
        client._request("POST", "/v1/rerank", {"query": QUERY, "documents": DOCS, "top_n": -2})


def test_v3_served_after_a_background_load(tiny_jina_embedder: Embedder, v3_dir: Path) -> None:
    local = get_reranker(str(v3_dir), device="cpu")
    app = create_app(tiny_jina_embedder, reranker=lambda: get_reranker(str(v3_dir), device="cpu"))
    with serve_app(app) as url:
        deadline = time.monotonic() + 30
        while True:
            answer = httpx.post(url + "/v1/rerank", json={"query": QUERY, "documents": DOCS})
            if answer.status_code != 503 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert answer.status_code == 200, answer.text
        scores = {r["index"]: r["relevance_score"] for r in answer.json()["results"]}
        np.testing.assert_allclose([scores[i] for i in range(len(DOCS))], local.score(QUERY, DOCS))
        models = httpx.get(url + "/v1/models").json()["data"]
        assert models[1]["id"] == v3_dir.name
        assert "jina-reranker-v3" in models[1]["aliases"]
