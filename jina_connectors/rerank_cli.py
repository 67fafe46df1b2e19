"""The CLI's reranking pieces: `search --rerank` (its second stage, `--json`) and the checks of
`search --rerank` and `serve --model/--reranker`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from .sinks.records import Hit


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

    from .cli import CommandError

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


def check_serve_models(model: str | None, reranker: str | None) -> None:
    """A reranker folder as --model is refused (it would give wrong vectors), pointing to
    --reranker; an embedding model's folder as --reranker is refused too."""
    from embedder_core import RerankerCheckpointError

    if model is not None and Path(model).expanduser().is_dir():
        from embedder_core.model_info import check_not_reranker

        try:
            check_not_reranker(Path(model).expanduser())
        except RerankerCheckpointError:
            raise typer.BadParameter(
                f"{model} is a reranker, not an embedding model; serve it with --reranker "
                f"{model} (and an embedding model as --model)",
                param_hint="'--model'",
            ) from None
    if reranker is not None:
        check_reranker(reranker, "'--reranker'")


def check_reranker(name: str, hint: str) -> None:
    """--rerank: a folder must be a reranker (an embedding model's folder is refused)."""
    from embedder_core import model_url

    path = Path(name).expanduser()
    if model_url(name) is None and path.is_dir():
        problem = check_reranker_dir(path)
        if problem:
            raise typer.BadParameter(problem, param_hint=hint)
