"""jina-connectors: the local jina-embeddings-v3 embedder in LlamaIndex, Haystack, Qdrant,
Milvus and Pinecone.

The ingestion pipeline lives here (:func:`ingest`, public module :mod:`jina_connectors.ingest`);
each database sink is a submodule with its own optional dependencies
(``jina_connectors.qdrant``, ``.milvus``, ``.pinecone``), also reachable as
``jina_connectors.QdrantSink`` etc. (imported on first use). Importing this package loads no
model, no torch and no database client.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# The submodule first: importing it later would rebind ``jina_connectors.ingest`` from the
# function to the module (the import system sets a package attribute on first import only).
from . import ingest as _ingest_module  # noqa: F401
from .errors import (
    CollectionMismatchError,
    EmptyDocumentError,
    IdSchemeError,
    InvalidDocumentError,
    OptionError,
    SourcePathError,
    StoreLockedError,
    StoreNotFoundError,
)
from .ingestion.documents import Document, iter_documents
from .ingestion.options import EmbeddingSettings, IngestOptions
from .ingestion.run import IngestInterrupted, IngestReport, ingest
from .sink import (
    ChunkRecord,
    ChunkState,
    CollectionInfo,
    CollectionSpec,
    Hit,
    SearchFilter,
    VectorSink,
    chunk_id,
)

if TYPE_CHECKING:
    from .milvus import JinaEmbeddingFunction, MilvusSink
    from .pinecone import PineconeSink
    from .qdrant import QdrantSink
    from .remote_reranker import RemoteReranker
    from .rerankers import JinaRerankFunction
    from .rerankers_haystack import JinaRanker
    from .rerankers_llama_index import JinaRerank

_LAZY = {
    "QdrantSink": ".qdrant",
    "MilvusSink": ".milvus",
    "JinaEmbeddingFunction": ".milvus",
    "PineconeSink": ".pinecone",
    "JinaRerankFunction": ".rerankers",
    "JinaRerank": ".rerankers_llama_index",
    "JinaRanker": ".rerankers_haystack",
    "RemoteReranker": ".remote_reranker",
}

__all__ = [
    "ChunkRecord",
    "ChunkState",
    "CollectionInfo",
    "CollectionMismatchError",
    "CollectionSpec",
    "Document",
    "EmbeddingSettings",
    "EmptyDocumentError",
    "Hit",
    "IdSchemeError",
    "IngestInterrupted",
    "IngestOptions",
    "IngestReport",
    "InvalidDocumentError",
    "JinaEmbeddingFunction",
    "JinaRanker",
    "JinaRerank",
    "JinaRerankFunction",
    "MilvusSink",
    "OptionError",
    "PineconeSink",
    "QdrantSink",
    "RemoteReranker",
    "SearchFilter",
    "SourcePathError",
    "StoreLockedError",
    "StoreNotFoundError",
    "VectorSink",
    "chunk_id",
    "ingest",
    "iter_documents",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
