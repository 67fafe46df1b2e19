"""The shared ingestion pipeline, on a real Qdrant (in-memory local mode) with MiniLM."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1, CORPUS_V2, assert_same_points, dump_qdrant

from jina_connectors.ingest import (
    ChunkRecord,
    CollectionMismatchError,
    Document,
    InvalidDocumentError,
    chunk_id,
    ingest,
    iter_documents,
)

pytest.importorskip("qdrant_client")

from jina_connectors.qdrant import QdrantSink

SETTINGS: dict[str, Any] = {"chunk_size": 16, "progress": False}


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


@pytest.fixture
def sink() -> Iterator[QdrantSink]:
    with QdrantSink("docs", location=":memory:") as s:
        yield s


def fresh_dump(minilm: Any, corpus: Sequence[Any], **settings: Any) -> dict[str, Any]:
    """What a collection holds after ingesting ``corpus`` once into an empty database."""
    with QdrantSink("docs", location=":memory:") as reference:
        ingest(corpus, reference, model=minilm, **{**SETTINGS, **settings})
        return dump_qdrant(reference.client, "docs")


# -- documents in --------------------------------------------------------------------------


def test_documents_from_strings_records_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Alpha text.", encoding="utf-8")
    (folder / "sub" / "b.md").write_text("# Beta\n\nBeta text.", encoding="utf-8")
    (folder / "c.jsonl").write_text(
        json.dumps({"id": "c1", "text": "Gamma.", "metadata": {"k": 1}, "year": 1862})
        + "\n\n"
        + json.dumps({"text": "Delta."})
        + "\n",
        encoding="utf-8",
    )
    (folder / ".hidden.md").write_text("hidden", encoding="utf-8")
    (folder / "notes.csv").write_text("x,y", encoding="utf-8")
    single = tmp_path / "single.md"
    single.write_text("Single file.", encoding="utf-8")

    items = list(iter_documents([folder, single, "Plain string.", {"id": "r", "text": "Record."}]))
    assert all(isinstance(i, Document) for i in items), items
    docs = {d.id: d for d in items if isinstance(d, Document)}
    text_id = next(iter_documents("Plain string.")).id
    assert text_id.startswith("text-")
    assert list(docs) == ["a.txt", "c1", "c.jsonl:3", "sub/b.md", "single.md", text_id, "r"]
    assert docs["sub/b.md"].text == "# Beta\n\nBeta text."
    assert docs["c1"].metadata == {"k": 1, "year": 1862}  # extra keys become metadata
    assert docs["c1"].record == f"{folder / 'c.jsonl'}:1"
    assert docs["c.jsonl:3"].text == "Delta."  # no id: file name and line number
    assert docs[text_id].text == "Plain string."
    assert docs["single.md"].text == "Single file."


def test_bad_records_are_named(tmp_path: Path) -> None:
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"id": "fine", "text": "ok"}\n{not json\n', encoding="utf-8")
    sources: list[Any] = [
        {"id": "no-text"},
        {"id": 7, "text": "numeric id"},
        {"id": "blank", "text": "   \n"},
        {"id": "good", "text": "Good."},
        {"id": "good", "text": "Duplicate."},
        42,
        {"id": "meta", "text": "t", "metadata": "not a dict"},
        {"id": "unserializable", "text": "t", "metadata": {"x": object()}},
        {"id": "text-type", "text": b"bytes"},
        {"id": "two\nlines", "text": "t"},
        jsonl,
        tmp_path / "missing.txt",
    ]
    items = list(iter_documents(sources))
    errors = [i for i in items if isinstance(i, InvalidDocumentError)]
    assert [d.id for d in items if isinstance(d, Document)] == ["good", "fine"]
    messages = [str(e) for e in errors]
    assert messages[0] == "documents[0]: missing 'text'"
    assert messages[1] == "documents[1]: 'id' must be a string, got int"
    assert messages[2] == "documents[2]: 'text' is empty"
    assert messages[3].startswith("documents[4]: duplicate document id 'good'")
    assert messages[4] == "documents[5]: unsupported type int"
    assert messages[5] == "documents[6]: 'metadata' must be an object, got str"
    assert messages[6].startswith("documents[7]: metadata is not JSON-serializable")
    assert messages[7] == "documents[8]: 'text' must be a string, got bytes"
    assert messages[8] == "documents[9]: 'id' contains the control character U+000A"
    assert messages[9].startswith(f"{jsonl}:2: invalid JSON")
    assert messages[10] == f"{tmp_path / 'missing.txt'}: no such file or folder"
    assert len(errors) == 11


def test_bad_records_do_not_cost_the_rest_of_the_batch(minilm: Any, sink: QdrantSink) -> None:
    huge = " ".join(
        f"Sentence number {i} talks about rivers, mountains and the weather." for i in range(400)
    )
    assert minilm.count_tokens([huge])[0] > 10 * minilm.max_tokens  # late chunking windows it
    documents = [
        CORPUS_V1[0],
        {"id": "no-text", "metadata": {}},
        {"id": 12345, "text": "A numeric id."},
        {"id": "huge", "text": huge},
        CORPUS_V1[1],
    ]
    report = ingest(documents, sink, model=minilm, batch_size=8, **SETTINGS)

    assert [str(e) for e in report.errors] == [
        "documents[1]: missing 'text'",
        "documents[2]: 'id' must be a string, got int",
    ]
    assert report.documents == 3 and report.skipped == 0
    stored = dump_qdrant(sink.client, "docs")
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for point in stored.values():
        by_doc.setdefault(point.payload["doc_id"], []).append(point.payload)
    assert set(by_doc) == {"bread", "volcano", "huge"}
    huge_chunks = sorted(by_doc["huge"], key=lambda p: p["chunk_index"])
    assert len(huge_chunks) == huge_chunks[0]["chunk_count"] > 20
    assert all(huge[p["start"] : p["end"]] == p["text"] for p in huge_chunks)
    assert report.points_written == report.chunks == len(stored)


def test_a_document_that_cannot_be_embedded_is_a_bad_record(minilm: Any, sink: QdrantSink) -> None:
    def sentences_but_broken_on_volcanoes(text: str) -> list[tuple[int, int]]:
        if "volcano" in text:
            return [(0, len(text) + 10)]  # a span past the end of the text
        return [(0, text.index(".") + 1), (text.index(".") + 2, len(text))]

    report = ingest(
        CORPUS_V1, sink, model=minilm, chunker=sentences_but_broken_on_volcanoes, **SETTINGS
    )
    assert [e.record for e in report.errors] == ["documents[1]"]
    assert "cannot be embedded: span 0" in str(report.errors[0])
    stored = dump_qdrant(sink.client, "docs")
    assert sorted({p.payload["doc_id"] for p in stored.values()}) == [
        "bread",
        "chess",
        "tea",
        "whales",
    ]
    assert len(stored) == 8 == report.points_written


def test_on_error_raise_stops_before_writing(minilm: Any, sink: QdrantSink) -> None:
    with pytest.raises(InvalidDocumentError, match=r"documents\[1\]: missing 'text'") as info:
        ingest([CORPUS_V1[0], {"id": "x"}], sink, model=minilm, on_error="raise", **SETTINGS)
    assert info.value.record == "documents[1]"
    assert sink.count() == 0


def test_invalid_settings_raise_before_anything_is_created(minilm: Any, sink: QdrantSink) -> None:
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        ingest(CORPUS_V1, sink, model=minilm, chunk_size=0)
    with pytest.raises(ValueError, match="chunker must be 'sentences', 'tokens' or a callable"):
        ingest(CORPUS_V1, sink, model=minilm, chunker="paragraphs")
    with pytest.raises(ValueError, match=r"dimensions must be an integer in \[1, 384\]"):
        ingest(CORPUS_V1, sink, model=minilm, dimensions=385)
    with pytest.raises(ValueError, match="embedding_type must be 'float' or 'ubinary'"):
        ingest(CORPUS_V1, sink, model=minilm, embedding_type="int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Qdrant sink stores float vectors"):
        ingest(CORPUS_V1, sink, model=minilm, embedding_type="ubinary")
    assert not sink.client.collection_exists("docs")


# -- what is stored ------------------------------------------------------------------------


def test_chunk_ids_are_pinned_uuid5s() -> None:
    # Changing the namespace or the key format would orphan every existing collection.
    assert chunk_id("doc", 0) == "2f7b7d8f-bb1f-5c99-85f0-bde541fc6d02"
    ids = {chunk_id(d, i) for d in ("a", "b", "a\x1f0") for i in range(3)}
    assert len(ids) == 9
    assert all(uuid.UUID(i).version == 5 for i in ids)


def test_ids_payloads_and_vectors(minilm: Any, sink: QdrantSink) -> None:
    report = ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    stored = dump_qdrant(sink.client, "docs")
    assert report.documents == 5 and report.points_written == len(stored) == report.chunks

    expected_chunks = minilm.embed_documents(
        [d["text"] for d in CORPUS_V1], task="retrieval.passage", chunk_size=16
    )
    hashes = set()
    for doc, chunks in zip(CORPUS_V1, expected_chunks, strict=True):
        doc_hashes = set()
        for index, chunk in enumerate(chunks):
            point = stored[chunk_id(doc["id"], index)]
            payload = point.payload
            assert payload["text"] == chunk.text == doc["text"][payload["start"] : payload["end"]]
            assert (payload["start"], payload["end"]) == (chunk.start, chunk.end)
            assert payload["doc_id"] == doc["id"]
            assert payload["chunk_index"] == index
            assert payload["chunk_count"] == len(chunks)
            assert payload["metadata"] == doc["metadata"]
            assert payload["model"] == minilm.model_name
            assert payload["task"] == "retrieval.passage"
            assert payload["dimensions"] == 384
            assert payload["embedding_type"] == "float"
            np.testing.assert_allclose(point.vector, chunk.embedding, atol=1e-5)
            doc_hashes.add(payload["content_hash"])
        assert len(doc_hashes) == 1
        hashes |= doc_hashes
    assert len(hashes) == len(CORPUS_V1)


def test_no_late_chunking_embeds_each_chunk_alone(minilm: Any, sink: QdrantSink) -> None:
    ingest(CORPUS_V1, sink, model=minilm, late_chunking=False, dimensions=128, **SETTINGS)
    stored = dump_qdrant(sink.client, "docs")
    texts = [p.payload["text"] for p in stored.values()]
    alone = minilm.encode(texts, task="retrieval.passage", dimensions=128)
    np.testing.assert_allclose(np.stack([p.vector for p in stored.values()]), alone, atol=1e-5)
    late = minilm.embed_documents([CORPUS_V1[0]["text"]], chunk_size=16, dimensions=128)[0]
    assert len(late) == sum(p.payload["doc_id"] == "bread" for p in stored.values())
    first = stored[chunk_id("bread", 0)]
    assert not np.allclose(first.vector, late[0].embedding, atol=1e-3)  # really not late


def test_same_points_whatever_the_batching(minilm: Any) -> None:
    small = fresh_dump(minilm, CORPUS_V1, batch_size=1, write_batch_size=1, max_pending_batches=1)
    large = fresh_dump(minilm, CORPUS_V1, batch_size=64, write_batch_size=1000)
    assert_same_points(small, large)


# -- idempotence ---------------------------------------------------------------------------


def test_rerun_writes_nothing(minilm: Any, sink: QdrantSink) -> None:
    ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    before = dump_qdrant(sink.client, "docs")
    report = ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    assert (report.documents, report.skipped, report.chunks, report.points_written) == (5, 5, 0, 0)
    assert_same_points(dump_qdrant(sink.client, "docs"), before, atol=0)


def test_changed_shrunk_and_new_documents_leave_no_stale_chunks(
    minilm: Any, sink: QdrantSink
) -> None:
    ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    report = ingest(CORPUS_V2, sink, model=minilm, **SETTINGS)
    assert report.skipped == 2  # bread and whales
    assert report.documents == 6
    stored = dump_qdrant(sink.client, "docs")
    assert_same_points(stored, fresh_dump(minilm, CORPUS_V2))
    chess = [p.payload for p in stored.values() if p.payload["doc_id"] == "chess"]
    assert len(chess) == 1 and chess[0]["text"] == "Chess is a board game for two players."
    tea = [p.payload for p in stored.values() if p.payload["doc_id"] == "tea"]
    assert all(p["metadata"] == {"topic": "drinks", "year": 2023, "rating": 4.5} for p in tea)


def test_changed_settings_rewrite_every_document(minilm: Any, sink: QdrantSink) -> None:
    ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    report = ingest(CORPUS_V1, sink, model=minilm, **{**SETTINGS, "chunk_size": 40})
    assert report.skipped == 0
    assert_same_points(
        dump_qdrant(sink.client, "docs"), fresh_dump(minilm, CORPUS_V1, chunk_size=40)
    )


# -- mismatched collections ----------------------------------------------------------------


def test_dimension_mismatch_leaves_the_collection_untouched(minilm: Any, sink: QdrantSink) -> None:
    ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    before = dump_qdrant(sink.client, "docs")
    with pytest.raises(
        CollectionMismatchError, match=r"size 384 and metric cosine.*needs size 128"
    ):
        ingest(CORPUS_V2, sink, model=minilm, dimensions=128, **SETTINGS)
    assert_same_points(dump_qdrant(sink.client, "docs"), before, atol=0)


def test_metric_mismatch_leaves_the_collection_untouched(minilm: Any, sink: QdrantSink) -> None:
    from qdrant_client import models

    sink.client.create_collection(
        "docs", vectors_config=models.VectorParams(size=384, distance=models.Distance.DOT)
    )
    sink.client.upsert("docs", [models.PointStruct(id=1, vector=[0.5] * 384, payload={"a": 1})])
    with pytest.raises(
        CollectionMismatchError, match=r"metric dot, .*needs size 384 and metric cosine"
    ):
        ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    points = dump_qdrant(sink.client, "docs")
    assert list(points) == ["1"] and points["1"].payload == {"a": 1}


def test_model_mismatch_at_equal_dimensions(
    minilm: Any, tiny_jina_embedder: Any, sink: QdrantSink
) -> None:
    width = tiny_jina_embedder.dimension
    ingest(CORPUS_V1[:1], sink, model=tiny_jina_embedder, **SETTINGS)
    before = dump_qdrant(sink.client, "docs")
    with pytest.raises(CollectionMismatchError, match="holds vectors of model"):
        ingest(CORPUS_V1, sink, model=minilm, dimensions=width, **SETTINGS)
    assert_same_points(dump_qdrant(sink.client, "docs"), before, atol=0)


# -- search --------------------------------------------------------------------------------


def test_search_finds_the_answering_passage(minilm: Any, sink: QdrantSink) -> None:
    assert sink.search("anything") == []  # no collection yet
    ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    hits = sink.search("How long should the dough rise?", k=3)
    assert len(hits) == 3
    assert hits[0].doc_id == "bread" and "rise for two hours" in hits[0].text
    assert hits[0].score > hits[1].score >= hits[2].score
    assert hits[0].metadata == CORPUS_V1[0]["metadata"]
    assert hits[0].id == chunk_id("bread", hits[0].chunk_index)

    hits = sink.search("Which animal is the largest ever?", k=2)
    assert hits[0].doc_id == "whales" and "blue whale" in hits[0].text

    # Filters: doc_id, metadata equality, any-of lists, ints, floats and booleans.
    assert {h.doc_id for h in sink.search("dough", k=50, filter={"doc_id": "tea"})} == {"tea"}
    science = sink.search("dough", k=50, filter={"topic": "science"})
    assert {h.doc_id for h in science} == {"volcano", "whales"}
    assert {h.doc_id for h in sink.search("x", k=50, filter={"year": [2020, 2023]})} == {
        "bread",
        "tea",
    }
    assert {h.doc_id for h in sink.search("x", k=50, filter={"rating": 4.5})} == {"bread", "tea"}
    assert {h.doc_id for h in sink.search("x", k=50, filter={"verified": False})} == {
        "volcano",
        "tea",
    }
    assert sink.search("x", filter={"topic": "food", "year": 2021}) == []


def test_search_rejects_bad_arguments(minilm: Any, sink: QdrantSink) -> None:
    ingest(CORPUS_V1[:1], sink, model=minilm, **SETTINGS)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        sink.search("dough", k=0)
    with pytest.raises(ValueError, match="query must be a non-empty string"):
        sink.search("  ")
    with pytest.raises(ValueError, match="filter value for 'topic' must be a scalar"):
        sink.search("dough", filter={"topic": {"a": 1}})  # type: ignore[dict-item]


# -- the background writer -----------------------------------------------------------------


class _ObservedSink:
    """A real QdrantSink whose upserts wait until the pipeline has started the next batch."""

    def __init__(self, inner: QdrantSink, next_batch_started: threading.Event) -> None:
        self.inner = inner
        self.collection = inner.collection
        self.next_batch_started = next_batch_started
        self.overlapped = False
        self.writer_threads: set[str] = set()

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.writer_threads.add(threading.current_thread().name)
        if not self.overlapped:
            # Sequential code would deadlock here: the next batch only starts after we return.
            self.overlapped = self.next_batch_started.wait(timeout=30)
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _CountingEmbedder:
    def __init__(self, inner: Any, started: threading.Event) -> None:
        self.inner = inner
        self.started = started
        self.calls = 0

    def embed_documents(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            self.started.set()
        return self.inner.embed_documents(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_next_batch_is_embedded_while_the_previous_one_is_written(
    minilm: Any, sink: QdrantSink
) -> None:
    started = threading.Event()
    observed = _ObservedSink(sink, started)
    embedder = _CountingEmbedder(minilm, started)
    report = ingest(CORPUS_V1, observed, model=embedder, batch_size=1, **SETTINGS)  # type: ignore[arg-type]
    assert observed.overlapped
    assert observed.writer_threads == {"jina-connectors-writer"}
    assert embedder.calls == 5 and sink.count() == report.points_written


class _FailingSink:
    def __init__(self, inner: QdrantSink) -> None:
        self.inner = inner
        self.collection = inner.collection
        self.calls = 0

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.calls += 1
        if self.calls == 2:
            raise ConnectionError("database went away")
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_write_error_reaches_the_caller(minilm: Any, sink: QdrantSink) -> None:
    failing = _FailingSink(sink)
    with pytest.raises(ConnectionError, match="database went away"):
        ingest(CORPUS_V1, failing, model=minilm, batch_size=1, **SETTINGS)  # type: ignore[arg-type]
    assert failing.calls == 2  # the writer stopped at the first failure
    # The documents that were written are complete; a re-run writes only the rest.
    report = ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    assert report.skipped == 1
    assert_same_points(dump_qdrant(sink.client, "docs"), fresh_dump(minilm, CORPUS_V1))
