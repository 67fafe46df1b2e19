"""How adapters and sinks get their embedder: one shared model per (model, device, dtype).

Imports ``embedder_core`` (and so torch) only when a model is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from embedder_core import Embedder

# Model names of the hosted Jina API that the local suite runs, mapped to their Hub ids, so
# code written for the hosted integrations (model="jina-embeddings-v3") runs unchanged.
HOSTED_MODEL_NAMES = {"jina-embeddings-v3": "jinaai/jina-embeddings-v3"}


def local_model_name(model: str | None) -> str | None:
    """``model``, with a hosted API name read as its Hub id unless a local directory has it."""
    if model in HOSTED_MODEL_NAMES and not Path(model).is_dir():
        return HOSTED_MODEL_NAMES[model]
    return model


def load_embedder(
    model: str | None, *, device: str | None = None, dtype: str | None = None
) -> Embedder:
    """The shared ``Embedder`` for ``model``; None: ``$JINA_CONNECTORS_MODEL``, else the default."""
    from embedder_core import get_embedder

    return get_embedder(local_model_name(model), device=device, dtype=dtype)


def check_options(embedder: Embedder, *, tasks: tuple[str, ...], dimensions: int | None) -> None:
    """Raise the core's own errors now for an unknown task or a bad ``dimensions``.

    Encoding an empty list validates every option and runs no model work.
    """
    for task in tasks:
        embedder.encode([], task=task, dimensions=dimensions)
