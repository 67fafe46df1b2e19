"""Native torch implementation of the jina-embeddings-v3 architecture (XLM-RoBERTa with
rotary positions and per-task LoRA adapters), written from the published checkpoint facts.

It runs packed batches: the sequences of a batch are concatenated without padding and
every Linear runs once over all tokens. Attention keeps each sequence to its own tokens:

- CUDA, fp16/bf16, Ampere or newer: one variable-length flash-attention call for the
  whole batch (``torch.nn.attention.varlen``, built into PyTorch; ``flash_attn`` if
  installed and the torch build lacks it);
- other CUDA setups (float32, older GPUs): one padded SDPA call with a key-padding mask;
- CPU: SDPA per sequence, unmasked, so no padded n x n score matrix is built.

Everything a batch needs on the device (positions, cu_seqlens, per-token tasks, padding
indices) is built on the host once per batch and copied in one transfer; nothing inside the
layer loop reads a device value back to the host.

The LoRA adapters are a low-rank side path ``y = x W^T + b + s * (x A_t^T) B_t^T``
evaluated for the whole batch at once; the weights are never merged, so a batch may mix
tasks at the cost of a rank-(tasks x r) extra GEMM. With ``quantize_int8`` the base
``x W^T`` runs in int8 (``quantization``) while the LoRA path stays in float.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from ..loading import check_tensor_accounting, iter_safetensors
from ..model_info import is_jina_v3_config  # noqa: F401 - re-exported for the loader
from .base import NativeEncoder, PackedBatch, encoder_shape
from .quantization import Int8Weight, check_int8_ready, int8_linear

_LORA_SUFFIXES = (
    ".parametrizations.weight.original",
    ".parametrizations.weight.0.lora_A",
    ".parametrizations.weight.0.lora_B",
)


#: The GELU forms the encoder layers run ("gelu": exact erf; the others: tanh approximation).
_GELU_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh")


@dataclass(frozen=True)
class JinaV3Config:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    vocab_size: int
    max_position_embeddings: int
    rotary_emb_base: float
    lora_adaptations: tuple[str, ...]
    lora_rank: int
    lora_alpha: float
    bos_token_id: int = 0
    eos_token_id: int = 2
    pad_token_id: int = 1
    matryoshka_dimensions: tuple[int, ...] = ()
    task_instructions: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> JinaV3Config:
        act = config.get("hidden_act", "gelu")
        if act not in _GELU_ACTIVATIONS:
            raise UnsupportedModelError(
                f"jina-embeddings-v3 config: hidden_act {act!r} is not implemented; "
                f"supported: {', '.join(_GELU_ACTIVATIONS)}"
            )
        return cls(
            **encoder_shape(config),
            rotary_emb_base=float(config.get("rotary_emb_base", 10000.0)),
            lora_adaptations=tuple(config["lora_adaptations"]),
            lora_rank=int(config.get("lora_rank", 4)),
            lora_alpha=float(config.get("lora_alpha", 1)),
            bos_token_id=int(config.get("bos_token_id", 0)),
            eos_token_id=int(config.get("eos_token_id", 2)),
            pad_token_id=int(config.get("pad_token_id", 1)),
            matryoshka_dimensions=tuple(config.get("matryoshka_dimensions") or ()),
            task_instructions=dict(config.get("task_instructions") or {}),
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_tokens(self) -> int:
        # RoBERTa convention: two position slots are reserved (8194 positions -> 8192 tokens).
        return self.max_position_embeddings - 2

    @property
    def lora_scaling(self) -> float:
        return self.lora_alpha / self.lora_rank


@dataclass(frozen=True)
class AdapterSelection:
    """Which LoRA adapter each token uses in one batch.

    ``task`` set: every token uses that adapter. ``token_tasks`` set: tokens differ
    (-1 means base weights) and ``mask`` zeroes the other adapters' low-rank columns.
    Neither: base weights only.
    """

    task: int | None = None
    token_tasks: torch.Tensor | None = None
    mask: torch.Tensor | None = None


class LoRALinear(nn.Module):
    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        lora_a: torch.Tensor,
        lora_b: torch.Tensor,
        scaling: float,
    ) -> None:
        super().__init__()
        tasks, rank, in_features = lora_a.shape
        out_features = weight.shape[0]
        self.rank = rank
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)
        # A stacked as (tasks*rank, in); B, with the scaling folded in, as (out, tasks*rank).
        self.register_buffer("lora_a", lora_a.reshape(tasks * rank, in_features).contiguous())
        self.register_buffer(
            "lora_b",
            (lora_b * scaling).permute(1, 0, 2).reshape(out_features, tasks * rank).contiguous(),
        )
        self.weight_int8: Int8Weight | None = None

    def quantize_int8(self, *, reduce_range: bool = False) -> None:
        """Replace the base weight by its int8 form; the LoRA factors stay in float."""
        self.weight_int8 = Int8Weight(self.weight, reduce_range=reduce_range)
        self.weight = None  # frees the float copy: int8 keeps a quarter of the memory

    def forward(self, x: torch.Tensor, adapter: AdapterSelection) -> torch.Tensor:
        if self.weight_int8 is not None:
            y = int8_linear(x, self.weight_int8, self.bias)
        else:
            y = F.linear(x, self.weight, self.bias)
        if adapter.task is not None:
            cols = slice(adapter.task * self.rank, (adapter.task + 1) * self.rank)
            return y.addmm_(F.linear(x, self.lora_a[cols]), self.lora_b[:, cols].t())
        if adapter.mask is not None:
            return y.addmm_(F.linear(x, self.lora_a) * adapter.mask, self.lora_b.t())
        return y


class LoRAEmbedding(nn.Module):
    def __init__(
        self, weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float
    ) -> None:
        super().__init__()
        tasks, rank, dim = lora_b.shape
        self.rank = rank
        self.register_buffer("weight", weight)
        self.register_buffer("lora_a", lora_a.contiguous())  # (tasks, num, rank)
        self.register_buffer("lora_b", (lora_b * scaling).reshape(tasks * rank, dim).contiguous())

    def forward(self, ids: torch.Tensor, adapter: AdapterSelection) -> torch.Tensor:
        y = F.embedding(ids, self.weight)
        if adapter.task is not None:
            rows = slice(adapter.task * self.rank, (adapter.task + 1) * self.rank)
            return y.addmm_(self.lora_a[adapter.task][ids], self.lora_b[rows])
        if adapter.mask is not None:
            low = self.lora_a[:, ids, :].permute(1, 0, 2).reshape(ids.shape[0], -1)
            return y.addmm_(low * adapter.mask, self.lora_b)
        return y


class RotaryTable(nn.Module):
    """cos/sin of the rotate-half rotary embedding, angles computed in float32.

    Rotate-half uses each angle for both halves of a head, so one half is stored."""

    def __init__(self, head_dim: int, base: float, max_positions: int) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.arange(max_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())

    def angles(
        self, positions: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin at ``positions`` in ``dtype``, shaped (tokens, 1, 1, head_dim / 2):
        once per batch."""
        cos = self.cos[positions][:, None, None, :].to(dtype)
        return cos, self.sin[positions][:, None, None, :].to(dtype)


def _rotate(qk: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate q and k, shaped (tokens, 2, heads, head_dim), in their dtype.

    Each half is written once (``x1 cos - x2 sin``, ``x2 cos + x1 sin``): four kernels
    and no concatenation. On an H200 in bf16 this took the full-size forward from 277k
    to 331k tokens/s against a float32 version with a concatenation (seven passes)."""
    half = qk.shape[-1] // 2
    x1, x2 = qk[..., :half], qk[..., half:]
    out = torch.empty(qk.shape, dtype=qk.dtype, device=qk.device)
    torch.addcmul(x1 * cos, x2, sin, value=-1, out=out[..., :half])
    torch.addcmul(x2 * cos, x1, sin, out=out[..., half:])
    return out


def _varlen_attention_kernel() -> Any:
    """PyTorch's variable-length flash attention; ``flash_attn``'s where torch lacks it."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        pass
    else:
        # One split of the keys keeps results batch-invariant where torch offers the option
        # (2.11's varlen_attn has none).
        if "num_splits" in inspect.signature(varlen_attn).parameters:
            return functools.partial(varlen_attn, num_splits=1)
        return varlen_attn
    try:
        from flash_attn import flash_attn_varlen_func  # type: ignore[import-not-found]
    except Exception:
        return None
    return flash_attn_varlen_func


def _flash_capable(device: torch.device) -> bool:
    major, _ = torch.cuda.get_device_capability(device)
    return major >= 8


#: How attention keeps each sequence to its own tokens (see the module doc).
ATTENTION_MODES = ("varlen", "padded", "per_sequence")


@dataclass(frozen=True)
class BatchLayout:
    """Per-batch index tensors, on the model's device, built once before the layers.

    ``seq_lens`` and ``max_len`` are host values: attention reads them without a sync.
    """

    mode: str
    seq_lens: list[int]
    max_len: int
    cos: torch.Tensor
    sin: torch.Tensor
    cu_seqlens: torch.Tensor | None = None  # varlen: (sequences + 1,) int32
    pad_index: torch.Tensor | None = None  # padded: each token's row in (B * max_len)
    key_mask: torch.Tensor | None = None  # padded: (B, 1, 1, max_len) bool


class EncoderLayer(nn.Module):
    def __init__(self, config: JinaV3Config, tensors: dict[str, torch.Tensor], prefix: str) -> None:
        super().__init__()
        s = config.lora_scaling
        self.heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.eps = config.layer_norm_eps
        self.wqkv = _lora_linear(tensors, f"{prefix}.mixer.Wqkv", s)
        self.out_proj = _lora_linear(tensors, f"{prefix}.mixer.out_proj", s)
        self.fc1 = _lora_linear(tensors, f"{prefix}.mlp.fc1", s)
        self.fc2 = _lora_linear(tensors, f"{prefix}.mlp.fc2", s)
        for norm in ("norm1", "norm2"):
            self.register_buffer(f"{norm}_weight", tensors.pop(f"{prefix}.{norm}.weight"))
            self.register_buffer(f"{norm}_bias", tensors.pop(f"{prefix}.{norm}.bias"))
        self.approximate = (
            "tanh" if config.hidden_act in ("gelu_new", "gelu_pytorch_tanh") else "none"
        )

    def forward(
        self, x: torch.Tensor, layout: BatchLayout, adapter: AdapterSelection
    ) -> torch.Tensor:
        tokens, width = x.shape
        qkv = self.wqkv(x, adapter).view(tokens, 3, self.heads, self.head_dim)
        qk = _rotate(qkv[:, :2], layout.cos, layout.sin)
        attn = _attention(qk[:, 0], qk[:, 1], qkv[:, 2], layout)
        x = F.layer_norm(
            x + self.out_proj(attn.reshape(tokens, width), adapter),
            (width,),
            self.norm1_weight,
            self.norm1_bias,
            self.eps,
        )
        hidden = F.gelu(self.fc1(x, adapter), approximate=self.approximate)
        return F.layer_norm(
            x + self.fc2(hidden, adapter), (width,), self.norm2_weight, self.norm2_bias, self.eps
        )


@functools.cache
def _varlen_attention() -> Any:
    """The varlen kernel, imported on first use: importing it loads ``torch._dynamo``
    (about 5 s on a 2-core CPU, where it never runs)."""
    return _varlen_attention_kernel()


def choose_attention_mode(requested: str, device: torch.device, dtype: torch.dtype) -> str:
    """The attention path for a packed encoder: ``requested`` unless it is "auto"."""
    if requested != "auto":
        if requested not in ATTENTION_MODES:
            raise ValueError(f"attention must be 'auto' or one of {ATTENTION_MODES}")
        return requested
    if device.type != "cuda":
        return "per_sequence"
    half = dtype in (torch.float16, torch.bfloat16)
    # Flash attention kernels need fp16/bf16 and an Ampere (sm80) or newer GPU.
    if half and _flash_capable(device) and _varlen_attention() is not None:
        return "varlen"
    return "padded"


def _attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: BatchLayout
) -> torch.Tensor:
    """Attention of each sequence over its own tokens; inputs are (tokens, heads, head_dim)."""
    if layout.mode == "varlen":  # one flash kernel for the whole packed batch
        cu = layout.cu_seqlens
        q, k, v = (t.contiguous() for t in (q, k, v))  # views into qkv; flash wants dense
        out: torch.Tensor = _varlen_attention()(q, k, v, cu, cu, layout.max_len, layout.max_len)
        return out
    # SDPA gets 4-D (batch, heads, L, head_dim) inputs: on CPU only 4-D dispatches to the
    # fused flash kernel; 3-D falls back to the math path, which builds the (heads, L, L) scores.
    if len(layout.seq_lens) == 1:
        return _sdpa_one(q, k, v)
    if layout.mode == "padded":
        return _padded_sdpa(q, k, v, layout)
    out = torch.empty_like(q)
    start = 0
    for length in layout.seq_lens:
        end = start + length
        out[start:end] = _sdpa_one(q[start:end], k[start:end], v[start:end])
        start = end
    return out


def _padded_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: BatchLayout
) -> torch.Tensor:
    """One SDPA call over the batch padded to its longest sequence, padding keys masked."""
    assert layout.pad_index is not None and layout.key_mask is not None
    batch, heads, head_dim = len(layout.seq_lens), q.shape[1], q.shape[2]

    def pad(t: torch.Tensor) -> torch.Tensor:
        padded = t.new_zeros(batch * layout.max_len, heads, head_dim)
        padded[layout.pad_index] = t
        return padded.view(batch, layout.max_len, heads, head_dim).transpose(1, 2)

    out = F.scaled_dot_product_attention(pad(q), pad(k), pad(v), attn_mask=layout.key_mask)
    return out.transpose(1, 2).reshape(batch * layout.max_len, heads, head_dim)[layout.pad_index]


def _sdpa_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked attention of one sequence; (L, heads, head_dim) in and out."""
    q4, k4, v4 = (t.transpose(0, 1).unsqueeze(0) for t in (q, k, v))
    return F.scaled_dot_product_attention(q4, k4, v4)[0].transpose(0, 1)


def _pop_lora_parts(
    tensors: dict[str, torch.Tensor], module: str
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    names = [module + suffix for suffix in _LORA_SUFFIXES]
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ValueError(
            f"not a jina-embeddings-v3 checkpoint: missing tensor(s) {', '.join(missing)}"
        )
    weight, lora_a, lora_b = (tensors.pop(n) for n in names)
    return weight, lora_a, lora_b


def _lora_linear(tensors: dict[str, torch.Tensor], module: str, scaling: float) -> LoRALinear:
    weight, lora_a, lora_b = _pop_lora_parts(tensors, module)
    return LoRALinear(weight, tensors.pop(f"{module}.bias", None), lora_a, lora_b, scaling)


class JinaV3Model(NativeEncoder):
    """The encoder stack; ``token_states`` runs one packed batch.

    ``attention``: "auto" (varlen on CUDA in fp16/bf16 where a kernel exists, padded on
    other CUDA setups, per_sequence on CPU) or one of ``ATTENTION_MODES`` to force it.
    """

    attention: str = "auto"

    packed = True  # no padding: a batch costs the sum of its sequences' lengths

    def __init__(self, config: JinaV3Config, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size
        self.num_tasks = len(config.lora_adaptations)
        s = config.lora_scaling
        word, word_a, word_b = _pop_lora_parts(tensors, "embeddings.word_embeddings")
        self.word_embeddings = LoRAEmbedding(word, word_a, word_b, s)
        # Token type is always 0: keep the row per adapter (last row: base weights).
        types, types_a, types_b = _pop_lora_parts(tensors, "embeddings.token_type_embeddings")
        per_task = types[0] + s * torch.einsum("tr,trd->td", types_a[:, 0, :], types_b)
        self.register_buffer("type_rows", torch.cat([per_task, types[:1]], dim=0))
        self.register_buffer("emb_ln_weight", tensors.pop("emb_ln.weight"))
        self.register_buffer("emb_ln_bias", tensors.pop("emb_ln.bias"))
        self.layers = nn.ModuleList(
            EncoderLayer(config, tensors, f"encoder.layers.{i}")
            for i in range(config.num_hidden_layers)
        )
        self.rotary = RotaryTable(
            config.head_dim, config.rotary_emb_base, config.max_position_embeddings
        )
        rank_columns = torch.arange(self.num_tasks).repeat_interleave(config.lora_rank)
        self.register_buffer("rank_column_task", rank_columns)

    @classmethod
    def from_dir(
        cls, model_dir: Path, config: JinaV3Config, device: torch.device, dtype: torch.dtype
    ) -> JinaV3Model:
        tensors, shapes = _load_tensors(iter_safetensors(model_dir), dtype)
        check_tensor_accounting(
            f"{model_dir} (jina-embeddings-v3)",
            expected=expected_v3_tensors(config),
            present=shapes,
            unused_ok=UNUSED_V3_TENSORS,
        )
        model = cls(config, tensors)
        return model.to(device).eval()

    def quantize_int8(self, *, reduce_range: bool = False) -> None:
        """Run every encoder Linear with int8 weights (CPU); LoRA and embeddings stay float."""
        check_int8_ready(self.device, self.dtype)
        for layer in self.layers:
            for linear in (layer.wqkv, layer.out_proj, layer.fc1, layer.fc2):
                linear.quantize_int8(reduce_range=reduce_range)

    @property
    def quantized(self) -> bool:
        return bool(self.layers) and self.layers[0].wqkv.weight_int8 is not None

    def attention_mode(self) -> str:
        return choose_attention_mode(self.attention, self.device, self.dtype)

    def _layout(self, batch: PackedBatch) -> tuple[BatchLayout, AdapterSelection]:
        """Every per-batch index tensor, built on the host and copied in one transfer."""
        mode = self.attention_mode()
        lens = batch.seq_lens
        count, total, longest = len(lens), sum(lens), max(lens)
        mixed = any(t != batch.task_ids[0] for t in batch.task_ids)
        host_lens = torch.tensor(lens, dtype=torch.int64)
        starts = torch.cumsum(host_lens, 0) - host_lens
        seq_of_token = torch.repeat_interleave(torch.arange(count), host_lens)
        positions = torch.arange(total) - starts[seq_of_token]
        parts = [positions]
        if mode == "varlen":
            parts.append(torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(host_lens, 0)]))
        elif mode == "padded":
            parts += [seq_of_token * longest + positions, host_lens]
        if mixed:
            parts.append(torch.tensor(batch.task_ids)[seq_of_token])
        host = torch.cat(parts).to(torch.int32)
        if self.device.type == "cuda":
            host = host.pin_memory()
        device_parts = iter(host.to(self.device, non_blocking=True).split([len(p) for p in parts]))
        positions_d = next(device_parts)
        cos, sin = self.rotary.angles(positions_d, self.dtype)
        layout = BatchLayout(mode, lens, longest, cos, sin)
        if mode == "varlen":
            layout = dataclasses.replace(layout, cu_seqlens=next(device_parts))
        elif mode == "padded":
            pad_index = next(device_parts)
            lens_d = next(device_parts)
            key_mask = torch.arange(longest, device=self.device)[None, :] < lens_d[:, None]
            layout = dataclasses.replace(
                layout, pad_index=pad_index, key_mask=key_mask[:, None, None, :]
            )
        if not mixed:
            first = batch.task_ids[0]
            return layout, AdapterSelection(task=None if first < 0 else first)
        token_tasks = next(device_parts)
        mask = (token_tasks[:, None] == self.rank_column_task[None, :]).to(self.dtype)
        return layout, AdapterSelection(token_tasks=token_tasks, mask=mask)

    def token_states(self, batch: PackedBatch) -> torch.Tensor:
        layout, adapter = self._layout(batch)
        ids = batch.input_ids
        x = self.word_embeddings(ids, adapter)
        if adapter.token_tasks is not None:
            x = x + self.type_rows[adapter.token_tasks]
        else:
            x = x + self.type_rows[-1 if adapter.task is None else adapter.task]
        x = F.layer_norm(
            x, (self.hidden_size,), self.emb_ln_weight, self.emb_ln_bias, self.config.layer_norm_eps
        )
        for layer in self.layers:
            x = layer(x, layout, adapter)
        return x


#: Checkpoint tensors the model never reads, by name prefix, and why.
UNUSED_V3_TENSORS = {
    "pooler.": "the CLS pooler (pooler.dense): embeddings pool by mean, never through it",
}


def expected_v3_tensors(config: JinaV3Config) -> dict[str, tuple[int, ...] | None]:
    """Every tensor the model reads, with its shape where the config fixes it (names
    without the released ``roberta.`` prefix)."""
    h, inner, rank = config.hidden_size, config.intermediate_size, config.lora_rank
    tasks = len(config.lora_adaptations)
    Shape = tuple[int, ...] | None
    shapes: dict[str, Shape] = {}

    def lora(module: str, original: Shape, lora_a: Shape, lora_b: Shape) -> None:
        for suffix, shape in zip(_LORA_SUFFIXES, (original, lora_a, lora_b)):
            shapes[module + suffix] = shape

    vocab = config.vocab_size
    lora("embeddings.word_embeddings", (vocab, h), (tasks, vocab, rank), (tasks, rank, h))
    lora("embeddings.token_type_embeddings", None, None, None)  # rows: type_vocab_size
    shapes["emb_ln.weight"] = shapes["emb_ln.bias"] = (h,)
    for i in range(config.num_hidden_layers):
        layer = f"encoder.layers.{i}"
        for module, out_features, in_features in (
            ("mixer.Wqkv", 3 * h, h),
            ("mixer.out_proj", h, h),
            ("mlp.fc1", inner, h),
            ("mlp.fc2", h, inner),
        ):
            lora(
                f"{layer}.{module}",
                (out_features, in_features),
                (tasks, rank, in_features),
                (tasks, out_features, rank),
            )
            shapes[f"{layer}.{module}.bias"] = (out_features,)
        for norm in ("norm1", "norm2"):
            shapes[f"{layer}.{norm}.weight"] = shapes[f"{layer}.{norm}.bias"] = (h,)
    return shapes


def _load_tensors(
    named: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, ...] | None]]:
    """The tensors the model reads (``roberta.`` dropped, in ``dtype``), and the name and
    shape of every tensor of the checkpoint, for the accounting."""
    tensors: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    for name, tensor in named:
        key = name.removeprefix("roberta.")
        if key in shapes:
            raise UnsupportedModelError(f"tensor {key} is stored twice (with roberta.)")
        shapes[key] = tuple(tensor.shape)
        if not any(key.startswith(p) for p in UNUSED_V3_TENSORS):
            tensors[key] = tensor.to(dtype)
    return tensors, shapes
