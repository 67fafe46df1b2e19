"""embedder_core: one local embedder (jina-embeddings-v3 with task LoRA adapters, or a
sentence-transformers / transformers encoder) shared by every jina-connectors adapter.

It imports no framework or database package.
"""

from .chunking import Chunker, Span
from .embedder import STANDARD_TASKS, DocumentChunk, Embedder, TaskSpec, get_embedder
from .errors import (
    ModelNotFoundError,
    QueueFullError,
    SchedulerClosedError,
    SlowDtypeWarning,
    TokenLimitError,
    UnsafeCheckpointError,
    UnsupportedModelError,
)
from .late_chunking import LateChunkingOptions
from .loading import (
    DEFAULT_MODEL,
    HOSTED_MODEL_NAMES,
    MODEL_ENV_VAR,
    canonical_model_id,
    default_model,
)
from .output import EMBEDDING_TYPES, ArrayEmbeddingType, EmbeddingType, convert_embeddings
from .scheduler import BatchStats, EmbeddingScheduler, PendingEmbeddings, Reduction

__all__ = [
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
    "EmbeddingScheduler",
    "EmbeddingType",
    "LateChunkingOptions",
    "ModelNotFoundError",
    "PendingEmbeddings",
    "QueueFullError",
    "Reduction",
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
]
