"""Full-size jina-v3 architecture on the mixed-length workload: ours vs the padded baseline."""

from __future__ import annotations

import gc
import time

from benchmarks.baseline import PaddedBaseline
from benchmarks.context import ADAPTER_TASK, SEED, Context
from benchmarks.measure import (
    best_time,
    min_row_cosine,
    model_flops_utilization,
    non_embedding_parameters,
)
from benchmarks.report import CaseResult, Figure, Target
from benchmarks.workloads import exact_length_texts, log_uniform_lengths

NAME = "full_size"


def _warmup_lengths(lengths: list[int]) -> list[int]:
    # The three shortest inputs: starts thread pools and loads the weights' pages, cheaply.
    return sorted(lengths)[:3]


def run(ctx: Context) -> CaseResult:
    sizes = ctx.sizes
    model_dir = ctx.jina_checkpoint()
    parameters = non_embedding_parameters(model_dir)
    lengths = log_uniform_lengths(sizes.mixed_count, sizes.mixed_low, sizes.mixed_high, seed=SEED)
    tokens = sum(lengths)

    start = time.perf_counter()
    embedder = ctx.load_embedder(model_dir)
    load_seconds = time.perf_counter() - start
    texts = exact_length_texts(embedder, model_dir, lengths, task=ADAPTER_TASK, seed=SEED)
    warmup = exact_length_texts(
        embedder, model_dir, _warmup_lengths(lengths), task=ADAPTER_TASK, seed=SEED + 1
    )
    start = time.perf_counter()
    embedder.encode(warmup, task=ADAPTER_TASK)
    ours_warmup_seconds = time.perf_counter() - start
    # One timed run: at full size it is ~a minute, and the baseline's several.
    ours_seconds, ours = best_time(lambda: embedder.encode(texts, task=ADAPTER_TASK), ctx.device, 1)
    ctx.log(f"ours: {tokens} tokens in {ours_seconds:.1f} s (warm-up {ours_warmup_seconds:.1f} s)")
    del embedder
    gc.collect()

    baseline = PaddedBaseline(
        model_dir, device=ctx.device, dtype=ctx.dtype, batch_size=sizes.baseline_batch_size
    )
    baseline_lengths = [len(ids) for ids in baseline.tokenize(texts, ADAPTER_TASK)]
    if baseline_lengths != lengths:
        raise RuntimeError("the baseline tokenizes the workload differently from Embedder")
    start = time.perf_counter()
    baseline.encode(warmup, task=ADAPTER_TASK)
    baseline_warmup_seconds = time.perf_counter() - start
    baseline_seconds, reference = best_time(
        lambda: baseline.encode(texts, task=ADAPTER_TASK), ctx.device, 1
    )
    ctx.log(f"baseline: {baseline_seconds:.1f} s (warm-up {baseline_warmup_seconds:.1f} s)")
    padded_tokens = sum(
        len(batch) * max(lengths[i] for i in batch)
        for batch in baseline.batches(lengths)
    )
    del baseline
    gc.collect()

    ours_rate = tokens / ours_seconds
    baseline_rate = tokens / baseline_seconds
    ours_mfu = model_flops_utilization(ours_rate, parameters, ctx.ceiling_flops)
    baseline_mfu = model_flops_utilization(baseline_rate, parameters, ctx.ceiling_flops)
    cosine = min_row_cosine(ours, reference)
    return CaseResult(
        figures=[
            Figure(NAME, "tokens/s (vs padded baseline)", ours_rate, baseline_rate,
                   Target(">=", 3.0), "ratio"),
            Figure(NAME, "MFU", ours_mfu, baseline_mfu, Target(">=", 0.45), "ours"),
            Figure(NAME, "min cosine to baseline", cosine, None, Target(">=", 0.99999)),
        ],
        details={
            "inputs": len(lengths),
            "lengths": lengths,
            "tokens": tokens,
            "baseline_padded_tokens": padded_tokens,
            "task": ADAPTER_TASK,
            "non_embedding_parameters": parameters,
            "load_seconds": load_seconds,
            "ours_warmup_seconds": ours_warmup_seconds,
            "ours_seconds": ours_seconds,
            "baseline_warmup_seconds": baseline_warmup_seconds,
            "baseline_seconds": baseline_seconds,
            "ours_tokens_per_s": ours_rate,
            "baseline_tokens_per_s": baseline_rate,
            "ours_mfu": ours_mfu,
            "baseline_mfu": baseline_mfu,
            "min_cosine": cosine,
        },
    )

