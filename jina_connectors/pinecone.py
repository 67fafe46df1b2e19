"""Pinecone sink: the ingestion pipeline's :class:`~jina_connectors.ingest.VectorSink` on a
Pinecone serverless index, through the maintained ``pinecone`` SDK (REST client).

One :class:`PineconeSink` is bound to one index and one namespace. It only translates the
pipeline's records to Pinecone; ids, hashes, skipping and stale-chunk logic live in
:mod:`jina_connectors.ingest`.

How records are stored:

- Vector: float32 values in a dense index with the cosine metric (Pinecone has no binary
  vectors or Hamming metric, so only ``embedding_type="float"`` is supported).
- Metadata: the pipeline's payload fields at the top level (``text``, ``doc_id``,
  ``chunk_index``, ``chunk_count``, ``start``, ``end``, ``content_hash``, ``model``, ``task``,
  ``dimensions``, ``embedding_type``), and each user metadata key ``k`` flattened to
  ``"metadata.k"`` (Pinecone metadata cannot nest). A native filter therefore reads
  ``{"metadata.president": {"$eq": "Lincoln"}}``, the same path as in Qdrant.
- Pinecone metadata values are strings, numbers (64-bit floats), booleans or lists of strings.
  User metadata of another type is rejected with
  :class:`~jina_connectors.ingest.InvalidDocumentError` naming the document; ``None`` values
  are dropped (Pinecone has no null). Numbers come back from Pinecone as floats; integral ones
  are returned as ``int``.
- Metadata is capped at 40 KB per record. When a chunk's text would exceed it, the text is cut
  (at a character boundary) to the longest prefix that fits, ``text_truncated: true`` is set on
  that record, a warning names it, and :meth:`PineconeSink.upsert` returns how many records it
  truncated (also summed in :attr:`PineconeSink.truncated`). ``start``/``end`` keep the chunk's
  full span in the source document, so the full text can be recovered from there.

Requests stay within Pinecone's operation limits: upserts of at most 1,000 records and
2 MB, fetches of at most ``FETCH_BATCH`` ids, filters of at most 1,000 ``$in`` values, query
``top_k`` of at most 10,000. Every call is retried with backoff on transient errors (429,
5xx, connection errors, timeouts), on top of the SDK's own per-request retries.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

try:
    from pinecone import Index, Pinecone
    from pinecone.errors.exceptions import (
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

from jina_connectors.ingest import (
    ChunkRecord,
    ChunkState,
    CollectionInfo,
    CollectionMismatchError,
    CollectionSpec,
    Hit,
    InvalidDocumentError,
    SearchFilter,
    check_layout,
    check_recorded_spec,
    embed_query,
    filter_items,
    with_retries,
)

if TYPE_CHECKING:
    from embedder_core import Embedder

__all__ = ["PineconeSink"]

logger = logging.getLogger(__name__)

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

T = TypeVar("T")


def _is_transient(error: BaseException) -> bool:
    """Throttling (429), server errors (5xx), dropped connections and timeouts."""
    return isinstance(
        error, (RateLimitError, ServiceError, PineconeConnectionError, PineconeTimeoutError)
    )


class PineconeSink:
    """Write ingested chunks to, and search, one namespace of a Pinecone serverless index.

    Args:
        index_name: the index (lowercase letters, digits and ``-``, at most 45 characters).
        api_key: Pinecone API key; None reads ``PINECONE_API_KEY``.
        host: control-plane URL; None uses ``PINECONE_CONTROLLER_HOST`` or the public API.
            The data-plane host is always the one Pinecone reports for the index.
        namespace: the namespace written and searched; None is the default namespace.
        cloud, region: where :meth:`ensure_collection` creates a missing serverless index.
        timeout: seconds per HTTP attempt.
        attempts: tries per call on transient errors (backoff between them).
    """

    embedding_types = ("float",)

    def __init__(
        self,
        index_name: str,
        *,
        api_key: str | None = None,
        host: str | None = None,
        namespace: str | None = None,
        cloud: str = "aws",
        region: str = "us-east-1",
        timeout: float = 30.0,
        attempts: int = 5,
    ) -> None:
        if not isinstance(index_name, str) or not _INDEX_NAME.fullmatch(index_name):
            raise ValueError(
                f"invalid Pinecone index name {index_name!r}: use 1-45 lowercase letters, "
                "digits or '-', starting and ending with a letter or digit"
            )
        if namespace is not None and not isinstance(namespace, str):
            raise TypeError(f"namespace must be a string, got {type(namespace).__name__}")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
            raise ValueError(f"attempts must be a positive integer, got {attempts!r}")
        api_key = api_key or os.environ.get("PINECONE_API_KEY")
        if not api_key:
            raise ValueError("no Pinecone API key: pass api_key=... or set PINECONE_API_KEY")
        self.collection = index_name
        self.namespace = namespace or ""
        self.cloud = cloud
        self.region = region
        self.truncated = 0
        self._attempts = attempts
        self._pc: Pinecone = Pinecone(api_key=api_key, host=host, timeout=timeout)
        self._index: Index | None = None
        self._dimension: int | None = None
        self._spec: CollectionSpec | None = None

    def __repr__(self) -> str:
        return f"PineconeSink({self.collection!r}, namespace={self.namespace!r})"

    def __enter__(self) -> PineconeSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- collection -----------------------------------------------------------------------

    def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create the index (cosine, ``spec.dimensions``) if missing, else check that its
        dimension, metric and recorded model/task match ``spec``; never recreates it."""
        if spec.embedding_type not in self.embedding_types:
            raise ValueError(
                f"Pinecone stores float vectors only; embedding_type={spec.embedding_type!r} "
                "is not supported (Pinecone has no binary vectors or Hamming metric)"
            )
        layout = self._layout()
        if layout is None:
            try:
                self._call(
                    lambda: self._pc.indexes.create(
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
                )
                logger.info(
                    "created Pinecone index %r (dimension %d, %s, %s/%s)",
                    self.collection,
                    spec.dimensions,
                    spec.metric,
                    self.cloud,
                    self.region,
                )
            except ConflictError:
                pass  # created meanwhile by someone else: check it like any existing index
            layout = self._layout()
            if layout is None:
                raise RuntimeError(f"Pinecone index {self.collection!r} vanished after creation")
        dimension, metric = layout
        check_layout(self.collection, spec, size=dimension, metric=metric)
        check_recorded_spec(self.collection, spec, self.stored_spec())

    def stored_spec(self) -> CollectionSpec | None:
        """The spec recorded in this namespace's records; None if the index or namespace is
        absent or empty."""
        index = self._data_plane()
        if index is None or self._dimension is None:
            return None
        match = self._any_record(index, self.namespace, self._dimension)
        self._spec = None if match is None else CollectionSpec.from_payload(match)
        return self._spec

    def count(self) -> int:
        """Records in this namespace (0 if the index does not exist). Pinecone's statistics
        are eventually consistent: a write may take a moment to be counted."""
        index = self._data_plane()
        if index is None:
            return 0
        return _namespace_counts(self._call(index.describe_index_stats)).get(self.namespace, 0)

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
                match = self._any_record(index, namespace, layout[0])
                spec = None if match is None else CollectionSpec.from_payload(match)
                infos.append(CollectionInfo(description.name, sum(counts.values()), spec))
            finally:
                index.close()
        return infos

    # -- writing --------------------------------------------------------------------------

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

    def fetch_states(self, ids: Sequence[str]) -> dict[str, ChunkState]:
        """``content_hash``/``chunk_count`` of the given ids that exist in this namespace."""
        index = self._data_plane()
        if index is None or not ids:
            return {}
        states: dict[str, ChunkState] = {}
        for start in range(0, len(ids), FETCH_BATCH):
            batch = list(ids[start : start + FETCH_BATCH])
            response = self._call(lambda b=batch: index.fetch(ids=b, namespace=self.namespace))
            for vector_id, vector in response.vectors.items():
                metadata = vector.metadata or {}
                if "content_hash" in metadata and "chunk_count" in metadata:
                    states[vector_id] = ChunkState(
                        str(metadata["content_hash"]), int(metadata["chunk_count"])
                    )
        return states

    def upsert(self, records: Sequence[ChunkRecord]) -> int:
        """Write the records (overwriting equal ids) in requests within Pinecone's limits.

        Every record is converted and checked before the first request is sent. Returns the
        number of records whose text was truncated to fit the metadata limit.
        """
        if not records:
            return 0
        index = self._require_data_plane()
        converted = [_to_pinecone(record, self._dimension) for record in records]
        truncated = sum(was_truncated for _, _, was_truncated in converted)
        for batch in _upsert_batches([(vector, size) for vector, size, _ in converted]):
            response = self._call(lambda b=batch: index.upsert(vectors=b, namespace=self.namespace))
            if response.upserted_count != len(batch):
                raise RuntimeError(
                    f"Pinecone acknowledged {response.upserted_count} of {len(batch)} records "
                    f"upserted into {self.collection!r}"
                )
        self.truncated += truncated
        return truncated

    def delete_stale(self, keep: Mapping[str, int]) -> None:
        """For each ``doc_id -> n``, delete that document's records with ``chunk_index >= n``
        (one delete-by-filter per group of documents that share ``n``)."""
        if not keep:
            return
        index = self._require_data_plane()
        by_count: dict[int, list[str]] = defaultdict(list)
        for doc_id, n in keep.items():
            by_count[int(n)].append(doc_id)
        for n, doc_ids in sorted(by_count.items()):
            for start in range(0, len(doc_ids), FILTER_IN_BATCH):
                flt = {
                    "doc_id": {"$in": doc_ids[start : start + FILTER_IN_BATCH]},
                    "chunk_index": {"$gte": n},
                }
                self._call(lambda f=flt: index.delete(filter=f, namespace=self.namespace))

    # -- search ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 5,
        filter: SearchFilter | Mapping[str, Any] | None = None,
        *,
        model: str | Embedder | None = None,
    ) -> list[Hit]:
        """The ``k`` records most similar to ``query`` (embedded with ``retrieval.query`` at the
        index's own model and dimensions), best first, with cosine similarity as the score.

        ``filter``: ``{key: value or [any of values]}`` on ``doc_id`` or user-metadata keys,
        or a native Pinecone filter (recognised by a ``$`` operator or a dict value).
        """
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_TOP_K:
            raise ValueError(f"k must be an integer in [1, {MAX_TOP_K}], got {k!r}")
        native = _native_filter(filter) if filter else None
        spec = self._spec or self.stored_spec()  # a namespace's spec changes only if emptied
        if spec is None:
            return []
        vector = embed_query(query, spec, model)
        index = self._require_data_plane()
        response = self._call(
            lambda: index.query(
                vector=np.asarray(vector, dtype=np.float32).tolist(),
                top_k=k,
                namespace=self.namespace,
                filter=native,
                include_metadata=True,
                include_values=False,
            )
        )
        return [
            Hit.from_payload(match.id, match.score, _payload(match.metadata or {}))
            for match in response.matches
        ]

    def close(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
        self._pc.close()

    # -- internals ------------------------------------------------------------------------

    def _call(self, operation: Callable[[], T]) -> T:
        return with_retries(operation, _is_transient, attempts=self._attempts)

    def _layout(self) -> tuple[int, str] | None:
        """(dimension, metric) of the index, opening its data plane; None if it is absent."""
        try:
            description = self._call(lambda: self._pc.indexes.describe(self.collection))
        except NotFoundError:
            return None
        layout = _dense_layout(description)
        if layout is None:
            fields = sorted(getattr(description.schema, "fields", {}) or {})
            raise CollectionMismatchError(
                f"Pinecone index {self.collection!r} is not a dense vector index (its schema "
                f"declares {fields}); use another index name"
            )
        if self._index is None:
            if not description.host:
                raise RuntimeError(f"Pinecone index {self.collection!r} has no host yet")
            self._index = self._pc.index(host=description.host)
        self._dimension = layout[0]
        return layout

    def _data_plane(self) -> Index | None:
        if self._index is None:
            self._layout()
        return self._index

    def _require_data_plane(self) -> Index:
        index = self._data_plane()
        if index is None:
            raise RuntimeError(
                f"Pinecone index {self.collection!r} does not exist; call ensure_collection first"
            )
        return index

    def _any_record(self, index: Index, namespace: str, dimension: int) -> dict[str, Any] | None:
        """The payload of some pipeline-written record of ``namespace``; None if it has none."""
        # Any non-zero probe vector returns some record when the namespace is not empty.
        probe = [1.0] * dimension
        response = self._call(
            lambda: index.query(vector=probe, top_k=1, namespace=namespace, include_metadata=True)
        )
        for match in response.matches:
            if match.metadata and "model" in match.metadata and "dimensions" in match.metadata:
                return _payload(match.metadata)
        return None


# -- translation ---------------------------------------------------------------------------


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


def _to_pinecone(record: ChunkRecord, dimension: int | None) -> tuple[dict[str, Any], int, bool]:
    """(Pinecone vector dict, its JSON size, whether its text was truncated)."""
    name = f"document {record.doc_id!r} chunk {record.chunk_index}"
    vector = np.asarray(record.vector)
    if vector.ndim != 1 or (dimension is not None and vector.shape[0] != dimension):
        raise InvalidDocumentError(
            name, f"vector of shape {vector.shape} does not fit the index dimension {dimension}"
        )
    if record.embedding_type != "float" or not np.issubdtype(vector.dtype, np.floating):
        raise InvalidDocumentError(name, "Pinecone stores float vectors only")
    if not np.all(np.isfinite(vector)) or not np.any(vector):
        raise InvalidDocumentError(name, "the vector is zero or not finite")
    try:
        user = _flatten_user_metadata(record.metadata)
    except ValueError as exc:
        raise InvalidDocumentError(name, str(exc)) from None
    payload = record.payload()
    del payload["metadata"]
    metadata = {**payload, **user}
    text = metadata["text"]
    truncated = False
    if _json_size(metadata) > METADATA_BYTES_BUDGET:
        metadata["text"] = ""
        metadata["text_truncated"] = True
        room = METADATA_BYTES_BUDGET - _json_size(metadata) + _json_size("")
        if room < _json_size(""):
            raise InvalidDocumentError(
                name,
                f"metadata takes {_json_size(metadata)} bytes without the chunk text, over "
                f"Pinecone's {MAX_METADATA_BYTES}-byte per-record limit",
            )
        metadata["text"] = _longest_prefix(text, room)
        truncated = True
        logger.warning(
            "%s: text cut from %d to %d characters to fit Pinecone's %d-byte metadata limit",
            name,
            len(text),
            len(metadata["text"]),
            MAX_METADATA_BYTES,
        )
    out = {
        "id": record.id,
        "values": vector.astype(np.float32).tolist(),
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
    vectors: Sequence[tuple[dict[str, Any], int]],
) -> Iterator[list[dict[str, Any]]]:
    """Consecutive batches of at most MAX_UPSERT_RECORDS vectors whose request body stays
    within UPSERT_BYTES_BUDGET (the envelope and commas are counted in the margin)."""
    batch: list[dict[str, Any]] = []
    size = 0
    for vector, vector_size in vectors:
        if batch and (
            len(batch) == MAX_UPSERT_RECORDS or size + vector_size + 1 > UPSERT_BYTES_BUDGET
        ):
            yield batch
            batch, size = [], 0
        batch.append(vector)
        size += vector_size + 1
    if batch:
        yield batch


def _payload(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """A stored record's metadata as the pipeline's payload (user keys nested again)."""
    payload: dict[str, Any] = {}
    user: dict[str, Any] = {}
    for key, value in metadata.items():
        if key.startswith(USER_KEY_PREFIX):
            user[key[len(USER_KEY_PREFIX) :]] = _restore_int(value)
        else:
            payload[key] = value
    payload["metadata"] = user
    return payload


def _restore_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= MAX_EXACT_INT:
        return int(value)
    return value


def _native_filter(filter: Mapping[str, Any]) -> dict[str, Any]:
    """A Pinecone filter for a :data:`SearchFilter`; a native filter passes through."""
    if not isinstance(filter, Mapping):
        raise TypeError(f"filter must be a mapping, got {type(filter).__name__}")
    if any(str(key).startswith("$") or isinstance(v, Mapping) for key, v in filter.items()):
        return dict(filter)
    clauses: dict[str, Any] = {}
    for key, is_metadata, values in filter_items(filter):
        field = USER_KEY_PREFIX + key if is_metadata else key
        if not values:
            raise ValueError(f"filter value list for {key!r} is empty")
        if len(values) == 1:
            clauses[field] = {"$eq": values[0]}
        elif any(isinstance(v, bool) for v in values):  # $in takes strings and numbers only
            clauses.setdefault("$and", []).append({"$or": [{field: {"$eq": v}} for v in values]})
        else:
            clauses[field] = {"$in": values}
    return clauses
