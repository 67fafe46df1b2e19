"""Pinecone sink: a :class:`~jina_connectors.sinks.VectorSink` on one namespace of a Pinecone
serverless index, through the maintained ``pinecone`` SDK (REST client).

It only translates the pipeline's records to Pinecone; ids, hashes, skipping and stale-chunk
logic live in the pipeline, retries, paging and checks in the sink base class.

How records are stored:

- Vector: float32 values in a dense index with the cosine metric (Pinecone has no binary
  vectors or Hamming metric, so only ``embedding_type="float"`` is supported).
- Metadata: the pipeline's payload fields at the top level (``text``, ``doc_id``,
  ``chunk_index``, ``chunk_count``, ``start``, ``end``, ``content_hash``, ``model``, ``task``,
  ``dimensions``, ``embedding_type``), and each user metadata key ``k`` flattened to
  ``"metadata.k"`` (Pinecone metadata cannot nest). A native filter therefore reads
  ``{"metadata.president": {"$eq": "Lincoln"}}``, the same path as in Qdrant.
- Pinecone metadata values are strings, numbers (64-bit floats), booleans or lists of strings.
  User metadata of another type makes its document a bad record before it is embedded
  (:meth:`PineconeSink.check_metadata`); ``None`` values are dropped (Pinecone has no null).
  Numbers come back from Pinecone as floats; integral ones are returned as ``int``.
- Metadata is capped at 40 KB per record. When a chunk's text would exceed it, the text is cut
  (at a character boundary) to the longest prefix that fits, ``text_truncated: true`` is set on
  that record, a warning names it, and :attr:`PineconeSink.truncated` counts it. ``start``/
  ``end`` keep the chunk's full span in the source document, so the full text can be
  recovered from there. A record whose metadata exceeds the cap without its text is a bad
  record.
- A namespace holding records that jina-connectors did not write is refused, as any
  collection of foreign points is.

Requests stay within Pinecone's operation limits: upserts of at most 1,000 records and
2 MB, fetches of at most ``FETCH_BATCH`` ids, filters of at most 1,000 ``$in`` values, query
``top_k`` of at most 10,000. Every call is retried with backoff on transient errors (429,
5xx, connection errors, timeouts), on top of the SDK's own per-request retries. A write that
Pinecone refuses as invalid (400, 413) is retried document by document by the pipeline's
writer, so only the refused documents become bad records.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

try:
    from pinecone import Index, Pinecone
    from pinecone.errors.exceptions import (
        ApiError,
        ConflictError,
        NotFoundError,
        PineconeConnectionError,
        PineconeTimeoutError,
        RateLimitError,
        ServiceError,
    )
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "the Pinecone sink needs the pinecone SDK: pip install 'jina-connectors[pinecone]'"
    ) from error

from ..errors import CollectionMismatchError
from .base import CollectionLayout, VectorSink
from .records import (
    DEFAULT_COLLECTION,
    ChunkRecord,
    CollectionInfo,
    CollectionSpec,
    spec_of_payload,
)

__all__ = ["PineconeSink"]

logger = logging.getLogger("jina_connectors.pinecone")  # its name before the move

# Pinecone's fixed operation limits (docs.pinecone.io, "Operation limits").
MAX_UPSERT_RECORDS = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_TOP_K = 10_000
# Our own, smaller budgets: the SDK's JSON encoder may format a float a few characters
# differently from ours, and Pinecone does not document how it measures metadata size.
UPSERT_BYTES_BUDGET = MAX_REQUEST_BYTES - 64 * 1024
METADATA_BYTES_BUDGET = MAX_METADATA_BYTES - 1024
# Fetch sends ids in the URL and returns every vector's values: 100 ids keep the URL under
# ~5 KB and the response under ~2 MB even at 1024 dimensions with long texts.
FETCH_BATCH = 100
FILTER_IN_BATCH = 1000
# The reserved field the vectors API (upsert/query by vector) addresses; an index declaring it
# is what the 2026-07 API calls a dense vector index (the SDK's ``dimension=`` sugar uses it).
VECTOR_FIELD = "_values"
DEFAULT_NAMESPACE_LABEL = "__default__"  # how describe_index_stats names namespace ""
USER_KEY_PREFIX = "metadata."
MAX_EXACT_INT = 2**53  # Pinecone numbers are 64-bit floats
_INDEX_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,43}[a-z0-9])?")


class PineconeSink(VectorSink):
    """Write ingested chunks to, and search, one namespace of a Pinecone serverless index.

    Args:
        collection: the index name (lowercase letters, digits and ``-``, at most 45
            characters).
        location: control-plane URL; None uses ``PINECONE_CONTROLLER_HOST`` or the public
            API. The data-plane host is always the one Pinecone reports for the index.
        api_key: Pinecone API key; None reads ``PINECONE_API_KEY``.
        namespace: the namespace written and searched; None is the default namespace.
        cloud, region: where :meth:`ensure_collection` creates a missing serverless index.
        timeout: seconds per HTTP attempt.
        attempts: tries per call on transient errors (backoff between them).
        read_only: refuse writes (``PermissionError``); nothing is created by reading.

    :meth:`drop_collection` deletes the whole index, every namespace of it.
    """

    embedding_types = ("float",)
    fetch_page_size = FETCH_BATCH
    read_page_size = FETCH_BATCH
    max_k = MAX_TOP_K
    database = "Pinecone"
    api_key_env = "PINECONE_API_KEY"
    requires_api_key = True

    def __init__(
        self,
        collection: str = DEFAULT_COLLECTION,
        *,
        location: str | None = None,
        api_key: str | None = None,
        namespace: str | None = None,
        cloud: str = "aws",
        region: str = "us-east-1",
        timeout: float = 30.0,
        attempts: int = 5,
        read_only: bool = False,
    ) -> None:
        if not isinstance(collection, str) or not _INDEX_NAME.fullmatch(collection):
            raise ValueError(
                f"invalid Pinecone index name {collection!r}: use 1-45 lowercase letters, "
                "digits or '-', starting and ending with a letter or digit"
            )
        if namespace is not None and not isinstance(namespace, str):
            raise TypeError(f"namespace must be a string, got {type(namespace).__name__}")
        super().__init__(collection, attempts=attempts, read_only=read_only)
        api_key = api_key or os.environ.get("PINECONE_API_KEY")
        if not api_key:
            raise ValueError("no Pinecone API key: pass api_key=... or set PINECONE_API_KEY")
        self.namespace = namespace or ""
        self.cloud = cloud
        self.region = region
        #: Records whose text was cut to fit Pinecone's metadata limit (written ones).
        self.truncated = 0
        self._pc: Pinecone = Pinecone(api_key=api_key, host=location, timeout=timeout)
        self.location = location or "Pinecone"
        self._options: dict[str, Any] = {
            "location": location,
            "api_key": api_key,
            "namespace": namespace,
            "cloud": cloud,
            "region": region,
            "timeout": timeout,
            "attempts": attempts,
        }
        self._index: Index | None = None  # the data plane, opened once (under _state_lock)
        self._dimension: int | None = None

    def __repr__(self) -> str:
        return f"PineconeSink({self.collection!r}, namespace={self.namespace!r})"

    def _where(self) -> str:
        return f"namespace {self.namespace!r} of Pinecone index {self.collection!r}"

    def _unsupported_type_message(self, embedding_type: str) -> str:
        return (
            f"Pinecone stores float vectors only; embedding_type={embedding_type!r} is not "
            "supported (Pinecone has no binary vectors or Hamming metric)"
        )

    def remote_opener(self) -> Callable[[], PineconeSink]:
        """Pinecone is a service: any process opens the same namespace (with the same key)."""
        return functools.partial(PineconeSink, self.collection, **self._options)

    def _close(self) -> None:
        with self._state_lock:
            index, self._index = self._index, None
        if index is not None:
            index.close()
        self._pc.close()

    def _is_transient(self, error: BaseException) -> bool:
        """Throttling (429), server errors (5xx), dropped connections and timeouts."""
        return isinstance(
            error, (RateLimitError, ServiceError, PineconeConnectionError, PineconeTimeoutError)
        )

    def is_record_error(self, error: BaseException) -> bool:
        """Pinecone refused a write as invalid: 400 (a value or size it does not take) or
        413 (too large)."""
        if isinstance(error, ApiError) and error.status_code in (400, 413):
            return True
        return super().is_record_error(error)

    # -- the data plane -----------------------------------------------------------------

    def _data_plane(self) -> Index | None:
        """The index's data plane, opened once even when two threads ask at the same time;
        None while the index does not exist."""
        with self._state_lock:
            if self._index is not None:
                return self._index
            try:
                description = self._pc.indexes.describe(self.collection)
            except NotFoundError:
                return None
            self._open(description)
            return self._index

    def _open(self, description: Any) -> None:
        layout = _dense_layout(description)
        if layout is None:
            fields = sorted(getattr(description.schema, "fields", {}) or {})
            raise CollectionMismatchError(
                f"Pinecone index {self.collection!r} is not a dense vector index (its schema "
                f"declares {fields})",
                "use another index name",
            )
        with self._state_lock:
            if self._index is None:
                if not description.host:
                    raise RuntimeError(f"Pinecone index {self.collection!r} has no host yet")
                self._index = self._pc.index(host=description.host)
            self._dimension = layout[0]

    def _require_data_plane(self) -> Index:
        index = self._data_plane()
        if index is None:
            raise RuntimeError(
                f"Pinecone index {self.collection!r} does not exist; call ensure_collection first"
            )
        return index

    # -- collection primitives ----------------------------------------------------------

    def _layout(self, name: str) -> CollectionLayout | None:
        try:
            description = self._pc.indexes.describe(name)
        except NotFoundError:
            return None
        self._open(description)
        dimension, metric = _dense_layout(description) or (0, "")
        return CollectionLayout(dimension, metric, "float")

    def _create(self, spec: CollectionSpec) -> bool:
        try:
            self._pc.indexes.create(
                name=self.collection,
                schema={
                    "fields": {
                        VECTOR_FIELD: {
                            "type": "dense_vector",
                            "dimension": spec.dimensions,
                            "metric": spec.metric,
                        }
                    }
                },
                deployment={
                    "deployment_type": "managed",
                    "cloud": self.cloud,
                    "region": self.region,
                },
            )
        except ConflictError:
            return False  # created meanwhile by someone else: checked like any existing index
        logger.info(
            "created Pinecone index %r (dimension %d, %s, %s/%s)",
            self.collection,
            spec.dimensions,
            spec.metric,
            self.cloud,
            self.region,
        )
        return True

    def _sample_payload(self, name: str) -> Mapping[str, Any] | None:
        """Some record of this sink's namespace (of ``name``, this sink's index)."""
        index = self._data_plane()
        if index is None or self._dimension is None:
            return None
        return _any_payload(index, self.namespace, self._dimension)

    def _count(self, name: str) -> int:
        """Records in this namespace. Pinecone's statistics are eventually consistent: a write
        may take a moment to be counted."""
        index = self._data_plane()
        if index is None:
            return 0
        return _namespace_counts(index.describe_index_stats()).get(self.namespace, 0)

    def _list_collections(self) -> list[str]:
        return [description.name for description in self._pc.indexes.list()]

    def _drop(self, name: str) -> bool:
        """Delete the whole index (every namespace of it)."""
        with self._state_lock:
            index, self._index, self._dimension = self._index, None, None
        if index is not None:
            index.close()
        try:
            self._pc.indexes.delete(name)
        except NotFoundError:
            return False
        return True

    def _scan_doc_ids(self, prefix: str) -> Iterator[str]:
        """Every record's ``doc_id`` in this namespace: its ids listed page by page, then
        fetched (record ids are UUIDs, and Pinecone filters have no prefix match), so this
        reads every record: O(records)."""
        index = self._data_plane()
        if index is None:
            return
        for page in index.list(namespace=self.namespace, limit=FETCH_BATCH):
            ids = [item.id for item in page.vectors]
            if not ids:
                continue
            fetched = index.fetch(ids=ids, namespace=self.namespace)
            for vector in fetched.vectors.values():
                doc_id = (vector.metadata or {}).get("doc_id")
                if isinstance(doc_id, str):
                    yield doc_id

    def _read_page(
        self, cursor: Any, size: int, fields: list[str] | None
    ) -> tuple[list[tuple[str, Mapping[str, Any]]], Any]:
        """One page of ids listed (the cursor is Pinecone's pagination token), then fetched:
        Pinecone lists ids only. ``fields`` is not needed: a fetch returns all metadata."""
        index = self._data_plane()
        if index is None:
            return [], None
        listed = index.list_paginated(
            namespace=self.namespace,
            limit=min(size, FETCH_BATCH),
            pagination_token=cursor,
        )
        ids = [item.id for item in listed.vectors or []]
        token = getattr(listed.pagination, "next", None) if listed.pagination else None
        if not ids:
            return [], token or None
        fetched = index.fetch(ids=ids, namespace=self.namespace).vectors
        return [(i, _payload(fetched[i].metadata or {})) for i in ids if i in fetched], token

    def _fetch_points(
        self, ids: list[str], fields: list[str] | None
    ) -> dict[str, Mapping[str, Any]]:
        index = self._data_plane()
        if index is None:
            return {}
        response = index.fetch(ids=ids, namespace=self.namespace)
        return {i: _payload(v.metadata or {}) for i, v in response.vectors.items()}

    def describe_collections(self) -> list[CollectionInfo]:
        """Every index of the project, its record count and the spec recorded in it (read from
        this sink's namespace for its own index, else from the index's largest namespace)."""
        infos = []
        for description in self._call(lambda: list(self._pc.indexes.list())):
            layout = _dense_layout(description)
            if layout is None or not description.host:
                infos.append(CollectionInfo(description.name, 0, None))
                continue
            index = self._pc.index(host=description.host)
            try:
                counts = _namespace_counts(self._call(index.describe_index_stats))
                namespace = self.namespace if description.name == self.collection else ""
                if counts and counts.get(namespace, 0) == 0:
                    namespace = max(counts, key=lambda ns: counts[ns])
                payload = self._call(
                    lambda index=index, namespace=namespace, width=layout[0]: _any_payload(
                        index, namespace, width
                    )
                )
                spec = spec_of_payload(payload)
                infos.append(CollectionInfo(description.name, sum(counts.values()), spec))
            finally:
                index.close()
        return sorted(infos, key=lambda info: info.name)

    # -- write primitives ---------------------------------------------------------------

    def check_metadata(self, metadata: Mapping[str, Any]) -> None:
        """Raise ValueError if Pinecone cannot store this user metadata (see the module doc)."""
        flat = _flatten_user_metadata(metadata)
        size = _json_size(flat)
        if size > METADATA_BYTES_BUDGET // 2:
            raise ValueError(
                f"metadata takes {size} bytes; Pinecone allows {MAX_METADATA_BYTES} bytes per "
                "record including the chunk text, so keep user metadata under "
                f"{METADATA_BYTES_BUDGET // 2} bytes"
            )

    def check_record(self, record: ChunkRecord) -> None:
        """Raise ValueError for a record Pinecone cannot store: a vector that is not a finite,
        non-zero float vector of the index's dimension, user metadata Pinecone cannot hold, or
        metadata over the 40 KB limit even without the chunk text."""
        vector = np.asarray(record.vector)
        dimension = self._dimension
        if vector.ndim != 1 or (dimension is not None and vector.shape[0] != dimension):
            raise ValueError(
                f"vector of shape {vector.shape} does not fit the index dimension {dimension}"
            )
        if record.embedding_type != "float" or not np.issubdtype(vector.dtype, np.floating):
            raise ValueError("Pinecone stores float vectors only")
        if not np.all(np.isfinite(vector)) or not np.any(vector):
            raise ValueError("the vector is zero or not finite")
        metadata = _metadata(record)  # raises ValueError for unstorable user metadata
        metadata["text"] = ""
        metadata["text_truncated"] = True
        if _json_size(metadata) > METADATA_BYTES_BUDGET:
            raise ValueError(
                f"metadata takes {_json_size(metadata)} bytes without the chunk text, over "
                f"Pinecone's {MAX_METADATA_BYTES}-byte per-record limit"
            )

    def _fetch(self, ids: list[str]) -> dict[str, Mapping[str, Any]]:
        index = self._data_plane()
        if index is None:
            return {}
        response = index.fetch(ids=ids, namespace=self.namespace)
        return {vector_id: v.metadata or {} for vector_id, v in response.vectors.items()}

    def _upsert_requests(
        self, records: Sequence[ChunkRecord]
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """Batches within Pinecone's limits, each with how many of its texts were cut."""
        converted = [_to_pinecone(record) for record in records]
        yield from _upsert_batches(converted)

    def _upsert(self, request: tuple[list[dict[str, Any]], int]) -> None:
        vectors, truncated = request
        index = self._require_data_plane()
        response = index.upsert(vectors=vectors, namespace=self.namespace)
        if response.upserted_count != len(vectors):
            raise RuntimeError(
                f"Pinecone acknowledged {response.upserted_count} of {len(vectors)} records "
                f"upserted into {self.collection!r}"
            )
        with self._state_lock:
            self.truncated += truncated

    def _delete_requests(self, keep: Mapping[str, int]) -> Iterator[dict[str, Any]]:
        """One delete-by-filter per group of at most 1,000 documents that share ``n``."""
        by_count: dict[int, list[str]] = defaultdict(list)
        for doc_id, n in keep.items():
            by_count[int(n)].append(doc_id)
        for n, doc_ids in sorted(by_count.items()):
            for start in range(0, len(doc_ids), FILTER_IN_BATCH):
                yield {
                    "doc_id": {"$in": doc_ids[start : start + FILTER_IN_BATCH]},
                    "chunk_index": {"$gte": n},
                }

    def _delete_stale(self, request: dict[str, Any]) -> None:
        self._require_data_plane().delete(filter=request, namespace=self.namespace)

    # -- search primitives --------------------------------------------------------------

    def _is_native_filter(self, filter: Any) -> bool:
        """A native Pinecone filter: a mapping with a ``$`` operator or a dict value."""
        return isinstance(filter, Mapping) and any(
            str(key).startswith("$") or isinstance(value, Mapping) for key, value in filter.items()
        )

    def _native_filter(self, items: list[tuple[str, bool, list[Any]]]) -> dict[str, Any]:
        clauses: dict[str, Any] = {}
        for key, is_metadata, values in items:
            field = USER_KEY_PREFIX + key if is_metadata else key
            if len(values) == 1:
                clauses[field] = {"$eq": values[0]}
            elif any(isinstance(v, bool) for v in values):  # $in takes strings and numbers only
                clauses.setdefault("$and", []).append(
                    {"$or": [{field: {"$eq": v}} for v in values]}
                )
            else:
                clauses[field] = {"$in": values}
        return clauses

    def _search(
        self, vector: np.ndarray, k: int, filter: Any, spec: CollectionSpec
    ) -> list[tuple[str, float, Mapping[str, Any]]]:
        response = self._require_data_plane().query(
            vector=np.asarray(vector, dtype=np.float32).tolist(),
            top_k=k,
            namespace=self.namespace,
            filter=filter,
            include_metadata=True,
            include_values=False,
        )
        return [(m.id, m.score, _payload(m.metadata or {})) for m in response.matches]


# -- translation ---------------------------------------------------------------------------


def _any_payload(index: Index, namespace: str, dimension: int) -> dict[str, Any] | None:
    """The payload of some record of ``namespace`` (ours or not); None if it is empty."""
    # Any non-zero probe vector returns some record when the namespace is not empty.
    response = index.query(
        vector=[1.0] * dimension, top_k=1, namespace=namespace, include_metadata=True
    )
    for match in response.matches:
        return _payload(match.metadata or {})
    return None


def _dense_layout(description: Any) -> tuple[int, str] | None:
    """(dimension, metric) of a dense vector index description; None for other index kinds."""
    fields = getattr(description.schema, "fields", None) or {}
    field = fields.get(VECTOR_FIELD)
    dimension = getattr(field, "dimension", None)
    metric = getattr(field, "metric", None)
    if not isinstance(dimension, int) or not isinstance(metric, str):
        return None
    return dimension, metric.lower()


def _namespace_counts(stats: Any) -> dict[str, int]:
    return {
        ("" if name == DEFAULT_NAMESPACE_LABEL else name): int(summary.vector_count)
        for name, summary in (stats.namespaces or {}).items()
    }


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _flatten_user_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """User metadata as Pinecone top-level keys ``metadata.<key>``; ValueError names a value
    Pinecone cannot store."""
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        if value is None:
            continue  # Pinecone has no null; an absent key is its equivalent
        where = f"metadata key {key!r}"
        if isinstance(value, bool | str):
            pass
        elif isinstance(value, int):
            if abs(value) > MAX_EXACT_INT:
                raise ValueError(
                    f"{where}: integer {value} is too large for Pinecone's 64-bit float numbers;"
                    " store it as a string"
                )
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{where}: {value} is not a finite number")
        elif isinstance(value, list | tuple):
            if not all(isinstance(item, str) for item in value):
                raise ValueError(
                    f"{where}: Pinecone lists may only hold strings, got {list(value)!r}"
                )
            value = list(value)
        elif isinstance(value, Mapping):
            raise ValueError(
                f"{where}: Pinecone metadata cannot nest objects; flatten it into keys "
                "such as 'outer.inner'"
            )
        else:
            raise ValueError(
                f"{where}: Pinecone stores strings, numbers, booleans or lists of strings, "
                f"not {type(value).__name__}"
            )
        flat[USER_KEY_PREFIX + key] = value
    return flat


def _metadata(record: ChunkRecord) -> dict[str, Any]:
    payload = record.payload()
    del payload["metadata"]
    return {**payload, **_flatten_user_metadata(record.metadata)}


def _to_pinecone(record: ChunkRecord) -> tuple[dict[str, Any], int, bool]:
    """(Pinecone vector dict, its JSON size, whether its text was truncated) of a record that
    :meth:`PineconeSink.check_record` accepts."""
    metadata = _metadata(record)
    text = metadata["text"]
    truncated = False
    if _json_size(metadata) > METADATA_BYTES_BUDGET:
        metadata["text"] = ""
        metadata["text_truncated"] = True
        room = METADATA_BYTES_BUDGET - _json_size(metadata) + _json_size("")
        metadata["text"] = _longest_prefix(text, room)
        truncated = True
        logger.warning(
            "%s: text cut from %d to %d characters to fit Pinecone's %d-byte metadata limit",
            record.name,
            len(text),
            len(metadata["text"]),
            MAX_METADATA_BYTES,
        )
    out = {
        "id": record.id,
        "values": np.asarray(record.vector).astype(np.float32).tolist(),
        "metadata": metadata,
    }
    return out, _json_size(out), truncated


def _longest_prefix(text: str, max_json_bytes: int) -> str:
    """The longest prefix of ``text`` whose JSON string encoding fits ``max_json_bytes``
    (cut between characters, so always at a UTF-8 boundary)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if _json_size(text[:middle]) <= max_json_bytes:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _upsert_batches(
    converted: Sequence[tuple[dict[str, Any], int, bool]],
) -> Iterator[tuple[list[dict[str, Any]], int]]:
    """Consecutive batches of at most MAX_UPSERT_RECORDS vectors whose request body stays
    within UPSERT_BYTES_BUDGET (the envelope and commas are counted in the margin), each with
    the number of its records whose text was truncated."""
    batch: list[dict[str, Any]] = []
    size = truncated = 0
    for vector, vector_size, was_truncated in converted:
        if batch and (
            len(batch) == MAX_UPSERT_RECORDS or size + vector_size + 1 > UPSERT_BYTES_BUDGET
        ):
            yield batch, truncated
            batch, size, truncated = [], 0, 0
        batch.append(vector)
        size += vector_size + 1
        truncated += was_truncated
    if batch:
        yield batch, truncated


def _payload(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record's metadata as the pipeline's payload (user keys nested again)."""
    payload: dict[str, Any] = {}
    user: dict[str, Any] = {}
    for key, value in metadata.items():
        if key.startswith(USER_KEY_PREFIX):
            user[key[len(USER_KEY_PREFIX) :]] = _restore_int(value)
        else:
            payload[key] = _restore_int(value)
    payload["metadata"] = user
    return payload


def _restore_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_INT:
        return int(value)
    return value
