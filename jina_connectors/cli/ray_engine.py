"""``ingest --engine ray``: the local engine for an input too small to pay for starting Ray,
and Ray's own log lines kept out of a normal run."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING

import typer

from .flags import Engine

if TYPE_CHECKING:
    from .ingest import IngestFlags


#: Input under this size runs on the local engine even with --engine ray, unless a cluster
#: is named: starting a local Ray and its actors costs more than embedding it (measured on
#: 2 cores: a 5-file folder took 2.3x the local engine, an unchanged re-run 22 s).
RAY_MIN_INPUT_BYTES = 4 * 1024 * 1024


def ray_fallback(options: IngestFlags) -> IngestFlags:
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


def quiet_ray(verbose: bool) -> None:
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
