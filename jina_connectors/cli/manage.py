"""``jina-connectors delete``: a collection, or documents by id, path or id prefix; it asks
first, unless --yes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..sinks.open import check_collection_listed
from ..sinks.records import DEFAULT_COLLECTION
from .errors import UsageProblem, counted
from .flags import CollectionOption, Database, DbOption, LocationOption
from .stores import missing_collection, reading


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
    with reading(db, collection, location) as sink:
        where = f"{db.value} collection {collection!r} in {sink.location}"
        if all_:
            exists = collection in {i.name for i in sink.describe_collections()}
            if not exists:
                raise missing_collection(db, sink)
            what = f"the whole {where} ({counted(sink.count(), 'point')})"
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
                f"{counted(len(points), 'document')} ({counted(sum(points.values()), 'point')}) "
                f"from {where}"
            )
        _confirm(f"delete {what}?", yes)
        sink.read_only = False
        if all_:
            sink.drop_collection()
        else:
            sink.delete_documents(points)
    typer.echo(f"deleted {what}")


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
