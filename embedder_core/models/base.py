"""The contract between the embedder and a model: packed batches in, token states out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


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
