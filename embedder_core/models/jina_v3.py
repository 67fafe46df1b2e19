"""Native torch implementation of the jina-embeddings-v3 architecture (XLM-RoBERTa with
rotary positions and per-task LoRA adapters), written from the published checkpoint facts.

It runs packed batches: the sequences of a batch are concatenated without padding, every
Linear runs once over all tokens, and attention runs per sequence with no mask, so no
padded n x n score matrix is built. The LoRA adapters are a low-rank side path
``y = x W^T + b + s * (x A_t^T) B_t^T`` evaluated for the whole batch at once; the weights
are never merged, so a batch may mix tasks at the cost of a rank-(tasks x r) extra GEMM.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..loading import iter_safetensors
from ..model_info import is_jina_v3_config  # noqa: F401 - re-exported for the loader
from .base import PackedBatch

_LORA_SUFFIXES = (
    ".parametrizations.weight.original",
    ".parametrizations.weight.0.lora_A",
    ".parametrizations.weight.0.lora_B",
)


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
        return cls(
            hidden_size=int(config["hidden_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=int(config["num_attention_heads"]),
            intermediate_size=int(config["intermediate_size"]),
            hidden_act=str(config.get("hidden_act", "gelu")),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-5)),
            vocab_size=int(config["vocab_size"]),
            max_position_embeddings=int(config["max_position_embeddings"]),
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

    def forward(self, x: torch.Tensor, adapter: AdapterSelection) -> torch.Tensor:
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
    """cos/sin of the rotate-half rotary embedding, angles computed in float32."""

    def __init__(self, head_dim: int, base: float, max_positions: int) -> None:
        super().__init__()
        inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles = torch.arange(max_positions, dtype=torch.float32)[:, None] * inv_freq[None, :]
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())

    def rotate(self, qk: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Rotate q and k, shaped (tokens, 2, heads, head_dim), in float32."""
        cos = self.cos[positions][:, None, None, :]
        sin = self.sin[positions][:, None, None, :]
        x = qk.float()
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return (x * cos + rotated * sin).to(qk.dtype)


def _varlen_flash_attention() -> Any:
    try:
        from flash_attn import flash_attn_varlen_func  # type: ignore[import-not-found]
    except Exception:
        return None
    return flash_attn_varlen_func


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
        self,
        x: torch.Tensor,
        rotary: RotaryTable,
        positions: torch.Tensor,
        seq_lens: list[int],
        adapter: AdapterSelection,
        cu_seqlens: torch.Tensor | None,
    ) -> torch.Tensor:
        tokens, width = x.shape
        qkv = self.wqkv(x, adapter).view(tokens, 3, self.heads, self.head_dim)
        qk = rotary.rotate(qkv[:, :2], positions)
        attn = _attention(qk[:, 0], qk[:, 1], qkv[:, 2], seq_lens, cu_seqlens)
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


_FLASH_VARLEN = _varlen_flash_attention()


def _attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    seq_lens: list[int],
    cu_seqlens: torch.Tensor | None,
) -> torch.Tensor:
    """Attention of each sequence over its own tokens; inputs are (tokens, heads, head_dim)."""
    if cu_seqlens is not None:  # varlen flash attention on CUDA: one kernel for the batch
        longest = max(seq_lens)
        out: torch.Tensor = _FLASH_VARLEN(q, k, v, cu_seqlens, cu_seqlens, longest, longest)
        return out
    # SDPA gets 4-D (1, heads, L, head_dim) inputs: on CPU only 4-D dispatches to the fused
    # flash kernel; 3-D falls back to the math path, which builds the (heads, L, L) scores.
    if len(seq_lens) == 1:
        return _sdpa_one(q, k, v)
    out = torch.empty_like(q)
    start = 0
    for length in seq_lens:
        end = start + length
        out[start:end] = _sdpa_one(q[start:end], k[start:end], v[start:end])
        start = end
    return out


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


class JinaV3Model(nn.Module):
    """The encoder stack; ``token_states`` runs one packed batch."""

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
        tensors = _load_tensors(iter_safetensors(model_dir), dtype)
        model = cls(config, tensors)
        return model.to(device).eval()

    @property
    def device(self) -> torch.device:
        return self.emb_ln_weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.emb_ln_weight.dtype

    def _adapter(self, batch: PackedBatch) -> AdapterSelection:
        first = batch.task_ids[0]
        if all(t == first for t in batch.task_ids):
            return AdapterSelection(task=None if first < 0 else first)
        token_tasks = torch.repeat_interleave(
            torch.tensor(batch.task_ids), torch.tensor(batch.seq_lens)
        ).to(self.device, non_blocking=True)
        mask = (token_tasks[:, None] == self.rank_column_task[None, :]).to(self.dtype)
        return AdapterSelection(token_tasks=token_tasks, mask=mask)

    def token_states(self, batch: PackedBatch) -> torch.Tensor:
        adapter = self._adapter(batch)
        ids = batch.input_ids
        x = self.word_embeddings(ids, adapter)
        if adapter.token_tasks is not None:
            x = x + self.type_rows[adapter.token_tasks]
        else:
            x = x + self.type_rows[-1 if adapter.task is None else adapter.task]
        x = F.layer_norm(
            x, (self.hidden_size,), self.emb_ln_weight, self.emb_ln_bias, self.config.layer_norm_eps
        )
        positions = torch.cat([torch.arange(n) for n in batch.seq_lens]).to(
            self.device, non_blocking=True
        )
        cu_seqlens = None
        if _FLASH_VARLEN is not None and ids.is_cuda and self.dtype != torch.float32:
            lens = torch.tensor([0, *batch.seq_lens]).cumsum(0, dtype=torch.int32)
            cu_seqlens = lens.to(self.device, non_blocking=True)
        for layer in self.layers:
            x = layer(x, self.rotary, positions, batch.seq_lens, adapter, cu_seqlens)
        return x


def _load_tensors(
    named: Iterable[tuple[str, torch.Tensor]], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in named:
        key = name.removeprefix("roberta.")
        if key.startswith("pooler."):  # CLS pooler: embeddings use mean pooling
            continue
        tensors[key] = tensor.to(dtype)
    return tensors
