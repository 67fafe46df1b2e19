"""``jina-connectors serve``: the embedding server (needs ``jina-connectors[server]``).

``create_app`` builds the ASGI app (FastAPI) around an ``Embedder``; ``run_server`` loads a
model in the background and serves it with uvicorn, as the ``serve`` command does.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import Iterable, Sequence
from types import FrameType

import uvicorn

from embedder_core import Embedder, Reranker, canonical_model_id, model_url

from .app import (
    DEFAULT_MAX_INPUTS,
    DEFAULT_MAX_REQUEST_BYTES,
    HOSTED_MODEL_NAME,
    ServerState,
    create_app,
    served_name_of,
)

__all__ = [
    "API_KEYS_ENV_VAR",
    "DEFAULT_MAX_INPUTS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "HOSTED_MODEL_NAME",
    "ModelLoadError",
    "create_app",
    "run_server",
    "server_api_keys",
]

#: Comma-separated API keys the server accepts, besides those given as arguments.
API_KEYS_ENV_VAR = "JINA_CONNECTORS_API_KEYS"
#: Seconds a SIGTERM'd server waits for accepted requests before cancelling them.
GRACEFUL_SHUTDOWN_SECONDS = 60.0

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
    served_model_name: str | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_inputs: int = DEFAULT_MAX_INPUTS,
    log_level: str = "info",
    graceful_shutdown_seconds: float = GRACEFUL_SHUTDOWN_SECONDS,
    reranker: str | None = None,
    served_reranker_name: str | None = None,
) -> None:
    """Serve ``model`` (None: ``$JINA_CONNECTORS_MODEL``, else jina-embeddings-v3) until
    SIGINT/SIGTERM.

    The model reference is checked first (a bad path fails here, before any socket opens);
    the model then loads in the background while the server already answers (``/health``
    is 503 until it is loaded). If loading fails the server stops and ``ModelLoadError`` is
    raised. On SIGTERM the server stops accepting connections, answers new requests on open
    connections with 503, finishes the accepted ones (up to ``graceful_shutdown_seconds``),
    then returns. Keys: ``api_keys`` plus ``$JINA_CONNECTORS_API_KEYS``. ``reranker``: also
    serve this reranker at ``/v1/rerank`` (loaded in the background too, on the same
    device and dtype).
    """
    if model_url(model) is not None:
        raise ValueError(
            f"serve runs a model in this process; {model!r} is a server URL. Give a local "
            "directory or Hub id (or unset JINA_CONNECTORS_MODEL)"
        )
    model_id = canonical_model_id(model)  # typed errors for a bad reference, no loading
    reranker_id = canonical_model_id(reranker) if reranker is not None else None
    keys = server_api_keys(api_keys)
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
        timeout_graceful_shutdown=graceful_shutdown_seconds,
    )
    server = _DrainingServer(config, state)
    server.run()
    if state.load_error is not None:
        raise ModelLoadError(f"the model failed to load: {state.load_error}") from state.load_error
    rerank = getattr(app.state, "rerank", None)
    if rerank is not None and rerank.load_error is not None:
        raise ModelLoadError(f"the reranker failed to load: {rerank.load_error}")


class _DrainingServer(uvicorn.Server):
    """uvicorn's ``Server`` that tells the app when shutdown begins (SIGTERM, SIGINT), so
    requests that still arrive on open connections get a 503 instead of starting work."""

    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self._state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._state.begin_draining()
        super().handle_exit(sig, frame)
