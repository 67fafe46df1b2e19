"""Native torch cross-encoder for jina-reranker-v2-base-multilingual: XLM-RoBERTa in the
flash-implementation layout of jina-embeddings-v3 (``mixer.Wqkv``, ``mlp.fc1``, ``norm1``...)
with absolute positions, no LoRA and a classification head.

It runs packed batches like :class:`~embedder_core.models.jina_v3.JinaV3Model` and shares
its attention (variable-length flash attention on CUDA, per-sequence SDPA on CPU), so the
reranker goes through the same :class:`~embedder_core.scheduler.EmbeddingScheduler`: each
query-document window is one sequence whose first token (``<s>``) is pooled, and the head
runs on the pooled states.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UnsupportedModelError
from ..loading import iter_safetensors
from .base import NativeEncoder, PackedBatch, encoder_shape
from .jina_v3 import BatchLayout, _attention, choose_attention_mode


@dataclass(frozen=True)
class CrossEncoderConfig:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    hidden_act: str
    layer_norm_eps: float
    vocab_size: int
    max_position_embeddings: int
    type_vocab_size: int
    num_labels: int
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> CrossEncoderConfig:
        labels = config.get("id2label")
        return cls(
            **encoder_shape(config),
            type_vocab_size=int(config.get("type_vocab_size", 1)),
            num_labels=int(config.get("num_labels", len(labels) if labels else 1)),
            pad_token_id=int(config.get("pad_token_id", 1)),
            bos_token_id=int(config.get("bos_token_id", 0)),
            eos_token_id=int(config.get("eos_token_id", 2)),
        )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_tokens(self) -> int:
        # RoBERTa positions start after the padding index: 1026 positions -> 1024 tokens.
        return self.max_position_embeddings - self.pad_token_id - 1


def is_cross_encoder_config(config: dict[str, Any]) -> bool:
    """The released jina-reranker-v2 config: an XLM-RoBERTa sequence classifier with
    absolute positions."""
    return (
        "XLMRobertaForSequenceClassification" in (config.get("architectures") or ())
        and config.get("position_embedding_type", "absolute") == "absolute"
    )


def cross_encoder_tensor_names(config: CrossEncoderConfig) -> list[str]:
    """Every tensor of the released layout, in file order."""
    names = [
        "roberta.embeddings.word_embeddings.weight",
        "roberta.embeddings.position_embeddings.weight",
        "roberta.embeddings.token_type_embeddings.weight",
        "roberta.emb_ln.weight",
        "roberta.emb_ln.bias",
    ]
    for i in range(config.num_hidden_layers):
        for module in ("mixer.Wqkv", "mixer.out_proj", "norm1", "mlp.fc1", "mlp.fc2", "norm2"):
            names += [f"roberta.encoder.layers.{i}.{module}.weight"]
            names += [f"roberta.encoder.layers.{i}.{module}.bias"]
    for module in ("classifier.dense", "classifier.out_proj"):
        names += [f"{module}.weight", f"{module}.bias"]
    return names


def take_all_tensors(
    model_dir: Path, expected: list[str], dtype: torch.dtype, what: str
) -> dict[str, torch.Tensor]:
    """Every tensor of ``model_dir`` in ``dtype``; ``UnsupportedModelError`` naming the
    tensors that are missing or that nothing would use (a silently ignored tensor means
    a layout we do not run exactly)."""
    tensors = {name: tensor.to(dtype) for name, tensor in iter_safetensors(model_dir)}
    missing = [name for name in expected if name not in tensors]
    unused = sorted(set(tensors) - set(expected))
    if missing or unused:
        parts = []
        if missing:
            parts.append(f"missing tensor(s) {', '.join(missing[:8])}")
        if unused:
            parts.append(f"unused tensor(s) {', '.join(unused[:8])}")
        count = len(missing) + len(unused)
        raise UnsupportedModelError(
            f"{model_dir} is not in the released {what} layout: {'; '.join(parts)}"
            + (f" ({count} in all)" if count > 16 else "")
        )
    return tensors


class CrossEncoderLayer(nn.Module):
    """Post-norm BERT layer: x = norm1(x + attn(x)); x = norm2(x + fc2(gelu(fc1(x))))."""

    def __init__(
        self, config: CrossEncoderConfig, tensors: dict[str, torch.Tensor], prefix: str
    ) -> None:
        super().__init__()
        self.heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.eps = config.layer_norm_eps
        for module in ("mixer.Wqkv", "mixer.out_proj", "norm1", "mlp.fc1", "mlp.fc2", "norm2"):
            name = module.split(".")[-1].lower()
            self.register_buffer(f"{name}_weight", tensors.pop(f"{prefix}.{module}.weight"))
            self.register_buffer(f"{name}_bias", tensors.pop(f"{prefix}.{module}.bias"))
        self.approximate = (
            "tanh" if config.hidden_act in ("gelu_new", "gelu_pytorch_tanh") else "none"
        )

    def forward(self, x: torch.Tensor, layout: BatchLayout) -> torch.Tensor:
        tokens, width = x.shape
        qkv = F.linear(x, self.wqkv_weight, self.wqkv_bias).view(
            tokens, 3, self.heads, self.head_dim
        )
        attn = _attention(qkv[:, 0], qkv[:, 1], qkv[:, 2], layout)
        x = F.layer_norm(
            x + F.linear(attn.reshape(tokens, width), self.out_proj_weight, self.out_proj_bias),
            (width,),
            self.norm1_weight,
            self.norm1_bias,
            self.eps,
        )
        hidden = F.gelu(F.linear(x, self.fc1_weight, self.fc1_bias), approximate=self.approximate)
        return F.layer_norm(
            x + F.linear(hidden, self.fc2_weight, self.fc2_bias),
            (width,),
            self.norm2_weight,
            self.norm2_bias,
            self.eps,
        )


class CrossEncoderModel(NativeEncoder):
    """The encoder stack (``token_states``: one packed batch) and the classification head
    (``logits``: on the pooled first-token states)."""

    attention: str = "auto"
    packed = True  # no padding: a batch costs the sum of its sequences' lengths

    def __init__(self, config: CrossEncoderConfig, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.config = config
        self.hidden_size = config.hidden_size
        self.register_buffer("word_embeddings", tensors.pop("embeddings.word_embeddings.weight"))
        self.register_buffer(
            "position_embeddings", tensors.pop("embeddings.position_embeddings.weight")
        )
        # Token type is always 0 (type_vocab_size 1).
        types = tensors.pop("embeddings.token_type_embeddings.weight")
        self.register_buffer("type_row", types[0].clone())
        self.register_buffer("emb_ln_weight", tensors.pop("emb_ln.weight"))
        self.register_buffer("emb_ln_bias", tensors.pop("emb_ln.bias"))
        self.layers = nn.ModuleList(
            CrossEncoderLayer(config, tensors, f"encoder.layers.{i}")
            for i in range(config.num_hidden_layers)
        )
        # The head runs in float32 on the pooled float32 states.
        for module in ("dense", "out_proj"):
            for part in ("weight", "bias"):
                value = tensors.pop(f"classifier.{module}.{part}").float()
                self.register_buffer(f"head_{module}_{part}", value)

    @classmethod
    def from_dir(
        cls,
        model_dir: Path,
        config: CrossEncoderConfig,
        device: torch.device,
        dtype: torch.dtype,
    ) -> CrossEncoderModel:
        expected = cross_encoder_tensor_names(config)
        tensors = take_all_tensors(model_dir, expected, dtype, "jina-reranker-v2")
        tensors = {name.removeprefix("roberta."): tensor for name, tensor in tensors.items()}
        model = cls(config, tensors)
        return model.to(device).eval()

    def attention_mode(self) -> str:
        return choose_attention_mode(self.attention, self.device, self.dtype)

    def _layout(self, seq_lens: list[int]) -> tuple[BatchLayout, torch.Tensor]:
        """The attention layout and each token's position id, built on the host and moved
        in one transfer."""
        mode = self.attention_mode()
        count, total, longest = len(seq_lens), sum(seq_lens), max(seq_lens)
        host_lens = torch.tensor(seq_lens, dtype=torch.int64)
        starts = torch.cumsum(host_lens, 0) - host_lens
        seq_of_token = torch.repeat_interleave(torch.arange(count), host_lens)
        offsets = torch.arange(total) - starts[seq_of_token]
        parts = [offsets]
        if mode == "varlen":
            parts.append(torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(host_lens, 0)]))
        elif mode == "padded":
            parts += [seq_of_token * longest + offsets, host_lens]
        host = torch.cat(parts)
        if self.device.type == "cuda":
            host = host.pin_memory()
        device_parts = iter(host.to(self.device, non_blocking=True).split([len(p) for p in parts]))
        # RoBERTa positions: the padding index + 1 for the first token (no padding here).
        positions = next(device_parts) + (self.config.pad_token_id + 1)
        empty = torch.empty(0, device=self.device)
        layout = BatchLayout(mode, seq_lens, longest, empty, empty)
        if mode == "varlen":
            layout = BatchLayout(
                mode, seq_lens, longest, empty, empty, cu_seqlens=next(device_parts).to(torch.int32)
            )
        elif mode == "padded":
            pad_index = next(device_parts)
            lens = next(device_parts)
            key_mask = torch.arange(longest, device=self.device)[None, :] < lens[:, None]
            layout = BatchLayout(
                mode,
                seq_lens,
                longest,
                empty,
                empty,
                pad_index=pad_index,
                key_mask=key_mask[:, None, None, :],
            )
        return layout, positions

    def token_states(self, batch: PackedBatch) -> torch.Tensor:
        if max(batch.seq_lens) > self.config.max_tokens:
            raise ValueError(
                f"a sequence of {max(batch.seq_lens)} tokens is over the model's "
                f"{self.config.max_tokens}"
            )
        layout, positions = self._layout(batch.seq_lens)
        x = (
            F.embedding(batch.input_ids, self.word_embeddings)
            + F.embedding(positions, self.position_embeddings)
            + self.type_row
        )
        x = F.layer_norm(
            x, (self.hidden_size,), self.emb_ln_weight, self.emb_ln_bias, self.config.layer_norm_eps
        )
        for layer in self.layers:
            x = layer(x, layout)
        return x

    def logits(self, first_token_states: torch.Tensor) -> torch.Tensor:
        """(rows, num_labels) float32 logits: dense -> tanh -> out_proj on ``<s>``'s state."""
        states = first_token_states.to(self.head_dense_weight.device, torch.float32)
        hidden = torch.tanh(F.linear(states, self.head_dense_weight, self.head_dense_bias))
        return F.linear(hidden, self.head_out_proj_weight, self.head_out_proj_bias)
