"""Milvus sink (a Milvus Lite file or a server URI) and a pymilvus-style embedding function.

Built for "set 1" of the environment notes: pymilvus >=2.6.7,<2.6.10 with milvus-lite 2.5.1.
That set stores BINARY_VECTOR in Milvus Lite (BIN_FLAT index, HAMMING), so
``embedding_type="ubinary"`` works locally, and it is the set the LlamaIndex and Haystack
Milvus integrations run on.

Schema: ``id`` VARCHAR primary key; ``vector`` FLOAT_VECTOR (COSINE, AUTOINDEX) or
BINARY_VECTOR (HAMMING, BIN_FLAT); ``text``, ``doc_id``, ``content_hash``, ``model``,
``task``, ``embedding_type`` VARCHAR; ``chunk_index``, ``chunk_count``, ``start``, ``end``,
``dimensions`` INT64; ``metadata`` JSON (the user metadata).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from .ingest import (
    DEFAULT_COLLECTION,
    PASSAGE_TASK,
    PAYLOAD_KEYS,
    QUERY_TASK,
    ChunkRecord,
    ChunkState,
    CollectionInfo,
    CollectionMismatchError,
    CollectionSpec,
    Hit,
    SearchFilter,
    check_layout,
    check_recorded_spec,
    embed_query,
    filter_items,
    resolve_embedder,
    with_retries,
)

try:
    from pymilvus import DataType, MilvusClient
    from pymilvus.exceptions import ErrorCode, MilvusException, MilvusUnavailableException
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "jina_connectors.milvus needs pymilvus and milvus-lite: "
        "pip install 'jina-connectors[milvus]'"
    ) from exc

if TYPE_CHECKING:
    from embedder_core import Embedder

DEFAULT_URI = str(Path(".jina_connectors") / "milvus.db")
MAX_TEXT_BYTES = 65_535  # VARCHAR limit of Milvus
MAX_DOC_ID_BYTES = 4_096
_FETCH_PAGE = 1000
_SCALAR_FIELDS = list(PAYLOAD_KEYS)  # every payload key is a field of its own
T = TypeVar("T")


def _is_transient(exc: BaseException) -> bool:
    """Unavailable servers and rate limits. (pymilvus already retries gRPC UNAVAILABLE itself.)"""
    if isinstance(exc, MilvusUnavailableException):
        return True
    return isinstance(exc, MilvusException) and exc.code in (ErrorCode.RATE_LIMIT,)


class MilvusSink:
    """Writes chunks to, and searches, one Milvus collection.

    Args:
        collection: collection name.
        uri: a Milvus Lite file (``./x.db``) or a server URI (``http://host:19530``);
            None: ``./.jina_connectors/milvus.db``.
        token: for a Milvus server (``"user:password"`` or an API key).
        client: an existing ``MilvusClient`` to use instead of ``uri``; not closed by
            :meth:`close`.

    One process may open a Milvus Lite file through one sink at a time: :meth:`close` stops
    the file's local server.
    """

    def __init__(
        self,
        collection: str = DEFAULT_COLLECTION,
        *,
        uri: str | os.PathLike[str] | None = None,
        token: str | None = None,
        client: MilvusClient | None = None,
    ) -> None:
        if not isinstance(collection, str) or not collection:
            raise ValueError("collection must be a non-empty string")
        self.collection = collection
        self._owns_client = client is None
        self._lite_file: str | None = None
        if client is None:
            uri = os.fspath(uri) if uri is not None else DEFAULT_URI
            if not uri.startswith(("http://", "https://", "tcp://", "unix:")):
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
                self._lite_file = uri
            with warnings.catch_warnings():  # milvus-lite 2.5.1 imports pkg_resources
                warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
                client = MilvusClient(uri=uri, token=token or "")
        self.client = client
        self._spec: CollectionSpec | None = None
        self._loaded = False

    def __enter__(self) -> MilvusSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the client if this sink opened it; for a Milvus Lite file, also stop the
        file's local server, which otherwise keeps the file locked until the process exits."""
        if not self._owns_client:
            return
        self.client.close()
        if self._lite_file is not None:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self._lite_file)
            self._lite_file = None

    def _call(self, operation: Callable[[], T]) -> T:
        return with_retries(operation, _is_transient)

    def _exists(self, name: str) -> bool:
        return bool(self._call(lambda: self.client.has_collection(name)))

    def _load(self) -> None:
        """A collection must be loaded to be read; a fresh process may find it released."""
        if not self._loaded:
            self._call(lambda: self.client.load_collection(self.collection))
            self._loaded = True

    # -- collection ---------------------------------------------------------------------

    def ensure_collection(self, spec: CollectionSpec) -> None:
        if spec.embedding_type not in ("float", "ubinary"):
            raise ValueError(
                f"the Milvus sink stores 'float' or 'ubinary' vectors, not {spec.embedding_type!r}"
            )
        name = self.collection
        if not self._exists(name):
            self._create(spec)
            return
        description = self._call(lambda: self.client.describe_collection(name))
        fields = {f["name"]: f for f in description["fields"]}
        missing = [k for k in ("id", "vector", *_SCALAR_FIELDS) if k not in fields]
        if missing:
            raise CollectionMismatchError(
                f"collection {name!r} was not created by jina-connectors (no field "
                f"{', '.join(missing)}); use another collection name"
            )
        vector = fields["vector"]
        binary = vector["type"] == DataType.BINARY_VECTOR
        if binary != (spec.embedding_type == "ubinary"):
            kind = "BINARY_VECTOR" if binary else str(getattr(vector["type"], "name", "FLOAT"))
            raise CollectionMismatchError(
                f"collection {name!r} holds {kind} vectors; embedding_type="
                f"{spec.embedding_type!r} needs "
                f"{'BINARY_VECTOR' if spec.embedding_type == 'ubinary' else 'FLOAT_VECTOR'}"
            )
        index = self._call(lambda: self.client.describe_index(name, "vector"))
        metric = str((index or {}).get("metric_type", "")).lower()
        check_layout(name, spec, size=int(vector["params"]["dim"]), metric=metric)
        check_recorded_spec(name, spec, self.stored_spec())
        self._load()

    def _create(self, spec: CollectionSpec) -> None:
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
        self._call(
            lambda: self.client.create_collection(
                self.collection, schema=schema, index_params=index, consistency_level="Strong"
            )
        )
        self._load()

    def stored_spec(self) -> CollectionSpec | None:
        if self._spec is None:
            self._spec = self._spec_of(self.collection)
        return self._spec

    def _spec_of(self, name: str) -> CollectionSpec | None:
        """None if the collection is absent, empty, or not created by jina-connectors."""
        if not self._exists(name):
            return None
        fields = self._call(lambda: self.client.describe_collection(name))["fields"]
        if not {"model", "dimensions", "embedding_type", "task"} <= {f["name"] for f in fields}:
            return None
        self._call(lambda: self.client.load_collection(name))
        rows = self._call(
            lambda: self.client.query(
                name,
                filter="",
                output_fields=["model", "dimensions", "embedding_type", "task"],
                limit=1,
            )
        )
        return CollectionSpec.from_payload(rows[0]) if rows else None

    def _count_of(self, name: str) -> int:
        self._call(lambda: self.client.load_collection(name))
        rows = self._call(lambda: self.client.query(name, filter="", output_fields=["count(*)"]))
        return int(rows[0]["count(*)"]) if rows else 0

    def count(self) -> int:
        return self._count_of(self.collection) if self._exists(self.collection) else 0

    def describe_collections(self) -> list[CollectionInfo]:
        names = sorted(self._call(self.client.list_collections))
        return [CollectionInfo(n, self._count_of(n), self._spec_of(n)) for n in names]

    # -- writes -------------------------------------------------------------------------

    def fetch_states(self, ids: Sequence[str]) -> dict[str, ChunkState]:
        self._load()
        states: dict[str, ChunkState] = {}
        for start in range(0, len(ids), _FETCH_PAGE):
            page = list(ids[start : start + _FETCH_PAGE])
            rows = self._call(
                lambda page=page: self.client.get(
                    self.collection, ids=page, output_fields=["content_hash", "chunk_count"]
                )
            )
            for row in rows:
                states[str(row["id"])] = ChunkState(
                    str(row["content_hash"]), int(row["chunk_count"])
                )
        return states

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        if not records:
            return
        rows = []
        for record in records:
            if len(record.text.encode("utf-8")) > MAX_TEXT_BYTES:
                raise ValueError(
                    f"chunk {record.chunk_index} of document {record.doc_id!r} is longer than "
                    f"Milvus' {MAX_TEXT_BYTES}-byte text limit; use a smaller chunk_size"
                )
            if len(record.doc_id.encode("utf-8")) > MAX_DOC_ID_BYTES:
                raise ValueError(
                    f"document id {record.doc_id[:80]!r}... is longer than {MAX_DOC_ID_BYTES} bytes"
                )
            row = record.payload()
            row["id"] = record.id
            if record.embedding_type == "ubinary":
                row["vector"] = np.asarray(record.vector, dtype=np.uint8).tobytes()
            else:
                row["vector"] = np.asarray(record.vector, dtype=np.float32).tolist()
            rows.append(row)
        self._call(lambda: self.client.upsert(self.collection, rows))

    def delete_stale(self, keep: Mapping[str, int]) -> None:
        if not keep:
            return
        expression = " or ".join(
            f"(doc_id == {_literal(doc_id)} and chunk_index >= {int(count)})"
            for doc_id, count in keep.items()
        )
        self._call(lambda: self.client.delete(self.collection, filter=expression))

    # -- search -------------------------------------------------------------------------

    def search(
        self,
        query: str,
        k: int = 5,
        filter: SearchFilter | str | None = None,
        *,
        model: str | Embedder | None = None,
    ) -> list[Hit]:
        """``filter``: a :data:`SearchFilter` mapping, or a native Milvus boolean expression."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        expression = filter if isinstance(filter, str) else _to_expression(filter)
        spec = self.stored_spec()
        if spec is None:
            return []
        self._load()
        vector = embed_query(query, spec, model)
        if spec.embedding_type == "ubinary":
            data: list[Any] = [np.asarray(vector, dtype=np.uint8).tobytes()]
            metric = "HAMMING"
        else:
            data = [np.asarray(vector, dtype=np.float32).tolist()]
            metric = "COSINE"
        results = self._call(
            lambda: self.client.search(
                self.collection,
                data=data,
                limit=k,
                filter=expression,
                output_fields=["text", "doc_id", "chunk_index", "start", "end", "metadata"],
                search_params={"metric_type": metric},
            )
        )
        hits = []
        for result in results[0]:
            distance = float(result["distance"])
            # Hamming is a distance: turn it into a similarity in [0, 1], higher is better.
            score = 1.0 - distance / spec.vector_bits if metric == "HAMMING" else distance
            hits.append(Hit.from_payload(str(result["id"]), score, result["entity"]))
        return hits


def _literal(value: str | int | float | bool) -> str:
    """A Milvus expression literal. Strings escape only backslash and double quote: the
    expression parser reads other characters as they are (and cannot take line breaks)."""
    if not isinstance(value, str):
        return json.dumps(value)
    if "\n" in value or "\r" in value:
        raise ValueError(f"Milvus filters cannot match strings with line breaks: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _to_expression(filter: SearchFilter | None) -> str:
    """Equality on ``doc_id`` or user metadata; a list of values matches any of them."""
    if not filter:
        return ""
    clauses = []
    for key, is_metadata, values in filter_items(filter):
        field = f"metadata[{_literal(key)}]" if is_metadata else key
        literals = ", ".join(_literal(v) for v in values)
        clauses.append(f"{field} in [{literals}]")
    return " and ".join(clauses)


class JinaEmbeddingFunction:
    """A ``pymilvus.model``-style embedding function backed by the local embedder.

    ``encode_documents`` uses ``retrieval.passage``, ``encode_queries`` ``retrieval.query``,
    ``__call__`` the ``task`` given here. Each returns one float32 vector per text.
    ``late_chunking=True`` makes ``encode_documents``/``__call__`` treat the texts as
    consecutive pieces of one document (as the Jina API does).
    """

    def __init__(
        self,
        model_name: str | Embedder | None = None,
        *,
        task: str = PASSAGE_TASK,
        dimensions: int | None = None,
        late_chunking: bool = False,
    ) -> None:
        self._embedder = resolve_embedder(model_name)
        if task not in self._embedder.tasks:
            raise ValueError(f"unknown task {task!r}; expected one of {self._embedder.tasks}")
        if dimensions is not None and (
            isinstance(dimensions, bool)
            or not isinstance(dimensions, int)
            or not 1 <= dimensions <= self._embedder.dimension
        ):
            raise ValueError(
                f"dimensions must be an integer in [1, {self._embedder.dimension}], "
                f"got {dimensions!r}"
            )
        self.model_name = self._embedder.model_name
        self.task = task
        self.dimensions = dimensions
        self.late_chunking = late_chunking

    @property
    def dim(self) -> int:
        return self.dimensions or self._embedder.dimension

    def _encode(self, texts: Sequence[str], task: str, late_chunking: bool) -> list[np.ndarray]:
        if isinstance(texts, str):
            raise TypeError("pass a list of strings, not a single string")
        if not texts:
            return []
        vectors = self._embedder.encode(
            list(texts), task=task, dimensions=self.dimensions, late_chunking=late_chunking
        )
        return list(np.asarray(vectors, dtype=np.float32))

    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        return self._encode(queries, QUERY_TASK, late_chunking=False)

    def encode_documents(self, documents: Sequence[str]) -> list[np.ndarray]:
        return self._encode(documents, PASSAGE_TASK, self.late_chunking)

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self._encode(texts, self.task, self.late_chunking)
