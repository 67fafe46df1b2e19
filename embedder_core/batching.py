"""Token budgets of forward batches.

A packed model (no padding) costs the sum of its sequences' lengths; a padded one costs
count x longest. Both are capped by the same ``max_batch_tokens`` budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def batch_cost(lengths: Sequence[int], *, packed: bool) -> int:
    """Tokens a forward over sequences of ``lengths`` computes (padding included)."""
    if not lengths:
        return 0
    return sum(lengths) if packed else len(lengths) * max(lengths)


def plan_batches(
    lengths: Sequence[int], max_batch_tokens: int, *, packed: bool = False
) -> list[list[int]]:
    """Group indices into batches whose cost stays within the budget.

    Longest first, so the most memory-hungry batch runs first and an out-of-memory error
    shows up before any time is spent; for a padded model, sorting also keeps the padding
    small. A sequence longer than the budget runs alone.
    """
    if not lengths:
        return []
    sizes = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(-sizes, kind="stable")  # longest first, ties in index order
    ordered = sizes[order]
    ends = np.cumsum(ordered)
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        if packed:  # as many as fit in the budget, summed
            before = ends[start - 1] if start else 0
            stop = int(np.searchsorted(ends, before + max_batch_tokens, side="right"))
        else:  # the first is the longest: count x first must fit
            stop = start + max_batch_tokens // int(ordered[start])
        stop = max(stop, start + 1)
        batches.append(order[start:stop].tolist())
        start = stop
    return batches


def padded_batch_around(lengths: Sequence[int], head: int, max_batch_tokens: int) -> list[int]:
    """A batch for a padded model that holds ``head``: grown one neighbour in length order
    at a time, taking the one that adds less padding, while count x longest fits."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    lo = order.index(head)
    hi = lo + 1  # the batch is order[lo:hi]
    longest = lengths[head]
    while True:
        count = hi - lo
        down = lo > 0 and (count + 1) * longest <= max_batch_tokens
        up = hi < len(order) and (count + 1) * lengths[order[hi]] <= max_batch_tokens
        if down and up:  # a shorter one pads itself; a longer one pads all the others
            down = longest - lengths[order[lo - 1]] <= (lengths[order[hi]] - longest) * count
        if down:
            lo -= 1
        elif up:
            longest = lengths[order[hi]]
            hi += 1
        else:
            return order[lo:hi]


def padded_batch_with(lengths: Sequence[int], head: int, max_batch_tokens: int) -> list[int]:
    """The densest (real / padded tokens) of two batches that hold ``head``: the one that
    cutting all of ``lengths`` in one call would give it, and its length neighbours."""
    cut = next(group for group in plan_batches(lengths, max_batch_tokens) if head in group)
    around = padded_batch_around(lengths, head, max_batch_tokens)

    def density(group: list[int]) -> float:
        return sum(lengths[i] for i in group) / batch_cost(
            [lengths[i] for i in group], packed=False
        )

    return cut if density(cut) > density(around) else around
