"""``jina-connectors ingest``: its flags checked (combinations, paths, the store, the model's
configuration, the collection) before the model loads, then the run on the local engine or
Ray, and its summary."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..errors import CollectionMismatchError, OptionError, SourcePathError
from ..sinks.open import check_pinecone_key, check_store_unlocked
from ..sinks.records import DEFAULT_COLLECTION, CollectionSpec
from . import models
from .errors import CommandError, Interrupted, counted, flag_error
from .flags import (
    ChunkerName,
    CollectionOption,
    Database,
    DbOption,
    DimensionsOption,
    Engine,
    LocationOption,
    ModelOption,
    Quantization,
    QuantizationOption,
    VectorType,
    ingest_options,
)
from .models import check_quantization, inspect_model
from .ray_engine import quiet_ray, ray_fallback
from .stores import open_sink

if TYPE_CHECKING:
    from embedder_core import ModelInfo

    from ..ingestion.options import IngestOptions
    from ..ingestion.run import IngestReport
    from ..sinks.base import VectorSink


@dataclass(frozen=True)
class IngestFlags:
    """The ``ingest`` command: its checked :class:`IngestOptions` (every option of the run)
    and the flags that only say where and how it runs."""

    options: IngestOptions
    paths: list[Path]
    db: Database
    collection: str
    location: str | None
    model: str | None
    binary_quantization: bool
    quantization: Quantization | None = None
    engine: Engine = Engine.local
    ray_address: str | None = None
    actors: int | None = None
    gpus_per_actor: float | None = None
    verbose: bool = False
    #: ``paths`` checked once (:func:`~jina_connectors.ingestion.documents.check_sources`),
    #: as the run reads them.
    sources: Any = None


def ingest(
    ctx: typer.Context,
    paths: Annotated[
        list[Path],
        typer.Argument(help="Files (.txt, .md, .jsonl) or folders of them.", show_default=False),
    ],
    db: DbOption = Database.qdrant,
    collection: CollectionOption = DEFAULT_COLLECTION,
    location: LocationOption = None,
    model: ModelOption = None,
    quantization: QuantizationOption = None,
    dimensions: DimensionsOption = None,
    late_chunking: Annotated[
        bool,
        typer.Option(
            "--late-chunking/--no-late-chunking",
            help="Embed each document whole, then pool per chunk.",
        ),
    ] = True,
    late_chunking_window: Annotated[
        int | None,
        typer.Option(
            help="Late chunking: tokens per window of a document longer than one window "
            "[default: the model's limit].",
        ),
    ] = None,
    late_chunking_overlap: Annotated[
        int | None,
        typer.Option(
            help="Late chunking: tokens of left context each window keeps [default: 512].",
        ),
    ] = None,
    chunk_size: Annotated[int, typer.Option(help="Maximum tokens per chunk.")] = 256,
    chunker: Annotated[
        ChunkerName, typer.Option(help="Chunk by sentences or by tokens.")
    ] = ChunkerName.sentences,
    embedding_type: Annotated[
        VectorType, typer.Option(help="'ubinary': packed bits, Hamming (Milvus only).")
    ] = VectorType.float,
    batch_size: Annotated[int, typer.Option(help="Documents embedded together.")] = 16,
    binary_quantization: Annotated[
        bool,
        typer.Option(help="Qdrant: create the collection with binary quantization."),
    ] = False,
    root: Annotated[
        Path | None,
        typer.Option(
            help="Make document ids paths relative to this folder [default: absolute paths]."
        ),
    ] = None,
    sync: Annotated[
        bool,
        typer.Option(
            help="Afterwards, delete the stored documents of files no longer under the paths."
        ),
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    engine: Annotated[
        Engine,
        typer.Option(help="'ray': a pool of Ray actors, one model each (the [ray] extra)."),
    ] = Engine.local,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster to join (printed by 'ray start --head') [default: $RAY_ADDRESS, "
            "else a local Ray]."
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(help="Ray actors, one model each [default: one per node or GPU]."),
    ] = None,
    gpus_per_actor: Annotated[
        float | None,
        typer.Option(help="GPUs per Ray actor (0.5: two actors per GPU)."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Show Ray's own log lines (with --engine ray).")
    ] = False,
) -> None:
    """Chunk, embed and write documents. Unchanged documents are skipped on re-runs.

    A file's document id is its absolute path (or its path relative to --root), the same
    whatever path reaches it; a .jsonl line's id is its record's "id", else FILE:LINE.
    """
    options = _check_ingest_flags(
        IngestFlags(
            options=ingest_options(
                ctx,
                dimensions=dimensions,
                embedding_type=embedding_type.value,
                late_chunking=late_chunking,
                late_chunking_window=late_chunking_window,
                late_chunking_overlap=late_chunking_overlap,
                chunker=chunker.value,
                chunk_size=chunk_size,
                batch_size=batch_size,
                show_progress=progress,
                root=root,
                sync=sync,
            ),
            paths=paths,
            db=db,
            collection=collection,
            location=location,
            model=model,
            binary_quantization=binary_quantization,
            quantization=quantization,
            engine=engine,
            ray_address=ray_address,
            actors=actors,
            gpus_per_actor=gpus_per_actor,
            verbose=verbose,
        ),
        ctx,
    )
    options = ray_fallback(options)
    engine = options.engine
    if db is Database.pinecone:
        check_pinecone_key()
    check_store_unlocked(db, location)
    info = inspect_model(model)
    spec = _check_model(options.options, info) if info is not None else None
    with closing(
        open_sink(db, collection, location, binary_quantization=binary_quantization)
    ) as sink:
        if spec is not None:
            _check_collection(options, sink, spec)
        _check_id_scheme(options, sink)
        report = _run_ingest(options, sink)
        total = sink.count()
        where = f"{db.value} collection {collection!r} in {sink.location}"
    if engine is Engine.ray and report.resources is None:  # nothing ran on Ray
        typer.echo(f"ray: {report.write_path_reason}")
    elif engine is Engine.ray:
        typer.echo(f"ray: written from the {report.write_path} ({report.write_path_reason})")
    for error in report.errors:
        typer.echo(f"error: {error}", err=True)
    typer.echo(_ingest_summary(report, where, total))
    if report.empty:
        names = ", ".join(e.record for e in report.empty[:5])
        more = f" and {len(report.empty) - 5} more" if len(report.empty) > 5 else ""
        typer.echo(f"skipped {counted(len(report.empty), 'empty file')}: {names}{more}")
    if sync:
        typer.echo(_sync_summary(report, paths))
    if not report.documents and not report.errors and not report.empty:
        raise CommandError("no .txt, .md or .jsonl documents found in the given paths")
    if report.errors:
        raise CommandError(f"{counted(len(report.errors), 'bad record')} skipped, listed above")


def _ingest_summary(report: IngestReport, where: str, total: int) -> str:
    written = f"{counted(report.points_written, 'point')} written in {report.seconds:.1f} s"
    if report.points_written:
        written += f" ({report.points_per_second:.1f} points/s)"
    return (
        f"{counted(report.documents, 'document')}: {report.skipped} unchanged, "
        f"{counted(report.chunks, 'chunk')} embedded, {written}; {where} holds "
        f"{counted(total, 'point')}"
    )


def _sync_summary(report: IngestReport, paths: Sequence[Path]) -> str:
    if not report.synced:  # not reached after a complete run; said for safety
        return "sync: nothing deleted"
    files_only = all(not path.is_dir() and path.suffix.lower() != ".jsonl" for path in paths)
    if files_only and not report.deleted_documents and not report.kept_documents:
        return (
            "sync: nothing to delete; a .txt/.md file given by itself owns only its own "
            "document, deleted when the file is empty (give its folder to delete the "
            "documents of deleted files)"
        )
    line = (
        f"sync: deleted {counted(report.deleted_documents, 'document')} "
        f"({counted(report.deleted_points, 'point')}) no longer under the given paths"
    )
    if report.kept_documents:
        line += (
            f"; kept {counted(report.kept_documents, 'document')} of the files with bad "
            "records listed above"
        )
    return line


def _check_ingest_flags(options: IngestFlags, ctx: typer.Context) -> IngestFlags:
    """Flag combinations and paths: no store, no model, no network."""
    check_quantization(options.model, options.quantization)

    ray_flags = {
        "--ray-address": options.ray_address,
        "--actors": options.actors,
        "--gpus-per-actor": options.gpus_per_actor,
    }
    given = [flag for flag, value in ray_flags.items() if value is not None]
    if options.engine is Engine.local and given:
        raise typer.BadParameter(f"{', '.join(given)} need --engine ray", param_hint="'--engine'")
    from ..ingestion.options import RayOptions

    try:
        RayOptions(options.actors, options.gpus_per_actor)
    except OptionError as error:
        raise flag_error(error, ctx) from None
    db = options.db
    if options.options.embedding_type == VectorType.ubinary.value and db is not Database.milvus:
        hint = (
            "for 1-bit vectors in RAM use --binary-quantization (float vectors, rescored), "
            "or store packed bits with --db milvus"
            if db is Database.qdrant
            else "Pinecone stores float vectors only; store packed bits with --db milvus"
        )
        raise typer.BadParameter(
            f"ubinary vectors cannot be stored in {db.value}: {hint}",
            param_hint="'--embedding-type'",
        )
    if options.binary_quantization and db is not Database.qdrant:
        raise typer.BadParameter(
            f"applies to --db qdrant, not {db.value}", param_hint="'--binary-quantization'"
        )
    from ..ingestion.documents import check_sources

    root = options.options.root
    try:  # the paths' one check: the run reads them as checked here
        sources = check_sources(options.paths, root=root, sync=options.options.sync)
    except SourcePathError as error:
        raise _source_path_error(error, root) from None
    return replace(options, sources=sources)


def _source_path_error(error: SourcePathError, root: Path | None) -> typer.BadParameter:
    """A path (or --root) that cannot be read, worded as typer words a missing path."""
    path = Path(error.path)
    if root is not None and error.path == str(root):
        reason = error.reason if path.exists() else f"dir {error.path!r} does not exist"
        return typer.BadParameter(reason, param_hint="'--root'")
    if not path.exists():
        return typer.BadParameter(f"path {error.path!r} does not exist", param_hint="'paths'")
    hint = "'--root'" if root is not None else "'PATHS'"
    return typer.BadParameter(str(error), param_hint=hint)


def _check_model(options: IngestOptions, info: ModelInfo) -> CollectionSpec | None:
    """The options against the model's configuration (no weights loaded); the collection
    spec they write (None when the configuration does not give the width)."""
    try:
        options.check_model(info)
    except OptionError as error:
        raise flag_error(error) from None
    # A CLI rule only: Python callers may embed chunks over the limit (the core cuts them).
    if not options.late_chunking and options.chunk_size > info.max_tokens:
        raise typer.BadParameter(
            f"{options.chunk_size} tokens is over the {info.max_tokens}-token limit of "
            f"{info.model}, and with --no-late-chunking each chunk is embedded on its own, so "
            f"it would be cut; use --chunk-size {info.max_tokens} or less, or late chunking",
            param_hint="'--chunk-size'",
        )
    if info.dimension is None:  # the config does not say: the load will tell
        return None
    return options.settings(info).spec


def _check_collection(options: IngestFlags, sink: VectorSink, spec: CollectionSpec) -> None:
    """An existing collection must match what this run writes (checked before the load)."""
    try:
        sink.check_collection(spec)
    except CollectionMismatchError as error:
        if options.binary_quantization and "binary quantization" in str(error):
            raise CommandError(
                f"--binary-quantization: {options.db.value} collection {options.collection!r} "
                f"in {sink.location} exists without binary quantization, and the flag only "
                "applies when a collection is created; drop the flag, use another "
                f"--collection, or reset it with 'jina-connectors delete -c "
                f"{options.collection} --all'"
            ) from None
        raise CommandError(
            f"{error.problem}. Use another --collection, or reset this one with "
            f"'jina-connectors delete -c {options.collection} --all'"
        ) from None


def _check_id_scheme(options: IngestFlags, sink: VectorSink) -> None:
    """Files the collection holds under ids of another --root are refused (they would be
    stored twice), before the model loads."""
    from ..errors import IdSchemeError
    from ..ingestion.run import check_id_scheme

    try:
        check_id_scheme(sink, options.sources, options.options.root)
    except IdSchemeError as error:
        root = error.stored_root
        before = "without --root" if root is None else f"with --root {root}"
        root_flag = options.options.root
        now = "without --root" if root_flag is None else f"with --root {root_flag}"
        raise CommandError(
            f"{error.where} holds {error.path} as {error.stored_id!r}, ingested {before}; "
            f"this run {now} would store it a second time as {error.new_id!r}. Ingest "
            f"{before} as before, or use another --collection"
        ) from None


def _run_ingest(options: IngestFlags, sink: VectorSink) -> IngestReport:
    from ..ingestion.options import bad_record_logger
    from ..ingestion.run import IngestInterrupted, IngestReport

    run_ingest: Any
    if options.engine is Engine.ray:
        from ..ray import ingest_documents

        quiet_ray(options.verbose)
        run_ingest = partial(
            ingest_documents,
            actors=options.actors,
            gpus_per_actor=options.gpus_per_actor,
            address=options.ray_address,
            init_options={
                "log_to_driver": options.verbose,
                "logging_level": logging.INFO if options.verbose else logging.ERROR,
            },
        )
    else:
        from ..ingestion.run import ingest as run_ingest
    where = f"{options.db.value} collection {options.collection!r} in {sink.location}"
    try:
        embedder = _embedder_for(options)
        # Bad records are listed after the run; per-record warnings would repeat them.
        logging.getLogger(bad_record_logger.name).setLevel(logging.ERROR)
        return run_ingest(options.sources, sink, model=embedder, options=options.options)
    except IngestInterrupted as interrupted:
        raise Interrupted(_interrupted_message(interrupted.report, where)) from None
    except KeyboardInterrupt:  # while the model loaded
        raise Interrupted(_interrupted_message(IngestReport(), where)) from None


def _embedder_for(options: IngestFlags) -> Any:
    """The local engine gets the model deferred: documents found unchanged by their content
    hashes need none, so an unchanged re-ingest never loads it (nor imports torch)."""
    from ..shared_models import DeferredEmbedder

    load = partial(models.load_model, options.model, options.quantization)
    info = inspect_model(options.model)
    if info is None or info.dimension is None:  # a server, or a config that does not say
        return load()
    quantization = None if options.quantization is None else options.quantization.value
    return DeferredEmbedder(info, load, quantization=quantization)


def _interrupted_message(report: IngestReport, where: str) -> str:
    if not report.completed:
        return (
            f"interrupted before any document was stored in {where}; nothing was written "
            "(a document is stored only whole: its chunks' vectors depend on all of its text)"
        )
    unchanged = f" ({report.skipped} of them unchanged)" if report.skipped else ""
    are = "is" if report.completed == 1 else "are"
    return (
        f"interrupted: {counted(report.completed, 'document')} {are} stored complete{unchanged} "
        f"in {where}; "
        "run the same command again to complete the ingest (complete documents are skipped)"
    )
