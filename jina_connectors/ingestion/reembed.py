"""Re-embed a collection with another model: read its chunks back, write them into a new one.

``reembed(old_sink, new_sink, model=...)`` moves a collection to another model (from
jina-embeddings-v2 to v3, for example) without the source files: every document is read back
from the old collection (its chunks' texts, offsets and metadata), embedded with the new model
and written into the new collection with the same point ids and payloads. Only what records
the model changes: ``model``, ``task``, ``dimensions``, ``embedding_type`` and
``content_hash``.

It runs the ingestion pipeline's own stages (:mod:`jina_connectors.ingestion.stages`): a document
whose chunks are stored complete in the new collection with the same content hash is skipped
(:func:`~jina_connectors.ingestion.stages.changed_documents`), the others are embedded
(:func:`~jina_connectors.ingestion.stages.embed_isolating`) and written by the background writer
(upsert, then stale-chunk deletion). So a run is idempotent, and an interrupted run is
completed by running it again, exactly as for :func:`~jina_connectors.ingestion.run.ingest`.

How a document is rebuilt: its chunks keep their boundaries (the ``start``/``end`` stored
with each chunk), which the new model embeds as a custom chunker's spans. With late chunking
(the default) the new model reads the whole document, so the document's text is rebuilt from
its chunks at their offsets; the characters between two chunks are not stored (the
whitespace a chunker leaves between sentences), so they become spaces.

Reading: the old collection is scanned once for the ids, documents and chunk numbers of its
points (:meth:`~jina_connectors.sink.VectorSink.read_points`, O(points) small values in
memory), then the payloads of ``batch_size`` documents at a time are fetched by id
(:meth:`~jina_connectors.sink.VectorSink.fetch_points`), so only those documents' texts are
held at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from ..errors import CollectionMismatchError, InvalidDocumentError
from ..sinks.base import VectorSink
from ..sinks.records import PASSAGE_TASK, ChunkRecord, CollectionSpec
from ..sinks.search import resolve_embedder
from .documents import Document
from .options import EmbeddingSettings, IngestOptions
from .run import IngestInterrupted, IngestReport
from .stages import (
    PreparedDocument,
    changed_documents,
    check_records,
    content_hash,
    embed_isolating,
    metadata_error,
)
from .writer import BackgroundWriter, WriteJob

if TYPE_CHECKING:
    from embedder_core import Embedder, LateChunkingOptions

logger = logging.getLogger("jina_connectors.reembed")

__all__ = ["TextsNotStoredError", "reembed", "source_spec"]

#: The payload keys read in the first pass over the old collection.
INDEX_FIELDS = ("doc_id", "chunk_index", "chunk_count")
#: Points whose texts are checked before the model loads.
TEXT_SAMPLE = 16


class TextsNotStoredError(ValueError):
    """The old collection does not store its chunks' texts (or not whole), so they cannot be
    embedded again: ingest the source documents with the new model instead.

    Raised before any model is loaded or anything is written, from a sample of the old
    collection's points; a document found later without its whole texts (a Pinecone text cut
    to fit the metadata limit) is a bad record of the run instead.
    """

    def __init__(self, collection: str, reason: str) -> None:
        super().__init__(
            f"collection {collection!r} does not store the texts of its chunks ({reason}), so "
            "they cannot be embedded again; ingest the source documents with the new model "
            "instead"
        )
        self.collection = collection
        self.reason = reason


def _stored_chunks(text: str) -> list[tuple[int, int]]:
    """The custom chunker of re-embedding: never called, each document comes with the spans
    stored in the old collection (it marks the settings, and so the hash, as custom spans)."""
    raise RuntimeError("reembed passes each document's stored chunk spans")


def source_spec(source: VectorSink) -> CollectionSpec:
    """The spec recorded in the old collection, after checking that it can be re-embedded:
    it exists, holds points written by jina-connectors, and stores their texts. Raises
    ``ValueError`` (missing or empty), :class:`CollectionMismatchError` (foreign points) or
    :class:`TextsNotStoredError`; loads no model."""
    spec = source.stored_spec()
    if spec is None:
        if source.count() == 0:
            raise ValueError(f"{source._where()} is missing or empty; nothing to re-embed")
        raise CollectionMismatchError(
            f"{source._where()} holds points not written by jina-connectors; only its own "
            "collections can be re-embedded"
        )
    with closing(source.read_points(page_size=TEXT_SAMPLE)) as pages:
        sample = next(pages, [])
    for point in sample:
        reason = _missing_text(point.payload)
        # A text cut short (Pinecone's metadata limit) is one document's problem, not the
        # collection's: that document becomes a bad record of the run.
        if reason is not None and not reason.startswith(_CUT):
            raise TextsNotStoredError(source.collection, f"point {point.id}: {reason}")
    return spec


_CUT = "its text holds"


def _missing_text(payload: Mapping[str, Any]) -> str | None:
    """Why a point's payload lacks its chunk's whole text; None when the text is there."""
    text = payload.get("text")
    try:
        length = int(payload["end"]) - int(payload["start"])
    except (KeyError, TypeError, ValueError):
        return "no start/end offsets"
    if not isinstance(text, str) or (not text and length > 0):
        return "no text"
    if payload.get("text_truncated") or len(text) != length:
        return f"{_CUT} {len(text)} of the chunk's {length} characters"
    return None


@dataclass(frozen=True)
class _Chunk:
    id: str
    index: int
    count: int


def reembed(
    source: VectorSink,
    target: VectorSink,
    *,
    model: str | Embedder | None = None,
    task: str = PASSAGE_TASK,
    dimensions: int | None = None,
    embedding_type: Literal["float", "ubinary"] | None = None,
    late_chunking: bool = True,
    late_chunking_options: LateChunkingOptions | None = None,
    batch_size: int = 16,
    write_batch_size: int = 256,
    max_pending_batches: int = 2,
    on_error: Literal["skip", "raise"] = "skip",
    show_progress: bool = True,
) -> IngestReport:
    """Embed every document of ``source`` again with ``model`` and write it into ``target``,
    keeping point ids and payloads (see the module).

    Args:
        source: the old collection (read only).
        target: the new collection; created by the first write. An existing one must hold
            vectors of the same model and settings (:class:`CollectionMismatchError`).
            Sinks of one embedded store share its client: ``QdrantSink("new",
            client=old.client)``.
        model: model id/path or a loaded ``Embedder``; None: the default model.
        task, dimensions: as for ``ingest`` (``retrieval.passage``; the model's full width).
        embedding_type: ``"float"`` or ``"ubinary"``; None: the old collection's.
        late_chunking: embed each rebuilt document whole and pool per stored chunk
            (default), or each chunk's text on its own.
        batch_size: documents per batch, as for ``ingest``; so are ``late_chunking_options``,
            ``write_batch_size``, ``max_pending_batches``, ``on_error`` and ``show_progress``.

    Returns the run's :class:`IngestReport`: ``documents`` read from ``source``,
    ``skipped`` already stored in ``target``, ``errors`` the bad records (a document stored
    incomplete in ``source``, or without its whole texts). Ctrl-C raises
    :class:`IngestInterrupted` with the report; running again completes the run.

    Before any model is loaded or anything written: ``ValueError`` for bad options, the same
    collection as source and target, or a missing or empty source;
    :class:`CollectionMismatchError` for a source of foreign points;
    :class:`TextsNotStoredError` when the source does not store its texts.
    """
    options = IngestOptions.of(
        task=task,
        dimensions=dimensions,
        embedding_type="float" if embedding_type is None else embedding_type,
        late_chunking=late_chunking,
        late_chunking_options=late_chunking_options,
        chunker=_stored_chunks,
        batch_size=batch_size,
        write_batch_size=write_batch_size,
        max_pending_batches=max_pending_batches,
        on_error=on_error,
        show_progress=show_progress,
    )
    if source._where() == target._where() or source is target:
        raise ValueError(
            f"source and target are the same {source._where()}; re-embed into a new collection"
        )
    old = source_spec(source)
    embedder = resolve_embedder(model)
    if embedding_type is None:
        options = replace(options, embedding_type=old.embedding_type)
    settings = options.settings(embedder)
    target.ensure_collection(settings.spec, lazy=True)

    report = IngestReport()
    lock = threading.Lock()  # the writer thread reports too

    bad = options.bad_records()
    report.errors = bad.errors
    on_bad = bad.add

    started = time.perf_counter()
    progress: _PointsProgress | None = None

    def on_written(completed: int, points: int) -> None:
        with lock:
            report.points_written += points
            report.completed += completed
            counts = {"docs": report.completed, "points": report.points_written}
        if progress is not None:
            progress.stats(**counts)

    complete = False
    try:
        with _PointsProgress(
            source.count(), description=f"reading {source.collection}", enabled=show_progress
        ) as reading:
            documents = _index_documents(source, on_bad, reading)
        progress = _PointsProgress(
            sum(len(chunks) for chunks in documents.values()),
            description=f"reembed {source.collection} → {target.collection}",
            enabled=show_progress,
        )
        with BackgroundWriter(
            target,
            write_batch_size=write_batch_size,
            max_pending=max_pending_batches,
            on_written=on_written,
            on_bad=on_bad,
        ) as writer:
            for batch in _batches(sorted(documents), batch_size):
                report.documents += len(batch)
                prepared = _read_documents(source, target, settings, batch, documents, on_bad)
                todo = changed_documents(target, [p for p, _ in prepared])
                report.skipped += len(prepared) - len(todo)
                stored = {p.document.id: chunks for p, chunks in prepared}
                embedded = [
                    (p, _as_stored(records, stored[p.document.id]))
                    for p, records in embed_isolating(embedder, settings, todo, on_bad)
                ]
                embedded = check_records(target, embedded, on_bad)
                job = WriteJob.of(
                    [(p.source, records) for p, records in embedded],
                    completes=len(prepared) - len(todo) + len(embedded),
                )
                report.chunks += len(job.records)
                writer.put(job)
                progress.done(sum(len(documents[doc_id]) for doc_id in batch))
        complete = True
    except KeyboardInterrupt as interrupt:
        report.seconds = time.perf_counter() - started
        raise IngestInterrupted(report) from interrupt
    finally:
        if progress is not None:
            progress.close(complete=complete)
    report.seconds = time.perf_counter() - started
    return report


def _index_documents(
    source: VectorSink,
    on_bad: Callable[[InvalidDocumentError], None],
    progress: _PointsProgress,
) -> dict[str, list[_Chunk]]:
    """Every document of ``source`` stored complete: its chunks ``0..n-1``, each recording
    ``chunk_count == n``. A document with missing, extra or disagreeing chunks (an ingest
    that did not finish) is a bad record."""
    chunks: dict[str, list[_Chunk]] = {}
    for page in source.read_points(INDEX_FIELDS):
        progress.done(len(page))
        for point in page:
            payload = point.payload
            doc_id = payload.get("doc_id")
            try:
                chunk = _Chunk(point.id, int(payload["chunk_index"]), int(payload["chunk_count"]))
            except (KeyError, TypeError, ValueError):
                chunk = None
            if not isinstance(doc_id, str) or chunk is None:
                on_bad(InvalidDocumentError(f"point {point.id}", "has no doc_id/chunk_index"))
                continue
            chunks.setdefault(doc_id, []).append(chunk)
    complete: dict[str, list[_Chunk]] = {}
    for doc_id, found in chunks.items():
        found.sort(key=lambda chunk: chunk.index)
        count = found[0].count
        if [c.index for c in found] == list(range(count)) and all(c.count == count for c in found):
            complete[doc_id] = found
            continue
        on_bad(
            InvalidDocumentError(
                doc_id,
                f"is stored incomplete in {source._where()} (chunks "
                f"{[c.index for c in found]} of {sorted({c.count for c in found})}); ingest it "
                "again to complete it, then re-embed",
            )
        )
    return complete


def _read_documents(
    source: VectorSink,
    target: VectorSink,
    settings: EmbeddingSettings,
    doc_ids: Sequence[str],
    index: Mapping[str, list[_Chunk]],
    on_bad: Callable[[InvalidDocumentError], None],
) -> list[tuple[PreparedDocument, list[dict[str, Any]]]]:
    """The documents rebuilt from their stored chunks, hashed with their stored spans, each
    with its chunks' stored ids and payloads (in chunk order)."""
    payloads = source.fetch_points([c.id for doc_id in doc_ids for c in index[doc_id]])
    prepared = []
    for doc_id in doc_ids:
        try:
            chunks = []
            for chunk in index[doc_id]:
                payload = payloads.get(chunk.id)
                if payload is None:
                    raise InvalidDocumentError(doc_id, f"chunk {chunk.index} vanished meanwhile")
                reason = _missing_text(payload)
                if reason is not None:
                    raise InvalidDocumentError(
                        doc_id, f"chunk {chunk.index} cannot be embedded again: {reason}"
                    )
                chunks.append({**payload, "id": chunk.id})
            document = Document(doc_id, _rebuild(doc_id, chunks), _metadata(chunks[0]))
            error = metadata_error(target, document)
            if error is not None:
                raise error
        except InvalidDocumentError as error:
            on_bad(error)
            continue
        spans = tuple((int(c["start"]), int(c["end"])) for c in chunks)
        digest = content_hash(document, settings, spans)
        prepared.append((PreparedDocument(document, digest, spans), chunks))
    return prepared


def _rebuild(doc_id: str, chunks: Sequence[Mapping[str, Any]]) -> str:
    """A document's text from its chunks at their offsets, spaces between them (the gaps are
    not stored). Overlapping chunks must agree on their shared characters."""
    text = ""
    for chunk in sorted(chunks, key=lambda c: int(c["start"])):
        start, piece = int(chunk["start"]), str(chunk["text"])
        if start >= len(text):
            text += " " * (start - len(text)) + piece
            continue
        shared = text[start : start + len(piece)]
        if not piece.startswith(shared):
            raise InvalidDocumentError(
                doc_id, f"chunks overlap at character {start} with different texts"
            )
        text += piece[len(shared) :]
    return text


def _metadata(payload: Mapping[str, Any]) -> dict[str, Any]:
    metadata = payload.get("metadata")
    return dict(metadata) if isinstance(metadata, Mapping) else {}


def _as_stored(records: list[ChunkRecord], chunks: list[dict[str, Any]]) -> list[ChunkRecord]:
    """The new records with their old points' ids and user metadata (the pipeline derives
    both the same way, so they are equal for points it wrote; this keeps them whatever)."""
    return [
        replace(record, id=chunk["id"], metadata=_metadata(chunk))
        for record, chunk in zip(records, chunks, strict=True)
    ]


def _batches(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class _PointsProgress:
    """A tqdm bar of the old collection's points done (embedded and queued, or skipped)."""

    def __init__(self, total: int, *, description: str, enabled: bool) -> None:
        from tqdm import tqdm

        self._lock = threading.Lock()  # the writer thread sets the counts
        self._bar: Any = tqdm(
            total=total,
            desc=description,
            unit="points",
            disable=not enabled,
            dynamic_ncols=True,
            mininterval=0.5,
            # tqdm's default (dynamic miniters) learns "iterations between prints" from one
            # burst, after which small batches may not redraw the bar again until the end.
            miniters=1,
        )
        self._stats: dict[str, int] = {}

    def done(self, points: int) -> None:
        with self._lock:
            self._bar.update(points)

    def stats(self, **counts: int) -> None:
        with self._lock:
            self._stats.update(counts)
            self._bar.set_postfix(self._stats, refresh=False)

    def __enter__(self) -> _PointsProgress:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close(complete=exc_type is None)

    def close(self, *, complete: bool) -> None:
        with self._lock:
            if complete and self._bar.total is not None and self._bar.n < self._bar.total:
                self._bar.update(self._bar.total - self._bar.n)  # bad records count as read
            self._bar.close()
