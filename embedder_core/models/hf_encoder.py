"""Ordinary Hugging Face encoders (BERT, XLM-RoBERTa, MiniLM, ...) through transformers.AutoModel.

The embedder hands over packed batches; this wrapper pads them for AutoModel and unpads
the result, so pooling and late chunking stay one code path for every model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..loading import safetensors_files
from ..model_info import hf_max_tokens
from .base import PackedBatch
from .quantization import Int8Linear, quantize_linear_layers

__all__ = ["HFEncoder", "hf_max_tokens"]


class HFEncoder:
    packed = False  # AutoModel pads every sequence of a batch to the longest

    def __init__(self, model: Any, pad_token_id: int) -> None:
        self.model = model
        self.pad_token_id = pad_token_id
        self.hidden_size = int(model.config.hidden_size)

    @classmethod
    def from_dir(cls, model_dir: Path, device: torch.device, dtype: torch.dtype) -> HFEncoder:
        from transformers import AutoModel
        from transformers.utils import logging as transformers_logging

        # Refuse pickle-only checkpoints before transformers sees them.
        safetensors_files(model_dir)
        # transformers draws a "Loading weights" bar on stderr; a CLI run should not show it.
        bar_was_enabled = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            model = AutoModel.from_pretrained(
                str(model_dir),
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=True,
                dtype=dtype,
                attn_implementation="sdpa",
            )
        finally:
            if bar_was_enabled:
                transformers_logging.enable_progress_bar()
        model.to(device).eval()
        pad = model.config.pad_token_id
        return cls(model, int(pad) if pad is not None else 0)

    def quantize_int8(self, *, reduce_range: bool = False) -> None:
        """Run every ``nn.Linear`` of the model with int8 weights and per-token activations."""
        if self.device.type != "cpu" or self.dtype != torch.float32:
            raise ValueError("int8 quantization needs the float32 model on CPU")
        quantize_linear_layers(self.model, reduce_range=reduce_range)

    @property
    def quantized(self) -> bool:
        return any(isinstance(module, Int8Linear) for module in self.model.modules())

    @property
    def device(self) -> torch.device:
        return torch.device(self.model.device)

    @property
    def dtype(self) -> torch.dtype:
        dtype: torch.dtype = self.model.dtype
        return dtype

    def token_states(self, batch: PackedBatch) -> torch.Tensor:
        longest = max(batch.seq_lens)
        lengths = torch.tensor(batch.seq_lens, device=batch.input_ids.device)
        mask = torch.arange(longest, device=lengths.device)[None, :] < lengths[:, None]
        ids = torch.full(
            (len(batch.seq_lens), longest), self.pad_token_id, dtype=torch.long, device=mask.device
        )
        ids[mask] = batch.input_ids
        out = self.model(input_ids=ids, attention_mask=mask.long())
        states: torch.Tensor = out.last_hidden_state[mask]  # row-major: back in packed order
        return states
