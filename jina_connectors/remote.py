"""``RemoteEmbedder``: the embedder surface of ``embedder_core.Embedder``, served by a
``jina-connectors serve`` server over HTTP.

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
- 429 (honouring ``Retry-After``), 5xx and connection failures are retried (tenacity, with
  exponential backoff), ``retries`` times. Other HTTP failures raise ``ServerError``.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload
from urllib.parse import urlsplit

import httpx
import numpy as np
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from embedder_core import (
    EMBEDDING_TYPES,
    ArrayEmbeddingType,
    DocumentChunk,
    LateChunkingOptions,
    ModelNotFoundError,
    TokenLimitError,
    UnsupportedModelError,
    convert_embeddings,
)
from embedder_core.chunking import Chunker, Span, check_spans
from embedder_core.output import document_chunks

__all__ = [
    "API_KEY_ENV_VAR",
    "AuthenticationError",
    "ExtensionUnavailableError",
    "RemoteEmbedder",
    "ServerError",
]

#: Environment variable with the API key ``RemoteEmbedder`` sends when none is given.
API_KEY_ENV_VAR = "JINA_CONNECTORS_API_KEY"
_MAX_RETRY_AFTER = 60.0  # seconds; a longer Retry-After is capped
# Request limits assumed for a server that does not describe its own (the hosted APIs').
_DEFAULT_MAX_INPUTS = 2048
_DEFAULT_MAX_REQUEST_BYTES = 16 * 1024 * 1024


class ServerError(RuntimeError):
    """The server answered with an error that is not about the request's content, or
    kept failing (429, 5xx) after the retries. ``status``, ``type`` and ``code`` are the
    server's."""

    def __init__(
        self, message: str, *, status: int, type: str | None = None, code: Any = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.code = code


class AuthenticationError(ServerError, PermissionError):
    """401: the server wants an API key (``api_key=`` or ``$JINA_CONNECTORS_API_KEY``)."""


class ExtensionUnavailableError(ServerError, NotImplementedError):
    """The server lacks a ``jina-connectors serve`` extension route that this call needs
    (``count_tokens``, ``chunk``, ``embed_spans``, ``embed_documents``, the model's
    description); ``encode`` works against any ``/v1/embeddings`` server."""


class _Retryable(Exception):
    """A response worth retrying (429, 5xx); carries its Retry-After, if any."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response
        self.retry_after = _retry_after(response)


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
    """The server's Retry-After when it sent one, else exponential backoff with jitter."""
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, _Retryable) and error.retry_after is not None:
        return error.retry_after
    return float(_backoff(state))


def _should_retry(error: BaseException) -> bool:
    if isinstance(error, _Retryable):
        return True
    # Connection failures are retried; a read or write timeout is not (the server may be
    # computing the request: sending it again would double the work).
    return isinstance(error, httpx.TransportError) and not isinstance(
        error, (httpx.ReadTimeout, httpx.WriteTimeout)
    )


@dataclass(frozen=True)
class _ModelInfo:
    model_name: str
    dimension: int
    max_tokens: int
    tasks: tuple[str, ...]
    instructions: dict[str, str]
    default_instruction: str
    has_adapters: bool
    pooling: str
    supports_late_chunking: bool
    max_inputs: int
    max_request_bytes: int


class RemoteEmbedder:
    """An embedder whose model runs in a ``jina-connectors serve`` server.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8080`` (a trailing ``/v1`` is
            accepted).
        api_key: sent as ``Authorization: Bearer``; None: ``$JINA_CONNECTORS_API_KEY``.
        model: the ``model`` field of every request; None lets the server use its model.
        timeout: seconds to wait for one response (a long document can take a while).
        retries: how many times a request is retried after a 429, a 5xx or a connection
            failure (so ``retries + 1`` attempts at most).
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
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not isinstance(base_url, str):
            raise TypeError(f"base_url must be a str, got {type(base_url).__name__}")
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative int, got {retries!r}")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        path = parts.path.rstrip("/").removesuffix("/v1")
        self.base_url = f"{parts.scheme}://{parts.netloc}{path}"
        self.model = model
        self.retries = retries
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV_VAR)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )
        self._info: _ModelInfo | None = None
        self._info_lock = threading.Lock()
        self._limits: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"RemoteEmbedder({self.base_url!r}, model={self.model!r})"

    @staticmethod
    def reranker_backend(base_url: str, **options: Any) -> Any:
        """``embedder_core.get_reranker(url)``'s backend: a ``RemoteReranker``."""
        from .remote_reranker import RemoteReranker

        return RemoteReranker(base_url, **options)

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> RemoteEmbedder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------------ HTTP
    def _request(self, method: str, path: str, json: Any = None) -> Any:
        """The decoded JSON answer; retries 429/5xx/connection failures, maps errors."""

        retrying = Retrying(
            retry=retry_if_exception(_should_retry),
            stop=stop_after_attempt(self.retries + 1),
            wait=_wait,
            reraise=True,
        )
        try:
            response = retrying(self._send, method, path, json)
        except _Retryable as error:
            response = error.response  # retries spent: report the last answer
        except httpx.TransportError as error:
            raise ServerError(
                f"cannot reach the embedding server at {self.base_url} "
                f"({type(error).__name__}: {error})",
                status=0,
            ) from error
        if response.is_success:
            return response.json()
        raise self._error(response, path)

    def _send(self, method: str, path: str, json: Any) -> httpx.Response:
        response = self._client.request(method, path, json=json)
        if response.status_code == 429 or response.status_code >= 500:
            raise _Retryable(response)
        return response

    def _error(self, response: httpx.Response, path: str) -> Exception:
        status = response.status_code
        try:
            error = response.json().get("error") or {}
            if not isinstance(error, dict):
                error = {"message": str(error)}
        except (ValueError, AttributeError):
            error = {}
        message = str(error.get("message") or response.text[:500] or response.reason_phrase)
        kind, code = error.get("type"), error.get("code")
        if status in (400, 413, 422):  # about the request's content
            if code == "token_limit" and {"index", "token_count", "max_tokens"} <= set(error):
                return TokenLimitError(error["index"], error["token_count"], error["max_tokens"])
            if code == "unsupported":
                return UnsupportedModelError(message)
            if code == "invalid_type":
                return TypeError(message)
            return ValueError(message)
        if status == 401:
            return AuthenticationError(
                f"{self.base_url} refused the API key: {message} (pass api_key= or set "
                f"${API_KEY_ENV_VAR})",
                status=status,
                type=kind,
                code=code,
            )
        if status == 404 and code == "model_not_found":
            return ModelNotFoundError(message)
        if status in (404, 405) and path.startswith("/v1/x/"):
            return ExtensionUnavailableError(
                f"the server at {self.base_url} has no {path} route: this call needs a "
                "`jina-connectors serve` server (encode works against any /v1/embeddings "
                "server)",
                status=status,
                type=kind,
                code=code,
            )
        return ServerError(
            f"{self.base_url}{path} answered {status}: {message}",
            status=status,
            type=kind,
            code=code,
        )

    def _body(self, **fields: Any) -> dict[str, Any]:
        body = {k: v for k, v in fields.items() if v is not None}
        if self.model is not None:
            body["model"] = self.model
        return body

    # --------------------------------------------------------------- introspection
    def _model_info(self) -> _ModelInfo:
        if self._info is None:
            with self._info_lock:
                if self._info is None:
                    info = self._request("GET", "/v1/x/model")
                    self._info = _ModelInfo(
                        model_name=info["model_name"],
                        dimension=int(info["dimension"]),
                        max_tokens=int(info["max_tokens"]),
                        tasks=tuple(info["tasks"]),
                        instructions=dict(info["instructions"]),
                        default_instruction=info["default_instruction"],
                        has_adapters=bool(info["has_adapters"]),
                        pooling=info["pooling"],
                        supports_late_chunking=bool(info["supports_late_chunking"]),
                        max_inputs=int(info["max_inputs"]),
                        max_request_bytes=int(info["max_request_bytes"]),
                    )
        return self._info

    def _parts(self, sizes: Sequence[int]) -> list[range]:
        """Index ranges of items with these JSON sizes, each range one request within the
        server's input count and body size limits (a single item past them goes alone)."""
        if self._limits is None:
            try:
                info = self._model_info()
                self._limits = (info.max_inputs, info.max_request_bytes)
            except ExtensionUnavailableError:
                self._limits = (_DEFAULT_MAX_INPUTS, _DEFAULT_MAX_REQUEST_BYTES)
        max_inputs, max_bytes = self._limits
        budget = max(max_bytes - 65536, max_bytes // 2)  # room for the other fields
        parts: list[range] = []
        start = used = 0
        for i, size in enumerate(sizes):
            if i > start and (i - start >= max_inputs or used + size > budget):
                parts.append(range(start, i))
                start, used = i, 0
            used += size
        parts.append(range(start, len(sizes)))
        return parts

    @property
    def model_name(self) -> str:
        """The served model's canonical id (what collections record), as the server has it;
        so vectors from a server and from a local load of the same model match collections."""
        return self._model_info().model_name

    @property
    def dimension(self) -> int:
        return self._model_info().dimension

    @property
    def max_tokens(self) -> int:
        return self._model_info().max_tokens

    @property
    def tasks(self) -> tuple[str, ...]:
        return self._model_info().tasks

    @property
    def has_adapters(self) -> bool:
        return self._model_info().has_adapters

    @property
    def pooling(self) -> str:
        return self._model_info().pooling

    @property
    def supports_late_chunking(self) -> bool:
        return self._model_info().supports_late_chunking

    def instruction(self, task: str | None) -> str:
        """The text the server prepends to inputs of ``task``."""
        info = self._model_info()
        if task is None:
            return info.default_instruction
        self._check_task(task)
        return info.instructions[task]

    def count_tokens(self, texts: str | Sequence[str], task: str | None = None) -> list[int]:
        """Tokens each text takes on the server's model (``/v1/x/count-tokens``)."""
        items = _text_list(texts)
        if not items:
            if task is not None:
                self._check_task(task)
            return []
        counts: list[int] = []
        for part in self._parts(_json_sizes(items)):
            body = self._body(input=items[part.start : part.stop], task=task)
            counts += [int(n) for n in self._request("POST", "/v1/x/count-tokens", body)["tokens"]]
        return counts

    # ----------------------------------------------------------------------- encode
    @overload
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        task: str | Sequence[str | None] | None = ...,
        dimensions: int | None = ...,
        late_chunking: bool = ...,
        late_chunking_options: LateChunkingOptions | None = ...,
        normalized: bool = ...,
        embedding_type: ArrayEmbeddingType = ...,
        truncate: bool = ...,
        show_progress: bool = ...,
    ) -> np.ndarray: ...

    @overload
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        task: str | Sequence[str | None] | None = ...,
        dimensions: int | None = ...,
        late_chunking: bool = ...,
        late_chunking_options: LateChunkingOptions | None = ...,
        normalized: bool = ...,
        embedding_type: Literal["base64"],
        truncate: bool = ...,
        show_progress: bool = ...,
    ) -> list[str]: ...

    @overload
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        task: str | Sequence[str | None] | None = ...,
        dimensions: int | None = ...,
        late_chunking: bool = ...,
        late_chunking_options: LateChunkingOptions | None = ...,
        normalized: bool = ...,
        embedding_type: str,
        truncate: bool = ...,
        show_progress: bool = ...,
    ) -> np.ndarray | list[str]: ...

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        task: str | Sequence[str | None] | None = None,
        dimensions: int | None = None,
        late_chunking: bool = False,
        late_chunking_options: LateChunkingOptions | None = None,
        normalized: bool = True,
        embedding_type: str = "float",
        truncate: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray | list[str]:
        """``Embedder.encode`` on the server (``POST /v1/embeddings``); same results.

        Float rows travel as base64 float32, exactly. A list of tasks (one per text) is sent
        as one request per distinct task; many texts as several requests within the server's
        limits (``late_chunking`` pieces, one document, as one). ``show_progress`` is
        accepted and ignored.
        """
        items = _text_list(texts)
        if embedding_type not in EMBEDDING_TYPES:
            raise ValueError(
                f"unknown embedding_type {embedding_type!r}; "
                f"expected one of {', '.join(EMBEDDING_TYPES)}"
            )
        if late_chunking_options is not None and not isinstance(
            late_chunking_options, LateChunkingOptions
        ):
            raise TypeError(
                "late_chunking_options must be an embedder_core.LateChunkingOptions or None, "
                f"got {type(late_chunking_options).__name__}"
            )
        tasks = self._task_list(task, len(items))
        if not items:  # nothing to send: check the options here, as the core does
            for name in [task] if task is None or isinstance(task, str) else tasks:
                if name is not None:
                    self._check_task(name)
            width = self._check_dimensions(dimensions)
            return convert_embeddings(np.zeros((0, width), np.float32), embedding_type)
        if late_chunking and len(set(tasks)) > 1:
            raise ValueError("late_chunking encodes one document: give one task for all pieces")
        wire_type = "base64" if embedding_type == "float" else embedding_type
        groups: dict[str | None, list[int]] = {}
        for i, name in enumerate(tasks):
            groups.setdefault(name, []).append(i)
        requests: list[tuple[str | None, list[int]]] = []
        for name, indices in groups.items():
            if late_chunking:  # one document: one request
                requests.append((name, indices))
                continue
            for part in self._parts(_json_sizes([items[i] for i in indices])):
                requests.append((name, indices[part.start : part.stop]))
        rows: list[Any] = [None] * len(items)
        for name, indices in requests:
            body = self._body(
                input=[items[i] for i in indices],
                task=name,
                dimensions=dimensions,
                late_chunking=late_chunking or None,
                late_chunking_options=_options_body(late_chunking_options),
                normalized=normalized,
                embedding_type=wire_type,
                truncate=truncate,
            )
            answer = self._request("POST", "/v1/embeddings", body)
            data = sorted(answer["data"], key=lambda item: item["index"])
            if len(data) != len(indices):
                raise ServerError(
                    f"the server returned {len(data)} embeddings for {len(indices)} inputs",
                    status=200,
                )
            for i, item in zip(indices, data):
                rows[i] = item["embedding"]
        if embedding_type == "base64":
            return [str(row) for row in rows]
        if embedding_type == "float":
            return np.stack([_from_base64(row) for row in rows])
        dtype = np.int8 if embedding_type in ("binary", "int8") else np.uint8
        return np.asarray(rows, dtype=dtype)

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
        spans: list[list[Span]] = []
        for part in self._parts(_json_sizes(items)):
            body = self._body(
                input=items[part.start : part.stop], chunker=chunker, chunk_size=chunk_size
            )
            answer = self._request("POST", "/v1/x/chunk", body)
            spans += [[(int(a), int(b)) for a, b in doc] for doc in answer["spans"]]
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
        wire = [
            {"text": text, "spans": [[int(a), int(b)] for a, b in spans]}
            for text, spans in documents
        ]
        out: list[np.ndarray] = []
        for part in self._parts(_json_sizes(wire)):
            body = self._body(
                documents=wire[part.start : part.stop],
                task=task,
                dimensions=dimensions,
                normalized=normalized,
                late_chunking_options=_options_body(late_chunking_options),
                embedding_type="base64",
            )
            if task is None:
                body["task"] = None  # the route's default is retrieval.passage: say "no task"
            answer = self._request("POST", "/v1/x/embed-spans", body)
            for item in sorted(answer["data"], key=lambda item: item["index"]):
                rows = item["embeddings"]
                width = dimensions or self.dimension
                out.append(
                    np.stack([_from_base64(row) for row in rows])
                    if rows
                    else np.zeros((0, width), np.float32)
                )
        return out

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

    # ------------------------------------------------------------------- validation
    def _check_task(self, task: str) -> None:
        if not isinstance(task, str):
            raise TypeError(f"task must be a str or None, got {type(task).__name__}")
        if task not in self.tasks:
            raise ValueError(
                f"unknown task {task!r}; valid tasks: {', '.join(self.tasks)} (or None)"
            )

    def _task_list(self, task: str | Sequence[str | None] | None, count: int) -> list[str | None]:
        if task is None or isinstance(task, str):
            return [task] * count
        names = list(task)
        if len(names) != count:
            raise ValueError(f"got {len(names)} tasks for {count} texts; give one task per text")
        for name in names:
            if name is not None and not isinstance(name, str):
                raise TypeError(f"task must be a str or None, got {type(name).__name__}")
        return names

    def _check_dimensions(self, dimensions: int | None) -> int:
        if dimensions is None:
            return self.dimension
        if isinstance(dimensions, bool) or not isinstance(dimensions, (int, np.integer)):
            raise ValueError(f"dimensions must be an int, got {dimensions!r}")
        if not 1 <= dimensions <= self.dimension:
            raise ValueError(f"dimensions must be between 1 and {self.dimension}, got {dimensions}")
        return int(dimensions)


def _text_list(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, (Sequence, np.ndarray)):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):  # only strings travel as JSON; the server checks the rest
        if not isinstance(text, str):
            raise TypeError(f"input {i} is {type(text).__name__}, not str")
    return items


def _json_sizes(items: Sequence[Any]) -> list[int]:
    """Bytes each item takes in a request body (as httpx encodes JSON: UTF-8, compact)."""
    return [
        len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()) + 1
        for item in items
    ]


def _options_body(options: LateChunkingOptions | None) -> dict[str, Any] | None:
    if options is None:
        return None
    return {"window": options.window, "overlap": options.overlap}


def _from_base64(value: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(value), dtype="<f4").astype(np.float32)
