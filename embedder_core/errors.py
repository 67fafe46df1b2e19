"""Typed errors (and the one warning) of the embedder core. Errors are raised before any
model work is done."""

from __future__ import annotations

import sys
import warnings
from importlib import import_module
from pathlib import Path
from typing import Any

_PACKAGE_DIR = str(Path(__file__).resolve().parent)


def user_stacklevel() -> int:
    """The ``warnings.warn`` stacklevel, for its caller, of the first frame outside
    embedder_core: a warning points at the user's line however deep in the core it is
    raised (``encode`` and ``submit``, ``get_embedder`` and ``from_pretrained``)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        level, frame = level + 1, frame.f_back
    return level


def moved_name(old_module: str, name: str, home: str) -> Any:
    """``home``'s ``name``, for a module ``__getattr__`` of ``old_module`` that the name left:
    importable for one release, with a DeprecationWarning at the importing line."""
    warnings.warn(
        f"{old_module}.{name} moved to {home}; the old path goes in the next release",
        DeprecationWarning,
        stacklevel=3,  # this function, the module's __getattr__, the importer
    )
    return getattr(import_module(home), name)


class ModelNotFoundError(FileNotFoundError):
    """The model is neither a local directory nor available from the Hugging Face cache/Hub."""


class UnsafeCheckpointError(ValueError):
    """The checkpoint only has pickle weights (``*.bin``/``*.pt``), which we refuse to load."""


class UnsupportedModelError(ValueError):
    """The checkpoint, or what was asked of it, is outside what the core runs exactly.

    Raised at load time, before any vector, for a checkpoint whose tensors are not exactly
    what its architecture reads (missing, unused or misshapen ones, named), a config asking
    for what the architecture does not do (remote-code ``auto_map``, position or MLP type),
    jina-embeddings-v2-base-code, and a sentence-transformers pipeline (``modules.json``)
    with a module or setting the core does not implement; at call time for late chunking on
    a model that pools one token (CLS or last-token pooling).
    """


class TokenLimitError(ValueError):
    """An input is longer than the model's token limit and truncation is off."""

    def __init__(self, index: int, token_count: int, max_tokens: int) -> None:
        super().__init__(
            f"input {index} has {token_count} tokens, over the model's limit of {max_tokens}; "
            "pass truncate=True to cut it, or split it (late_chunking handles any length)"
        )
        self.index = index
        self.token_count = token_count
        self.max_tokens = max_tokens


class SlowDtypeWarning(RuntimeWarning):
    """The requested dtype has no native support on this device and will run very slowly."""


class QueueFullError(RuntimeError):
    """The scheduler already holds more queued tokens than its ``max_queued_tokens``."""

    def __init__(self, queued_tokens: int, request_tokens: int, limit: int) -> None:
        super().__init__(
            f"{queued_tokens} tokens are queued; {request_tokens} more would pass the limit "
            f"of {limit}; retry later"
        )
        self.queued_tokens = queued_tokens
        self.request_tokens = request_tokens
        self.limit = limit


class SchedulerClosedError(RuntimeError):
    """The embedder's scheduler was closed; it accepts no more work."""


class RerankerCheckpointError(UnsupportedModelError):
    """A reranker checkpoint was loaded as an embedder (or served as ``--model``): its
    outputs are relevance scores, not embeddings. Load it with ``get_reranker``."""


class RerankInputError(ValueError):
    """A rerank call was given an empty query, no documents or a ``top_n`` below 1."""
