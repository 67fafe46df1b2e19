"""``jina-connectors search`` (with its ``--rerank`` second stage and ``--json``) and
``jina-connectors info``: they read a store and create nothing."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..shared_models import DEFAULT_RERANKER
from ..sinks.open import check_collection_listed, check_store_unlocked
from ..sinks.records import DEFAULT_COLLECTION
from . import models
from .errors import CommandError
from .flags import CollectionOption, Database, DbOption, LocationOption, QuantizationOption
from .models import check_quantization, inspect_model
from .stores import missing_collection, reading

if TYPE_CHECKING:
    from ..sinks.records import Hit


#: A bare ``search --rerank`` uses ``$JINA_CONNECTORS_RERANKER``, else ``DEFAULT_RERANKER``.
RERANKER_ENV_VAR = "JINA_CONNECTORS_RERANKER"


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
    check_quantization(model, quantization)
    if rerank is not None:
        check_reranker(rerank, "'--rerank'")
    check_collection_listed(db, collection, location)
    with reading(db, collection, location) as sink:
        spec = sink.stored_spec()
        if spec is None:
            raise missing_collection(db, sink)
        query_model = model or spec.model
        info = inspect_model(query_model)
        try:  # the query vectors must reach the stored width (ModelInfo's rule)
            if info is not None:
                info.check_dimensions(spec.dimensions)
        except ValueError:
            raise typer.BadParameter(
                f"{info.model} gives {info.dimension} dimensions; the collection holds "
                f"{spec.dimensions}-dimensional vectors of {spec.model}",
                param_hint="'--model'",
            ) from None
        embedder = models.load_model(query_model, quantization)
        retrieve = k if rerank is None else (candidates or 4 * k)
        hits = sink.search(query, k=retrieve, filter=filter or None, model=embedder)
    rerank_scores: list[float | None] = [None] * len(hits)
    if rerank is not None and hits:
        hits, rerank_scores = rerank_hits(rerank, query, hits, k)  # type: ignore[assignment]
    if json_output:
        typer.echo(hits_json(hits, rerank_scores))
        return
    if not hits:
        typer.echo("no hits")
    for rank, (hit, rerank_score) in enumerate(zip(hits, rerank_scores), start=1):
        score = f"{hit.score:.4f}"
        if rerank_score is not None:
            score = f"{rerank_score:.4f} (vector {score})"
        typer.echo(f"{rank:>2}. {score}  {hit.doc_id}  [chunk {hit.chunk_index}]")
        typer.echo(f"    {_snippet(hit.text, width)}")


def info(
    db: DbOption = Database.qdrant,
    location: LocationOption = None,
) -> None:
    """Say where the store is, and list its collections with their point counts and the
    model/dimensions they were built with. Creates nothing."""
    check_store_unlocked(db, location)  # before the database client's import (seconds)
    with reading(db, DEFAULT_COLLECTION, location) as sink:
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


def _snippet(text: str, width: int) -> str:
    snippet = " ".join(text.split())
    return snippet if len(snippet) <= width else snippet[: width - 1].rstrip() + "…"


def check_reranker_dir(path: Path) -> str | None:
    """Why ``path`` cannot be a reranker (an embedding model's folder), or None."""
    from embedder_core.loading import read_json
    from embedder_core.model_info import reranker_architecture

    config = path / "config.json"
    if config.is_file() and reranker_architecture(read_json(config)) is None:
        return f"{path} is not a reranker (it has no reranking head); give a reranker folder"
    return None


def rerank_hits(
    reranker_name: str, query: str, hits: Sequence[Hit], k: int
) -> tuple[list[Hit], list[float]]:
    """The ``k`` best of ``hits`` by the reranker's score, with those scores."""
    from embedder_core import ModelNotFoundError, get_reranker

    try:
        reranker = get_reranker(reranker_name)
    except ModelNotFoundError as error:
        raise CommandError(
            f"{str(error).split('. ')[0].rstrip('.')}. Pass a reranker folder with "
            f"--rerank DIR, or download {reranker_name} once while online"
        ) from None
    results = reranker.rerank(query, [hit.text for hit in hits], top_n=k, return_documents=False)
    return [hits[r.index] for r in results], [r.relevance_score for r in results]


def hits_json(hits: Sequence[Hit], rerank_scores: Sequence[float | None]) -> str:
    """The hits as one JSON list: rank, vector ``score``, ``rerank_score`` (null without
    --rerank), ids, text span, metadata."""
    rows = []
    for rank, (hit, rerank_score) in enumerate(zip(hits, rerank_scores), start=1):
        rows.append(
            {
                "rank": rank,
                "score": hit.score,
                "rerank_score": rerank_score,
                "id": hit.id,
                "doc_id": hit.doc_id,
                "chunk_index": hit.chunk_index,
                "start": hit.start,
                "end": hit.end,
                "text": hit.text,
                "metadata": hit.metadata,
            }
        )
    return json.dumps(rows, ensure_ascii=False, indent=2)


def bare_rerank(args: list[str], default: str, env_var: str) -> list[str]:
    """``--rerank`` without a value (last, or followed by a flag) means the default
    reranker; click options cannot take an optional value."""
    out = []
    for i, arg in enumerate(args):
        out.append(arg)
        if arg == "--rerank" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            out.append(os.environ.get(env_var) or default)
    return out


def check_reranker(name: str, hint: str) -> None:
    """--rerank: a folder must be a reranker (an embedding model's folder is refused)."""
    from embedder_core import model_url

    path = Path(name).expanduser()
    if model_url(name) is None and path.is_dir():
        problem = check_reranker_dir(path)
        if problem:
            raise typer.BadParameter(problem, param_hint=hint)
