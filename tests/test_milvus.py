"""MilvusSink beyond the sink contract (``test_sink_contract.py``): binary vectors, Milvus'
limits as bad records, and JinaEmbeddingFunction as a drop-in for pymilvus'."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1, assert_same_points, dump_milvus, dump_qdrant

pytest.importorskip("milvus_lite")

from pymilvus import DataType, MilvusClient
from pymilvus.exceptions import MilvusException

from jina_connectors.ingest import CollectionMismatchError, CollectionSpec, ingest
from jina_connectors.milvus import JinaEmbeddingFunction, MilvusSink
from jina_connectors.qdrant import QdrantSink

SETTINGS: dict[str, Any] = {"chunk_size": 16, "show_progress": False}


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


def qdrant_reference(embedder: Any, corpus: list[dict[str, Any]], **settings: Any) -> Any:
    """The same pipeline into Qdrant: payloads and vectors must be identical."""
    with QdrantSink("docs", location=":memory:") as sink:
        ingest(corpus, sink, model=embedder, **{**SETTINGS, **settings})
        return dump_qdrant(sink.client, "docs")


def test_binary_vectors_with_hamming(minilm: Any, tmp_path: Path) -> None:
    from embedder_core.output import convert_embeddings

    with MilvusSink("bits", location=tmp_path / "m.db") as sink:
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


def test_binary_and_float_collections_do_not_mix(minilm: Any, tmp_path: Path) -> None:
    with MilvusSink("docs", location=tmp_path / "m.db") as sink:
        ingest(CORPUS_V1[:2], sink, model=minilm, **SETTINGS)
        before = dump_milvus(sink.client, "docs")
        with pytest.raises(CollectionMismatchError, match="holds float vectors"):
            ingest(CORPUS_V1, sink, model=minilm, embedding_type="ubinary", **SETTINGS)
        assert_same_points(dump_milvus(sink.client, "docs"), before, atol=0)


def test_a_chunk_over_the_text_limit_is_a_bad_record_and_the_rest_is_stored(
    tiny_jina_embedder: Any, tmp_path: Path
) -> None:
    big = {"id": "big", "text": "All work and no play makes a dull day. " * 1800}  # 70,200 bytes
    documents = [CORPUS_V1[0], big, CORPUS_V1[1]]
    with MilvusSink("docs", location=tmp_path / "m.db") as sink:
        report = ingest(
            documents,
            sink,
            model=tiny_jina_embedder,
            chunker=lambda text: [(0, len(text))],  # one chunk per document
            show_progress=False,
        )
        assert [str(e) for e in report.errors] == [
            "documents[1]: document 'big' chunk 0: its text takes 70200 bytes, over Milvus' "
            "65535-byte text limit; use a smaller chunk_size"
        ]
        stored = dump_milvus(sink.client, "docs")
        assert sorted(p.payload["doc_id"] for p in stored.values()) == ["bread", "volcano"]
        assert report.points_written == sink.count() == 2


def test_a_write_the_server_refuses_makes_only_its_document_a_bad_record(
    minilm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Milvus server checks what Milvus Lite does not (a VARCHAR over its declared length is
    refused, status 1100); here the server's answer is played by a wrapped client."""
    refused = {"id": "refused", "text": "This chunk is REFUSED by the server. It has two."}
    with MilvusSink("docs", location=tmp_path / "m.db") as sink:
        real_upsert = sink.client.upsert

        def server_upsert(collection: str, rows: list[dict[str, Any]], **kwargs: Any) -> Any:
            if any("REFUSED" in row["text"] for row in rows):
                raise MilvusException(
                    1100, "length of varchar field text exceeds max length: invalid parameter"
                )
            return real_upsert(collection, rows, **kwargs)

        monkeypatch.setattr(sink.client, "upsert", server_upsert)
        documents = [*CORPUS_V1[:3], refused, *CORPUS_V1[3:]]
        report = ingest(documents, sink, model=minilm, batch_size=6, **SETTINGS)
        assert [e.record for e in report.errors] == ["documents[3]"]
        assert "document 'refused' was refused by the database" in str(report.errors[0])
        assert "exceeds max length" in str(report.errors[0])
        assert_same_points(dump_milvus(sink.client, "docs"), qdrant_reference(minilm, CORPUS_V1))


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


def test_embedding_function_takes_the_hosted_call_unchanged(
    tiny_jina_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pymilvus' ``JinaEmbeddingFunction(model_name="jina-embeddings-v3", api_key=...,
    task=..., dimensions=..., late_chunking=...)`` works as written, plus ``device``; the
    hosted model name is the local ``jinaai/jina-embeddings-v3`` (here: the tiny checkpoint
    stands in for it, offline)."""
    import huggingface_hub

    import embedder_core.registry as registry
    from embedder_core import DEFAULT_MODEL, get_embedder

    requested: list[str] = []

    def hub_is_the_tiny_checkpoint(**kwargs: Any) -> str:
        requested.append(kwargs["repo_id"])
        return str(tiny_jina_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub_is_the_tiny_checkpoint)
    # The stand-in must not stay in the process-wide cache as the real jina-embeddings-v3.
    monkeypatch.setattr(registry, "_CACHE", [])
    ef = JinaEmbeddingFunction(
        model_name="jina-embeddings-v3",
        api_key=None,
        task="retrieval.passage",
        dimensions=16,
        late_chunking=True,
        device="cpu",
    )
    embedder = get_embedder(str(tiny_jina_dir), device="cpu")
    texts = ["Berlin is the capital of Germany.", "Its population is 3.8 million."]
    assert ef.model_name == DEFAULT_MODEL and ef.dim == 16
    assert requested == [DEFAULT_MODEL]
    np.testing.assert_allclose(
        np.stack(ef(texts)),
        embedder.encode(texts, task="retrieval.passage", dimensions=16, late_chunking=True),
        atol=1e-6,
    )
    # The hosted class's positional order, with an API key (ignored, never stored).
    positional = JinaEmbeddingFunction("jina-embeddings-v3", "jina_secret", "text-matching", 8)
    assert (positional.task, positional.dim, positional.late_chunking) == (
        "text-matching",
        8,
        False,
    )
    assert "jina_secret" not in repr(vars(positional))
    with pytest.raises(ValueError, match="device and dtype apply to a model name"):
        JinaEmbeddingFunction(embedder, device="cpu")
