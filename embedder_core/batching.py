"""Token-budget batching: sort by length, pack under a padded-token budget."""

from __future__ import annotations

from collections.abc import Sequence


def plan_batches(lengths: Sequence[int], max_batch_tokens: int) -> list[list[int]]:
    """Group indices into batches whose padded size (count x longest) stays within the budget.

    Longest first, so the most memory-hungry batch runs first and an out-of-memory error
    shows up before any time is spent. A sequence longer than the budget runs alone.
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        length = lengths[index]
        if current and (len(current) + 1) * max(longest, length) > max_batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, length)
    if current:
        batches.append(current)
    return batches
