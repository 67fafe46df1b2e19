"""int8 on CPU against float32 and against the peers a user would pick instead.

Full-size jina-v3 architecture, the mixed 16-1024-token workload of `full_size`, one task:
our float32, our int8 (alternated, best of `repeats`), and transformers' native
``JinaEmbeddingsV3Model`` on identical weights (`benchmarks.hf_jina`, the task's LoRA
merged) run as sentence-transformers runs it, at batch size 32 and at batch size 1.

MiniLM on speech paragraphs: our float32 and int8, ``SentenceTransformer`` (torch), and,
where an interpreter with ``optimum-onnx`` is given in ``$JINA_BENCH_ONNX_PYTHON``,
sentence-transformers' ``backend="onnx"`` and its dynamic int8 export
(`benchmarks.st_onnx_peer`, run in that interpreter's own process).

Quality: per-vector cosine of int8 to float32 (median and minimum) on both models.
GEMM level: each int8 mechanism measured against float32 (`benchmarks.int8_kernels`).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.context import ADAPTER_TASK, SEED, Context
from benchmarks.measure import timed
from benchmarks.report import CaseResult, Figure, Target
from benchmarks.workloads import exact_length_texts, log_uniform_lengths, speech_paragraphs

FULL_SIZE_NAME = "int8_full_size"
MINILM_NAME = "int8_minilm"
ONNX_PYTHON_ENV = "JINA_BENCH_ONNX_PYTHON"


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def _alternate(
    encoders: dict[str, Callable[[], np.ndarray]], repeats: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, np.ndarray]]:
    """Time each encoder `repeats` times, interleaved, so machine noise hits all alike."""
    seconds: dict[str, list[float]] = {name: [] for name in encoders}
    outputs: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        for name, encode in encoders.items():
            elapsed, outputs[name] = timed(encode, device)
            seconds[name].append(elapsed)
    return seconds, outputs


def _full_size(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    from benchmarks.hf_jina import HFJinaPeer
    from embedder_core import Embedder

    sizes = ctx.sizes
    model_dir = ctx.jina_checkpoint()
    lengths = log_uniform_lengths(sizes.mixed_count, sizes.mixed_low, sizes.mixed_high, seed=SEED)
    tokens = sum(lengths)
    fp32 = Embedder.from_pretrained(str(model_dir), device="cpu")
    int8 = Embedder.from_pretrained(str(model_dir), device="cpu", quantization="int8")
    texts = exact_length_texts(fp32, model_dir, lengths, task=ADAPTER_TASK, seed=SEED)
    warmup = exact_length_texts(
        fp32, model_dir, sorted(lengths)[:3], task=ADAPTER_TASK, seed=SEED + 1
    )
    for embedder in (fp32, int8):
        embedder.encode(warmup, task=ADAPTER_TASK)
    seconds, outputs = _alternate(
        {
            "ours_fp32": lambda: fp32.encode(texts, task=ADAPTER_TASK),
            "ours_int8": lambda: int8.encode(texts, task=ADAPTER_TASK),
        },
        sizes.repeats,
        ctx.device,
    )
    ctx.log(f"full size: fp32 {seconds['ours_fp32']} s, int8 {seconds['ours_int8']} s")
    fp32 = int8 = None
    gc.collect()

    peer = HFJinaPeer(model_dir, ADAPTER_TASK)
    peer.encode(warmup)
    for batch_size in (32, 1):
        name = f"hf_batch{batch_size}"
        elapsed, outputs[name] = timed(
            lambda batch_size=batch_size: peer.encode(texts, batch_size=batch_size), ctx.device
        )
        seconds[name] = [elapsed]
        ctx.log(f"full size: transformers JinaEmbeddingsV3Model batch {batch_size}: {elapsed} s")
    peer = None
    gc.collect()

    rates = {name: tokens / min(values) for name, values in seconds.items()}
    best_peer = max(("hf_batch32", "hf_batch1"), key=lambda name: rates[name])
    quality = _cosines(outputs["ours_int8"], outputs["ours_fp32"])
    peer_match = float(_cosines(outputs[best_peer], outputs["ours_fp32"]).min())
    label = "full_size_int8"
    figures = [
        Figure(
            label,
            "tokens/s int8 (vs our fp32)",
            rates["ours_int8"],
            rates["ours_fp32"],
            Target(">=", 1.7),
            "ratio",
        ),
        Figure(
            label,
            f"tokens/s int8 (vs transformers fp32, {best_peer.removeprefix('hf_')})",
            rates["ours_int8"],
            rates[best_peer],
            Target(">=", 1.5),
            "ratio",
        ),
        Figure(
            label,
            f"tokens/s our fp32 (vs transformers fp32, {best_peer.removeprefix('hf_')})",
            rates["ours_fp32"],
            rates[best_peer],
        ),
        Figure(
            label,
            "median cosine int8 to fp32",
            float(np.median(quality)),
            None,
            Target(">=", 0.995),
        ),
        Figure(label, "min cosine int8 to fp32", float(quality.min()), None, Target(">=", 0.98)),
        Figure(
            label, "min cosine transformers to ours (fp32)", peer_match, None, Target(">=", 0.9999)
        ),
    ]
    details = {
        "inputs": len(lengths),
        "tokens": tokens,
        "task": ADAPTER_TASK,
        "seconds": seconds,
        "tokens_per_s": rates,
        "best_transformers_setting": best_peer,
        "int8_cosine_median": float(np.median(quality)),
        "int8_cosine_min": float(quality.min()),
        "transformers_min_cosine_to_ours": peer_match,
    }
    return figures, details


def _st_onnx(texts: Sequence[str], repeats: int) -> dict[str, Any]:
    """sentence-transformers' ONNX backends in their own interpreter (see the module doc)."""
    python = os.environ.get(ONNX_PYTHON_ENV)
    if not python:
        return {"skipped": f"set ${ONNX_PYTHON_ENV} to a python with optimum-onnx installed"}
    from embedder_core.testing import minilm_path

    script = Path(__file__).resolve().parent / "st_onnx_peer.py"
    with tempfile.TemporaryDirectory(prefix="st-onnx-") as scratch:
        texts_path = Path(scratch) / "texts.json"
        texts_path.write_text(json.dumps(list(texts)))
        command = [python, str(script), str(minilm_path()), str(texts_path), scratch, str(repeats)]
        run = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
        if run.returncode != 0:
            return {"skipped": f"st_onnx_peer failed: {run.stderr[-1500:]}"}
        report = json.loads((Path(scratch) / "timings.json").read_text())
        report["embeddings"] = {
            name: np.load(Path(scratch) / f"{name}.npy") for name in report["seconds"]
        }
    return report


def _minilm(ctx: Context) -> tuple[list[Figure], dict[str, Any]]:
    from sentence_transformers import SentenceTransformer

    from embedder_core import Embedder
    from embedder_core.testing import minilm_path

    paragraphs = speech_paragraphs(ctx.speeches(), ctx.sizes.minilm_paragraphs, seed=SEED)
    fp32 = Embedder.from_pretrained(minilm_path(), device="cpu")
    int8 = Embedder.from_pretrained(minilm_path(), device="cpu", quantization="int8")
    sentence_transformer = SentenceTransformer(str(minilm_path()), device="cpu")
    encoders = {
        "ours_fp32": lambda: fp32.encode(paragraphs),
        "ours_int8": lambda: int8.encode(paragraphs),
        "sentence_transformers": lambda: sentence_transformer.encode(paragraphs),
    }
    for encode in encoders.values():  # warm-up
        encode()
    repeats = max(ctx.sizes.repeats, 3)
    seconds, outputs = _alternate(encoders, repeats, ctx.device)
    fp32 = int8 = sentence_transformer = None
    gc.collect()
    started = time.perf_counter()
    onnx = _st_onnx(paragraphs, repeats)
    ctx.log(f"minilm: sentence-transformers ONNX peer in {time.perf_counter() - started:.0f} s")
    if "seconds" in onnx:
        for name, values in onnx["seconds"].items():
            seconds[f"st_{name}"] = values
            outputs[f"st_{name}"] = onnx["embeddings"][name]

    rates = {name: len(paragraphs) / min(values) for name, values in seconds.items()}
    quality = _cosines(outputs["ours_int8"], outputs["ours_fp32"])
    label = "minilm_int8"
    figures = [
        Figure(
            label,
            "paragraphs/s int8 (vs our fp32)",
            rates["ours_int8"],
            rates["ours_fp32"],
            Target(">=", 1.5),
            "ratio",
        ),
        Figure(
            label,
            "paragraphs/s int8 (vs sentence-transformers torch)",
            rates["ours_int8"],
            rates["sentence_transformers"],
        ),
    ]
    for peer in ("st_onnx", "st_onnx_int8"):
        if peer in rates:
            figures.append(
                Figure(
                    label,
                    f"paragraphs/s int8 (vs sentence-transformers {peer.removeprefix('st_')})",
                    rates["ours_int8"],
                    rates[peer],
                )
            )
    figures += [
        Figure(
            label,
            "median cosine int8 to fp32",
            float(np.median(quality)),
            None,
            Target(">=", 0.995),
        ),
        Figure(label, "min cosine int8 to fp32", float(quality.min()), None, Target(">=", 0.98)),
    ]
    if "st_onnx_int8" in outputs:
        theirs = _cosines(outputs["st_onnx_int8"], outputs["ours_fp32"])
        figures.append(
            Figure(label, "median cosine st onnx int8 to fp32", float(np.median(theirs)))
        )
    details = {
        "paragraphs": len(paragraphs),
        "seconds": seconds,
        "paragraphs_per_s": rates,
        "int8_cosine_median": float(np.median(quality)),
        "int8_cosine_min": float(quality.min()),
        "st_onnx": {key: value for key, value in onnx.items() if key != "embeddings"},
    }
    return figures, details


def _support() -> Any:
    from embedder_core.models.quantization import int8_support

    support = int8_support(torch.device("cpu"))
    if not support.usable:
        raise RuntimeError(f"int8 is not usable on this machine: {support.reason}")
    return support


def run_full_size(ctx: Context) -> CaseResult:
    support = _support()
    figures, details = _full_size(ctx)
    return CaseResult(figures=figures, details={"reduce_range": support.reduce_range, **details})


def run_minilm(ctx: Context) -> CaseResult:
    """MiniLM and the GEMM-level mechanisms (a case of its own: a fresh process, as
    MiniLM runs several times slower after the full-size models in the same process)."""
    from benchmarks.int8_kernels import gemm_ratios

    support = _support()
    figures, details = _minilm(ctx)
    shape = (2048, 1024, 4096) if ctx.sizes.mixed_high >= 1024 else (256, 256, 512)
    kernels = gemm_ratios(shape, repeats=5 if ctx.sizes.mixed_high >= 1024 else 2)
    figures.append(
        Figure(
            "int8_gemm",
            f"{shape[0]}x{shape[1]}x{shape[2]} int8 speed / fp32 speed",
            float(kernels["onednn_per_token"]["ratio_vs_fp32"]),
        )
    )
    details.update(
        {
            "reduce_range": support.reduce_range,
            "gemm_shape": list(shape),
            "gemm_mechanisms": kernels,
        }
    )
    return CaseResult(figures=figures, details=details)
