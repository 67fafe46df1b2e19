"""The two middlewares around every route: ``Measure`` (outermost: counts and times every
answer) and ``Gate`` (the Host header, the API key, the body's size and arrival time, and
the request's share of the admission budget)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ApiError, error_response
from .metrics import ServerMetrics
from .state import ADMISSION_KEY, AdmissionTicket, ServerState
from .wire import ErrorCode

__all__ = ["Gate", "Measure", "host_name"]

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

# Bytes of an over-limit body read (and dropped) before its 413 is sent.
_DISCARD_LIMIT = 64 * 1024 * 1024


class Gate:
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
                ErrorCode.INVALID_HOST,
                headers={"Connection": "close"},
            )
            await error_response(error)(scope, receive, send)
            return
        if self.keys and path.startswith(_PROTECTED_PREFIXES) and not self._authorized(scope):
            error = ApiError(
                401,
                "missing or invalid API key: send 'Authorization: Bearer <key>'",
                ErrorCode.INVALID_API_KEY,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await error_response(error)(scope, receive, send)
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
                        ErrorCode.SHUTTING_DOWN,
                        headers={"Connection": "close"},
                    )
                else:
                    error = ApiError(
                        408,
                        f"the request body did not arrive within {self.body_timeout:g} s",
                        ErrorCode.REQUEST_TIMEOUT,
                        headers={"Connection": "close"},
                    )
                await error_response(error)(scope, receive, send)
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

        ticket = AdmissionTicket(len(body))
        scope[ADMISSION_KEY] = ticket
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
                return host_name(value.decode("latin-1")) in self.allowed_hosts
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
            ErrorCode.REQUEST_TOO_LARGE,
            headers={"Connection": "close"},
        )
        await error_response(error)(scope, receive, send)


def host_name(host: str) -> str:
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


class Measure:
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
