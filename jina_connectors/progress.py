"""The ingest progress bar: input bytes done of the total, with rate and ETA.

Input bytes are what the run reads: the size of each file, each ``.jsonl`` line, each text
given directly. Their total is known before the run starts for files and lists (a stream
shows its rate only). A document counts as done once it is embedded, or found unchanged.

The core reports no progress inside one embedding call yet, so the bar moves per batch of
documents; a batch of at least :data:`LONG_BATCH_BYTES` (one long document is enough) also
shows the core's own bar in tokens, with its total and ETA, so a long document never sits
silent. When the core's per-request progress callback is available (the scheduler's
``on_progress(tokens)``), :meth:`IngestProgress.embedding` is where to connect it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: Batches of at least this many input bytes (about 16k tokens of English) show the core's
#: token bar while they are embedded.
LONG_BATCH_BYTES = 64 * 1024


class IngestProgress:
    """A tqdm bar in bytes (``unit_scale``: kB, MB) that the pipeline and its writer update."""

    def __init__(self, total: int | None, *, description: str, enabled: bool) -> None:
        from tqdm import tqdm

        self.enabled = enabled
        self._lock = threading.Lock()  # the background writer updates the postfix
        self._bar: Any = tqdm(
            total=total,
            desc=description,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            disable=not enabled,
            dynamic_ncols=True,
            mininterval=0.5,
        )
        self._stats: dict[str, int] = {}

    def done(self, input_bytes: int) -> None:
        """Documents of ``input_bytes`` are done without embedding (unchanged, bad)."""
        if input_bytes:
            with self._lock:
                self._bar.update(input_bytes)

    @contextmanager
    def embedding(self, input_bytes: int) -> Iterator[bool]:
        """Around the embedding of a batch of ``input_bytes``: yields whether the core
        should draw its token bar (a long batch), and counts the batch done at the end."""
        yield self.enabled and input_bytes >= LONG_BATCH_BYTES
        self.done(input_bytes)

    def stats(self, **counts: int) -> None:
        """Show counts (``documents``, ``points``...) beside the bar."""
        with self._lock:
            self._stats.update(counts)
            self._bar.set_postfix(self._stats, refresh=False)

    def close(self, *, complete: bool) -> None:
        """Close the bar; ``complete``: the run finished, so the bar ends full (bytes that
        made no document, such as bad records, count as read)."""
        with self._lock:
            total = self._bar.total
            if complete and total is not None and self._bar.n < total:
                self._bar.update(total - self._bar.n)
            self._bar.close()
