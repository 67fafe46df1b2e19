"""Scale-out on Ray Data: embed and ingest a ``ray.data.Dataset`` of documents with a pool of
actors, one model each, keeping every guarantee of :func:`jina_connectors.ingest`.

- :func:`embed_dataset`: a Dataset of documents in, a Dataset of embedded chunks out.
- :func:`ingest_dataset`: a Dataset of documents into a sink, with the same ids, content
  hashes, completeness rule, stale-chunk deletion and bad-record handling as ``ingest``;
  :func:`ingest_documents` does the same for what ``ingest`` reads (texts, records, files).
- :func:`connect`: join a Ray cluster, or start a local Ray.

The actors run the pipeline's own stages (:func:`~jina_connectors.ingestion.stages.embed_batch`:
hashing, change detection, embedding with bad-record isolation, the sink's record checks);
writes go through :func:`~jina_connectors.ingestion.writer.write_job`. This module only moves rows
between Ray and those stages.

Documents stay whole: a row is a document, and a batch is whole rows, so late chunking sees
every document entirely in one actor call (never split across two actors' batches).

Where the writes happen (``RayIngestReport.write_path`` says which ran, and why):

- ``"workers"``: a database with a server (a Qdrant URL, a Milvus server URI, Pinecone). Each
  actor opens the sink (:meth:`~jina_connectors.sink.VectorSink.remote_opener`), checks
  which of its documents are already stored complete with the same hash, and embeds only
  the others; Ray ``Datasink`` write tasks write the chunks.
- ``"driver"``: an embedded database (a Qdrant folder or ``:memory:``, a Milvus Lite file, or
  a sink given a client object), which only the process that opened it may use. A first
  pass of Ray tasks hashes every document; the driver looks the hashes up in the database
  and hands the actors the ids still to embed (so unchanged documents are not embedded
  here either); the driver then streams the actors' output (``iter_batches``) through the
  pipeline's :class:`~jina_connectors.ingestion.writer.BackgroundWriter`. The input dataset is read
  twice; ``ds.materialize()`` it first if reading it is expensive.

Resources (see :func:`plan_actors`): actors reserve fractional CPUs, so that the read tasks and
the write tasks (:data:`TASK_CPUS` each) always find room next to them (on 2 cores, two
actors at 1 CPU each would leave the read tasks none, and the pipeline would stall).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

try:
    import numpy as np
    import pyarrow as pa
    import ray
    import ray.data
    from ray.data import ActorPoolStrategy, Dataset, TaskPoolStrategy
    from ray.data.block import BlockAccessor
    from ray.data.datasource import Datasink
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "jina_connectors.ray needs Ray Data: pip install 'jina-connectors[ray]'"
    ) from error

from .._loading import deferred_embedder
from ..errors import EmptyDocumentError, InvalidDocumentError
from ..ingestion.documents import (
    CheckedSources,
    Document,
    DocumentSource,
    check_sources,
    iter_documents,
    text_document_id,
)
from ..ingestion.options import (
    BadRecords,
    EmbeddingSettings,
    IngestOptions,
    RayOptions,
    bad_record_logger,
    sink_options,
)
from ..ingestion.run import IngestReport, check_id_scheme, delete_unseen
from ..ingestion.stages import (
    PreparedDocument,
    changed_documents,
    check_records,
    embed_batch,
    metadata_error,
    prepare_document,
)
from ..ingestion.writer import BackgroundWriter, WriteJob, write_job
from ..sink import ChunkRecord, VectorSink

if TYPE_CHECKING:
    from embedder_core import Embedder

__all__ = [
    "CHUNK_COLUMNS",
    "TASK_CPUS",
    "ActorResources",
    "RayIngestReport",
    "RayOptions",
    "actor_resources",
    "check_actor_options",
    "connect",
    "embed_dataset",
    "ingest_dataset",
    "ingest_documents",
    "plan_actors",
]

logger = logging.getLogger(__name__)

#: Columns of :func:`embed_dataset`'s output, one row per chunk. ``metadata`` is the
#: document's metadata as a JSON object (text): Arrow would merge the differing keys of
#: documents into one struct, filling the missing ones with nulls.
CHUNK_COLUMNS = (
    "id",
    "doc_id",
    "chunk_index",
    "chunk_count",
    "start",
    "end",
    "text",
    "embedding",
    "content_hash",
    "metadata",
)
#: Ray CPUs of each hashing task (the driver path's first pass) and each write task. They
#: wait on the database more than they compute; a fraction lets them run beside the actors.
TASK_CPUS = 0.25
#: Write tasks at a time, per actor: enough to keep up with embedding when a write takes as
#: long as embedding a batch, and few worker processes to start on a small machine.
WRITES_PER_ACTOR = 2
#: Ray CPUs an actor pool leaves to the read tasks (Ray Data reads with 1 CPU per task).
READ_RESERVE_CPUS = 1.0

# Rows of the ingestion stream besides chunks: one per document left out as unchanged, one
# per bad record (counted as a document when it was a valid one, as ``ingest`` counts them).
_CHUNK, _SKIPPED, _BAD_DOCUMENT, _BAD_RECORD = "chunk", "skipped", "bad-document", "bad-record"
_STATUS_COLUMNS = ("kind", "record", "error")


# --------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActorResources:
    """The actor pool: ``actors`` actors, each reserving ``cpus`` Ray CPUs and ``gpus`` GPUs
    (None: no GPU), running the model on ``device`` with ``threads`` torch threads (None:
    as Ray sets them, one per reserved CPU)."""

    actors: int
    cpus: float
    gpus: float | None
    threads: int | None
    device: Literal["cpu", "cuda"]


def plan_actors(
    *,
    actors: int | None,
    gpus_per_actor: float | None,
    cpus_per_actor: float | None,
    cluster_cpus: float,
    cluster_gpus: float,
    nodes: int,
) -> ActorResources:
    """The actor pool for a cluster of ``nodes`` nodes with these CPUs and GPUs.

    - GPU actors (``gpus_per_actor`` set): ``actors`` defaults to as many as the GPUs hold
      (``floor(cluster_gpus / gpus_per_actor)``), each with 1 CPU for tokenization unless
      ``cpus_per_actor`` says otherwise. A fraction below 1 puts several actors (several
      models) on one GPU.
    - CPU actors: ``actors`` defaults to one per node (one model using all of a node's cores
      beats several sharing them). Each reserves ``(cluster_cpus - 1) / actors`` CPUs, so
      that one read task (1 CPU) always fits beside the pool, and runs torch with
      ``floor(cluster_cpus / actors)`` threads: the model gets its share of the cores while
      the read and write tasks, which mostly wait, borrow them. On 2 cores: one actor
      reserving 1 CPU and computing on 2 threads. A given ``cpus_per_actor`` is reserved as
      is, with ``ceil(cpus_per_actor)`` threads.

    A pool larger than the cluster is not an error (an autoscaling cluster grows to fit it)
    but is logged: on a fixed cluster the missing actors never start.
    """
    check_actor_options(actors, gpus_per_actor, cpus_per_actor)
    if gpus_per_actor is not None:
        if actors is None:
            actors = int(cluster_gpus // gpus_per_actor)
            if actors < 1:
                raise ValueError(
                    f"the Ray cluster has {cluster_gpus:g} GPUs: no actor fits with "
                    f"gpus_per_actor={gpus_per_actor:g}"
                )
        cpus = 1.0 if cpus_per_actor is None else float(cpus_per_actor)
        plan = ActorResources(actors, cpus, float(gpus_per_actor), None, "cuda")
        if actors * gpus_per_actor > cluster_gpus + 1e-9:
            logger.warning(
                "%d actors at %g GPUs each need %g GPUs; the Ray cluster has %g",
                actors,
                gpus_per_actor,
                actors * gpus_per_actor,
                cluster_gpus,
            )
        return plan
    if actors is None:
        actors = max(1, nodes)
    if cpus_per_actor is None:
        reserve = min(READ_RESERVE_CPUS, cluster_cpus / 2)
        # Ray resolves fractions to 1/10000; two decimals keep the plan readable.
        cpus = max(0.01, math.floor(100 * (cluster_cpus - reserve) / actors) / 100)
        threads = max(1, int(cluster_cpus // actors))
    else:
        cpus = float(cpus_per_actor)
        threads = max(1, math.ceil(cpus_per_actor))
    if actors * cpus > cluster_cpus + 1e-9:
        logger.warning(
            "%d actors at %g CPUs each need %g CPUs; the Ray cluster has %g",
            actors,
            cpus,
            actors * cpus,
            cluster_cpus,
        )
    return ActorResources(actors, cpus, None, threads, "cpu")


def check_actor_options(
    actors: int | None, gpus_per_actor: float | None, cpus_per_actor: float | None
) -> None:
    """Raise :class:`~jina_connectors.errors.OptionError` (a ``ValueError``) for an actor
    pool option that is not a positive number (or None), before any Ray work."""
    RayOptions(actors, gpus_per_actor, cpus_per_actor)


def actor_resources(
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
) -> ActorResources:
    """:func:`plan_actors` for the Ray cluster this process is connected to (connecting as
    :func:`connect` does when it is not)."""
    check_actor_options(actors, gpus_per_actor, cpus_per_actor)
    connect()
    resources = ray.cluster_resources()
    nodes = sum(
        1 for node in ray.nodes() if node.get("Alive") and node["Resources"].get("CPU", 0) > 0
    )
    return plan_actors(
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=cpus_per_actor,
        cluster_cpus=float(resources.get("CPU", 0.0)),
        cluster_gpus=float(resources.get("GPU", 0.0)),
        nodes=nodes,
    )


def connect(address: str | None = None, **init_options: Any) -> None:
    """Join the Ray cluster at ``address`` (the one ``ray start --head`` prints, or
    ``ray://...`` for Ray Client), or, with None, the one Ray finds by itself
    (``$RAY_ADDRESS``, a cluster started on this machine with ``ray start``), else start a
    local Ray. Does nothing when this process is already connected. ``init_options`` go to
    ``ray.init`` (``num_cpus=2`` for a local Ray on a small machine)."""
    if ray.is_initialized():
        return
    ray.init(address=address, **init_options)


@dataclass(frozen=True)
class _Columns:
    """Which input columns hold the text, the id and (optionally) the record name."""

    text: str
    id: str
    record: str | None

    def special(self) -> set[str]:
        return {self.text, self.id, *([self.record] if self.record else [])}


def _columns(text_column: str, id_column: str, record_column: str | None) -> _Columns:
    for name, value in (("text_column", text_column), ("id_column", id_column)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if record_column is not None and (not isinstance(record_column, str) or not record_column):
        raise ValueError(f"record_column must be a non-empty string or None, got {record_column!r}")
    names = [text_column, id_column, *([record_column] if record_column else [])]
    if len(set(names)) != len(names):
        raise ValueError(f"text_column, id_column and record_column must differ, got {names}")
    return _Columns(text_column, id_column, record_column)


def _check_dataset(ds: Any, columns: _Columns) -> None:
    """A Dataset with a text column (an id column is optional: ids then come from the text,
    as for ``ingest``'s records without one)."""
    if not isinstance(ds, Dataset):
        raise TypeError(f"expected a ray.data.Dataset, got {type(ds).__name__}")
    schema = ds.schema()
    if schema is None:
        return  # nothing known before execution; rows are checked one by one
    names = list(schema.names)
    if columns.text not in names:
        raise ValueError(f"the dataset has no {columns.text!r} column (columns: {names})")
    if columns.record is not None and columns.record not in names:
        raise ValueError(f"the dataset has no {columns.record!r} column (columns: {names})")


@dataclass(frozen=True)
class _Options:
    """Everything checked and resolved on the driver before any Ray work."""

    embedder: Embedder
    settings: EmbeddingSettings
    columns: _Columns
    resources: ActorResources
    options: IngestOptions

    @property
    def batch_size(self) -> int:
        return self.options.batch_size

    def job(self, **fields: Any) -> _EmbedJob:
        """The actors' job: this model's settings, and its quantization when the caller
        passed an ``Embedder`` loaded with one (``quantization="int8"``)."""
        return _EmbedJob(
            self.settings,
            self.columns,
            self.resources.device,
            self.resources.threads,
            quantization=getattr(self.embedder, "quantization", None),
            on_error=self.options.on_error,
            **fields,
        )


def _driver_embedder(model: str | os.PathLike[str] | Embedder | None) -> Embedder:
    """The model as the driver sees it: a given embedder, or the named model described from
    its configuration (loaded here, on CPU, only if a check needs its weights: the actors
    load their own)."""
    if model is None or isinstance(model, (str, os.PathLike)):
        return deferred_embedder(  # type: ignore[return-value]
            None if model is None else os.fspath(model), device="cpu"
        )
    return model


def _resolve(
    model: str | Embedder | None,
    options: IngestOptions,
    columns: _Columns,
    pool: RayOptions,
    settings: EmbeddingSettings | None = None,
) -> _Options:
    """The model check (unless the caller made ``settings`` already), then the cluster."""
    embedder = _driver_embedder(model)
    if settings is None:
        settings = options.settings(embedder)
    resources = actor_resources(pool.actors, pool.gpus_per_actor, pool.cpus_per_actor)
    return _Options(embedder, settings, columns, resources, options)


# --------------------------------------------------------------------------------------
# Rows <-> documents and records
# --------------------------------------------------------------------------------------


def _document_of_row(row: Mapping[str, Any], columns: _Columns) -> Document:
    """A row as ``ingest`` reads a record: the other columns are metadata, merged with a
    ``metadata`` column's object (a mapping, or JSON text)."""
    text = row.get(columns.text)
    doc_id = row.get(columns.id)
    if doc_id is None and isinstance(text, str):
        doc_id = text_document_id(text)
    record = row.get(columns.record) if columns.record else None
    if record:
        name = str(record)
    elif doc_id is not None:
        name = f"{columns.id}={doc_id!r}"
    else:
        name = f"{columns.text}={str(text)[:40]!r}"
    special = columns.special()
    metadata = {k: v for k, v in row.items() if k not in special and k != "metadata"}
    if "metadata" in row and "metadata" not in special:
        value = row["metadata"]
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InvalidDocumentError(name, f"'metadata' is not JSON: {exc.msg}") from None
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise InvalidDocumentError(
                name, f"'metadata' must be an object, got {type(value).__name__}"
            )
        metadata.update(value)
    return Document(doc_id, text, metadata, name)  # type: ignore[arg-type]  # checked next


def _read_rows(table: pa.Table, columns: _Columns) -> list[Document | InvalidDocumentError]:
    """The rows of a batch as validated documents (``iter_documents``' checks, duplicate ids
    within the batch included), or the bad record each row is."""
    errors: list[InvalidDocumentError] = []
    documents: list[Document] = []
    for row in table.to_pylist():
        try:
            documents.append(_document_of_row(row, columns))
        except InvalidDocumentError as error:
            errors.append(error)
    return [*errors, *iter_documents(documents)]


def _metadata_json(metadata: Mapping[str, Any]) -> str:
    return json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False)


def _vector_width(settings: EmbeddingSettings) -> int:
    return (
        -(-settings.dimensions // 8)
        if settings.embedding_type == "ubinary"
        else (settings.dimensions)
    )


def _vector_dtype(settings: EmbeddingSettings) -> type[np.generic]:
    return np.uint8 if settings.embedding_type == "ubinary" else np.float32


@dataclass
class _Rows:
    """Output rows under construction: chunks, then (in the ingestion stream) statuses."""

    settings: EmbeddingSettings
    with_status: bool
    columns: dict[str, list[Any]] = field(default_factory=dict)
    vectors: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [c for c in CHUNK_COLUMNS if c != "embedding"]
        names += list(_STATUS_COLUMNS) if self.with_status else []
        self.columns = {name: [] for name in names}

    def add_document(self, prepared: PreparedDocument, records: Sequence[ChunkRecord]) -> None:
        metadata = _metadata_json(prepared.document.metadata)
        for record in records:
            self._add(
                id=record.id,
                doc_id=record.doc_id,
                chunk_index=record.chunk_index,
                chunk_count=record.chunk_count,
                start=record.start,
                end=record.end,
                text=record.text,
                content_hash=record.content_hash,
                metadata=metadata,
                kind=_CHUNK,
                record=prepared.source,
                error="",
                vector=np.asarray(record.vector, dtype=_vector_dtype(self.settings)),
            )

    def add_status(self, kind: str, record: str = "", error: str = "", doc_id: str = "") -> None:
        width = _vector_width(self.settings)
        self._add(
            id="",
            doc_id=doc_id,
            chunk_index=-1,
            chunk_count=0,
            start=0,
            end=0,
            text="",
            content_hash="",
            metadata="{}",
            kind=kind,
            record=record,
            error=error,
            vector=np.zeros(width, dtype=_vector_dtype(self.settings)),
        )

    def _add(self, *, vector: np.ndarray, **values: Any) -> None:
        for name, column in self.columns.items():
            column.append(values[name])
        self.vectors.append(vector)

    def batch(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, column in self.columns.items():
            if name in ("chunk_index", "chunk_count", "start", "end"):
                out[name] = np.asarray(column, dtype=np.int64)
            else:
                out[name] = np.asarray(column, dtype=object)
        width = _vector_width(self.settings)
        dtype = _vector_dtype(self.settings)
        out["embedding"] = (
            np.stack(self.vectors) if self.vectors else np.zeros((0, width), dtype=dtype)
        )
        return {name: out[name] for name in (*CHUNK_COLUMNS, *self.columns) if name in out}


@dataclass(frozen=True)
class _Source:
    """A document named for error messages (what :func:`check_records` needs)."""

    source: str


@dataclass
class _Stream:
    """What a batch of the ingestion stream holds, read back into the pipeline's terms."""

    documents: list[tuple[_Source, list[ChunkRecord]]] = field(default_factory=list)
    bad: list[tuple[InvalidDocumentError, bool]] = field(default_factory=list)  # (error, counted)
    skipped: int = 0
    embedded: int = 0  # documents whose chunk 0 is here

    @property
    def chunks(self) -> int:
        return sum(len(records) for _, records in self.documents)


def _read_stream(batch: Mapping[str, np.ndarray], settings: EmbeddingSettings) -> _Stream:
    """Group a batch's chunk rows per document (in order) into records; collect statuses."""
    stream = _Stream()
    kinds = batch["kind"]
    by_doc: dict[str, tuple[_Source, list[ChunkRecord]]] = {}
    metadata_of: dict[str, Mapping[str, Any]] = {}
    for i, kind in enumerate(kinds):
        if kind == _SKIPPED:
            stream.skipped += 1
            continue
        if kind in (_BAD_DOCUMENT, _BAD_RECORD):
            error = InvalidDocumentError(str(batch["record"][i]), str(batch["error"][i]))
            stream.bad.append((error, kind == _BAD_DOCUMENT))
            continue
        doc_id = str(batch["doc_id"][i])
        if doc_id not in metadata_of:
            metadata_of[doc_id] = json.loads(batch["metadata"][i])
        index = int(batch["chunk_index"][i])
        if index == 0:
            stream.embedded += 1
        record = ChunkRecord(
            id=str(batch["id"][i]),
            vector=np.asarray(batch["embedding"][i]),
            text=str(batch["text"][i]),
            doc_id=doc_id,
            chunk_index=index,
            chunk_count=int(batch["chunk_count"][i]),
            start=int(batch["start"][i]),
            end=int(batch["end"][i]),
            content_hash=str(batch["content_hash"][i]),
            metadata=metadata_of[doc_id],
            model=settings.model,
            task=settings.task,
            dimensions=settings.dimensions,
            embedding_type=settings.embedding_type,
        )
        entry = by_doc.get(doc_id)
        if entry is None:
            entry = by_doc[doc_id] = (_Source(str(batch["record"][i])), [])
        entry[1].append(record)
    stream.documents = list(by_doc.values())
    return stream


def _write_job_of(
    documents: Sequence[tuple[_Source, list[ChunkRecord]]], completes: int
) -> WriteJob:
    return WriteJob.of(
        [(source.source, records) for source, records in documents], completes=completes
    )


# --------------------------------------------------------------------------------------
# The actor
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EmbedJob:
    """What every actor gets (pickled once per actor)."""

    settings: EmbeddingSettings
    columns: _Columns
    device: str
    threads: int | None
    quantization: str | None = None
    #: Opens the sink in the actor (the workers path): change detection and record checks.
    opener: Callable[[], VectorSink] | None = None
    #: Emit status rows (the ingestion stream) besides chunks.
    with_status: bool = False
    on_error: str = "skip"


class _DocumentEmbedder:
    """A Ray Data actor: one model (``get_embedder`` in the constructor) that embeds batches
    of document rows through :func:`~jina_connectors.ingestion.stages.embed_batch`.

    ``todo`` (the driver path): the ids still to embed, as the driver found them; every
    other row was counted, skipped or reported by the driver's first pass and is dropped.
    """

    def __init__(self, job: _EmbedJob, todo: Any = None) -> None:
        from embedder_core import get_embedder

        if job.threads is not None:
            import torch

            torch.set_num_threads(job.threads)
        settings = job.settings
        self._job = job
        self._embedder = get_embedder(
            settings.model, device=job.device, quantization=job.quantization
        )
        if self._embedder.model_name != settings.model:  # pragma: no cover - defensive
            raise RuntimeError(
                f"this worker loaded {self._embedder.model_name!r} for {settings.model!r}"
            )
        if self._embedder.dimension < settings.dimensions:
            raise RuntimeError(
                f"the model {settings.model!r} on this worker gives {self._embedder.dimension} "
                f"dimensions, fewer than {settings.dimensions}: is it the driver's checkpoint?"
            )
        self._sink = job.opener() if job.opener is not None else None
        if isinstance(todo, ray.ObjectRef):
            todo = ray.get(todo)
        self._todo: frozenset[str] | None = todo

    def __call__(self, table: pa.Table) -> dict[str, np.ndarray]:
        job = self._job
        rows = _Rows(job.settings, job.with_status)
        # Raised (on_error="raise"), or reported as status rows (the ingestion stream),
        # else logged here.
        policy = BadRecords(job.on_error, log=not job.with_status)
        statuses: list[tuple[str, InvalidDocumentError]] = []

        def bad(kind: str, error: InvalidDocumentError) -> None:
            policy.add(error)
            statuses.append((kind, error))

        documents: list[Document] = []
        for item in _read_rows(table, job.columns):
            if self._todo is not None:  # the driver's first pass has seen every row
                if isinstance(item, Document) and item.id in self._todo:
                    documents.append(item)
                continue
            if isinstance(item, Document) and self._sink is not None:
                item = metadata_error(self._sink, item) or item
            if isinstance(item, InvalidDocumentError):
                bad(_BAD_RECORD, item)
            else:
                documents.append(item)

        def on_bad(error: InvalidDocumentError) -> None:
            bad(_BAD_DOCUMENT, error)

        # With a sink (the workers path): only changed documents, checked against its
        # limits. Without (embed_dataset, the driver path): every document given.
        result = embed_batch(self._embedder, job.settings, documents, on_bad, sink=self._sink)
        for kind, error in statuses if job.with_status else ():
            rows.add_status(kind, error.record, error.reason)
        for _ in range(result.skipped):
            rows.add_status(_SKIPPED)
        for prepared, records in result.embedded:
            rows.add_document(prepared, records)
        return rows.batch()


def _embedded(ds: Dataset, options: _Options, job: _EmbedJob, todo: Any = None) -> Dataset:
    plan = options.resources
    kwargs: dict[str, Any] = {"job": job}
    if todo is not None:
        kwargs["todo"] = todo
    return ds.map_batches(
        _DocumentEmbedder,
        fn_constructor_kwargs=kwargs,
        compute=ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.cpus,
        num_gpus=plan.gpus,
        batch_size=options.batch_size,
        batch_format="pyarrow",
    )


# --------------------------------------------------------------------------------------
# embed_dataset
# --------------------------------------------------------------------------------------


def embed_dataset(
    ds: Dataset,
    *,
    text_column: str = "text",
    id_column: str = "id",
    record_column: str | None = None,
    model: str | Embedder | None = None,
    options: IngestOptions | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
    **keywords: Any,
) -> Dataset:
    """A Dataset of the chunks of ``ds``'s documents, embedded by a pool of actors.

    Input: one row per document; ``text_column`` holds its text, ``id_column`` its id (a
    string; a missing column or a null id gets the id ``ingest`` gives a bare text), and
    every other column is metadata, as the extra keys of an ``ingest`` record are (a
    ``metadata`` column may hold a mapping or a JSON object, merged in). ``record_column``:
    a column naming each row in error messages (default: its id).

    Output: one row per chunk with the columns of :data:`CHUNK_COLUMNS`: ``id`` (the UUID5
    ``ingest`` writes), ``doc_id``, ``chunk_index``, ``chunk_count``, ``start``/``end``
    (character offsets), ``text``, ``embedding`` (float32 ``(dimensions,)``, or uint8 packed
    bits for ``"ubinary"``), ``content_hash`` (``ingest``'s, for these settings) and
    ``metadata`` (JSON text).

    The options (keywords, or ``options=IngestOptions(...)``) mean what they mean for
    :func:`~jina_connectors.ingest` (``task`` may be any of the model's tasks);
    ``batch_size`` is documents per actor call. Each actor loads
    ``model`` once (``embedder_core.get_embedder``, by the canonical id the driver resolved:
    a directory must exist at the same path on every node, a Hub id in each node's cache).
    See :func:`plan_actors` for ``actors``, ``gpus_per_actor`` and ``cpus_per_actor``.

    Bad records (invalid rows, documents the model rejects as input) yield no chunks: each
    is logged as a warning by its worker (``"skip"``), or fails the job (``"raise"``).
    Nothing runs until the returned Dataset is consumed; the settings are checked now
    against the model, which this process loads once, on CPU, to do so (or pass a loaded
    ``Embedder``: its ``model_name`` is what the actors load).
    """
    checked = IngestOptions.of(options, **keywords)
    pool = RayOptions(actors, gpus_per_actor, cpus_per_actor)
    columns = _columns(text_column, id_column, record_column)
    _check_dataset(ds, columns)
    run = _resolve(model, checked, columns, pool)
    return _embedded(ds, run, run.job())


# --------------------------------------------------------------------------------------
# ingest_dataset
# --------------------------------------------------------------------------------------


@dataclass
class RayIngestReport(IngestReport):
    """:class:`~jina_connectors.ingestion.run.IngestReport` of a Ray run, plus where the writes
    ran (``"workers"``: Ray write tasks; ``"driver"``: this process's background writer),
    why, and the actor pool used."""

    write_path: Literal["workers", "driver"] = "driver"
    write_path_reason: str = ""
    resources: ActorResources | None = None


@contextlib.contextmanager
def _run_context(ds: Dataset, show_progress: bool) -> Iterator[None]:
    """Ray Data's settings for one run of ours, restored after: its progress bars on or off,
    and the actors' own exceptions raised as they are (an ``InvalidDocumentError`` of
    ``on_error="raise"``), not wrapped in a ``UserCodeException`` that loses them."""
    context = ds.context
    saved = context.enable_progress_bars, context.raise_original_map_exception
    context.enable_progress_bars = show_progress
    context.raise_original_map_exception = True
    try:
        yield
    finally:
        context.enable_progress_bars, context.raise_original_map_exception = saved


def ingest_dataset(
    ds: Dataset,
    sink: VectorSink,
    *,
    text_column: str = "text",
    id_column: str = "id",
    record_column: str | None = None,
    model: str | Embedder | None = None,
    options: IngestOptions | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
    **keywords: Any,
) -> RayIngestReport:
    """Chunk, embed (``retrieval.passage``) and write the documents of ``ds`` into ``sink``
    with a pool of Ray actors; the same result as :func:`~jina_connectors.ingest` on the
    same documents: the same point ids, payloads and vectors, unchanged documents skipped
    (not embedded), changed ones rewritten with their stale chunks deleted, safe to kill
    and re-run.

    Input rows and the options are those of :func:`embed_dataset`; ``write_batch_size``,
    ``max_pending_batches`` (the driver path's background writer), ``on_error`` and
    ``show_progress`` (Ray Data's progress bars, and the driver path's bar) those of
    ``ingest``. Document ids must be unique: two rows with one id in the same batch are
    bad records, as in ``ingest``; across batches, the driver path reports every row of a
    repeated id, the workers path cannot see them (deduplicate first).

    Where the writes run is ``report.write_path`` (see the module docs): from the workers
    for a database with a server (``sink.remote_opener()``), else from this process.
    """
    checked = sink_options(options, keywords)
    pool = RayOptions(actors, gpus_per_actor, cpus_per_actor)
    columns = _columns(text_column, id_column, record_column)
    _check_dataset(ds, columns)
    return _ingest_dataset(ds, sink, _resolve(model, checked, columns, pool))


def _ingest_dataset(ds: Dataset, sink: VectorSink, run: _Options) -> RayIngestReport:
    """:func:`ingest_dataset` on checked options."""
    sink.ensure_collection(run.settings.spec)
    started = time.perf_counter()
    opener = sink.remote_opener()
    if opener is not None:
        report = _ingest_from_workers(ds, run, opener)
        report.write_path_reason = (
            f"{sink!r} is a database server every worker can reach: the actors check and "
            "embed, Ray write tasks write"
        )
    else:
        report = _ingest_from_driver(ds, sink, run)
        report.write_path_reason = (
            f"{sink!r} is an embedded database (or a client object) that only this process "
            "may open: the driver checks and writes, the actors embed"
        )
    report.resources = run.resources
    report.seconds = time.perf_counter() - started
    return report


# -- the workers path --------------------------------------------------------------------


@dataclass
class _WriteSummary:
    """What one write task did (returned to the driver)."""

    documents: int = 0
    skipped: int = 0
    chunks: int = 0
    points_written: int = 0
    errors: list[InvalidDocumentError] = field(default_factory=list)


class _ChunkDatasink(Datasink[_WriteSummary]):
    """Writes the ingestion stream from Ray write tasks: each task opens the sink, writes
    every block's documents as one :func:`~jina_connectors.ingestion.writer.write_job`
    (upserts, then the stale-chunk deletion), and returns its counts and bad records."""

    def __init__(
        self,
        opener: Callable[[], VectorSink],
        settings: EmbeddingSettings,
        *,
        write_batch_size: int,
        on_error: str,
    ) -> None:
        self._opener = opener
        self._settings = settings
        self._write_batch_size = write_batch_size
        self._on_error = on_error
        self.summary = _WriteSummary()

    def get_name(self) -> str:
        return "JinaConnectorsSink"

    def write(self, blocks: Iterable[Any], ctx: Any) -> _WriteSummary:
        summary = _WriteSummary()
        # Raised, or returned to the driver (which logs them).
        bad = BadRecords(self._on_error, summary.errors, log=False)
        sink = self._opener()
        try:
            for block in blocks:
                accessor = BlockAccessor.for_block(block)
                if accessor.num_rows() == 0:
                    continue
                stream = _read_stream(accessor.to_numpy(), self._settings)
                summary.skipped += stream.skipped
                summary.chunks += stream.chunks
                summary.documents += stream.skipped + stream.embedded
                for error, counted in stream.bad:
                    summary.documents += counted
                    bad.add(error)
                if stream.documents:
                    outcome = write_job(
                        sink,
                        _write_job_of(stream.documents, 0),
                        write_batch_size=self._write_batch_size,
                    )
                    summary.points_written += outcome.points_written
                    for error in outcome.errors:
                        bad.add(error)
        finally:
            sink.close()
        return summary

    def on_write_complete(self, write_result: Any) -> None:
        for part in write_result.write_returns:
            self.summary.documents += part.documents
            self.summary.skipped += part.skipped
            self.summary.chunks += part.chunks
            self.summary.points_written += part.points_written
            self.summary.errors.extend(part.errors)


def _invalid_document_in(error: BaseException) -> InvalidDocumentError | None:
    """The InvalidDocumentError a failed Ray job was failed by (Ray wraps it), if any."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, InvalidDocumentError):
            return InvalidDocumentError(current.record, current.reason)
        pending += [current.__cause__, current.__context__, getattr(current, "cause", None)]
    return None


def _ingest_from_workers(
    ds: Dataset, options: _Options, opener: Callable[[], VectorSink]
) -> RayIngestReport:
    on_error = options.options.on_error
    job = options.job(opener=opener, with_status=True)
    datasink = _ChunkDatasink(
        opener,
        options.settings,
        write_batch_size=options.options.write_batch_size,
        on_error=on_error,
    )
    with _run_context(ds, options.options.show_progress):
        try:
            _embedded(ds, options, job).write_datasink(
                datasink,
                ray_remote_args={"num_cpus": TASK_CPUS},
                concurrency=WRITES_PER_ACTOR * options.resources.actors,
            )
        except Exception as error:
            bad = _invalid_document_in(error) if on_error == "raise" else None
            if bad is not None:
                raise bad from error
            raise
    summary = datasink.summary
    report = RayIngestReport(write_path="workers")
    report.documents = summary.documents
    report.skipped = summary.skipped
    report.chunks = summary.chunks
    report.points_written = summary.points_written
    for error in summary.errors:
        bad_record_logger.warning("skipped bad record %s", error)
    report.errors = list(summary.errors)
    return report


# -- the driver path ---------------------------------------------------------------------


def _hash_rows(
    table: pa.Table, settings: EmbeddingSettings, columns: _Columns
) -> dict[str, np.ndarray]:
    """The driver path's first pass (a Ray task): each row's id, content hash, metadata and
    name, or the bad record it is (``counted``: a valid document that failed later)."""
    out: dict[str, list[Any]] = {
        "doc_id": [],
        "content_hash": [],
        "metadata": [],
        "record": [],
        "error": [],
        "counted": [],
    }

    def add(
        doc_id: str, digest: str, metadata: str, record: str, error: str, counted: bool
    ) -> None:
        for name, value in zip(out, (doc_id, digest, metadata, record, error, counted)):
            out[name].append(value)

    for item in _read_rows(table, columns):
        if isinstance(item, InvalidDocumentError):
            add("", "", "", item.record, item.reason, False)
            continue
        try:
            prepared = prepare_document(item, settings)
        except InvalidDocumentError as error:
            add(item.id, "", "", error.record, error.reason, True)
            continue
        record = item.record or item.id
        add(item.id, prepared.content_hash, _metadata_json(item.metadata), record, "", True)
    return {
        name: np.asarray(values, dtype=bool if name == "counted" else object)
        for name, values in out.items()
    }


@dataclass
class _Seen:
    content_hash: str
    record: str
    rows: list[str]


def _documents_to_embed(
    ds: Dataset,
    sink: VectorSink,
    options: _Options,
    report: RayIngestReport,
    bad: Callable[[InvalidDocumentError], None],
) -> set[str]:
    """The first pass: hash every row in Ray tasks; here, check metadata against the sink,
    find repeated ids, and look the hashes up (:func:`changed_documents`). Returns the ids
    to embed; counts documents and skipped ones into ``report``."""
    hashes = ds.map_batches(
        _hash_rows,
        fn_kwargs={"settings": options.settings, "columns": options.columns},
        batch_format="pyarrow",
        num_cpus=TASK_CPUS,
        # One task per core the pool has: hashing is cheap, and each task is a process.
        compute=TaskPoolStrategy(
            size=max(1, options.resources.threads or 1) * options.resources.actors
        ),
    )
    seen: dict[str, _Seen] = {}
    for batch in hashes.iter_batches(batch_size=1024, batch_format="numpy"):
        for i in range(len(batch["doc_id"])):
            record = str(batch["record"][i])
            if batch["error"][i]:
                report.documents += bool(batch["counted"][i])
                bad(InvalidDocumentError(record, str(batch["error"][i])))
                continue
            doc_id = str(batch["doc_id"][i])
            metadata = json.loads(batch["metadata"][i])
            problem = metadata_error(sink, Document(doc_id, "", metadata, record))
            if problem is not None:
                bad(problem)
                continue
            if doc_id in seen:
                seen[doc_id].rows.append(record)
            else:
                seen[doc_id] = _Seen(str(batch["content_hash"][i]), record, [record])
    unique: list[PreparedDocument] = []
    for doc_id, entry in seen.items():
        if len(entry.rows) > 1:
            for record in entry.rows:
                bad(
                    InvalidDocumentError(
                        record,
                        f"duplicate document id {doc_id!r} ({len(entry.rows)} rows: "
                        f"{', '.join(entry.rows[:5])})",
                    )
                )
            continue
        report.documents += 1
        document = Document(doc_id, "", {}, entry.record)
        unique.append(PreparedDocument(document, entry.content_hash))
    todo: set[str] = set()
    page = 1000
    for start in range(0, len(unique), page):
        changed = changed_documents(sink, unique[start : start + page])
        todo.update(p.document.id for p in changed)
    report.skipped += len(unique) - len(todo)
    return todo


def _ingest_from_driver(ds: Dataset, sink: VectorSink, options: _Options) -> RayIngestReport:
    from tqdm import tqdm

    run = options.options
    on_error, show_progress = run.on_error, run.show_progress
    report = RayIngestReport(write_path="driver")
    policy = run.bad_records()
    report.errors = policy.errors
    lock = threading.Lock()  # the writer thread reports too
    bad = policy.add

    with _run_context(ds, show_progress):
        todo = _documents_to_embed(ds, sink, options, report, bad)
        if not todo:
            return report
        job = options.job(with_status=True)
        chunks = _embedded(ds, options, job, todo=ray.put(frozenset(todo)))
        with tqdm(
            desc=f"ingest → {sink.collection}",
            total=len(todo),
            unit="doc",
            disable=not show_progress,
            dynamic_ncols=True,
        ) as bar:

            def on_written(documents: int, points: int) -> None:
                with lock:
                    report.points_written += points
                bar.update(documents)

            with BackgroundWriter(
                sink,
                write_batch_size=run.write_batch_size,
                max_pending=run.max_pending_batches,
                on_written=on_written,
                on_bad=bad,
            ) as writer:
                try:
                    batches = chunks.iter_batches(batch_size=None, batch_format="numpy")
                    for batch in batches:
                        if not len(batch["kind"]):
                            continue
                        stream = _read_stream(batch, options.settings)
                        for error, _ in stream.bad:
                            bad(error)
                        accepted = check_records(sink, stream.documents, bad)
                        job_ = _write_job_of(accepted, stream.embedded)
                        report.chunks += len(job_.records)
                        writer.put(job_)
                except Exception as error:
                    found = _invalid_document_in(error) if on_error == "raise" else None
                    if found is not None:
                        raise found from error
                    raise
    return report


# --------------------------------------------------------------------------------------
# ingest_documents: what `ingest` reads, on Ray
# --------------------------------------------------------------------------------------

_RECORD_COLUMN = "record"


def _all_stored_unchanged(
    rows: list[dict[str, Any]], sink: VectorSink, settings: EmbeddingSettings
) -> RayIngestReport | None:
    """When every row is stored complete with its content hash, the report of a run that
    skips them all (no Ray started, no model loaded); else None (a custom chunker, whose
    spans are the user's code, is left to the actors)."""
    if not rows or settings.custom_chunker is not None:
        return None
    started = time.perf_counter()
    if not sink.check_collection(settings.spec):
        return None  # a new collection: everything is to embed
    prepared = [
        prepare_document(
            Document(row["id"], row["text"], json.loads(row["metadata"]), row[_RECORD_COLUMN]),
            settings,
        )
        for row in rows
    ]
    page = 1000
    for start in range(0, len(prepared), page):
        if changed_documents(sink, prepared[start : start + page]):
            return None
    return RayIngestReport(
        documents=len(rows),
        skipped=len(rows),
        completed=len(rows),
        seconds=time.perf_counter() - started,
        write_path="driver",
        write_path_reason="every document is stored unchanged (by its content hash), so no "
        "Ray work ran",
    )


def ingest_documents(
    documents: DocumentSource | Iterable[DocumentSource] | CheckedSources,
    sink: VectorSink,
    *,
    model: str | Embedder | None = None,
    options: IngestOptions | None = None,
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
    address: str | None = None,
    init_options: Mapping[str, Any] | None = None,
    **keywords: Any,
) -> RayIngestReport:
    """:func:`ingest_dataset` on what :func:`~jina_connectors.ingest` takes (texts, records,
    ``.txt``/``.md``/``.jsonl`` files and folders): this process reads them with
    :func:`~jina_connectors.ingestion.documents.iter_documents` (the same ids, record names, checks
    and duplicate detection as ``ingest``), then hands them to Ray as one Dataset.

    The documents are held in memory and copied into Ray's object store, and files are read
    here, where they are (a cluster's workers need not see them). For a corpus that does
    not fit, build the Dataset with Ray's readers (``ray.data.read_json``,
    ``read_parquet``...) and call :func:`ingest_dataset`. ``jina-connectors ingest --engine
    ray`` runs this. ``root`` and ``sync`` mean what they mean for ``ingest``: document ids
    relative to ``root``, and after the run the stored documents under the given paths that
    were not read are deleted (see ``ingest``). Ray is joined or started (:func:`connect`
    with ``address`` and ``init_options``) only when something is to embed: when every
    document is stored unchanged (their content hashes, computed here), nothing runs on Ray.
    """
    # Every option, before reading anything (the model and the sink are checked next).
    checked = sink_options(options, keywords)
    pool = RayOptions(actors, gpus_per_actor, cpus_per_actor)
    sources = check_sources(documents, root=checked.root, sync=checked.sync)
    root, scopes = sources.root, sources.scopes
    check_id_scheme(sink, sources, root)
    policy = checked.bad_records()
    empty: list[EmptyDocumentError] = []
    rows: list[dict[str, Any]] = []
    items = iter_documents(sources)
    try:
        for item in items:
            if isinstance(item, EmptyDocumentError):
                empty.append(item)
                continue
            if isinstance(item, InvalidDocumentError):
                policy.add(item)
                continue
            rows.append(
                {
                    "id": item.id,
                    "text": item.text,
                    "metadata": _metadata_json(item.metadata),
                    _RECORD_COLUMN: item.record,
                }
            )
    finally:
        items.close()
    report_errors = policy.errors
    # The model check, once, here (described from its configuration: the actors load it).
    started = time.perf_counter()
    embedder = _driver_embedder(model)
    settings = checked.settings(embedder)
    unchanged = _all_stored_unchanged(rows, sink, settings)
    if unchanged is not None:  # nothing to embed: start no Ray at all
        unchanged.errors, unchanged.empty = report_errors, empty
        if scopes:
            delete_unseen(sink, scopes, {row["id"] for row in rows}, unchanged)
        return unchanged
    if not rows:  # nothing to embed: check the collection, start no actor
        sink.ensure_collection(settings.spec, lazy=True)
        report = RayIngestReport(
            documents=0,
            seconds=time.perf_counter() - started,
            errors=report_errors,
            empty=empty,
            write_path_reason="no document to embed, so no Ray work ran",
        )
        if scopes:
            delete_unseen(sink, scopes, set(), report)
        return report
    connect(address, **(init_options or {}))
    columns = _columns("text", "id", _RECORD_COLUMN)
    run = _resolve(embedder, checked, columns, pool, settings)
    report = _ingest_dataset(ray.data.from_items(rows), sink, run)
    report.errors[:0] = report_errors
    report.empty = empty
    if scopes:
        delete_unseen(sink, scopes, {row["id"] for row in rows}, report)
    return report
