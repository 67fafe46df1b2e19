"""embedder_core: one local embedder (jina-embeddings-v3 with task LoRA adapters, or a
sentence-transformers / transformers encoder) shared by every jina-connectors adapter.

It imports no framework or database package.
"""

from .chunking import Chunker, Span
from .embedder import STANDARD_TASKS, DocumentChunk, Embedder, TaskSpec, get_embedder
from .errors import (
    ModelNotFoundError,
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
from .output import EMBEDDING_TYPES, ArrayEmbeddingType, EmbeddingType, convert_embeddings
from .protocol import EmbedderProtocol

__all__ = [
    "BACKENDS_GROUP",
    "DEFAULT_MODEL",
    "EMBEDDING_TYPES",
    "HOSTED_MODEL_NAMES",
    "MODEL_ENV_VAR",
    "STANDARD_TASKS",
    "ArrayEmbeddingType",
    "Chunker",
    "DocumentChunk",
    "Embedder",
    "EmbedderProtocol",
    "EmbeddingType",
    "LateChunkingOptions",
    "ModelNotFoundError",
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
    "model_url",
]
