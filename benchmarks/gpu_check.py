"""One command that checks the CUDA path: `python -m benchmarks.gpu_check`.

Needs no download: it generates its own random checkpoints in the released format.
Prints a table, writes one JSON (``--output``), and exits non-zero, naming the failed
checks, when any check fails. Checks:

- parity: the device (bf16 on CUDA) against float32 on CPU, on a tiny checkpoint and a
  6-layer full-width one: every task, no task, a mixed-task batch, and late chunking of
  one 8192-token document; minimum cosine >= 0.999; on CUDA also float32 on the device
  (one task, mixed tasks, late chunking; >= 0.9999); and each text alone against the
  batch on the device (reported);
- attention: on CUDA in bf16 the packed batch runs through variable-length flash attention
  (``varlen``), not the per-sequence loop;
- out of memory: with the device memory capped (``torch.cuda.set_per_process_memory_fraction``)
  so that a batch of the starting budget does not fit but one of half of it did in a
  probe, the batch budget halves (until a batch fits: on a tiny model fixed allocations
  weigh on the margin) and the embeddings still equal the CPU reference; the budget and
  device memory at each retry are recorded;
- throughput: tokens/s on the mixed 16-1024-token workload of the full-size architecture,
  and MFU against a bf16 GEMM measured in the same run;
- memory: peak device memory of one 8192-token input above the loaded model;
- jina_v2: jina-embeddings-v2 checkpoints (ALiBi, a head count that is not a power of two,
  base-en width) on the device in its default dtype against CPU float32 (a mixed batch of
  up to 2048 tokens, each text alone, a late-chunked 8192-token document; >= 0.9999), and
  the document's peak device memory.
- rerank: jina-reranker-v2 and -v3 (tiny, released layouts) on the device against float32
  on CPU (max score difference <= 0.02, same best document), v2's attention path
  (``varlen``) and its pairs/s against padded transformers (reported).

``--device cpu --quick`` runs the same code on CPU with small sizes (float32 on both
sides, the OOM injected at the model): the test suite runs it, so only the device differs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.measure import (
    CEILING_SHAPE,
    PeakMemory,
    gemm_ceiling_flops,
    model_flops_utilization,
    non_embedding_parameters,
    synchronize,
)
from benchmarks.report import machine_info
from benchmarks.workloads import (
    DEFAULT_CACHE_DIR,
    FULL_SIZE_CONFIG,
    exact_length_texts,
    log_uniform_lengths,
    random_jina_checkpoint,
    single_token_words,
)

PARITY_MIN_COSINE = 0.999
TASK = "text-matching"  # no instruction: every token of an exact-length text is content
SEED = 0


@dataclass(frozen=True)
class Sizes:
    parity_configs: dict[str, dict[str, Any]]
    long_tokens: int  # the late-chunked document and the peak-memory input
    parity_texts: int
    throughput_config: dict[str, Any]
    throughput_count: int  # inputs of the mixed workload, lengths in [16, 1024]
    throughput_high: int
    oom_budget: int  # starting batch budget (tokens) of the out-of-memory check
    # jina-embeddings-v2 (ALiBi) checkpoints: parity of the device against CPU float32.
    v2_configs: dict[str, dict[str, Any]] = field(default_factory=dict)


FULL = Sizes(
    parity_configs={
        "tiny": {"max_position_embeddings": 8194},
        "6-layer full-width": {
            "hidden_size": 1024,
            "num_hidden_layers": 6,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
            "max_position_embeddings": 8194,
        },
    },
    long_tokens=8192,
    parity_texts=64,
    throughput_config=FULL_SIZE_CONFIG,
    throughput_count=4096,
    throughput_high=1024,
    oom_budget=65536,
    v2_configs={
        "v2 tiny 6 heads": {"hidden_size": 48, "num_attention_heads": 6},
        "v2 base-en width, 4 layers": {
            "hidden_size": 768,
            "num_hidden_layers": 4,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
        },
    },
)

QUICK = Sizes(
    parity_configs={
        "tiny": {"max_position_embeddings": 8194},
        "2-layer small": {
            "hidden_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 128,
            "max_position_embeddings": 1026,
        },
    },
    long_tokens=1024,
    parity_texts=12,
    throughput_config={"max_position_embeddings": 1026},
    throughput_count=24,
    throughput_high=256,
    oom_budget=2048,
    v2_configs={"v2 tiny 6 heads": {"hidden_size": 48, "num_attention_heads": 6}},
)


@dataclass
class Check:
    name: str
    value: float | str
    target: str = ""
    passed: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def _device_dtype(device: torch.device) -> torch.dtype:
    if device.type != "cuda":
        return torch.float32  # bf16 on CPUs without native bf16 is catastrophically slow
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _load(model_dir: Path, device: torch.device, **options: Any) -> Any:
    from embedder_core import Embedder

    return Embedder.from_pretrained(
        str(model_dir), device=device, dtype=_device_dtype(device), **options
    )


def _long_document(reference: Any, model_dir: Path, tokens: int) -> list[str]:
    """Pieces whose late-chunked document (with `<s>`, `</s>`) is exactly `tokens` long."""
    _, overhead = single_token_words(reference, model_dir, TASK)  # the special tokens
    content = tokens - overhead
    pieces = 16
    lengths = [content // pieces] * (pieces - 1)
    lengths.append(content - sum(lengths))
    # exact_length_texts counts the specials of each text; a piece contributes only content.
    return exact_length_texts(
        reference, model_dir, [n + overhead for n in lengths], task=TASK, seed=SEED + 2
    )


def _parity_cases(
    tasks: tuple[str, ...], texts: list[str], document: list[str], long_tokens: int
) -> dict[str, Callable[[Any], np.ndarray]]:
    """Every task, no task, a mixed-task batch, and one late-chunked long document."""
    every = [*tasks, None]
    mixed = [every[i % len(every)] for i in range(len(texts))]
    cases: dict[str, Callable[[Any], np.ndarray]] = {
        f"task={task}": (lambda e, task=task: e.encode(texts, task=task)) for task in every
    }
    cases["mixed-task batch"] = lambda e: e.encode(texts, task=mixed)
    cases[f"late chunking, {long_tokens} tokens"] = lambda e: e.encode(
        document, task="retrieval.passage", late_chunking=True
    )
    return cases


def check_parity(sizes: Sizes, device: torch.device, cache_dir: Path) -> list[Check]:
    from embedder_core import Embedder

    checks = []
    for label, config in sizes.parity_configs.items():
        model_dir = random_jina_checkpoint(cache_dir, config, seed=SEED)
        reference = Embedder.from_pretrained(str(model_dir), device="cpu", dtype="float32")
        lengths = log_uniform_lengths(sizes.parity_texts, 4, 512, seed=SEED)
        texts = exact_length_texts(reference, model_dir, lengths, task=TASK, seed=SEED)
        document = _long_document(reference, model_dir, sizes.long_tokens)
        cases = _parity_cases(reference.tasks, texts, document, sizes.long_tokens)
        expected = {name: run(reference) for name, run in cases.items()}
        reference = None
        on_device = _load(model_dir, device)
        mode = on_device._model.attention_mode()
        for name, run in cases.items():
            cosine = float(_cosines(run(on_device), expected[name]).min())
            checks.append(
                Check(
                    f"parity {label}: {name}",
                    cosine,
                    f">= {PARITY_MIN_COSINE}",
                    cosine >= PARITY_MIN_COSINE,
                    {"attention": mode, "dtype": str(on_device.dtype)},
                )
            )
        if device.type == "cuda" and on_device.dtype != torch.float32:
            checks.append(Check(f"attention {label}", mode, "varlen", mode == "varlen"))
        if device.type == "cuda":
            # float32 on the device (padded attention): the CUDA code itself, without bf16.
            checks += _float32_parity(model_dir, device, label, cases, expected)
        # A row must not depend on its neighbours: each text alone against the whole batch,
        # on the device and in its dtype (reported; GEMM shapes change with the batch).
        batched = cases[f"task={TASK}"](on_device)
        alone = np.concatenate([on_device.encode([text], task=TASK) for text in texts])
        invariance = float(_cosines(alone, batched).min())
        checks.append(Check(f"batch invariance {label}: alone vs batched", invariance))
        on_device = None
        _free(device)
    return checks


FLOAT32_MIN_COSINE = 0.9999
FLOAT32_CASES = ("task=retrieval.query", "mixed-task batch")
V2_MIN_COSINE = 0.9999  # the device's default dtype (bf16 on CUDA) against CPU float32


def check_jina_v2(sizes: Sizes, device: torch.device, cache_dir: Path) -> list[Check]:
    """jina-embeddings-v2 on the device (ALiBi bias in dense blocks on CUDA) against CPU
    float32: a mixed batch, each text alone, and one late-chunked `long_tokens` document;
    and the peak device memory of that document above the loaded model."""
    from benchmarks.jina_v2 import random_v2_checkpoint
    from embedder_core import Embedder

    checks = []
    for label, config in sizes.v2_configs.items():
        model_dir = random_v2_checkpoint(cache_dir, config, seed=SEED)
        reference = Embedder.from_pretrained(str(model_dir), device="cpu", dtype="float32")
        lengths = log_uniform_lengths(sizes.parity_texts, 4, 2048, seed=SEED)
        texts = exact_length_texts(reference, model_dir, lengths, task=None, seed=SEED)
        _, overhead = single_token_words(reference, model_dir, None)
        pieces = exact_length_texts(
            reference, model_dir, [sizes.long_tokens // 8] * 8, task=None, seed=SEED + 2
        )
        expected_batch = reference.encode(texts)
        expected_document = reference.encode(pieces, late_chunking=True)
        reference = None
        on_device = _load(model_dir, device)
        detail = {"dtype": str(on_device.dtype), "device": str(on_device.device)}
        late = f"late chunking, ~{sizes.long_tokens} tokens"
        got = {
            "batch": on_device.encode(texts),
            "each text alone": np.concatenate([on_device.encode([text]) for text in texts]),
            late: on_device.encode(pieces, late_chunking=True),
        }
        expected = {
            "batch": expected_batch,
            "each text alone": expected_batch,
            late: expected_document,
        }
        for name, rows in got.items():
            cosine = float(_cosines(rows, expected[name]).min())
            checks.append(
                Check(
                    f"parity {label}: {name}",
                    cosine,
                    f">= {V2_MIN_COSINE}",
                    cosine >= V2_MIN_COSINE,
                    detail,
                )
            )
        with PeakMemory(device) as memory:
            on_device.encode(pieces, late_chunking=True)
        checks.append(
            Check(
                f"memory {label}: peak MiB above model, ~{sizes.long_tokens} tokens",
                memory.peak_above_start / 2**20,
                detail={"method": memory.method, "overhead_tokens": overhead},
            )
        )
        on_device = None
        _free(device)
    return checks


def _float32_parity(
    model_dir: Path,
    device: torch.device,
    label: str,
    cases: dict[str, Callable[[Any], np.ndarray]],
    expected: dict[str, np.ndarray],
) -> list[Check]:
    from embedder_core import Embedder

    embedder = Embedder.from_pretrained(str(model_dir), device=device, dtype="float32")
    mode = embedder._model.attention_mode()
    names = [*FLOAT32_CASES, *(name for name in cases if name.startswith("late chunking"))]
    checks = []
    for name in names:
        cosine = float(_cosines(cases[name](embedder), expected[name]).min())
        checks.append(
            Check(
                f"parity {label} float32: {name}",
                cosine,
                f">= {FLOAT32_MIN_COSINE}",
                cosine >= FLOAT32_MIN_COSINE,
                {"attention": mode},
            )
        )
    return checks


def _free(device: torch.device) -> None:
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@contextlib.contextmanager
def _memory_cap(
    embedder: Any, device: torch.device, cap_bytes: int, fits_tokens: int
) -> Iterator[None]:
    """Make a batch of the embedder's budget run out of memory while half of it fits.

    CUDA: caps this process's device memory at `cap_bytes`. CPU, where there is no device
    memory to cap: the model raises CUDA's out-of-memory error itself for batches above
    1.5x `fits_tokens`, so the embedder's handling of it runs all the same.
    """
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        # torch wants the device's index: a bare "cuda" is refused.
        index = device.index if device.index is not None else torch.cuda.current_device()
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total), index)
        try:
            yield
        finally:
            torch.cuda.set_per_process_memory_fraction(1.0, index)
        return
    model = embedder._model
    original = model.token_states
    limit = int(1.5 * fits_tokens)

    def token_states(batch: Any) -> torch.Tensor:
        if batch.num_tokens > limit:
            raise torch.cuda.OutOfMemoryError(f"injected: {batch.num_tokens} tokens > {limit}")
        return original(batch)

    model.token_states = token_states
    try:
        yield
    finally:
        del model.token_states


def _half_budget_cap(model_dir: Path, device: torch.device, texts: list[str], half: int) -> int:
    """Device bytes that hold the model plus 1.5x the peak of a `half`-token batch."""
    if device.type != "cuda":
        return 0
    probe = _load(model_dir, device, max_batch_tokens=half)
    synchronize(device)
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    probe.encode(texts, task=TASK)
    synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - base
    probe = None
    _free(device)
    return int(base + 1.5 * peak)


def _record_retries(embedder: Any, device: torch.device) -> list[dict[str, int]]:
    """Budget and device memory (allocated, reserved) at each out-of-memory retry."""
    scheduler = embedder.scheduler
    retry = scheduler._retry_smaller
    records: list[dict[str, int]] = []

    def recorded(*args: Any) -> None:
        retry(*args)
        cuda = device.type == "cuda"
        records.append(
            {
                "budget": scheduler.max_batch_tokens,
                "allocated": torch.cuda.memory_allocated(device) if cuda else 0,
                "reserved": torch.cuda.memory_reserved(device) if cuda else 0,
            }
        )

    scheduler._retry_smaller = recorded
    return records


def check_oom(sizes: Sizes, device: torch.device, cache_dir: Path) -> list[Check]:
    from embedder_core import Embedder

    model_dir = random_jina_checkpoint(cache_dir, sizes.parity_configs["tiny"], seed=SEED)
    reference = Embedder.from_pretrained(str(model_dir), device="cpu", dtype="float32")
    # Two full batches of the starting budget, in 64-token inputs.
    lengths = [64] * (2 * sizes.oom_budget // 64)
    texts = exact_length_texts(reference, model_dir, lengths, task=TASK, seed=SEED + 3)
    expected = reference.encode(texts, task=TASK)
    reference = None
    half = sizes.oom_budget // 2
    cap = _half_budget_cap(model_dir, device, texts, half)
    embedder = _load(model_dir, device, max_batch_tokens=sizes.oom_budget)
    start_budget = embedder.max_batch_tokens
    retries = _record_retries(embedder, device)
    with _memory_cap(embedder, device, cap, half):
        got = embedder.encode(texts, task=TASK)
    end_budget = embedder.max_batch_tokens
    cosine = float(_cosines(got, expected).min())
    embedder = None
    _free(device)
    return [
        Check(
            "out of memory: batch budget halves",
            f"{start_budget} -> {end_budget}",
            f"{start_budget} -> <= {half}",
            0 < end_budget <= half,
            # Device memory when each retry starts: what the failed batch left behind.
            {"cap_bytes": cap, "retries": retries},
        ),
        Check(
            "out of memory: results still correct",
            cosine,
            f">= {PARITY_MIN_COSINE}",
            cosine >= PARITY_MIN_COSINE,
        ),
    ]


def check_throughput(sizes: Sizes, device: torch.device, cache_dir: Path) -> list[Check]:
    model_dir = random_jina_checkpoint(cache_dir, sizes.throughput_config, seed=SEED)
    dtype = _device_dtype(device)
    embedder = _load(model_dir, device)
    lengths = log_uniform_lengths(sizes.throughput_count, 16, sizes.throughput_high, seed=SEED)
    texts = exact_length_texts(embedder, model_dir, lengths, task=TASK, seed=SEED)
    embedder.encode(texts[: max(8, len(texts) // 16)], task=TASK)  # warm-up
    ceiling = gemm_ceiling_flops(device, dtype, repeats=10)
    synchronize(device)
    start = time.perf_counter()
    embedder.encode(texts, task=TASK)
    synchronize(device)
    seconds = time.perf_counter() - start
    ceiling = max(ceiling, gemm_ceiling_flops(device, dtype, repeats=10))
    rate = sum(lengths) / seconds
    mfu = model_flops_utilization(rate, non_embedding_parameters(model_dir), ceiling)
    long_text = exact_length_texts(
        embedder, model_dir, [sizes.long_tokens], task=TASK, seed=SEED + 4
    )
    _free(device)
    with PeakMemory(device) as memory:
        embedder.encode(long_text, task=TASK)
    m, k, n = CEILING_SHAPE
    detail = {"tokens": sum(lengths), "seconds": seconds, "ceiling_flops": ceiling}
    return [
        Check(
            f"throughput tokens/s ({len(lengths)} inputs, 16-{sizes.throughput_high})",
            rate,
            detail=detail,
        ),
        Check(
            f"MFU (vs {str(dtype).removeprefix('torch.')} GEMM {m}x{k}x{n})",
            mfu,
            detail={"ceiling_gflops": ceiling / 1e9},
        ),
        Check(
            f"peak memory at {sizes.long_tokens} tokens (MiB above model)",
            memory.peak_above_start / 2**20,
            detail={"method": memory.method},
        ),
    ]


def check_rerankers(sizes: Sizes, device: torch.device, cache_dir: Path) -> list[Check]:
    """Both rerankers: parity with float32 CPU, v2's attention path and speed (see
    ``benchmarks.rerank.gpu_checks``)."""
    from benchmarks.rerank import gpu_checks

    return list(gpu_checks(sizes is QUICK, device, cache_dir))


def _render(checks: list[Check]) -> str:
    rows = [("check", "value", "target", "ok?")]
    for check in checks:
        value = check.value
        if isinstance(value, float):
            value = f"{value:.6f}" if abs(value) < 1.5 else f"{value:,.1f}"
        ok = {None: "", True: "yes", False: "FAIL"}[check.passed]
        rows.append((check.name, str(value), check.target, ok))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__)
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu")
    parser.add_argument("--quick", action="store_true", help="small sizes (for CPU tests)")
    parser.add_argument("--output", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(
            f"gpu_check: no CUDA device (torch {torch.__version__}, built for CUDA "
            f"{torch.version.cuda}); install a CUDA build of torch (see the README)",
            file=sys.stderr,
        )
        return 2
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    checks: list[Check] = []
    errors: dict[str, str] = {}
    for name, run in (
        ("parity", check_parity),
        ("oom", check_oom),
        ("throughput", check_throughput),
        ("jina_v2", check_jina_v2),
        ("rerank", check_rerankers),
    ):
        print(f"[gpu_check] {name} ...", file=sys.stderr, flush=True)
        try:
            found = run(sizes, device, args.cache_dir)
            checks += found
            print(_render(found), file=sys.stderr, flush=True)  # kept should a later one hang
        except Exception as error:  # a crash is a failed check, reported with the others
            import traceback

            traceback.print_exc()
            errors[name] = f"{type(error).__name__}: {error}"
            checks.append(Check(f"{name} crashed", errors[name], "no error", False))
    seconds = time.perf_counter() - started
    failed = [check.name for check in checks if check.passed is False]
    document = {
        "meta": {
            **machine_info(device, _device_dtype(device)),
            "mode": "quick" if args.quick else "full",
            "seconds": seconds,
        },
        "checks": [
            {
                **asdict(check),
                "value": check.value
                if not isinstance(check.value, float) or math.isfinite(check.value)
                else str(check.value),
            }
            for check in checks
        ],
        "failed": failed,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print(_render(checks))
    print(
        f"{len(checks) - len(failed)} passed, {len(failed)} failed in {seconds:.0f} s; "
        f"results: {args.output}"
    )
    if failed:
        print("gpu_check FAILED: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
