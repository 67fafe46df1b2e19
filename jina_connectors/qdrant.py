"""Qdrant sink: an embedded local folder, ``:memory:``, or a Qdrant server URL.

Points have one unnamed float vector (cosine) and the payload of
:meth:`jina_connectors.ingest.ChunkRecord.payload`; user metadata lives under ``metadata``
(filter keys ``"metadata.<key>"`` in native Qdrant filters).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .ingest import (
    DEFAULT_COLLECTION,
    ChunkRecord,
    ChunkState,
    CollectionInfo,
    CollectionMismatchError,
    CollectionSpec,
    Hit,
    SearchFilter,
    check_layout,
    check_recorded_spec,
    embed_query,
    filter_items,
    with_retries,
)

try:
    from qdrant_client import QdrantClient, models
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "jina_connectors.qdrant needs qdrant-client: pip install 'jina-connectors[qdrant]'"
    ) from exc

if TYPE_CHECKING:
    from embedder_core import Embedder

DEFAULT_PATH = Path(".jina_connectors") / "qdrant"
_FETCH_PAGE = 1000
_STATE_FIELDS = ["content_hash", "chunk_count"]
_SPEC_FIELDS = ["model", "dimensions", "embedding_type", "task"]
T = TypeVar("T")


def _is_transient(exc: BaseException) -> bool:
    """Connection problems, timeouts and "try again" statuses; not bad requests."""
    import httpx
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(exc, UnexpectedResponse):
        return exc.status_code in (429, 502, 503, 504)
    if isinstance(exc, (ResponseHandlingException, httpx.TransportError)):
        return True
    code = getattr(exc, "code", None)  # grpc.RpcError
    if callable(code):
        name = getattr(code(), "name", "")
        return name in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")
    return False


class QdrantSink:
    """Writes chunks to, and searches, one Qdrant collection.

    Args:
        collection: collection name.
        location: ``":memory:"``, a URL (``http://host:6333``), or a local folder for
            Qdrant's embedded mode; None: ``./.jina_connectors/qdrant``.
        api_key: for a Qdrant server.
        client: an existing ``QdrantClient`` to use instead of ``location`` (one process can
            open a local folder only once). It is not closed by :meth:`close`.
        binary_quantization: create the collection with binary quantization (1 bit per
            dimension in RAM, rescored with the float vectors). A Qdrant server applies it;
            the embedded mode always searches exactly.
    """

    def __init__(
        self,
        collection: str = DEFAULT_COLLECTION,
        *,
        location: str | os.PathLike[str] | None = None,
        api_key: str | None = None,
        client: QdrantClient | None = None,
        binary_quantization: bool = False,
    ) -> None:
        if not isinstance(collection, str) or not collection:
            raise ValueError("collection must be a non-empty string")
        self.collection = collection
        self.binary_quantization = binary_quantization
        self._owns_client = client is None
        if client is None:
            client = _open_client(location, api_key)
        self.client = client
        options = client.init_options
        self._local = options.get("path") is not None or options.get("location") == ":memory:"
        # The embedded mode is not thread-safe; the ingestion pipeline calls from two threads.
        self._lock: AbstractContextManager[Any] = (
            threading.RLock() if self._local else nullcontext()
        )
        self._spec: CollectionSpec | None = None

    def __enter__(self) -> QdrantSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def _call(self, operation: Callable[[], T]) -> T:
        with self._lock:
            return with_retries(operation, _is_transient)

    # -- collection ---------------------------------------------------------------------

    def ensure_collection(self, spec: CollectionSpec) -> None:
        if spec.embedding_type != "float":
            raise ValueError(
                "the Qdrant sink stores float vectors (embedding_type='float'); for 1-bit "
                "storage use QdrantSink(binary_quantization=True)"
            )
        name = self.collection
        if not self._call(lambda: self.client.collection_exists(name)):
            quantization = (
                models.BinaryQuantization(binary=models.BinaryQuantizationConfig(always_ram=True))
                if self.binary_quantization
                else None
            )
            self._call(
                lambda: self.client.create_collection(
                    name,
                    vectors_config=models.VectorParams(
                        size=spec.dimensions, distance=models.Distance.COSINE
                    ),
                    quantization_config=quantization,
                )
            )
            if not self._local:  # the embedded mode ignores payload indexes (and warns)
                for key, schema in (
                    ("doc_id", models.PayloadSchemaType.KEYWORD),
                    ("chunk_index", models.PayloadSchemaType.INTEGER),
                ):
                    self._call(
                        lambda key=key, schema=schema: self.client.create_payload_index(
                            name, key, schema
                        )
                    )
            return
        vectors = self._call(lambda: self.client.get_collection(name)).config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise CollectionMismatchError(
                f"collection {name!r} uses named vectors ({', '.join(vectors or {})}); "
                "this sink writes one unnamed vector, use another collection"
            )
        check_layout(name, spec, size=vectors.size, metric=vectors.distance.value)
        stored = self.stored_spec()
        if stored is None and self.count():
            raise CollectionMismatchError(
                f"collection {name!r} holds points not written by jina-connectors; "
                "use another collection name"
            )
        check_recorded_spec(name, spec, stored)

    def stored_spec(self) -> CollectionSpec | None:
        if self._spec is None:
            self._spec = self._spec_of(self.collection)
        return self._spec

    def _spec_of(self, name: str) -> CollectionSpec | None:
        if not self._call(lambda: self.client.collection_exists(name)):
            return None
        points, _ = self._call(
            lambda: self.client.scroll(name, limit=1, with_payload=_SPEC_FIELDS, with_vectors=False)
        )
        payload = (points[0].payload or {}) if points else {}
        if not all(key in payload for key in ("model", "dimensions")):
            return None  # empty, or not written by jina-connectors
        return CollectionSpec.from_payload(payload)

    def count(self) -> int:
        name = self.collection
        if not self._call(lambda: self.client.collection_exists(name)):
            return 0
        return self._call(lambda: self.client.count(name, exact=True)).count

    def describe_collections(self) -> list[CollectionInfo]:
        names = [c.name for c in self._call(self.client.get_collections).collections]
        return [
            CollectionInfo(
                name=name,
                count=self._call(lambda name=name: self.client.count(name, exact=True)).count,
                spec=self._spec_of(name),
            )
            for name in sorted(names)
        ]

    # -- writes -------------------------------------------------------------------------

    def fetch_states(self, ids: Sequence[str]) -> dict[str, ChunkState]:
        states: dict[str, ChunkState] = {}
        for start in range(0, len(ids), _FETCH_PAGE):
            page = list(ids[start : start + _FETCH_PAGE])
            points = self._call(
                lambda page=page: self.client.retrieve(
                    self.collection, page, with_payload=_STATE_FIELDS, with_vectors=False
                )
            )
            for point in points:
                payload = point.payload or {}
                if "content_hash" in payload and "chunk_count" in payload:
                    states[str(point.id)] = ChunkState(
                        str(payload["content_hash"]), int(payload["chunk_count"])
                    )
        return states

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        if not records:
            return
        batch = models.Batch(
            ids=[r.id for r in records],
            vectors=np.stack([r.vector for r in records]).astype(np.float32).tolist(),
            payloads=[r.payload() for r in records],
        )
        self._call(lambda: self.client.upsert(self.collection, points=batch, wait=True))

    def delete_stale(self, keep: Mapping[str, int]) -> None:
        if not keep:
            return
        selector = models.Filter(
            should=[
                models.Filter(
                    must=[
                        models.FieldCondition(key="doc_id", match=models.MatchValue(value=doc_id)),
                        models.FieldCondition(key="chunk_index", range=models.Range(gte=count)),
                    ]
                )
                for doc_id, count in keep.items()
            ]
        )
        self._call(
            lambda: self.client.delete(
                self.collection, points_selector=models.FilterSelector(filter=selector), wait=True
            )
        )

    # -- search -------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 5,
        filter: SearchFilter | models.Filter | None = None,
        *,
        model: str | Embedder | None = None,
    ) -> list[Hit]:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        query_filter = filter if isinstance(filter, models.Filter) else _to_filter(filter)
        spec = self.stored_spec()
        if spec is None:
            return []
        vector = embed_query(query, spec, model)
        search_params = None
        if self.binary_quantization and not self._local:
            search_params = models.SearchParams(
                quantization=models.QuantizationSearchParams(rescore=True, oversampling=2.0)
            )
        response = self._call(
            lambda: self.client.query_points(
                self.collection,
                query=vector.astype(np.float32).tolist(),
                query_filter=query_filter,
                search_params=search_params,
                limit=k,
                with_payload=True,
            )
        )
        return [Hit.from_payload(str(p.id), p.score, p.payload or {}) for p in response.points]


def _open_client(location: str | os.PathLike[str] | None, api_key: str | None) -> QdrantClient:
    if location is None:
        location = DEFAULT_PATH
    location = os.fspath(location)
    if location == ":memory:":
        return QdrantClient(location=":memory:")
    if location.startswith(("http://", "https://")):
        return QdrantClient(url=location, api_key=api_key)
    Path(location).mkdir(parents=True, exist_ok=True)
    return QdrantClient(path=location)


def _to_filter(filter: SearchFilter | None) -> models.Filter | None:
    """Equality on ``doc_id`` or user metadata; a list of values matches any of them."""
    if not filter:
        return None
    must: list[models.Condition] = []
    for key, is_metadata, values in filter_items(filter):
        field = f"metadata.{key}" if is_metadata else key
        conditions = list(_conditions(field, values))
        must.append(conditions[0] if len(conditions) == 1 else models.Filter(should=conditions))
    return models.Filter(must=must)


def _conditions(field: str, values: list[Any]) -> Iterator[models.FieldCondition]:
    for value in values:
        if isinstance(value, float) and not value.is_integer():
            yield models.FieldCondition(key=field, range=models.Range(gte=value, lte=value))
        else:
            match = value if isinstance(value, (str, bool)) else int(value)
            yield models.FieldCondition(key=field, match=models.MatchValue(value=match))
