"""uvicorn's HTTP/1.1 protocol (h11) with the connection limits it lacks.

- A header timeout: a connection that has not sent a complete request head within
  ``header_timeout`` seconds of opening (or of its last answer) is closed, with a JSON 408
  when it sent part of one. uvicorn's own keep-alive timeout starts only after an answer,
  so an idle new connection, or one sending its headers a byte at a time, stayed open.
- Protocol errors answered in JSON with the status h11 suggests: request headers past
  ``h11_max_incomplete_event_size`` get 431 (uvicorn sends a text 400).
- A lingering close after such an error: the server half-closes and reads (and drops) what
  the client still sends, for up to ``linger_seconds``, so the client reads the answer
  instead of a TCP reset caused by closing a socket with unread data.
"""

from __future__ import annotations

import asyncio
import sys
from http import HTTPStatus
from typing import Any

from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.h11_impl import H11Protocol

from .errors import error_json
from .wire import ErrorCode

__all__ = ["guarded_h11_protocol"]


class _GuardedH11Protocol(H11Protocol):
    header_timeout = 10.0
    linger_seconds = 2.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._lingering = False
        self._header_timer: asyncio.TimerHandle | None = None
        self._armed_for: Any = None
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:  # after an error answer: drop what the client still sends
            return
        super().data_received(data)
        if self.cycle is not self._armed_for:  # a request head arrived
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self._lingering:
            self._arm_header_timer()

    def shutdown(self) -> None:
        if self._lingering:
            self.transport.close()
            return
        super().shutdown()

    def send_400_response(self, msg: str) -> None:
        # Called by uvicorn inside its `except h11.RemoteProtocolError`: the error is current.
        error = sys.exc_info()[1]
        status = getattr(error, "error_status_hint", 400)
        if status == 431:
            limit = (
                self.config.h11_max_incomplete_event_size
                or h11_impl.DEFAULT_MAX_INCOMPLETE_EVENT_SIZE
            )
            self._answer(
                431,
                f"the request head (request line and headers) is over {limit} bytes",
                ErrorCode.HEADERS_TOO_LARGE,
            )
        else:
            self._answer(status, f"invalid HTTP request: {error or msg}", ErrorCode.INVALID_HTTP)

    # ----------------------------------------------------------------------- timeouts
    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._armed_for = self.cycle
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timed_out(self) -> None:
        self._header_timer = None
        cycle = self.cycle
        if self.transport.is_closing() or cycle is not self._armed_for:
            return
        if cycle is not None and not cycle.response_complete:
            return  # a request is being served; the app bounds the time to read its body
        if self.conn.trailing_data[0]:
            self._answer(
                408,
                f"the request head did not arrive within {self.header_timeout:g} s",
                ErrorCode.REQUEST_TIMEOUT,
            )
        else:  # idle: nothing to answer
            self.transport.close()

    # ------------------------------------------------------------------------ answers
    def _answer(self, status: int, message: str, code: ErrorCode) -> None:
        """A JSON error written straight to the socket (h11 may be in its error state),
        then a lingering close."""
        body = error_json(status, message, code)
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "content-type: application/json\r\n"
            f"content-length: {len(body)}\r\n"
            "connection: close\r\n\r\n"
        ).encode("ascii")
        self.transport.write(head + body)
        self._lingering = True
        self._cancel_header_timer()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(self.linger_seconds, self.transport.close)

    def eof_received(self) -> bool | None:
        if self._lingering:  # the client has sent everything and read the answer
            self.transport.close()
        return None


def guarded_h11_protocol(header_timeout: float, linger_seconds: float = 2.0) -> type[H11Protocol]:
    """An ``H11Protocol`` class (uvicorn's ``http=``) with these limits."""
    if not header_timeout > 0:
        raise ValueError(f"header_timeout must be positive, got {header_timeout!r}")
    return type(
        "GuardedH11Protocol",
        (_GuardedH11Protocol,),
        {"header_timeout": float(header_timeout), "linger_seconds": float(linger_seconds)},
    )
