"""How adapters and sinks get their embedder: one shared model per (model, device, dtype).

Imports ``embedder_core`` (and so torch) only when a model is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedder_core import Embedder


def load_embedder(
    model: str | None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    quantization: str | None = None,
) -> Embedder:
    """The shared ``Embedder`` for ``model``; None: ``$JINA_CONNECTORS_MODEL``, else the default.

    The core reads a hosted API model name (``jina-embeddings-v3``) as its Hub id unless a
    local directory has that name (``embedder_core.canonical_model_id``).
    """
    from embedder_core import get_embedder

    return get_embedder(model, device=device, dtype=dtype, quantization=quantization)


def check_options(embedder: Embedder, *, tasks: tuple[str, ...], dimensions: int | None) -> None:
    """Raise the core's own errors now for an unknown task or a bad ``dimensions``.

    Encoding an empty list validates every option and runs no model work.
    """
    for task in tasks:
        embedder.encode([], task=task, dimensions=dimensions)
