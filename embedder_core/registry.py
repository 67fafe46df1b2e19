"""The process-wide embedders and rerankers: ``get_embedder`` and ``get_reranker``.

A model name or directory loads the model once (torch and the model code are imported
then, in the local branch only); a server URL goes to the backend an installed package
registers for its scheme (``embedder_core.backends`` entry points), so a thin client
imports neither torch nor transformers.
"""

from __future__ import annotations

import inspect
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import ModelNotFoundError
from .loading import canonical_model_id, model_url, url_backend

if TYPE_CHECKING:
    from .embedder import Embedder
    from .protocol import EmbedderProtocol
    from .reranker import Reranker

__all__ = ["get_embedder", "get_reranker"]

# Loaded instances: (canonical model id, the options they were loaded with, normalized).
_CACHE: list[tuple[str, dict[str, Any], Embedder]] = []
_CACHE_LOCK = threading.Lock()
# Options that only say how to fetch the files; they are not part of an instance's identity.
_FETCH_OPTIONS = ("local_files_only", "revision")
# Backends of server URLs: (normalized URL, the options given, as sorted items) -> instance.
_URL_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
# Rerankers: (canonical model id or URL, the options given, as sorted items) -> instance.
_RERANKER_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], Reranker] = {}
_RERANKER_LOCK = threading.Lock()  # its own: loading a reranker does not block get_embedder


def _normalize_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options that make an instance, in one spelling each: device as a torch.device
    string (``cuda`` with its index), dtype as a torch dtype, the default batch budget
    filled in. Options without a rule of their own compare by ``str``."""
    import torch

    from .devices import default_batch_tokens, pick_device, pick_dtype

    device = pick_device(options.get("device"))
    if device.type == "cuda" and device.index is None and torch.cuda.is_available():
        device = torch.device("cuda", torch.cuda.current_device())
    budget = options.get("max_batch_tokens")
    normalized: dict[str, Any] = {
        "device": str(device),
        "dtype": pick_dtype(options.get("dtype"), device),
        "max_batch_tokens": int(budget or default_batch_tokens(device)),
    }
    for name, value in options.items():
        if name not in normalized:
            normalized[name] = None if value is None else str(value)
    return normalized


def _given_key(name: str, given: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted((k, str(v)) for k, v in given.items()))


def get_embedder(model: str | os.PathLike[str] | None = None, **options: Any) -> EmbedderProtocol:
    """The process-wide embedder for ``model``: loaded once, then shared.

    ``options`` are those of :meth:`Embedder.from_pretrained`. The model is named by
    :func:`canonical_model_id` (``./m``, ``/abs/m`` and a symlink are one model;
    ``jina-embeddings-v3`` is ``jinaai/jina-embeddings-v3``; ``model=None`` means
    ``$JINA_CONNECTORS_MODEL``, else jina-embeddings-v3); a local model is an
    :class:`Embedder`.

    An option left out (or None) accepts any loaded instance: ``get_embedder(model)`` returns
    the first instance of that model already loaded, whatever its device and dtype (so a
    search reuses the model an ingest loaded with explicit options), and loads one with
    the defaults only when none is. Options that are given must match, after
    normalization (``"cpu"`` is ``torch.device("cpu")``, ``"bf16"`` is
    ``torch.bfloat16``, no budget is the device's default budget). Thread-safe.

    A server URL (``http://host:port``; also as ``$JINA_CONNECTORS_MODEL``) returns the
    backend an installed package registers for its scheme in the ``embedder_core.backends``
    entry point group (jina-connectors[remote]: ``RemoteEmbedder``), called with the options
    that are not None; it implements ``EmbedderProtocol``. One instance per URL and options.
    Neither torch nor the model code is imported for a URL.
    """
    url = model_url(model)
    if url is not None:
        return _url_embedder(url, options)
    from .embedder import Embedder  # the local branch only: imports torch

    accepted = set(inspect.signature(Embedder.from_pretrained).parameters) - {"cls", "model"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(
            f"get_embedder() got unknown option(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(accepted))}"
        )
    model_id = canonical_model_id(model, options.get("revision"))
    given = {k: v for k, v in options.items() if k not in _FETCH_OPTIONS and v is not None}
    wanted = {k: v for k, v in _normalize_options(given).items() if k in given}
    with _CACHE_LOCK:
        for cached_id, loaded_with, embedder in _CACHE:
            if cached_id == model_id and all(loaded_with.get(k) == v for k, v in wanted.items()):
                return embedder
        fetch = {k: v for k, v in options.items() if k in _FETCH_OPTIONS and k != "revision"}
        embedder = Embedder.from_pretrained(model_id, **fetch, **given)
        _CACHE.append((model_id, _normalize_options(given), embedder))
        return embedder


def _url_embedder(url: str, options: Mapping[str, Any]) -> EmbedderProtocol:
    given = {k: v for k, v in options.items() if v is not None}
    key = _given_key(url, given)
    backend = url_backend(url)  # before the lock: it imports the backend's package
    with _CACHE_LOCK:
        embedder = _URL_CACHE.get(key)
        if embedder is None:
            embedder = _URL_CACHE[key] = backend(url, **given)
    result: EmbedderProtocol = embedder
    return result


def get_reranker(model: str | os.PathLike[str], **options: Any) -> Reranker:
    """The process-wide reranker for ``model`` and ``options`` (those of
    :func:`~embedder_core.reranker.load_reranker`): loaded once, then shared, so concurrent
    callers share the model's forward batches. A server URL (``http://host:port``) returns
    the remote reranker of the installed URL backend (jina-connectors[remote]:
    ``RemoteReranker``)."""
    url = model_url(model)
    if url is not None:
        backend = url_backend(url)
        factory = getattr(backend, "reranker_backend", None)
        if factory is None:
            raise ModelNotFoundError(f"the backend for {url!r} serves no rerankers")
        given = {k: v for k, v in options.items() if v is not None}
        key = _given_key(url, given)
        with _RERANKER_LOCK:
            if key not in _RERANKER_CACHE:
                _RERANKER_CACHE[key] = factory(url, **given)
            return _RERANKER_CACHE[key]
    from .reranker import load_reranker  # the local branch only: imports torch

    model_id = canonical_model_id(model, options.get("revision"))
    given = {k: v for k, v in options.items() if v is not None and k not in _FETCH_OPTIONS}
    key = _given_key(model_id, given)
    with _RERANKER_LOCK:
        reranker = _RERANKER_CACHE.get(key)
        if reranker is None:
            reranker = _RERANKER_CACHE[key] = load_reranker(model, **options)
        return reranker
