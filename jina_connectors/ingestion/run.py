"""One ingest run: :func:`ingest` reads documents, runs the stages (:mod:`.stages`) on
batches and writes them on the background writer (:mod:`.writer`); :class:`IngestReport`
says what it did. See :mod:`jina_connectors.ingest` for the guarantees this gives.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import EmptyDocumentError, IdSchemeError, InvalidDocumentError
from ..sinks.base import VectorSink
from ..sinks.records import chunk_id
from ..sinks.search import resolve_embedder
from .documents import (
    CheckedSources,
    DocumentSource,
    SyncScope,
    check_sources,
    document_files,
    file_id,
    file_id_spellings,
    given_paths,
    input_size,
)
from .options import IngestOptions, sink_options
from .progress import IngestProgress
from .stages import document_batches, embed_batch
from .writer import BackgroundWriter, WriteJob

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from embedder_core import Embedder

    from .options import IngestKeywords


@dataclass
class IngestReport:
    """What one :func:`ingest` run did.

    ``documents``: valid documents read; ``skipped``: those already stored unchanged;
    ``completed``: documents now stored complete (written by this run, or unchanged);
    ``chunks``: chunks embedded; ``points_written``: points upserted; ``errors``: one
    :class:`InvalidDocumentError` per bad record (skipped, the rest was ingested);
    ``empty``: one :class:`EmptyDocumentError` per empty or whitespace-only file (nothing to
    store; not a bad record). With ``sync=True``: ``synced`` says whether the deletion ran,
    ``deleted_documents``/``deleted_points`` what it deleted, ``kept_documents`` the
    documents it did not delete because a bad record may still hold them (see
    :func:`ingest`).
    """

    documents: int = 0
    chunks: int = 0
    points_written: int = 0
    skipped: int = 0
    completed: int = 0
    seconds: float = 0.0
    errors: list[InvalidDocumentError] = field(default_factory=list)
    empty: list[EmptyDocumentError] = field(default_factory=list)
    synced: bool = False
    deleted_documents: int = 0
    deleted_points: int = 0
    kept_documents: int = 0

    @property
    def points_per_second(self) -> float:
        return self.points_written / self.seconds if self.seconds > 0 else 0.0


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C (``KeyboardInterrupt``) during :func:`ingest`, with the report of what was
    stored until then (``report.completed`` documents are complete). Running the same ingest
    again completes it: complete documents are skipped, the others are written again."""

    def __init__(self, report: IngestReport) -> None:
        super().__init__(f"interrupted after {report.completed} complete documents")
        self.report = report


# --------------------------------------------------------------------------------------
# The whole pipeline
# --------------------------------------------------------------------------------------


def ingest(
    documents: DocumentSource | Iterable[DocumentSource] | CheckedSources,
    sink: VectorSink,
    *,
    model: str | Embedder | None = None,
    options: IngestOptions | None = None,
    **keywords: Unpack[IngestKeywords],
) -> IngestReport:
    """Chunk, embed (``retrieval.passage``) and write ``documents`` into ``sink``.

    The options are :class:`~jina_connectors.ingestion.options.IngestOptions`' fields,
    given as keywords (``chunk_size=128``), as ``options=IngestOptions(...)``, or both (the
    keywords win); they are checked before anything is read.

    Args:
        documents: texts, ``{"id", "text", "metadata"}`` records, ``Path``s of
            ``.txt``/``.md``/``.jsonl`` files or folders, or an iterable of those (see
            :func:`~jina_connectors.ingestion.documents.iter_documents` for the document
            ids). Streams are read lazily, ``batch_size`` documents at a time.
        sink: where to write (``QdrantSink``, ``MilvusSink``, ``PineconeSink``...). A
            missing collection is created by the first write, so a run that writes nothing
            (bad input, Ctrl-C before the first write) leaves no empty collection behind.
        model: model id/path or a loaded ``Embedder``; None: the default model.
        dimensions: Matryoshka width; None: the model's full width.
        embedding_type: ``"float"`` (cosine) or ``"ubinary"`` (packed bits, Hamming), if the
            sink supports it.
        late_chunking: embed each document whole and pool per chunk (default), or embed each
            chunk on its own.
        late_chunking_options: the core's per-call late-chunking options (window and
            overlap of long documents), passed to the embedder as given; None: its defaults.
        chunker: ``"sentences"``, ``"tokens"``, or a callable returning ``(start, end)``
            character spans of a text; chunk_size: maximum tokens per chunk of the built-in
            chunkers. A custom chunker's spans are part of each document's content hash.
        batch_size: documents embedded together; write_batch_size: points per write;
        max_pending_batches: embedded batches waiting for the background writer.
        on_error: ``"skip"`` records each bad record in ``report.errors`` and goes on;
            ``"raise"`` raises its :class:`InvalidDocumentError`.
        show_progress: show a progress bar (input bytes, with total and ETA).
        root: make file ids relative to this folder instead of absolute paths (portable
            across machines and moves); a file outside it raises :class:`SourcePathError`.
        sync: ``documents`` must be paths; after a complete run, delete the stored documents
            whose ids those paths own (:func:`~jina_connectors.ingestion.documents.sync_scope`: the
            files under a folder, the lines of a ``.jsonl`` file, a file itself) that this
            run did not read, such as deleted files and files now empty. A bad record keeps
            only what it may still hold: the stored document of its file, or the lines of
            its ``.jsonl`` file (``report.kept_documents``); the rest is synced.

    A path that does not exist, is not a ``.txt``/``.md``/``.jsonl`` file or a folder, or
    lies outside ``root`` raises :class:`SourcePathError` before anything is written (in a
    generator of sources: when it is reached). Bad records are input that cannot be stored:
    an invalid record, metadata the database cannot hold, a document the embedder rejects
    as input (:func:`is_input_error`), a record the sink's checks refuse, or a document the
    database refuses. Any other error (a bug, an unreachable database) stops the run.
    Unchanged documents are skipped, changed ones replace all their old chunks, and a run
    killed at any point is completed by running it again (see
    :mod:`jina_connectors.ingest`); Ctrl-C raises :class:`IngestInterrupted` with the report.
    """
    options = sink_options(options, keywords)
    sources = check_sources(documents, root=options.root, sync=options.sync)
    root = sources.root
    check_id_scheme(sink, sources, root)
    embedder = resolve_embedder(model)
    settings = options.settings(embedder)
    sink.ensure_collection(settings.spec, lazy=True)

    report = IngestReport()
    bad = options.bad_records()
    report.errors = bad.errors
    report_lock = threading.Lock()  # the writer thread reports too
    seen: set[str] = set()
    on_bad = bad.add

    def on_empty(empty: EmptyDocumentError) -> None:
        report.empty.append(empty)  # its few bytes count when the bar closes

    started = time.perf_counter()
    progress = IngestProgress(
        input_size(sources),
        description=f"ingest → {sink.collection}",
        enabled=options.show_progress,
    )

    def on_written(documents: int, points: int) -> None:
        with report_lock:
            report.points_written += points
            report.completed += documents
            counts = {"docs": report.completed, "points": report.points_written}
        progress.stats(**counts)

    batches = document_batches(
        sources, options.batch_size, sink, on_bad, root=root, on_empty=on_empty
    )
    complete = False
    try:
        with BackgroundWriter(
            sink,
            write_batch_size=options.write_batch_size,
            max_pending=options.max_pending_batches,
            on_written=on_written,
            on_bad=on_bad,
        ) as writer:
            for batch in batches:
                report.documents += len(batch)
                seen.update(document.id for document in batch)
                result = embed_batch(
                    embedder, settings, batch, on_bad, sink=sink, progress=progress
                )
                report.skipped += result.skipped
                # Documents refused as bad records are not complete.
                job = WriteJob.of(
                    [(p.source, r) for p, r in result.embedded],
                    completes=result.skipped + len(result.embedded),
                )
                report.chunks += len(job.records)
                writer.put(job)
        if sources.scopes:
            delete_unseen(sink, sources.scopes, seen, report)
        complete = True
    except KeyboardInterrupt as interrupt:
        report.seconds = time.perf_counter() - started
        raise IngestInterrupted(report) from interrupt
    finally:
        batches.close()
        progress.close(complete=complete)
    report.seconds = time.perf_counter() - started
    return report


#: Files of a run whose other ids :func:`check_id_scheme` looks up: a collection written
#: with another id scheme shows in its first files already, and the check stays O(1).
ID_SCHEME_SAMPLE = 64


def check_id_scheme(
    sink: VectorSink, documents: object, root: str | os.PathLike[str] | None
) -> None:
    """Raise :class:`~jina_connectors.errors.IdSchemeError` when the collection holds a
    ``.txt``/``.md`` file of ``documents`` under another id than this run gives it (ingested
    without ``root`` and now with one, the other way round, or with another root), before
    anything is written: the file would be stored twice. One lookup of at most
    :data:`ID_SCHEME_SAMPLE` files' other ids (every folder above each could have been a
    root)."""
    files = (f for f in document_files(given_paths(documents)) if f.suffix.lower() != ".jsonl")
    others: dict[str, tuple[Path, str, str]] = {}  # chunk 0 id -> (file, its id, other id)
    for file in itertools.islice(files, ID_SCHEME_SAMPLE):
        try:
            own = file_id(file, root)
        except ValueError:  # outside the root: a bad record of the run itself
            continue
        for other in file_id_spellings(file):
            if other != own:
                others[chunk_id(other, 0)] = (file, own, other)
    if not others:
        return
    for point in sink.fetch_states(list(others)):
        file, own, stored = others[point]
        absolute = file.resolve().as_posix()
        stored_root = None if stored == absolute else absolute[: -len(stored)].rstrip("/") or "/"
        raise IdSchemeError(sink._where(), str(file), stored, own, stored_root)


def delete_unseen(
    sink: VectorSink, scopes: Sequence[SyncScope], seen: set[str], report: IngestReport
) -> None:
    """The deletion of ``sync=True``: stored documents in the scopes that the run did not
    read, except those a bad record of the run may still hold (an unreadable file would
    look deleted): the id of its file or document, and the lines of its ``.jsonl`` file.
    A bad record without a ``source_id`` (a record given directly, not read from a file)
    can hold nothing the scopes own."""
    kept_ids = {e.source_id for e in report.errors if e.source_id is not None}
    kept_prefixes = tuple(f"{source}:" for source in kept_ids)
    stored: dict[str, int] = {}
    for prefix, pattern in scopes:
        for doc_id, points in sink.document_points(prefix).items():
            if pattern.fullmatch(doc_id):
                stored[doc_id] = points
    unseen = sorted(set(stored) - seen)
    kept = [d for d in unseen if d in kept_ids or d.startswith(kept_prefixes)]
    doomed = sorted(set(unseen) - set(kept))
    if doomed:
        sink.delete_documents(doomed)
    report.synced = True
    report.deleted_documents = len(doomed)
    report.deleted_points = sum(stored[doc_id] for doc_id in doomed)
    report.kept_documents = len(kept)
