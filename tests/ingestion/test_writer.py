"""The background writer: writes overlap embedding, errors reach the caller, Ctrl-C is
not held up."""

from __future__ import annotations

import json
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1, EmbedderWrapper, assert_same_points, dump_qdrant

from jina_connectors.ingest import IngestInterrupted, InvalidDocumentError, ingest, iter_documents
from jina_connectors.sinks.records import ChunkRecord, chunk_id

pytest.importorskip("qdrant_client")

from jina_connectors import QdrantSink

SETTINGS: dict[str, Any] = {"chunk_size": 16, "show_progress": False}


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


class _CountingEmbedder(EmbedderWrapper):
    def __init__(self, inner: Any, started: threading.Event) -> None:
        super().__init__(inner)
        self.started = started
        self.calls = 0

    def embed_documents(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            self.started.set()
        return self.inner.embed_documents(*args, **kwargs)


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


class _RefusingSink:
    """A real QdrantSink that refuses, as a database would, any write holding some documents."""

    def __init__(self, inner: QdrantSink, refused: set[str]) -> None:
        self.inner = inner
        self.collection = inner.collection
        self.refused = refused
        self.upserts: list[set[str]] = []

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        docs = {r.doc_id for r in records}
        self.upserts.append(docs)
        if docs & self.refused:
            raise InvalidDocumentError("upsert", f"refused {sorted(docs & self.refused)}")
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_document_the_database_refuses_is_a_bad_record_and_the_rest_is_stored(
    minilm: Any, sink: QdrantSink
) -> None:
    refusing = _RefusingSink(sink, {"volcano"})
    report = ingest(CORPUS_V1, refusing, model=minilm, batch_size=5, **SETTINGS)  # type: ignore[arg-type]
    assert [e.record for e in report.errors] == ["documents[1]"]
    assert "document 'volcano' was refused by the database" in str(report.errors[0])
    others = [doc for doc in CORPUS_V1 if doc["id"] != "volcano"]
    assert_same_points(dump_qdrant(sink.client, "docs"), fresh_dump(minilm, others))
    assert report.points_written == sink.count()
    # Found by halving: {all} -> {bread, volcano} / {chess, whales, tea} -> {bread} / {volcano}.
    assert refusing.upserts[0] == {d["id"] for d in CORPUS_V1}
    assert {"volcano"} in refusing.upserts and len(refusing.upserts) <= 5
    # The refused document was not marked complete: a re-run tries it again, alone.
    again = ingest(CORPUS_V1, refusing, model=minilm, **SETTINGS)  # type: ignore[arg-type]
    assert (again.skipped, [e.record for e in again.errors]) == (4, ["documents[1]"])


def test_a_database_that_refuses_every_document_stops_the_run(
    minilm: Any, sink: QdrantSink
) -> None:
    refusing = _RefusingSink(sink, {d["id"] for d in CORPUS_V1})
    with pytest.raises(InvalidDocumentError, match="refused"):
        ingest(CORPUS_V1, refusing, model=minilm, batch_size=5, **SETTINGS)  # type: ignore[arg-type]
    assert sink.count() == 0


def test_a_document_written_in_two_jobs_keeps_every_chunk(sink: QdrantSink) -> None:
    # The Ray engine can get a document's chunks in two blocks, written as two jobs (in
    # either order, by two writers): each job's stale-chunk deletion must spare the chunks
    # of the other, so it keeps the document's chunk_count, not the chunks it holds.
    from jina_connectors.ingest import CollectionSpec
    from jina_connectors.ingestion.writer import WriteJob, write_job

    spec = CollectionSpec("test-model", 4)
    sink.ensure_collection(spec)
    rng = np.random.default_rng(0)
    records = [
        ChunkRecord(
            id=chunk_id("a", i),
            vector=rng.standard_normal(4).astype(np.float32),
            text=f"chunk {i}",
            doc_id="a",
            chunk_index=i,
            chunk_count=4,
            start=8 * i,
            end=8 * i + 7,
            content_hash="h",
            metadata={},
            model=spec.model,
            task=spec.task,
            dimensions=4,
            embedding_type="float",
        )
        for i in range(4)
    ]
    second, first = WriteJob.of([("a", records[2:])]), WriteJob.of([("a", records[:2])])
    assert first.keep == second.keep == {"a": 4}
    for job in (second, first):
        write_job(sink, job, write_batch_size=10)
    assert sorted(p.payload["chunk_index"] for p in dump_qdrant(sink.client, "docs").values()) == [
        0,
        1,
        2,
        3,
    ]


def _recording_opens(monkeypatch: pytest.MonkeyPatch, file: Path) -> list[Any]:
    opened: list[Any] = []
    real_open = Path.open

    def recording_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        if self == file:
            opened.append(handle)
        return handle

    monkeypatch.setattr(Path, "open", recording_open)
    return opened


def test_a_failed_run_closes_the_file_it_was_reading(
    minilm: Any, sink: QdrantSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps(doc) + "\n" for doc in CORPUS_V1), encoding="utf-8")
    opened = _recording_opens(monkeypatch, jsonl)
    failing = _FailingSink(sink)
    try:
        ingest(iter_documents([jsonl]), failing, model=minilm, batch_size=1, **SETTINGS)  # type: ignore[arg-type]
    except ConnectionError:
        # The traceback (and so the failed run's frames and arguments) is still alive here.
        assert len(opened) == 1 and opened[0].closed
    else:  # pragma: no cover - the sink always fails
        pytest.fail("the write error did not reach the caller")

    # A reader that stops early and closes the generator closes the file at once.
    documents = iter_documents(iter_documents([jsonl]))
    assert next(documents).id == "bread"
    assert not opened[1].closed
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        documents.close()
    assert opened[1].closed


class _StuckSink:
    """A real QdrantSink whose first upsert hangs (a database that stopped answering)."""

    def __init__(self, inner: QdrantSink) -> None:
        self.inner = inner
        self.collection = inner.collection
        self.stuck = threading.Event()
        self.release = threading.Event()

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.stuck.set()
        self.release.wait(60)
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_ctrl_c_is_not_held_up_by_a_stuck_writer(
    minilm: Any, sink: QdrantSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jina_connectors.ingestion.writer

    monkeypatch.setattr(jina_connectors.ingestion.writer, "ABANDON_WAIT_SECONDS", 0.5)
    stuck = _StuckSink(sink)

    def documents() -> Iterator[dict[str, Any]]:
        yield from CORPUS_V1[:2]  # the writer hangs on the first, the second waits in the queue
        stuck.stuck.wait(30)
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            ingest(
                documents(), stuck, model=minilm, batch_size=1, max_pending_batches=1, **SETTINGS
            )  # type: ignore[arg-type]
        except BaseException as error:
            outcome.append(error)

    caller = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    caller.start()
    caller.join(20)
    try:
        assert not caller.is_alive(), "ingest hung behind the stuck writer"
        assert [type(e) for e in outcome] == [IngestInterrupted]  # a KeyboardInterrupt
        assert time.monotonic() - started < 15
    finally:
        stuck.release.set()
