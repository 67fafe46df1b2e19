"""Vector stores: what a sink author needs, and the sinks (each imported on first use, since
each needs its own database client).

- :mod:`~jina_connectors.sinks.records`: :class:`ChunkRecord`, :class:`CollectionSpec`,
  :class:`Hit`, :func:`chunk_id`, :data:`SearchFilter`: plain data, no database;
- :mod:`~jina_connectors.sinks.base`: :class:`VectorSink`, the base class of every sink;
- :mod:`~jina_connectors.sinks.search`: :func:`embed_query`, a collection's query vector;
- :mod:`~jina_connectors.sinks.open`: :func:`open_sink` by database name, and store checks;
- :mod:`~jina_connectors.sinks.store`: where local stores live, and their locks;
- :mod:`~jina_connectors.sinks.qdrant`, :mod:`~jina_connectors.sinks.milvus`,
  :mod:`~jina_connectors.sinks.pinecone`: the sinks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr
from .base import CollectionLayout, VectorSink, check_layout, check_recorded_spec, with_retries
from .records import (
    DEFAULT_COLLECTION,
    PASSAGE_TASK,
    QUERY_TASK,
    ChunkRecord,
    ChunkState,
    CollectionInfo,
    CollectionSpec,
    Hit,
    SearchFilter,
    SinkEmbeddingType,
    StoredChunk,
    chunk_id,
    filter_items,
)
from .search import embed_query

if TYPE_CHECKING:
    from .milvus import MilvusSink
    from .open import open_sink
    from .pinecone import PineconeSink
    from .qdrant import QdrantSink

_LAZY = {
    "QdrantSink": ".qdrant",
    "MilvusSink": ".milvus",
    "PineconeSink": ".pinecone",
    "open_sink": ".open",
}

__all__ = [
    "DEFAULT_COLLECTION",
    "PASSAGE_TASK",
    "QUERY_TASK",
    "ChunkRecord",
    "ChunkState",
    "CollectionInfo",
    "CollectionLayout",
    "CollectionSpec",
    "Hit",
    "MilvusSink",
    "PineconeSink",
    "QdrantSink",
    "SearchFilter",
    "SinkEmbeddingType",
    "StoredChunk",
    "VectorSink",
    "check_layout",
    "check_recorded_spec",
    "chunk_id",
    "embed_query",
    "filter_items",
    "open_sink",
    "with_retries",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
