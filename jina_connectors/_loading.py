"""How the framework adapters get their embedder: one shared model per (model, device, dtype)."""

from __future__ import annotations

from pathlib import Path

from embedder_core import DEFAULT_MODEL, Embedder, get_embedder

# Model names of the hosted Jina API that the local suite runs, mapped to their Hub ids, so
# code written for the hosted integrations (model="jina-embeddings-v3") runs unchanged.
HOSTED_MODEL_NAMES = {"jina-embeddings-v3": DEFAULT_MODEL}


def load_embedder(model: str | None, *, device: str | None, dtype: str | None) -> Embedder:
    """The shared ``Embedder`` for ``model`` (None: ``$JINA_CONNECTORS_MODEL``, else the default).

    A hosted API model name is read as its Hub id unless a local directory has that name.
    """
    if model in HOSTED_MODEL_NAMES and not Path(model).is_dir():
        model = HOSTED_MODEL_NAMES[model]
    return get_embedder(model, device=device, dtype=dtype)


def check_options(embedder: Embedder, *, tasks: tuple[str, ...], dimensions: int | None) -> None:
    """Raise the core's own errors now for an unknown task or a bad ``dimensions``.

    Encoding an empty list validates every option and runs no model work.
    """
    for task in tasks:
        embedder.encode([], task=task, dimensions=dimensions)
