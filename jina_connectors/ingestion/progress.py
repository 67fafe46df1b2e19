"""The ingest progress bar: input bytes done of the total, with rate and ETA.

Input bytes are what the run reads: the size of each file, each ``.jsonl`` line, each text
given directly. Their total is known before the run starts for files and lists (a stream
shows its rate only). A document counts as done once it is embedded, or found unchanged.

Inside a batch the bar follows the tokens the model has run: when the embedder reports them
(the core scheduler's ``submit_*(..., on_progress=...)`` handles, which say how many tokens
a request runs), each report moves the bar by the batch's bytes in proportion, so a long
document moves it every forward batch. An embedder without that interface is followed per
batch; a batch of at least :data:`LONG_BATCH_BYTES` (one long document is enough) then shows
the core's own bar in tokens, with its total and ETA, so a long document never sits silent.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Batches of at least this many input bytes (about 16k tokens of English) show the core's
#: token bar while they are embedded, when the embedder does not report its progress.
LONG_BATCH_BYTES = 64 * 1024
# Token reports move a batch at most this far; the rest comes when the batch is done.
_REPORTED_SHARE = 0.95


class IngestProgress:
    """A tqdm bar in bytes (``unit_scale``: kB, MB) that the pipeline and its writer update."""

    def __init__(self, total: int | None, *, description: str, enabled: bool) -> None:
        from tqdm import tqdm

        self.enabled = enabled
        self.done_bytes = 0  # also counted when the bar is disabled
        self._lock = threading.Lock()  # the writer and the core's callbacks update it too
        self._bar: Any = tqdm(
            total=total,
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not enabled,
            dynamic_ncols=True,
            mininterval=0.5,
            # tqdm's default (dynamic miniters) learns "iterations between prints" from one
            # burst, after which small batches may not redraw the bar again until the end.
            miniters=1,
        )
        self._stats: dict[str, int] = {}

    def done(self, input_bytes: int) -> None:
        """``input_bytes`` more are done."""
        if input_bytes > 0:
            with self._lock:
                self.done_bytes += input_bytes
                self._bar.update(input_bytes)

    @contextmanager
    def embedding(self, input_bytes: int) -> Iterator[BatchProgress]:
        """Around the embedding of a batch of ``input_bytes``: the batch's progress, which
        token reports move; the whole batch counts as done at the end."""
        batch = BatchProgress(self, input_bytes)
        yield batch
        batch.finish()

    def stats(self, **counts: int) -> None:
        """Show counts (``docs``, ``points``...) beside the bar."""
        with self._lock:
            self._stats.update(counts)
            self._bar.set_postfix(self._stats, refresh=False)

    def close(self, *, complete: bool) -> None:
        """Close the bar; ``complete``: the run finished, so the bar ends full (bytes that
        made no document, such as bad records, count as read)."""
        with self._lock:
            total = self._bar.total
            if complete and total is not None and self.done_bytes < total:
                self._bar.update(total - self.done_bytes)
                self.done_bytes = total
            self._bar.close()


class BatchProgress:
    """One batch's share of the bar, moved by the tokens the embedder reports.

    The embedder may report tokens (:meth:`advance`, on its own thread) before the request's
    token total is known (:meth:`expect`); the bar never moves backwards.
    """

    def __init__(self, progress: IngestProgress, input_bytes: int) -> None:
        self.input_bytes = input_bytes
        self._progress = progress
        self._lock = threading.Lock()
        self._expected = 0
        self._done = 0
        self._shown = 0

    @property
    def long(self) -> bool:
        """Whether the core should draw its own token bar for this batch (see the module)."""
        return self._progress.enabled and self.input_bytes >= LONG_BATCH_BYTES

    def expect(self, tokens: int) -> None:
        """A request of the batch runs ``tokens`` tokens (several requests add up)."""
        with self._lock:
            self._expected += tokens
        self._move()

    def advance(self, tokens: int) -> None:
        """The model ran ``tokens`` more tokens of the batch."""
        with self._lock:
            self._done += tokens
        self._move()

    def _move(self) -> None:
        with self._lock:
            if not self._expected:
                return
            share = min(self._done / self._expected, 1.0) * _REPORTED_SHARE
            target = int(self.input_bytes * share)
            step, self._shown = max(target - self._shown, 0), max(target, self._shown)
        self._progress.done(step)

    def finish(self) -> None:
        with self._lock:
            step, self._shown = self.input_bytes - self._shown, self.input_bytes
        self._progress.done(step)
