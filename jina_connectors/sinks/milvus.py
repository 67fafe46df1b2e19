"""Milvus sink: a Milvus Lite file or a server URI (the pymilvus embedding function is
:class:`jina_connectors.adapters.pymilvus.JinaEmbeddingFunction`).

Built for pymilvus >=2.6.7,<2.6.10 with milvus-lite 2.5.1: the pair whose Milvus Lite stores
BINARY_VECTOR (BIN_FLAT index, HAMMING), so ``embedding_type="ubinary"`` works locally, and
the pair that the LlamaIndex (``llama-index-vector-stores-milvus`` 1.2) and Haystack
(``milvus-haystack`` 0.0.18) Milvus integrations run on. pymilvus 2.6.10 and later break
``milvus-haystack`` 0.0.18 ("should create connection first"), and the milvus-lite 3.x line
stores no binary vectors.

Schema: ``id`` VARCHAR primary key; ``vector`` FLOAT_VECTOR (COSINE, AUTOINDEX) or
BINARY_VECTOR (HAMMING, BIN_FLAT); ``text``, ``doc_id``, ``content_hash``, ``model``,
``task``, ``embedding_type`` VARCHAR; ``chunk_index``, ``chunk_count``, ``start``, ``end``,
``dimensions`` INT64; ``metadata`` JSON (the user metadata).

Limits checked on every record before it is written (a record over them makes its document
a bad record): ``text`` at most 65,535 bytes of UTF-8 (Milvus' VARCHAR limit, which a Milvus
server enforces and Milvus Lite does not), ``doc_id`` at most 4,096 bytes.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CollectionMismatchError, StoreNotFoundError
from . import store
from .base import CollectionLayout, VectorSink
from .records import (
    DEFAULT_COLLECTION,
    PAYLOAD_KEYS,
    SPEC_KEYS,
    STATE_KEYS,
    ChunkRecord,
    CollectionSpec,
)

try:
    from pymilvus import DataType, MilvusClient
    from pymilvus.exceptions import (
        DataNotMatchException,
        DataTypeNotMatchException,
        ErrorCode,
        MilvusException,
        MilvusUnavailableException,
        ParamError,
    )
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "jina_connectors.sinks.milvus needs pymilvus and milvus-lite: "
        "pip install 'jina-connectors[milvus]'"
    ) from exc

MAX_TEXT_BYTES = 65_535  # VARCHAR limit of Milvus
MAX_DOC_ID_BYTES = 4_096
_SCALAR_FIELDS = list(PAYLOAD_KEYS)  # every payload key is a field of its own
# Milvus server status codes for a request it refuses as invalid (a value too long...).
_INVALID_PARAMETER_CODES = (1100, 1101, 1102)
QUERY_PAGE = 1000


class MilvusSink(VectorSink):
    """Writes chunks to, and searches, one Milvus collection.

    Args:
        collection: collection name.
        location: a Milvus Lite file (``./x.db``) or a server URI (``http://host:19530``);
            None: ``<home>/milvus.db``, where home is ``$JINA_CONNECTORS_HOME``, else
            ``~/.local/share/jina-connectors`` (:mod:`jina_connectors.sinks.store`).
        api_key: for a Milvus server: its token (``"user:password"`` or an API key).
        client: an existing ``MilvusClient`` to use instead of ``location``; not closed by
            :meth:`close`.
        attempts: tries per call on transient errors (backoff between them).
        read_only: open an existing database only: a missing Milvus Lite file raises
            :class:`~jina_connectors.errors.StoreNotFoundError` instead of being created,
            and writes raise ``PermissionError``.

    One process may open a Milvus Lite file through one sink at a time: :meth:`close` stops
    the file's local server. Another process gets
    :class:`~jina_connectors.errors.StoreLockedError` naming the holder. A file this sink
    created is removed again on close when no collection was created in it.
    """

    embedding_types = ("float", "ubinary")
    database = "Milvus"
    api_key_env = "MILVUS_TOKEN"

    def __init__(
        self,
        collection: str = DEFAULT_COLLECTION,
        *,
        location: str | os.PathLike[str] | None = None,
        api_key: str | None = None,
        client: MilvusClient | None = None,
        attempts: int = 5,
        read_only: bool = False,
    ) -> None:
        super().__init__(collection, attempts=attempts, read_only=read_only)
        self._owns_client = client is None
        self._lite_file: Path | None = None
        self._created_file = False
        # How a Ray worker opens this collection: only a server is open to other processes.
        self._remote_options: dict[str, Any] | None = None
        if client is None:
            uri = os.fspath(location) if location is not None else None
            if uri is None or not store.is_server(uri):
                lite = Path(uri).expanduser() if uri else store.default_milvus_path()
                self._lite_file = lite.absolute()
                uri = str(self._lite_file)
                self.location = f"Milvus Lite at {self._lite_file}"
                self._prepare_lite_file(self._lite_file)
            else:
                self.location = uri
                self._remote_options = {"location": uri, "api_key": api_key, "attempts": attempts}
            with warnings.catch_warnings():  # milvus-lite 2.5.1 imports pkg_resources
                warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
                try:
                    client = MilvusClient(uri=uri, token=api_key or "")
                except Exception:
                    if self._lite_file is not None:  # taken by another process meanwhile?
                        store.check_milvus_unlocked(self._lite_file)
                    raise
            if self._lite_file is not None:
                store.write_owner(store.milvus_lock_file(self._lite_file))
        self.client = client
        self._loaded: set[str] = set()

    def _prepare_lite_file(self, db_file: Path) -> None:
        if self.read_only and not db_file.is_file():
            raise StoreNotFoundError("Milvus Lite", db_file)
        store.check_milvus_unlocked(db_file)
        self._created_file = not db_file.exists()
        db_file.parent.mkdir(parents=True, exist_ok=True)

    def _close(self) -> None:
        """Close the client if this sink opened it; for a Milvus Lite file, also stop the
        file's local server, which otherwise keeps the file locked until the process exits."""
        if not self._owns_client:
            return
        empty = False
        if self._created_file:
            try:
                empty = not self.client.list_collections()
            except Exception:  # closing must not fail; keep the file when unsure
                empty = False
        self.client.close()
        if self._lite_file is not None:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(str(self._lite_file))
            store.remove_owner(store.milvus_lock_file(self._lite_file))
            if empty:
                with contextlib.suppress(OSError):
                    self._lite_file.unlink()
            self._lite_file = None

    def remote_opener(self) -> Callable[[], MilvusSink] | None:
        """A Milvus server's collection opens anywhere; a Milvus Lite file and a client given
        to the sink belong to this process."""
        if self._remote_options is None:
            return None
        return functools.partial(MilvusSink, self.collection, **self._remote_options)

    def _is_transient(self, error: BaseException) -> bool:
        """Unavailable servers and rate limits. (pymilvus already retries gRPC UNAVAILABLE.)"""
        if isinstance(error, MilvusUnavailableException):
            return True
        return isinstance(error, MilvusException) and error.code in (ErrorCode.RATE_LIMIT,)

    def is_record_error(self, error: BaseException) -> bool:
        """A value pymilvus or the server refuses (a VARCHAR over its length...)."""
        if isinstance(error, (ParamError, DataNotMatchException, DataTypeNotMatchException)):
            return True
        if isinstance(error, MilvusException) and error.code in _INVALID_PARAMETER_CODES:
            return True
        return super().is_record_error(error)

    def check_record(self, record: ChunkRecord) -> None:
        text_bytes = len(record.text.encode("utf-8"))
        if text_bytes > MAX_TEXT_BYTES:
            raise ValueError(
                f"its text takes {text_bytes} bytes, over Milvus' {MAX_TEXT_BYTES}-byte text "
                "limit; use a smaller chunk_size"
            )
        if len(record.doc_id.encode("utf-8")) > MAX_DOC_ID_BYTES:
            raise ValueError(f"the document id is longer than {MAX_DOC_ID_BYTES} bytes")

    def _exists(self, name: str) -> bool:
        """Whether the collection exists; known to exist once loaded by this sink."""
        with self._state_lock:
            if name in self._loaded:
                return True
        return bool(self.client.has_collection(name))

    def _load(self, name: str) -> None:
        """A collection must be loaded to be read; a fresh process may find it released."""
        with self._state_lock:
            if name in self._loaded:
                return
        self.client.load_collection(name)
        with self._state_lock:
            self._loaded.add(name)

    # -- collection primitives ----------------------------------------------------------

    def _layout(self, name: str) -> CollectionLayout | None:
        if not self.client.has_collection(name):
            return None
        fields = {f["name"]: f for f in self.client.describe_collection(name)["fields"]}
        missing = [k for k in ("id", "vector", *_SCALAR_FIELDS) if k not in fields]
        if missing:
            raise CollectionMismatchError(
                f"collection {name!r} was not created by jina-connectors (no field "
                f"{', '.join(missing)})",
                "use another collection name",
            )
        vector = fields["vector"]
        binary = vector["type"] == DataType.BINARY_VECTOR
        if not binary and vector["type"] != DataType.FLOAT_VECTOR:
            raise CollectionMismatchError(
                f"collection {name!r} holds {getattr(vector['type'], 'name', vector['type'])} "
                "vectors; this sink writes FLOAT_VECTOR or BINARY_VECTOR"
            )
        index = self.client.describe_index(name, "vector")
        metric = str((index or {}).get("metric_type", "")).lower()
        self._load(name)
        return CollectionLayout(
            int(vector["params"]["dim"]), metric, "ubinary" if binary else "float"
        )

    def _create(self, spec: CollectionSpec) -> bool:
        if self.client.has_collection(self.collection):
            return False
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        if spec.embedding_type == "ubinary":
            schema.add_field("vector", DataType.BINARY_VECTOR, dim=spec.vector_bits)
        else:
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=spec.dimensions)
        schema.add_field("text", DataType.VARCHAR, max_length=MAX_TEXT_BYTES)
        schema.add_field("doc_id", DataType.VARCHAR, max_length=MAX_DOC_ID_BYTES)
        for key in ("chunk_index", "chunk_count", "start", "end", "dimensions"):
            schema.add_field(key, DataType.INT64)
        schema.add_field("metadata", DataType.JSON)
        schema.add_field("content_hash", DataType.VARCHAR, max_length=64)
        schema.add_field("model", DataType.VARCHAR, max_length=1024)
        schema.add_field("task", DataType.VARCHAR, max_length=64)
        schema.add_field("embedding_type", DataType.VARCHAR, max_length=16)
        index = self.client.prepare_index_params()
        if spec.embedding_type == "ubinary":  # Milvus Lite indexes binary vectors with FLAT only
            index.add_index("vector", index_type="BIN_FLAT", metric_type="HAMMING")
        else:
            index.add_index("vector", index_type="AUTOINDEX", metric_type="COSINE")
        self.client.create_collection(
            self.collection, schema=schema, index_params=index, consistency_level="Strong"
        )
        return True

    def _sample_payload(self, name: str) -> Mapping[str, Any] | None:
        if not self.client.has_collection(name):
            return None
        fields = self.client.describe_collection(name)["fields"]
        if not set(SPEC_KEYS) <= {f["name"] for f in fields}:
            return None  # not created by jina-connectors
        self._load(name)
        rows = self.client.query(name, filter="", output_fields=list(SPEC_KEYS), limit=1)
        return rows[0] if rows else None

    def _count(self, name: str) -> int:
        if not self.client.has_collection(name):
            return 0
        self._load(name)
        rows = self.client.query(name, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _list_collections(self) -> list[str]:
        return list(self.client.list_collections())

    def _drop(self, name: str) -> bool:
        if not self.client.has_collection(name):
            return False
        self.client.drop_collection(name)
        with self._state_lock:
            self._loaded.discard(name)
        return True

    def _scan_doc_ids(self, prefix: str) -> Iterator[str]:
        """The ``doc_id`` of the points whose id starts with ``prefix`` (and some more, see
        :func:`_like_prefix`), read in pages."""
        if not self._exists(self.collection):
            return
        self._load(self.collection)
        pattern = _like_prefix(prefix)
        expression = f"doc_id like {_literal(pattern)}" if pattern != "%" else ""
        iterator = self.client.query_iterator(
            self.collection, batch_size=QUERY_PAGE, filter=expression, output_fields=["doc_id"]
        )
        try:
            while rows := iterator.next():
                for row in rows:
                    yield str(row["doc_id"])
        finally:
            iterator.close()

    def _read_page(
        self, cursor: Any, size: int, fields: list[str] | None
    ) -> tuple[list[tuple[str, Mapping[str, Any]]], Any]:
        """One page of a query iterator (the cursor) opened by the first page; a retried page
        asks the same iterator again (it moves on only after a page is returned)."""
        opened = cursor is None
        if cursor is None:
            if not self._exists(self.collection):
                return [], None
            self._load(self.collection)
            cursor = self.client.query_iterator(
                self.collection,
                batch_size=size,
                filter="",
                output_fields=_SCALAR_FIELDS if fields is None else _known_fields(fields),
            )
        try:
            rows = cursor.next()
        except BaseException:
            if opened:  # the retry opens its own
                cursor.close()
            raise
        if not rows:
            cursor.close()
            return [], None
        return [(str(row["id"]), _row_payload(row)) for row in rows], cursor

    def _end_read(self, cursor: Any) -> None:
        cursor.close()

    def _fetch_points(
        self, ids: list[str], fields: list[str] | None
    ) -> dict[str, Mapping[str, Any]]:
        if not self._exists(self.collection):
            return {}
        self._load(self.collection)
        output = _SCALAR_FIELDS if fields is None else _known_fields(fields)
        rows = self.client.get(self.collection, ids=ids, output_fields=output)
        return {str(row["id"]): _row_payload(row) for row in rows}

    # -- write primitives ---------------------------------------------------------------

    def _fetch(self, ids: list[str]) -> dict[str, Mapping[str, Any]]:
        if not self._exists(self.collection):
            return {}  # an absent collection holds no points
        self._load(self.collection)
        rows = self.client.get(self.collection, ids=ids, output_fields=list(STATE_KEYS))
        return {str(row["id"]): row for row in rows}

    def _upsert_requests(self, records: Sequence[ChunkRecord]) -> list[list[dict[str, Any]]]:
        rows = []
        for record in records:
            row = record.payload()
            row["id"] = record.id
            if record.embedding_type == "ubinary":
                row["vector"] = np.asarray(record.vector, dtype=np.uint8).tobytes()
            else:
                row["vector"] = np.asarray(record.vector, dtype=np.float32).tolist()
            rows.append(row)
        return [rows]

    def _upsert(self, request: list[dict[str, Any]]) -> None:
        self.client.upsert(self.collection, request)

    def _delete_stale(self, request: Mapping[str, int]) -> None:
        expression = " or ".join(
            f"(doc_id == {_literal(doc_id)} and chunk_index >= {int(count)})"
            for doc_id, count in request.items()
        )
        self.client.delete(self.collection, filter=expression)

    # -- search primitives --------------------------------------------------------------

    def _is_native_filter(self, filter: Any) -> bool:
        return isinstance(filter, str)  # a Milvus boolean expression

    def _native_filter(self, items: list[tuple[str, bool, list[Any]]]) -> str:
        """Equality on ``doc_id`` or user metadata; a list of values matches any of them."""
        clauses = []
        for key, is_metadata, values in items:
            field = f"metadata[{_literal(key)}]" if is_metadata else key
            literals = ", ".join(_literal(v) for v in values)
            clauses.append(f"{field} in [{literals}]")
        return " and ".join(clauses)

    def _search(
        self, vector: np.ndarray, k: int, filter: Any, spec: CollectionSpec
    ) -> list[tuple[str, float, Mapping[str, Any]]]:
        self._load(self.collection)
        if spec.embedding_type == "ubinary":
            data: list[Any] = [np.asarray(vector, dtype=np.uint8).tobytes()]
            metric = "HAMMING"
        else:
            data = [np.asarray(vector, dtype=np.float32).tolist()]
            metric = "COSINE"
        results = self.client.search(
            self.collection,
            data=data,
            limit=k,
            filter=filter or "",
            output_fields=["text", "doc_id", "chunk_index", "start", "end", "metadata"],
            search_params={"metric_type": metric},
        )
        hits = []
        for result in results[0]:
            distance = float(result["distance"])
            # Hamming is a distance: turn it into a similarity in [0, 1], higher is better.
            score = 1.0 - distance / spec.vector_bits if metric == "HAMMING" else distance
            hits.append((str(result["id"]), score, result["entity"]))
        return hits


def _known_fields(fields: list[str]) -> list[str]:
    """The wanted payload keys that are fields of our schema (a query naming another fails)."""
    return [f for f in fields if f in _SCALAR_FIELDS] or ["doc_id"]


def _row_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """A query row as a payload: every field but the primary key."""
    return {key: value for key, value in row.items() if key != "id"}


def _literal(value: str | int | float | bool) -> str:
    """A Milvus expression literal. Strings escape only backslash and double quote: the
    expression parser reads other characters as they are (and cannot take line breaks)."""
    if not isinstance(value, str):
        return json.dumps(value)
    if "\n" in value or "\r" in value:
        raise ValueError(f"Milvus filters cannot match strings with line breaks: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _like_prefix(prefix: str) -> str:
    """A ``like`` pattern matching at least the strings that start with ``prefix``: the part
    of ``prefix`` before its first ``%``, ``_`` or backslash, then ``%`` (Milvus Lite's
    ``like`` has no escape for its wildcards, so the caller filters the rows again)."""
    cut = min((i for i, c in enumerate(prefix) if c in "%_\\"), default=len(prefix))
    return prefix[:cut] + "%"


def _quiet_iterator_warning(record: logging.LogRecord) -> bool:
    # Milvus Lite has no MVCC timestamp; pymilvus warns on every query iterator it opens.
    return "failed to get mvccTs" not in record.getMessage()


logging.getLogger("pymilvus.orm.iterator").addFilter(_quiet_iterator_warning)
