"""The shared ingestion pipeline and the contract every database sink implements.

Documents go in (strings, ``{"id", "text", "metadata"}`` dicts, or ``.txt``/``.md``/``.jsonl``
paths and folders), are chunked and embedded with ``retrieval.passage`` (late chunking by
default), and are written to a :class:`VectorSink` in batches while the next batch is
being embedded.

Idempotence and crash safety (the design every sink relies on):

- A chunk's id is ``uuid5(CHUNK_NAMESPACE, f"{doc_id}\\x1f{chunk_index}")``: re-writing a chunk
  overwrites it, never duplicates it.
- Every chunk's payload carries ``content_hash`` (a hash of the document's text, metadata and
  every chunking/embedding setting) and ``chunk_count``. Equal hashes therefore mean equal
  chunks, so the state of a document can be checked without embedding it.
- A document is *complete* when chunks ``0..n-1`` all exist with the current hash and
  ``chunk_count == n``, and chunk ``n`` does not exist. Every version of a document numbers its
  chunks ``0..m-1``, so leftovers of older, longer versions always include chunk ``n``.
- Writing a document upserts all its chunks, then deletes its chunks with
  ``chunk_index >= n``. A kill at any point leaves the document incomplete (or complete),
  never wrongly complete, so the next run re-embeds it and overwrites the same ids.
- Unchanged complete documents are skipped before any embedding (``IngestReport.skipped``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar, Union, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from embedder_core import Embedder

logger = logging.getLogger(__name__)
# Bad records, one warning each (also listed in IngestReport.errors).
bad_record_logger = logging.getLogger(f"{__name__}.records")

# Fixed namespace of chunk ids: uuid5(CHUNK_NAMESPACE, f"{doc_id}\x1f{chunk_index}").
CHUNK_NAMESPACE = uuid.UUID("8a7c1f3e-5d2b-5f4a-9c6e-1b0d2e3f4a5b")
PASSAGE_TASK = "retrieval.passage"
QUERY_TASK = "retrieval.query"
# Vector types a sink may be asked to store; each sink says which ones it supports.
SinkEmbeddingType = Literal["float", "ubinary"]
# Payload keys the pipeline writes; user metadata lives under "metadata".
PAYLOAD_KEYS = (
    "text",
    "doc_id",
    "chunk_index",
    "chunk_count",
    "start",
    "end",
    "metadata",
    "content_hash",
    "model",
    "task",
    "dimensions",
    "embedding_type",
)
MAX_DOC_ID_CHARS = 1024
DEFAULT_COLLECTION = "documents"


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class CollectionMismatchError(ValueError):
    """An existing collection was built with another vector size, metric, model or type.

    Raised by :meth:`VectorSink.ensure_collection` before anything is written; the
    collection is left untouched (never recreated).
    """


class InvalidDocumentError(ValueError):
    """One input record is unusable; ``record`` names it (``"a.jsonl:3"``, ``"documents[5]"``)."""

    def __init__(self, record: str, reason: str) -> None:
        super().__init__(f"{record}: {reason}")
        self.record = record
        self.reason = reason


# --------------------------------------------------------------------------------------
# Data passed between the pipeline and the sinks
# --------------------------------------------------------------------------------------


def chunk_id(doc_id: str, chunk_index: int) -> str:
    """Deterministic point id of a chunk: a UUID5 of document id and chunk index."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\x1f{chunk_index}"))


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection holds: vectors of ``model`` at ``dimensions``, as ``embedding_type``.

    ``embedding_type="float"`` vectors are compared by cosine; ``"ubinary"`` vectors are packed
    sign bits (``ceil(dimensions / 8)`` bytes) compared by Hamming distance.
    """

    model: str
    dimensions: int
    embedding_type: SinkEmbeddingType = "float"
    task: str = PASSAGE_TASK

    @property
    def metric(self) -> Literal["cosine", "hamming"]:
        return "hamming" if self.embedding_type == "ubinary" else "cosine"

    @property
    def vector_bits(self) -> int:
        """Binary vector width in bits, a multiple of 8 (the packed bytes times 8)."""
        return 8 * -(-self.dimensions // 8)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CollectionSpec:
        return cls(
            model=str(payload["model"]),
            dimensions=int(payload["dimensions"]),
            embedding_type=payload.get("embedding_type", "float"),
            task=str(payload.get("task", PASSAGE_TASK)),
        )


@dataclass(frozen=True)
class ChunkState:
    """What the idempotence check needs to know about a stored chunk."""

    content_hash: str
    chunk_count: int


@dataclass(frozen=True)
class ChunkRecord:
    """One point to write: its deterministic id, vector and payload fields.

    ``vector`` is float32 ``(dimensions,)`` for float collections, or uint8 packed bits
    ``(ceil(dimensions / 8),)`` for ``ubinary`` ones.
    """

    id: str
    vector: np.ndarray
    text: str
    doc_id: str
    chunk_index: int
    chunk_count: int
    start: int
    end: int
    content_hash: str
    metadata: Mapping[str, Any]
    model: str
    task: str
    dimensions: int
    embedding_type: SinkEmbeddingType

    def payload(self) -> dict[str, Any]:
        """Every field except ``id`` and ``vector``, as JSON-compatible values."""
        return {
            "text": self.text,
            "doc_id": self.doc_id,
            "chunk_index": self.chunk_index,
            "chunk_count": self.chunk_count,
            "start": self.start,
            "end": self.end,
            "metadata": dict(self.metadata),
            "content_hash": self.content_hash,
            "model": self.model,
            "task": self.task,
            "dimensions": self.dimensions,
            "embedding_type": self.embedding_type,
        }


@dataclass(frozen=True)
class Hit:
    """One search result. ``score``: higher is more similar (cosine, or ``1 - hamming/bits``)."""

    id: str
    score: float
    text: str
    doc_id: str
    chunk_index: int
    start: int
    end: int
    metadata: dict[str, Any]

    @classmethod
    def from_payload(cls, id: str, score: float, payload: Mapping[str, Any]) -> Hit:
        return cls(
            id=str(id),
            score=float(score),
            text=str(payload.get("text", "")),
            doc_id=str(payload.get("doc_id", "")),
            chunk_index=int(payload.get("chunk_index", 0)),
            start=int(payload.get("start", 0)),
            end=int(payload.get("end", 0)),
            metadata=dict(payload.get("metadata") or {}),
        )


@dataclass(frozen=True)
class CollectionInfo:
    """A collection of a database, for ``jina-connectors info``. ``spec`` is None when empty."""

    name: str
    count: int
    spec: CollectionSpec | None


# A search filter: equality on ``doc_id`` or on user-metadata keys; a list value means
# "any of". ``{"doc_id": "a.md"}``, ``{"president": ["lincoln", "grant"], "year": 1862}``.
# Sinks may also accept their database's native filter object.
FilterValue = str | int | float | bool | Sequence[str | int | float | bool]
SearchFilter = Mapping[str, FilterValue]


@runtime_checkable
class VectorSink(Protocol):
    """The contract of a database sink (``QdrantSink``, ``MilvusSink``, ``PineconeSink``).

    A sink is bound to one collection/index. Transient database errors are retried with
    backoff inside each method (see :func:`with_retries`). Sinks must be thread-safe:
    :func:`ingest` looks up chunk states while its background writer writes.

    Optional hook: ``check_metadata(metadata: Mapping[str, Any]) -> None`` raising
    ``ValueError`` for user metadata the database cannot store. The pipeline calls it for
    every document before embedding and reports a failing document as a bad record.
    """

    collection: str

    def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create the collection for ``spec`` (cosine for float, Hamming for ubinary), or check
        that the existing one matches: vector size, metric, and the model/task/type recorded in
        its points. Raise :class:`CollectionMismatchError` otherwise, writing nothing."""
        ...

    def stored_spec(self) -> CollectionSpec | None:
        """The spec recorded in the collection's points; None if absent or empty."""
        ...

    def fetch_states(self, ids: Sequence[str]) -> dict[str, ChunkState]:
        """``content_hash``/``chunk_count`` of the given point ids that exist (others omitted)."""
        ...

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        """Insert or overwrite the points (ids are deterministic)."""
        ...

    def delete_stale(self, keep: Mapping[str, int]) -> None:
        """For each ``doc_id -> n``: delete that document's points with ``chunk_index >= n``."""
        ...

    def count(self) -> int:
        """Number of points in the collection (0 if it does not exist)."""
        ...

    def search(
        self,
        query: str,
        k: int = 5,
        filter: SearchFilter | None = None,
        *,
        model: str | Embedder | None = None,
    ) -> list[Hit]:
        """Embed ``query`` with :func:`embed_query` (``retrieval.query``, the collection's own
        model and dimensions unless ``model`` overrides the model) and return the ``k`` best
        hits, best first. An absent or empty collection returns ``[]``."""
        ...

    def describe_collections(self) -> list[CollectionInfo]:
        """Every collection of this database with its point count and recorded spec."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------------------
# Helpers shared by the sinks
# --------------------------------------------------------------------------------------

T = TypeVar("T")


def with_retries(
    operation: Callable[[], T],
    is_transient: Callable[[BaseException], bool],
    *,
    attempts: int = 5,
    max_wait: float = 8.0,
) -> T:
    """Run ``operation``, retrying transient errors with jittered exponential backoff."""
    import tenacity

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=0.2, max=max_wait) + tenacity.wait_random(0, 0.2),
        retry=tenacity.retry_if_exception(is_transient),
        before_sleep=lambda state: logger.warning(
            "transient database error (attempt %d of %d), retrying: %s",
            state.attempt_number,
            attempts,
            state.outcome.exception() if state.outcome else "",
        ),
        reraise=True,
    )
    return retrying(operation)


def check_layout(collection: str, spec: CollectionSpec, *, size: int, metric: str) -> None:
    """Raise :class:`CollectionMismatchError` unless an existing collection's vector size and
    metric (lower-case: "cosine", "hamming", ...) are the ones ``spec`` needs. ``size`` is in
    dimensions for float vectors, in bits for binary ones."""
    expected_size = spec.vector_bits if spec.embedding_type == "ubinary" else spec.dimensions
    metric = metric.lower()
    if size != expected_size or metric != spec.metric:
        raise CollectionMismatchError(
            f"collection {collection!r} exists with vectors of size {size} and metric {metric}, "
            f"but {spec.model} at dimensions={spec.dimensions} ({spec.embedding_type}) needs "
            f"size {expected_size} and metric {spec.metric}; use another collection name, "
            "or delete this one yourself (it is never recreated automatically)"
        )


def check_recorded_spec(
    collection: str, spec: CollectionSpec, stored: CollectionSpec | None
) -> None:
    """Raise :class:`CollectionMismatchError` if the points of ``collection`` were built with
    another model, task, dimensions or embedding type than ``spec``."""
    if stored is None or stored == spec:
        return
    raise CollectionMismatchError(
        f"collection {collection!r} holds vectors of model {stored.model!r} "
        f"(task {stored.task}, dimensions={stored.dimensions}, {stored.embedding_type}), "
        f"not of {spec.model!r} (task {spec.task}, dimensions={spec.dimensions}, "
        f"{spec.embedding_type}); mixing them would make search meaningless. Use another "
        "collection name or the same model and settings"
    )


def resolve_embedder(model: str | Embedder | None) -> Embedder:
    """An :class:`embedder_core.Embedder`: given, or ``get_embedder(model)`` (None: the default)."""
    if model is None or isinstance(model, (str, os.PathLike)):
        from embedder_core import get_embedder

        return get_embedder(None if model is None else str(model))
    return model


def embed_query(
    query: str, spec: CollectionSpec, model: str | Embedder | None = None
) -> np.ndarray:
    """One query vector for a collection built as ``spec``: task ``retrieval.query`` at the
    collection's dimensions and type, with the collection's model unless ``model`` is given.
    Float32 ``(dimensions,)``, or uint8 packed bits for ``ubinary``."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query must be a non-empty string")
    embedder = resolve_embedder(spec.model if model is None else model)
    if embedder.dimension < spec.dimensions:
        raise CollectionMismatchError(
            f"model {embedder.model_name!r} gives {embedder.dimension}-dimensional vectors, but "
            f"the collection holds {spec.dimensions}-dimensional vectors of {spec.model!r}"
        )
    vectors = embedder.encode(
        [query],
        task=QUERY_TASK,
        dimensions=spec.dimensions,
        embedding_type=spec.embedding_type,
    )
    return np.asarray(vectors)[0]


def filter_items(filter: SearchFilter) -> list[tuple[str, bool, list[Any]]]:
    """A :data:`SearchFilter` as ``(key, is_metadata_key, allowed values)`` triples."""
    items: list[tuple[str, bool, list[Any]]] = []
    for key, value in filter.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"filter keys must be non-empty strings, got {key!r}")
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        for v in values:
            if not isinstance(v, (str, int, float, bool)):
                raise ValueError(f"filter value for {key!r} must be a scalar, got {v!r}")
        items.append((key, key != "doc_id", values))
    return items


# --------------------------------------------------------------------------------------
# Documents in
# --------------------------------------------------------------------------------------

Chunker = Callable[[str], Sequence[tuple[int, int]]]
DocumentSource = Union[str, Mapping[str, Any], "os.PathLike[str]", "Document"]
DOCUMENT_SUFFIXES = (".txt", ".md", ".jsonl")


@dataclass(frozen=True)
class Document:
    """A document to ingest. ``record`` names where it came from, for error messages."""

    id: str
    text: str
    metadata: Mapping[str, Any] = field(default_factory=dict)
    record: str = ""


def text_document_id(text: str) -> str:
    """Id of a document given as a bare string: derived from its content."""
    return "text-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def _document_from_record(raw: Any, record: str, default_id: str | None) -> Document:
    """Validate one ``{"id", "text", "metadata", ...}`` record; extra keys become metadata."""
    if not isinstance(raw, Mapping):
        raise InvalidDocumentError(record, f"expected an object, got {type(raw).__name__}")
    if "text" not in raw:
        raise InvalidDocumentError(record, "missing 'text'")
    text = raw["text"]
    if not isinstance(text, str):
        raise InvalidDocumentError(record, f"'text' must be a string, got {type(text).__name__}")
    doc_id = raw.get("id", default_id)
    if doc_id is None:
        doc_id = text_document_id(text)
    metadata = raw.get("metadata", {})
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, Mapping):
        raise InvalidDocumentError(
            record, f"'metadata' must be an object, got {type(metadata).__name__}"
        )
    extra = {k: v for k, v in raw.items() if k not in ("id", "text", "metadata")}
    return _checked(Document(doc_id, text, {**extra, **metadata}, record))


def _checked(doc: Document) -> Document:
    record = doc.record
    if not isinstance(doc.id, str):
        raise InvalidDocumentError(record, f"'id' must be a string, got {type(doc.id).__name__}")
    if not doc.id.strip():
        raise InvalidDocumentError(record, "'id' is empty")
    if len(doc.id) > MAX_DOC_ID_CHARS:
        raise InvalidDocumentError(record, f"'id' is longer than {MAX_DOC_ID_CHARS} characters")
    control = next((c for c in doc.id if ord(c) < 0x20 or ord(c) == 0x7F), None)
    if control is not None:  # databases' filter languages cannot all match them
        raise InvalidDocumentError(
            record, f"'id' contains the control character U+{ord(control):04X}"
        )
    if not isinstance(doc.text, str):
        raise InvalidDocumentError(
            record, f"'text' must be a string, got {type(doc.text).__name__}"
        )
    if not doc.text.strip():
        raise InvalidDocumentError(record, "'text' is empty")
    for key in doc.metadata:
        if not isinstance(key, str):
            raise InvalidDocumentError(record, f"metadata keys must be strings, got {key!r}")
    try:
        json.dumps(dict(doc.metadata), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDocumentError(record, f"metadata is not JSON-serializable: {exc}") from None
    return doc


def _files_of(path: Path) -> Iterator[tuple[Path, str]]:
    """``(file, document id prefix)``: a file is named by its file name, the files of a folder
    by their path inside it, so ids stay the same whatever the working directory."""
    if path.is_dir():
        for file in sorted(path.rglob("*")):
            hidden = any(part.startswith(".") for part in file.relative_to(path).parts)
            if file.is_file() and file.suffix.lower() in DOCUMENT_SUFFIXES and not hidden:
                yield file, file.relative_to(path).as_posix()
    else:
        yield path, path.name


def _documents_of_path(path: Path) -> Iterator[Document | InvalidDocumentError]:
    if not path.exists():
        yield InvalidDocumentError(str(path), "no such file or folder")
        return
    for file, name in _files_of(path):
        suffix = file.suffix.lower()
        if suffix not in DOCUMENT_SUFFIXES:
            yield InvalidDocumentError(
                str(file), f"unsupported file type {suffix!r}; expected .txt, .md or .jsonl"
            )
            continue
        try:
            if suffix == ".jsonl":
                with file.open(encoding="utf-8") as lines:
                    for number, line in enumerate(lines, start=1):
                        if not line.strip():
                            continue
                        record = f"{file}:{number}"
                        try:
                            yield _document_from_record(
                                json.loads(line), record, f"{name}:{number}"
                            )
                        except json.JSONDecodeError as exc:
                            yield InvalidDocumentError(record, f"invalid JSON: {exc.msg}")
                        except InvalidDocumentError as exc:
                            yield exc
            else:
                text = file.read_text(encoding="utf-8")
                try:
                    yield _checked(Document(name, text, {}, str(file)))
                except InvalidDocumentError as exc:
                    yield exc
        except (OSError, UnicodeDecodeError) as exc:
            yield InvalidDocumentError(str(file), f"cannot read: {exc}")


def iter_documents(
    sources: DocumentSource | Iterable[DocumentSource],
) -> Iterator[Document | InvalidDocumentError]:
    """Validated documents, or the error of each bad record in their place (in input order).

    A ``str`` is a document's text (its id derived from the content); a mapping is a
    ``{"id", "text", "metadata"}`` record; a path (``pathlib.Path``) is a ``.txt``/``.md`` file
    (one document, id = file name), a ``.jsonl`` file (one record per line; id defaults to
    ``name:line``) or a folder of those (ids relative to the folder). Duplicate ids are errors.
    """
    if isinstance(sources, (str, Mapping, os.PathLike, Document)):
        sources = [sources]
    seen: dict[str, str] = {}
    for index, source in enumerate(sources):
        record = f"documents[{index}]"
        items: Iterable[Document | InvalidDocumentError]
        if isinstance(source, Document):
            items = [_guarded(_checked, replace(source, record=source.record or record))]
        elif isinstance(source, str):
            items = [_guarded(_checked, Document(text_document_id(source), source, {}, record))]
        elif isinstance(source, Mapping):
            items = [_guarded(_document_from_record, source, record, None)]
        elif isinstance(source, os.PathLike):
            items = _documents_of_path(Path(source))
        else:
            items = [InvalidDocumentError(record, f"unsupported type {type(source).__name__}")]
        for item in items:
            if isinstance(item, Document):
                first = seen.get(item.id)
                if first is not None:
                    item = InvalidDocumentError(
                        item.record, f"duplicate document id {item.id!r} (first at {first})"
                    )
                else:
                    seen[item.id] = item.record
            yield item


def _guarded(make: Callable[..., Document], *args: Any) -> Document | InvalidDocumentError:
    try:
        return make(*args)
    except InvalidDocumentError as exc:
        return exc


# --------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------


@dataclass
class IngestReport:
    """What one :func:`ingest` run did.

    ``documents``: valid documents read; ``skipped``: those already stored unchanged;
    ``chunks``: chunks embedded; ``points_written``: points upserted; ``errors``: one
    :class:`InvalidDocumentError` per bad record (skipped, the rest was ingested).
    """

    documents: int = 0
    chunks: int = 0
    points_written: int = 0
    skipped: int = 0
    seconds: float = 0.0
    errors: list[InvalidDocumentError] = field(default_factory=list)

    @property
    def points_per_second(self) -> float:
        return self.points_written / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Settings:
    """Everything that decides a document's chunks and vectors (hashed into content_hash)."""

    spec: CollectionSpec
    late_chunking: bool
    chunker: str | Chunker
    chunk_size: int

    def content_hash(self, doc: Document) -> str:
        chunker = self.chunker
        if not isinstance(chunker, str):
            chunker = f"{getattr(chunker, '__module__', '')}.{getattr(chunker, '__qualname__', '')}"
        key = {
            "text": doc.text,
            "metadata": dict(doc.metadata),
            "model": self.spec.model,
            "task": self.spec.task,
            "dimensions": self.spec.dimensions,
            "embedding_type": self.spec.embedding_type,
            "late_chunking": self.late_chunking,
            "chunker": chunker,
            "chunk_size": self.chunk_size,
        }
        encoded = json.dumps(key, sort_keys=True, ensure_ascii=False).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True)
class _Chunk:
    text: str
    start: int
    end: int


@dataclass(frozen=True)
class _WriteJob:
    records: list[ChunkRecord]
    keep: dict[str, int]  # doc_id -> chunk count, for delete_stale after the upserts
    documents: int  # documents this job completes (written or skipped), for the progress bar


def ingest(
    documents: DocumentSource | Iterable[DocumentSource],
    sink: VectorSink,
    *,
    model: str | Embedder | None = None,
    dimensions: int | None = None,
    embedding_type: SinkEmbeddingType = "float",
    late_chunking: bool = True,
    chunker: str | Chunker = "sentences",
    chunk_size: int = 256,
    batch_size: int = 16,
    write_batch_size: int = 256,
    max_pending_batches: int = 2,
    on_error: Literal["skip", "raise"] = "skip",
    progress: bool = True,
) -> IngestReport:
    """Chunk, embed (``retrieval.passage``) and write ``documents`` into ``sink``.

    Args:
        documents: texts, ``{"id", "text", "metadata"}`` records, ``Path``s of
            ``.txt``/``.md``/``.jsonl`` files or folders, or an iterable of those (see
            :func:`iter_documents`). Streams are read lazily, ``batch_size`` at a time.
        sink: where to write (``QdrantSink``, ``MilvusSink``, ``PineconeSink``...).
        model: model id/path or a loaded ``Embedder``; None: ``get_embedder()``'s default.
        dimensions: Matryoshka width; None: the model's full width.
        embedding_type: ``"float"`` (cosine) or ``"ubinary"`` (packed bits, Hamming), if the
            sink supports it.
        late_chunking: embed each document whole and pool per chunk (default), or embed each
            chunk on its own.
        chunker, chunk_size: the core's chunker (``"sentences"``, ``"tokens"`` or a callable
            returning character spans) and its maximum tokens per chunk.
        batch_size: documents embedded together; write_batch_size: points per write;
        max_pending_batches: embedded batches waiting for the background writer.
        on_error: ``"skip"`` records each bad record in ``report.errors`` and goes on;
            ``"raise"`` raises its :class:`InvalidDocumentError`.
        progress: show a tqdm progress bar.

    Unchanged documents are skipped, changed ones replace all their old chunks, and a run
    killed at any point is completed by running it again (see the module docstring).
    """
    for name, value in (
        ("chunk_size", chunk_size),
        ("batch_size", batch_size),
        ("write_batch_size", write_batch_size),
        ("max_pending_batches", max_pending_batches),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if on_error not in ("skip", "raise"):
        raise ValueError(f"on_error must be 'skip' or 'raise', got {on_error!r}")
    if not (chunker in ("sentences", "tokens") or callable(chunker)):
        raise ValueError(f"chunker must be 'sentences', 'tokens' or a callable, got {chunker!r}")
    embedder = resolve_embedder(model)
    spec = passage_spec(embedder, dimensions, embedding_type)
    settings = _Settings(spec, late_chunking, chunker, chunk_size)
    sink.ensure_collection(spec)

    from tqdm import tqdm

    report = IngestReport()
    started = time.perf_counter()
    with tqdm(
        desc=f"ingest → {sink.collection}", unit="doc", disable=not progress, dynamic_ncols=True
    ) as bar:

        def done(documents: int, points: int) -> None:
            report.points_written += points
            bar.update(documents)
            bar.set_postfix(points=report.points_written, refresh=False)

        with _BackgroundWriter(sink, write_batch_size, max_pending_batches, done) as writer:
            for batch in _document_batches(documents, batch_size, report, on_error, sink):
                report.documents += len(batch)
                hashes = [settings.content_hash(doc) for doc in batch]
                changed = _changed_documents(sink, batch, hashes)
                report.skipped += len(batch) - len(changed)
                records = _embed_documents(embedder, settings, changed, report, on_error)
                report.chunks += len(records)
                keep = {r.doc_id: r.chunk_count for r in records}
                writer.put(_WriteJob(records, keep, len(batch)))
    report.seconds = time.perf_counter() - started
    return report


def passage_spec(
    embedder: Embedder, dimensions: int | None = None, embedding_type: str = "float"
) -> CollectionSpec:
    """The collection spec :func:`ingest` writes with these settings (validated)."""
    if embedding_type not in ("float", "ubinary"):
        raise ValueError(f"embedding_type must be 'float' or 'ubinary', got {embedding_type!r}")
    if dimensions is not None and (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= embedder.dimension
    ):
        raise ValueError(
            f"dimensions must be an integer in [1, {embedder.dimension}] for "
            f"{embedder.model_name!r}, got {dimensions!r}"
        )
    return CollectionSpec(
        model=embedder.model_name,
        dimensions=dimensions or embedder.dimension,
        embedding_type=embedding_type,  # type: ignore[arg-type]
        task=PASSAGE_TASK,
    )


def _document_batches(
    documents: DocumentSource | Iterable[DocumentSource],
    batch_size: int,
    report: IngestReport,
    on_error: str,
    sink: VectorSink,
) -> Iterator[list[Document]]:
    check_metadata = getattr(sink, "check_metadata", None)
    batch: list[Document] = []
    for item in iter_documents(documents):
        if isinstance(item, Document) and check_metadata is not None:
            try:
                check_metadata(item.metadata)
            except ValueError as exc:
                item = InvalidDocumentError(item.record or item.id, str(exc))
        if isinstance(item, InvalidDocumentError):
            _bad_record(item, report, on_error)
            continue
        batch.append(item)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def _bad_record(error: InvalidDocumentError, report: IngestReport, on_error: str) -> None:
    if on_error == "raise":
        raise error
    bad_record_logger.warning("skipped bad record %s", error)
    report.errors.append(error)


def _changed_documents(
    sink: VectorSink, batch: list[Document], hashes: list[str]
) -> list[tuple[Document, str]]:
    """The documents of ``batch`` that are not stored complete with their current hash."""
    firsts = sink.fetch_states([chunk_id(doc.id, 0) for doc in batch])
    # Candidates: chunk 0 carries the current hash. Check chunks 1..n-1 and absence of n.
    candidates: list[tuple[Document, str, int]] = []
    for doc, digest in zip(batch, hashes, strict=True):
        first = firsts.get(chunk_id(doc.id, 0))
        if first is not None and first.content_hash == digest and first.chunk_count >= 1:
            candidates.append((doc, digest, first.chunk_count))
    ids = [chunk_id(doc.id, i) for doc, _, n in candidates for i in range(1, n + 1)]
    rest = sink.fetch_states(ids) if ids else {}
    complete: set[str] = set()
    for doc, digest, n in candidates:
        expected = ChunkState(digest, n)
        if chunk_id(doc.id, n) not in rest and all(
            rest.get(chunk_id(doc.id, i)) == expected for i in range(1, n)
        ):
            complete.add(doc.id)
    return [
        (doc, digest) for doc, digest in zip(batch, hashes, strict=True) if doc.id not in complete
    ]


def _embed_documents(
    embedder: Embedder,
    settings: _Settings,
    changed: list[tuple[Document, str]],
    report: IngestReport,
    on_error: str,
) -> list[ChunkRecord]:
    """Embed the documents together; if that fails on bad input, one by one to find the
    culprit, so one bad document never costs the rest of its batch."""
    if not changed:
        return []
    try:
        embedded = _embed_texts(embedder, settings, [doc.text for doc, _ in changed])
    except (ValueError, TypeError) as exc:
        if len(changed) == 1:
            doc = changed[0][0]
            error = InvalidDocumentError(doc.record or doc.id, f"cannot be embedded: {exc}")
            _bad_record(error, report, on_error)
            return []
        return [
            record
            for one in changed
            for record in _embed_documents(embedder, settings, [one], report, on_error)
        ]
    records: list[ChunkRecord] = []
    for (doc, digest), (chunks, vectors) in zip(changed, embedded, strict=True):
        if not chunks:
            _bad_record(InvalidDocumentError(doc.record, "produced no chunks"), report, on_error)
            continue
        records.extend(_records(settings.spec, doc, digest, chunks, vectors))
    return records


def _records(
    spec: CollectionSpec, doc: Document, digest: str, chunks: list[_Chunk], vectors: Any
) -> Iterator[ChunkRecord]:
    for index, (chunk, vector) in enumerate(zip(chunks, vectors, strict=True)):
        yield ChunkRecord(
            id=chunk_id(doc.id, index),
            vector=np.asarray(vector),
            text=chunk.text,
            doc_id=doc.id,
            chunk_index=index,
            chunk_count=len(chunks),
            start=chunk.start,
            end=chunk.end,
            content_hash=digest,
            metadata=doc.metadata,
            model=spec.model,
            task=spec.task,
            dimensions=spec.dimensions,
            embedding_type=spec.embedding_type,
        )


def _embed_texts(
    embedder: Embedder, settings: _Settings, texts: list[str]
) -> list[tuple[list[_Chunk], np.ndarray]]:
    """Chunks and their vectors (in the spec's embedding type) for each text."""
    from embedder_core import convert_embeddings

    spec = settings.spec
    if settings.late_chunking:
        per_document = embedder.embed_documents(
            texts,
            task=PASSAGE_TASK,
            chunker=settings.chunker,
            chunk_size=settings.chunk_size,
            dimensions=spec.dimensions,
        )
        out = []
        for chunks in per_document:
            rows = np.stack([c.embedding for c in chunks]) if chunks else np.zeros((0, 1))
            out.append(
                (
                    [_Chunk(c.text, c.start, c.end) for c in chunks],
                    np.asarray(convert_embeddings(rows, spec.embedding_type)),
                )
            )
        return out
    spans = embedder.chunk(texts, chunker=settings.chunker, chunk_size=settings.chunk_size)
    chunk_lists = [
        [_Chunk(text[start:end], start, end) for start, end in doc_spans]
        for text, doc_spans in zip(texts, spans, strict=True)
    ]
    flat = [chunk.text for chunks in chunk_lists for chunk in chunks]
    vectors = np.asarray(
        embedder.encode(
            flat,
            task=PASSAGE_TASK,
            dimensions=spec.dimensions,
            embedding_type=spec.embedding_type,
        )
    )
    out, start = [], 0
    for chunks in chunk_lists:
        out.append((chunks, vectors[start : start + len(chunks)]))
        start += len(chunks)
    return out


class _BackgroundWriter:
    """Writes jobs on a background thread while the caller embeds the next batch.

    The queue is bounded (``max_pending`` jobs), so embedding never runs far ahead of the
    database. A write error stops the writer and is re-raised in the caller's thread.
    """

    def __init__(
        self,
        sink: VectorSink,
        write_batch_size: int,
        max_pending: int,
        done: Callable[[int, int], None],
    ) -> None:
        self._sink = sink
        self._write_batch_size = write_batch_size
        self._done = done
        self._jobs: queue.Queue[_WriteJob | None] = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._abandon = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="jina-connectors-writer", daemon=True
        )

    def __enter__(self) -> _BackgroundWriter:
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._abandon.set()  # the caller failed: drop what is queued, finish quickly
        self._jobs.put(None)
        self._thread.join()
        if exc_type is None and self._error is not None:
            raise self._error

    def put(self, job: _WriteJob) -> None:
        while True:
            if self._error is not None:
                raise self._error
            try:
                self._jobs.put(job, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            if self._error is not None or self._abandon.is_set():
                continue
            try:
                self._write(job)
            except BaseException as exc:  # handed to the caller's thread
                self._error = exc

    def _write(self, job: _WriteJob) -> None:
        size = self._write_batch_size
        for start in range(0, len(job.records), size):
            self._sink.upsert(job.records[start : start + size])
        if job.keep:
            self._sink.delete_stale(job.keep)
        self._done(job.documents, len(job.records))
