"""The server's state: the served model and its lifecycle (loading -> ready -> draining, or
failed), its names, its request limits and the admission budget. Routes get it through the
``ServerStateDep`` dependency, so a route works in any app whose ``state.server`` is one."""

from __future__ import annotations

import asyncio
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from embedder_core import Embedder

from .errors import ApiError
from .metrics import ServerMetrics
from .wire import ErrorCode

__all__ = [
    "ADMISSION_KEY",
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_MAX_ADMITTED_BYTES",
    "DEFAULT_MAX_INPUTS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_MAX_SPANS",
    "DEFAULT_TOKENIZE_WORKERS",
    "HOSTED_MODEL_NAME",
    "LOOPBACK_HOSTS",
    "AdmissionTicket",
    "ServerLimits",
    "ServerState",
    "ServerStateDep",
    "served_name_of",
    "server_state",
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

# Folder names that say nothing about the model: its parent's name is used instead.
_GENERIC_FOLDERS = frozenset({"model", "models", "checkpoint", "weights", "snapshot", "hf"})


@dataclass(frozen=True)
class ServerLimits:
    """What one request may hold, and the budgets shared by all (``create_app``'s)."""

    max_inputs: int = DEFAULT_MAX_INPUTS
    max_spans: int = DEFAULT_MAX_SPANS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_admitted_bytes: int = DEFAULT_MAX_ADMITTED_BYTES
    max_queued_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The limits as ``/v1/models`` and ``/v1/x/model`` show them."""
        return {
            "max_inputs": self.max_inputs,
            "max_spans": self.max_spans,
            "max_request_bytes": self.max_request_bytes,
            "max_body_bytes": self.max_request_bytes,
            "max_admitted_bytes": self.max_admitted_bytes,
            "max_queued_tokens": self.max_queued_tokens,
        }


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
        limits: ServerLimits | None = None,
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
        self.budget = AdmissionBudget(max_admitted_bytes)
        # Set at the drain deadline: requests still running are answered 503 and dropped.
        self.expired = asyncio.Event()
        self.drain_seconds: float | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.limits = limits or ServerLimits(max_admitted_bytes=max_admitted_bytes)
        # The threads that tokenize requests (``create_app`` sets them), and the served
        # reranker, if any (``routes.rerank.RerankService``).
        self.pool: ThreadPoolExecutor | None = None
        self.rerank: Any = None

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
                503,
                "the server is shutting down",
                ErrorCode.SHUTTING_DOWN,
                headers={"Connection": "close"},
            )
        if self.load_error is not None:
            raise ApiError(
                503, f"the model failed to load: {self.load_error}", ErrorCode.MODEL_FAILED
            )
        if self.embedder is None:
            raise ApiError(
                503,
                "the model is loading; retry shortly",
                ErrorCode.MODEL_LOADING,
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
                ErrorCode.MODEL_NOT_FOUND,
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
        ticket: AdmissionTicket | None = request.scope.get(ADMISSION_KEY)
        if ticket is None:  # not through the gate (no body): nothing to count
            return
        if not self.budget.take(ticket, ticket.body_bytes + answer_bytes):
            raise ApiError(
                429,
                f"the server is busy: {self.budget.used} bytes of requests are admitted; "
                f"{ticket.body_bytes + answer_bytes} more would pass the limit of "
                f"{self.budget.limit}; retry later",
                ErrorCode.QUEUE_FULL,
                headers={"Retry-After": self.retry_after()},
            )


ADMISSION_KEY = "jina_connectors.admission"


class AdmissionTicket:
    """One request's share of the admission budget."""

    __slots__ = ("body_bytes", "held")

    def __init__(self, body_bytes: int) -> None:
        self.body_bytes = body_bytes
        self.held = 0


class AdmissionBudget:
    """Bytes of admitted requests (bodies and estimated answers), bounded by ``limit``; a
    request is admitted whatever its size when no other holds any."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self, ticket: AdmissionTicket, amount: int) -> bool:
        with self._lock:
            others = self.used - ticket.held
            if others and others + amount > self.limit:
                return False
            self.used += amount - ticket.held
            ticket.held = amount
            return True

    def give_back(self, ticket: AdmissionTicket) -> None:
        with self._lock:
            self.used -= ticket.held
            ticket.held = 0


def server_state(request: Request) -> ServerState:
    """The state of the app serving ``request`` (``app.state.server``)."""
    state: ServerState = request.app.state.server
    return state


#: A route's parameter that receives the server's state.
ServerStateDep = Annotated[ServerState, Depends(server_state)]
