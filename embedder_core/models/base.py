"""The contract between the embedder and a model: packed batches in, token states out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class PackedBatch:
    """Sequences concatenated without padding.

    ``input_ids`` holds every token of every sequence back to back (on the model's device);
    ``seq_lens`` gives each sequence's length and ``task_ids`` its adapter (-1: none).
    """

    input_ids: torch.Tensor
    seq_lens: list[int]
    task_ids: list[int]

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])


class TokenEncoder(Protocol):
    """A model the embedder can run: returns one state per token, in packed order."""

    hidden_size: int

    @property
    def device(self) -> torch.device: ...

    @property
    def dtype(self) -> torch.dtype: ...

    #: True when the model runs a batch without padding, so that a batch costs the sum of
    #: its sequences' lengths; False when it pads them (cost: count x longest).
    packed: bool

    def token_states(self, batch: PackedBatch) -> torch.Tensor:
        """(num_tokens, hidden_size) final hidden states, in the model's dtype."""
        ...


class NativeEncoder(nn.Module):
    """Base of the native packed encoders (jina-embeddings-v2/v3, jina-reranker-v2): they
    keep their embedding LayerNorm weight as ``emb_ln_weight``, which tells where the model
    runs and in which dtype."""

    emb_ln_weight: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.emb_ln_weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.emb_ln_weight.dtype


def encoder_shape(config: dict[str, Any]) -> dict[str, Any]:
    """The XLM-RoBERTa encoder fields of a config.json that jina-embeddings-v3 and
    jina-reranker-v2 share, with the released defaults."""
    return {
        "hidden_size": int(config["hidden_size"]),
        "num_hidden_layers": int(config["num_hidden_layers"]),
        "num_attention_heads": int(config["num_attention_heads"]),
        "intermediate_size": int(config["intermediate_size"]),
        "hidden_act": str(config.get("hidden_act", "gelu")),
        "layer_norm_eps": float(config.get("layer_norm_eps", 1e-5)),
        "vocab_size": int(config["vocab_size"]),
        "max_position_embeddings": int(config["max_position_embeddings"]),
    }
