"""Late chunking of one long speech vs encoding the same chunks independently.

The document is the longest speech's opening, cut at a sentence boundary to fit one
forward pass (`late_document_tokens`, the model's limit at full size), so both ways encode
the same text once and no window overlap adds tokens. Time is compared per token.

Exact attention makes a long sequence cost more per token than short ones, whoever
implements it: the details carry the FLOP ratio that this alone implies, as the floor of
what any implementation can reach.
"""

from __future__ import annotations

import gc
import json
from typing import TYPE_CHECKING

from benchmarks.context import PASSAGE_TASK, Context
from benchmarks.measure import non_embedding_parameters, timed
from benchmarks.report import CaseResult, Figure, Target
from benchmarks.workloads import document_prefix

if TYPE_CHECKING:
    from embedder_core import DocumentChunk

NAME = "late_chunking"


def run(ctx: Context) -> CaseResult:
    model_dir = ctx.jina_checkpoint()
    config = json.loads((model_dir / "config.json").read_text())
    embedder = ctx.load_embedder(model_dir)
    longest = max(ctx.speeches(), key=lambda speech: len(speech["text"]))
    document = document_prefix(
        embedder, longest["text"], ctx.sizes.late_document_tokens, task=PASSAGE_TASK
    )
    chunk_size = ctx.sizes.late_chunk_tokens

    def late_chunk(text: str) -> list[DocumentChunk]:
        return embedder.embed_document(
            text, task=PASSAGE_TASK, chunker="sentences", chunk_size=chunk_size
        )

    late_chunk(document_prefix(embedder, document, 4 * chunk_size, task=PASSAGE_TASK))  # warm-up
    late_seconds, chunks = timed(lambda: late_chunk(document), ctx.device)
    chunk_texts = [chunk.text for chunk in chunks]
    independent_seconds, _ = timed(
        lambda: embedder.encode(chunk_texts, task=PASSAGE_TASK), ctx.device
    )
    ctx.log(f"late {late_seconds:.1f} s, independent {independent_seconds:.1f} s")
    late_tokens = embedder.count_tokens([document], task=PASSAGE_TASK)[0]
    chunk_tokens = embedder.count_tokens(chunk_texts, task=PASSAGE_TASK)
    embedder = None
    gc.collect()

    independent_tokens = sum(chunk_tokens)
    late_ms = 1000 * late_seconds / late_tokens
    independent_ms = 1000 * independent_seconds / independent_tokens
    # FLOPs per token: 2 x parameters for the GEMMs, plus 4 x context x width per layer for
    # attention (q k^T and weights x v); a token's context is the sequence it sits in.
    gemm = 2 * non_embedding_parameters(model_dir)
    per_context = 4 * config["hidden_size"] * config["num_hidden_layers"]
    late_flops = gemm + per_context * late_tokens
    independent_flops = gemm + per_context * sum(n * n for n in chunk_tokens) / independent_tokens
    return CaseResult(
        figures=[
            Figure(
                NAME,
                "ms per token, late vs independent chunks",
                late_ms,
                independent_ms,
                Target("<=", 1.15),
                "ratio",
            ),
            # What exact attention alone implies for that ratio, at perfect efficiency.
            Figure(
                NAME,
                "GFLOP per token, late vs independent (floor)",
                late_flops / 1e9,
                independent_flops / 1e9,
            ),
        ],
        details={
            "speech": {key: longest[key] for key in ("id", "year", "president")},
            "document_characters": len(document),
            "chunks": len(chunks),
            "chunk_size": chunk_size,
            "late_tokens": late_tokens,
            "independent_tokens": independent_tokens,
            "late_seconds": late_seconds,
            "independent_seconds": independent_seconds,
            "late_flops_per_token": late_flops,
            "independent_flops_per_token": independent_flops,
            "flop_ratio_late_vs_independent": late_flops / independent_flops,
        },
    )
