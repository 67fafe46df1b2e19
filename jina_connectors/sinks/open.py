"""Opening a sink by database name, and the store checks that run before it opens.

The checks (:func:`check_store_unlocked`, :func:`check_collection_listed`) read only the
store's files, so they answer before the database client's import (seconds) and before a
model load. What a database can store and which API key it needs are said by its sink class
(:attr:`~jina_connectors.sinks.VectorSink.embedding_types`,
:attr:`~jina_connectors.sinks.VectorSink.supports_binary_quantization`,
:attr:`~jina_connectors.sinks.VectorSink.api_key_env`); this module only looks them up.
"""

from __future__ import annotations

import os
from enum import Enum
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CollectionNotFoundError, MissingApiKeyError, StoreNotFoundError
from . import store

if TYPE_CHECKING:
    from .base import VectorSink

#: Each database's sink class, as ``module:class`` under ``jina_connectors.sinks`` (imported
#: on first use: each needs its own client package).
SINK_CLASSES: dict[str, str] = {
    "qdrant": "qdrant:QdrantSink",
    "milvus": "milvus:MilvusSink",
    "pinecone": "pinecone:PineconeSink",
}


def _key(database: str) -> str:
    """The database's key: a name of :data:`SINK_CLASSES` (a ``str`` enum member works)."""
    name = database.value if isinstance(database, Enum) else database
    if name not in SINK_CLASSES:
        raise ValueError(f"unknown database {database!r}: one of {', '.join(sorted(SINK_CLASSES))}")
    return str(name)


def sink_class(database: str) -> type[VectorSink]:
    """The sink class of ``database`` (``"qdrant"``, ``"milvus"``, ``"pinecone"``); imports
    its client package."""
    module, name = SINK_CLASSES[_key(database)].split(":")
    sink: type[VectorSink] = getattr(import_module(f".{module}", __package__), name)
    return sink


def check_api_key(database: str, api_key: str | None = None) -> None:
    """Raise :class:`MissingApiKeyError` if ``database`` needs an API key and neither
    ``api_key`` nor its environment variable gives one."""
    sink = sink_class(database)
    env_var = sink.api_key_env
    if sink.requires_api_key and env_var and not (api_key or os.environ.get(env_var)):
        raise MissingApiKeyError(sink.database, env_var)


def check_pinecone_key() -> None:
    """:func:`check_api_key` for Pinecone."""
    check_api_key("pinecone")


def open_sink(
    database: str,
    collection: str,
    location: str | None = None,
    *,
    read_only: bool = False,
    binary_quantization: bool = False,
    api_key: str | None = None,
) -> VectorSink:
    """The sink of ``database`` on ``collection`` at ``location`` (None: the default store).

    ``api_key`` defaults to the sink class's :attr:`~VectorSink.api_key_env` variable;
    ``read_only``: never create a store (a missing one is :class:`StoreNotFoundError`);
    ``binary_quantization``: for a database whose sink supports it (``ValueError`` for
    another, as for a collection name the database does not take).
    """
    sink = sink_class(database)
    if binary_quantization and not sink.supports_binary_quantization:
        raise ValueError(f"binary_quantization applies to Qdrant, not {sink.database}")
    check_api_key(database, api_key)
    if api_key is None and sink.api_key_env:
        api_key = os.environ.get(sink.api_key_env)
    if binary_quantization:
        return sink(  # type: ignore[call-arg]
            collection,
            location=location,
            api_key=api_key,
            binary_quantization=True,
            read_only=read_only,
        )
    return sink(collection, location=location, api_key=api_key, read_only=read_only)  # type: ignore[call-arg]


def store_location(database: str, location: str | None) -> str:
    """Where ``database`` and ``location`` point, for messages: an absolute path or a URL."""
    key = _key(database)
    if key == "pinecone":
        return location or "Pinecone"
    if location is not None and (store.is_server(location) or location == ":memory:"):
        return location
    if location is not None:
        return str(Path(location).expanduser().absolute())
    default = store.default_qdrant_path() if key == "qdrant" else store.default_milvus_path()
    return str(default)


def check_store_unlocked(database: str, location: str | None) -> None:
    """Raise :class:`~jina_connectors.errors.StoreLockedError` now if an embedded store is
    open in another process (before a model load, which would be wasted)."""
    key = _key(database)
    path = store_location(key, location)
    if store.is_server(path) or path == ":memory:" or key == "pinecone":
        return
    if key == "qdrant":
        store.check_qdrant_unlocked(Path(path))
    else:
        store.check_milvus_unlocked(Path(path))


def check_collection_listed(database: str, collection: str, location: str | None) -> None:
    """For an embedded Qdrant: raise now if the folder is missing
    (:class:`~jina_connectors.errors.StoreNotFoundError`), in use, or does not list the
    collection (:class:`~jina_connectors.errors.CollectionNotFoundError`), without the
    database client's import time."""
    key = _key(database)
    path = store_location(key, location)
    if key != "qdrant" or store.is_server(path) or path == ":memory:":
        return
    folder = Path(path)
    if not folder.exists():
        raise StoreNotFoundError("embedded Qdrant", folder)
    store.check_qdrant_unlocked(folder)  # a store in use cannot be read at all
    names = store.qdrant_collections(folder)
    if names is not None and collection not in names:
        raise CollectionNotFoundError(
            key, collection, f"embedded Qdrant at {folder}", sorted(names)
        )
