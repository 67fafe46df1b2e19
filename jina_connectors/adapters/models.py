"""The models the adapters run: the shared reranker of a model name (the shared embedder comes
from ``jina_connectors._loading``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedder_core import Reranker

__all__ = ["DEFAULT_RERANKER", "load_reranker"]

#: The reranker the adapters use when none is given.
DEFAULT_RERANKER = "jina-reranker-v3"


def load_reranker(
    model: str | None, *, device: str | None = None, dtype: str | None = None
) -> Reranker:
    """The shared reranker for ``model`` (None: ``DEFAULT_RERANKER``)."""
    from embedder_core import get_reranker

    return get_reranker(model or DEFAULT_RERANKER, device=device, dtype=dtype)
