"""embedder_core: one local embedder (jina-embeddings-v3 with task LoRA adapters, or a
sentence-transformers / transformers encoder) shared by every jina-connectors adapter.

It imports no framework or database package. Importing it imports no torch, numpy or
tokenizers either: the names that need them (``Embedder``, ``get_embedder``,
``convert_embeddings``...) are imported on first use, so a caller can check a model
(:func:`inspect_model`), its options and its errors before paying for the load.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    ModelNotFoundError,
    QueueFullError,
    RerankerCheckpointError,
    RerankInputError,
    SchedulerClosedError,
    SlowDtypeWarning,
    TokenLimitError,
    UnsafeCheckpointError,
    UnsupportedModelError,
)
from .late_chunking import LateChunkingOptions
from .loading import (
    BACKENDS_GROUP,
    DEFAULT_MODEL,
    HOSTED_MODEL_NAMES,
    MODEL_ENV_VAR,
    canonical_model_id,
    default_model,
    model_url,
)
from .model_info import STANDARD_TASKS, ModelInfo, inspect_model

if TYPE_CHECKING:
    from .chunking import Chunker, Span
    from .embedder import Embedder, TaskSpec
    from .output import (
        EMBEDDING_TYPES,
        ArrayEmbeddingType,
        DocumentChunk,
        EmbeddingType,
        convert_embeddings,
    )
    from .protocol import EmbedderProtocol
    from .registry import get_embedder, get_reranker
    from .reranker import Reranker, RerankResult
    from .scheduler import BatchStats, EmbeddingScheduler, PendingEmbeddings, Reduction

# Names whose modules import torch, numpy or tokenizers: imported on first access.
_LAZY = {
    "Chunker": ".chunking",
    "Span": ".chunking",
    "DocumentChunk": ".output",
    "Embedder": ".embedder",
    "TaskSpec": ".embedder",
    "get_embedder": ".registry",
    "EMBEDDING_TYPES": ".output",
    "ArrayEmbeddingType": ".output",
    "EmbeddingType": ".output",
    "convert_embeddings": ".output",
    "EmbedderProtocol": ".protocol",
    "Reranker": ".reranker",
    "RerankResult": ".reranker",
    "get_reranker": ".registry",
    "BatchStats": ".scheduler",
    "EmbeddingScheduler": ".scheduler",
    "PendingEmbeddings": ".scheduler",
    "Reduction": ".scheduler",
}

__all__ = [
    "BACKENDS_GROUP",
    "DEFAULT_MODEL",
    "EMBEDDING_TYPES",
    "HOSTED_MODEL_NAMES",
    "MODEL_ENV_VAR",
    "STANDARD_TASKS",
    "ArrayEmbeddingType",
    "BatchStats",
    "Chunker",
    "DocumentChunk",
    "Embedder",
    "EmbedderProtocol",
    "EmbeddingScheduler",
    "EmbeddingType",
    "LateChunkingOptions",
    "ModelInfo",
    "ModelNotFoundError",
    "PendingEmbeddings",
    "QueueFullError",
    "Reduction",
    "RerankInputError",
    "RerankResult",
    "Reranker",
    "RerankerCheckpointError",
    "SchedulerClosedError",
    "SlowDtypeWarning",
    "Span",
    "TaskSpec",
    "TokenLimitError",
    "UnsafeCheckpointError",
    "UnsupportedModelError",
    "canonical_model_id",
    "convert_embeddings",
    "default_model",
    "get_embedder",
    "get_reranker",
    "inspect_model",
    "model_url",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
