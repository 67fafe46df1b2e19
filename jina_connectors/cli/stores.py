"""Opening the store a command names (``--db``/``--collection``/``--location``): usage and
missing-collection errors worded for the CLI. The store checks themselves are
:mod:`jina_connectors.sinks.open`'s."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import TYPE_CHECKING, Any

import typer

from ..sinks import open as sinks_open
from ..sinks.open import check_pinecone_key
from .errors import CommandError
from .flags import Database

if TYPE_CHECKING:
    from ..sinks.base import VectorSink


def open_sink(db: Database, collection: str, location: str | None, **options: Any) -> VectorSink:
    """:func:`jina_connectors.sinks.open.open_sink` for ``--db``/``--collection``/``--location``."""
    try:
        return sinks_open.open_sink(db, collection, location, **options)
    except ValueError as error:  # a collection name the database does not take
        raise typer.BadParameter(str(error), param_hint="'--collection'") from None


def missing_collection(db: Database, sink: VectorSink) -> CommandError:
    """The error for a missing or empty collection, naming the ones the store holds."""
    names = sorted(info.name for info in sink.describe_collections() if info.count)
    there = f"; collections there: {', '.join(names)}" if names else "; it holds no collection"
    return CommandError(
        f"{db.value} collection {sink.collection!r} is missing or empty in {sink.location}"
        f"{there}. Run 'jina-connectors ingest' first, or pick another -c/--collection or "
        "--location"
    )


@contextmanager
def reading(db: Database, collection: str, location: str | None) -> Iterator[VectorSink]:
    """A read-only sink: a missing store is an error naming where it was looked for."""
    if db is Database.pinecone:
        check_pinecone_key()
    with closing(open_sink(db, collection, location, read_only=True)) as sink:
        yield sink
