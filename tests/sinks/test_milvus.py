"""MilvusSink beyond the sink contract (``test_sink_contract.py``): binary vectors and Milvus'
limits as bad records (JinaEmbeddingFunction: ``tests/adapters/test_pymilvus.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1, assert_same_points, dump_milvus, dump_qdrant

pytest.importorskip("milvus_lite")

from pymilvus import DataType
from pymilvus.exceptions import MilvusException

from jina_connectors import ingest
from jina_connectors.errors import CollectionMismatchError
from jina_connectors.sinks import CollectionSpec
from jina_connectors.sinks.milvus import MilvusSink
from jina_connectors.sinks.qdrant import QdrantSink

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
