"""embedder_core: one local embedder (jina-embeddings-v3 with task LoRA adapters, or a
sentence-transformers / transformers encoder) shared by every jina-connectors adapter.

It imports no framework or database package. Importing it imports no torch, numpy or
tokenizers either: the names that need them (``Embedder``, ``Reranker``...) are imported
on first use, so a caller can check a model (:func:`inspect_model`), its options and its
errors before paying for the load, and ``get_embedder("http://...")`` never imports torch.

The face (``__all__``) is what a user writes: the embedder and rerankers, their options
and types, model inspection and the errors. The scheduler's own types live in
:mod:`embedder_core.scheduler`.
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
from .errors import moved_name as _moved_name
from .late_chunking import LateChunkingOptions
from .loading import (
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
    from .output import EMBEDDING_TYPES, ArrayEmbeddingType, DocumentChunk, EmbeddingType
    from .protocol import EmbedderProtocol
    from .registry import get_embedder, get_reranker
    from .reranking import Reranker, RerankResult

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
    "EmbedderProtocol": ".protocol",
    "Reranker": ".reranking",
    "RerankResult": ".reranking",
    "get_reranker": ".registry",
}

__all__ = [
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
    "ModelInfo",
    "ModelNotFoundError",
    "QueueFullError",
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
    "default_model",
    "get_embedder",
    "get_reranker",
    "inspect_model",
    "model_url",
]


# Names that left the face (scheduler internals, the backends' entry point group, the
# output converter): their homes, for one release of DeprecationWarning.
_LEFT_THE_FACE = {
    "BACKENDS_GROUP": "embedder_core.loading",
    "BatchStats": "embedder_core.scheduler",
    "EmbeddingScheduler": "embedder_core.scheduler",
    "PendingEmbeddings": "embedder_core.scheduler",
    "Reduction": "embedder_core.late_chunking",
    "convert_embeddings": "embedder_core.output",
}


def __getattr__(name: str) -> Any:
    home = _LEFT_THE_FACE.get(name)
    if home is not None:
        return _moved_name(__name__, name, home)  # not cached: warns at each import
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value  # once imported, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
