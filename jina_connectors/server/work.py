"""What every route does with a request: its inputs read and checked, its work run (on the
event loop when small, else on the tokenizer threads) with core errors answered as 400s, a
full queue as 429, and its result awaited while watching for the client leaving and the
drain deadline."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import Request
from fastapi.responses import Response
from starlette.types import Receive

from embedder_core import (
    QueueFullError,
    SchedulerClosedError,
    TokenLimitError,
    UnsupportedModelError,
)

from .errors import JSON_MEDIA_TYPE, ApiError, ClientGone
from .state import ServerState
from .wire import ErrorCode

if TYPE_CHECKING:
    from embedder_core.pending import PendingEmbeddings

__all__ = [
    "await_result",
    "characters_of",
    "check_surrogates",
    "input_texts",
    "input_token_ids",
    "json_response",
    "run_work",
]

_log = logging.getLogger("jina_connectors.server")
_SURROGATE = re.compile("[\ud800-\udfff]")

# Requests with at most this many characters of text are tokenized on the event loop:
# ~0.1 ms of work, less than a round trip through a worker thread on a busy machine.
_INLINE_CHARACTERS = 4096


def input_texts(value: str | list[Any], max_inputs: int, name: str = "input") -> list[Any]:
    """The request's inputs as a list; ``{"text": ...}`` objects unwrapped. Item types and
    empty strings are checked by the core, as for ``Embedder.encode``."""
    items: list[Any] = [value] if isinstance(value, str) else list(value)
    if not items:
        raise ApiError(
            400, f"{name} is empty: give a string or a non-empty list", ErrorCode.EMPTY_INPUT
        )
    if len(items) > max_inputs:
        raise ApiError(
            400,
            f"{name} has {len(items)} items, over this server's limit of {max_inputs} per "
            "request; split it into several requests",
            ErrorCode.TOO_MANY_INPUTS,
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
                    ErrorCode.INVALID_INPUT,
                    param=f"{name}[{i}]",
                )
            item = item["text"]
        if isinstance(item, str):
            check_surrogates(item, f"{name}[{i}]")
        texts.append(item)
    return texts


def check_surrogates(text: str, where: str) -> None:
    """A lone UTF-16 surrogate (JSON allows ``"\\ud800"``) is no character: a 400 naming
    where, before the tokenizer sees it."""
    found = _SURROGATE.search(text)
    if found is not None:
        raise ApiError(
            400,
            f"{where} has a lone UTF-16 surrogate (U+{ord(found.group()):04X}) at character "
            f"{found.start()}; send valid Unicode text",
            ErrorCode.INVALID_TEXT,
            param=where,
        )


def input_token_ids(value: str | list[Any], max_inputs: int) -> list[list[int]] | None:
    """The inputs as token-id sequences when the request gives ids (``[101, 2023, ...]``
    or ``[[101, 2023, ...], ...]``, as OpenAI's, TEI's and vLLM's APIs take), else None."""
    if isinstance(value, str) or not value:
        return None
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [value]
    if not any(isinstance(item, list) for item in value):
        return None
    if len(value) > max_inputs:
        input_texts(value, max_inputs)  # the too_many_inputs error
    for i, item in enumerate(value):
        if not isinstance(item, list) or not all(
            isinstance(token, int) and not isinstance(token, bool) for token in item
        ):
            raise ApiError(
                400,
                f"input[{i}] is not a list of token ids; give strings, or lists of ints "
                "(token ids of this model's tokenizer), not a mix",
                ErrorCode.INVALID_TYPE,
                param=f"input[{i}]",
            )
    return value


def _as_api_error(error: Exception) -> ApiError:
    """A core error about the request (raised before anything is queued) as a 400."""
    if isinstance(error, TokenLimitError):
        return ApiError(
            400,
            str(error).replace("truncate=True", '"truncate": true'),
            ErrorCode.TOKEN_LIMIT,
            param=f"input[{error.index}]",
            extra={
                "index": error.index,
                "token_count": error.token_count,
                "max_tokens": error.max_tokens,
            },
        )
    if isinstance(error, UnsupportedModelError):
        return ApiError(400, str(error), ErrorCode.UNSUPPORTED)
    if isinstance(error, TypeError):
        return ApiError(400, str(error), ErrorCode.INVALID_TYPE)
    return ApiError(400, str(error), ErrorCode.INVALID_VALUE)


def characters_of(texts: Sequence[Any]) -> int:
    return sum(len(text) for text in texts if isinstance(text, str))


async def run_work(
    state: ServerState,
    request: Request,
    work: Callable[[], Any],
    characters: int,
    pool: ThreadPoolExecutor | None,
) -> Any:
    """Run ``work`` (tokenization and checks, maybe queueing): on the event loop for a
    small request (tokenizing a few thousand characters takes less than handing them to a
    thread), else on the tokenizer pool, so the loop stays free and at most the pool's
    workers tokenize at once. A request whose client leaves (or that reaches the drain
    deadline) while it waits for a worker is dropped before it is tokenized. Its
    ValueError/TypeError are the request's fault (400); a full queue is a 429."""
    try:
        if pool is None or characters <= _INLINE_CHARACTERS:
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
            ErrorCode.QUEUE_FULL,
            headers={"Retry-After": state.retry_after()},
        ) from None
    except SchedulerClosedError:
        raise ApiError(503, "the server is shutting down", ErrorCode.SHUTTING_DOWN) from None
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
        raise ClientGone
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
        ErrorCode.SHUTTING_DOWN,
        headers={"Connection": "close"},
    )


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects (the body was already read)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def await_result(
    state: ServerState, pending: PendingEmbeddings[Any], request: Request
) -> Any:
    """The pending request's result; if the client disconnects first (``ClientGone``), or
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


def json_response(content: Any) -> Response:
    return Response(
        orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), media_type=JSON_MEDIA_TYPE
    )
