"""The stages of ingestion, each a public function, so that another engine (the Ray engine)
runs the same ones and keeps the same ids, hashes and completeness rule:

1. :func:`prepare_document`: a document's content hash, and a custom chunker's spans.
2. :func:`changed_documents`: the documents that are not stored complete with that hash.
3. :func:`embed_records`: chunks and vectors of a batch of documents, as
   :class:`~jina_connectors.sink.ChunkRecord` lists (:func:`embed_isolating` finds the bad
   documents of a batch that fails on bad input), checked against the sink's limits
   (:func:`check_records`). :func:`embed_batch` runs stages 1 to 3 on one batch.

The settings they run with are :meth:`IngestOptions.settings
<jina_connectors.ingestion.options.IngestOptions.settings>`; the writes are
:func:`~jina_connectors.ingestion.writer.write_job`'s; :mod:`.run` puts them together.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import EmptyDocumentError, InvalidDocumentError
from ..sinks.base import VectorSink
from ..sinks.records import PASSAGE_TASK, ChunkRecord, ChunkState, CollectionSpec, chunk_id
from .documents import CheckedSources, Document, DocumentSource, iter_documents
from .options import Chunker, EmbeddingSettings, IngestOptions, Span
from .progress import BatchProgress, IngestProgress

if TYPE_CHECKING:
    import numpy as np

    from embedder_core import Embedder, LateChunkingOptions


def resolve_settings(
    embedder: Embedder,
    *,
    dimensions: int | None = None,
    embedding_type: str = "float",
    late_chunking: bool = True,
    late_chunking_options: LateChunkingOptions | None = None,
    chunker: str | Chunker = "sentences",
    chunk_size: int = 256,
    task: str = PASSAGE_TASK,
) -> EmbeddingSettings:
    """``IngestOptions.of(...).settings(embedder)``: the options checked against
    ``embedder`` and frozen (kept for callers of the stages)."""
    return IngestOptions.of(
        dimensions=dimensions,
        embedding_type=embedding_type,
        late_chunking=late_chunking,
        late_chunking_options=late_chunking_options,
        chunker=chunker,
        chunk_size=chunk_size,
        task=task,
    ).settings(embedder)


def passage_spec(
    embedder: Embedder, dimensions: int | None = None, embedding_type: str = "float"
) -> CollectionSpec:
    """The collection spec :func:`ingest` writes with these settings (validated)."""
    return resolve_settings(embedder, dimensions=dimensions, embedding_type=embedding_type).spec


# --------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedDocument:
    """A document with its content hash; ``spans`` are a custom chunker's chunks (hashed)."""

    document: Document
    content_hash: str
    spans: tuple[Span, ...] | None = None

    @property
    def source(self) -> str:
        """How error messages name the document."""
        return self.document.record or self.document.id


def content_hash(
    document: Document, settings: EmbeddingSettings, spans: Sequence[Span] | None = None
) -> str:
    """SHA-256 of the document's text and metadata, every hashed setting, and the spans of a
    custom chunker: equal hashes mean equal chunks and vectors."""
    key = {
        "text": document.text,
        "metadata": dict(document.metadata),
        "settings": settings.fingerprint(),
        "spans": None if spans is None else [list(span) for span in spans],
    }
    # default=str: a setting of another type (an option object's field) still hashes by value.
    encoded = json.dumps(key, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8")
    return hashlib.sha256(encoded).hexdigest()


def prepare_document(document: Document, settings: EmbeddingSettings) -> PreparedDocument:
    """Hash ``document``. With a custom chunker, its spans are computed here, checked, and
    hashed: a chunker changed in any way (a new lambda, another ``functools.partial``) is seen
    by the chunks it makes, whatever its name. Spans that are not ``(start, end)`` character
    ranges of non-blank text, or none at all, raise :class:`InvalidDocumentError`; whatever
    the chunker itself raises propagates (it is the caller's code)."""
    if settings.custom_chunker is None:
        return PreparedDocument(document, content_hash(document, settings))
    spans = _checked_spans(document, settings.custom_chunker(document.text))
    return PreparedDocument(document, content_hash(document, settings, spans), spans)


def _checked_spans(document: Document, spans: Any) -> tuple[Span, ...]:
    source = document.record or document.id
    text = document.text
    checked: list[Span] = []
    try:
        items = list(spans)
    except TypeError:
        raise InvalidDocumentError(
            source, f"the chunker returned {type(spans).__name__}, not a list of spans"
        ) from None
    for i, span in enumerate(items):
        try:
            start, end = span
        except (TypeError, ValueError):
            raise InvalidDocumentError(
                source, f"chunker span {i} is {span!r}, not a (start, end) pair"
            ) from None
        if any(isinstance(v, bool) or not isinstance(v, int) for v in (start, end)):
            raise InvalidDocumentError(source, f"chunker span {i} {span!r} is not two integers")
        if not 0 <= start < end <= len(text):
            raise InvalidDocumentError(
                source,
                f"chunker span {i} ({start}, {end}) is empty or outside the text "
                f"(length {len(text)})",
            )
        if not text[start:end].strip():
            raise InvalidDocumentError(source, f"chunker span {i} ({start}, {end}) is blank")
        checked.append((int(start), int(end)))
    if not checked:
        raise InvalidDocumentError(source, "produced no chunks")
    return tuple(checked)


def changed_documents(
    sink: VectorSink, prepared: Sequence[PreparedDocument]
) -> list[PreparedDocument]:
    """The documents that are not stored complete with their current hash.

    A document is complete when chunks ``0..n-1`` all exist with its hash and
    ``chunk_count == n``, and chunk ``n`` does not exist. Two lookups per batch: every
    document's chunk 0, then the other chunks of the candidates and their chunk ``n``.
    """
    firsts = sink.fetch_states([chunk_id(p.document.id, 0) for p in prepared])
    candidates: list[tuple[PreparedDocument, int]] = []
    for p in prepared:
        first = firsts.get(chunk_id(p.document.id, 0))
        if first is not None and first.content_hash == p.content_hash and first.chunk_count >= 1:
            candidates.append((p, first.chunk_count))
    ids = [chunk_id(p.document.id, i) for p, n in candidates for i in range(1, n + 1)]
    rest = sink.fetch_states(ids) if ids else {}
    complete: set[str] = set()
    for p, n in candidates:
        expected = ChunkState(p.content_hash, n)
        doc_id = p.document.id
        if chunk_id(doc_id, n) not in rest and all(
            rest.get(chunk_id(doc_id, i)) == expected for i in range(1, n)
        ):
            complete.add(doc_id)
    return [p for p in prepared if p.document.id not in complete]


def is_input_error(error: BaseException) -> bool:
    """Whether an embedding failure is the input's fault, so only its document is a bad record.

    Input errors: :class:`InvalidDocumentError`, the core's ``TokenLimitError``, and a
    ``ValueError`` raised by ``embedder_core``'s own input checks (a span that covers no
    token, a piece that produces no tokens, an empty input). Every other exception (a
    ``TypeError``, a ``RuntimeError``, a ``ValueError`` from numpy, torch or our own code)
    is a bug or a system failure and propagates: it would fail every document alike.
    """
    if isinstance(error, InvalidDocumentError):
        return True
    if not isinstance(error, ValueError):
        return False
    from embedder_core import TokenLimitError

    if isinstance(error, TokenLimitError):
        return True
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    module = "" if frame is None else str(frame.tb_frame.f_globals.get("__name__", ""))
    return module.partition(".")[0] == "embedder_core"


def embed_records(
    embedder: Embedder,
    settings: EmbeddingSettings,
    prepared: Sequence[PreparedDocument],
    *,
    progress: BatchProgress | None = None,
) -> list[list[ChunkRecord]]:
    """Chunk and embed the documents together (late chunking per document: documents share
    forward batches but are never joined); one list of records per document, in order.
    ``progress``: the batch's share of the progress bar (see :func:`_embedding_call`).

    Raises what the embedder raises; :func:`embed_isolating` turns input errors into bad
    records.
    """
    import numpy as np

    from embedder_core.output import convert_embeddings

    if not prepared:
        return []
    texts = [p.document.text for p in prepared]
    extra: dict[str, Any] = {}
    if settings.late_chunking_options is not None:
        extra["late_chunking_options"] = settings.late_chunking_options
    spans: list[list[Span]]
    vectors: list[np.ndarray]
    if settings.late_chunking:
        if settings.custom_chunker is None:
            per_document = _embedding_call(
                embedder,
                "embed_documents",
                progress,
                texts,
                task=settings.task,
                chunker=settings.chunker,
                chunk_size=settings.chunk_size or 0,
                dimensions=settings.dimensions,
                **extra,
            )
            spans = [[(c.start, c.end) for c in chunks] for chunks in per_document]
            rows = [
                np.stack([c.embedding for c in chunks])
                if chunks
                else np.zeros((0, settings.dimensions), np.float32)
                for chunks in per_document
            ]
        else:
            spans = [list(p.spans or ()) for p in prepared]
            rows = _embedding_call(
                embedder,
                "embed_spans",
                progress,
                list(zip(texts, spans, strict=True)),
                task=settings.task,
                dimensions=settings.dimensions,
                **extra,
            )
        vectors = [
            np.asarray(convert_embeddings(doc_rows, settings.embedding_type)) for doc_rows in rows
        ]
    else:
        if settings.custom_chunker is None:
            spans = embedder.chunk(
                texts,
                chunker=settings.chunker,  # type: ignore[arg-type]
                chunk_size=settings.chunk_size or 0,
            )
        else:
            spans = [list(p.spans or ()) for p in prepared]
        flat = [text[a:b] for text, doc_spans in zip(texts, spans) for a, b in doc_spans]
        encoded = np.asarray(
            _embedding_call(
                embedder,
                "encode",
                progress,
                flat,
                task=settings.task,
                dimensions=settings.dimensions,
                embedding_type=settings.embedding_type,
            )
        )
        bounds = np.cumsum([0, *(len(s) for s in spans)])
        vectors = [encoded[a:b] for a, b in itertools.pairwise(bounds)]
    return [
        chunk_records(settings, p, doc_spans, doc_vectors)
        for p, doc_spans, doc_vectors in zip(prepared, spans, vectors, strict=True)
    ]


# The embedder's waiting calls and their non-waiting forms, which report progress.
_SUBMIT = {"embed_documents": "submit_documents", "embed_spans": "submit_spans", "encode": "submit"}


def _embedding_call(
    embedder: Embedder, method: str, progress: BatchProgress | None, *args: Any, **kwargs: Any
) -> Any:
    """``embedder.<method>(*args, **kwargs)``, followed by ``progress``.

    An embedder with the core scheduler's ``submit_*`` methods reports the tokens each
    forward batch ran (``on_progress``) and the request's token total (the handle's
    ``tokens``), which move the bar inside the batch. Others are followed per batch, with
    the core's own token bar for a long batch.
    """
    submit = getattr(embedder, _SUBMIT[method], None) if progress is not None else None
    if submit is None:
        long = progress is not None and progress.long
        return getattr(embedder, method)(*args, show_progress=long, **kwargs)
    assert progress is not None
    pending = submit(*args, on_progress=progress.advance, **kwargs)
    progress.expect(int(pending.tokens))
    try:
        return pending.result()
    except BaseException:
        pending.cancel()  # Ctrl-C or a failure: drop what has not run
        raise


def chunk_records(
    settings: EmbeddingSettings,
    prepared: PreparedDocument,
    spans: Sequence[Span],
    vectors: Any,
) -> list[ChunkRecord]:
    """The points of one document: chunk ``i`` of ``spans`` with row ``i`` of ``vectors``."""
    import numpy as np

    document = prepared.document
    return [
        ChunkRecord(
            id=chunk_id(document.id, index),
            vector=np.asarray(vector),
            text=document.text[start:end],
            doc_id=document.id,
            chunk_index=index,
            chunk_count=len(spans),
            start=start,
            end=end,
            content_hash=prepared.content_hash,
            metadata=document.metadata,
            model=settings.model,
            task=settings.task,
            dimensions=settings.dimensions,
            embedding_type=settings.embedding_type,
        )
        for index, ((start, end), vector) in enumerate(zip(spans, vectors, strict=True))
    ]


def embed_isolating(
    embedder: Embedder,
    settings: EmbeddingSettings,
    prepared: Sequence[PreparedDocument],
    on_bad: Callable[[InvalidDocumentError], None],
    *,
    progress: BatchProgress | None = None,
) -> list[tuple[PreparedDocument, list[ChunkRecord]]]:
    """:func:`embed_records`, but a batch that fails on bad input (:func:`is_input_error`) is
    embedded again one document at a time, so one bad document never costs the rest of its
    batch; each bad document (and one that yields no chunks) goes to ``on_bad``."""
    if not prepared:
        return []
    try:
        per_document = embed_records(embedder, settings, prepared, progress=progress)
    except Exception as error:
        if not is_input_error(error):
            raise
        if len(prepared) == 1:
            on_bad(InvalidDocumentError(prepared[0].source, f"cannot be embedded: {error}"))
            return []
        return [
            pair
            for one in prepared
            for pair in embed_isolating(embedder, settings, [one], on_bad, progress=progress)
        ]
    embedded = []
    for p, records in zip(prepared, per_document, strict=True):
        if records:
            embedded.append((p, records))
        else:
            on_bad(InvalidDocumentError(p.source, "produced no chunks"))
    return embedded


class Named(Protocol):
    """Anything that names a document for error messages (a :class:`PreparedDocument`)."""

    @property
    def source(self) -> str: ...


N = TypeVar("N", bound=Named)


def check_records(
    sink: VectorSink,
    embedded: Iterable[tuple[N, list[ChunkRecord]]],
    on_bad: Callable[[InvalidDocumentError], None],
) -> list[tuple[N, list[ChunkRecord]]]:
    """The documents whose every record ``sink.check_record`` accepts; the others go to
    ``on_bad`` before anything of them is written. Each document is a pair of something
    with a ``source`` name (a :class:`PreparedDocument`) and its records."""
    accepted = []
    for p, records in embedded:
        try:
            for record in records:
                try:
                    sink.check_record(record)
                except InvalidDocumentError:
                    raise
                except ValueError as error:
                    raise InvalidDocumentError(p.source, f"{record.name}: {error}") from None
        except InvalidDocumentError as error:
            if error.record != p.source:
                error = InvalidDocumentError(p.source, str(error))
            on_bad(error)
            continue
        accepted.append((p, records))
    return accepted


@dataclass
class EmbeddedBatch:
    """What :func:`embed_batch` made of a batch of documents: each embedded document with its
    records (input order), and how many were left out as already stored (``skipped``)."""

    embedded: list[tuple[PreparedDocument, list[ChunkRecord]]]
    skipped: int = 0


def embed_batch(
    embedder: Embedder,
    settings: EmbeddingSettings,
    documents: Sequence[Document],
    on_bad: Callable[[InvalidDocumentError], None],
    *,
    sink: VectorSink | None = None,
    select: Callable[[list[PreparedDocument]], list[PreparedDocument]] | None = None,
    progress: IngestProgress | None = None,
) -> EmbeddedBatch:
    """Stages 2 to 4 on one batch of valid documents: hash them (:func:`prepare_document`),
    keep those ``select`` returns, embed them (:func:`embed_isolating`) and, with a ``sink``,
    check their records against its limits (:func:`check_records`).

    ``select`` defaults to :func:`changed_documents` on ``sink`` (every document without a
    sink). Each bad document goes to ``on_bad``. ``progress``: the input bytes of documents
    left out count as done at once; the embedding moves the bar as the model runs. Both
    :func:`ingest` and the Ray engine (:mod:`jina_connectors.ray`) embed every batch through
    this function.
    """
    prepared = []
    for document in documents:
        try:
            prepared.append(prepare_document(document, settings))
        except InvalidDocumentError as error:
            on_bad(error)
    if select is not None:
        todo = select(prepared)
    elif sink is not None:
        todo = changed_documents(sink, prepared)
    else:
        todo = prepared
    if progress is None:
        embedded = embed_isolating(embedder, settings, todo, on_bad)
    else:
        todo_ids = {p.document.id for p in todo}
        progress.done(sum(d.input_bytes for d in documents if d.id not in todo_ids))
        with progress.embedding(sum(p.document.input_bytes for p in todo)) as share:
            embedded = embed_isolating(embedder, settings, todo, on_bad, progress=share)
    if sink is not None:
        embedded = check_records(sink, embedded, on_bad)
    return EmbeddedBatch(embedded, len(prepared) - len(todo))


def metadata_error(sink: VectorSink, document: Document) -> InvalidDocumentError | None:
    """The bad record ``document`` is when ``sink`` cannot store its metadata, else None."""
    try:
        sink.check_metadata(document.metadata)
    except ValueError as error:
        return InvalidDocumentError(
            document.record or document.id, str(error), source_id=document.id
        )
    return None


def document_batches(
    documents: DocumentSource | Iterable[DocumentSource] | CheckedSources,
    batch_size: int,
    sink: VectorSink,
    on_bad: Callable[[InvalidDocumentError], None],
    *,
    root: str | os.PathLike[str] | None = None,
    on_empty: Callable[[EmptyDocumentError], None] | None = None,
) -> Iterator[list[Document]]:
    """Valid documents in batches of ``batch_size``; bad records (including metadata the sink
    cannot store, ``sink.check_metadata``) go to ``on_bad``, empty files to ``on_empty``
    (left out silently without it). ``root``: see
    :func:`~jina_connectors.ingestion.documents.iter_documents`. Closing this generator closes the
    file being read."""
    items = iter_documents(documents, root=root)
    batch: list[Document] = []
    try:
        for item in items:
            if isinstance(item, EmptyDocumentError):
                if on_empty is not None:
                    on_empty(item)
                continue
            if isinstance(item, Document):
                item = metadata_error(sink, item) or item
            if isinstance(item, InvalidDocumentError):
                on_bad(item)
                continue
            batch.append(item)
            if len(batch) == batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        items.close()
