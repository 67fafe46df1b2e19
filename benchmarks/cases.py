"""The benchmark cases by name; importable, so a spawned process can run one."""

from __future__ import annotations

from collections.abc import Callable

from benchmarks import (
    cli,
    full_size,
    ingestion,
    int8,
    jina_v2,
    late_chunking,
    long_inputs,
    minilm,
    ray_scaling,
    rerank,
    scheduler,
    server,
    soak,
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
    jina_v2.NAME: jina_v2.run,
    rerank.V2_NAME: rerank.run_v2,
    rerank.V3_NAME: rerank.run_v3,
    rerank.SERVER_NAME: rerank.run_server,
    cli.NAME: cli.run,
}

# Run only when named (`--only soak`): not part of the default suite.
OPT_IN: dict[str, Callable[[Context], CaseResult]] = {soak.NAME: soak.run}

# Names that select several cases (`--only int8`).
GROUPS: dict[str, tuple[str, ...]] = {
    "int8": (int8.FULL_SIZE_NAME, int8.MINILM_NAME),
    "rerank": rerank.NAMES,
}


def run_case(name: str, ctx: Context) -> tuple[CaseResult, list[float]]:
    """Run one case; also returns the ceiling samples it took (not those it was given)."""
    given = len(ctx.ceiling_samples)
    result = {**BENCHMARKS, **OPT_IN}[name](ctx)
    return result, ctx.ceiling_samples[given:]
