"""``run_server``: what ``jina-connectors serve`` runs: a model loaded in the background,
served with uvicorn (``create_app``), drained on SIGTERM; and the API-key helpers."""

from __future__ import annotations

import ctypes
import ipaddress
import logging
import math
import os
import sys
from collections.abc import Iterable, Sequence
from types import FrameType

import uvicorn

from embedder_core import Embedder, Reranker, canonical_model_id, model_url

from .app import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_ADMITTED_BYTES,
    DEFAULT_MAX_INPUTS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_SPANS,
    DEFAULT_TOKENIZE_WORKERS,
    LOOPBACK_HOSTS,
    ServerState,
    create_app,
    served_name_of,
)
from .http import guarded_h11_protocol

__all__ = [
    "API_KEYS_ENV_VAR",
    "ModelLoadError",
    "limit_cpu_caches",
    "run_server",
    "server_api_keys",
]

#: Comma-separated API keys the server accepts, besides those given as arguments.
API_KEYS_ENV_VAR = "JINA_CONNECTORS_API_KEYS"
#: Seconds a SIGTERM'd server lets accepted requests finish; those still running are then
#: answered 503. Within Kubernetes' default 30 s grace period before SIGKILL.
DRAIN_SECONDS = 25.0
#: Seconds a connection has to send a complete request head (408 or close past it).
HEADER_TIMEOUT = 10.0
#: Seconds an idle keep-alive connection stays open after an answer (uvicorn's default).
KEEP_ALIVE_TIMEOUT = 5
#: Largest request head (request line and headers), in bytes: 431 past it.
MAX_HEADER_BYTES = 64 * 1024
# uvicorn cancels what still runs this long after the drain deadline (the app answers first).
_SHUTDOWN_MARGIN = 5.0
# glibc malloc arenas: by default up to 8 per core, each keeping the memory freed in it;
# tokenizer threads and the scheduler's thread then grow the heap round after round.
_MALLOC_ARENAS = 2
#: oneDNN's cache of compiled CPU kernels is keyed by input shape, and a padded model sees a
#: new (batch, length) shape in nearly every forward: with its default of 1024 entries the
#: resident size grew ~250 MB over five rounds of load on MiniLM, ~200 MB at 64 entries, and
#: stayed flat uncached (docs/guide/server.md).
ONEDNN_CACHE_ENV_VAR = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
ONEDNN_CACHE_CAPACITY = "0"


def limit_cpu_caches() -> None:
    """Bound what grows with load on CPU: oneDNN's kernel cache (unless
    ``$ONEDNN_PRIMITIVE_CACHE_CAPACITY`` is set; read when its first kernel is built, so call
    this before the model runs) and glibc's malloc arenas (unless ``$MALLOC_ARENA_MAX``)."""
    os.environ.setdefault(ONEDNN_CACHE_ENV_VAR, ONEDNN_CACHE_CAPACITY)
    _limit_malloc_arenas()


_log = logging.getLogger("jina_connectors.server")


class ModelLoadError(RuntimeError):
    """The server's model failed to load in the background; the server stopped."""


def server_api_keys(keys: Iterable[str] = ()) -> list[str]:
    """``keys`` plus those of ``$JINA_CONNECTORS_API_KEYS`` (comma-separated), deduplicated."""
    from_env = [key.strip() for key in os.environ.get(API_KEYS_ENV_VAR, "").split(",")]
    merged: list[str] = []
    for key in [*keys, *from_env]:
        if key and key not in merged:
            merged.append(key)
    return merged


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run_server(
    model: str | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    api_keys: Sequence[str] = (),
    device: str | None = None,
    dtype: str | None = None,
    max_batch_tokens: int | None = None,
    max_queued_tokens: int | None = None,
    quantization: str | None = None,
    served_model_name: str | Sequence[str] | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_inputs: int = DEFAULT_MAX_INPUTS,
    max_spans: int = DEFAULT_MAX_SPANS,
    max_admitted_bytes: int = DEFAULT_MAX_ADMITTED_BYTES,
    tokenize_workers: int = DEFAULT_TOKENIZE_WORKERS,
    allowed_hosts: Sequence[str] | None = None,
    expose_model_path: bool = False,
    log_level: str = "info",
    drain_seconds: float = DRAIN_SECONDS,
    header_timeout: float = HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    keep_alive_timeout: int = KEEP_ALIVE_TIMEOUT,
    max_header_bytes: int = MAX_HEADER_BYTES,
    reranker: str | None = None,
    served_reranker_name: str | None = None,
) -> None:
    """Serve ``model`` (None: ``$JINA_CONNECTORS_MODEL``, else jina-embeddings-v3) until
    SIGINT/SIGTERM.

    The model reference is checked first (a bad path fails here, before any socket opens);
    the model then loads in the background while the server already answers (``/health``
    is 503 until it is loaded). If loading fails the server stops and ``ModelLoadError`` is
    raised. On SIGTERM the server stops accepting connections, answers new requests on open
    connections with 503, finishes the accepted ones for up to ``drain_seconds`` (those
    still running then are answered 503, one log line each), then returns. Keys:
    ``api_keys`` plus ``$JINA_CONNECTORS_API_KEYS``. ``allowed_hosts``: Host header names
    answered (default: the loopback names when ``host`` is a loopback address, else any).
    The other arguments are ``create_app``'s and the connection limits.
    ``reranker``: also serve this reranker at ``/v1/rerank`` (loaded in the background
    too, on the same device and dtype).
    """
    if model_url(model) is not None:
        raise ValueError(
            f"serve runs a model in this process; {model!r} is a server URL. Give a local "
            "directory or Hub id (or unset JINA_CONNECTORS_MODEL)"
        )
    model_id = canonical_model_id(model)  # typed errors for a bad reference, no loading
    limit_cpu_caches()
    reranker_id = canonical_model_id(reranker) if reranker is not None else None
    keys = server_api_keys(api_keys)
    if allowed_hosts is None and _is_loopback(host):
        allowed_hosts = LOOPBACK_HOSTS
    if not keys and not _is_loopback(host):
        _log.warning(
            "serving on %s without API keys: anyone who can reach this address can use the "
            "model. Pass --api-key or set %s",
            host,
            API_KEYS_ENV_VAR,
        )

    def load() -> Embedder:
        return Embedder.from_pretrained(
            model_id,
            device=device,
            dtype=dtype,
            max_batch_tokens=max_batch_tokens,
            quantization=quantization,
        )

    def load_reranker() -> Reranker:
        from embedder_core.reranker import load_reranker as load

        assert reranker_id is not None
        return load(reranker_id, device=device, dtype=dtype, max_batch_tokens=max_batch_tokens)

    server: uvicorn.Server | None = None

    def stop(error: BaseException) -> None:
        if server is not None:
            server.should_exit = True

    app = create_app(
        load,
        served_model_name=served_model_name or served_name_of(model_id),
        api_keys=keys,
        max_queued_tokens=max_queued_tokens,
        max_request_bytes=max_request_bytes,
        max_inputs=max_inputs,
        max_spans=max_spans,
        max_admitted_bytes=max_admitted_bytes,
        tokenize_workers=tokenize_workers,
        body_timeout=body_timeout,
        allowed_hosts=allowed_hosts,
        expose_model_path=expose_model_path,
        on_load_error=stop,
        reranker=load_reranker if reranker_id is not None else None,
        served_reranker_name=served_reranker_name
        or (served_name_of(reranker_id) if reranker_id else None),
    )
    state: ServerState = app.state.server
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        http=guarded_h11_protocol(header_timeout),
        timeout_keep_alive=keep_alive_timeout,
        h11_max_incomplete_event_size=max_header_bytes,
        timeout_graceful_shutdown=math.ceil(drain_seconds + _SHUTDOWN_MARGIN),
    )
    server = _DrainingServer(config, state, drain_seconds)
    server.run()
    if state.load_error is not None:
        raise ModelLoadError(f"the model failed to load: {state.load_error}") from state.load_error
    rerank = getattr(app.state, "rerank", None)
    if rerank is not None and rerank.load_error is not None:
        raise ModelLoadError(f"the reranker failed to load: {rerank.load_error}")


class _DrainingServer(uvicorn.Server):
    """uvicorn's ``Server`` that tells the app when shutdown begins (SIGTERM, SIGINT), so
    requests that still arrive on open connections get a 503 instead of starting work."""

    def __init__(self, config: uvicorn.Config, state: ServerState, drain_seconds: float) -> None:
        super().__init__(config)
        self._state = state
        self._drain_seconds = drain_seconds

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._state.begin_draining(self._drain_seconds)
        super().handle_exit(sig, frame)


def _limit_malloc_arenas() -> None:
    """Cap glibc's malloc arenas (unless ``MALLOC_ARENA_MAX`` is set): each thread that
    allocates (tokenizer workers, the scheduler, uvicorn's) otherwise gets an arena of its
    own, up to 8 per core, which keeps the memory freed in it, so the resident size grows
    with every burst of load although nothing leaks. Not glibc: nothing to do."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_ARENA_MAX, _MALLOC_ARENAS)
    except (OSError, AttributeError):
        pass


_M_ARENA_MAX = -8  # glibc's mallopt parameter number for M_ARENA_MAX
