"""``jina-connectors``: ingest files into a vector database, search them, list collections.

The default database is an embedded Qdrant at ``./.jina_connectors/qdrant``, so no server
is needed. Errors print one line on stderr: exit code 2 for usage errors (wrong flag,
missing path), 1 for runtime errors (missing model, mismatched collection, bad records).
``JINA_CONNECTORS_DEBUG=1`` shows tracebacks instead.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from contextlib import closing
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer

from .ingest import (
    DEFAULT_COLLECTION,
    VectorSink,
    bad_record_logger,
    passage_spec,
    resolve_embedder,
)

app = typer.Typer(
    name="jina-connectors",
    help="Embed documents with a local jina-embeddings-v3 and search them in a vector database.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Database(str, Enum):
    qdrant = "qdrant"
    milvus = "milvus"
    pinecone = "pinecone"


class ChunkerName(str, Enum):
    sentences = "sentences"
    tokens = "tokens"


class VectorType(str, Enum):
    float = "float"
    ubinary = "ubinary"


class Engine(str, Enum):
    local = "local"
    ray = "ray"


DbOption = Annotated[Database, typer.Option("--db", help="Vector database.", case_sensitive=False)]
CollectionOption = Annotated[
    str, typer.Option("--collection", "-c", help="Collection (Pinecone: index) name.")
]
LocationOption = Annotated[
    str | None,
    typer.Option(
        "--location",
        help=(
            "Qdrant: a folder, ':memory:' or a URL [default: ./.jina_connectors/qdrant]. "
            "Milvus: a Milvus Lite .db file or a server URI "
            "[default: ./.jina_connectors/milvus.db]. Pinecone: the API URL [default: "
            "Pinecone's; API key from $PINECONE_API_KEY]."
        ),
    ),
]


def open_sink(db: Database, collection: str, location: str | None, **options: Any) -> VectorSink:
    """The sink for ``--db``/``--collection``/``--location``."""
    if db is Database.qdrant:
        from .qdrant import QdrantSink

        return QdrantSink(
            collection,
            location=location,
            api_key=os.environ.get("QDRANT_API_KEY"),
            binary_quantization=options.get("binary_quantization", False),
        )
    if db is Database.milvus:
        from .milvus import MilvusSink

        return MilvusSink(collection, location=location, api_key=os.environ.get("MILVUS_TOKEN"))
    from .pinecone import PineconeSink

    return PineconeSink(collection, location=location)


@app.command()
def ingest(
    paths: Annotated[
        list[Path],
        typer.Argument(
            help="Files (.txt, .md, .jsonl) or folders of them.",
            exists=True,
            readable=True,
            show_default=False,
        ),
    ],
    db: DbOption = Database.qdrant,
    collection: CollectionOption = DEFAULT_COLLECTION,
    location: LocationOption = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Model id or folder [default: $JINA_CONNECTORS_MODEL, else "
            "jinaai/jina-embeddings-v3]."
        ),
    ] = None,
    dimensions: Annotated[
        int | None, typer.Option(help="Matryoshka dimensions [default: the model's full width].")
    ] = None,
    late_chunking: Annotated[
        bool,
        typer.Option(
            "--late-chunking/--no-late-chunking",
            help="Embed each document whole, then pool per chunk.",
        ),
    ] = True,
    chunk_size: Annotated[int, typer.Option(min=1, help="Maximum tokens per chunk.")] = 256,
    chunker: Annotated[
        ChunkerName, typer.Option(help="Chunk by sentences or by tokens.")
    ] = ChunkerName.sentences,
    embedding_type: Annotated[
        VectorType, typer.Option(help="'ubinary': packed bits, Hamming (Milvus only).")
    ] = VectorType.float,
    batch_size: Annotated[int, typer.Option(min=1, help="Documents embedded together.")] = 16,
    binary_quantization: Annotated[
        bool, typer.Option(help="Qdrant: create the collection with binary quantization.")
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
        typer.Option(min=1, help="Ray actors, one model each [default: one per node or GPU]."),
    ] = None,
    gpus_per_actor: Annotated[
        float | None,
        typer.Option(help="GPUs per Ray actor (0.5: two actors per GPU)."),
    ] = None,
) -> None:
    """Chunk, embed and write documents. Unchanged documents are skipped on re-runs."""
    ray_flags = {
        "--ray-address": ray_address,
        "--actors": actors,
        "--gpus-per-actor": gpus_per_actor,
    }
    given = [flag for flag, value in ray_flags.items() if value is not None]
    if engine is Engine.local and given:
        raise typer.BadParameter(f"{', '.join(given)} need --engine ray", param_hint="'--engine'")
    if gpus_per_actor is not None and not gpus_per_actor > 0:
        raise typer.BadParameter(
            f"must be a positive number, got {gpus_per_actor}", param_hint="'--gpus-per-actor'"
        )
    # A missing model or bad settings fail before any database is opened or created.
    embedder = resolve_embedder(model)
    passage_spec(embedder, dimensions, embedding_type.value)
    if engine is Engine.ray:
        from .ray import connect, ingest_documents

        connect(ray_address)
        run_ingest: Any = partial(ingest_documents, actors=actors, gpus_per_actor=gpus_per_actor)
    else:
        from .ingest import ingest as run_ingest
    # Bad records are listed after the run; the library's per-record warnings would repeat them.
    logging.getLogger(bad_record_logger.name).setLevel(logging.ERROR)
    sink = open_sink(db, collection, location, binary_quantization=binary_quantization)
    with closing(sink):
        report = run_ingest(
            paths,
            sink,
            model=embedder,
            dimensions=dimensions,
            embedding_type=embedding_type.value,  # type: ignore[arg-type]
            late_chunking=late_chunking,
            chunker=chunker.value,
            chunk_size=chunk_size,
            batch_size=batch_size,
            show_progress=progress,
        )
        total = sink.count()
    if engine is Engine.ray:
        typer.echo(f"ray: written from the {report.write_path} ({report.write_path_reason})")
    for error in report.errors:
        typer.echo(f"error: {error}", err=True)
    plural = "" if report.documents == 1 else "s"
    typer.echo(
        f"{report.documents} document{plural}: {report.skipped} unchanged, {report.chunks} chunks "
        f"embedded, {report.points_written} points written in {report.seconds:.1f} s "
        f"({report.points_per_second:.1f} points/s); {db.value} collection {collection!r} "
        f"holds {total} points"
    )
    if not report.documents and not report.errors:
        raise CommandError("no .txt, .md or .jsonl documents found in the given paths")
    if report.errors:
        raise CommandError(f"{len(report.errors)} bad record(s) skipped, listed above")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to search for.", show_default=False)],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Number of hits.")] = 5,
    db: DbOption = Database.qdrant,
    collection: CollectionOption = DEFAULT_COLLECTION,
    location: LocationOption = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="KEY=VALUE: keep hits whose doc_id or metadata KEY equals VALUE (repeatable; "
            "repeating a KEY means any of its values).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Query model [default: the model the collection was built with]."),
    ] = None,
    width: Annotated[int, typer.Option(min=20, help="Snippet length in characters.")] = 200,
) -> None:
    """Print the best hits: rank, score, document and a text snippet."""
    filter = _parse_where(where or [])
    with closing(open_sink(db, collection, location)) as sink:
        if sink.stored_spec() is None:
            raise CommandError(
                f"{db.value} collection {collection!r} is missing or empty; "
                "run 'jina-connectors ingest' first"
            )
        hits = sink.search(query, k=k, filter=filter or None, model=model)
    if not hits:
        typer.echo("no hits")
    for rank, hit in enumerate(hits, start=1):
        snippet = " ".join(hit.text.split())
        if len(snippet) > width:
            snippet = snippet[: width - 1].rstrip() + "…"
        typer.echo(f"{rank:>2}. {hit.score:.4f}  {hit.doc_id}  [chunk {hit.chunk_index}]")
        typer.echo(f"    {snippet}")


@app.command()
def info(
    db: DbOption = Database.qdrant,
    location: LocationOption = None,
) -> None:
    """List collections with their point counts and the model/dimensions they were built with."""
    with closing(open_sink(db, DEFAULT_COLLECTION, location)) as sink:
        collections = sink.describe_collections()
    if not collections:
        typer.echo(f"no collections in this {db.value} database")
    for item in collections:
        if item.spec is None:
            built = "empty" if item.count == 0 else "not written by jina-connectors"
        else:
            built = (
                f"model {item.spec.model}, dimensions {item.spec.dimensions}, "
                f"{item.spec.embedding_type}, task {item.spec.task}"
            )
        typer.echo(f"{item.name}: {item.count} points; {built}")


def _parse_where(items: Sequence[str]) -> dict[str, Any]:
    filter: dict[str, list[Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="'--where'")
        filter.setdefault(key, []).append(_scalar(value))
    return {key: values[0] if len(values) == 1 else values for key, values in filter.items()}


def _scalar(value: str) -> str | int | float | bool:
    """``1862`` -> int, ``1.5`` -> float, ``true``/``false`` -> bool, anything else a string."""
    if value in ("true", "false"):
        return value == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


class CommandError(Exception):
    """A runtime failure reported as one line on stderr, with exit code 1."""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jina-connectors``; returns (and, as a script, exits with) the code."""
    args = list(argv) if argv is not None else sys.argv[1:]
    command = typer.main.get_command(app)
    try:
        code = command.main(
            args=args or ["--help"], prog_name="jina-connectors", standalone_mode=False
        )
    except typer.Exit as exit_:
        return int(exit_.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    except CommandError as error:
        typer.echo(f"error: {_one_line(str(error))}", err=True)
        return 1
    except Exception as error:
        # Usage errors are click exceptions (typer vendors its own click in recent versions,
        # so they are recognised by their interface, not their class).
        usage_code = getattr(error, "exit_code", None)
        if usage_code is not None and hasattr(error, "format_message"):
            context = getattr(error, "ctx", None)
            hint = f"; see '{context.command_path} --help'" if context is not None else ""
            typer.echo(f"error: {_one_line(error.format_message()).rstrip('.')}{hint}", err=True)
            return int(usage_code)
        if os.environ.get("JINA_CONNECTORS_DEBUG") == "1":
            raise
        typer.echo(f"error: {type(error).__name__}: {_one_line(str(error))}", err=True)
        return 1
    return code if isinstance(code, int) else 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
