"""Argument checks shared by the core's public functions (torch-free)."""

from __future__ import annotations

import operator


def int_value(
    value: object, *, name: str, expected: str, error: type[Exception] = ValueError
) -> int:
    """``value`` as an int (anything with ``__index__``, not a bool), else ``error`` saying
    ``{name} must be {expected}, got ...``; range checks are the caller's."""
    if isinstance(value, bool):
        raise error(f"{name} must be {expected}, got {value!r}")
    try:
        return int(operator.index(value))  # type: ignore[arg-type]
    except TypeError:
        raise error(f"{name} must be {expected}, got {type(value).__name__}") from None
