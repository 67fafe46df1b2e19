"""The :class:`VectorSink` base class that every database sink derives from, and the checks
it runs (:func:`check_layout`, :func:`check_recorded_spec`, :func:`with_retries`).

The base class owns everything that is the same for every database: retries of transient
errors, paging of fetches and writes, the ``k`` check, the collection-spec cache, the context
manager, the layout and mismatch checks (vector size and metric, the model/task/dimensions/type
recorded in the points, points not written by jina-connectors), query embedding, and the
locking that makes a sink safe to share between the pipeline and its background writer. A
database module implements only a handful of primitive methods that translate to its client.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from ..errors import CollectionMismatchError, InvalidDocumentError
from .records import (
    STATE_KEYS,
    ChunkRecord,
    ChunkState,
    CollectionInfo,
    CollectionSpec,
    Hit,
    SearchFilter,
    SinkEmbeddingType,
    StoredChunk,
    filter_items,
    spec_of_payload,
)
from .search import embed_query

if TYPE_CHECKING:
    import numpy as np

    from embedder_core import Embedder

# The name it had before the sinks moved into a package of their own (logging configs use it).
logger = logging.getLogger("jina_connectors.sink")

T = TypeVar("T")
S = TypeVar("S", bound="VectorSink")

# --------------------------------------------------------------------------------------
# Checks and helpers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionLayout:
    """An existing collection's vectors as the database describes them: ``size`` (dimensions
    for float vectors, bits for binary ones), ``metric`` (lower case) and vector type."""

    size: int
    metric: str
    embedding_type: SinkEmbeddingType = "float"


def _payload_keys(fields: Sequence[str]) -> list[str]:
    if isinstance(fields, str) or not all(isinstance(f, str) and f for f in fields):
        raise TypeError(f"fields must be a list of payload keys, got {fields!r}")
    return list(dict.fromkeys(fields))


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


def check_layout(collection: str, spec: CollectionSpec, layout: CollectionLayout) -> None:
    """Raise :class:`CollectionMismatchError` unless an existing collection's vector type,
    size and metric are the ones ``spec`` needs."""
    if layout.embedding_type != spec.embedding_type:
        raise CollectionMismatchError(
            f"collection {collection!r} holds {layout.embedding_type} vectors; "
            f"embedding_type={spec.embedding_type!r} needs {spec.embedding_type} vectors",
            "use another collection name",
        )
    metric = layout.metric.lower()
    if layout.size != spec.vector_size or metric != spec.metric:
        raise CollectionMismatchError(
            f"collection {collection!r} exists with vectors of size {layout.size} and metric "
            f"{metric}, but {spec.model} at dimensions={spec.dimensions} ({spec.embedding_type}) "
            f"needs size {spec.vector_size} and metric {spec.metric}",
            "use another collection name, or delete this one yourself (it is never recreated "
            "automatically)",
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
        f"{spec.embedding_type}); mixing them would make search meaningless",
        "use another collection name or the same model and settings",
    )


# --------------------------------------------------------------------------------------
# The sink base class
# --------------------------------------------------------------------------------------


class VectorSink(ABC):
    """A database collection the pipeline writes to and searches; one sink, one collection.

    Public methods (the contract :func:`~jina_connectors.pipeline.ingest` relies on) are
    implemented here once; a database module implements the primitives below them. Every
    primitive call goes through :meth:`_call`, which retries transient errors with backoff
    (``attempts`` tries in all) and serializes calls when the client is not thread-safe.

    Thread safety: one sink may be used from several threads at once (the pipeline looks up
    chunk states while its background writer writes). Lazy handles, caches and counters are
    guarded by ``_state_lock``; a client that is not thread-safe sets ``_io_lock``.
    """

    #: Vector types this database can store.
    embedding_types: ClassVar[tuple[SinkEmbeddingType, ...]] = ("float",)
    #: Whether it can keep float vectors as 1 bit per dimension in RAM (``binary_quantization=``).
    supports_binary_quantization: ClassVar[bool] = False
    #: The environment variable :func:`~jina_connectors.sinks.open.open_sink` reads the API
    #: key (token) from; None: the database takes none.
    api_key_env: ClassVar[str | None] = None
    #: Whether it cannot be opened without an API key.
    requires_api_key: ClassVar[bool] = False
    #: Ids per fetch request.
    fetch_page_size: ClassVar[int] = 1000
    #: Points per page of :meth:`read_points`.
    read_page_size: ClassVar[int] = 1000
    #: Largest ``k`` a search may ask for; None: no limit.
    max_k: ClassVar[int | None] = None
    #: The database's name, for messages.
    database: ClassVar[str] = "vector database"

    collection: str
    #: Where the collection lives, for messages: ``embedded Qdrant at /path``, a server URL.
    location: str = ""

    def __init__(self, collection: str, *, attempts: int = 5, read_only: bool = False) -> None:
        if not isinstance(collection, str) or not collection:
            raise ValueError(f"collection must be a non-empty string, got {collection!r}")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be a positive integer, got {attempts!r}")
        self.collection = collection
        self.attempts = attempts
        self.read_only = read_only
        self._state_lock = threading.RLock()
        self._io_lock: AbstractContextManager[Any] = nullcontext()
        self._spec: CollectionSpec | None = None
        self._create_on_write: CollectionSpec | None = None  # see ensure_collection(lazy=)
        self._create_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.collection!r})"

    def __enter__(self: S) -> S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the client (once; later calls do nothing)."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
        self._close()

    def remote_opener(self) -> Callable[[], VectorSink] | None:
        """A picklable function that opens this same collection in another process (a Ray
        worker), or None when only this process can write it: an embedded database (a
        local folder or file takes one process at a time), or a client object given to the
        sink. The Ray engine writes from its workers when there is one, else from the
        driver (:func:`jina_connectors.ray.ingest_dataset`)."""
        return None

    def _call(self, operation: Callable[[], T]) -> T:
        with self._io_lock:
            return with_retries(operation, self._is_transient, attempts=self.attempts)

    # -- the collection -------------------------------------------------------------------

    def check_collection(self, spec: CollectionSpec) -> bool:
        """Whether the collection exists, after checking that it matches ``spec``: vector type,
        size and metric, the model/task/dimensions recorded in its points, and that its points
        were written by jina-connectors (:class:`CollectionMismatchError` otherwise). Creates
        and writes nothing, so a caller can check before it loads a model."""
        if spec.embedding_type not in self.embedding_types:
            raise ValueError(self._unsupported_type_message(spec.embedding_type))
        name = self.collection
        layout = self._call(lambda: self._layout(name))
        if layout is None:
            return False
        self._check_existing(spec, layout)
        return True

    def ensure_collection(self, spec: CollectionSpec, *, lazy: bool = False) -> None:
        """Check the collection against ``spec`` (:meth:`check_collection`), and create it
        when it does not exist (cosine for float vectors, Hamming for ubinary ones).

        ``lazy=True`` leaves an absent collection to this sink's first write
        (:meth:`upsert`), so a run that ends before writing anything (bad input, Ctrl-C, an
        error) leaves no empty collection behind.
        """
        if self.check_collection(spec):
            return
        self._check_writable()
        if lazy:
            with self._state_lock:
                self._create_on_write = spec
            return
        self._create_checked(spec)

    def _create_checked(self, spec: CollectionSpec) -> None:
        name = self.collection
        if self._call(lambda: self._create(spec)):
            return  # a new, empty collection made for spec
        # Created meanwhile by someone else: check it like any existing collection.
        layout = self._call(lambda: self._layout(name))
        if layout is None:
            raise RuntimeError(f"{self.database} collection {name!r} vanished after creation")
        self._check_existing(spec, layout)

    def _check_existing(self, spec: CollectionSpec, layout: CollectionLayout) -> None:
        check_layout(self.collection, spec, layout)
        stored = self.stored_spec()
        if stored is None and self.count() > 0:
            raise CollectionMismatchError(
                f"{self._where()} holds points not written by jina-connectors",
                "use another collection name",
            )
        check_recorded_spec(self.collection, spec, stored)

    def _check_writable(self) -> None:
        if self.read_only:
            raise PermissionError(f"{self!r} was opened read-only (read_only=True)")

    def stored_spec(self) -> CollectionSpec | None:
        """The spec recorded in the collection's points; None if absent, empty or foreign.

        Cached once found: a collection's spec changes only if it is emptied and refilled.
        """
        with self._state_lock:
            if self._spec is not None:
                return self._spec
        spec = spec_of_payload(self._call(lambda: self._sample_payload(self.collection)))
        with self._state_lock:
            if spec is not None:
                self._spec = spec
        return spec

    def count(self) -> int:
        """Number of points in the collection (0 if it does not exist)."""
        return self._call(lambda: self._count(self.collection))

    def describe_collections(self) -> list[CollectionInfo]:
        """Every collection of this database with its point count and recorded spec."""
        names = self._call(self._list_collections)
        return [
            CollectionInfo(
                name,
                self._call(lambda name=name: self._count(name)),
                spec_of_payload(self._call(lambda name=name: self._sample_payload(name))),
            )
            for name in sorted(names)
        ]

    # -- writes ---------------------------------------------------------------------------

    def check_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` for user metadata this database cannot store. The pipeline
        calls it for every document before embedding; a failing document is a bad record."""
        return None  # every database here stores any JSON metadata, unless it says otherwise

    def check_record(self, record: ChunkRecord) -> None:
        """Raise ``ValueError`` for a record this database cannot store (a text or id over a
        length limit...). The pipeline checks every record before writing; a failing record
        makes its document a bad record."""
        return None  # no per-record limits, unless the database says otherwise

    def is_record_error(self, error: BaseException) -> bool:
        """Whether a failed write was refused because of what some record holds (so writing
        its documents one group at a time finds the culprit), rather than a database error."""
        return isinstance(error, InvalidDocumentError)

    def fetch_states(self, ids: Sequence[str]) -> dict[str, ChunkState]:
        """``content_hash``/``chunk_count`` of the given point ids that exist (others omitted)."""
        states: dict[str, ChunkState] = {}
        size = self.fetch_page_size
        for start in range(0, len(ids), size):
            page = list(ids[start : start + size])
            for point_id, payload in self._call(lambda page=page: self._fetch(page)).items():
                if all(key in payload for key in STATE_KEYS):
                    states[str(point_id)] = ChunkState(
                        str(payload["content_hash"]), int(payload["chunk_count"])
                    )
        return states

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        """Insert or overwrite the points (ids are deterministic), in requests within the
        database's limits. Every record is checked before the first request is sent; the
        collection of a lazy :meth:`ensure_collection` is created first."""
        if not records:
            return
        self._check_writable()
        for record in records:
            try:
                self.check_record(record)
            except InvalidDocumentError:
                raise
            except ValueError as exc:
                raise InvalidDocumentError(record.name, str(exc)) from None
        if self._create_on_write is not None:
            # Its own lock: creating is I/O, and I/O never runs under _state_lock.
            with self._create_lock:
                pending = self._create_on_write
                if pending is not None:
                    self._create_checked(pending)
                    self._create_on_write = None
        for request in self._upsert_requests(records):
            self._call(lambda request=request: self._upsert(request))

    def delete_stale(self, keep: Mapping[str, int]) -> None:
        """For each ``doc_id -> n``: delete that document's points with ``chunk_index >= n``."""
        if not keep or not self._collection_may_exist():
            return
        self._check_writable()
        for request in self._delete_requests(keep):
            self._call(lambda request=request: self._delete_stale(request))

    def _collection_may_exist(self) -> bool:
        return self._create_on_write is None  # not created yet: nothing to delete

    # -- documents ------------------------------------------------------------------------

    def document_points(self, prefix: str = "") -> dict[str, int]:
        """``doc_id -> number of points`` of every stored document whose id starts with
        ``prefix`` (``""``: all). Reads every point's ``doc_id`` (or, where the database
        can filter by prefix, those of the matching points): O(points)."""
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
        counts: dict[str, int] = {}
        for doc_id in self._call(lambda: list(self._scan_doc_ids(prefix))):
            if doc_id.startswith(prefix):
                counts[doc_id] = counts.get(doc_id, 0) + 1
        return counts

    def doc_ids(self, prefix: str = "") -> set[str]:
        """The ids of the stored documents whose id starts with ``prefix`` (see
        :meth:`document_points`)."""
        return set(self.document_points(prefix))

    def delete_documents(self, doc_ids: Iterable[str]) -> None:
        """Delete every point of the given documents (ids that are not stored are ignored)."""
        ids = list(dict.fromkeys(doc_ids))
        for doc_id in ids:
            if not isinstance(doc_id, str):
                raise TypeError(f"document ids must be strings, got {doc_id!r}")
        self.delete_stale(dict.fromkeys(ids, 0))  # chunk_index >= 0: every chunk

    def drop_collection(self) -> bool:
        """Delete the whole collection; False if it did not exist."""
        self._check_writable()
        with self._create_lock:
            self._create_on_write = None
            with self._state_lock:
                self._spec = None
            return self._call(lambda: self._drop(self.collection))

    # -- reading points back ------------------------------------------------------------

    def read_points(
        self, fields: Sequence[str] | None = None, *, page_size: int | None = None
    ) -> Iterator[list[StoredChunk]]:
        """Every point of the collection with its payload (no vectors), one page at a time, in
        the database's order; nothing when the collection does not exist.

        ``fields``: the payload keys wanted (the database may return more); None: the whole
        payload. ``page_size``: points per page (default :attr:`read_page_size`). Each page
        is one request (retried on transient errors), so another thread may use the same
        client between pages. Points written or deleted during the read may be seen or not.
        """
        size = self.read_page_size if page_size is None else page_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"page_size must be a positive integer, got {page_size!r}")
        keys = None if fields is None else _payload_keys(fields)
        cursor: Any = None
        try:
            while True:
                points, cursor = self._call(
                    lambda cursor=cursor: self._read_page(cursor, size, keys)
                )
                if points:
                    yield [StoredChunk(str(i), dict(payload)) for i, payload in points]
                if cursor is None:
                    return
        finally:
            if cursor is not None:  # stopped early: release the database's cursor
                self._end_read(cursor)

    def fetch_points(
        self, ids: Sequence[str], fields: Sequence[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """The payloads of the given point ids that exist (others omitted), in requests of at
        most :attr:`fetch_page_size` ids; ``fields`` as in :meth:`read_points`."""
        keys = None if fields is None else _payload_keys(fields)
        found: dict[str, dict[str, Any]] = {}
        size = self.fetch_page_size
        for start in range(0, len(ids), size):
            page = list(ids[start : start + size])
            fetched = self._call(lambda page=page: self._fetch_points(page, keys))
            found.update({str(i): dict(payload) for i, payload in fetched.items()})
        return found

    # -- search ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 5,
        filter: SearchFilter | Any | None = None,
        *,
        model: str | Embedder | None = None,
    ) -> list[Hit]:
        """The ``k`` best hits for ``query``, best first.

        The query is embedded with :func:`embed_query` (``retrieval.query``, the collection's
        own model and dimensions unless ``model`` overrides the model). ``filter``: a
        :data:`SearchFilter` mapping, or the database's native filter. An absent, empty or
        foreign collection returns ``[]``.
        """
        limit = self.max_k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1 or (limit and k > limit):
            bound = f"an integer in [1, {limit}]" if limit else "a positive integer"
            raise ValueError(f"k must be {bound}, got {k!r}")
        native = self._translate_filter(filter)
        spec = self.stored_spec()
        if spec is None:
            return []
        vector = embed_query(query, spec, model)
        found = self._call(lambda: self._search(vector, k, native, spec))
        return [Hit.from_payload(point_id, score, payload) for point_id, score, payload in found]

    def _translate_filter(self, filter: SearchFilter | Any | None) -> Any:
        if filter is None or (isinstance(filter, Mapping) and not filter):
            return None
        if self._is_native_filter(filter):
            return filter
        if not isinstance(filter, Mapping):
            raise TypeError(f"filter must be a mapping, got {type(filter).__name__}")
        return self._native_filter(filter_items(filter))

    # -- messages -------------------------------------------------------------------------

    def _where(self) -> str:
        where = f" in {self.location}" if self.location else ""
        return f"{self.database} collection {self.collection!r}{where}"

    def _unsupported_type_message(self, embedding_type: str) -> str:
        kinds = " or ".join(repr(t) for t in self.embedding_types)
        return f"the {self.database} sink stores {kinds} vectors, not {embedding_type!r}"

    # -- primitives: what a database module implements ------------------------------------

    @abstractmethod
    def _is_transient(self, error: BaseException) -> bool:
        """Whether ``error`` is worth retrying (throttling, unavailable, timeouts)."""

    @abstractmethod
    def _layout(self, name: str) -> CollectionLayout | None:
        """The collection's vector layout; None if it does not exist. Raise
        :class:`CollectionMismatchError` for a collection of another kind (named vectors,
        a schema without our fields...)."""

    @abstractmethod
    def _create(self, spec: CollectionSpec) -> bool:
        """Create the collection for ``spec``; return False, creating nothing, if another
        process created it meanwhile (its layout is checked next)."""

    @abstractmethod
    def _sample_payload(self, name: str) -> Mapping[str, Any] | None:
        """The payload of any one point (spec fields at least); None if absent or empty."""

    @abstractmethod
    def _count(self, name: str) -> int:
        """Points in the collection; 0 if it does not exist."""

    @abstractmethod
    def _list_collections(self) -> list[str]:
        """Names of every collection of the database."""

    @abstractmethod
    def _fetch(self, ids: list[str]) -> Mapping[str, Mapping[str, Any]]:
        """``content_hash``/``chunk_count`` payload of each existing id of one page."""

    def _upsert_requests(self, records: Sequence[ChunkRecord]) -> Iterable[Any]:
        """The records as requests within the database's limits (default: one request)."""
        return [records]

    @abstractmethod
    def _upsert(self, request: Any) -> None:
        """Send one upsert request made by :meth:`_upsert_requests`."""

    def _delete_requests(self, keep: Mapping[str, int]) -> Iterable[Any]:
        """``keep`` as stale-chunk deletions within the database's limits (default: one)."""
        return [keep]

    @abstractmethod
    def _delete_stale(self, request: Any) -> None:
        """Send one deletion made by :meth:`_delete_requests`."""

    @abstractmethod
    def _scan_doc_ids(self, prefix: str) -> Iterable[str]:
        """The ``doc_id`` of every point of the collection (at least of those whose id starts
        with ``prefix``; the caller filters again), one per point; nothing if it is absent."""

    def _read_page(
        self, cursor: Any, size: int, fields: list[str] | None
    ) -> tuple[list[tuple[str, Mapping[str, Any]]], Any]:
        """One page of :meth:`read_points`: up to ``size`` ``(id, payload)`` pairs from
        ``cursor`` (None: the first page), and the cursor of the next page (None: this was
        the last one). ``fields``: the payload keys wanted, None for all."""
        raise NotImplementedError(f"{type(self).__name__} cannot read its points back")

    def _end_read(self, cursor: Any) -> None:
        """Release a cursor of :meth:`_read_page` that was not read to its end."""
        return None

    def _fetch_points(
        self, ids: list[str], fields: list[str] | None
    ) -> Mapping[str, Mapping[str, Any]]:
        """The payload (``fields``, None for all) of each existing id of one page."""
        raise NotImplementedError(f"{type(self).__name__} cannot fetch its points")

    @abstractmethod
    def _drop(self, name: str) -> bool:
        """Delete the collection; False if it does not exist."""

    @abstractmethod
    def _search(
        self, vector: np.ndarray, k: int, filter: Any, spec: CollectionSpec
    ) -> list[tuple[str, float, Mapping[str, Any]]]:
        """``(id, score, payload)`` of the ``k`` nearest points, best first (score: higher is
        more similar)."""

    @abstractmethod
    def _is_native_filter(self, filter: Any) -> bool:
        """Whether ``filter`` is the database's own filter (passed through as is)."""

    @abstractmethod
    def _native_filter(self, items: list[tuple[str, bool, list[Any]]]) -> Any:
        """A native filter for :func:`filter_items` triples (every key must match)."""

    @abstractmethod
    def _close(self) -> None:
        """Release the client if this sink opened it."""
