"""Full-size jina-v3 architecture on the mixed-length workload: ours vs the padded baseline.

One timed run each (after a cheap warm-up): at full size ours takes about a minute on
2 cores and the baseline several. The two models are loaded one after the other, never
together, and their outputs must agree (cosine >= 0.99999).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from benchmarks.baseline import PaddedBaseline
from benchmarks.context import ADAPTER_TASK, SEED, Context
from benchmarks.measure import (
    min_row_cosine,
    model_flops_utilization,
    non_embedding_parameters,
    timed,
)
from benchmarks.report import CaseResult, Figure, Target
from benchmarks.workloads import exact_length_texts, log_uniform_lengths

NAME = "full_size"


@dataclass(frozen=True)
class _Run:
    warmup_seconds: float
    seconds: float
    embeddings: np.ndarray


def _run(
    encode: Callable[[Sequence[str]], np.ndarray],
    texts: Sequence[str],
    warmup: Sequence[str],
    device: torch.device,
) -> _Run:
    warmup_seconds, _ = timed(lambda: encode(warmup), device)
    seconds, embeddings = timed(lambda: encode(texts), device)
    return _Run(warmup_seconds, seconds, embeddings)


def run(ctx: Context) -> CaseResult:
    sizes = ctx.sizes
    model_dir = ctx.jina_checkpoint()
    parameters = non_embedding_parameters(model_dir)
    lengths = log_uniform_lengths(sizes.mixed_count, sizes.mixed_low, sizes.mixed_high, seed=SEED)
    tokens = sum(lengths)

    ctx.measure_ceiling()  # samples before and after the timed runs: MFU uses the best
    embedder = ctx.load_embedder(model_dir)
    texts = exact_length_texts(embedder, model_dir, lengths, task=ADAPTER_TASK, seed=SEED)
    # The three shortest inputs: starts thread pools and pages the weights in, cheaply.
    warmup = exact_length_texts(
        embedder, model_dir, sorted(lengths)[:3], task=ADAPTER_TASK, seed=SEED + 1
    )
    ours = _run(lambda batch: embedder.encode(batch, task=ADAPTER_TASK), texts, warmup, ctx.device)
    ctx.log(f"ours: {tokens} tokens in {ours.seconds:.1f} s")
    embedder = None  # free it before the baseline loads its own copy of the weights
    gc.collect()

    baseline = PaddedBaseline(
        model_dir, device=ctx.device, dtype=ctx.dtype, batch_size=sizes.baseline_batch_size
    )
    if [len(ids) for ids in baseline.tokenize(texts, ADAPTER_TASK)] != lengths:
        raise RuntimeError("the baseline tokenizes the workload differently from Embedder")
    padded_tokens = sum(
        len(batch) * max(lengths[i] for i in batch) for batch in baseline.batches(lengths)
    )
    reference = _run(
        lambda batch: baseline.encode(batch, task=ADAPTER_TASK), texts, warmup, ctx.device
    )
    ctx.log(f"baseline: {reference.seconds:.1f} s")
    baseline = None
    gc.collect()

    ceiling = ctx.measure_ceiling()
    ours_rate = tokens / ours.seconds
    baseline_rate = tokens / reference.seconds
    ours_mfu = model_flops_utilization(ours_rate, parameters, ceiling)
    baseline_mfu = model_flops_utilization(baseline_rate, parameters, ceiling)
    cosine = min_row_cosine(ours.embeddings, reference.embeddings)
    return CaseResult(
        figures=[
            Figure(
                NAME,
                "tokens/s (vs padded baseline)",
                ours_rate,
                baseline_rate,
                Target(">=", 3.0),
                "ratio",
            ),
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
            "ours_warmup_seconds": ours.warmup_seconds,
            "ours_seconds": ours.seconds,
            "baseline_warmup_seconds": reference.warmup_seconds,
            "baseline_seconds": reference.seconds,
            "ours_tokens_per_s": ours_rate,
            "baseline_tokens_per_s": baseline_rate,
            "ours_mfu": ours_mfu,
            "baseline_mfu": baseline_mfu,
            "min_cosine": cosine,
            "ceiling_flops": ceiling,
        },
    )
