"""`python -m benchmarks`: run the suite, print one table, write benchmarks/results.json."""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch

from benchmarks.cases import BENCHMARKS, GROUPS, OPT_IN, run_case
from benchmarks.context import FULL, QUICK, Context
from benchmarks.measure import CEILING_SHAPE
from benchmarks.report import CaseResult, Figure, machine_info, render_table, write_results
from benchmarks.workloads import DEFAULT_CACHE_DIR, DEFAULT_SPEECHES

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Throughput, MFU and memory of embedder_core against baselines "
        "measured in the same run.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes: checks the suite runs, in seconds"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted([*BENCHMARKS, *GROUPS, *OPT_IN]),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join([*BENCHMARKS, *GROUPS])}; "
        f"only when named: {', '.join(OPT_IN)}",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="results JSON path")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=Path(os.environ.get("JINA_BENCH_CACHE", DEFAULT_CACHE_DIR)),
        help="where the generated random checkpoints are kept between runs",
    )
    parser.add_argument(
        "--speeches", type=Path, default=DEFAULT_SPEECHES, help="sotu_speeches.jsonl"
    )
    return parser.parse_args(argv)


def _run_isolated(name: str, ctx: Context) -> tuple[CaseResult, list[float]]:
    """Run one benchmark in a fresh process.

    Measured here: MiniLM ran 3x slower after the full-size stages in the same process
    (the allocator and thread pools keep the 2.3 GB model's state), so each case gets a
    clean process, as a user's job would.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(run_case, name, ctx).result()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # The dtype Embedder picks by default on this device; the ceiling is measured in it.
    dtype = torch.float32
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    selected = list(
        dict.fromkeys(case for name in args.only or BENCHMARKS for case in GROUPS.get(name, [name]))
    )
    sizes = QUICK if args.quick else FULL

    ctx = Context(
        sizes, device, dtype, args.cache_dir, args.speeches, ceiling_repeats=3 if args.quick else 10
    )
    ctx.measure_ceiling()
    figures: list[Figure] = []
    details: dict[str, object] = {}
    errors: dict[str, str] = {}
    for name in selected:
        print(f"[benchmarks] {name} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        try:
            if args.quick:
                result = {**BENCHMARKS, **OPT_IN}[name](ctx)
            else:
                result, samples = _run_isolated(name, ctx)
                ctx.ceiling_samples.extend(samples)
        except Exception as error:  # report it, go on: one failure must not void the run
            traceback.print_exc()
            errors[name] = f"{type(error).__name__}: {error}"
            continue
        seconds = time.perf_counter() - start
        print(f"[benchmarks] {name} done in {seconds:.1f} s", file=sys.stderr, flush=True)
        figures += result.figures
        details[name] = {**result.details, "wall_seconds": seconds}

    m, k, n = CEILING_SHAPE
    dtype_name = str(dtype).removeprefix("torch.")
    hardware = Figure(
        "hardware", f"GEMM {m}x{k}x{n} GFLOP/s ({dtype_name})", ctx.ceiling_flops / 1e9
    )
    figures.insert(0, hardware)
    meta = machine_info(device, dtype)
    meta.update(
        {
            "mode": "quick" if args.quick else "full",
            "ceiling_flops": ctx.ceiling_flops,
            "ceiling_samples_flops": ctx.ceiling_samples,
        }
    )
    write_results(args.output, meta, figures, details, errors)
    if args.quick:
        print("quick mode: tiny sizes; only the correctness targets (cosines) mean anything")
    print(render_table(figures))
    for name, message in errors.items():
        print(f"{name}: FAILED: {message}")
    print(f"results: {args.output}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
