"""Ours against transformers' ``JinaEmbeddingsV3Model`` on one device, in the same run:
``python -m benchmarks.gpu_peer`` (CUDA, bf16; ``--device cpu --quick`` runs it small).

Both load the same generated full-size checkpoint (the peer with the task's LoRA merged, SDPA,
batches sorted by length and padded as sentence-transformers does, at batch sizes 32 and
128) and embed the mixed 16-1024-token workload of ``gpu_check``. Prints tokens/s, the
ratios, and the lowest cosine between the two models' rows; writes one JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.measure import synchronize
from benchmarks.report import machine_info
from benchmarks.workloads import (
    DEFAULT_CACHE_DIR,
    FULL_SIZE_CONFIG,
    exact_length_texts,
    log_uniform_lengths,
    random_jina_checkpoint,
)

TASK = "text-matching"
SEED = 0
PEER_BATCH_SIZES = (32, 128)


def _dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _best_seconds(run: Any, device: torch.device, repeats: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = run()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best, result


def run(device: torch.device, *, quick: bool, cache_dir: Path, repeats: int) -> dict[str, Any]:
    from benchmarks.hf_jina import HFJinaPeer
    from embedder_core import Embedder

    config = {"max_position_embeddings": 1026} if quick else FULL_SIZE_CONFIG
    count, high = (24, 256) if quick else (2048, 1024)
    dtype = _dtype(device)
    model_dir = random_jina_checkpoint(cache_dir, config, seed=SEED)
    ours = Embedder.from_pretrained(str(model_dir), device=device, dtype=dtype)
    lengths = log_uniform_lengths(count, 16, high, seed=SEED)
    texts = exact_length_texts(ours, model_dir, lengths, task=TASK, seed=SEED)
    tokens = sum(lengths)
    ours.encode(texts[:64], task=TASK)  # warm-up
    ours_seconds, ours_rows = _best_seconds(lambda: ours.encode(texts, task=TASK), device, repeats)
    ours = None
    peer = HFJinaPeer(model_dir, TASK, device=device, dtype=dtype)
    peer.encode(texts[:64])
    peers: dict[str, Any] = {}
    lowest_cosine = 1.0
    for batch_size in PEER_BATCH_SIZES:
        seconds, rows = _best_seconds(
            lambda b=batch_size: peer.encode(texts, batch_size=b), device, repeats
        )
        cosine = float(
            (np.asarray(ours_rows, np.float64) * np.asarray(rows, np.float64)).sum(1).min()
        )
        lowest_cosine = min(lowest_cosine, cosine)
        peers[str(batch_size)] = {"seconds": seconds, "tokens_per_s": tokens / seconds}
    best_peer = max(p["tokens_per_s"] for p in peers.values())
    return {
        "meta": machine_info(device, dtype),
        "inputs": count,
        "tokens": tokens,
        "ours": {"seconds": ours_seconds, "tokens_per_s": tokens / ours_seconds},
        "peer": peers,
        "ratio_to_best_peer": (tokens / ours_seconds) / best_peer,
        "min_cosine_ours_to_peer": lowest_cosine,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_peer", description=__doc__)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("gpu_peer.json"))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_peer: no CUDA device", file=sys.stderr)
        return 2
    result = run(device, quick=args.quick, cache_dir=args.cache_dir, repeats=args.repeats)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"{result['inputs']} inputs, {result['tokens']:,} tokens, {result['meta']['dtype']}")
    print(f"ours: {result['ours']['tokens_per_s']:,.0f} tokens/s")
    for batch_size, peer in result["peer"].items():
        print(f"JinaEmbeddingsV3Model, batch {batch_size}: {peer['tokens_per_s']:,.0f} tokens/s")
    print(f"ours / best peer: {result['ratio_to_best_peer']:.2f}x")
    print(f"lowest cosine ours vs peer: {result['min_cosine_ours_to_peer']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
