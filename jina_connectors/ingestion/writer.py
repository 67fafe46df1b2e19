"""Writing embedded documents to a sink: one write job at a time, on a background thread
while the caller embeds the next batch.

The write protocol every path uses (:func:`write_job`): upsert every chunk of the job's
documents, then delete each document's chunks past its new chunk count. A record the
database refuses makes only its own document a bad record; the rest of the job is stored.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import InvalidDocumentError
from ..sinks.base import VectorSink
from ..sinks.records import ChunkRecord

logger = logging.getLogger("jina_connectors.writer")

#: Seconds the caller waits for the writer to finish its current request after the caller
#: failed or was interrupted (Ctrl-C). Whatever it leaves undone, the next run completes.
ABANDON_WAIT_SECONDS = 5.0
#: How often a waiting caller wakes up (to see a writer error, or to let Ctrl-C in).
_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class WriteJob:
    """The chunks of some documents, to be written together.

    ``records``: every chunk of each document (complete documents only); ``keep``: each
    document's chunk count, for the stale-chunk deletion after the upserts; ``sources``: how
    error messages name each document (``"a.jsonl:3"``); ``documents``: how many input
    documents this job completes, written or found unchanged (for the report).
    """

    records: list[ChunkRecord]
    keep: dict[str, int]
    sources: dict[str, str] = field(default_factory=dict)
    documents: int = 0

    @classmethod
    def of(
        cls, documents: Sequence[tuple[str, Sequence[ChunkRecord]]], *, completes: int = 0
    ) -> WriteJob:
        """A job from ``(source name, the document's records)`` pairs.

        A document's records may be only some of its chunks (the Ray engine can get a
        document's chunks in two blocks): ``keep`` is the ``chunk_count`` they record, never
        how many are here, so the stale-chunk deletion spares the chunks written elsewhere.
        Deleting chunks ``>= chunk_count`` before all chunks are written is safe: the
        document stays incomplete until they are, so a killed run re-embeds it.
        """
        records: list[ChunkRecord] = []
        keep: dict[str, int] = {}
        sources: dict[str, str] = {}
        for source, chunks in documents:
            if not chunks:
                continue
            records.extend(chunks)
            keep[chunks[0].doc_id] = chunks[0].chunk_count
            sources[chunks[0].doc_id] = source
        return cls(records, keep, sources, completes)


@dataclass
class WriteOutcome:
    """What :func:`write_job` stored: points written, and the documents the database refused."""

    points_written: int = 0
    errors: list[InvalidDocumentError] = field(default_factory=list)


def write_job(sink: VectorSink, job: WriteJob, *, write_batch_size: int) -> WriteOutcome:
    """Write one job: upserts of at most ``write_batch_size`` points, then the stale-chunk
    deletion of every document whose chunks were all written.

    When the database refuses an upsert because of what a record holds
    (``sink.is_record_error``), the upsert is retried in halves, document by document, until
    the refusing documents are found; each becomes an :class:`InvalidDocumentError` in the
    outcome and the others are stored. A refused document may be left with some of its new
    chunks written: it is incomplete, so a later run re-embeds it. If every document of a
    job of several is refused, the database is refusing everything, not some records: the
    first error is raised. Other errors are raised as they are.
    """
    refused: dict[str, BaseException] = {}
    written = 0
    records = job.records
    for start in range(0, len(records), write_batch_size):
        written += _upsert_isolating(sink, records[start : start + write_batch_size], refused)
    if refused and len(refused) == len(job.keep) > 1:
        raise next(iter(refused.values()))
    keep = {doc_id: n for doc_id, n in job.keep.items() if doc_id not in refused}
    if keep:
        sink.delete_stale(keep)
    errors = [
        InvalidDocumentError(
            job.sources.get(doc_id, doc_id),
            f"document {doc_id!r} was refused by the database: {error}",
        )
        for doc_id, error in refused.items()
    ]
    return WriteOutcome(written, errors)


def _upsert_isolating(
    sink: VectorSink, records: Sequence[ChunkRecord], refused: dict[str, BaseException]
) -> int:
    records = [r for r in records if r.doc_id not in refused]
    if not records:
        return 0
    try:
        sink.upsert(records)
        return len(records)
    except Exception as error:
        if not sink.is_record_error(error):
            raise
        doc_ids = list(dict.fromkeys(r.doc_id for r in records))
        if len(doc_ids) == 1:
            refused[doc_ids[0]] = error
            return 0
        logger.warning(
            "%s refused a write of %d points of %d documents (%s); writing them in smaller "
            "groups to find the refused document",
            type(sink).__name__,
            len(records),
            len(doc_ids),
            error,
        )
        first = set(doc_ids[: len(doc_ids) // 2])
        return _upsert_isolating(
            sink, [r for r in records if r.doc_id in first], refused
        ) + _upsert_isolating(sink, [r for r in records if r.doc_id not in first], refused)


class BackgroundWriter:
    """Runs :func:`write_job` on a background thread while the caller embeds the next batch.

    The queue is bounded (``max_pending`` jobs), so embedding never runs far ahead of the
    database. ``on_written(documents, points)`` and ``on_bad(error)`` are called on the writer
    thread after each job; an exception from them, or a write error, stops the writer and is
    raised in the caller's thread (at its next :meth:`put`, or when the ``with`` block ends).

    When the ``with`` block ends with an exception (a bad record with ``on_error="raise"``,
    Ctrl-C), queued jobs are dropped and the caller waits at most
    :data:`ABANDON_WAIT_SECONDS` for the request in progress; the caller's exception always
    propagates. Every wait wakes up regularly, so Ctrl-C is never stuck behind the writer.
    """

    def __init__(
        self,
        sink: VectorSink,
        *,
        write_batch_size: int,
        max_pending: int,
        on_written: Callable[[int, int], None] = lambda documents, points: None,
        on_bad: Callable[[InvalidDocumentError], None] = lambda error: None,
    ) -> None:
        self._sink = sink
        self._write_batch_size = write_batch_size
        self._on_written = on_written
        self._on_bad = on_bad
        self._jobs: queue.Queue[WriteJob | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._abandon = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="jina-connectors-writer", daemon=True
        )

    def __enter__(self) -> BackgroundWriter:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._abandon_and_wait()
            return  # the caller's exception propagates
        try:
            self._put(None)
            while self._thread.is_alive():
                self._thread.join(_POLL_SECONDS)
        except BaseException:
            self._abandon_and_wait()
            raise
        if self._error is not None:
            raise self._error

    def put(self, job: WriteJob) -> None:
        """Queue ``job``; waits while the queue is full; raises the writer's error if any."""
        self._put(job)

    def _put(self, job: WriteJob | None) -> None:
        while True:
            if self._error is not None:
                if job is None:
                    return  # the writer stopped; __exit__ raises its error
                raise self._error
            try:
                self._jobs.put(job, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _abandon_and_wait(self) -> None:
        self._abandon.set()
        while True:  # drop what is queued, so the end marker fits and nothing more is written
            try:
                self._jobs.get_nowait()
            except queue.Empty:
                break
        with contextlib.suppress(queue.Full):  # the queue was just drained
            self._jobs.put_nowait(None)
        self._thread.join(ABANDON_WAIT_SECONDS)
        if self._thread.is_alive():
            logger.warning(
                "the background writer is still in a database request after %.0f s; leaving "
                "it. Whatever it leaves undone, the next run completes.",
                ABANDON_WAIT_SECONDS,
            )

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is not None or self._abandon.is_set():
                continue
            try:
                outcome = write_job(self._sink, job, write_batch_size=self._write_batch_size)
                for error in outcome.errors:
                    self._on_bad(error)
                # Documents the database refused are bad records, not complete ones.
                self._on_written(job.documents - len(outcome.errors), outcome.points_written)
            except Exception as error:  # handed to the caller's thread
                self._error = error
            except BaseException as error:  # SystemExit and the like: hand over, then stop
                self._error = error
                return
