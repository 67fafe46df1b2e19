"""embedder_core: one local embedder (jina-embeddings-v3 with task LoRA adapters, or any
mean-pooling Hugging Face encoder) shared by every jina-connectors adapter.

It imports no framework or database package.
"""

from .chunking import Chunker, Span
from .embedder import STANDARD_TASKS, DocumentChunk, Embedder, get_embedder
from .errors import (
    ModelNotFoundError,
    QueueFullError,
    SchedulerClosedError,
    TokenLimitError,
    UnsafeCheckpointError,
)
from .loading import DEFAULT_MODEL, MODEL_ENV_VAR, default_model
from .output import EMBEDDING_TYPES, EmbeddingType, convert_embeddings
from .scheduler import BatchStats, EmbeddingScheduler, PendingEmbeddings, Reduction

__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDING_TYPES",
    "MODEL_ENV_VAR",
    "STANDARD_TASKS",
    "BatchStats",
    "Chunker",
    "DocumentChunk",
    "Embedder",
    "EmbeddingScheduler",
    "EmbeddingType",
    "ModelNotFoundError",
    "PendingEmbeddings",
    "QueueFullError",
    "Reduction",
    "SchedulerClosedError",
    "Span",
    "TokenLimitError",
    "UnsafeCheckpointError",
    "convert_embeddings",
    "default_model",
    "get_embedder",
]
