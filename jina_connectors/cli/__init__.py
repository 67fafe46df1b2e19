"""``jina-connectors``: ingest files into a vector database, search them, list and delete.

The default database is an embedded Qdrant in ``$JINA_CONNECTORS_HOME/qdrant`` (else
``~/.local/share/jina-connectors/qdrant``), so no server is needed and every directory sees
the same store. Errors print one line on stderr: exit code 2 for usage errors (a wrong flag,
a missing path), 1 for runtime errors (a missing model, a mismatched collection, bad
records), 130 for Ctrl-C. ``JINA_CONNECTORS_DEBUG=1`` shows tracebacks instead.

Everything that can be checked without the model is checked before it loads (flags, paths,
the store and its lock, API keys, the model's configuration, the collection), and heavy
packages (torch, database clients) are imported only by the commands that use them.

One module per command group: :mod:`.ingest`, :mod:`.reembed`, :mod:`.search` (search, its
rerank step, info), :mod:`.manage` (delete), :mod:`.serve`; their shared pieces are
:mod:`.flags` (choices and shared ``*Option`` aliases), :mod:`.models`, :mod:`.stores` and
:mod:`.errors` (exit codes and messages).

Adding to the CLI: a flag is an ``Annotated`` parameter of its command (shared ones are the
``*Option`` aliases of :mod:`.flags`); its checks go in the command's ``_check_*`` step,
before anything is opened or loaded; a new command is one function in its group's module,
registered below with ``app.command()``, that raises :class:`~.errors.CommandError` (exit 1)
or ``typer.BadParameter`` (exit 2) for its failures.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from . import ingest, manage, reembed, search, serve
from .errors import (
    CommandError,
    Interrupted,
    one_line,
    plain_usage_message,
    typed_error_message,
)

__all__ = ["app", "main"]

app = typer.Typer(
    name="jina-connectors",
    help="Embed documents with a local jina-embeddings-v3 and search them in a vector database.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
# In this order in --help.
app.command()(ingest.ingest)
app.command()(search.search)
app.command()(search.info)
app.command()(serve.serve)
app.command()(manage.delete)
app.command()(reembed.reembed)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``jina-connectors``; returns (and, as a script, exits with) the code."""
    args = list(argv) if argv is not None else sys.argv[1:]
    args = search.bare_rerank(args, search.DEFAULT_RERANKER, search.RERANKER_ENV_VAR)
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
        typer.echo(f"error: {one_line(str(error))}", err=True)
        return 1
    except Exception as error:
        # Usage errors are click exceptions (typer vendors its own click in recent versions,
        # so they are recognised by their interface, not their class).
        usage_code = getattr(error, "exit_code", None)
        if usage_code is not None and hasattr(error, "format_message"):
            context = getattr(error, "ctx", None)
            hint = f"; see '{context.command_path} --help'" if context is not None else ""
            message = plain_usage_message(error) or error.format_message()
            typer.echo(f"error: {one_line(message).rstrip('.')}{hint}", err=True)
            return int(usage_code)
        if os.environ.get("JINA_CONNECTORS_DEBUG") == "1":
            raise
        message = typed_error_message(error)
        if message is None:
            message = f"{type(error).__name__}: {error}"
        typer.echo(f"error: {one_line(message)}", err=True)
        return 1
    return code if isinstance(code, int) else 0
