"""Device, dtype and batch-budget choice, shared by the embedder and the rerankers.

One spelling of each rule: a device string or ``None`` (CUDA when there is one), a dtype
name (``float32``/``bf16``/...) or ``"auto"`` (float32 on CPU, bf16 or fp16 on CUDA), and
the tokens of one forward batch when the caller gives no budget.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from . import cpu_features
from .errors import SlowDtypeWarning, user_stacklevel

__all__ = [
    "OnModelDevice",
    "default_batch_tokens",
    "pick_device",
    "pick_dtype",
    "warn_if_slow_dtype",
]

# Tokens per forward batch. CPU: small batches keep each layer's activations (2048 x 4096
# floats = 32 MiB for the FFN) near the caches and below glibc's mmap threshold, so
# elementwise ops do not page-fault fresh memory; GEMMs of 2048 rows already run at the
# ceiling (it is measured at 2048 rows). Measured: +12% on the full-size jina-v3 mixed
# workload, +44% on MiniLM, against 16384.
_DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 65536}

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def default_batch_tokens(device: torch.device) -> int:
    """Tokens of one forward batch on ``device`` when the caller gives no budget."""
    return _DEFAULT_BATCH_TOKENS.get(device.type, 16384)


def pick_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; None: CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; e.g. 'cpu', 'cuda', 'cuda:1'") from None


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``dtype`` as a ``torch.dtype``; None or "auto": float32 on CPU, bf16 (else fp16) on
    CUDA."""
    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32  # bf16 GEMMs are slower than fp32 on most CPUs
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, torch.dtype):
        if dtype in _DTYPES.values():
            return dtype
    elif str(dtype).removeprefix("torch.") in _DTYPES:
        return _DTYPES[str(dtype).removeprefix("torch.")]
    raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(_DTYPES)}")


def warn_if_slow_dtype(device: torch.device, dtype: torch.dtype) -> None:
    """Warn (not refuse) about bf16 on a CPU without bf16 instructions: the vectors are
    right, only slow; flags can be hidden in VMs, and bf16 may be wanted for memory or for
    parity with a GPU run. The warning names the missing flag and the fix, at the user's
    load call."""
    if device.type != "cpu" or dtype != torch.bfloat16:
        return
    message = cpu_features.bf16_cpu_warning(cpu_features.cpu_flags())
    if message:
        warnings.warn(message, SlowDtypeWarning, stacklevel=user_stacklevel())


class OnModelDevice:
    """``device`` and ``dtype`` of a facade over one loaded model (``self._model``): the
    embedder and the local rerankers."""

    _model: Any

    @property
    def device(self) -> torch.device:
        """Where the model runs."""
        device: torch.device = self._model.device
        return device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the model's weights."""
        dtype: torch.dtype = self._model.dtype
        return dtype
