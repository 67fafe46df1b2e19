"""The handle of submitted work (``PendingEmbeddings``), torch-free: the scheduler, the
rerankers and the server's clients all return it."""

from __future__ import annotations

import threading
from collections.abc import Generator
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")

__all__ = ["PendingEmbeddings"]


class _Signal:
    """What the worker thread shares with its scheduler without keeping it alive."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.stopped = False
        self.worker_ident: int | None = None

    def stop(self) -> None:
        self.stopped = True
        self.event.set()


class PendingEmbeddings(Generic[T]):
    """Handle of one submitted request.

    ``future`` is a ``concurrent.futures.Future`` of the final output; ``await pending``
    (or ``asyncio.wrap_future(pending.future)``) waits for it in asyncio, and cancelling
    that asyncio future cancels the request. ``tokens`` is the number of tokens the model
    runs for it (special tokens, instructions and late-chunking window overlaps included).
    """

    __slots__ = ("_signal", "future", "tokens")

    def __init__(self, future: Future[T], tokens: int, signal: _Signal | None = None) -> None:
        self.future = future
        self.tokens = tokens
        self._signal = signal

    def result(self, timeout: float | None = None) -> T:
        """The output; raises the request's error, ``CancelledError`` or ``TimeoutError``."""
        signal = self._signal
        if (
            signal is not None
            and not self.future.done()
            and signal.worker_ident == threading.get_ident()
        ):
            raise RuntimeError(
                "waiting for an embedding inside a scheduler callback would wait forever: "
                "the callback runs on the thread that computes it"
            )
        return self.future.result(timeout)

    def cancel(self) -> bool:
        """Drop the request's sequences that have not run; False if it already finished."""
        return self.future.cancel()

    def done(self) -> bool:
        return self.future.done()

    def cancelled(self) -> bool:
        return self.future.cancelled()

    def __await__(self) -> Generator[Any, None, T]:
        import asyncio

        return asyncio.wrap_future(self.future).__await__()
