"""jina-connectors: the local jina-embeddings-v3 embedder in LlamaIndex, Haystack, Qdrant,
Milvus and Pinecone.

The ingestion pipeline lives here; each database sink is a submodule with its own optional
dependencies (``jina_connectors.qdrant``, ``.milvus``, ``.pinecone``), also reachable as
``jina_connectors.QdrantSink`` etc. (imported on first use).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .ingest import (
    ChunkRecord,
    ChunkState,
    CollectionInfo,
    CollectionMismatchError,
    CollectionSpec,
    Document,
    Hit,
    IngestReport,
    InvalidDocumentError,
    SearchFilter,
    VectorSink,
    chunk_id,
    ingest,
    iter_documents,
)

if TYPE_CHECKING:
    from .milvus import JinaEmbeddingFunction, MilvusSink
    from .pinecone import PineconeSink
    from .qdrant import QdrantSink

_LAZY = {
    "QdrantSink": ".qdrant",
    "MilvusSink": ".milvus",
    "JinaEmbeddingFunction": ".milvus",
    "PineconeSink": ".pinecone",
}

__all__ = [
    "ChunkRecord",
    "ChunkState",
    "CollectionInfo",
    "CollectionMismatchError",
    "CollectionSpec",
    "Document",
    "Hit",
    "IngestReport",
    "InvalidDocumentError",
    "JinaEmbeddingFunction",
    "MilvusSink",
    "PineconeSink",
    "QdrantSink",
    "SearchFilter",
    "VectorSink",
    "chunk_id",
    "ingest",
    "iter_documents",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
