"""Everything above the core works with jina-embeddings-v2 unchanged: the ingestion pipeline
and search on real Qdrant (local) and Milvus Lite, LlamaIndex, Haystack, and the server
with RemoteEmbedder. v2 embeds queries and passages alike (no adapters, no prompts), so a
chunk embedded on its own is found by its own text with a score of 1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from server_support import serve_app

from embedder_core import Embedder

TEXT = (
    "The committee met on Monday to review the harbour project. "
    "Engineers reported that the new sea wall had passed its first winter without damage. "
    "The budget, however, had grown by a third since the plans were approved. "
    "Local fishermen asked for a second landing stage on the northern side."
)
CORPUS = [
    {"id": "harbour", "text": TEXT, "metadata": {"topic": "port"}},
    {
        "id": "school",
        "text": "The school board discussed the shortage of science teachers. Two retired "
        "chemists offered to teach evening classes for free.",
        "metadata": {"topic": "school"},
    },
]
SHORT = ["a harbour wall.", "science teachers wanted", "the budget grew by a third"]


def min_cosine(a: Any, b: Any) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a64.shape == b64.shape, (a64.shape, b64.shape)
    dots = (a64 * b64).sum(axis=1)
    return float((dots / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))).min())


@pytest.fixture(scope="module")
def v2(tiny_jina_v2_dir: Path) -> Embedder:
    from embedder_core import get_embedder

    return get_embedder(str(tiny_jina_v2_dir), device="cpu")


def _qdrant(tmp_path: Path, name: str) -> Any:
    pytest.importorskip("qdrant_client")
    from jina_connectors import QdrantSink

    return QdrantSink(name, location=":memory:")


def _milvus(tmp_path: Path, name: str) -> Any:
    pytest.importorskip("milvus_lite")
    from jina_connectors import MilvusSink

    return MilvusSink(name, location=tmp_path / f"{name}.db")


@pytest.mark.parametrize("make_sink", [_qdrant, _milvus], ids=["qdrant", "milvus"])
@pytest.mark.parametrize("late_chunking", [True, False], ids=["late", "alone"])
def test_ingest_and_search(
    v2: Embedder, tmp_path: Path, make_sink: Any, late_chunking: bool
) -> None:
    from jina_connectors.ingest import ingest
    from jina_connectors.sinks.records import chunk_id

    with make_sink(tmp_path, "v2docs") as sink:
        report = ingest(
            CORPUS,
            sink,
            model=v2,
            chunk_size=16,
            late_chunking=late_chunking,
            show_progress=False,
        )
        assert report.documents == 2 and report.points_written == report.chunks > 2
        # The chunks (the same whether late-chunked or not); their texts are the queries.
        chunks = v2.embed_documents([d["text"] for d in CORPUS], chunk_size=16)
        for doc, doc_chunks in zip(CORPUS, chunks, strict=True):
            for index, chunk in enumerate(doc_chunks):
                hits = sink.search(chunk.text, k=3)
                if not late_chunking:  # stored = the chunk's text alone = the query's vector
                    assert hits[0].id == chunk_id(doc["id"], index)
                    assert hits[0].score == pytest.approx(1.0, abs=1e-4)
                assert all(hit.doc_id in ("harbour", "school") for hit in hits)
        assert sink.search("harbour", k=2, filter={"topic": "school"})[0].doc_id == "school"
    with make_sink(tmp_path, "v2narrow") as sink:
        with pytest.raises(ValueError, match="no Matryoshka training"):
            ingest(CORPUS, sink, model=v2, dimensions=16, show_progress=False)
        assert sink.count() == 0


def test_llama_index(v2: Embedder, tiny_jina_v2_dir: Path) -> None:
    pytest.importorskip("llama_index.core")
    from llama_index.core import Document
    from llama_index.core.node_parser import SentenceSplitter

    from jina_connectors import JinaEmbedding, JinaLateChunking

    embedding = JinaEmbedding(model=str(tiny_jina_v2_dir), device="cpu")
    query = embedding.get_query_embedding("harbour wall")
    text = embedding.get_text_embedding("harbour wall")
    assert min_cosine([query], [text]) >= 0.999999  # v2: no query/passage asymmetry
    assert min_cosine(embedding.get_text_embedding_batch(SHORT), v2.encode(SHORT)) >= 0.99999
    with pytest.raises(ValueError, match="no Matryoshka training"):
        JinaEmbedding(model=str(tiny_jina_v2_dir), device="cpu", dimensions=16)
    with pytest.raises(ValueError, match="no task adapters"):
        JinaEmbedding(model=str(tiny_jina_v2_dir), device="cpu", task="classification")

    splitter = SentenceSplitter(chunk_size=40, chunk_overlap=10)
    nodes = splitter.get_nodes_from_documents([Document(text=TEXT, id_="doc")])
    embedded = JinaLateChunking(model=str(tiny_jina_v2_dir), device="cpu")(nodes)
    assert len(embedded) > 1
    expected = v2.encode([n.get_content() for n in nodes], late_chunking=True)
    got = [n.embedding for n in embedded]
    assert np.asarray(got).shape == expected.shape and np.isfinite(got).all()


def test_haystack(v2: Embedder, tiny_jina_v2_dir: Path) -> None:
    pytest.importorskip("haystack")
    from haystack import Document

    from jina_connectors import (
        JinaDocumentEmbedder,
        JinaLateChunkingDocumentEmbedder,
        JinaTextEmbedder,
    )

    model = str(tiny_jina_v2_dir)
    query = JinaTextEmbedder(model=model, device="cpu").run("harbour wall")["embedding"]
    assert min_cosine([query], v2.encode("harbour wall")) >= 0.99999
    documents = [Document(content=text) for text in SHORT]
    out = JinaDocumentEmbedder(model=model, device="cpu", progress_bar=False).run(documents)
    assert min_cosine([d.embedding for d in out["documents"]], v2.encode(SHORT)) >= 0.99999
    chunked = JinaLateChunkingDocumentEmbedder(
        model=model, device="cpu", chunk_size=16, progress_bar=False
    ).run([Document(content=TEXT, id="whole")])["documents"]
    expected = v2.embed_document(TEXT, chunk_size=16)
    assert [d.content for d in chunked] == [c.text for c in expected]
    assert min_cosine([d.embedding for d in chunked], [c.embedding for c in expected]) >= 0.99999


@pytest.fixture(scope="module")
def server(v2: Embedder) -> Iterator[str]:
    pytest.importorskip("fastapi")
    from jina_connectors.server import create_app

    with serve_app(create_app(v2)) as url:
        yield url


def test_server_and_remote_embedder(v2: Embedder, server: str) -> None:
    from jina_connectors.server.client import RemoteEmbedder

    with RemoteEmbedder(server) as remote:
        assert (remote.dimension, remote.max_tokens, remote.tasks) == (
            v2.dimension,
            8192,
            ("retrieval.query", "retrieval.passage"),
        )
        assert not remote.has_adapters and remote.supports_late_chunking
        assert min_cosine(remote.encode(SHORT), v2.encode(SHORT)) >= 0.99999
        pieces = [TEXT[:60], TEXT[60:150], TEXT[150:]]
        assert (
            min_cosine(
                remote.encode(pieces, late_chunking=True), v2.encode(pieces, late_chunking=True)
            )
            >= 0.99999
        )
        for options in ({"dimensions": 16}, {"task": "classification"}):
            with pytest.raises(ValueError) as local_error:
                v2.encode(SHORT, **options)
            with pytest.raises(ValueError) as remote_error:
                remote.encode(SHORT, **options)
            assert str(remote_error.value) == str(local_error.value)
