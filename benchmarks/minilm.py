"""The real all-MiniLM-L6-v2 on speech paragraphs: ours vs `SentenceTransformer.encode`."""

from __future__ import annotations

import gc

import numpy as np

from benchmarks.context import SEED, Context
from benchmarks.measure import min_row_cosine, timed
from benchmarks.report import CaseResult, Figure, Target
from benchmarks.workloads import speech_paragraphs

NAME = "minilm"


def run(ctx: Context) -> CaseResult:
    from sentence_transformers import SentenceTransformer

    from embedder_core.testing import minilm_path

    model_dir = minilm_path()
    paragraphs = speech_paragraphs(ctx.speeches(), ctx.sizes.minilm_paragraphs, seed=SEED)
    embedder = ctx.load_embedder(model_dir)
    # Its defaults: batch size 32, length-sorted padded batches, its own device choice.
    sentence_transformer = SentenceTransformer(str(model_dir), device=str(ctx.device))

    encoders = {
        # No task: MiniLM has no adapters and configures no prompt.
        "ours": lambda: embedder.encode(paragraphs),
        "sentence_transformers": lambda: sentence_transformer.encode(paragraphs),
    }
    embedder.encode(paragraphs[:32])  # warm-up
    sentence_transformer.encode(paragraphs[:32])
    # Alternate the two so that machine noise hits both alike; keep each one's best.
    timings: dict[str, list[float]] = {name: [] for name in encoders}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(ctx.sizes.repeats):
        for name, encode in encoders.items():
            seconds, outputs[name] = timed(encode, ctx.device)
            timings[name].append(seconds)

    counts = embedder.count_tokens(paragraphs)
    tokens = sum(min(count, embedder.max_tokens) for count in counts)
    embedder = sentence_transformer = None
    gc.collect()

    ours_rate = len(paragraphs) / min(timings["ours"])
    their_rate = len(paragraphs) / min(timings["sentence_transformers"])
    cosine = min_row_cosine(outputs["ours"], outputs["sentence_transformers"])
    return CaseResult(
        figures=[
            Figure(
                NAME,
                "paragraphs/s (vs sentence-transformers)",
                ours_rate,
                their_rate,
                Target(">=", 1.3),
                "ratio",
            ),
            Figure(NAME, "min cosine to sentence-transformers", cosine, None, Target(">=", 0.9999)),
        ],
        details={
            "paragraphs": len(paragraphs),
            "tokens": tokens,
            "tokens_min_median_max": [min(counts), sorted(counts)[len(counts) // 2], max(counts)],
            "seconds": timings,
            "ours_tokens_per_s": tokens / min(timings["ours"]),
            "sentence_transformers_tokens_per_s": tokens / min(timings["sentence_transformers"]),
            "min_cosine": cosine,
        },
    )
