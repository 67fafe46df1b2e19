"""The wire contract between the embedding server and its clients, in one place.

Both ends import this module: the server builds its error bodies and base64 rows here, and
``RemoteEmbedder``/``RemoteReranker`` decode them and turn error codes into typed errors
here. It imports only the standard library and numpy, so a thin client pays for nothing else.

- Errors: every error body is ``{"detail": msg, "error": {"message", "type", "code",
  "param", ...}}``; ``code`` is an :class:`ErrorCode`, ``type`` follows from the status.
- Rows: ``base64`` is each row's little-endian bytes, base64-encoded (the OpenAI and Jina
  APIs' ``float32``; the same rule for the integer types, one byte per value).
- Bodies: the late-chunking options object both ends build, and the model description
  (``/v1/x/model``): ``ModelInfo.to_json()`` plus the server's names and limits.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import numpy as np

__all__ = [
    "API_KEY_ENV_VAR",
    "ERROR_TYPES",
    "ROW_DTYPES",
    "AuthenticationError",
    "ErrorCode",
    "ExtensionUnavailableError",
    "ServerError",
    "client_error",
    "decode_base64_rows",
    "encode_base64_rows",
    "error_body",
    "late_chunking_options_body",
    "model_description",
]

#: Environment variable with the API key a client sends when none is given.
API_KEY_ENV_VAR = "JINA_CONNECTORS_API_KEY"


class ErrorCode(str, Enum):
    """The ``error.code`` of every error the server answers (a client matches on these)."""

    # 400: the request's content
    EMPTY_INPUT = "empty_input"
    TOO_MANY_INPUTS = "too_many_inputs"
    INVALID_INPUT = "invalid_input"
    INVALID_TEXT = "invalid_text"
    INVALID_TYPE = "invalid_type"
    INVALID_VALUE = "invalid_value"
    TOKEN_LIMIT = "token_limit"
    UNSUPPORTED = "unsupported"
    TOO_MANY_SPANS = "too_many_spans"
    INVALID_SPAN = "invalid_span"
    INVALID_RERANK_INPUT = "invalid_rerank_input"
    # 400 before the app reads the request: the Host header, a malformed HTTP request
    INVALID_HOST = "invalid_host"
    INVALID_HTTP = "invalid_http"
    # 401
    INVALID_API_KEY = "invalid_api_key"
    # 404 / 405 / other HTTP errors of the framework
    MODEL_NOT_FOUND = "model_not_found"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"
    # 408 / 413 / 422 / 431
    REQUEST_TIMEOUT = "request_timeout"
    REQUEST_TOO_LARGE = "request_too_large"
    INVALID_REQUEST = "invalid_request"
    HEADERS_TOO_LARGE = "headers_too_large"
    # 429
    QUEUE_FULL = "queue_full"
    # 500 / 503
    INTERNAL_ERROR = "internal_error"
    MODEL_LOADING = "model_loading"
    MODEL_FAILED = "model_failed"
    SHUTTING_DOWN = "shutting_down"

    def __str__(self) -> str:
        return self.value


#: ``error.type`` by status (OpenAI's names); any other status is an invalid request.
ERROR_TYPES: Mapping[int, str] = {
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


def error_body(
    status: int,
    message: str,
    code: ErrorCode | int | None,
    param: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON object of an error answer (``extra``: more fields of ``error``)."""
    error: dict[str, Any] = {
        "message": message,
        "type": ERROR_TYPES.get(status, "invalid_request_error"),
        "code": code.value if isinstance(code, ErrorCode) else code,
        "param": param,
        **(extra or {}),
    }
    return {"detail": message, "error": error}


# ------------------------------------------------------------------------ client errors
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


# Statuses whose errors are about the request's content: raised as the core raises them.
_CONTENT_STATUSES = frozenset({400, 413, 422})
_EXTENSION_PREFIX = "/v1/x/"


def client_error(
    status: int, error: Mapping[str, Any], message: str, *, base_url: str, path: str
) -> Exception:
    """The typed error a client raises for an error answer: ``error`` is the body's
    ``error`` object (empty when the body is not one), ``message`` its text.

    Content errors (400, 413, 422) are what the core raises for the same input
    (``TokenLimitError``, ``UnsupportedModelError``, ``RerankInputError``, ``TypeError``,
    else ``ValueError``); 401 is ``AuthenticationError``; an unknown model is
    ``ModelNotFoundError``; a missing ``/v1/x/`` route ``ExtensionUnavailableError``;
    anything else ``ServerError``.
    """
    # The core's error classes; imported here so that this module stays numpy-only for
    # whoever imports the contract without calling a server.
    from embedder_core.errors import (
        ModelNotFoundError,
        RerankInputError,
        TokenLimitError,
        UnsupportedModelError,
    )

    kind, code = error.get("type"), error.get("code")
    if status in _CONTENT_STATUSES:
        if code == ErrorCode.TOKEN_LIMIT and {"index", "token_count", "max_tokens"} <= set(error):
            return TokenLimitError(error["index"], error["token_count"], error["max_tokens"])
        if code == ErrorCode.UNSUPPORTED:
            return UnsupportedModelError(message)
        if code == ErrorCode.INVALID_TYPE:
            return TypeError(message)
        if code == ErrorCode.INVALID_RERANK_INPUT:
            return RerankInputError(message)
        return ValueError(message)
    if status == 401:
        return AuthenticationError(
            f"{base_url} refused the API key: {message} (pass api_key= or set ${API_KEY_ENV_VAR})",
            status=status,
            type=kind,
            code=code,
        )
    if status == 404 and code == ErrorCode.MODEL_NOT_FOUND:
        return ModelNotFoundError(message)
    if status in (404, 405) and path.startswith(_EXTENSION_PREFIX):
        return ExtensionUnavailableError(
            f"the server at {base_url} has no {path} route: this call needs a "
            "`jina-connectors serve` server (encode works against any /v1/embeddings "
            "server)",
            status=status,
            type=kind,
            code=code,
        )
    return ServerError(
        f"{base_url}{path} answered {status}: {message}", status=status, type=kind, code=code
    )


# -------------------------------------------------------------------------- base64 rows
#: The dtype of a row's values on the wire, by embedding type (base64 carries these bytes).
ROW_DTYPES: Mapping[str, str] = {
    "float": "<f4",
    "int8": "i1",
    "binary": "i1",
    "uint8": "u1",
    "ubinary": "u1",
}


def encode_base64_rows(rows: np.ndarray) -> list[str]:
    """Each row of a 2-D array as base64 of its little-endian bytes (float32, int8, uint8)."""
    array = np.asarray(rows)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array of rows, got shape {array.shape}")
    little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
    return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]


def decode_base64_rows(
    values: Sequence[str], embedding_type: str = "float", width: int | None = None
) -> np.ndarray:
    """The rows ``encode_base64_rows`` wrote, as a 2-D array of the embedding type's dtype
    (float32, int8, uint8); ``width``: the row length when ``values`` is empty."""
    dtype = np.dtype(ROW_DTYPES[embedding_type])
    if not values:
        return np.zeros((0, width or 0), dtype=dtype.newbyteorder("="))
    rows = [np.frombuffer(base64.b64decode(value), dtype=dtype) for value in values]
    return np.stack(rows).astype(dtype.newbyteorder("="), copy=False)


# ----------------------------------------------------------------------------- bodies
def late_chunking_options_body(options: Any) -> dict[str, Any] | None:
    """``late_chunking_options`` of a request: ``{"window", "overlap"}`` (None: absent)."""
    if options is None:
        return None
    return {"window": options.window, "overlap": options.overlap}


def model_description(
    info: Any,
    *,
    served_name: str | None,
    aliases: Sequence[str],
    embedding_types: Sequence[str],
    limits: Mapping[str, Any],
) -> dict[str, Any]:
    """``/v1/x/model``'s answer: the model's ``ModelInfo.to_json()`` (which
    ``ModelInfo.from_json`` reads back), the served name and aliases, the token limit under
    OpenAI's name, the embedding types and the server's request ``limits``."""
    return {
        "id": served_name,
        "aliases": list(aliases),
        **info.to_json(),
        "max_input_tokens": info.max_tokens,
        "embedding_types": list(embedding_types),
        **limits,
    }
