"""The CLI's errors and how each reaches the user: one line on stderr and its exit code (2
for usage errors, 1 for runtime errors, 130 for Ctrl-C), with the typed errors of the sinks
and typer's own bound checks worded to name the flag to change."""

from __future__ import annotations

from enum import Enum
from typing import Any

import typer

from ..errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    MissingApiKeyError,
    OptionError,
    StoreLockedError,
    StoreNotFoundError,
)


class CommandError(Exception):
    """A runtime failure reported as one line on stderr, with exit code 1."""


class UsageProblem(Exception):
    """A usage error that no one flag's value caused: one line on stderr, exit code 2 (read
    by ``main`` like click's usage errors)."""

    exit_code = 2
    ctx: Any = None  # the command's context, when a flag's value caused it

    def format_message(self) -> str:
        return str(self)


class Interrupted(Exception):
    """Ctrl-C, reported as one line on stderr saying what was stored, with exit code 130."""


def typed_error_message(error: BaseException) -> str | None:
    """One CLI line for the typed errors of the sinks, or None."""
    if isinstance(error, StoreNotFoundError):
        return (
            f"no {error.database} store at {error.path}; nothing was created. Ingest first, or "
            "point --location (or $JINA_CONNECTORS_HOME) at an existing store"
        )
    if isinstance(error, StoreLockedError):
        who = error.holder or "another process"
        return (
            f"the embedded {error.database} store {error.path} is in use by {who}; it can be "
            "open in one process at a time. Wait for it, or run a "
            f"{error.database.split()[0]} server and pass --location http://HOST:PORT for "
            "concurrent use"
        )
    if isinstance(error, CollectionNotFoundError):
        return (
            f"{error}. Run 'jina-connectors ingest' first, or pick another -c/--collection "
            "or --location"
        )
    if isinstance(error, MissingApiKeyError):
        return str(error)
    if isinstance(error, CollectionMismatchError):
        return (
            f"{error.problem}; use another --collection, or reset it with 'jina-connectors delete'"
        )
    return None


def flag_error(error: OptionError, ctx: typer.Context | None = None) -> Exception:
    """The usage error of a bad flag, worded as typer words its own bounds."""
    if error.minimum is not None:
        problem = UsageProblem(f"{error.flag} must be at least {error.minimum}, got {error.value}")
        problem.ctx = ctx  # main adds "see '... --help'" as for typer's own bounds
        return problem
    return typer.BadParameter(error.reason, ctx=ctx, param_hint=f"'{error.flag}'")


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "less_than_equal": ("at most", "le"),
    "greater_than": ("more than", "gt"),
    "less_than": ("less than", "lt"),
}


def plain_usage_message(error: Exception) -> str | None:
    """A flag value typer's validation refused, as one sentence naming the flag (typer words
    it as pydantic does: "Input should be greater than or equal to 1"); None for others."""
    param = getattr(error, "param", None)
    errors = getattr(error.__cause__, "errors", None)
    if param is None or not callable(errors):
        return None
    try:
        first = errors(include_url=False)[0]
    except Exception:  # not a pydantic ValidationError after all
        return None
    opts = getattr(param, "opts", None) or [str(param.name).upper()]
    flag = max(opts, key=len) if opts[0].startswith("-") else str(param.name).upper()
    kind, context, given = first.get("type"), first.get("ctx") or {}, first.get("input")
    if kind in _BOUNDS:
        word, key = _BOUNDS[kind]
        return f"{flag} must be {word} {context.get(key)}, got {given}"
    if kind in ("int_parsing", "float_parsing"):
        number = "a whole number" if kind == "int_parsing" else "a number"
        return f"{flag} takes {number}, got {given!r}"
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = ", ".join(member.value for member in annotation)
        return f"{flag} must be one of {choices}, got {given!r}"
    return None


def one_line(message: str) -> str:
    return " ".join(message.split())


def counted(number: int, noun: str) -> str:
    """``1 chunk``, ``2 chunks``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
