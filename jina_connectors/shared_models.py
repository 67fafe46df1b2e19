"""The models the adapters, sinks, CLI and Ray engine run: one shared embedder or reranker per
(model, device, dtype), through ``embedder_core``'s registry, or an embedder described from
its configuration and loaded on first use (:class:`DeferredEmbedder`).

Imports ``embedder_core``'s model code (and so torch) only when a model is loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedder_core import Embedder, ModelInfo, Reranker

#: The reranker the adapters and ``search --rerank`` use when none is given.
DEFAULT_RERANKER = "jina-reranker-v3"


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


def load_reranker(
    model: str | None, *, device: str | None = None, dtype: str | None = None
) -> Reranker:
    """The shared reranker for ``model`` (None: ``DEFAULT_RERANKER``)."""
    from embedder_core import get_reranker

    return get_reranker(model or DEFAULT_RERANKER, device=device, dtype=dtype)


def deferred_embedder(
    model: str | None, *, device: str | None = None, quantization: str | None = None
) -> Embedder | DeferredEmbedder:
    """``model`` described from its configuration and loaded (on ``device``) only when
    something needs its weights (:class:`DeferredEmbedder`); a server URL, or a config that
    does not give the width, is loaded now."""
    from embedder_core import default_model, inspect_model

    load = partial(load_embedder, model, device=device, quantization=quantization)
    name = model or default_model()
    if "://" in name:
        return load()
    info = inspect_model(name)
    if info.dimension is None:
        return load()
    return DeferredEmbedder(info, load, quantization=quantization)


def check_options(embedder: Embedder, *, tasks: tuple[str, ...], dimensions: int | None) -> None:
    """Raise the core's own errors now for an unknown task or a bad ``dimensions``.

    Encoding an empty list validates every option and runs no model work.
    """
    for task in tasks:
        embedder.encode([], task=task, dimensions=dimensions)


class DeferredEmbedder:
    """An embedder that loads on first use, for a run that may not need it at all.

    ``model_name``, ``dimension``, ``max_tokens`` and ``tasks`` come from the model's
    configuration (:func:`embedder_core.inspect_model`, no torch), which is all the pipeline
    needs to hash documents and look them up; anything else (embedding) calls ``load``
    once and is answered by the loaded :class:`~embedder_core.Embedder`. So an ingest whose
    documents are all stored unchanged never imports torch or reads the weights.
    """

    def __init__(
        self, info: ModelInfo, load: Callable[[], Embedder], *, quantization: str | None = None
    ) -> None:
        if info.dimension is None:
            raise ValueError(f"the configuration of {info.model_name} does not give its dimension")
        self.info = info
        self.model_name = info.model_name
        self.dimension = info.dimension
        self.max_tokens = info.max_tokens
        self.tasks = info.tasks
        self.supports_late_chunking = info.supports_late_chunking
        self.quantization = quantization  # as requested (Ray actors load with it)
        self._load = load
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def embedder(self) -> Embedder:
        """The loaded embedder (loading it now if needed), checked against the configuration
        its hashes were made with."""
        with self._lock:
            if self._embedder is None:
                embedder = self._load()
                described = (self.model_name, self.dimension, tuple(self.tasks))
                loaded = (embedder.model_name, embedder.dimension, tuple(embedder.tasks))
                if loaded != described:
                    raise RuntimeError(
                        f"the loaded model is {loaded}, but its configuration said {described}"
                    )
                self._embedder = embedder
            return self._embedder

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy/pickle probes: not the embedder's to answer
            raise AttributeError(name)
        return getattr(self.embedder(), name)
