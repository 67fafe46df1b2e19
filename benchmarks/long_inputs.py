"""Long inputs: one document of each length, full-size architecture; speed and peak memory.

Each length runs in a fresh process, so the peak reflects that one input and nothing the
allocator kept from earlier work. Peak memory is counted above the process's footprint
after loading the model and encoding one short input (thread pools, tokenizer, first
pages of the weights), i.e. what the long input itself costs.
"""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from benchmarks.context import ADAPTER_TASK, SEED, Context
from benchmarks.measure import PeakMemory, synchronize
from benchmarks.report import CaseResult, Figure, Target
from benchmarks.workloads import exact_length_texts

NAME = "long_inputs"
MIB = 1024**2
PEAK_LIMIT_BYTES = 2 * 1024**3  # at the longest input: 2 GiB above the loaded model
MAX_GROWTH = 5.0  # 4x the tokens may cost at most 5x the memory: linear, not quadratic


def measure_one(
    model_dir: str, length: int, device: str, dtype: str, task: str | None
) -> dict[str, Any]:
    """In a fresh process: seconds and peak memory of encoding one `length`-token input."""
    from embedder_core import Embedder

    torch_device = torch.device(device)
    embedder = Embedder.from_pretrained(model_dir, device=torch_device, dtype=getattr(torch, dtype))
    text, short = exact_length_texts(embedder, Path(model_dir), [length, 16], task=task, seed=SEED)
    embedder.encode([short], task=task)
    with PeakMemory(torch_device) as memory:
        synchronize(torch_device)
        start = time.perf_counter()
        embedder.encode([text], task=task)
        synchronize(torch_device)
        seconds = time.perf_counter() - start
    return {
        "tokens": length,
        "seconds": seconds,
        "tokens_per_s": length / seconds,
        "footprint_before_bytes": memory.start_bytes,
        "peak_bytes": memory.peak_bytes,
        "peak_above_model_bytes": memory.peak_above_start,
        "memory_method": memory.method,
    }


def run(ctx: Context) -> CaseResult:
    model_dir = ctx.jina_checkpoint()
    short, long = ctx.sizes.long_lengths
    results = {}
    spawn = multiprocessing.get_context("spawn")
    for length in (short, long):
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            dtype = str(ctx.dtype).removeprefix("torch.")
            future = pool.submit(
                measure_one, str(model_dir), length, str(ctx.device), dtype, ADAPTER_TASK
            )
            results[length] = future.result()
        ctx.log(f"{length} tokens: {results[length]['seconds']:.1f} s")

    peak_short = results[short]["peak_above_model_bytes"]
    peak_long = results[long]["peak_above_model_bytes"]
    return CaseResult(
        figures=[
            Figure(NAME, f"tokens/s @{short}", results[short]["tokens_per_s"]),
            Figure(NAME, f"tokens/s @{long}", results[long]["tokens_per_s"]),
            Figure(NAME, f"peak MiB above model @{short}", peak_short / MIB),
            Figure(
                NAME,
                f"peak MiB above model @{long}",
                peak_long / MIB,
                None,
                Target("<=", PEAK_LIMIT_BYTES / MIB),
            ),
            Figure(
                NAME,
                f"peak memory growth {long}/{short}",
                peak_long / max(peak_short, 1),
                None,
                Target("<=", MAX_GROWTH),
            ),
        ],
        details={"task": ADAPTER_TASK, "runs": list(results.values())},
    )
