"""The two write paths of :func:`~jina_connectors.ray.ingest_dataset`: from Ray write tasks
(a database server) or from the driver (an embedded database)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import ray
import ray.data
from ray.data import Dataset, TaskPoolStrategy
from ray.data.block import BlockAccessor
from ray.data.datasource import Datasink

from ..errors import InvalidDocumentError
from ..ingestion.documents import Document
from ..ingestion.options import (
    BadRecords,
    EmbeddingSettings,
    bad_record_logger,
)
from ..ingestion.run import IngestReport
from ..ingestion.stages import (
    PreparedDocument,
    changed_documents,
    check_records,
    metadata_error,
    prepare_document,
)
from ..ingestion.writer import BackgroundWriter, write_job
from ..sinks.base import VectorSink
from .actor import _embedded
from .plan import TASK_CPUS, WRITES_PER_ACTOR, ActorResources
from .rows import (
    _Columns,
    _metadata_json,
    _read_rows,
    _read_stream,
    _write_job_of,
)

if TYPE_CHECKING:
    from .engine import _Options


@dataclass
class RayIngestReport(IngestReport):
    """:class:`~jina_connectors.ingestion.run.IngestReport` of a Ray run, plus where the writes
    ran (``"workers"``: Ray write tasks; ``"driver"``: this process's background writer),
    why, and the actor pool used."""

    write_path: Literal["workers", "driver"] = "driver"
    write_path_reason: str = ""
    resources: ActorResources | None = None


@contextlib.contextmanager
def _run_context(ds: Dataset, show_progress: bool) -> Iterator[None]:
    """Ray Data's settings for one run of ours, restored after: its progress bars on or off,
    and the actors' own exceptions raised as they are (an ``InvalidDocumentError`` of
    ``on_error="raise"``), not wrapped in a ``UserCodeException`` that loses them."""
    context = ds.context
    saved = context.enable_progress_bars, context.raise_original_map_exception
    context.enable_progress_bars = show_progress
    context.raise_original_map_exception = True
    try:
        yield
    finally:
        context.enable_progress_bars, context.raise_original_map_exception = saved


# -- the workers path --------------------------------------------------------------------


@dataclass
class _WriteSummary:
    """What one write task did (returned to the driver)."""

    documents: int = 0
    skipped: int = 0
    chunks: int = 0
    points_written: int = 0
    errors: list[InvalidDocumentError] = field(default_factory=list)


class _ChunkDatasink(Datasink[_WriteSummary]):
    """Writes the ingestion stream from Ray write tasks: each task opens the sink, writes
    every block's documents as one :func:`~jina_connectors.ingestion.writer.write_job`
    (upserts, then the stale-chunk deletion), and returns its counts and bad records."""

    def __init__(
        self,
        opener: Callable[[], VectorSink],
        settings: EmbeddingSettings,
        *,
        write_batch_size: int,
        on_error: str,
    ) -> None:
        self._opener = opener
        self._settings = settings
        self._write_batch_size = write_batch_size
        self._on_error = on_error
        self.summary = _WriteSummary()

    def get_name(self) -> str:
        return "JinaConnectorsSink"

    def write(self, blocks: Iterable[Any], ctx: Any) -> _WriteSummary:
        summary = _WriteSummary()
        # Raised, or returned to the driver (which logs them).
        bad = BadRecords(self._on_error, summary.errors, log=False)
        sink = self._opener()
        try:
            for block in blocks:
                accessor = BlockAccessor.for_block(block)
                if accessor.num_rows() == 0:
                    continue
                stream = _read_stream(accessor.to_numpy(), self._settings)
                summary.skipped += stream.skipped
                summary.chunks += stream.chunks
                summary.documents += stream.skipped + stream.embedded
                for error, counted in stream.bad:
                    summary.documents += counted
                    bad.add(error)
                if stream.documents:
                    outcome = write_job(
                        sink,
                        _write_job_of(stream.documents, 0),
                        write_batch_size=self._write_batch_size,
                    )
                    summary.points_written += outcome.points_written
                    for error in outcome.errors:
                        bad.add(error)
        finally:
            sink.close()
        return summary

    def on_write_complete(self, write_result: Any) -> None:
        for part in write_result.write_returns:
            self.summary.documents += part.documents
            self.summary.skipped += part.skipped
            self.summary.chunks += part.chunks
            self.summary.points_written += part.points_written
            self.summary.errors.extend(part.errors)


def _invalid_document_in(error: BaseException) -> InvalidDocumentError | None:
    """The InvalidDocumentError a failed Ray job was failed by (Ray wraps it), if any."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, InvalidDocumentError):
            return InvalidDocumentError(current.record, current.reason)
        pending += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None


def _ingest_from_workers(
    ds: Dataset, options: _Options, opener: Callable[[], VectorSink]
) -> RayIngestReport:
    on_error = options.options.on_error
    job = options.job(opener=opener, with_status=True)
    datasink = _ChunkDatasink(
        opener,
        options.settings,
        write_batch_size=options.options.write_batch_size,
        on_error=on_error,
    )
    with _run_context(ds, options.options.show_progress):
        try:
            _embedded(ds, options, job).write_datasink(
                datasink,
                ray_remote_args={"num_cpus": TASK_CPUS},
                concurrency=WRITES_PER_ACTOR * options.resources.actors,
            )
        except Exception as error:
            bad = _invalid_document_in(error) if on_error == "raise" else None
            if bad is not None:
                raise bad from error
            raise
    summary = datasink.summary
    report = RayIngestReport(write_path="workers")
    report.documents = summary.documents
    report.skipped = summary.skipped
    report.chunks = summary.chunks
    report.points_written = summary.points_written
    for error in summary.errors:
        bad_record_logger.warning("skipped bad record %s", error)
    report.errors = list(summary.errors)
    return report


# -- the driver path ---------------------------------------------------------------------


def _hash_rows(
    table: pa.Table, settings: EmbeddingSettings, columns: _Columns
) -> dict[str, np.ndarray]:
    """The driver path's first pass (a Ray task): each row's id, content hash, metadata and
    name, or the bad record it is (``counted``: a valid document that failed later)."""
    out: dict[str, list[Any]] = {
        "doc_id": [],
        "content_hash": [],
        "metadata": [],
        "record": [],
        "error": [],
        "counted": [],
    }

    def add(
        doc_id: str, digest: str, metadata: str, record: str, error: str, counted: bool
    ) -> None:
        for name, value in zip(out, (doc_id, digest, metadata, record, error, counted)):
            out[name].append(value)

    texts: dict[str, str] = {}  # the input's metadata JSON, passed on as it is
    for item in _read_rows(table, columns, texts):
        if isinstance(item, InvalidDocumentError):
            add("", "", "", item.record, item.reason, False)
            continue
        try:
            prepared = prepare_document(item, settings)
        except InvalidDocumentError as error:
            add(item.id, "", "", error.record, error.reason, True)
            continue
        record = item.record or item.id
        metadata = texts.get(item.id) or _metadata_json(item.metadata)
        add(item.id, prepared.content_hash, metadata, record, "", True)
    return {
        name: np.asarray(values, dtype=bool if name == "counted" else object)
        for name, values in out.items()
    }


@dataclass
class _Seen:
    content_hash: str
    record: str
    rows: list[str]


def _documents_to_embed(
    ds: Dataset,
    sink: VectorSink,
    options: _Options,
    report: RayIngestReport,
    bad: Callable[[InvalidDocumentError], None],
) -> set[str]:
    """The first pass: hash every row in Ray tasks; here, check metadata against the sink,
    find repeated ids, and look the hashes up (:func:`changed_documents`). Returns the ids
    to embed; counts documents and skipped ones into ``report``."""
    hashes = ds.map_batches(
        _hash_rows,
        fn_kwargs={"settings": options.settings, "columns": options.columns},
        batch_format="pyarrow",
        num_cpus=TASK_CPUS,
        # One task per core the pool has: hashing is cheap, and each task is a process.
        compute=TaskPoolStrategy(
            size=max(1, options.resources.threads or 1) * options.resources.actors
        ),
    )
    seen: dict[str, _Seen] = {}
    for batch in hashes.iter_batches(batch_size=1024, batch_format="numpy"):
        for i in range(len(batch["doc_id"])):
            record = str(batch["record"][i])
            if batch["error"][i]:
                report.documents += bool(batch["counted"][i])
                bad(InvalidDocumentError(record, str(batch["error"][i])))
                continue
            doc_id = str(batch["doc_id"][i])
            metadata = json.loads(batch["metadata"][i])
            problem = metadata_error(sink, Document(doc_id, "", metadata, record))
            if problem is not None:
                bad(problem)
                continue
            if doc_id in seen:
                seen[doc_id].rows.append(record)
            else:
                seen[doc_id] = _Seen(str(batch["content_hash"][i]), record, [record])
    unique: list[PreparedDocument] = []
    for doc_id, entry in seen.items():
        if len(entry.rows) > 1:
            for record in entry.rows:
                bad(
                    InvalidDocumentError(
                        record,
                        f"duplicate document id {doc_id!r} ({len(entry.rows)} rows: "
                        f"{', '.join(entry.rows[:5])})",
                    )
                )
            continue
        report.documents += 1
        document = Document(doc_id, "", {}, entry.record)
        unique.append(PreparedDocument(document, entry.content_hash))
    todo: set[str] = set()
    page = 1000
    for start in range(0, len(unique), page):
        changed = changed_documents(sink, unique[start : start + page])
        todo.update(p.document.id for p in changed)
    report.skipped += len(unique) - len(todo)
    return todo


def _ingest_from_driver(ds: Dataset, sink: VectorSink, options: _Options) -> RayIngestReport:
    from tqdm import tqdm

    run = options.options
    on_error, show_progress = run.on_error, run.show_progress
    report = RayIngestReport(write_path="driver")
    policy = run.bad_records()
    report.errors = policy.errors
    lock = threading.Lock()  # the writer thread reports too
    bad = policy.add

    with _run_context(ds, show_progress):
        todo = _documents_to_embed(ds, sink, options, report, bad)
        if not todo:
            return report
        job = options.job(with_status=True)
        chunks = _embedded(ds, options, job, todo=ray.put(frozenset(todo)))
        with tqdm(
            desc=f"ingest → {sink.collection}",
            total=len(todo),
            unit="doc",
            disable=not show_progress,
            dynamic_ncols=True,
        ) as bar:

            def on_written(documents: int, points: int) -> None:
                with lock:
                    report.points_written += points
                bar.update(documents)

            with BackgroundWriter(
                sink,
                write_batch_size=run.write_batch_size,
                max_pending=run.max_pending_batches,
                on_written=on_written,
                on_bad=bad,
            ) as writer:
                try:
                    batches = chunks.iter_batches(batch_size=None, batch_format="numpy")
                    for batch in batches:
                        if not len(batch["kind"]):
                            continue
                        stream = _read_stream(batch, options.settings)
                        for error, _ in stream.bad:
                            bad(error)
                        accepted = check_records(sink, stream.documents, bad)
                        job_ = _write_job_of(accepted, stream.embedded)
                        report.chunks += len(job_.records)
                        writer.put(job_)
                except Exception as error:
                    found = _invalid_document_in(error) if on_error == "raise" else None
                    if found is not None:
                        raise found from error
                    raise
    return report
