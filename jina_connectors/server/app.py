"""The embedding server: a Jina- and OpenAI-compatible ``/v1/embeddings`` over one model.

Every request goes through the model's scheduler (``Embedder.submit``), so concurrent
requests share forward batches; there is no separate server batching. Requests are checked
by the core before anything is queued, refused with 429 when the scheduler's queue holds
too many tokens, and dropped from the queue when their client disconnects.

Routes (``/docs`` has the OpenAPI schema):

- ``POST /v1/embeddings``: the Jina API's request (``task``, ``dimensions``,
  ``late_chunking``, ``embedding_type``, ``normalized``, ``truncate``) and OpenAI's
  (``encoding_format``, ``user``) in one shape.
- ``GET /v1/models``, ``GET /health`` (503 until the model is loaded), ``GET /metrics``.
- Extensions, under ``/v1/x/`` (what ``RemoteEmbedder`` needs beyond ``/v1/embeddings``):
  ``GET /v1/x/model`` (dimension, tasks, token limit...), ``POST /v1/x/count-tokens``,
  ``POST /v1/x/chunk``, ``POST /v1/x/embed-spans``.

Every error is JSON: ``{"detail": msg, "error": {"message": msg, "type": ..., "code": ...}}``.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from anyio import to_thread
from fastapi import FastAPI
from fastapi.responses import Response

from embedder_core import Embedder

from .errors import add_error_handlers
from .metrics import ServerMetrics
from .middleware import Gate, Measure, host_name
from .routes import embeddings, health, model
from .state import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_ADMITTED_BYTES,
    DEFAULT_MAX_INPUTS,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_SPANS,
    DEFAULT_TOKENIZE_WORKERS,
    HOSTED_MODEL_NAME,
    LOOPBACK_HOSTS,
    ServerLimits,
    ServerState,
    served_name_of,
)

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_ADMITTED_BYTES",
    "DEFAULT_MAX_INPUTS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_SPANS",
    "DEFAULT_TOKENIZE_WORKERS",
    "HOSTED_MODEL_NAME",
    "LOOPBACK_HOSTS",
    "ServerState",
    "create_app",
    "served_name_of",
]

_log = logging.getLogger("jina_connectors.server")


def create_app(
    embedder: Embedder | Callable[[], Embedder],
    *,
    served_model_name: str | Sequence[str] | None = None,
    api_keys: Iterable[str] = (),
    max_queued_tokens: int | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_inputs: int = DEFAULT_MAX_INPUTS,
    max_spans: int = DEFAULT_MAX_SPANS,
    max_admitted_bytes: int = DEFAULT_MAX_ADMITTED_BYTES,
    tokenize_workers: int = DEFAULT_TOKENIZE_WORKERS,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    allowed_hosts: Iterable[str] | None = None,
    expose_model_path: bool = False,
    on_load_error: Callable[[BaseException], None] | None = None,
    reranker: Any = None,
    served_reranker_name: str | None = None,
) -> FastAPI:
    """The ASGI app serving ``embedder``.

    ``embedder`` is a loaded ``Embedder`` or a function that loads one: the function runs
    in a background thread once the app starts, so the server answers (``/health``: 503)
    while the model loads; ``on_load_error`` is called if it raises. An ``Embedder`` given
    by the caller stays the caller's; one the app loaded is closed (accepted work finished)
    when the app shuts down.

    ``served_model_name``: the name ``/v1/models`` lists and requests may give as ``model``
    (default: ``served_name_of`` the model), or several: the first is listed, the others
    are aliases; the model's canonical id, and ``jina-embeddings-v3`` for a
    jina-embeddings-v3 checkpoint, are accepted too. ``expose_model_path``: show a local
    model's directory in answers (aliases, 404 messages, ``/v1/x/model``); by default only
    names are shown. ``api_keys``: when any, every ``/v1/`` route and ``/metrics`` need
    ``Authorization: Bearer <key>``. ``allowed_hosts``: the Host header names answered
    (None: any; ``run_server`` gives the loopback names when bound to loopback).
    ``max_queued_tokens``: set as the model scheduler's ``max_queued_tokens`` (a request
    that would pass it gets a 429 with Retry-After). ``max_request_bytes``: larger bodies
    get a 413; ``body_timeout``: seconds to send one (408 past). ``max_inputs``: inputs
    per request; ``max_spans``: spans per ``/v1/x/embed-spans`` request.
    ``max_admitted_bytes``: the admission budget (bodies plus estimated answers of the
    requests being served; 429 past it). ``tokenize_workers``: threads that tokenize.
    ``reranker``: a loaded ``embedder_core.Reranker`` or a function that loads one, served
    at ``POST /v1/rerank`` (see ``jina_connectors.server.routes.rerank``) as
    ``served_reranker_name``.
    """
    keys = [key.encode() for key in api_keys if key]
    for name, value in (
        ("max_request_bytes", max_request_bytes),
        ("max_inputs", max_inputs),
        ("max_spans", max_spans),
        ("max_admitted_bytes", max_admitted_bytes),
        ("tokenize_workers", tokenize_workers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if max_admitted_bytes < max_request_bytes:
        raise ValueError(
            f"max_admitted_bytes ({max_admitted_bytes}) must be at least max_request_bytes "
            f"({max_request_bytes}): a request of the largest size must fit"
        )
    if not body_timeout > 0:
        raise ValueError(f"body_timeout must be positive, got {body_timeout!r}")
    if max_queued_tokens is not None and (
        isinstance(max_queued_tokens, bool)
        or not isinstance(max_queued_tokens, int)
        or max_queued_tokens < 1
    ):
        raise ValueError(
            f"max_queued_tokens must be a positive int or None, got {max_queued_tokens!r}"
        )
    names = [served_model_name] if isinstance(served_model_name, str) else served_model_name
    names = [name for name in (names or []) if name]
    hosts = None if allowed_hosts is None else frozenset(host_name(h) for h in allowed_hosts)
    if hosts is not None and "*" in hosts:
        hosts = None
    metrics = ServerMetrics()
    state = ServerState(
        names[0] if names else None,
        metrics,
        max_queued_tokens,
        aliases=names[1:],
        expose_model_path=expose_model_path,
        max_admitted_bytes=max_admitted_bytes,
        limits=ServerLimits(
            max_inputs=max_inputs,
            max_spans=max_spans,
            max_request_bytes=max_request_bytes,
            max_admitted_bytes=max_admitted_bytes,
            max_queued_tokens=max_queued_tokens,
        ),
    )
    owned = not isinstance(embedder, Embedder)
    if not owned:
        state.attach(embedder)  # type: ignore[arg-type]
    elif not callable(embedder):
        raise TypeError(
            f"embedder must be an Embedder or a function returning one, got {embedder!r}"
        )
    pool = ThreadPoolExecutor(max_workers=tokenize_workers, thread_name_prefix="tokenize")
    state.pool = pool

    def load() -> None:
        try:
            loaded = embedder()  # type: ignore[operator]
            if not isinstance(loaded, Embedder):
                raise TypeError(
                    f"the model loader returned {type(loaded).__name__}, not an Embedder"
                )
            state.attach(loaded)
            _log.info(
                "model %s loaded; serving it as %r", state.model_name, state.served_model_name
            )
        except BaseException as error:
            state.load_error = error
            _log.exception("the model failed to load")
            if on_load_error is not None:
                on_load_error(error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.loop = asyncio.get_running_loop()
        if owned:  # load in the background: the socket opens (and /health answers) at once
            threading.Thread(target=load, name="model-loader", daemon=True).start()
        if rerank_service is not None:
            rerank_service.start()
        yield
        state.begin_draining()
        pool.shutdown(wait=False, cancel_futures=True)
        if rerank_service is not None:
            await to_thread.run_sync(rerank_service.stop)
        if state.embedder is not None:
            metrics.unwatch(state.embedder)
            if owned:  # every request has been answered by now; stop the worker
                await to_thread.run_sync(state.embedder.scheduler.close)

    app = FastAPI(
        title="jina-connectors embedding server",
        description="Jina- and OpenAI-compatible embeddings, with cross-request batching.",
        version="1",
        lifespan=lifespan,
        docs_url=None,
    )
    app.state.server = state
    rerank_service = None
    if reranker is not None:
        from .routes.rerank import add_rerank_route  # imports torch: only when asked for

        rerank_service = add_rerank_route(
            app,
            state,
            reranker,
            served_name=served_reranker_name,
            max_queued_tokens=max_queued_tokens,
            on_load_error=on_load_error,
        )
    _add_docs(app)
    add_error_handlers(app)
    for routes in (embeddings, model, health):
        app.include_router(routes.router)

    # Added last is outermost: Measure sees every response, the Gate's too.
    app.add_middleware(
        Gate,
        keys=keys,
        max_request_bytes=max_request_bytes,
        state=state,
        allowed_hosts=hosts,
        body_timeout=body_timeout,
    )
    app.add_middleware(Measure, metrics=metrics)
    return app


def _add_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from files served by this server (the ``swagger-ui-bundle``
    package), so it works offline; FastAPI's CDN page if that package is missing."""
    from fastapi.openapi.docs import get_swagger_ui_html

    try:
        import swagger_ui_bundle

        assets: str | None = swagger_ui_bundle.swagger_ui_path
    except ImportError:
        assets = None
    if assets is not None:
        from starlette.staticfiles import StaticFiles

        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
        urls = {
            "swagger_js_url": "/docs-assets/swagger-ui-bundle.js",
            "swagger_css_url": "/docs-assets/swagger-ui.css",
            "swagger_favicon_url": "/docs-assets/favicon-32x32.png",
        }
    else:
        urls = {}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=app.title, **urls
        )
