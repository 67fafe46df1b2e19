"""``jina-connectors reembed``: a collection embedded again with another model into a new
collection, from the texts it stores."""

from __future__ import annotations

from contextlib import closing
from typing import TYPE_CHECKING, Annotated

import typer

from ..errors import CollectionMismatchError, OptionError
from ..sinks.open import (
    check_collection_listed,
    check_pinecone_key,
    check_store_unlocked,
    sink_class,
)
from ..sinks.records import DEFAULT_COLLECTION, PASSAGE_TASK, CollectionSpec
from . import models
from .errors import CommandError, Interrupted, flag_error
from .flags import (
    CollectionOption,
    Database,
    DbOption,
    DimensionsOption,
    LocationOption,
    ModelOption,
    QuantizationOption,
    ingest_options,
)
from .models import check_quantization, inspect_model
from .stores import missing_collection, reading

if TYPE_CHECKING:
    from ..sinks.base import VectorSink


def reembed(
    ctx: typer.Context,
    into: Annotated[
        str,
        typer.Option(
            "--into", help="The new collection (Pinecone: index) to write.", show_default=False
        ),
    ],
    collection: CollectionOption = DEFAULT_COLLECTION,
    db: DbOption = Database.qdrant,
    location: LocationOption = None,
    model: ModelOption = None,
    quantization: QuantizationOption = None,
    task: Annotated[str, typer.Option(help="Task of the new vectors.")] = PASSAGE_TASK,
    dimensions: DimensionsOption = None,
    late_chunking: Annotated[
        bool,
        typer.Option(
            "--late-chunking/--no-late-chunking",
            help="Embed each document whole (rebuilt from its chunks), then pool per chunk.",
        ),
    ] = True,
    batch_size: Annotated[int, typer.Option(help="Documents embedded together.")] = 16,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Embed the collection -c again with another --model into a new collection --into, from
    the texts it stores: same point ids, texts, offsets and metadata, new vectors. Re-running
    skips what is already stored, so an interrupted run is completed by running it again."""
    from ..ingestion.reembed import TextsNotStoredError, source_spec
    from ..ingestion.reembed import reembed as run_reembed
    from ..ingestion.run import IngestInterrupted

    options = ingest_options(
        ctx,
        task=task,
        dimensions=dimensions,
        late_chunking=late_chunking,
        batch_size=batch_size,
        show_progress=progress,
    )
    if into == collection:
        raise typer.BadParameter(
            f"is the collection to read (-c {collection}); name a new one", param_hint="'--into'"
        )
    check_quantization(model, quantization)
    if db is Database.pinecone:
        check_pinecone_key()
    check_store_unlocked(db, location)
    check_collection_listed(db, collection, location)
    with reading(db, collection, location) as source:
        if source.count() == 0:
            raise missing_collection(db, source)
        try:
            old = source_spec(source)
        except TextsNotStoredError as error:
            raise CommandError(
                f"{error}: run 'jina-connectors ingest PATHS -c {into} --model MODEL' on the "
                "source files"
            ) from None
        except CollectionMismatchError as error:
            raise CommandError(f"{error}; pick another -c/--collection") from None
        info = inspect_model(model)
        if info is not None:
            try:
                options.check_model(info)
            except OptionError as error:
                raise flag_error(error, ctx) from None
        with closing(_sink_beside(db, source, into, location)) as target:
            where = f"{db.value} collection {into!r} in {target.location}"
            if info is not None and (dimensions or info.dimension):
                spec = CollectionSpec(
                    info.model, dimensions or info.dimension or 0, old.embedding_type, task
                )
                try:
                    target.check_collection(spec)
                except CollectionMismatchError as error:
                    raise CommandError(
                        f"{error}. Use another --into, or reset it with 'jina-connectors delete "
                        f"-c {into} --all'"
                    ) from None
            try:
                embedder = models.load_model(model, quantization)
                report = run_reembed(
                    source,
                    target,
                    model=embedder,
                    task=task,
                    dimensions=dimensions,
                    late_chunking=late_chunking,
                    batch_size=batch_size,
                    show_progress=progress,
                )
            except IngestInterrupted as interrupted:
                done = interrupted.report.completed
                raise Interrupted(
                    f"interrupted: {done} documents are stored complete in {where}; run the "
                    "same command again to complete it (complete documents are skipped)"
                ) from None
            total = target.count()
    for error in report.errors:
        typer.echo(f"error: {error}", err=True)
    typer.echo(
        f"{report.documents} documents of {collection!r}: {report.skipped} unchanged, "
        f"{report.chunks} chunks embedded, {report.points_written} points written in "
        f"{report.seconds:.1f} s; {where} holds {total} points"
    )
    if report.errors:
        raise CommandError(f"{len(report.errors)} document(s) not re-embedded, listed above")


def _sink_beside(db: Database, source: VectorSink, name: str, location: str | None) -> VectorSink:
    """A writable sink on collection ``name`` of the store ``source`` is open on (an embedded
    store opens once per process: the new sink shares its client)."""
    sink = sink_class(db)  # imported already: ``source`` is open
    try:
        if db is Database.pinecone:  # a server store: nothing to share
            return sink(name, location=location)  # type: ignore[call-arg]
        return sink(name, client=source.client)  # type: ignore[attr-defined,call-arg]
    except ValueError as error:  # a collection name the database does not take
        raise typer.BadParameter(str(error), param_hint="'--into'") from None
