"""Measuring primitives: the hardware ceiling, wall clocks, peak memory, parameter counts.

Every figure the suite reports is divided by something measured in the same run (the
GEMM ceiling, a baseline, another configuration), because the machines are noisy.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from safetensors import safe_open

T = TypeVar("T")

# The ceiling GEMM of the issue: (2048 x 1024) @ (1024 x 4096), the shape of an FFN input
# projection over a 2048-token batch.
CEILING_SHAPE = (2048, 1024, 4096)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work, so a wall clock measures it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_ceiling_flops(
    device: torch.device,
    dtype: torch.dtype,
    *,
    repeats: int = 8,
    shape: tuple[int, int, int] = CEILING_SHAPE,
) -> float:
    """Best-of-`repeats` matmul throughput in FLOP/s for `shape` = (m, k, n)."""
    m, k, n = shape
    generator = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(m, k, generator=generator).to(device=device, dtype=dtype)
    b = torch.randn(k, n, generator=generator).to(device=device, dtype=dtype)
    out = torch.empty(m, n, device=device, dtype=dtype)
    with torch.inference_mode():
        for _ in range(2):  # warm-up: thread pool start, kernel selection
            torch.matmul(a, b, out=out)
        synchronize(device)
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.matmul(a, b, out=out)
            synchronize(device)
            best = min(best, time.perf_counter() - start)
    return 2.0 * m * k * n / best


def model_flops_utilization(
    tokens_per_second: float, parameters: int, ceiling_flops: float
) -> float:
    """MFU as the issue defines it: tokens/s x 2 x non-embedding parameters / ceiling."""
    return tokens_per_second * 2.0 * parameters / ceiling_flops


def non_embedding_parameters(model_dir: Path) -> int:
    """Parameters a token's forward pass multiplies through, read from the safetensors header.

    Excludes embedding tables (a lookup, not a GEMM), LoRA factors (task deltas, rank 4)
    and the CLS pooler (embeddings do not use it). Works for jina-v3 and BERT-style names.
    """
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}")
    total = 0
    for file in files:
        with safe_open(str(file), framework="pt") as reader:
            for name in reader.keys():  # noqa: SIM118 (safe_open is not a mapping)
                if "embeddings" in name or "pooler" in name or "lora_" in name:
                    continue
                numel = 1
                for size in reader.get_slice(name).get_shape():
                    numel *= size
                total += numel
    return total


def timed(run: Callable[[], T], device: torch.device) -> tuple[float, T]:
    """Wall-clock seconds of `run()` (device work included), and its result."""
    synchronize(device)
    start = time.perf_counter()
    result = run()
    synchronize(device)
    return time.perf_counter() - start, result


def min_row_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest cosine between corresponding rows of `a` and `b`."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dots = (a64 * b64).sum(axis=1)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return float((dots / norms).min())


# --- memory -------------------------------------------------------------------------

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * _PAGE_SIZE


def _peak_resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("VmHWM missing from /proc/self/status")


def _reset_peak_resident() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


class PeakMemory:
    """Peak memory of this process during a `with` block, in bytes above its start.

    CPU: the kernel's RSS high-water mark, reset at entry (exact, catches every page torch's
    allocator touches); where that reset is not allowed, RSS sampled every millisecond by a
    background thread. CUDA: torch's allocator peak. Read `.peak_above_start` after the block.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.start_bytes = 0
        self.peak_bytes = 0
        self.method = ""
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None

    @property
    def peak_above_start(self) -> int:
        return max(0, self.peak_bytes - self.start_bytes)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start_bytes = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        self.start_bytes = resident_bytes()
        if _reset_peak_resident():
            self.method = "VmHWM (RSS high-water mark, reset at start)"
            return self
        self.method = "RSS sampled every 1 ms"
        self.peak_bytes = self.start_bytes
        self._stop.clear()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak_bytes = max(self.peak_bytes, resident_bytes())

    def __exit__(self, *exc_info: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        elif self._sampler is not None:
            self._stop.set()
            self._sampler.join()
            self.peak_bytes = max(self.peak_bytes, resident_bytes())
        else:
            self.peak_bytes = _peak_resident_bytes()
