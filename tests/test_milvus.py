"""MilvusSink on Milvus Lite files (float and binary vectors), and JinaEmbeddingFunction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1, CORPUS_V2, assert_same_points, dump_milvus, dump_qdrant

pytest.importorskip("milvus_lite")

from pymilvus import DataType, MilvusClient

from jina_connectors.ingest import (
    CollectionInfo,
    CollectionMismatchError,
    CollectionSpec,
    VectorSink,
    chunk_id,
    ingest,
)
from jina_connectors.milvus import JinaEmbeddingFunction, MilvusSink
from jina_connectors.qdrant import QdrantSink

SETTINGS: dict[str, Any] = {"chunk_size": 16, "progress": False}


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


def qdrant_reference(embedder: Any, corpus: list[dict[str, Any]], **settings: Any) -> Any:
    """The same pipeline into Qdrant: payloads and vectors must be identical."""
    with QdrantSink("docs", location=":memory:") as sink:
        ingest(corpus, sink, model=embedder, **{**SETTINGS, **settings})
        return dump_qdrant(sink.client, "docs")


def test_milvus_lite_ingest_search_and_reopen(minilm: Any, tmp_path: Path) -> None:
    file = tmp_path / "milvus.db"
    with MilvusSink("docs", uri=file) as sink:
        assert isinstance(sink, VectorSink)
        report = ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        stored = dump_milvus(sink.client, "docs")
        assert report.points_written == len(stored) == sink.count()
        assert_same_points(stored, qdrant_reference(minilm, CORPUS_V1), atol=1e-5)
        description = sink.client.describe_collection("docs")
        fields = {f["name"]: f for f in description["fields"]}
        assert fields["id"]["is_primary"] and fields["id"]["type"] == DataType.VARCHAR
        assert fields["vector"]["type"] == DataType.FLOAT_VECTOR
        assert fields["vector"]["params"]["dim"] == 384
        assert fields["metadata"]["type"] == DataType.JSON
        assert sink.client.describe_index("docs", "vector")["metric_type"] == "COSINE"

    with MilvusSink("docs", uri=str(file)) as reopened:
        spec = CollectionSpec(minilm.model_name, 384)
        assert reopened.describe_collections() == [CollectionInfo("docs", len(stored), spec)]
        hits = reopened.search("How long should the dough rise?", k=3)
        assert hits[0].doc_id == "bread" and "rise for two hours" in hits[0].text
        assert hits[0].id == chunk_id("bread", hits[0].chunk_index)
        assert hits[0].metadata == CORPUS_V1[0]["metadata"]
        assert hits[0].score > hits[1].score >= hits[2].score
        assert {h.doc_id for h in reopened.search("x", k=50, filter={"year": [2020, 2023]})} == {
            "bread",
            "tea",
        }
        assert {h.doc_id for h in reopened.search("x", k=50, filter={"verified": False})} == {
            "volcano",
            "tea",
        }
        assert {h.doc_id for h in reopened.search("x", k=50, filter={"rating": 4.5})} == {
            "bread",
            "tea",
        }
        native = reopened.search("x", k=50, filter='metadata["topic"] == "science"')
        assert {h.doc_id for h in native} == {"volcano", "whales"}
        again = ingest(CORPUS_V1, reopened, model=minilm, **SETTINGS)
        assert (again.skipped, again.points_written) == (5, 0)


def test_changed_and_shrunk_documents(minilm: Any, tmp_path: Path) -> None:
    with MilvusSink("docs", uri=tmp_path / "m.db") as sink:
        ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        report = ingest(CORPUS_V2, sink, model=minilm, **SETTINGS)
        assert report.skipped == 2
        assert_same_points(dump_milvus(sink.client, "docs"), qdrant_reference(minilm, CORPUS_V2))


def test_awkward_document_ids(minilm: Any, tmp_path: Path) -> None:
    awkward = 'say "hi" \\ back\\slash, it\'s ünïcode ✓ 😀'
    long_doc = {"id": awkward, "text": CORPUS_V1[1]["text"], "metadata": {}}
    short_doc = {"id": awkward, "text": "A volcano is an opening in the crust.", "metadata": {}}
    with MilvusSink("docs", uri=tmp_path / "m.db") as sink:
        ingest([long_doc, CORPUS_V1[0]], sink, model=minilm, **SETTINGS)
        ingest([short_doc, CORPUS_V1[0]], sink, model=minilm, **SETTINGS)  # shrinks to 1 chunk
        rows = dump_milvus(sink.client, "docs")
        mine = [p.payload for p in rows.values() if p.payload["doc_id"] == awkward]
        assert [p["text"] for p in mine] == [short_doc["text"]]
        hits = sink.search("crust", k=10, filter={"doc_id": awkward})
        assert [h.doc_id for h in hits] == [awkward]


def test_binary_vectors_with_hamming(minilm: Any, tmp_path: Path) -> None:
    from embedder_core import convert_embeddings

    with MilvusSink("bits", uri=tmp_path / "m.db") as sink:
        ingest(CORPUS_V1, sink, model=minilm, embedding_type="ubinary", dimensions=100, **SETTINGS)
        fields = {f["name"]: f for f in sink.client.describe_collection("bits")["fields"]}
        assert fields["vector"]["type"] == DataType.BINARY_VECTOR
        assert fields["vector"]["params"]["dim"] == 104  # 100 bits, padded to whole bytes
        assert sink.client.describe_index("bits", "vector")["metric_type"] == "HAMMING"
        assert sink.stored_spec() == CollectionSpec(minilm.model_name, 100, "ubinary")

        stored = dump_milvus(sink.client, "bits")
        floats = qdrant_reference(minilm, CORPUS_V1, dimensions=100)
        assert set(stored) == set(floats)
        for point_id, point in floats.items():
            packed = convert_embeddings(point.vector[None, :], "ubinary")[0]
            np.testing.assert_array_equal(stored[point_id].vector, packed)
            differing = {"embedding_type", "content_hash"}  # the hash covers the vector type
            assert stored[point_id].payload["embedding_type"] == "ubinary"
            assert {k: v for k, v in stored[point_id].payload.items() if k not in differing} == {
                k: v for k, v in point.payload.items() if k not in differing
            }

        hits = sink.search("Which animal is the largest ever?", k=5)
        assert hits[0].doc_id == "whales"
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_mismatched_collections_are_left_untouched(minilm: Any, tmp_path: Path) -> None:
    with MilvusSink("docs", uri=tmp_path / "m.db") as sink:
        ingest(CORPUS_V1[:2], sink, model=minilm, **SETTINGS)
        before = dump_milvus(sink.client, "docs")
        with pytest.raises(CollectionMismatchError, match="holds FLOAT_VECTOR vectors"):
            ingest(CORPUS_V2, sink, model=minilm, embedding_type="ubinary", **SETTINGS)
        with pytest.raises(CollectionMismatchError, match=r"size 384 .*needs size 64"):
            ingest(CORPUS_V2, sink, model=minilm, dimensions=64, **SETTINGS)
        assert_same_points(dump_milvus(sink.client, "docs"), before, atol=0)

        sink.client.create_collection("foreign", dimension=384)  # quick-setup schema
        sink.client.insert("foreign", [{"id": 1, "vector": [0.1] * 384}])
        with MilvusSink("foreign", client=sink.client) as foreign:
            with pytest.raises(CollectionMismatchError, match="not created by jina-connectors"):
                ingest(CORPUS_V1, foreign, model=minilm, **SETTINGS)
            assert foreign.count() == 1
            infos = {info.name: info for info in foreign.describe_collections()}
            assert infos["foreign"] == CollectionInfo("foreign", 1, None)
            assert infos["docs"].spec == CollectionSpec(minilm.model_name, 384)


def test_a_chunk_over_the_text_limit_is_a_clear_error(
    tiny_jina_embedder: Any, tmp_path: Path
) -> None:
    text = "All work and no play makes a dull day. " * 1800  # 70,200 bytes
    with MilvusSink("docs", uri=tmp_path / "m.db") as sink:
        with pytest.raises(ValueError, match="chunk 0 of document 'big' is longer than"):
            ingest(
                [{"id": "big", "text": text}],
                sink,
                model=tiny_jina_embedder,
                chunker=lambda t: [(0, len(t))],
                progress=False,
            )
        assert sink.count() == 0


# -- JinaEmbeddingFunction -------------------------------------------------------------------


def test_embedding_function_tasks_dimensions_and_late_chunking(tiny_jina_embedder: Any) -> None:
    texts = ["The knight jumps over pieces.", "Black tea steeps for five minutes."]
    ef = JinaEmbeddingFunction(tiny_jina_embedder)
    assert ef.dim == tiny_jina_embedder.dimension
    documents = ef.encode_documents(texts)
    queries = ef.encode_queries(texts)
    assert len(documents) == 2 and documents[0].shape == (ef.dim,)
    np.testing.assert_allclose(
        np.stack(documents), tiny_jina_embedder.encode(texts, task="retrieval.passage"), atol=1e-6
    )
    np.testing.assert_allclose(
        np.stack(queries), tiny_jina_embedder.encode(texts, task="retrieval.query"), atol=1e-6
    )
    assert not np.allclose(documents[0], queries[0], atol=1e-3)  # different LoRA adapters

    matching = JinaEmbeddingFunction(tiny_jina_embedder, task="text-matching", dimensions=16)
    assert matching.dim == 16
    np.testing.assert_allclose(
        np.stack(matching(texts)),
        tiny_jina_embedder.encode(texts, task="text-matching", dimensions=16),
        atol=1e-6,
    )
    late = JinaEmbeddingFunction(tiny_jina_embedder, late_chunking=True)
    np.testing.assert_allclose(
        np.stack(late.encode_documents(texts)),
        tiny_jina_embedder.encode(texts, task="retrieval.passage", late_chunking=True),
        atol=1e-6,
    )
    assert ef.encode_documents([]) == []

    with pytest.raises(ValueError, match="unknown task 'summarize'"):
        JinaEmbeddingFunction(tiny_jina_embedder, task="summarize")
    with pytest.raises(ValueError, match="dimensions must be an integer"):
        JinaEmbeddingFunction(tiny_jina_embedder, dimensions=10_000)
    with pytest.raises(TypeError, match="list of strings"):
        ef.encode_queries("one string")  # type: ignore[arg-type]


def test_embedding_function_with_a_milvus_client(minilm: Any, tmp_path: Path) -> None:
    ef = JinaEmbeddingFunction(minilm)
    sentences = [doc["text"] for doc in CORPUS_V1]
    client = MilvusClient(str(tmp_path / "ef.db"))
    try:
        client.create_collection("plain", dimension=ef.dim, metric_type="COSINE")
        vectors = ef.encode_documents(sentences)
        client.insert("plain", [{"id": i, "vector": v.tolist()} for i, v in enumerate(vectors)])
        [query] = ef.encode_queries(["Which animal sings underwater?"])
        [[best, *_]] = client.search("plain", data=[query.tolist()], limit=2)
        assert sentences[best["id"]] == CORPUS_V1[3]["text"]  # whales
    finally:
        client.close()
