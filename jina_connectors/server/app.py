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
import base64
import hmac
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embedder_core import (
    EMBEDDING_TYPES,
    Embedder,
    LateChunkingOptions,
    QueueFullError,
    SchedulerClosedError,
    TokenLimitError,
    UnsupportedModelError,
)

from .metrics import ServerMetrics

if TYPE_CHECKING:
    from embedder_core import PendingEmbeddings
from .schemas import (
    ChunkRequest,
    CountTokensRequest,
    EmbeddingsRequest,
    EmbedSpansRequest,
    LateChunkingOptionsBody,
)

__all__ = [
    "DEFAULT_MAX_INPUTS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "HOSTED_MODEL_NAME",
    "ServerState",
    "create_app",
    "served_name_of",
]

#: Largest request body, in bytes (the Content-Length, and what is actually streamed).
DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024
#: Most inputs in one request (the hosted APIs' limit).
DEFAULT_MAX_INPUTS = 2048
#: The hosted API's name, accepted as ``model`` when the served checkpoint is
#: jina-embeddings-v3 (has its LoRA task adapters).
HOSTED_MODEL_NAME = "jina-embeddings-v3"

_log = logging.getLogger("jina_connectors.server")
# Routes that need a key when keys are set. /health, /docs and /openapi.json stay open:
# they reveal nothing secret, and probes and browsers fetch them without a key.
_PROTECTED_PREFIXES = ("/v1/", "/metrics")
_ROUTES = (
    "/v1/embeddings",
    "/v1/models",
    "/v1/x/model",
    "/v1/x/count-tokens",
    "/v1/x/chunk",
    "/v1/x/embed-spans",
    "/v1/rerank",
    "/health",
    "/metrics",
)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "service_unavailable_error",
}
_CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection"
# Requests with at most this many characters of text are tokenized on the event loop:
# ~0.1 ms of work, less than a round trip through a worker thread on a busy machine.
_INLINE_CHARACTERS = 4096
_JSON = "application/json"


class ApiError(Exception):
    """An error answered as JSON with ``status`` (and ``headers``, e.g. Retry-After)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        *,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.extra = extra or {}


def _error_body(
    status: int,
    message: str,
    code: str | int | None,
    param: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    error: dict[str, Any] = {
        "message": message,
        "type": _ERROR_TYPES.get(status, "invalid_request_error"),
        "code": code,
        "param": param,
        **(extra or {}),
    }
    return orjson.dumps({"detail": message, "error": error})


def _error_response(error: ApiError) -> Response:
    body = _error_body(error.status, error.message, error.code, error.param, error.extra)
    return Response(body, status_code=error.status, media_type=_JSON, headers=error.headers)


def served_name_of(model_name: str) -> str:
    """The name a model is served under by default: a local directory's name, or the Hub id."""
    if os.path.isabs(model_name):
        return os.path.basename(model_name.rstrip("/\\")) or model_name
    return model_name


class ServerState:
    """The app's model and lifecycle: loading -> ready -> draining (or failed)."""

    def __init__(
        self,
        served_model_name: str | None,
        metrics: ServerMetrics,
        max_queued_tokens: int | None,
    ) -> None:
        self.embedder: Embedder | None = None
        self.load_error: BaseException | None = None
        self.draining = False
        self.served_model_name = served_model_name
        self.names: frozenset[str] = frozenset()
        self.created = int(time.time())
        self.metrics = metrics
        self.max_queued_tokens = max_queued_tokens

    def attach(self, embedder: Embedder) -> None:
        """Start serving ``embedder`` (called once it is loaded)."""
        if self.served_model_name is None:
            self.served_model_name = served_name_of(embedder.model_name)
        names = {self.served_model_name, embedder.model_name}
        if embedder.has_adapters:
            names.add(HOSTED_MODEL_NAME)
        self.names = frozenset(names)
        if self.max_queued_tokens is not None:
            embedder.scheduler.max_queued_tokens = self.max_queued_tokens
        self.metrics.watch(embedder)
        self.created = int(time.time())
        self.embedder = embedder

    def begin_draining(self) -> None:
        """Refuse new requests with 503 from now on (shutdown has begun)."""
        self.draining = True

    def ready(self) -> Embedder:
        """The model, or a 503 while it loads, after it failed, or while shutting down."""
        if self.draining:
            raise ApiError(
                503, "the server is shutting down", "shutting_down", headers={"Connection": "close"}
            )
        if self.load_error is not None:
            raise ApiError(503, f"the model failed to load: {self.load_error}", "model_failed")
        if self.embedder is None:
            raise ApiError(
                503,
                "the model is loading; retry shortly",
                "model_loading",
                headers={"Retry-After": "1"},
            )
        return self.embedder

    def check_model(self, name: str | None) -> None:
        """404 unless ``name`` is None or names the served model."""
        if name is not None and name not in self.names:
            raise ApiError(
                404,
                f"model {name!r} is not served here; this server serves "
                f"{self.served_model_name!r} (also as: "
                f"{', '.join(sorted(self.names - {self.served_model_name}))})",
                "model_not_found",
                param="model",
            )

    def retry_after(self) -> str:
        """Seconds until the queue has likely drained, from the recent token rate (1 to 60)."""
        rate = self.metrics.tokens_per_second
        queued = self.embedder.scheduler.queued_tokens if self.embedder is not None else 0
        seconds = queued / rate if rate > 0 else 1.0
        return str(min(60, max(1, math.ceil(seconds))))


# --------------------------------------------------------------------------- middleware
class _Gate:
    """Before the app reads a body: the API key (401), then the body size (413).

    The body is read here, up to the limit (a Content-Length over it is refused before
    reading), then handed to the app; later ``receive`` calls go to the server, so the app
    still sees the client's disconnect.
    """

    def __init__(self, app: ASGIApp, keys: Sequence[bytes], max_request_bytes: int) -> None:
        self.app = app
        self.keys = keys
        self.max_request_bytes = max_request_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.keys and path.startswith(_PROTECTED_PREFIXES) and not self._authorized(scope):
            error = ApiError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                "invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
            await _error_response(error)(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_request_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left while sending
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                await self._too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            return False
        token = token.strip()
        # Compare with every key, in constant time each, without stopping at a match: the
        # response time says nothing about which key (or how much of one) matched.
        matched = False
        for key in self.keys:
            matched |= hmac.compare_digest(token, key)
        return matched

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = ApiError(
            413,
            f"request body is over the limit of {self.max_request_bytes} bytes; send fewer "
            "or shorter inputs per request",
            "request_too_large",
            headers={"Connection": "close"},
        )
        await _error_response(error)(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class _Measure:
    """Counts every response by route and status, and times it (outermost middleware)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in _ROUTES else "other"
        started = time.perf_counter()
        status = 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


# ------------------------------------------------------------------------------ helpers
def _texts(value: str | list[Any], max_inputs: int, name: str = "input") -> list[Any]:
    """The request's inputs as a list; ``{"text": ...}`` objects unwrapped. Item types and
    empty strings are checked by the core, as for ``Embedder.encode``."""
    items: list[Any] = [value] if isinstance(value, str) else list(value)
    if not items:
        raise ApiError(400, f"{name} is empty: give a string or a non-empty list", "empty_input")
    if len(items) > max_inputs:
        raise ApiError(
            400,
            f"{name} has {len(items)} items, over this server's limit of {max_inputs} per "
            "request; split it into several requests",
            "too_many_inputs",
            param=name,
        )
    texts: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            if set(item) != {"text"}:
                raise ApiError(
                    400,
                    f"{name}[{i}] has fields {sorted(item)}; this server takes strings or "
                    '{"text": ...} objects',
                    "invalid_input",
                    param=f"{name}[{i}]",
                )
            item = item["text"]
        texts.append(item)
    return texts


def _late_chunking_options(body: LateChunkingOptionsBody | None) -> LateChunkingOptions | None:
    if body is None:
        return None
    try:
        return LateChunkingOptions(window=body.window, overlap=body.overlap)
    except ValueError as error:
        raise ApiError(400, str(error), "invalid_value", param="late_chunking_options") from None


def _output_type(body: EmbeddingsRequest) -> str:
    if (
        body.embedding_type is not None
        and body.encoding_format is not None
        and body.embedding_type != body.encoding_format
    ):
        raise ApiError(
            400,
            f"embedding_type {body.embedding_type!r} and encoding_format "
            f"{body.encoding_format!r} disagree; give one of them",
            "invalid_value",
            param="embedding_type",
        )
    return body.embedding_type or body.encoding_format or "float"


def _as_api_error(error: Exception) -> ApiError:
    """A core error about the request (raised before anything is queued) as a 400."""
    if isinstance(error, TokenLimitError):
        return ApiError(
            400,
            str(error).replace("truncate=True", '"truncate": true'),
            "token_limit",
            param=f"input[{error.index}]",
            extra={
                "index": error.index,
                "token_count": error.token_count,
                "max_tokens": error.max_tokens,
            },
        )
    if isinstance(error, UnsupportedModelError):
        return ApiError(400, str(error), "unsupported")
    if isinstance(error, TypeError):
        return ApiError(400, str(error), "invalid_type")
    return ApiError(400, str(error), "invalid_value")


def _characters(texts: Sequence[Any]) -> int:
    return sum(len(text) for text in texts if isinstance(text, str))


async def _call(state: ServerState, work: Callable[[], Any], characters: int) -> Any:
    """Run ``work`` (tokenization and checks, maybe queueing): on the event loop for a
    small request (tokenizing a few thousand characters takes less than handing them to a
    thread), else in a worker thread so the loop stays free. Its ValueError/TypeError are
    the request's fault (400); a full queue is a 429."""
    try:
        if characters <= _INLINE_CHARACTERS:
            return work()
        return await to_thread.run_sync(work)
    except QueueFullError as error:
        raise ApiError(
            429,
            f"the server is busy: {error}",
            "queue_full",
            headers={"Retry-After": state.retry_after()},
        ) from None
    except SchedulerClosedError:
        raise ApiError(503, "the server is shutting down", "shutting_down") from None
    except (ValueError, TypeError) as error:
        raise _as_api_error(error) from None


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects (the body was already read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _result(state: ServerState, pending: PendingEmbeddings[Any], request: Request) -> Any:
    """The pending request's result; if the client disconnects first, its work is dropped
    from the queue and ``None`` is returned (nobody is left to answer)."""
    result = asyncio.ensure_future(_await(pending))
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait({result, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # our own task cancelled (shutdown timeout): drop the work too
        pending.cancel()
        result.cancel()
        raise
    finally:
        watcher.cancel()
    if result.done():
        return result.result()
    pending.cancel()
    result.cancel()
    state.metrics.cancelled.inc()
    return None


async def _await(pending: PendingEmbeddings[Any]) -> Any:
    return await pending


def _json(content: Any) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), media_type=_JSON)


def _rows(result: Any, embedding_type: str) -> list[Any]:
    if embedding_type == "base64":
        return list(result)
    array = np.ascontiguousarray(result)
    return [array[i] for i in range(len(array))]


# ---------------------------------------------------------------------------- the app
def create_app(
    embedder: Embedder | Callable[[], Embedder],
    *,
    served_model_name: str | None = None,
    api_keys: Iterable[str] = (),
    max_queued_tokens: int | None = None,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_inputs: int = DEFAULT_MAX_INPUTS,
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
    (default: the directory name of a local model, else its Hub id); the model's canonical
    id, and ``jina-embeddings-v3`` for a jina-embeddings-v3 checkpoint, are accepted too.
    ``api_keys``: when any, every ``/v1/`` route and ``/metrics`` need
    ``Authorization: Bearer <key>``. ``max_queued_tokens``: set as the model scheduler's
    ``max_queued_tokens`` (a request that would pass it gets a 429 with Retry-After).
    ``max_request_bytes``: larger bodies get a 413. ``max_inputs``: inputs per request.
    ``reranker``: a loaded ``embedder_core.Reranker`` or a function that loads one, served
    at ``POST /v1/rerank`` (see ``jina_connectors.server.rerank``) as
    ``served_reranker_name``.
    """
    keys = [key.encode() for key in api_keys if key]
    for name, value in (("max_request_bytes", max_request_bytes), ("max_inputs", max_inputs)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if max_queued_tokens is not None and (
        isinstance(max_queued_tokens, bool)
        or not isinstance(max_queued_tokens, int)
        or max_queued_tokens < 1
    ):
        raise ValueError(
            f"max_queued_tokens must be a positive int or None, got {max_queued_tokens!r}"
        )
    metrics = ServerMetrics()
    state = ServerState(served_model_name, metrics, max_queued_tokens)
    owned = not isinstance(embedder, Embedder)
    if not owned:
        state.attach(embedder)  # type: ignore[arg-type]
    elif not callable(embedder):
        raise TypeError(
            f"embedder must be an Embedder or a function returning one, got {embedder!r}"
        )

    def load() -> None:
        try:
            loaded = embedder()  # type: ignore[operator]
            if not isinstance(loaded, Embedder):
                raise TypeError(
                    f"the model loader returned {type(loaded).__name__}, not an Embedder"
                )
            state.attach(loaded)
            _log.info(
                "model %s loaded; serving it as %r", loaded.model_name, state.served_model_name
            )
        except BaseException as error:
            state.load_error = error
            _log.exception("the model failed to load")
            if on_load_error is not None:
                on_load_error(error)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:  # load in the background: the socket opens (and /health answers) at once
            threading.Thread(target=load, name="model-loader", daemon=True).start()
        if rerank_service is not None:
            rerank_service.start()
        yield
        state.begin_draining()
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
    )
    app.state.server = state
    rerank_service = None
    if reranker is not None:
        from .rerank import add_rerank_route

        rerank_service = add_rerank_route(
            app,
            state,
            reranker,
            served_name=served_reranker_name,
            max_inputs=max_inputs,
            max_queued_tokens=max_queued_tokens,
            on_load_error=on_load_error,
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return _error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
            problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        message = "invalid request: " + "; ".join(problems)
        return _error_response(ApiError(422, message, "invalid_request"))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        message = str(error.detail)
        if error.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /docs"
        return _error_response(ApiError(error.status_code, message, code, headers=error.headers))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        # A bug, not bad input: logged with its traceback here, answered without it.
        _log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
        message = f"internal server error ({type(error).__name__}); see the server log"
        return _error_response(ApiError(500, message, "internal_error"))

    @app.post("/v1/embeddings", summary="Embed texts (Jina API and OpenAI request shapes)")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        model = state.ready()
        state.check_model(body.model)
        texts = _texts(body.input, max_inputs)
        embedding_type = _output_type(body)
        options = _late_chunking_options(body.late_chunking_options)
        pending = await _call(
            state,
            lambda: model.submit(
                texts,
                task=body.task,
                dimensions=body.dimensions,
                late_chunking=body.late_chunking,
                late_chunking_options=options,
                normalized=body.normalized,
                embedding_type=embedding_type,
                truncate=body.truncate,
            ),
            _characters(texts),
        )
        result = await _result(state, pending, request)
        if result is None:
            return Response(status_code=_CLIENT_CLOSED)
        metrics.tokens.inc(pending.tokens)
        metrics.inputs.inc(len(texts))
        data = [
            {"object": "embedding", "index": i, "embedding": row}
            for i, row in enumerate(_rows(result, embedding_type))
        ]
        usage = {"total_tokens": pending.tokens, "prompt_tokens": pending.tokens}
        content = {
            "object": "list",
            "model": body.model or state.served_model_name,
            "data": data,
            "usage": usage,
        }
        return await to_thread.run_sync(_json, content) if len(data) > 64 else _json(content)

    @app.get("/v1/models", summary="The served model")
    async def models() -> Response:
        state.ready()
        entry = {
            "id": state.served_model_name,
            "object": "model",
            "created": state.created,
            "owned_by": "jina-connectors",
            "aliases": sorted(state.names - {state.served_model_name}),
        }
        reranker_entry = rerank_service.model_entry() if rerank_service is not None else None
        data = [entry] if reranker_entry is None else [entry, reranker_entry]
        return _json({"object": "list", "data": data})

    @app.get("/health", summary="200 once the model is loaded, else 503")
    async def health() -> Response:
        try:
            state.ready()
        except ApiError as error:
            return _error_response(error)
        return _json({"status": "ok", "model": state.served_model_name})

    @app.get("/metrics", summary="Prometheus metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/x/model", summary="Extension: what RemoteEmbedder needs to know of the model")
    async def model_info() -> Response:
        model = state.ready()
        return _json(
            {
                "id": state.served_model_name,
                "aliases": sorted(state.names - {state.served_model_name}),
                "model_name": model.model_name,
                "dimension": model.dimension,
                "max_tokens": model.max_tokens,
                "tasks": list(model.tasks),
                "instructions": {task: model.instruction(task) for task in model.tasks},
                "default_instruction": model.instruction(None),
                "has_adapters": model.has_adapters,
                "pooling": model.pooling,
                "supports_late_chunking": model.supports_late_chunking,
                "embedding_types": list(EMBEDDING_TYPES),
                "max_inputs": max_inputs,
                "max_request_bytes": max_request_bytes,
            }
        )

    @app.post("/v1/x/count-tokens", summary="Extension: tokens each text takes")
    async def count_tokens(body: CountTokensRequest) -> Response:
        model = state.ready()
        state.check_model(body.model)
        texts = _texts(body.input, max_inputs)
        counts = await _call(
            state, lambda: model.count_tokens(texts, task=body.task), _characters(texts)
        )
        return _json({"object": "list", "tokens": counts})

    @app.post("/v1/x/chunk", summary="Extension: character spans of each text's chunks")
    async def chunk(body: ChunkRequest) -> Response:
        model = state.ready()
        state.check_model(body.model)
        texts = _texts(body.input, max_inputs)
        spans = await _call(
            state,
            lambda: model.chunk(texts, chunker=body.chunker, chunk_size=body.chunk_size),
            _characters(texts),
        )
        return _json({"object": "list", "spans": spans})

    @app.post("/v1/x/embed-spans", summary="Extension: late-chunk documents over given spans")
    async def embed_spans(body: EmbedSpansRequest, request: Request) -> Response:
        model = state.ready()
        state.check_model(body.model)
        if not body.documents:
            raise ApiError(400, "documents is empty", "empty_input", param="documents")
        if len(body.documents) > max_inputs:
            raise ApiError(
                400,
                f"documents has {len(body.documents)} items, over this server's limit of "
                f"{max_inputs} per request",
                "too_many_inputs",
                param="documents",
            )
        documents = [(doc.text, doc.spans) for doc in body.documents]
        options = _late_chunking_options(body.late_chunking_options)
        pending = await _call(
            state,
            lambda: model.submit_spans(
                documents,
                task=body.task,
                dimensions=body.dimensions,
                normalized=body.normalized,
                late_chunking_options=options,
            ),
            _characters([text for text, _ in documents]),
        )
        result = await _result(state, pending, request)
        if result is None:
            return Response(status_code=_CLIENT_CLOSED)
        metrics.tokens.inc(pending.tokens)
        metrics.inputs.inc(len(documents))
        data = []
        for i, rows in enumerate(result):
            if body.embedding_type == "base64":
                embeddings: Any = [_b64(row) for row in np.ascontiguousarray(rows, dtype="<f4")]
            else:
                embeddings = np.ascontiguousarray(rows)
            data.append({"object": "spans", "index": i, "embeddings": embeddings})
        usage = {"total_tokens": pending.tokens, "prompt_tokens": pending.tokens}
        content = {"object": "list", "model": state.served_model_name, "data": data, "usage": usage}
        return await to_thread.run_sync(_json, content)

    # Added last is outermost: _Measure sees every response, the _Gate's too.
    app.add_middleware(_Gate, keys=keys, max_request_bytes=max_request_bytes)
    app.add_middleware(_Measure, metrics=metrics)
    return app


def _b64(row: np.ndarray) -> str:
    return base64.b64encode(row.tobytes()).decode("ascii")
