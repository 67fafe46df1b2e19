"""How the framework adapters get their embedder: one shared model per (model, device, dtype)."""

from __future__ import annotations

from embedder_core import HOSTED_MODEL_NAMES, Embedder, get_embedder

__all__ = ["HOSTED_MODEL_NAMES", "check_options", "load_embedder"]


def load_embedder(model: str | None, *, device: str | None, dtype: str | None) -> Embedder:
    """The shared ``Embedder`` for ``model`` (None: ``$JINA_CONNECTORS_MODEL``, else the default).

    The core reads a hosted API model name as its Hub id unless a local directory has that
    name (``embedder_core.canonical_model_id``).
    """
    return get_embedder(model, device=device, dtype=dtype)


def check_options(embedder: Embedder, *, tasks: tuple[str, ...], dimensions: int | None) -> None:
    """Raise the core's own errors now for an unknown task or a bad ``dimensions``.

    Encoding an empty list validates every option and runs no model work.
    """
    for task in tasks:
        embedder.encode([], task=task, dimensions=dimensions)
