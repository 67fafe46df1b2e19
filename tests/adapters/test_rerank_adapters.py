"""The reranker adapters (LlamaIndex, Haystack, pymilvus), on a local reranker and through a
real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_support import serve_app

from embedder_core import Embedder, Reranker, get_reranker
from embedder_core.testing_rerankers import write_tiny_reranker_v2_checkpoint
from jina_connectors.server.app import create_app

QUERY = "What do machine learning models turn sentences into?"
TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models turn sentences into vectors for retrieval and search.",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Embeddings, chunking, documents, passages, queries, questions and answers.",
    "Everyone has the right to life, liberty and security of person.",
]


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_reranker_v2_checkpoint(tmp_path_factory.mktemp("adapters-v2"))


@pytest.fixture(scope="module")
def local(v2_dir: Path) -> Reranker:
    return get_reranker(str(v2_dir))


@pytest.fixture(scope="module")
def url(tiny_jina_embedder: Embedder, local: Reranker) -> Iterator[str]:
    with serve_app(create_app(tiny_jina_embedder, reranker=local)) as base_url:
        yield base_url


@pytest.fixture(params=["local", "remote"])
def model(request: pytest.FixtureRequest, v2_dir: Path) -> str:
    """The adapters' ``model``: the reranker folder, or a server running it."""
    if request.param == "local":
        return str(v2_dir)
    return str(request.getfixturevalue("url"))


def expected(local: Reranker, top_n: int) -> list[tuple[int, float]]:
    return [(r.index, r.relevance_score) for r in local.rerank(QUERY, TEXTS, top_n=top_n)]


# ------------------------------------------------------------------------ LlamaIndex
def test_llama_index_postprocessor(model: str, local: Reranker) -> None:
    from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler
    from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    from jina_connectors.adapters.llama_index import JinaRerank

    events: list[Any] = []

    class Collect(BaseEventHandler):
        def handle(self, event: Any, **kwargs: Any) -> None:
            if isinstance(event, (ReRankStartEvent, ReRankEndEvent)):
                events.append(event)

    root = get_dispatcher()
    handler = Collect()
    root.add_event_handler(handler)
    debug = LlamaDebugHandler()
    try:
        postprocessor = JinaRerank(top_n=2, model=model)
        postprocessor.callback_manager = CallbackManager([debug])
        nodes = [
            NodeWithScore(node=TextNode(text=t), score=0.5 - i / 10) for i, t in enumerate(TEXTS)
        ]
        out = postprocessor.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
        with pytest.raises(ValueError, match="Missing query bundle"):
            postprocessor.postprocess_nodes(nodes)
    finally:
        root.event_handlers.remove(handler)
    want = expected(local, 2)
    assert [(n.node.get_content(), n.score) for n in out] == [
        (TEXTS[i], pytest.approx(score)) for i, score in want
    ]
    assert all(n is not m for n in out for m in nodes)  # new NodeWithScore objects
    assert [n.score for n in nodes] == [0.5 - i / 10 for i in range(len(TEXTS))]  # untouched
    assert [type(e).__name__ for e in events][:2] == ["ReRankStartEvent", "ReRankEndEvent"]
    assert events[0].top_n == 2 and events[1].nodes == out
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1 and pairs[0][1].payload["nodes"] == out


# -------------------------------------------------------------------------- Haystack
def test_haystack_ranker(model: str, local: Reranker) -> None:
    from haystack import Document

    from jina_connectors.adapters.haystack import JinaRanker

    documents = [Document(content=t, meta={"i": i}) for i, t in enumerate(TEXTS)]
    ranker = JinaRanker(model=model, top_k=3)
    ranked = ranker.run(query=QUERY, documents=documents)["documents"]
    want = expected(local, 3)
    assert [(d.meta["i"], d.score) for d in ranked] == [(i, pytest.approx(s)) for i, s in want]
    assert all(d.score is None for d in documents)  # copies: the inputs keep their scores
    everything = ranker.run(query=QUERY, documents=documents, top_k=5)["documents"]
    threshold = everything[2].score
    kept = ranker.run(query=QUERY, documents=documents, top_k=5, score_threshold=threshold)
    assert kept["documents"] == everything[:3]
    assert ranker.run(query=QUERY, documents=[]) == {"documents": []}
    with pytest.raises(ValueError, match="top_k"):
        ranker.run(query=QUERY, documents=documents, top_k=0)
    again = JinaRanker.from_dict(ranker.to_dict())
    assert again.to_dict() == ranker.to_dict()
    assert ranker.to_dict()["init_parameters"]["model"] == model


def test_haystack_retrieve_then_rerank_pipeline(v2_dir: Path, local: Reranker) -> None:
    from haystack import Document, Pipeline
    from haystack.components.retrievers.in_memory import InMemoryBM25Retriever
    from haystack.document_stores.in_memory import InMemoryDocumentStore

    from jina_connectors.adapters.haystack import JinaRanker

    store = InMemoryDocumentStore()
    store.write_documents([Document(content=t) for t in TEXTS])
    pipeline = Pipeline()
    pipeline.add_component("retriever", InMemoryBM25Retriever(store, top_k=4))
    pipeline.add_component("ranker", JinaRanker(model=str(v2_dir), top_k=2))
    pipeline.connect("retriever.documents", "ranker.documents")
    loaded = Pipeline.loads(pipeline.dumps())  # survives YAML
    result = loaded.run({"retriever": {"query": QUERY}, "ranker": {"query": QUERY}})
    ranked = result["ranker"]["documents"]
    candidates = [d.content for d in store.bm25_retrieval(QUERY, top_k=4)]
    want = local.rerank(QUERY, candidates, top_n=2)
    assert [d.content for d in ranked] == [r.document for r in want]


# --------------------------------------------------------------------------- pymilvus
def test_pymilvus_rerank_function(model: str, local: Reranker) -> None:
    from jina_connectors.adapters.pymilvus import JinaRerankFunction

    function = JinaRerankFunction(model)
    results = function(QUERY, TEXTS, top_k=2)
    want = expected(local, 2)
    assert [(r.index, r.text) for r in results] == [(i, TEXTS[i]) for i, _ in want]
    assert [r.score for r in results] == pytest.approx([s for _, s in want])
    assert len(function(QUERY, TEXTS)) == 5  # pymilvus' default top_k
