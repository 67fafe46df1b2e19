"""The local models inside LlamaIndex, Haystack and pymilvus, under the names of the hosted
Jina integrations (one module per framework, imported on first use: importing this package
imports no framework).

- :mod:`~jina_connectors.adapters.llama_index`: ``JinaEmbedding``, ``JinaLateChunking``,
  ``JinaRerank``; :mod:`~jina_connectors.adapters.llama_index_ray`: ``RayJinaLateChunking``;
- :mod:`~jina_connectors.adapters.haystack`: ``JinaTextEmbedder``, ``JinaDocumentEmbedder``,
  ``JinaLateChunkingDocumentEmbedder``, ``JinaRanker``;
- :mod:`~jina_connectors.adapters.pymilvus`: ``JinaEmbeddingFunction``, ``JinaRerankFunction``;
- :mod:`~jina_connectors.adapters.source_groups`: late chunking of a framework's chunks, per
  source document (shared by the LlamaIndex and Haystack adapters).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_getattr

if TYPE_CHECKING:
    from .haystack import (
        JinaDocumentEmbedder,
        JinaLateChunkingDocumentEmbedder,
        JinaRanker,
        JinaTextEmbedder,
    )
    from .llama_index import JinaEmbedding, JinaLateChunking, JinaRerank
    from .llama_index_ray import RayJinaLateChunking
    from .pymilvus import JinaEmbeddingFunction, JinaRerankFunction

#: Each entry point's module (its framework is imported with it).
ENTRY_POINTS: dict[str, str] = {
    "JinaEmbedding": ".llama_index",
    "JinaLateChunking": ".llama_index",
    "JinaRerank": ".llama_index",
    "RayJinaLateChunking": ".llama_index_ray",
    "JinaTextEmbedder": ".haystack",
    "JinaDocumentEmbedder": ".haystack",
    "JinaLateChunkingDocumentEmbedder": ".haystack",
    "JinaRanker": ".haystack",
    "JinaEmbeddingFunction": ".pymilvus",
    "JinaRerankFunction": ".pymilvus",
}

__all__ = [
    "JinaDocumentEmbedder",
    "JinaEmbedding",
    "JinaEmbeddingFunction",
    "JinaLateChunking",
    "JinaLateChunkingDocumentEmbedder",
    "JinaRanker",
    "JinaRerank",
    "JinaRerankFunction",
    "JinaTextEmbedder",
    "RayJinaLateChunking",
]


__getattr__ = lazy_getattr(__name__, ENTRY_POINTS)
