"""jina-connectors: the local jina-embeddings-v3 embedder in LlamaIndex, Haystack, Qdrant,
Milvus and Pinecone.

This face holds what a script writes: :func:`ingest` and :func:`reembed`, the documents they
read (:class:`Document`, :func:`iter_documents`), the sinks (:class:`QdrantSink`,
:class:`MilvusSink`, :class:`PineconeSink`) with their :class:`CollectionSpec`, :class:`Hit`
and :data:`SearchFilter`, the errors, and the framework adapters' entry points (LlamaIndex,
Haystack, pymilvus). Sinks and adapters are imported on first use, so importing this package
loads no model, no torch, no database client and no framework.

The rooms behind it: :mod:`jina_connectors.sinks` (what a sink author needs: ``VectorSink``,
``ChunkRecord``, ``chunk_id``...), :mod:`jina_connectors.adapters`, :mod:`jina_connectors.ray`.
"""

from __future__ import annotations

import warnings
from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import adapters as _adapters

# The submodules first: importing one later would rebind ``jina_connectors.ingest`` (or
# ``.reembed``) from the function to the module (the import system sets a package attribute
# on a submodule's first import).
from . import ingest as _ingest_module  # noqa: F401
from ._lazy import lazy_getattr

with warnings.catch_warnings():  # the old path, quietly: the same rebinding applies to it
    warnings.simplefilter("ignore", DeprecationWarning)
    from . import reembed as _reembed_module
from .errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    EmptyDocumentError,
    IdSchemeError,
    InvalidDocumentError,
    MissingApiKeyError,
    OptionError,
    SourcePathError,
    StoreLockedError,
    StoreNotFoundError,
)
from .ingestion.documents import Document, iter_documents
from .ingestion.options import IngestOptions
from .ingestion.run import IngestInterrupted, IngestReport, ingest
from .sinks.base import VectorSink
from .sinks.records import CollectionSpec, Hit, SearchFilter

reembed = _reembed_module.reembed
TextsNotStoredError = _reembed_module.TextsNotStoredError

if TYPE_CHECKING:
    from .adapters.haystack import (
        JinaDocumentEmbedder,
        JinaLateChunkingDocumentEmbedder,
        JinaRanker,
        JinaTextEmbedder,
    )
    from .adapters.llama_index import JinaEmbedding, JinaLateChunking, JinaRerank
    from .adapters.llama_index_ray import RayJinaLateChunking
    from .adapters.pymilvus import JinaEmbeddingFunction, JinaRerankFunction
    from .sinks.milvus import MilvusSink
    from .sinks.pinecone import PineconeSink
    from .sinks.qdrant import QdrantSink

# Imported on first use (each needs its database client or framework), through the
# packages that own them.
_LAZY = {
    **dict.fromkeys(("QdrantSink", "MilvusSink", "PineconeSink"), ".sinks"),
    **dict.fromkeys(_adapters.__all__, ".adapters"),
}

# Names this face had before it was made small: still importable from here, with a
# DeprecationWarning naming their home, for one release.
_LEFT_THE_FACE = {
    "ChunkRecord": "jina_connectors.sinks",
    "ChunkState": "jina_connectors.sinks",
    "CollectionInfo": "jina_connectors.sinks",
    "chunk_id": "jina_connectors.sinks",
    "EmbeddingSettings": "jina_connectors.ingestion.options",
    "RemoteReranker": "jina_connectors.server.rerank_client",
}

__all__ = [
    "CollectionMismatchError",
    "CollectionNotFoundError",
    "CollectionSpec",
    "Document",
    "EmptyDocumentError",
    "Hit",
    "IdSchemeError",
    "IngestInterrupted",
    "IngestOptions",
    "IngestReport",
    "InvalidDocumentError",
    "JinaDocumentEmbedder",
    "JinaEmbedding",
    "JinaEmbeddingFunction",
    "JinaLateChunking",
    "JinaLateChunkingDocumentEmbedder",
    "JinaRanker",
    "JinaRerank",
    "JinaRerankFunction",
    "JinaTextEmbedder",
    "MilvusSink",
    "MissingApiKeyError",
    "OptionError",
    "PineconeSink",
    "QdrantSink",
    "RayJinaLateChunking",
    "SearchFilter",
    "SourcePathError",
    "StoreLockedError",
    "StoreNotFoundError",
    "TextsNotStoredError",
    "VectorSink",
    "ingest",
    "iter_documents",
    "reembed",
]


_lazy_getattr = lazy_getattr(__name__, _LAZY)


def __getattr__(name: str) -> Any:
    if name in _LEFT_THE_FACE:
        home = _LEFT_THE_FACE[name]
        warnings.warn(
            f"jina_connectors.{name} is no longer part of the package's face: import it from "
            f"{home} (this alias goes in the next release)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(import_module(home), name)
    return _lazy_getattr(name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
