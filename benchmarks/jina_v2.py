"""jina-embeddings-v2 (JinaBERT): ours (packed, ALiBi bias as a strided view) against a
padded implementation of the same weights, at small-en and base-en sizes.

For each size, on the mixed workload (log-uniform lengths from 16 to 1024 tokens):

- tokens/s of our float32 Embedder, and of the padded baseline in the same run: the
  published architecture written plainly (batches of ``BASELINE_BATCH`` texts sorted by
  length, as sentence-transformers batches them, padded to the longest, one
  (batch, heads, L, L) ALiBi bias + padding mask, SDPA), which is how a padded ALiBi model
  runs; its vectors must equal ours (cosine >= 0.99999);
- MFU: tokens/s x 2 x non-embedding parameters over the GEMM ceiling measured in this run
  (target >= 0.55 at base-en size on CPU);
- int8 (CPU): tokens/s against our float32, and the cosine of its vectors to float32's.

Then peak memory above the loaded model for one input of 2048 and of 8192 tokens at base-en
size, each in a fresh process (target: <= 1 GiB at 8192 on CPU).
"""

from __future__ import annotations

import functools
import gc
import hashlib
import json
import math
import multiprocessing
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.context import QUICK, SEED, Context
from benchmarks.long_inputs import measure_one
from benchmarks.measure import (
    min_row_cosine,
    model_flops_utilization,
    non_embedding_parameters,
    timed,
)
from benchmarks.report import CaseResult, Figure, Target
from benchmarks.workloads import exact_length_texts, log_uniform_lengths

NAME = "jina_v2"
MIB = 1024**2
MFU_TARGET = 0.55  # base-en size, CPU
PEAK_LIMIT_MIB = 1024.0  # one 8192-token input at base-en size, CPU
BASELINE_BATCH = 8  # (8, 12, 1024, 1024) float32 bias: 384 MiB at the longest batch

FULL_MODELS: dict[str, dict[str, Any]] = {
    "small-en": {
        "hidden_size": 512,
        "num_hidden_layers": 4,
        "num_attention_heads": 8,
        "intermediate_size": 2048,
        "vocab_size": 30528,
    },
    "base-en": {
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "vocab_size": 30528,
    },
}
QUICK_MODELS: dict[str, dict[str, Any]] = {
    "tiny": {},
    "tiny-6-heads": {"hidden_size": 48, "num_attention_heads": 6},
}
MEMORY_MODEL = "base-en"


def random_v2_checkpoint(cache_dir: Path, config: dict[str, Any], *, seed: int = SEED) -> Path:
    """A float32 random checkpoint in the released jina-embeddings-v2 layout, cached."""
    from embedder_core.testing import write_tiny_jina_v2_checkpoint

    key = json.dumps(
        {"config": config, "seed": seed, "tokenizer": "rule-wordpiece"}, sort_keys=True
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    directory = cache_dir / f"jina-v2-random-{config.get('hidden_size', 'tiny')}-{digest}"
    if (directory / "model.safetensors").is_file():
        return directory
    scratch = directory.with_name(directory.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    write_tiny_jina_v2_checkpoint(scratch, seed=seed, dtype=torch.float32, **config)
    scratch.rename(directory)
    return directory


class PaddedJinaV2:
    """The published JinaBERT forward, padded: the baseline (float32, the given device)."""

    def __init__(self, model_dir: Path, device: torch.device) -> None:
        from safetensors.torch import load_file

        from embedder_core.tokenization import TextTokenizer

        self.config = json.loads((model_dir / "config.json").read_text())
        self.device = device
        self.weights = {
            k.removeprefix("bert."): v.float().to(device)
            for k, v in load_file(model_dir / "model.safetensors").items()
        }
        self.tokenizer = TextTokenizer.from_dir(model_dir)
        heads = self.config["num_attention_heads"]
        below = 2 ** math.floor(math.log2(heads))
        slopes = [2.0 ** (-8.0 * (k + 1) / below) for k in range(below)]
        slopes += [2.0 ** (-8.0 * (k + 1) / (2 * below)) for k in range(2 * below)][0::2][
            : heads - below
        ]
        self.slopes = torch.tensor(slopes, device=device)

    def encode(self, texts: list[str]) -> np.ndarray:
        t = self.tokenizer
        ids = [[*t.prefix_ids, *piece, *t.suffix_ids] for piece in t.encode(texts)]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), self.config["hidden_size"]), dtype=np.float32)
        with torch.inference_mode():
            for first in range(0, len(order), BASELINE_BATCH):
                batch = order[first : first + BASELINE_BATCH]
                out[batch] = self._forward([ids[i] for i in batch]).cpu().numpy()
        return out

    def _forward(self, sequences: list[list[int]]) -> torch.Tensor:
        c, w = self.config, self.weights
        hidden, heads = c["hidden_size"], c["num_attention_heads"]
        inner, eps, dim = c["intermediate_size"], c["layer_norm_eps"], hidden // heads
        count, longest = len(sequences), max(map(len, sequences))
        ids = torch.full((count, longest), c["pad_token_id"], dtype=torch.long)
        real = torch.zeros(count, longest, dtype=torch.bool)
        for row, sequence in enumerate(sequences):
            ids[row, : len(sequence)] = torch.tensor(sequence)
            real[row, : len(sequence)] = True
        ids, real = ids.to(self.device), real.to(self.device)
        position = torch.arange(longest, device=self.device, dtype=torch.float32)
        bias = -self.slopes[:, None, None] * (position[:, None] - position[None, :]).abs()
        bias = bias[None].repeat(count, 1, 1, 1).masked_fill_(~real[:, None, None, :], -1e30)

        def norm(x: torch.Tensor, name: str) -> torch.Tensor:
            return F.layer_norm(x, (hidden,), w[f"{name}.weight"], w[f"{name}.bias"], eps)

        x = w["embeddings.word_embeddings.weight"][ids]
        x = norm(x + w["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
        for i in range(c["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            q, k, v = (
                F.linear(x, w[f"{p}.attention.self.{n}.weight"], w[f"{p}.attention.self.{n}.bias"])
                .view(count, longest, heads, dim)
                .transpose(1, 2)
                for n in ("query", "key", "value")
            )
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            context = context.transpose(1, 2).reshape(count, longest, hidden)
            attn = F.linear(
                context,
                w[f"{p}.attention.output.dense.weight"],
                w[f"{p}.attention.output.dense.bias"],
            )
            x = norm(x + attn, f"{p}.attention.output.LayerNorm")
            both = F.linear(x, w[f"{p}.mlp.gated_layers.weight"])
            gated = both[..., :inner]
            act = F.relu(gated) if c["feed_forward_type"] == "reglu" else F.gelu(gated)
            y = F.linear(act * both[..., inner:], w[f"{p}.mlp.wo.weight"], w[f"{p}.mlp.wo.bias"])
            x = norm(y + x, f"{p}.mlp.layernorm")
        pooled = (x * real[..., None]).sum(1) / real.sum(1, keepdim=True)
        return F.normalize(pooled, dim=-1)


def _best_seconds(run: Any, device: torch.device, repeats: int) -> tuple[float, np.ndarray]:
    best, out = float("inf"), None
    for _ in range(repeats):
        seconds, out = timed(run, device)
        best = min(best, seconds)
    return best, out


def _time_baseline(
    model_dir: Path, ctx: Context, texts: list[str], warmup: list[str]
) -> tuple[float, np.ndarray]:
    """The padded baseline's best time and vectors; its weights are freed on return."""
    baseline = PaddedJinaV2(model_dir, ctx.device)
    baseline.encode(warmup)
    encode = functools.partial(baseline.encode, texts)
    result = _best_seconds(encode, ctx.device, ctx.sizes.repeats)
    del encode, baseline
    gc.collect()
    return result


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def _one_size(ctx: Context, label: str, config: dict[str, Any]) -> tuple[list[Figure], dict]:
    from embedder_core import Embedder
    from embedder_core.models.quantization import int8_support

    sizes = ctx.sizes
    model_dir = random_v2_checkpoint(ctx.cache_dir, config)
    parameters = non_embedding_parameters(model_dir)
    lengths = log_uniform_lengths(sizes.mixed_count, sizes.mixed_low, sizes.mixed_high, seed=SEED)
    tokens = sum(lengths)
    ours = Embedder.from_pretrained(str(model_dir), device=ctx.device, dtype=torch.float32)
    texts = exact_length_texts(ours, model_dir, lengths, task=None, seed=SEED)
    warmup = exact_length_texts(ours, model_dir, sorted(lengths)[:3], task=None, seed=SEED + 1)
    ours.encode(warmup)
    ctx.measure_ceiling()
    seconds, embeddings = _best_seconds(lambda: ours.encode(texts), ctx.device, sizes.repeats)
    ctx.log(f"{label}: ours {tokens / seconds:.0f} tokens/s")
    base_seconds, base_embeddings = _time_baseline(model_dir, ctx, texts, warmup)
    ctx.log(f"{label}: padded {tokens / base_seconds:.0f} tokens/s")
    ctx.measure_ceiling()
    tokens_per_s = tokens / seconds
    mfu = model_flops_utilization(tokens_per_s, parameters, ctx.ceiling_flops)
    on_cpu = ctx.device.type == "cpu"
    figures = [
        Figure(NAME, f"{label} tokens/s vs padded", tokens_per_s, tokens / base_seconds),
        Figure(
            NAME,
            f"{label} MFU (fp32 GEMM ceiling)",
            mfu,
            None,
            Target(">=", MFU_TARGET) if on_cpu and label == "base-en" else None,
        ),
        Figure(
            NAME,
            f"{label} min cosine to padded",
            min_row_cosine(embeddings, base_embeddings),
            None,
            Target(">=", 0.99999),
        ),
    ]
    details: dict[str, Any] = {
        "config": config,
        "tokens": tokens,
        "lengths": lengths,
        "parameters": parameters,
        "ours_seconds": seconds,
        "baseline_seconds": base_seconds,
        "baseline_batch_size": BASELINE_BATCH,
        "mfu": mfu,
    }
    if on_cpu and int8_support(ctx.device).usable:
        int8 = Embedder.from_pretrained(str(model_dir), device="cpu", quantization="int8")
        int8.encode(warmup)
        int8_seconds, int8_embeddings = _best_seconds(
            lambda: int8.encode(texts), ctx.device, sizes.repeats
        )
        quality = _cosines(int8_embeddings, embeddings)
        ctx.log(f"{label}: int8 {tokens / int8_seconds:.0f} tokens/s")
        figures += [
            Figure(NAME, f"{label} int8 tokens/s vs our fp32", tokens / int8_seconds, tokens_per_s),
            Figure(NAME, f"{label} int8 median cosine to fp32", float(np.median(quality))),
            Figure(NAME, f"{label} int8 min cosine to fp32", float(quality.min())),
        ]
        details["int8_seconds"] = int8_seconds
    return figures, details


def run(ctx: Context) -> CaseResult:
    quick = ctx.sizes == QUICK
    models = QUICK_MODELS if quick else FULL_MODELS
    figures: list[Figure] = []
    details: dict[str, Any] = {}
    for label, config in models.items():
        size_figures, details[label] = _one_size(ctx, label, config)
        figures += size_figures
        gc.collect()

    memory_label = next(iter(models)) if quick else MEMORY_MODEL
    model_dir = random_v2_checkpoint(ctx.cache_dir, models[memory_label])
    short, long = (128, 512) if quick else (2048, 8192)
    spawn = multiprocessing.get_context("spawn")
    runs = {}
    for length in (short, long):
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            dtype = str(ctx.dtype if ctx.device.type == "cuda" else torch.float32)
            runs[length] = pool.submit(
                measure_one,
                str(model_dir),
                length,
                str(ctx.device),
                dtype.removeprefix("torch."),
                None,
            ).result()
        ctx.log(f"{memory_label} {length} tokens: {runs[length]['seconds']:.1f} s")
    on_cpu = ctx.device.type == "cpu"
    for length in (short, long):
        peak = runs[length]["peak_above_model_bytes"] / MIB
        target = Target("<=", PEAK_LIMIT_MIB) if on_cpu and length == 8192 else None
        figures.append(
            Figure(NAME, f"{memory_label} peak MiB above model @{length}", peak, None, target)
        )
        figures.append(
            Figure(NAME, f"{memory_label} tokens/s @{length}", runs[length]["tokens_per_s"])
        )
    details["memory"] = {"model": memory_label, "runs": list(runs.values())}
    return CaseResult(figures=figures, details=details)
