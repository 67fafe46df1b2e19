"""The benchmark cases by name; importable, so a spawned process can run one."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import (
    cli,
    full_size,
    ingestion,
    int8,
    late_chunking,
    long_inputs,
    minilm,
    ray_scaling,
    scheduler,
    server,
)
from benchmarks.context import Context
from benchmarks.report import CaseResult

BENCHMARKS: dict[str, Callable[[Context], CaseResult]] = {
    full_size.NAME: full_size.run,
    long_inputs.NAME: long_inputs.run,
    minilm.NAME: minilm.run,
    late_chunking.NAME: late_chunking.run,
    ingestion.NAME: ingestion.run,
    ray_scaling.NAME: ray_scaling.run,
    scheduler.NAME: scheduler.run,
    server.NAME: server.run,
    int8.FULL_SIZE_NAME: int8.run_full_size,
    int8.MINILM_NAME: int8.run_minilm,
    cli.NAME: cli.run,
}

# Names that select several cases (`--only int8`).
GROUPS: dict[str, tuple[str, ...]] = {"int8": (int8.FULL_SIZE_NAME, int8.MINILM_NAME)}


def run_case(name: str, ctx: Context) -> tuple[CaseResult, list[float]]:
    """Run one case; also returns the ceiling samples it took (not those it was given)."""
    given = len(ctx.ceiling_samples)
    result = BENCHMARKS[name](ctx)
    return result, ctx.ceiling_samples[given:]
