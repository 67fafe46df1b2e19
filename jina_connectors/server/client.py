"""The server's clients: ``RemoteEmbedder``, the embedder surface of
``embedder_core.Embedder`` served by a ``jina-connectors serve`` server over HTTP, and
``RemoteReranker`` (``rerank_client``; it loads on first use, since the reranker base class
imports torch and this module does not).

``embedder_core.get_embedder("http://host:8080")`` (or ``JINA_CONNECTORS_MODEL=http://...``)
returns one, through the ``embedder_core.backends`` entry point this package declares, so
the LlamaIndex and Haystack classes, ``ingest``, the sinks' ``search`` and the CLI's
``--model`` work against a server unchanged.

- ``encode`` posts to the standard ``/v1/embeddings`` route, so it also works against the
  hosted Jina API (``RemoteEmbedder("https://api.jina.ai", api_key=..., model=
  "jina-embeddings-v3")``).
- The model's description (``dimension``, ``tasks``, ``max_tokens``...) and the
  document-level calls (``count_tokens``, ``chunk``, ``embed_spans``, ``embed_documents``)
  use extension routes of our server (``/v1/x/...``). Against a server without them they
  raise ``ExtensionUnavailableError``.
- Bad input raises what ``Embedder`` raises (``ValueError``, ``TypeError``,
  ``TokenLimitError``, ``UnsupportedModelError``), with the server's message.
- 429 (after ``Retry-After``, with jitter), 5xx, connection failures and read timeouts are
  retried (tenacity) for up to ``retry_budget`` seconds. Embedding is idempotent, and the
  server drops the work of a client that went away, so a retried request is not computed
  twice. A request the server says can never fit its queue (or a 413 on several inputs) is
  split and its parts sent apart. Other HTTP failures raise ``ServerError``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import numpy as np
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from embedder_core import (
    DocumentChunk,
    EmbeddingType,
    LateChunkingOptions,
    ModelInfo,
)
from embedder_core.chunking import Chunker, Span, check_spans
from embedder_core.output import check_embedding_type, convert_embeddings, document_chunks

from .wire import (
    API_KEY_ENV_VAR,
    ROW_DTYPES,
    AuthenticationError,
    ErrorCode,
    ExtensionUnavailableError,
    ServerError,
    client_error,
    decode_base64_rows,
    late_chunking_options_body,
)

if TYPE_CHECKING:
    from .rerank_client import RemoteReranker

__all__ = [
    "API_KEY_ENV_VAR",
    "AuthenticationError",
    "ExtensionUnavailableError",
    "RemoteEmbedder",
    "RemoteReranker",
    "ServerError",
]

# The logger's name from before the move, so logging set up for it keeps working.
_log = logging.getLogger("jina_connectors.remote")

_MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is capped
#: Seconds ``RemoteEmbedder`` keeps retrying a refused or failed request by default.
DEFAULT_RETRY_BUDGET = 120.0
# A read timeout already waited ``timeout`` seconds: it is retried this many times, even
# past the retry budget (a busy server may answer the second time).
_TIMEOUT_RETRIES = 1
# Failures retried this many times at most, whatever the budget: a 500 (a bug in the server
# is rarely transient), and connection failures before the server ever answered (a wrong
# URL more likely than a restart).
_FEW_RETRIES = 5
# A request the queue can never hold is cut into parts of about this share of the queue
# limit, so that several can wait in it at once.
_QUEUE_SHARE = 0.5
# The queue-full message of our server: "... N more would pass the limit of L ...".
_QUEUE_NUMBERS = re.compile(r"(\d+) more would pass the limit of (\d+)")
# Request limits assumed for a server that does not describe its own (the hosted APIs').
_DEFAULT_MAX_INPUTS = 2048
_DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024


class _Retryable(Exception):
    """A response worth retrying (429, 5xx); carries its Retry-After, if any."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.retry_after = _retry_after(response)


class _NeverFits(Exception):
    """The server refused a request of several inputs for its size (a 413, or a 429 whose
    tokens pass the whole queue limit): send it in ``parts`` parts instead."""

    def __init__(self, response: httpx.Response, parts: int) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.parts = parts


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


_backoff = wait_exponential_jitter(initial=0.25, max=10.0)


def _wait(state: RetryCallState) -> float:
    """The server's Retry-After when it sent one, else exponential backoff; jittered both
    ways, so clients refused together do not come back together."""
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, _Retryable) and error.retry_after is not None:
        return max(error.retry_after, 0.25) * random.uniform(1.0, 1.5)
    return float(_backoff(state))


def _is_timeout(error: BaseException | None) -> bool:
    """A read or write timeout: the server took the request but did not answer in time."""
    return isinstance(error, (httpx.ReadTimeout, httpx.WriteTimeout))


def _should_retry(error: BaseException) -> bool:
    return isinstance(error, (_Retryable, httpx.TransportError))


def _error_fields(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an error body (empty when the body is not one)."""
    try:
        error = response.json().get("error") or {}
    except (ValueError, AttributeError):
        return {}
    return error if isinstance(error, dict) else {"message": str(error)}


def _queue_parts(response: httpx.Response) -> int | None:
    """For a 429 ``queue_full``: how many parts the request must be cut into for each to
    fit well within the queue limit; None when it fits as it is (the queue is just busy)."""
    error = _error_fields(response)
    if error.get("code") != ErrorCode.QUEUE_FULL:
        return None
    tokens, limit = error.get("request_tokens"), error.get("max_queued_tokens")
    if not (isinstance(tokens, int) and isinstance(limit, int)):
        found = _QUEUE_NUMBERS.search(str(error.get("message", "")))
        if found is None:
            return None
        tokens, limit = int(found[1]), int(found[2])
    if tokens <= limit * _QUEUE_SHARE:
        return None
    return max(2, math.ceil(tokens / max(limit * _QUEUE_SHARE, 1)))


class _Described:
    """A ``RemoteEmbedder`` attribute read from the served model's ``ModelInfo``."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, embedder: RemoteEmbedder | None, owner: type | None = None) -> Any:
        if embedder is None:
            return self
        return getattr(embedder.info, self.name)


class RemoteEmbedder:
    """An embedder whose model runs in a ``jina-connectors serve`` server.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8080`` (a trailing ``/v1`` is
            accepted).
        api_key: sent as ``Authorization: Bearer``; None: ``$JINA_CONNECTORS_API_KEY``.
        model: the ``model`` field of every request; None lets the server use its model.
        timeout: seconds to wait for one response (a long document can take a while).
        retry_budget: seconds from a request's first attempt during which a 429, a 5xx, a
            connection failure or a read timeout is retried (a read timeout at least once; a
            500, or a server that never answered yet, 5 times at most).
        retries: at most this many retries as well; None: as many as the budget allows.
        transport: an ``httpx`` transport, for tests and custom networking.

    Thread-safe: one connection pool is shared by every caller. The model's description
    is fetched once, on first use.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 300.0,
        retry_budget: float = DEFAULT_RETRY_BUDGET,
        retries: int | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
        if retries is not None and (
            isinstance(retries, bool) or not isinstance(retries, int) or retries < 0
        ):
            raise ValueError(f"retries must be a non-negative int or None, got {retries!r}")
        for name, value in (("timeout", timeout), ("retry_budget", retry_budget)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be a number of seconds, got {value!r}")
        if timeout == 0:
            raise ValueError("timeout must be a positive number of seconds, got 0")
        path = parts.path.rstrip("/").removesuffix("/v1")
        self.base_url = f"{parts.scheme}://{parts.netloc}{path}"
        self.model = model
        self.timeout = float(timeout)
        self.retry_budget = float(retry_budget)
        self.retries = retries
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV_VAR)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )
        self._info: ModelInfo | None = None
        self._server_limits: tuple[int, int, int | None] | None = None
        self._info_lock = threading.Lock()
        self._limits: tuple[int, int, int | None] | None = None
        # Tokens the server counted (``usage``) and the bytes of input they came from: size
        # requests by tokens when the server advertises its queue limit.
        self._usage = [0, 0]
        self._reached = False  # some answer came from the server (see _FEW_RETRIES)

    def __repr__(self) -> str:
        return f"RemoteEmbedder({self.base_url!r}, model={self.model!r})"

    @staticmethod
    def reranker_backend(base_url: str, **options: Any) -> Any:
        """``embedder_core.get_reranker(url)``'s backend: a ``RemoteReranker``."""
        from .rerank_client import RemoteReranker

        return RemoteReranker(base_url, **options)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> RemoteEmbedder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ HTTP
    def _request(
        self, method: str, path: str, json: Any = None, *, splittable: bool = False
    ) -> Any:
        """The decoded JSON answer; retries 429/5xx/connection failures and timeouts within
        the retry budget, maps errors. ``splittable``: the request holds several inputs, and
        a refusal for its size raises ``_NeverFits`` instead of an error."""
        timeouts = few = 0

        def stop(state: RetryCallState) -> bool:
            nonlocal timeouts, few
            if self.retries is not None and state.attempt_number > self.retries:
                return True
            error = state.outcome.exception() if state.outcome is not None else None
            if _is_timeout(error):
                timeouts += 1
                if timeouts <= _TIMEOUT_RETRIES:
                    return False
            elif (isinstance(error, _Retryable) and error.response.status_code == 500) or (
                isinstance(error, httpx.TransportError) and not self._reached
            ):
                few += 1
                if few > _FEW_RETRIES:
                    return True
            return (state.seconds_since_start or 0.0) >= self.retry_budget

        def wait(state: RetryCallState) -> float:  # never sleep past the budget's end
            left = self.retry_budget - (state.seconds_since_start or 0.0)
            return max(0.0, min(_wait(state), left)) if left > 0 else _wait(state)

        def report(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            what = (
                f"answered {error.response.status_code}"
                if isinstance(error, _Retryable)
                else f"failed ({type(error).__name__})"
            )
            sleep = state.next_action.sleep if state.next_action is not None else 0.0
            _log.info("%s%s %s; retrying in %.1f s", self.base_url, path, what, sleep)

        started = time.monotonic()
        retrying = Retrying(
            retry=retry_if_exception(_should_retry),
            stop=stop,
            wait=wait,
            before_sleep=report,
            reraise=True,
        )
        try:
            response = retrying(self._send, method, path, json, splittable)
        except _Retryable as error:  # retries spent: report the last answer
            failure = self._error(error.response, path)
            attempts = retrying.statistics.get("attempt_number", 1)
            failure.args = (
                f"{failure} (still refused after {attempts} attempts over "
                f"{time.monotonic() - started:.1f} s; retry_budget={self.retry_budget:g})",
            )
            raise failure from None
        except httpx.TransportError as error:
            raise self._transport_error(error, retrying, started) from error
        if not response.is_success:
            raise self._error(response, path)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise ServerError(
                f"{self.base_url}{path} answered {response.status_code} with a body that is "
                f"not a JSON object ({response.headers.get('content-type', 'no content type')}"
                f"): {response.text[:200]!r}; is {self.base_url} an embedding server?",
                status=response.status_code,
            )
        return answer

    def _transport_error(
        self, error: httpx.TransportError, retrying: Retrying, started: float
    ) -> ServerError:
        attempts = retrying.statistics.get("attempt_number", 1)
        tried = f"{attempts} attempt{'s' * (attempts > 1)} over {time.monotonic() - started:.1f} s"
        if _is_timeout(error):
            return ServerError(
                f"the embedding server at {self.base_url} took the request but did not "
                f"answer within timeout={self.timeout:g} s ({tried}); it may be busy: "
                "raise timeout= or send fewer texts at once",
                status=0,
            )
        return ServerError(
            f"cannot reach the embedding server at {self.base_url} "
            f"({type(error).__name__}: {error}; {tried})",
            status=0,
        )

    def _send(self, method: str, path: str, json: Any, splittable: bool) -> httpx.Response:
        response = self._client.request(method, path, json=json)
        self._reached = True
        status = response.status_code
        if splittable and status == 413:
            raise _NeverFits(response, 2)
        if status == 429:
            parts = _queue_parts(response) if splittable else None
            if parts is not None:
                raise _NeverFits(response, parts)
        if status == 429 or status >= 500:
            raise _Retryable(response)
        return response

    def _split(self, indices: list[int], send: Callable[[list[int]], list[Any]]) -> list[Any]:
        """``send(indices)`` (a list, one item per index); when the server refuses it for
        its size, the same in parts, each split again if need be."""
        try:
            return send(indices)
        except _NeverFits as refused:
            if len(indices) < 2:  # cannot happen: one input is not splittable
                raise self._error(refused.response, "") from None
            parts = min(refused.parts, len(indices))
            out: list[Any] = []
            for k in range(parts):
                piece = indices[k * len(indices) // parts : (k + 1) * len(indices) // parts]
                out += self._split(piece, send)
            return out

    def _error(self, response: httpx.Response, path: str) -> Exception:
        error = _error_fields(response)
        message = str(error.get("message") or response.text[:500] or response.reason_phrase)
        return client_error(response.status_code, error, message, base_url=self.base_url, path=path)

    def _body(self, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None}
        if self.model is not None:
            body["model"] = self.model
        return body

    # --------------------------------------------------------------- introspection
    @property
    def info(self) -> ModelInfo:
        """The served model's description (``/v1/x/model``, fetched once)."""
        if self._info is None:
            with self._info_lock:
                if self._info is None:
                    answer = self._request("GET", "/v1/x/model")
                    self._server_limits = (
                        int(answer["max_inputs"]),
                        int(answer.get("max_request_bytes") or answer["max_body_bytes"]),
                        _optional_int(answer.get("max_queued_tokens")),
                    )
                    self._info = ModelInfo.from_json(answer)
        return self._info

    def _parts(self, sizes: Sequence[int]) -> list[range]:
        """Index ranges of items with these JSON sizes, each range one request within the
        server's input count and body size limits, and within a share of its queue's token
        limit as far as the tokens per byte seen so far tell (one item past them goes alone)."""
        if self._limits is None:
            try:
                self.info  # noqa: B018 - reads the server's limits with the description
                assert self._server_limits is not None
                max_inputs, max_request_bytes, queued = self._server_limits
                self._limits = (
                    max_inputs,
                    max_request_bytes,
                    max(int(queued * _QUEUE_SHARE), 1) if queued else None,
                )
            except ExtensionUnavailableError:
                self._limits = (_DEFAULT_MAX_INPUTS, _DEFAULT_MAX_REQUEST_BYTES, None)
        max_inputs, max_bytes, max_tokens = self._limits
        budget = max(max_bytes - 65536, max_bytes // 2)  # room for the other fields
        tokens, sent = self._usage
        if max_tokens is not None and tokens > 0:
            budget = min(budget, max(max_tokens * sent // tokens, 1))
        parts: list[range] = []
        start = used = 0
        for i, size in enumerate(sizes):
            if i > start and (i - start >= max_inputs or used + size > budget):
                parts.append(range(start, i))
                start, used = i, 0
            used += size
        parts.append(range(start, len(sizes)))
        return parts

    def _count_usage(self, answer: dict[str, Any], sizes: Sequence[int]) -> None:
        """Learn tokens per byte from an answer's ``usage`` (for ``_parts``)."""
        usage = answer.get("usage")
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        if isinstance(tokens, int) and tokens > 0:
            self._usage = [self._usage[0] + tokens, self._usage[1] + sum(sizes)]

    # What the server says of its model (``info``): the names ``Embedder`` has.
    model_name = _Described()
    dimension = _Described()
    max_tokens = _Described()
    tasks = _Described()
    has_adapters = _Described()
    pooling = _Described()
    supports_late_chunking = _Described()

    def instruction(self, task: str | None) -> str:
        """The text the server prepends to inputs of ``task``."""
        return self.info.instruction(task)

    def count_tokens(self, texts: str | Sequence[str], task: str | None = None) -> list[int]:
        """Tokens each text takes on the server's model (``/v1/x/count-tokens``)."""
        items = _text_list(texts)
        if not items:
            if task is not None:
                self.info.check_task(task)
            return []

        def send(indices: list[int]) -> list[int]:
            body = self._body(input=[items[i] for i in indices], task=task)
            answer = self._request("POST", "/v1/x/count-tokens", body, splittable=len(indices) > 1)
            return [int(n) for n in _field(answer, "tokens", list)]

        counts: list[int] = []
        for part in self._parts(_json_sizes(items)):
            counts += self._split(list(part), send)
        return counts

    # ----------------------------------------------------------------------- encode
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        task: str | Sequence[str | None] | None = None,
        dimensions: int | None = None,
        late_chunking: bool = False,
        late_chunking_options: LateChunkingOptions | None = None,
        normalized: bool = True,
        embedding_type: EmbeddingType = "float",
        truncate: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray:
        """``Embedder.encode`` on the server (``POST /v1/embeddings``); same results.

        Float rows travel as base64 float32, exactly. A list of tasks (one per text) is sent
        as one request per distinct task; many texts as several requests within the server's
        limits (``late_chunking`` pieces, one document, as one). ``show_progress`` is
        accepted and ignored.
        """
        items = _text_list(texts)
        check_embedding_type(embedding_type)  # base64 warns: the wire's, not encode's
        if late_chunking_options is not None and not isinstance(
            late_chunking_options, LateChunkingOptions
        ):
            raise TypeError(
                "late_chunking_options must be an embedder_core.LateChunkingOptions or None, "
                f"got {type(late_chunking_options).__name__}"
            )
        tasks = ModelInfo.check_tasks(task, len(items))
        if not items:  # nothing to send: check the options here, as the core does
            for name in [task] if task is None or isinstance(task, str) else tasks:
                if name is not None:
                    self.info.check_task(name)
            width = self.info.check_dimensions(dimensions)
            if embedding_type == "base64":
                return []
            return convert_embeddings(np.zeros((0, width), np.float32), embedding_type)
        if late_chunking and len(set(tasks)) > 1:
            raise ValueError("late_chunking encodes one document: give one task for all pieces")
        wire_type = "base64" if embedding_type == "float" else embedding_type
        groups: dict[str | None, list[int]] = {}
        for i, name in enumerate(tasks):
            groups.setdefault(name, []).append(i)
        sizes = _json_sizes(items)
        requests: list[tuple[str | None, list[int]]] = []
        for name, indices in groups.items():
            if late_chunking:  # one document: one request
                requests.append((name, indices))
                continue
            for part in self._parts([sizes[i] for i in indices]):
                requests.append((name, indices[part.start : part.stop]))

        def send(name: str | None, indices: list[int]) -> list[Any]:
            body = self._body(
                input=[items[i] for i in indices],
                task=name,
                dimensions=dimensions,
                late_chunking=late_chunking or None,
                late_chunking_options=late_chunking_options_body(late_chunking_options),
                normalized=normalized,
                embedding_type=wire_type,
                truncate=truncate,
            )
            splittable = len(indices) > 1 and not late_chunking
            answer = self._request("POST", "/v1/embeddings", body, splittable=splittable)
            data = sorted(_field(answer, "data", list), key=lambda item: item["index"])
            if len(data) != len(indices):
                raise ServerError(
                    f"the server returned {len(data)} embeddings for {len(indices)} inputs",
                    status=200,
                )
            self._count_usage(answer, [sizes[i] for i in indices])
            return [item["embedding"] for item in data]

        rows: list[Any] = [None] * len(items)
        for name, indices in requests:
            embedded = self._split(indices, lambda part, name=name: send(name, part))
            for i, row in zip(indices, embedded):
                rows[i] = row
        if embedding_type == "base64":
            return [str(row) for row in rows]
        if embedding_type == "float":
            return decode_base64_rows(rows)
        return np.asarray(rows, dtype=ROW_DTYPES[embedding_type])

    # ----------------------------------------------------------- document-level calls
    def chunk(
        self, texts: str | Sequence[str], *, chunker: Chunker = "sentences", chunk_size: int = 256
    ) -> list[list[Span]]:
        """Character spans of each text's chunks, in the server model's tokens
        (``/v1/x/chunk``). A callable ``chunker`` runs here, on each text."""
        items = _text_list(texts)
        if callable(chunker):
            return [check_spans(text, chunker(text)) for text in items]
        if not items:
            return []

        def send(indices: list[int]) -> list[list[Span]]:
            body = self._body(
                input=[items[i] for i in indices], chunker=chunker, chunk_size=chunk_size
            )
            answer = self._request("POST", "/v1/x/chunk", body, splittable=len(indices) > 1)
            return [[(int(a), int(b)) for a, b in doc] for doc in _field(answer, "spans", list)]

        spans: list[list[Span]] = []
        for part in self._parts(_json_sizes(items)):
            spans += self._split(list(part), send)
        return spans

    def embed_spans(
        self,
        documents: Sequence[tuple[str, Sequence[Span]]],
        *,
        task: str | None = "retrieval.passage",
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
        show_progress: bool = False,
    ) -> list[np.ndarray]:
        """``Embedder.embed_spans`` on the server (``/v1/x/embed-spans``); float32 rows."""
        if not documents:
            return []
        _text_list([text for text, _ in documents], "document")
        wire = [
            {"text": text, "spans": [[int(a), int(b)] for a, b in spans]}
            for text, spans in documents
        ]
        sizes = _json_sizes(wire)
        width = dimensions or self.dimension

        def send(indices: list[int]) -> list[np.ndarray]:
            body = self._body(
                documents=[wire[i] for i in indices],
                task=task,
                dimensions=dimensions,
                normalized=normalized,
                late_chunking_options=late_chunking_options_body(late_chunking_options),
                embedding_type="base64",
            )
            if task is None:
                body["task"] = None  # the route's default is retrieval.passage: say "no task"
            answer = self._request("POST", "/v1/x/embed-spans", body, splittable=len(indices) > 1)
            self._count_usage(answer, [sizes[i] for i in indices])
            out = []
            for item in sorted(_field(answer, "data", list), key=lambda item: item["index"]):
                rows = item["embeddings"]
                out.append(decode_base64_rows(rows, width=width))
            return out

        vectors: list[np.ndarray] = []
        for part in self._parts(sizes):
            vectors += self._split(list(part), send)
        return vectors

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        task: str | None = "retrieval.passage",
        chunker: Chunker = "sentences",
        chunk_size: int = 256,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
        show_progress: bool = False,
    ) -> list[list[DocumentChunk]]:
        """``Embedder.embed_documents``: ``chunk``, then ``embed_spans`` over those chunks
        (what the core does in one process; the vectors are the same)."""
        items = _text_list(texts)
        spans = self.chunk(items, chunker=chunker, chunk_size=chunk_size)
        vectors = self.embed_spans(
            list(zip(items, spans)),
            task=task,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking_options=late_chunking_options,
        )
        return document_chunks(items, spans, vectors)

    def embed_document(
        self,
        text: str,
        *,
        task: str | None = "retrieval.passage",
        chunker: Chunker = "sentences",
        chunk_size: int = 256,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
    ) -> list[DocumentChunk]:
        """Split one document into chunks and late-chunk it."""
        return self.embed_documents(
            [text],
            task=task,
            chunker=chunker,
            chunk_size=chunk_size,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking_options=late_chunking_options,
        )[0]


def _text_list(texts: str | Sequence[str], kind: str = "input") -> list[str]:
    if isinstance(texts, str):
        texts = [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, (Sequence, np.ndarray)):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):  # only strings travel as JSON; the server checks the rest
        if not isinstance(text, str):
            raise TypeError(f"{kind} {i} is {type(text).__name__}, not str")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as error:  # a lone surrogate: no UTF-8 (nor JSON) for it
            raise ValueError(
                f"{kind} {i} has a lone UTF-16 surrogate (U+{ord(text[error.start]):04X}) at "
                f"character {error.start}; send valid Unicode text (a source decoded with "
                "errors='surrogateescape' leaves them: decode it with errors='replace')"
            ) from None
    return items


def _field(answer: dict[str, Any], name: str, kind: type) -> Any:
    """A field of a 200 answer, or a ServerError saying the answer is not what it should be."""
    value = answer.get(name)
    if not isinstance(value, kind):
        raise ServerError(
            f"the server's answer has no {name!r} {kind.__name__}: is it an embedding server?",
            status=200,
        )
    return value


def _optional_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _json_sizes(items: Sequence[Any]) -> list[int]:
    """Bytes each item takes in a request body (as httpx encodes JSON: UTF-8, compact)."""
    return [
        len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        for item in items
    ]


def __getattr__(name: str) -> Any:
    if name == "RemoteReranker":  # its base class imports torch: only when asked for
        from .rerank_client import RemoteReranker

        return RemoteReranker
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
