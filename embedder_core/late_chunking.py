"""Late chunking: encode a whole document once and pool each chunk over its own tokens.

A document longer than the model's limit is encoded in overlapping windows ("long late
chunking"). Every window is a complete input (``<s>``, the task instruction, a slice of
the document, ``</s>``), and each token's state is taken from exactly one window: the
first window that holds it with at least ``overlap`` tokens of left context (or the
document start). So every token keeps ``overlap`` tokens of context before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .checks import int_value

TokenSpan = tuple[int, int]

#: How the states of the positions pooled into one output row are combined. CLS and
#: last-token pooling are "mean" over a single position.
Reduction = Literal["mean", "max"]


@dataclass(frozen=True)
class LateChunkingOptions:
    """How a late-chunked document longer than one window is split; frozen and hashable.

    Pass it per call (``late_chunking_options=``): one shared ``Embedder`` serves callers
    with different settings. Everything in it changes the vectors, so a pipeline that
    caches vectors must key them on it.

    - ``window``: largest window, in tokens (specials and task instruction included).
      None means the model's ``max_tokens`` (the hosted API's semantics); a larger value is
      capped at it. Attention cost per token grows with the window, so a smaller window is
      faster and gives each token less context.
    - ``overlap``: tokens of left context every token keeps when the document needs several
      windows. Capped at half a window's document tokens, so that windows always advance.
    """

    window: int | None = None
    overlap: int = 512

    def __post_init__(self) -> None:
        if self.window is not None:
            object.__setattr__(self, "window", _int_at_least("window", self.window, 1))
        object.__setattr__(self, "overlap", _int_at_least("overlap", self.overlap, 0))

    def window_tokens(self, max_tokens: int) -> int:
        """The window actually used for a model whose limit is ``max_tokens``."""
        return max_tokens if self.window is None else min(self.window, max_tokens)


def _int_at_least(name: str, value: object, minimum: int) -> int:
    number = int_value(value, name=f"late chunking {name}", expected="an int")
    if number < minimum:
        raise ValueError(f"late chunking {name} must be at least {minimum}, got {number}")
    return number


@dataclass(frozen=True)
class SequenceJob:
    """One model input and what to pool from it.

    ``pools`` holds (output row, start, end): the states at positions [start, end) of this
    sequence are reduced into that output row (mean or elementwise max, per the embedder's
    ``reduction``). A row may collect from several jobs; a mean is over all its positions.
    """

    ids: list[int]
    task: int
    pools: tuple[tuple[int, int, int], ...]


def plan_windows(length: int, capacity: int, overlap: int) -> list[tuple[int, int, int]]:
    """Windows (start, end, keep_from) over ``length`` content tokens.

    Each window holds at most ``capacity`` tokens; the states of [keep_from, end) come
    from it. ``overlap`` is capped at half a window so that windows always advance.
    """
    if capacity < 1:
        raise ValueError("the task instruction leaves no room for document tokens")
    end = min(capacity, length)
    windows = [(0, end, 0)]
    overlap = min(max(overlap, 0), capacity // 2)
    start = 0
    while end < length:
        start = min(start + capacity - overlap, length - capacity)
        keep_from, end = end, min(start + capacity, length)
        windows.append((start, end, keep_from))
    return windows


def document_jobs(
    content: Sequence[int],
    spans: Sequence[TokenSpan],
    *,
    first_row: int,
    head: Sequence[int],
    tail: Sequence[int],
    task: int,
    max_tokens: int,
    overlap: int,
) -> list[SequenceJob]:
    """The model inputs that late-chunk one document whose chunks are ``spans`` of ``content``.

    Output row ``first_row + j`` receives chunk j. ``head`` (prefix specials and the task
    instruction) and ``tail`` (suffix specials) wrap every window and belong to no chunk.
    """
    jobs: list[SequenceJob] = []
    for start, end, keep_from in plan_windows(
        len(content), max_tokens - len(head) - len(tail), overlap
    ):
        shift = len(head) - start
        pools = tuple(
            (first_row + j, max(a, keep_from) + shift, min(b, end) + shift)
            for j, (a, b) in enumerate(spans)
            if max(a, keep_from) < min(b, end)
        )
        jobs.append(SequenceJob([*head, *content[start:end], *tail], task, pools))
    return jobs
