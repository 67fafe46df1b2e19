"""Qdrant sink: an embedded local folder, ``:memory:``, or a Qdrant server URL.

Points have one unnamed float vector (cosine) and the payload of
:meth:`jina_connectors.sinks.ChunkRecord.payload`; user metadata lives under ``metadata``
(filter keys ``"metadata.<key>"`` in native Qdrant filters).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CollectionMismatchError, StoreLockedError, StoreNotFoundError
from . import store
from .base import CollectionLayout, VectorSink
from .records import DEFAULT_COLLECTION, SPEC_KEYS, STATE_KEYS, ChunkRecord, CollectionSpec

try:
    from qdrant_client import QdrantClient, models
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "jina_connectors.sinks.qdrant needs qdrant-client: pip install 'jina-connectors[qdrant]'"
    ) from exc

# One lock per embedded client, shared by every sink on it (a client given to several sinks).
_CLIENT_LOCKS: weakref.WeakKeyDictionary[QdrantClient, threading.RLock] = (
    weakref.WeakKeyDictionary()
)
_CLIENT_LOCKS_GUARD = threading.Lock()
SCROLL_PAGE = 1000


def _lock_of(client: QdrantClient) -> threading.RLock:
    with _CLIENT_LOCKS_GUARD:
        lock = _CLIENT_LOCKS.get(client)
        if lock is None:
            lock = _CLIENT_LOCKS[client] = threading.RLock()
        return lock


class QdrantSink(VectorSink):
    """Writes chunks to, and searches, one Qdrant collection.

    Args:
        collection: collection name.
        location: ``":memory:"``, a URL (``http://host:6333``), or a local folder for
            Qdrant's embedded mode; None: ``<home>/qdrant``, where home is
            ``$JINA_CONNECTORS_HOME``, else ``~/.local/share/jina-connectors``
            (:mod:`jina_connectors.sinks.store`). One process at a time can open a folder: another
            one gets :class:`~jina_connectors.errors.StoreLockedError` naming the holder.
        api_key: for a Qdrant server.
        client: an existing ``QdrantClient`` to use instead of ``location`` (one process can
            open a local folder only once). It is not closed by :meth:`close`.
        binary_quantization: create the collection with binary quantization (1 bit per
            dimension in RAM, rescored with the float vectors). A Qdrant server applies it;
            the embedded mode always searches exactly.
        attempts: tries per call on transient errors (backoff between them).
        read_only: open an existing store only: a missing folder raises
            :class:`~jina_connectors.errors.StoreNotFoundError` instead of being created,
            and writes raise ``PermissionError``.

    A folder this sink created is removed again on :meth:`close` when no collection was
    created in it, so a run that writes nothing leaves nothing behind.
    """

    database = "Qdrant"
    supports_binary_quantization = True
    api_key_env = "QDRANT_API_KEY"

    def __init__(
        self,
        collection: str = DEFAULT_COLLECTION,
        *,
        location: str | os.PathLike[str] | None = None,
        api_key: str | None = None,
        client: QdrantClient | None = None,
        binary_quantization: bool = False,
        attempts: int = 5,
        read_only: bool = False,
    ) -> None:
        super().__init__(collection, attempts=attempts, read_only=read_only)
        self.binary_quantization = binary_quantization
        self._owns_client = client is None
        self._folder: Path | None = None  # an embedded folder this sink opened
        self._created_folder = False
        # How a Ray worker opens this collection: only a server is open to other processes.
        self._remote_options: dict[str, Any] | None = None
        if client is None:
            client = self._open_client(location, api_key)
            if client.init_options.get("url") is not None:
                self._remote_options = {
                    "location": os.fspath(location),  # type: ignore[arg-type]
                    "api_key": api_key,
                    "binary_quantization": binary_quantization,
                    "attempts": attempts,
                }
        self.client = client
        options = client.init_options
        self._local = options.get("path") is not None or options.get("location") == ":memory:"
        if self._local:  # the embedded mode is not thread-safe: one call at a time
            self._io_lock = _lock_of(client)
        if not self.location:
            path = options.get("path")
            self.location = (
                f"embedded Qdrant at {Path(path).absolute()}"
                if path
                else str(options.get("url") or options.get("location") or "")
            )

    def _open_client(
        self, location: str | os.PathLike[str] | None, api_key: str | None
    ) -> QdrantClient:
        location = os.fspath(location) if location is not None else store.default_qdrant_path()
        location = os.fspath(location)
        if location == ":memory:":
            self.location = "Qdrant in memory"
            return QdrantClient(location=":memory:")
        if store.is_server(location):
            self.location = location
            return QdrantClient(url=location, api_key=api_key)
        folder = Path(location).expanduser().absolute()
        self.location = f"embedded Qdrant at {folder}"
        if self.read_only and not (folder / "meta.json").is_file():
            raise StoreNotFoundError("embedded Qdrant", folder)
        store.check_qdrant_unlocked(folder)  # names the holder, unlike the client's message
        self._created_folder = not folder.exists()
        try:
            client = QdrantClient(path=str(folder))
        except RuntimeError as error:
            if "already accessed" not in str(error):
                raise
            lock = store.qdrant_lock_file(folder)
            raise StoreLockedError("Qdrant", folder, store.holder(lock)) from None
        self._folder = folder
        store.write_owner(store.qdrant_lock_file(folder))
        return client

    def _close(self) -> None:
        if not self._owns_client:
            return
        empty = False
        if self._created_folder and self._folder is not None:
            try:
                empty = not self.client.get_collections().collections
            except Exception:  # closing must not fail; keep the folder when unsure
                empty = False
        self.client.close()
        if self._folder is not None:
            store.remove_owner(store.qdrant_lock_file(self._folder))
            if empty:
                _remove_empty_store(self._folder)

    def remote_opener(self) -> Callable[[], QdrantSink] | None:
        """A Qdrant server's collection opens anywhere; a local folder (embedded mode),
        ``:memory:`` and a client given to the sink belong to this process."""
        if self._remote_options is None:
            return None
        return functools.partial(QdrantSink, self.collection, **self._remote_options)

    def _unsupported_type_message(self, embedding_type: str) -> str:
        return (
            f"the Qdrant sink stores float vectors (embedding_type='float'), not "
            f"{embedding_type!r}; for 1-bit storage in RAM use QdrantSink(binary_quantization="
            "True) with float vectors, or store packed bits in Milvus (MilvusSink)"
        )

    def _is_transient(self, error: BaseException) -> bool:
        """Connection problems, timeouts and "try again" statuses; not bad requests."""
        import httpx
        from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

        if isinstance(error, UnexpectedResponse):
            return error.status_code in (429, 502, 503, 504)
        if isinstance(error, (ResponseHandlingException, httpx.TransportError)):
            return True
        code = getattr(error, "code", None)  # grpc.RpcError
        if callable(code):
            name = getattr(code(), "name", "")
            return name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
        return False

    def is_record_error(self, error: BaseException) -> bool:
        """A server's "bad request" for a write (a payload it cannot take)."""
        from qdrant_client.http.exceptions import UnexpectedResponse

        if isinstance(error, UnexpectedResponse) and error.status_code in (400, 422):
            return True
        return super().is_record_error(error)

    def check_collection(self, spec: CollectionSpec) -> bool:
        """See :meth:`VectorSink.check_collection`; also refuses ``binary_quantization=True``
        for an existing collection created without it (the setting applies at creation)."""
        exists = super().check_collection(spec)
        if exists and self.binary_quantization and not self.binary_quantization_of():
            raise CollectionMismatchError(
                f"{self._where()} exists without binary quantization, and "
                "binary_quantization=True only applies when a collection is created",
                "use another collection name, or drop this one and ingest again",
            )
        return exists

    # -- collection primitives ----------------------------------------------------------

    def _layout(self, name: str) -> CollectionLayout | None:
        if not self.client.collection_exists(name):
            return None
        vectors = self.client.get_collection(name).config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise CollectionMismatchError(
                f"collection {name!r} uses named vectors ({', '.join(vectors or {})}); "
                "this sink writes one unnamed vector",
                "use another collection",
            )
        return CollectionLayout(vectors.size, vectors.distance.value.lower(), "float")

    def _create(self, spec: CollectionSpec) -> bool:
        name = self.collection
        if self.client.collection_exists(name):
            return False
        quantization = (
            models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
            if self.binary_quantization
            else None
        )
        self.client.create_collection(
            name,
            vectors_config=models.VectorParams(
                size=spec.dimensions, distance=models.Distance.COSINE
            ),
            quantization_config=quantization,
        )
        if not self._local:  # the embedded mode ignores payload indexes (and warns)
            for key, schema in (
                ("doc_id", models.PayloadSchemaType.KEYWORD),
                ("chunk_index", models.PayloadSchemaType.INTEGER),
            ):
                self.client.create_payload_index(name, key, schema)
        return True

    def _sample_payload(self, name: str) -> Mapping[str, Any] | None:
        if not self.client.collection_exists(name):
            return None
        points, _ = self.client.scroll(
            name, limit=1, with_payload=list(SPEC_KEYS), with_vectors=False
        )
        return (points[0].payload or {}) if points else None

    def _count(self, name: str) -> int:
        if not self.client.collection_exists(name):
            return 0
        return self.client.count(name, exact=True).count

    def _list_collections(self) -> list[str]:
        return [c.name for c in self.client.get_collections().collections]

    def _drop(self, name: str) -> bool:
        if not self.client.collection_exists(name):
            return False
        return bool(self.client.delete_collection(name))

    def _scan_doc_ids(self, prefix: str) -> Iterator[str]:
        """Every point's ``doc_id``, read in pages (Qdrant cannot match a keyword prefix, so
        the caller filters)."""
        if not self.client.collection_exists(self.collection):
            return
        offset = None
        while True:
            points, offset = self.client.scroll(
                self.collection,
                limit=SCROLL_PAGE,
                offset=offset,
                with_payload=["doc_id"],
                with_vectors=False,
            )
            for point in points:
                doc_id = (point.payload or {}).get("doc_id")
                if isinstance(doc_id, str):
                    yield doc_id
            if offset is None:
                return

    def _read_page(
        self, cursor: Any, size: int, fields: list[str] | None
    ) -> tuple[list[tuple[str, Mapping[str, Any]]], Any]:
        """One scroll page; the cursor is Qdrant's next-page offset (a point id)."""
        if cursor is None and not self.client.collection_exists(self.collection):
            return [], None
        points, offset = self.client.scroll(
            self.collection,
            limit=size,
            offset=cursor,
            with_payload=True if fields is None else fields,
            with_vectors=False,
        )
        return [(str(point.id), point.payload or {}) for point in points], offset

    def _fetch_points(
        self, ids: list[str], fields: list[str] | None
    ) -> dict[str, Mapping[str, Any]]:
        if not self.client.collection_exists(self.collection):
            return {}
        points = self.client.retrieve(
            self.collection,
            ids,
            with_payload=True if fields is None else fields,
            with_vectors=False,
        )
        return {str(point.id): point.payload or {} for point in points}

    def binary_quantization_of(self, name: str | None = None) -> bool | None:
        """Whether the existing collection was created with binary quantization; None when it
        does not exist."""
        name = name or self.collection

        def read() -> bool | None:
            if not self.client.collection_exists(name):
                return None
            config = self.client.get_collection(name).config.quantization_config
            return isinstance(config, models.BinaryQuantization)

        return self._call(read)

    # -- write primitives ---------------------------------------------------------------

    def _fetch(self, ids: list[str]) -> dict[str, Mapping[str, Any]]:
        try:
            points = self.client.retrieve(
                self.collection, ids, with_payload=list(STATE_KEYS), with_vectors=False
            )
        except Exception:
            if not self.client.collection_exists(self.collection):
                return {}  # an absent collection holds no points
            raise
        return {str(point.id): point.payload or {} for point in points}

    def _upsert(self, request: Sequence[ChunkRecord]) -> None:
        batch = models.Batch(
            ids=[r.id for r in request],
            vectors=np.stack([r.vector for r in request]).astype(np.float32).tolist(),
            payloads=[r.payload() for r in request],
        )
        self.client.upsert(self.collection, points=batch, wait=True)

    def _delete_stale(self, request: Mapping[str, int]) -> None:
        selector = models.Filter(
            should=[
                models.Filter(
                    must=[
                        models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)),
                        models.FieldCondition(key="chunk_index", range=models.Range(gte=count)),
                    ]
                )
                for doc_id, count in request.items()
            ]
        )
        self.client.delete(
            self.collection, points_selector=models.FilterSelector(filter=selector), wait=True
        )

    # -- search primitives --------------------------------------------------------------

    def _is_native_filter(self, filter: Any) -> bool:
        return isinstance(filter, models.Filter)

    def _native_filter(self, items: list[tuple[str, bool, list[Any]]]) -> models.Filter:
        """Equality on ``doc_id`` or user metadata; a list of values matches any of them."""
        must: list[models.Condition] = []
        for key, is_metadata, values in items:
            field = f"metadata.{key}" if is_metadata else key
            conditions = list(_conditions(field, values))
            must.append(conditions[0] if len(conditions) == 1 else models.Filter(should=conditions))
        return models.Filter(must=must)

    def _search(
        self, vector: np.ndarray, k: int, filter: Any, spec: CollectionSpec
    ) -> list[tuple[str, float, Mapping[str, Any]]]:
        search_params = None
        if self.binary_quantization and not self._local:
            search_params = models.SearchParams(
                quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0)
            )
        response = self.client.query_points(
            self.collection,
            query=np.asarray(vector, dtype=np.float32).tolist(),
            query_filter=filter,
            search_params=search_params,
            limit=k,
            with_payload=True,
        )
        return [(str(p.id), p.score, p.payload or {}) for p in response.points]


def _remove_empty_store(folder: Path) -> None:
    """Remove a store folder holding no collection: only the files Qdrant writes in an empty
    store (its metadata, lock and owner file), then the folder if nothing else is there."""
    for name in ("meta.json", ".lock", store.owner_file(store.qdrant_lock_file(folder)).name):
        with contextlib.suppress(OSError):
            (folder / name).unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()  # fails, keeping it, if anything else is inside


def _conditions(field: str, values: list[Any]) -> Iterator[models.FieldCondition]:
    for value in values:
        if isinstance(value, float) and not value.is_integer():
            yield models.FieldCondition(key=field, range=models.Range(gte=value, lte=value))
        else:
            match = value if isinstance(value, (str, bool)) else int(value)
            yield models.FieldCondition(key=field, match=models.MatchValue(value=match))
