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
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
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
    from embedder_core.scheduler import PendingEmbeddings
from .schemas import (
    ChunkRequest,
    CountTokensRequest,
    EmbeddingsRequest,
    EmbedSpansRequest,
    LateChunkingOptionsBody,
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

#: Largest request body, in bytes (the Content-Length, and what is actually streamed).
#: TEI's default is 2 MB too: a full batch of ~1 KB passages, or ~50 passages of 8k tokens.
#: Memory per admitted byte is what bounds the server, and clients split by this limit.
DEFAULT_MAX_REQUEST_BYTES = 2 * 1024 * 1024
#: Most inputs in one request (the hosted APIs' limit).
DEFAULT_MAX_INPUTS = 2048
#: Most spans in one /v1/x/embed-spans request (a document also has at most one span per
#: character of its text). Each span is an output row, as an input of /v1/embeddings is.
DEFAULT_MAX_SPANS = 8192
#: The admission budget: the body bytes plus the estimated answer bytes of every request
#: between its admission (before tokenizing) and its answer. Past it, a 429 with Retry-After
#: (a request is admitted whatever its size when no other holds any of the budget).
DEFAULT_MAX_ADMITTED_BYTES = 32 * 1024 * 1024
#: Worker threads that tokenize requests (longer than a few thousand characters; shorter
#: ones are tokenized on the event loop). Queued requests wait for one, not for memory.
DEFAULT_TOKENIZE_WORKERS = 2
#: Seconds a client has to send a request's body once its headers have arrived (408 past).
DEFAULT_BODY_TIMEOUT = 30.0
#: Host header names accepted by default when the server is bound to a loopback address:
#: a page that rebinds its own DNS name to 127.0.0.1 still sends its own name.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
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
    408: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    431: "invalid_request_error",
    500: "server_error",
    503: "service_unavailable_error",
}
# Bytes of an answer per embedding value, by output type: a JSON float is ~12 characters.
_ANSWER_BYTES_PER_VALUE = {"float": 12, "base64": 6}
_SURROGATE = re.compile("[\ud800-\udfff]")
# Folder names that say nothing about the model: its parent's name is used instead.
_GENERIC_FOLDERS = frozenset({"model", "models", "checkpoint", "weights", "snapshot", "hf"})
_CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection"
# Bytes of an over-limit body read (and dropped) before its 413 is sent.
_DISCARD_LIMIT = 64 * 1024 * 1024
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
    """The name a model is served under by default: the Hub id; for a local directory, the
    repository of a Hugging Face cache snapshot (``models--org--name/snapshots/<hash>``), or
    the folder's name (its parent's when the folder is called ``model`` or alike)."""
    if not os.path.isabs(model_name):
        return model_name
    path = Path(model_name)
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--") :].replace("--", "/")
    if path.name.lower() in _GENERIC_FOLDERS and path.parent.name:
        return path.parent.name
    return path.name or model_name


def _is_path(name: str) -> bool:
    return os.path.isabs(name) or name.startswith(("~", "./", "../"))


class ServerState:
    """The app's model and lifecycle: loading -> ready -> draining (or failed)."""

    def __init__(
        self,
        served_model_name: str | None,
        metrics: ServerMetrics,
        max_queued_tokens: int | None,
        *,
        aliases: Sequence[str] = (),
        expose_model_path: bool = False,
        max_admitted_bytes: int = DEFAULT_MAX_ADMITTED_BYTES,
    ) -> None:
        self.embedder: Embedder | None = None
        self.load_error: BaseException | None = None
        self.draining = False
        self.served_model_name = served_model_name
        self.extra_aliases = tuple(aliases)
        self.expose_model_path = expose_model_path
        self.names: frozenset[str] = frozenset()  # every name a request may give
        self.aliases: list[str] = []  # the names besides the served one that are shown
        self.created = int(time.time())
        self.metrics = metrics
        self.max_queued_tokens = max_queued_tokens
        self.budget = _Budget(max_admitted_bytes)
        # Set at the drain deadline: requests still running are answered 503 and dropped.
        self.expired = asyncio.Event()
        self.drain_seconds: float | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def attach(self, embedder: Embedder) -> None:
        """Start serving ``embedder`` (called once it is loaded)."""
        if self.served_model_name is None:
            self.served_model_name = served_name_of(embedder.model_name)
        names = {self.served_model_name, embedder.model_name, *self.extra_aliases}
        if embedder.has_adapters:
            names.add(HOSTED_MODEL_NAME)
        self.names = frozenset(names)
        self.aliases = sorted(
            name
            for name in names - {self.served_model_name}
            if self.expose_model_path or not _is_path(name)
        )
        if self.max_queued_tokens is not None:
            embedder.scheduler.max_queued_tokens = self.max_queued_tokens
        self.metrics.watch(embedder)
        self.created = int(time.time())
        self.embedder = embedder

    @property
    def model_name(self) -> str:
        """The model's canonical id as shown to clients: a local directory's path only when
        the operator asked for it (``expose_model_path``), else the served name."""
        assert self.embedder is not None
        name = self.embedder.model_name
        if self.expose_model_path or not _is_path(name):
            return name
        return self.served_model_name or "model"

    def begin_draining(self, seconds: float | None = None) -> None:
        """Refuse new requests with 503 from now on (shutdown has begun); ``seconds``: the
        drain deadline, after which requests still running are answered 503 and dropped.
        Safe to call from a signal handler."""
        self.draining = True
        loop = self.loop
        if seconds is None or self.drain_seconds is not None or loop is None:
            return
        self.drain_seconds = seconds

        def arm() -> None:
            loop.call_later(seconds, self.expired.set)

        loop.call_soon_threadsafe(arm)

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
            also = f" (also as: {', '.join(self.aliases)})" if self.aliases else ""
            raise ApiError(
                404,
                f"model {name!r} is not served here; this server serves "
                f"{self.served_model_name!r}{also}",
                "model_not_found",
                param="model",
            )

    def retry_after(self) -> str:
        """Seconds until the queue has likely drained, from the recent token rate (1 to 60)."""
        rate = self.metrics.tokens_per_second
        queued = self.embedder.scheduler.queued_tokens if self.embedder is not None else 0
        seconds = queued / rate if rate > 0 else 1.0
        return str(min(60, max(1, math.ceil(seconds))))

    def admit(self, request: Request, answer_bytes: int) -> None:
        """Count the request's body and estimated answer against the admission budget (429
        past it), before it is tokenized; the budget is given back once it is answered."""
        ticket: _Ticket | None = request.scope.get(_TICKET)
        if ticket is None:  # not through the gate (no body): nothing to count
            return
        if not self.budget.take(ticket, ticket.body_bytes + answer_bytes):
            raise ApiError(
                429,
                f"the server is busy: {self.budget.used} bytes of requests are admitted; "
                f"{ticket.body_bytes + answer_bytes} more would pass the limit of "
                f"{self.budget.limit}; retry later",
                "queue_full",
                headers={"Retry-After": self.retry_after()},
            )


_TICKET = "jina_connectors.admission"


class _Ticket:
    """One request's share of the admission budget."""

    __slots__ = ("body_bytes", "held")

    def __init__(self, body_bytes: int) -> None:
        self.body_bytes = body_bytes
        self.held = 0


class _Budget:
    """Bytes of admitted requests (bodies and estimated answers), bounded by ``limit``; a
    request is admitted whatever its size when no other holds any."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, ticket: _Ticket, amount: int) -> bool:
        with self._lock:
            others = self.used - ticket.held
            if others and others + amount > self.limit:
                return False
            self.used += amount - ticket.held
            ticket.held = amount
            return True

    def give_back(self, ticket: _Ticket) -> None:
        with self._lock:
            self.used -= ticket.held
            ticket.held = 0


# --------------------------------------------------------------------------- middleware
class _Gate:
    """Before the app reads a body: the Host header (400), the API key (401), then the body
    size (413) and the time to send it (408).

    The body is read here, up to the limit (a Content-Length over it is refused before
    reading), then handed to the app; later ``receive`` calls go to the server, so the app
    still sees the client's disconnect. The request's share of the admission budget (taken
    by the route, see ``ServerState.admit``) is given back once the answer is sent.
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: Sequence[bytes],
        max_request_bytes: int,
        state: ServerState,
        allowed_hosts: frozenset[str] | None,
        body_timeout: float,
    ) -> None:
        self.app = app
        self.keys = keys
        self.max_request_bytes = max_request_bytes
        self.state = state
        self.allowed_hosts = allowed_hosts
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if self.allowed_hosts is not None and not self._host_allowed(scope):
            error = ApiError(
                400,
                "this server does not answer for the host named in the Host header; "
                "the operator lists the accepted names with --allowed-host",
                "invalid_host",
                headers={"Connection": "close"},
            )
            await _error_response(error)(scope, receive, send)
            return
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
            await self._too_large(scope, receive, send, time.monotonic() + self.body_timeout)
            return
        chunks: list[bytes] = []
        size = 0
        deadline = time.monotonic() + self.body_timeout
        while True:
            message = await self._receive(receive, deadline)
            if message is None:  # too slow, or the drain deadline passed
                if self.state.expired.is_set():
                    client = scope.get("client")
                    _log.warning(
                        "dropped %s %s from %s: its body had not arrived at the drain "
                        "deadline (%g s); answered 503",
                        scope["method"],
                        path,
                        f"{client[0]}:{client[1]}" if client else "?",
                        self.state.drain_seconds or 0,
                    )
                    error = ApiError(
                        503,
                        "the server shut down before this request's body arrived",
                        "shutting_down",
                        headers={"Connection": "close"},
                    )
                else:
                    error = ApiError(
                        408,
                        f"the request body did not arrive within {self.body_timeout:g} s",
                        "request_timeout",
                        headers={"Connection": "close"},
                    )
                await _error_response(error)(scope, receive, send)
                return
            if message["type"] != "http.request":  # the client left while sending
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_request_bytes:
                chunks.clear()
                if message.get("more_body", False):
                    await self._too_large(scope, receive, send, deadline)
                else:
                    await self._too_large(scope, None, send, deadline)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        chunks.clear()
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        ticket = _Ticket(len(body))
        scope[_TICKET] = ticket
        try:
            await self.app(scope, replay, send)
        finally:
            self.state.budget.give_back(ticket)

    async def _receive(self, receive: Receive, deadline: float) -> Message | None:
        """The next message, or None past ``deadline`` or the drain deadline."""
        message = asyncio.ensure_future(receive())
        expired = asyncio.ensure_future(self.state.expired.wait())
        try:
            await asyncio.wait(
                {message, expired},
                timeout=max(0.0, deadline - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            expired.cancel()
            if not message.done():
                message.cancel()
        return message.result() if message.done() and not message.cancelled() else None

    def _host_allowed(self, scope: Scope) -> bool:
        assert self.allowed_hosts is not None
        for name, value in scope["headers"]:
            if name == b"host":
                return _host_name(value.decode("latin-1")) in self.allowed_hosts
        return True  # HTTP/1.0 without Host: no browser sends that

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

    async def _too_large(
        self, scope: Scope, receive: Receive | None, send: Send, deadline: float
    ) -> None:
        """A 413, once the rest of the body (``receive``: not yet read) has been read and
        dropped: a client sends its whole body before it reads the answer, and closing a
        socket with unread data resets the connection, so the client would see no answer.
        At most ``_DISCARD_LIMIT`` bytes are read (and the body timeout applies)."""
        discarded = 0
        while receive is not None and discarded < _DISCARD_LIMIT:
            message = await self._receive(receive, deadline)
            if message is None or message["type"] != "http.request":
                break
            discarded += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        error = ApiError(
            413,
            f"request body is over the limit of {self.max_request_bytes} bytes; send fewer "
            "or shorter inputs per request",
            "request_too_large",
            headers={"Connection": "close"},
        )
        await _error_response(error)(scope, receive, send)


def _host_name(host: str) -> str:
    """A Host header's name: lowercased, without its port or IPv6 brackets."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


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
        if isinstance(item, str):
            _check_surrogates(item, f"{name}[{i}]")
        texts.append(item)
    return texts


def _check_surrogates(text: str, where: str) -> None:
    """A lone UTF-16 surrogate (JSON allows ``"\\ud800"``) is no character: a 400 naming
    where, before the tokenizer sees it."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise ApiError(
            400,
            f"{where} has a lone UTF-16 surrogate (U+{ord(found.group()):04X}) at character "
            f"{found.start()}; send valid Unicode text",
            "invalid_text",
            param=where,
        )


def _token_ids(value: str | list[Any], max_inputs: int) -> list[list[int]] | None:
    """The inputs as token-id sequences when the request gives ids (``[101, 2023, ...]``
    or ``[[101, 2023, ...], ...]``, as OpenAI's, TEI's and vLLM's APIs take), else None."""
    if isinstance(value, str) or not value:
        return None
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [value]
    if not any(isinstance(item, list) for item in value):
        return None
    if len(value) > max_inputs:
        _texts(value, max_inputs)  # the too_many_inputs error
    for i, item in enumerate(value):
        if not isinstance(item, list) or not all(
            isinstance(token, int) and not isinstance(token, bool) for token in item
        ):
            raise ApiError(
                400,
                f"input[{i}] is not a list of token ids; give strings, or lists of ints "
                "(token ids of this model's tokenizer), not a mix",
                "invalid_type",
                param=f"input[{i}]",
            )
    return value


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


class _ClientGone(Exception):
    """The client disconnected before its request was tokenized or answered."""


async def _call(
    state: ServerState,
    request: Request,
    work: Callable[[], Any],
    characters: int,
    pool: ThreadPoolExecutor,
) -> Any:
    """Run ``work`` (tokenization and checks, maybe queueing): on the event loop for a
    small request (tokenizing a few thousand characters takes less than handing them to a
    thread), else on the tokenizer pool, so the loop stays free and at most the pool's
    workers tokenize at once. A request whose client leaves (or that reaches the drain
    deadline) while it waits for a worker is dropped before it is tokenized. Its
    ValueError/TypeError are the request's fault (400); a full queue is a 429."""
    try:
        if characters <= _INLINE_CHARACTERS:
            return work()
        future = pool.submit(work)
        wrapped = asyncio.wrap_future(future)
        outcome = await _wait(state, request, wrapped)
        if outcome != "done":
            if not future.cancel():  # already tokenizing: drop what it queues once done
                future.add_done_callback(_cancel_queued)
            wrapped.cancel()
            _drop(state, request, outcome)
        return wrapped.result()
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


def _cancel_queued(future: Future[Any]) -> None:
    if not future.cancelled() and future.exception() is None:
        result = future.result()
        if hasattr(result, "cancel"):
            result.cancel()


async def _wait(state: ServerState, request: Request, work: asyncio.Future[Any]) -> str:
    """Wait for ``work``: "done", "gone" (the client disconnected first) or "expired" (the
    drain deadline came first)."""
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    expiry = asyncio.ensure_future(state.expired.wait())
    try:
        await asyncio.wait({work, watcher, expiry}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        expiry.cancel()
    if work.done():
        return "done"
    return "gone" if watcher.done() and not watcher.cancelled() else "expired"


def _drop(state: ServerState, request: Request, outcome: str) -> None:
    """The request's work was dropped: its client left (499), or the drain deadline came
    (503, one log line per request)."""
    if outcome == "gone":
        state.metrics.cancelled.inc()
        raise _ClientGone
    client = request.client
    _log.warning(
        "dropped %s %s from %s: still running at the drain deadline (%g s); answered 503",
        request.method,
        request.url.path,
        f"{client.host}:{client.port}" if client else "?",
        state.drain_seconds or 0,
    )
    raise ApiError(
        503,
        f"the server shut down before this request finished (drain deadline "
        f"{state.drain_seconds or 0:g} s); retry on another server or later",
        "shutting_down",
        headers={"Connection": "close"},
    )


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects (the body was already read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _result(state: ServerState, pending: PendingEmbeddings[Any], request: Request) -> Any:
    """The pending request's result; if the client disconnects first (``_ClientGone``), or
    the drain deadline comes first (a 503), its work is dropped from the queue."""
    result = asyncio.ensure_future(_await(pending))
    try:
        outcome = await _wait(state, request, result)
    except BaseException:  # our own task cancelled (shutdown timeout): drop the work too
        pending.cancel()
        result.cancel()
        raise
    if outcome == "done":
        return result.result()
    pending.cancel()
    result.cancel()
    _drop(state, request, outcome)


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
    at ``POST /v1/rerank`` (see ``jina_connectors.server.rerank``) as
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
    hosts = None if allowed_hosts is None else frozenset(_host_name(h) for h in allowed_hosts)
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
    )
    limits = {
        "max_inputs": max_inputs,
        "max_spans": max_spans,
        "max_request_bytes": max_request_bytes,
        "max_body_bytes": max_request_bytes,
        "max_admitted_bytes": max_admitted_bytes,
        "max_queued_tokens": max_queued_tokens,
    }
    owned = not isinstance(embedder, Embedder)
    if not owned:
        state.attach(embedder)  # type: ignore[arg-type]
    elif not callable(embedder):
        raise TypeError(
            f"embedder must be an Embedder or a function returning one, got {embedder!r}"
        )
    pool = ThreadPoolExecutor(max_workers=tokenize_workers, thread_name_prefix="tokenize")

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
        from .rerank import add_rerank_route

        rerank_service = add_rerank_route(
            app,
            state,
            reranker,
            served_name=served_reranker_name,
            max_inputs=max_inputs,
            max_queued_tokens=max_queued_tokens,
            on_load_error=on_load_error,
            pool=pool,
        )
    _add_docs(app)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return _error_response(error)

    @app.exception_handler(_ClientGone)
    async def client_gone(request: Request, error: _ClientGone) -> Response:
        return Response(status_code=_CLIENT_CLOSED)

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

    def answer_bytes(model: Embedder, rows: int, dimensions: int | None, kind: str) -> int:
        values = rows * (dimensions or model.dimension)
        return values * _ANSWER_BYTES_PER_VALUE.get(kind, 4)

    @app.post("/v1/embeddings", summary="Embed texts (Jina API and OpenAI request shapes)")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> Response:
        model = state.ready()
        state.check_model(body.model)
        ids = _token_ids(body.input, max_inputs)
        texts = _texts(body.input, max_inputs) if ids is None else ids
        embedding_type = _output_type(body)
        options = _late_chunking_options(body.late_chunking_options)
        if ids is not None and body.late_chunking:
            raise ApiError(400, "late_chunking needs text input, not token ids", "invalid_value")
        state.admit(request, answer_bytes(model, len(texts), body.dimensions, embedding_type))
        if ids is not None:
            work = partial(
                model.submit_token_ids,
                ids,
                task=body.task,
                dimensions=body.dimensions,
                normalized=body.normalized,
                embedding_type=embedding_type,
                truncate=body.truncate,
            )
            size = sum(len(sequence) for sequence in ids)
        else:
            work = partial(
                model.submit,
                texts,
                task=body.task,
                dimensions=body.dimensions,
                late_chunking=body.late_chunking,
                late_chunking_options=options,
                normalized=body.normalized,
                embedding_type=embedding_type,
                truncate=body.truncate,
            )
            size = _characters(texts)
        pending = await _call(state, request, work, size, pool)
        result = await _result(state, pending, request)
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

    @app.get("/v1/models", summary="The served model, and this server's request limits")
    async def models() -> Response:
        model = state.ready()
        entry = {
            "id": state.served_model_name,
            "object": "model",
            "created": state.created,
            "owned_by": "jina-connectors",
            "aliases": state.aliases,
            "max_input_tokens": model.max_tokens,
            **limits,
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
                "aliases": state.aliases,
                "model_name": state.model_name,
                "dimension": model.dimension,
                "max_tokens": model.max_tokens,
                "max_input_tokens": model.max_tokens,
                "tasks": list(model.tasks),
                "instructions": {task: model.instruction(task) for task in model.tasks},
                "default_instruction": model.instruction(None),
                "has_adapters": model.has_adapters,
                "pooling": model.pooling,
                "supports_late_chunking": model.supports_late_chunking,
                "embedding_types": list(EMBEDDING_TYPES),
                **limits,
            }
        )

    @app.post("/v1/x/count-tokens", summary="Extension: tokens each text takes")
    async def count_tokens(body: CountTokensRequest, request: Request) -> Response:
        model = state.ready()
        state.check_model(body.model)
        texts = _texts(body.input, max_inputs)
        state.admit(request, 0)
        counts = await _call(
            state,
            request,
            lambda: model.count_tokens(texts, task=body.task),
            _characters(texts),
            pool,
        )
        return _json({"object": "list", "tokens": counts})

    @app.post("/v1/x/chunk", summary="Extension: character spans of each text's chunks")
    async def chunk(body: ChunkRequest, request: Request) -> Response:
        model = state.ready()
        state.check_model(body.model)
        texts = _texts(body.input, max_inputs)
        state.admit(request, 0)
        spans = await _call(
            state,
            request,
            lambda: model.chunk(texts, chunker=body.chunker, chunk_size=body.chunk_size),
            _characters(texts),
            pool,
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
        spans = _check_spans(body, max_spans)
        documents = [(doc.text, doc.spans) for doc in body.documents]
        options = _late_chunking_options(body.late_chunking_options)
        state.admit(request, answer_bytes(model, spans, body.dimensions, body.embedding_type))
        pending = await _call(
            state,
            request,
            lambda: model.submit_spans(
                documents,
                task=body.task,
                dimensions=body.dimensions,
                normalized=body.normalized,
                late_chunking_options=options,
            ),
            _characters([text for text, _ in documents]),
            pool,
        )
        result = await _result(state, pending, request)
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
    app.add_middleware(
        _Gate,
        keys=keys,
        max_request_bytes=max_request_bytes,
        state=state,
        allowed_hosts=hosts,
        body_timeout=body_timeout,
    )
    app.add_middleware(_Measure, metrics=metrics)
    return app


def _check_spans(body: EmbedSpansRequest, max_spans: int) -> int:
    """The request's span count, after checking every span (a 400 naming the first bad one)
    and the caps: ``max_spans`` per request, one span per character of a document."""
    total = 0
    for i, doc in enumerate(body.documents):
        where = f"documents[{i}]"
        _check_surrogates(doc.text, f"{where}.text")
        count = len(doc.spans)
        total += count
        if count > max(1, len(doc.text)):
            raise ApiError(
                400,
                f"{where} has {count} spans over a text of {len(doc.text)} characters; a "
                "document has at most one span per character",
                "too_many_spans",
                param=f"{where}.spans",
            )
        if total > max_spans:
            raise ApiError(
                400,
                f"documents have more than {max_spans} spans, this server's limit per request; "
                "split them into several requests",
                "too_many_spans",
                param="documents",
            )
        for j, span in enumerate(doc.spans):
            if len(span) != 2 or not 0 <= span[0] < span[1] <= len(doc.text):
                raise ApiError(
                    400,
                    f"{where}: span {j} {span} is empty, reversed or outside the text; a "
                    f"span is [start, end] with 0 <= start < end <= {len(doc.text)}",
                    "invalid_span",
                    param=f"{where}.spans[{j}]",
                )
    return total


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


def _b64(row: np.ndarray) -> str:
    return base64.b64encode(row.tobytes()).decode("ascii")
