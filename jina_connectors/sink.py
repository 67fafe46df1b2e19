"""Deprecated: moved to :mod:`jina_connectors.sinks` (``records``, ``base``, ``search``)."""

from jina_connectors._compat import warn_moved

from .errors import CollectionMismatchError, InvalidDocumentError
from .sinks.base import (
    CollectionLayout,
    VectorSink,
    _payload_keys,
    check_layout,
    check_recorded_spec,
    logger,
    with_retries,
)
from .sinks.records import (
    CHUNK_NAMESPACE,
    DEFAULT_COLLECTION,
    PASSAGE_TASK,
    PAYLOAD_KEYS,
    QUERY_TASK,
    SPEC_KEYS,
    STATE_KEYS,
    ChunkRecord,
    ChunkState,
    CollectionInfo,
    CollectionSpec,
    FilterValue,
    Hit,
    SearchFilter,
    SinkEmbeddingType,
    StoredChunk,
    chunk_id,
    filter_items,
    spec_of_payload,
)
from .sinks.search import (
    embed_query,
    resolve_embedder,
)

__all__ = [
    "CHUNK_NAMESPACE",
    "DEFAULT_COLLECTION",
    "PASSAGE_TASK",
    "PAYLOAD_KEYS",
    "QUERY_TASK",
    "SPEC_KEYS",
    "STATE_KEYS",
    "ChunkRecord",
    "ChunkState",
    "CollectionInfo",
    "CollectionLayout",
    "CollectionMismatchError",
    "CollectionSpec",
    "FilterValue",
    "Hit",
    "InvalidDocumentError",
    "SearchFilter",
    "SinkEmbeddingType",
    "StoredChunk",
    "VectorSink",
    "_payload_keys",
    "check_layout",
    "check_recorded_spec",
    "chunk_id",
    "embed_query",
    "filter_items",
    "logger",
    "resolve_embedder",
    "spec_of_payload",
    "with_retries",
]

warn_moved(__name__, "jina_connectors.sinks")
