"""``jina-connectors``: ingest files into a vector database, search them, list and delete.

The default database is an embedded Qdrant in ``$JINA_CONNECTORS_HOME/qdrant`` (else
``~/.local/share/jina-connectors/qdrant``), so no server is needed and every directory sees
the same store. Errors print one line on stderr: exit code 2 for usage errors (a wrong flag,
a missing path), 1 for runtime errors (a missing model, a mismatched collection, bad
records), 130 for Ctrl-C. ``JINA_CONNECTORS_DEBUG=1`` shows tracebacks instead.

Everything that can be checked without the model is checked before it loads (flags, paths,
the store and its lock, API keys, the model's configuration, the collection), and heavy
packages (torch, database clients) are imported only by the commands that use them.

Adding to the CLI: a flag is an ``Annotated`` parameter of its command (shared ones are the
``*Option`` aliases below); its checks go in the command's ``_check_*`` step, before
anything is opened or loaded; a new command is one function decorated with
``@app.command()`` that raises :class:`CommandError` (exit 1) or ``typer.BadParameter``
(exit 2) for its failures.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from enum import Enum
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .. import rerank_cli
from ..errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    MissingApiKeyError,
    OptionError,
    SourcePathError,
    StoreLockedError,
    StoreNotFoundError,
)
from ..sinks import open as sinks_open
from ..sinks.open import check_collection_listed, check_store_unlocked
from ..sinks.records import DEFAULT_COLLECTION, PASSAGE_TASK, CollectionSpec

if TYPE_CHECKING:
    from embedder_core import Embedder, ModelInfo

    from ..ingestion.options import IngestOptions
    from ..ingestion.run import IngestReport
    from ..sinks.base import VectorSink

#: The reranker of a bare ``search --rerank``: ``$JINA_CONNECTORS_RERANKER``, else this.
DEFAULT_RERANKER = "jina-reranker-v3"
RERANKER_ENV_VAR = "JINA_CONNECTORS_RERANKER"

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


class Quantization(str, Enum):
    int8 = "int8"


DbOption = Annotated[Database, typer.Option("--db", help="Vector database.", case_sensitive=False)]
CollectionOption = Annotated[
    str, typer.Option("--collection", "-c", help="Collection (Pinecone: index) name.")
]
LocationOption = Annotated[
    str | None,
    typer.Option(
        "--location",
        help=(
            "Qdrant: a folder or a server URL [default: $JINA_CONNECTORS_HOME/qdrant, "
            "JINA_CONNECTORS_HOME defaulting to ~/.local/share/jina-connectors]. Milvus: a "
            "Milvus Lite .db file or a server URI [default: $JINA_CONNECTORS_HOME/milvus.db]. "
            "Pinecone: the API URL [default: Pinecone's; API key from $PINECONE_API_KEY]."
        ),
    ),
]
ModelOption = Annotated[
    str | None,
    typer.Option(
        help="Model id or folder [default: $JINA_CONNECTORS_MODEL, else jinaai/jina-embeddings-v3]."
    ),
]
DimensionsOption = Annotated[
    int | None,
    typer.Option(help="Matryoshka dimensions [default: the model's full width]."),
]
QuantizationOption = Annotated[
    Quantization | None,
    typer.Option(
        help="int8: Linear layers in int8 on CPU (faster, near-equal vectors; see the README). "
        "Where int8 is not faster (CUDA, CPUs without AVX2) it warns and runs unquantized.",
        case_sensitive=False,
    ),
]


# --------------------------------------------------------------------------------------
# Stores and sinks
# --------------------------------------------------------------------------------------


def open_sink(db: Database, collection: str, location: str | None, **options: Any) -> VectorSink:
    """:func:`jina_connectors.sinks.open.open_sink` for ``--db``/``--collection``/``--location``."""
    try:
        return sinks_open.open_sink(db, collection, location, **options)
    except ValueError as error:  # a collection name the database does not take
        raise typer.BadParameter(str(error), param_hint="'--collection'") from None


_check_pinecone_key = partial(sinks_open.check_api_key, "pinecone")


def _missing_collection(db: Database, sink: VectorSink) -> CommandError:
    names = sorted(info.name for info in sink.describe_collections() if info.count)
    there = f"; collections there: {', '.join(names)}" if names else "; it holds no collection"
    return CommandError(
        f"{db.value} collection {sink.collection!r} is missing or empty in {sink.location}"
        f"{there}. Run 'jina-connectors ingest' first, or pick another -c/--collection or "
        "--location"
    )


# --------------------------------------------------------------------------------------
# The model, checked before it loads
# --------------------------------------------------------------------------------------


def inspect_model(model: str | None) -> ModelInfo | None:
    """The model's configuration (no weights, no torch); None for a server URL, which only
    its backend can describe."""
    from embedder_core import ModelNotFoundError, default_model
    from embedder_core import inspect_model as inspect

    name = model or default_model()
    if "://" in name:
        return None
    try:
        return inspect(name)
    except ModelNotFoundError as error:
        raise CommandError(_model_not_found(name, error)) from None


def load_model(model: str | None, quantization: Quantization | None = None) -> Embedder:
    from embedder_core import ModelNotFoundError, default_model

    from .._loading import load_embedder

    try:
        return load_embedder(
            model, quantization=None if quantization is None else quantization.value
        )
    except ModelNotFoundError as error:
        raise CommandError(_model_not_found(model or default_model(), error)) from None


def _check_quantization(model: str | None, quantization: Quantization | None) -> None:
    """--quantization needs a model run by this process, not a server's."""
    from embedder_core import model_url

    url = model_url(model)
    if quantization is not None and url is not None:
        raise typer.BadParameter(
            f"applies to a model run in this process; the server at {url} runs its own "
            "(start it with: jina-connectors serve --quantization int8)",
            param_hint="'--quantization'",
        )


def _model_not_found(name: str, error: Exception) -> str:
    from embedder_core import MODEL_ENV_VAR

    reason = str(error).split(". ")[0].rstrip(".")
    local = Path(name).expanduser().exists() or name.startswith(("/", ".", "~"))
    fetch = "" if local else f", or download {name} once with `hf download {name}` while online"
    return (
        f"{reason}. Pass a model folder (config.json, model.safetensors, tokenizer.json) with "
        f"--model DIR or ${MODEL_ENV_VAR}=DIR{fetch}"
    )


# --------------------------------------------------------------------------------------
# ingest
# --------------------------------------------------------------------------------------


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


def ingest_options(ctx: typer.Context, **flags: Any) -> IngestOptions:
    """:class:`IngestOptions` of the flags named as its fields; a bad value is a usage
    error naming the flag (``--`` + the field with ``-``)."""
    from ..ingestion.options import IngestOptions

    try:
        return IngestOptions(**flags)
    except OptionError as error:
        raise flag_error(error, ctx) from None


def flag_error(error: OptionError, ctx: typer.Context | None = None) -> Exception:
    """The usage error of a bad flag, worded as typer words its own bounds."""
    if error.minimum is not None:
        problem = UsageProblem(f"{error.flag} must be at least {error.minimum}, got {error.value}")
        problem.ctx = ctx  # main adds "see '... --help'" as for typer's own bounds
        return problem
    return typer.BadParameter(error.reason, ctx=ctx, param_hint=f"'{error.flag}'")


@app.command()
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
    options = _ray_fallback(options)
    engine = options.engine
    if db is Database.pinecone:
        _check_pinecone_key()
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
        typer.echo(f"skipped {_count(len(report.empty), 'empty file')}: {names}{more}")
    if sync:
        typer.echo(_sync_summary(report, paths))
    if not report.documents and not report.errors and not report.empty:
        raise CommandError("no .txt, .md or .jsonl documents found in the given paths")
    if report.errors:
        raise CommandError(f"{_count(len(report.errors), 'bad record')} skipped, listed above")


def _count(number: int, noun: str) -> str:
    """``1 chunk``, ``2 chunks``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _ingest_summary(report: IngestReport, where: str, total: int) -> str:
    written = f"{_count(report.points_written, 'point')} written in {report.seconds:.1f} s"
    if report.points_written:
        written += f" ({report.points_per_second:.1f} points/s)"
    return (
        f"{_count(report.documents, 'document')}: {report.skipped} unchanged, "
        f"{_count(report.chunks, 'chunk')} embedded, {written}; {where} holds "
        f"{_count(total, 'point')}"
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
        f"sync: deleted {_count(report.deleted_documents, 'document')} "
        f"({_count(report.deleted_points, 'point')}) no longer under the given paths"
    )
    if report.kept_documents:
        line += (
            f"; kept {_count(report.kept_documents, 'document')} of the files with bad "
            "records listed above"
        )
    return line


def _check_ingest_flags(options: IngestFlags, ctx: typer.Context) -> IngestFlags:
    """Flag combinations and paths: no store, no model, no network."""
    _check_quantization(options.model, options.quantization)

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

        _quiet_ray(options.verbose)
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


#: Input under this size runs on the local engine even with --engine ray, unless a cluster
#: is named: starting a local Ray and its actors costs more than embedding it (measured on
#: 2 cores: a 5-file folder took 2.3x the local engine, an unchanged re-run 22 s).
RAY_MIN_INPUT_BYTES = 4 * 1024 * 1024


def _ray_fallback(options: IngestFlags) -> IngestFlags:
    """--engine ray on a small input, with no cluster named (--ray-address, $RAY_ADDRESS,
    --actors, --gpus-per-actor): the local engine, said in one line."""
    from ..ingestion.documents import input_size

    named = options.ray_address or os.environ.get("RAY_ADDRESS")
    if options.engine is not Engine.ray or named or options.actors or options.gpus_per_actor:
        return options
    size = input_size(list(options.paths)) or 0
    if size >= RAY_MIN_INPUT_BYTES or ("ray" in sys.modules and _ray_connected()):
        return options
    typer.echo(
        f"ray: {size / 1024:.0f} KiB of input is under {RAY_MIN_INPUT_BYTES >> 20} MiB, less "
        "than starting a local Ray costs (10-20 s); running the local engine instead (name a "
        "cluster with --ray-address, or the pool with --actors, to use Ray)"
    )
    return replace(options, engine=Engine.local)


def _ray_connected() -> bool:
    import ray

    return bool(ray.is_initialized())


def _quiet_ray(verbose: bool) -> None:
    """Ray's own log lines (its start-up, token-auth notice, Ray Data's execution plans and
    progress-bar notice, the core worker's) stay out of a normal run; --verbose shows them."""
    if verbose:
        return
    # The core worker writes to stderr from C++ (read when Ray starts): errors that matter
    # reach us as exceptions. Ray Data's actors get their constructor arguments (its own
    # context and transform) from the object store while Ray restarts dead actors, which
    # the core worker flags at error level on every run although Ray Data keeps them alive.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # A small input has fewer blocks than the hashing pool has tasks; nothing to act on.
    warnings.filterwarnings("ignore", "The maximum number of concurrent tasks", UserWarning)


def _embedder_for(options: IngestFlags) -> Any:
    """The local engine gets the model deferred: documents found unchanged by their content
    hashes need none, so an unchanged re-ingest never loads it (nor imports torch)."""
    from .._loading import DeferredEmbedder

    load = partial(load_model, options.model, options.quantization)
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
        f"interrupted: {_count(report.completed, 'document')} {are} stored complete{unchanged} "
        f"in {where}; "
        "run the same command again to complete the ingest (complete documents are skipped)"
    )


# --------------------------------------------------------------------------------------
# search, info, delete
# --------------------------------------------------------------------------------------


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
            help="KEY=VALUE: keep hits whose doc_id or metadata KEY (e.g. source) equals VALUE "
            "(repeatable; repeating a KEY means any of its values).",
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(help="Query model [default: the model the collection was built with]."),
    ] = None,
    quantization: QuantizationOption = None,
    width: Annotated[int, typer.Option(min=20, help="Snippet length in characters.")] = 200,
    rerank: Annotated[
        str | None,
        typer.Option(
            help="Rerank the vector hits with this reranker (folder, Hub id, hosted name or "
            f"server URL); a bare --rerank after QUERY means ${RERANKER_ENV_VAR}, else "
            f"{DEFAULT_RERANKER}.",
        ),
    ] = None,
    candidates: Annotated[
        int | None,
        typer.Option(
            min=1, help="With --rerank: hits retrieved by vector, then reranked to -k [4 x -k]."
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON list of hits (with --rerank: both scores).")
    ] = False,
) -> None:
    """Print the best hits: rank, score, document and a text snippet. Creates nothing."""
    filter = _parse_where(where or [])
    if not query.strip():
        raise typer.BadParameter("is empty", param_hint="'QUERY'")
    if candidates is not None and rerank is None:
        raise typer.BadParameter("applies with --rerank", param_hint="'--candidates'")
    if candidates is not None and candidates < k:
        raise typer.BadParameter(f"{candidates} is fewer than -k {k}", param_hint="'--candidates'")
    _check_quantization(model, quantization)
    if rerank is not None:
        rerank_cli.check_reranker(rerank, "'--rerank'")
    check_collection_listed(db, collection, location)
    with _reading(db, collection, location) as sink:
        spec = sink.stored_spec()
        if spec is None:
            raise _missing_collection(db, sink)
        query_model = model or spec.model
        info = inspect_model(query_model)
        if info is not None and info.dimension is not None and info.dimension < spec.dimensions:
            raise typer.BadParameter(
                f"{info.model} gives {info.dimension} dimensions; the collection holds "
                f"{spec.dimensions}-dimensional vectors of {spec.model}",
                param_hint="'--model'",
            )
        embedder = load_model(query_model, quantization)
        retrieve = k if rerank is None else (candidates or 4 * k)
        hits = sink.search(query, k=retrieve, filter=filter or None, model=embedder)
    rerank_scores: list[float | None] = [None] * len(hits)
    if rerank is not None and hits:
        hits, rerank_scores = rerank_cli.rerank_hits(rerank, query, hits, k)  # type: ignore[assignment]
    if json_output:
        typer.echo(rerank_cli.hits_json(hits, rerank_scores))
        return
    if not hits:
        typer.echo("no hits")
    for rank, (hit, rerank_score) in enumerate(zip(hits, rerank_scores), start=1):
        score = f"{hit.score:.4f}"
        if rerank_score is not None:
            score = f"{rerank_score:.4f} (vector {score})"
        typer.echo(f"{rank:>2}. {score}  {hit.doc_id}  [chunk {hit.chunk_index}]")
        typer.echo(f"    {_snippet(hit.text, width)}")


@app.command()
def info(
    db: DbOption = Database.qdrant,
    location: LocationOption = None,
) -> None:
    """Say where the store is, and list its collections with their point counts and the
    model/dimensions they were built with. Creates nothing."""
    check_store_unlocked(db, location)  # before the database client's import (seconds)
    with _reading(db, DEFAULT_COLLECTION, location) as sink:
        typer.echo(f"{db.value}: {sink.location}")
        collections = sink.describe_collections()
    if not collections:
        typer.echo("no collections")
    for item in collections:
        if item.spec is None:
            built = "empty" if item.count == 0 else "not written by jina-connectors"
        else:
            built = (
                f"model {item.spec.model}, dimensions {item.spec.dimensions}, "
                f"{item.spec.embedding_type}, task {item.spec.task}"
            )
        typer.echo(f"{item.name}: {item.count} points; {built}")


@app.command()
def serve(
    model: Annotated[
        str | None,
        typer.Option(
            help="Model id or folder [default: $JINA_CONNECTORS_MODEL, else "
            "jinaai/jina-embeddings-v3]."
        ),
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server (use API keys).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port).")] = 8080,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            help="Accept this key as 'Authorization: Bearer KEY' (repeatable; also "
            "$JINA_CONNECTORS_API_KEYS, comma-separated). Without keys, no auth.",
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 [default: cuda if available].")
    ] = None,
    dtype: Annotated[
        str | None, typer.Option(help="float32, bfloat16, float16 [default: per device].")
    ] = None,
    max_batch_tokens: Annotated[
        int | None, typer.Option(min=1, help="Tokens per forward batch [default: per device].")
    ] = None,
    max_queued_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="Answer 429 when the queue would hold more tokens [no limit]."),
    ] = None,
    quantization: QuantizationOption = None,
    served_model_name: Annotated[
        list[str] | None,
        typer.Option(
            help="Name in /v1/models; repeat it for aliases [default: the Hub id, or the "
            "folder's name (its parent's when it is called 'model')]."
        ),
    ] = None,
    expose_model_path: Annotated[
        bool, typer.Option(help="Show the model's folder in answers (hidden by default).")
    ] = False,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            help="Answer only this Host header name (repeatable; '*': any) [default: "
            "localhost names when --host is loopback, else any]."
        ),
    ] = None,
    max_inputs: Annotated[int, typer.Option(min=1, help="Inputs per request.")] = 2048,
    max_spans: Annotated[int, typer.Option(min=1, help="Spans per embed-spans request.")] = 8192,
    max_request_bytes: Annotated[
        int, typer.Option(min=1, help="Largest request body (413 above).")
    ] = 2 * 1024 * 1024,
    max_admitted_bytes: Annotated[
        int,
        typer.Option(min=1, help="Bodies plus answers of requests in progress (429 above)."),
    ] = 32 * 1024 * 1024,
    drain_seconds: Annotated[
        float, typer.Option(min=0, help="On SIGTERM, time to finish requests (then 503).")
    ] = 25.0,
    header_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds to send a request's headers.")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(min=0.001, help="Seconds to send a request's body (408 past).")
    ] = 30.0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    reranker: Annotated[
        str | None,
        typer.Option(help="Also serve this reranker at /v1/rerank (folder, Hub id, hosted name)."),
    ] = None,
) -> None:
    """Serve the model over HTTP: Jina- and OpenAI-compatible /v1/embeddings (docs at /docs)."""
    # The event loop and tokenizer threads need the cores while the model runs: OpenMP
    # threads that spin between operations starve them (measured on a busy 2-core machine:
    # idle query 714 -> 40 ms, 64-client load 4x faster). Read when torch loads: set first.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    rerank_cli.check_serve_models(model, reranker)
    if max_admitted_bytes < max_request_bytes:
        raise CommandError(
            f"--max-admitted-bytes ({max_admitted_bytes}) must be at least --max-request-bytes "
            f"({max_request_bytes}): a request of the largest size must fit the budget"
        )
    _check_serve(model, host, port)
    try:
        from ..server import ModelLoadError, run_server
    except ImportError as error:
        raise CommandError(
            f"serve needs the server extra: pip install 'jina-connectors[server]' ({error})"
        ) from error
    try:
        run_server(
            model,
            host=host,
            port=port,
            api_keys=api_key or [],
            device=device,
            dtype=dtype,
            max_batch_tokens=max_batch_tokens,
            max_queued_tokens=max_queued_tokens,
            quantization=None if quantization is None else quantization.value,
            served_model_name=served_model_name,
            expose_model_path=expose_model_path,
            allowed_hosts=allowed_host,
            max_inputs=max_inputs,
            max_spans=max_spans,
            max_request_bytes=max_request_bytes,
            max_admitted_bytes=max_admitted_bytes,
            drain_seconds=drain_seconds,
            header_timeout=header_timeout,
            body_timeout=body_timeout,
            log_level=log_level,
            reranker=reranker,
        )
    except ModelLoadError as error:
        raise CommandError(str(error)) from error


def _check_serve(model: str | None, host: str, port: int) -> None:
    """The model's configuration and the port, before the web stack and torch are imported
    (seconds), each refused in one line."""
    import errno
    import socket

    inspect_model(model)
    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise CommandError(f"--host {host}: cannot resolve it ({error.strerror})") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"--port {port}: {host}:{port} is in use by another process; pass "
                    "another --port (0: any free port), or stop that process"
                ) from None
            raise CommandError(f"cannot listen on {host}:{port}: {error.strerror}") from None


@app.command()
def delete(
    collection: CollectionOption = DEFAULT_COLLECTION,
    db: DbOption = Database.qdrant,
    location: LocationOption = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Delete the whole collection (Pinecone: the index).")
    ] = False,
    doc_id: Annotated[
        list[str] | None,
        typer.Option(
            "--doc-id",
            help="Delete this document, by its id, or by the path of its file as ingest was "
            "given it (repeatable).",
        ),
    ] = None,
    prefix: Annotated[
        list[str] | None,
        typer.Option(
            "--prefix", help="Delete the documents whose id starts with this (repeatable)."
        ),
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Do not ask for confirmation (for scripts).")
    ] = False,
) -> None:
    """Delete a collection, or documents by id or id prefix. Asks first, unless --yes."""
    given = (("--all", all_), ("--doc-id", doc_id), ("--prefix", prefix))
    chosen = [name for name, value in given if value]
    if len(chosen) != 1:
        raise typer.BadParameter(
            "give exactly one of --all, --doc-id or --prefix"
            + (f" (got {', '.join(chosen)})" if chosen else ""),
            param_hint="'--all' / '--doc-id' / '--prefix'",
        )
    check_collection_listed(db, collection, location)
    with _reading(db, collection, location) as sink:
        where = f"{db.value} collection {collection!r} in {sink.location}"
        if all_:
            exists = collection in {i.name for i in sink.describe_collections()}
            if not exists:
                raise _missing_collection(db, sink)
            what = f"the whole {where} ({_count(sink.count(), 'point')})"
        else:
            points: dict[str, int] = {}
            for wanted in prefix or []:
                found = sink.document_points(wanted)
                if not found and _as_path_id(wanted) != wanted:
                    found = sink.document_points(_as_path_id(wanted))
                points.update(found)
            for wanted in doc_id or []:
                for spelling in dict.fromkeys((wanted, _as_path_id(wanted))):
                    count = sink.document_points(spelling).get(spelling)
                    if count:
                        points[spelling] = count
                        break
            if not points:
                typer.echo(f"nothing to delete: no such documents in {where}")
                return
            what = (
                f"{_count(len(points), 'document')} ({_count(sum(points.values()), 'point')}) "
                f"from {where}"
            )
        _confirm(f"delete {what}?", yes)
        sink.read_only = False
        if all_:
            sink.drop_collection()
        else:
            sink.delete_documents(points)
    typer.echo(f"deleted {what}")


# --------------------------------------------------------------------------------------
# reembed
# --------------------------------------------------------------------------------------


@app.command()
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
    _check_quantization(model, quantization)
    if db is Database.pinecone:
        _check_pinecone_key()
    check_store_unlocked(db, location)
    check_collection_listed(db, collection, location)
    with _reading(db, collection, location) as source:
        if source.count() == 0:
            raise _missing_collection(db, source)
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
                embedder = load_model(model, quantization)
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
    try:
        if db is Database.qdrant:
            from ..sinks.qdrant import QdrantSink

            return QdrantSink(name, client=source.client)  # type: ignore[attr-defined]
        if db is Database.milvus:
            from ..sinks.milvus import MilvusSink

            return MilvusSink(name, client=source.client)  # type: ignore[attr-defined]
        from ..sinks.pinecone import PineconeSink

        return PineconeSink(name, location=location)
    except ValueError as error:  # a collection name the database does not take
        raise typer.BadParameter(str(error), param_hint="'--into'") from None


def _as_path_id(text: str) -> str:
    """``text`` read as a file path, in the form of a file's document id (its canonical
    absolute path, as ``ingest`` makes it without --root); a trailing / is kept."""
    from ..ingestion.documents import file_id

    spelled = file_id(Path(text).expanduser())
    return spelled + "/" if text.endswith("/") and not spelled.endswith("/") else spelled


def _confirm(question: str, yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageProblem(
            f"would {question.removesuffix('?')}, but stdin is not a terminal to ask for "
            "confirmation on; add --yes to delete without asking"
        )
    if not typer.confirm(question[0].upper() + question[1:], default=False):
        raise typer.Exit(1)


@contextmanager
def _reading(db: Database, collection: str, location: str | None) -> Iterator[VectorSink]:
    """A read-only sink: a missing store is an error naming where it was looked for."""
    if db is Database.pinecone:
        _check_pinecone_key()
    with closing(open_sink(db, collection, location, read_only=True)) as sink:
        yield sink


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


# --------------------------------------------------------------------------------------
# Errors and the entry point
# --------------------------------------------------------------------------------------


class CommandError(Exception):
    """A runtime failure reported as one line on stderr, with exit code 1."""


class UsageProblem(Exception):
    """A usage error that no one flag's value caused: one line on stderr, exit code 2 (read
    by ``main`` like click's usage errors)."""

    exit_code = 2
    ctx: Any = None  # the command's context, when a flag's value caused it

    def format_message(self) -> str:
        return str(self)


class Interrupted(Exception):
    """Ctrl-C, reported as one line on stderr saying what was stored, with exit code 130."""


def _typed_error_message(error: BaseException) -> str | None:
    """One CLI line for the typed errors of the sinks, or None."""
    if isinstance(error, StoreNotFoundError):
        return (
            f"no {error.database} store at {error.path}; nothing was created. Ingest first, or "
            "point --location (or $JINA_CONNECTORS_HOME) at an existing store"
        )
    if isinstance(error, StoreLockedError):
        who = error.holder or "another process"
        return (
            f"the embedded {error.database} store {error.path} is in use by {who}; it can be "
            "open in one process at a time. Wait for it, or run a "
            f"{error.database.split()[0]} server and pass --location http://HOST:PORT for "
            "concurrent use"
        )
    if isinstance(error, CollectionNotFoundError):
        return (
            f"{error}. Run 'jina-connectors ingest' first, or pick another -c/--collection "
            "or --location"
        )
    if isinstance(error, MissingApiKeyError):
        return str(error)
    if isinstance(error, CollectionMismatchError):
        return (
            f"{error.problem}; use another --collection, or reset it with 'jina-connectors delete'"
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jina-connectors``; returns (and, as a script, exits with) the code."""
    args = list(argv) if argv is not None else sys.argv[1:]
    args = rerank_cli.bare_rerank(args, DEFAULT_RERANKER, RERANKER_ENV_VAR)
    command = typer.main.get_command(app)
    try:
        code = command.main(
            args=args or ["--help"], prog_name="jina-connectors", standalone_mode=False
        )
    except typer.Exit as exit_:
        return int(exit_.exit_code)
    except Interrupted as interrupted:
        typer.echo(f"error: {interrupted}", err=True)
        return 130
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
            message = _plain_usage_message(error) or error.format_message()
            typer.echo(f"error: {_one_line(message).rstrip('.')}{hint}", err=True)
            return int(usage_code)
        if os.environ.get("JINA_CONNECTORS_DEBUG") == "1":
            raise
        message = _typed_error_message(error)
        if message is None:
            message = f"{type(error).__name__}: {error}"
        typer.echo(f"error: {_one_line(message)}", err=True)
        return 1
    return code if isinstance(code, int) else 0


def _snippet(text: str, width: int) -> str:
    snippet = " ".join(text.split())
    return snippet if len(snippet) <= width else snippet[: width - 1].rstrip() + "…"


_BOUNDS = {
    "greater_than_equal": ("at least", "ge"),
    "less_than_equal": ("at most", "le"),
    "greater_than": ("more than", "gt"),
    "less_than": ("less than", "lt"),
}


def _plain_usage_message(error: Exception) -> str | None:
    """A flag value typer's validation refused, as one sentence naming the flag (typer words
    it as pydantic does: "Input should be greater than or equal to 1"); None for others."""
    param = getattr(error, "param", None)
    errors = getattr(error.__cause__, "errors", None)
    if param is None or not callable(errors):
        return None
    try:
        first = errors(include_url=False)[0]
    except Exception:  # not a pydantic ValidationError after all
        return None
    opts = getattr(param, "opts", None) or [str(param.name).upper()]
    flag = max(opts, key=len) if opts[0].startswith("-") else str(param.name).upper()
    kind, context, given = first.get("type"), first.get("ctx") or {}, first.get("input")
    if kind in _BOUNDS:
        word, key = _BOUNDS[kind]
        return f"{flag} must be {word} {context.get(key)}, got {given}"
    if kind in ("int_parsing", "float_parsing"):
        number = "a whole number" if kind == "int_parsing" else "a number"
        return f"{flag} takes {number}, got {given!r}"
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        choices = ", ".join(member.value for member in annotation)
        return f"{flag} must be one of {choices}, got {given!r}"
    return None


def _one_line(message: str) -> str:
    return " ".join(message.split())
