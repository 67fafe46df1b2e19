"""The server's errors: ``ApiError`` (a status, an ``ErrorCode`` and a message, answered as
the wire's JSON error body) and the handlers that answer every other failure the same way,
never with a traceback."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .wire import ErrorCode, error_body

__all__ = [
    "CLIENT_CLOSED",
    "JSON_MEDIA_TYPE",
    "ApiError",
    "ClientGone",
    "add_error_handlers",
    "error_json",
    "error_response",
]

_log = logging.getLogger("jina_connectors.server")
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection"

JSON_MEDIA_TYPE = "application/json"


class ApiError(Exception):
    """An error answered as JSON with ``status`` (and ``headers``, e.g. Retry-After)."""

    def __init__(
        self,
        status: int,
        message: str,
        code: ErrorCode,
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


def error_json(
    status: int,
    message: str,
    code: ErrorCode | int | None,
    param: str | None = None,
    extra: dict[str, Any] | None = None,
) -> bytes:
    return orjson.dumps(error_body(status, message, code, param, extra))


def error_response(error: ApiError) -> Response:
    body = error_json(error.status, error.message, error.code, error.param, error.extra)
    return Response(
        body, status_code=error.status, media_type=JSON_MEDIA_TYPE, headers=error.headers
    )


class ClientGone(Exception):
    """The client disconnected before its request was tokenized or answered."""


def add_error_handlers(app: FastAPI) -> None:
    """Answer ``ApiError``, a client gone (499), invalid bodies (422), the framework's HTTP
    errors (404, 405...) and bugs (500, logged with the traceback) as JSON errors."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> Response:
        return error_response(error)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, error: ClientGone) -> Response:
        return Response(status_code=CLIENT_CLOSED)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError) -> Response:
        problems = []
        for item in error.errors():
            where = ".".join(str(part) for part in item.get("loc", ()) if part != "body")
            problems.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        message = "invalid request: " + "; ".join(problems)
        return error_response(ApiError(422, message, ErrorCode.INVALID_REQUEST))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> Response:
        code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.METHOD_NOT_ALLOWED}.get(
            error.status_code, ErrorCode.HTTP_ERROR
        )
        message = str(error.detail)
        if error.status_code == 404:
            message = f"no route {request.method} {request.url.path}; see /docs"
        return error_response(ApiError(error.status_code, message, code, headers=error.headers))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> Response:
        # A bug, not bad input: logged with its traceback here, answered without it.
        _log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
        message = f"internal server error ({type(error).__name__}); see the server log"
        return error_response(ApiError(500, message, ErrorCode.INTERNAL_ERROR))
