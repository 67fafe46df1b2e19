"""int8 Linear layers for CPU: int8 weights, activations quantized per token at run time.

Mechanism (chosen by measurement, see the README's int8 section): weights are quantized
once, symmetric per output channel, and packed for oneDNN; each call quantizes its input
symmetrically per row (per token) to 8 bits, shifted by a zero point into uint8, and runs
``torch.ops.onednn.qlinear_pointwise`` (u8 x s8 -> int32 accumulation, the weight scales
applied inside the kernel, float32 out). The per-row activation scale and the bias are
applied afterwards in one pass.

Why per row: a token's quantization depends on that token alone, so an embedding never
depends on which other texts share its batch (per-tensor activation scales, as PyTorch's
``quantized::linear_dynamic`` and ONNX Runtime's ``DynamicQuantizeLinear`` use, do), and
one outlier token cannot coarsen every other token's grid.

CPUs without VNNI (AVX2 or AVX-512 without ``avx512_vnni``) multiply u8 x s8 pairs with
``vpmaddubsw``, whose int16 sums saturate for full-range inputs; there weights use 7 bits
(``reduce_range``: |w| <= 63, so 2 x 255 x 63 < 2**15). Measured on MiniLM, 7-bit weights
keep more quality than 7-bit activations (median cosine to float32 0.9962 against 0.9948).
"""

from __future__ import annotations

import functools
import platform
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from .. import cpu_features
from ..errors import user_stacklevel

#: Accepted values of ``quantization``.
QUANTIZATIONS: tuple[str, ...] = ("int8",)

_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


class QuantizationWarning(UserWarning):
    """int8 was requested but the model runs unquantized; the message says why."""


@dataclass(frozen=True)
class Int8Support:
    """Whether int8 Linear layers run (and run faster than float32) on a device.

    ``reduce_range``: 7-bit weights, for CPUs without VNNI (see the module doc).
    ``reason``: why int8 is not usable, for the fallback warning; empty when usable.
    """

    usable: bool
    reduce_range: bool = False
    reason: str = ""


def check_quantization(quantization: str | None) -> str | None:
    """``quantization`` if valid (None or "int8"), else a ValueError naming the choices."""
    if quantization is None or quantization in QUANTIZATIONS:
        return quantization
    raise ValueError(
        f"unknown quantization {quantization!r}; expected None or one of {', '.join(QUANTIZATIONS)}"
    )


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The instruction-set flags of this CPU, read once (empty where unreadable)."""
    return cpu_features.cpu_flags() or frozenset()


def check_int8_ready(device: torch.device, dtype: torch.dtype) -> None:
    """int8 Linear layers are made from the float32 weights of a model on the CPU."""
    if device.type != "cpu" or dtype != torch.float32:
        raise ValueError("int8 quantization needs the float32 model on CPU")


def _onednn_int8_available() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return hasattr(torch.ops.onednn, "qlinear_pointwise") and hasattr(
            torch.ops.onednn, "qlinear_prepack"
        )
    except (AttributeError, RuntimeError):
        return False


def int8_support(device: torch.device, flags: frozenset[str] | None = None) -> Int8Support:
    """Decide whether int8 runs on ``device``; ``flags`` overrides the CPU's (for tests)."""
    if device.type != "cpu":
        return Int8Support(
            False,
            reason=f"int8 quantization runs on CPU only; on {device.type} the model runs in "
            "its floating-point dtype (bf16/fp16 GEMMs there are faster than int8 with "
            "dynamic activation quantization)",
        )
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return Int8Support(
            False,
            reason=f"int8 quantization is measured and enabled on x86-64 CPUs only "
            f"(this is {platform.machine() or 'an unknown CPU'})",
        )
    if not _onednn_int8_available():
        return Int8Support(
            False,
            reason="this torch build has no oneDNN int8 Linear kernel "
            "(torch.ops.onednn.qlinear_pointwise)",
        )
    flags = cpu_flags() if flags is None else flags
    if any(flag in flags for flag in _VNNI_FLAGS):
        return Int8Support(True)
    if "avx2" in flags:
        return Int8Support(True, reduce_range=True)
    return Int8Support(
        False,
        reason="this CPU has neither VNNI nor AVX2 (no avx512_vnni, avx_vnni or avx2 in "
        "/proc/cpuinfo), where int8 GEMMs are slower than float32",
    )


def _cpu_needs_reduce_range() -> bool:
    # The default must be safe where the weights are used: full-range weights saturate the
    # u8 x s8 pair sums of CPUs without VNNI (relative error ~0.1 instead of ~0.01).
    return not any(flag in cpu_flags() for flag in _VNNI_FLAGS)


def warn_unquantized(reason: str) -> None:
    warnings.warn(
        f"quantization='int8' ignored: {reason}. Running unquantized.",
        QuantizationWarning,
        stacklevel=user_stacklevel(),
    )


class Int8Weight:
    """A float weight (out, in) quantized per output channel and packed for oneDNN."""

    def __init__(self, weight: torch.Tensor, *, reduce_range: bool | None = None) -> None:
        if weight.dim() != 2:
            raise ValueError(f"expected a 2-D weight, got shape {tuple(weight.shape)}")
        w = weight.detach().float()
        self.out_features, self.in_features = w.shape
        if reduce_range is None:
            reduce_range = _cpu_needs_reduce_range()
        self.weight_levels = 63 if reduce_range else 127
        scale = w.abs().amax(dim=1).clamp(min=torch.finfo(torch.float32).tiny)
        scale = scale / self.weight_levels
        limit = self.weight_levels
        quantized = torch.round(w / scale[:, None]).clamp_(-limit, limit).to(torch.int8)
        self.scale = scale.contiguous()
        self.zero_points = torch.zeros(self.out_features, dtype=torch.long)
        self.packed = torch.ops.onednn.qlinear_prepack(quantized, None)
        # Activation grid: symmetric in [-127, 127], shifted by `zero_point` into uint8.
        self.levels = 127.0
        self.zero_point = 128
        self.rounding_offset = torch.tensor(self.zero_point + 0.5)

    def dequantized(self) -> torch.Tensor:
        """The weight as the kernel sees it, in float32 (for checks)."""
        eye = torch.eye(self.in_features)
        rows = int8_linear(eye, self, None, exact_input=True)  # (in, out) = W^T
        return rows.t().contiguous()


def int8_linear(
    x: torch.Tensor, weight: Int8Weight, bias: torch.Tensor | None, *, exact_input: bool = False
) -> torch.Tensor:
    """``x @ W^T + bias`` with ``x`` quantized per row; float32 in, float32 out, any leading
    dimensions. ``exact_input`` is for inputs already on the grid (only ``dequantized``)."""
    shape = x.shape
    rows = x.reshape(-1, shape[-1])
    if rows.dtype != torch.float32:
        rows = rows.float()
    if rows.shape[0] == 0:
        return x.new_zeros((*shape[:-1], weight.out_features), dtype=torch.float32)
    if exact_input:
        scale = torch.ones(rows.shape[0], 1)
        quantized = (rows + weight.zero_point).to(torch.uint8)
    else:
        # Few passes over the input: the row max and min (plain reductions; the inf-norm
        # and abs().amax() took up to 7x longer, measured on MiniLM shapes), then
        # x / scale + zero_point + 0.5 in one fused op, then the conversion, whose
        # truncation of these positive values rounds them.
        peak = torch.maximum(rows.amax(dim=1, keepdim=True), rows.amin(dim=1, keepdim=True).neg_())
        scale = peak.clamp_(min=1e-30).div_(weight.levels)
        shifted = torch.addcmul(weight.rounding_offset, rows, scale.reciprocal())
        quantized = shifted.to(torch.uint8)
    out = torch.ops.onednn.qlinear_pointwise(
        quantized,
        1.0,
        weight.zero_point,
        weight.packed,
        weight.scale,
        weight.zero_points,
        None,
        1.0,
        0,
        torch.float32,
        "none",
        [],
        "",
    )
    out = out.mul_(scale) if bias is None else torch.addcmul(bias.float(), out, scale, out=out)
    return out.reshape(*shape[:-1], weight.out_features)


class Int8Linear(nn.Module):
    """Drop-in for ``nn.Linear`` at inference: int8 weight, per-token int8 activations."""

    def __init__(self, linear: nn.Linear, *, reduce_range: bool | None = None) -> None:
        super().__init__()
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight_int8 = Int8Weight(linear.weight, reduce_range=reduce_range)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int8_linear(x, self.weight_int8, self.bias).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8"


def quantize_linear_layers(module: nn.Module, *, reduce_range: bool | None = None) -> int:
    """Replace every ``nn.Linear`` inside ``module`` with an ``Int8Linear``; returns how many.

    ``reduce_range=None`` picks what this CPU needs (7-bit weights without VNNI)."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, Int8Linear(child, reduce_range=reduce_range))
            count += 1
        else:
            count += quantize_linear_layers(child, reduce_range=reduce_range)
    return count


def plan_quantization(
    quantization: str | None, device: torch.device, dtype: torch.dtype
) -> Int8Support | None:
    """What ``quantization`` does on ``device``; checked before any weight is loaded.

    Returns the int8 settings to apply, or None (unquantized: not asked for, or not usable
    here, with a ``QuantizationWarning`` saying why). A dtype other than float32 on CPU is
    a contradiction (int8 layers compute in float32) and raises ValueError.
    """
    if check_quantization(quantization) is None:
        return None
    support = int8_support(device)
    if not support.usable:
        warn_unquantized(support.reason)
        return None
    if dtype != torch.float32:
        name = str(dtype).removeprefix("torch.")
        raise ValueError(
            f"quantization='int8' keeps activations, LoRA and norms in float32; got dtype "
            f"{name!r}: leave dtype unset or pass 'float32'"
        )
    return support
