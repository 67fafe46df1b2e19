"""The public functions of the Ray engine: :func:`embed_dataset`, :func:`ingest_dataset` and
:func:`ingest_documents` (options checked once, on the driver, before any Ray work)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import ray
import ray.data
from ray.data import Dataset

from ..errors import EmptyDocumentError, InvalidDocumentError
from ..ingestion.documents import (
    CheckedSources,
    Document,
    DocumentSource,
    check_sources,
    iter_documents,
)
from ..ingestion.options import (
    EmbeddingSettings,
    IngestOptions,
    RayOptions,
    sink_options,
)
from ..ingestion.run import check_id_scheme, delete_unseen
from ..ingestion.stages import (
    changed_documents,
    prepare_document,
)
from ..shared_models import deferred_embedder
from ..sinks.base import VectorSink
from .actor import _embedded, _EmbedJob
from .plan import ActorResources, actor_resources, connect
from .rows import (
    _check_dataset,
    _Columns,
    _columns,
    _metadata_json,
)
from .writes import (
    RayIngestReport,
    _ingest_from_driver,
    _ingest_from_workers,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from embedder_core import Embedder

    from ..ingestion.options import IngestKeywords


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
    **keywords: Unpack[IngestKeywords],
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
    **keywords: Unpack[IngestKeywords],
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


# --------------------------------------------------------------------------------------
# ingest_documents: what `ingest` reads, on Ray
# --------------------------------------------------------------------------------------

_RECORD_COLUMN = "record"


def _all_stored_unchanged(
    documents: list[Document], sink: VectorSink, settings: EmbeddingSettings
) -> RayIngestReport | None:
    """When every row is stored complete with its content hash, the report of a run that
    skips them all (no Ray started, no model loaded); else None (a custom chunker, whose
    spans are the user's code, is left to the actors)."""
    if not documents or settings.custom_chunker is not None:
        return None
    started = time.perf_counter()
    if not sink.check_collection(settings.spec):
        return None  # a new collection: everything is to embed
    prepared = [prepare_document(document, settings) for document in documents]
    page = 1000
    for start in range(0, len(prepared), page):
        if changed_documents(sink, prepared[start : start + page]):
            return None
    return RayIngestReport(
        documents=len(documents),
        skipped=len(documents),
        completed=len(documents),
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
    **keywords: Unpack[IngestKeywords],
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
    rows: list[dict[str, Any]] = []  # for Ray: metadata as JSON text, encoded once here
    documents_read: list[Document] = []
    items = iter_documents(sources)
    try:
        for item in items:
            if isinstance(item, EmptyDocumentError):
                empty.append(item)
                continue
            if isinstance(item, InvalidDocumentError):
                policy.add(item)
                continue
            documents_read.append(item)
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
    unchanged = _all_stored_unchanged(documents_read, sink, settings)
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
