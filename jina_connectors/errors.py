"""The typed errors of the ingestion pipeline and the sinks."""

from __future__ import annotations

import os
from typing import Any


class CollectionMismatchError(ValueError):
    """An existing collection was built with another vector size, metric, model or type, or
    holds points that jina-connectors did not write.

    Raised by :meth:`~jina_connectors.sink.VectorSink.ensure_collection` before anything is
    written; the collection is left untouched (never recreated). ``problem`` is what does
    not match, ``advice`` what a Python caller can do (the CLI gives its own, in flags).
    """

    def __init__(self, problem: str, advice: str = "") -> None:
        super().__init__(f"{problem}; {advice}" if advice else problem)
        self.problem = problem
        self.advice = advice

    def __reduce__(self) -> tuple[type[CollectionMismatchError], tuple[str, str]]:
        return (type(self), (self.problem, self.advice))


class IdSchemeError(CollectionMismatchError):
    """A run would store a file that the collection already holds under another id: once
    ingested with absolute-path ids (no ``root``) and now relative to a ``root``, or the
    other way round, or relative to another root. The file would be stored twice.

    ``path``: the file; ``stored_id``: its id in the collection; ``new_id``: the id this run
    gives it; ``stored_root``: the root the stored id is relative to (None: absolute ids).
    """

    def __init__(
        self, where: str, path: str, stored_id: str, new_id: str, stored_root: str | None
    ) -> None:
        self.where, self.path = where, path
        self.stored_id, self.new_id, self.stored_root = stored_id, new_id, stored_root
        before = "without a root" if stored_root is None else f"with root {stored_root!r}"
        super().__init__(
            f"{where} holds {path} as {stored_id!r}, ingested {before}; this run would store "
            f"it a second time as {new_id!r}",
            f"ingest it {before} again, or into another collection",
        )

    def __reduce__(self) -> tuple[type[IdSchemeError], tuple[str, str, str, str, str | None]]:
        return (
            type(self),
            (self.where, self.path, self.stored_id, self.new_id, self.stored_root),
        )


class InvalidDocumentError(ValueError):
    """One input record is unusable; ``record`` names it (``"a.jsonl:3"``, ``"documents[5]"``).

    The pipeline reports it in ``IngestReport.errors`` (a *bad record*) and goes on with the
    other documents, or raises it with ``on_error="raise"``. ``source_id``: the id of the
    file it was read from (or of the document, when that is known), else None; a
    ``sync=True`` ingest keeps the stored documents with that id, or, for a ``.jsonl`` file,
    with ids ``<source_id>:...``, since they may still exist in the unreadable input.
    """

    def __init__(self, record: str, reason: str, *, source_id: str | None = None) -> None:
        super().__init__(f"{record}: {reason}")
        self.record = record
        self.reason = reason
        self.source_id = source_id

    def __reduce__(
        self,
    ) -> tuple[type[InvalidDocumentError], tuple[str, str], dict[str, str | None]]:
        # Picklable (Ray workers send errors back to the driver).
        return (type(self), (self.record, self.reason), {"source_id": self.source_id})


class EmptyDocumentError(InvalidDocumentError):
    """A ``.txt``/``.md`` file that is empty or holds only whitespace: a document with
    nothing to store, not a bad record. The pipeline counts it in ``IngestReport.empty`` and
    goes on (the run does not fail for it); a ``sync=True`` ingest deletes what was stored
    for that file before it was emptied."""


class SourcePathError(ValueError):
    """A path given as documents cannot be read as documents: it does not exist, it is not a
    ``.txt``/``.md``/``.jsonl`` file or a folder, or it lies outside the ``root`` that document
    ids are made relative to. ``path`` names it.

    A usage error, not a bad record: :func:`~jina_connectors.pipeline.ingest` checks the
    paths it is given before anything is written (a path produced lazily by a generator is
    checked when it is reached).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason

    def __reduce__(self) -> tuple[type[SourcePathError], tuple[str, str]]:
        return (type(self), (self.path, self.reason))


class OptionError(ValueError):
    """An ingest option has a value it cannot take (checked once, by
    :class:`~jina_connectors.ingestion.options.IngestOptions`, before anything is read,
    loaded or written). ``option`` is the field name (``chunk_size``); the CLI names its flag
    ``--`` + the name with ``-`` (``--chunk-size``). ``reason`` is the message without the
    name; ``minimum`` is the least value of a number that was below it, else None."""

    def __init__(
        self, option: str, reason: str, *, value: object = None, minimum: int | None = None
    ) -> None:
        super().__init__(f"{option} {reason}")
        self.option = option
        self.reason = reason
        self.value = value
        self.minimum = minimum

    @property
    def flag(self) -> str:
        """The CLI flag of the option (``--chunk-size``)."""
        return "--" + self.option.replace("_", "-")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_option_error, (self.option, self.reason, self.value, self.minimum))


def _option_error(option: str, reason: str, value: object, minimum: int | None) -> OptionError:
    return OptionError(option, reason, value=value, minimum=minimum)


class StoreNotFoundError(FileNotFoundError):
    """A local store (an embedded Qdrant folder, a Milvus Lite file) opened for reading does
    not exist. Reading never creates one; ``path`` is the absolute path looked in."""

    def __init__(self, database: str, path: os.PathLike[str] | str) -> None:
        self.database = database
        self.path = str(path)
        super().__init__(f"no {database} store at {self.path}")


class StoreLockedError(RuntimeError):
    """An embedded store is open in another process (the database allows one at a time).

    ``holder`` names that process when it is a jina-connectors sink (``"pid 42
    (jina-connectors ingest docs)"``), else None. A database server allows concurrent use.
    """

    def __init__(self, database: str, path: os.PathLike[str] | str, holder: str | None) -> None:
        self.database = database
        self.path = str(path)
        self.holder = holder
        who = holder or "another process"
        super().__init__(
            f"the embedded {database} store {self.path} is in use by {who}; it can be open in "
            f"one process at a time: wait for it, or use a {database.split()[0]} server "
            "(location='http://...') for concurrent use"
        )


class CollectionNotFoundError(LookupError):
    """A collection looked for in a local store is not there: ``names`` lists the collections
    the store holds (empty: none), ``location`` says where (``embedded Qdrant at /path``),
    ``database`` is the database's key (``qdrant``)."""

    def __init__(self, database: str, collection: str, location: str, names: list[str]) -> None:
        self.database = database
        self.collection = collection
        self.location = location
        self.names = sorted(names)
        there = f"collections there: {', '.join(self.names)}" if self.names else "it holds none"
        super().__init__(f"{database} collection {collection!r} is missing in {location}; {there}")

    def __reduce__(self) -> tuple[type[CollectionNotFoundError], tuple[str, str, str, list[str]]]:
        return (type(self), (self.database, self.collection, self.location, self.names))


class MissingApiKeyError(RuntimeError):
    """A database that needs an API key was opened without one (argument or ``env_var``)."""

    def __init__(self, database: str, env_var: str) -> None:
        self.database = database
        self.env_var = env_var
        super().__init__(f"no {database} API key: set {env_var}")

    def __reduce__(self) -> tuple[type[MissingApiKeyError], tuple[str, str]]:
        return (type(self), (self.database, self.env_var))
