"""Ordinary Hugging Face encoders (BERT, XLM-RoBERTa, MiniLM, ...) through transformers.AutoModel.

The embedder hands over packed batches; this wrapper pads them for AutoModel and unpads
the result, so pooling and late chunking stay one code path for every model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..loading import check_tensor_accounting, read_config, safetensors_shapes
from ..model_info import check_transformers_config, hf_max_tokens
from .base import PackedBatch
from .quantization import Int8Linear, check_int8_ready, quantize_linear_layers

__all__ = ["HFEncoder", "check_loaded_weights", "hf_max_tokens"]

#: Weights an encoder may lack or carry unread, by name prefix (after the base model's own
#: prefix), and why the embeddings never depend on them.
UNUSED_HF_TENSORS = {
    "pooler.": "the CLS pooler: the embedder pools the last hidden states itself (CLS, mean, "
    "max or last token), never through the pooler",
    "cls.": "BERT's pretraining heads (masked LM, next sentence): they read the encoder's "
    "output, never feed it",
    "lm_head.": "RoBERTa's masked-LM head: it reads the encoder's output, never feeds it",
    "embeddings.position_ids": "a buffer of 0, 1, 2, ... that older exports saved; the "
    "model builds the same positions itself",
}
# Old TensorFlow-era names that transformers renames on load.
_LEGACY_SUFFIXES = {".gamma": ".weight", ".beta": ".bias"}


def check_loaded_weights(
    model_dir: Path,
    model: Any,
    loading_info: dict[str, Any],
    stored: dict[str, tuple[int, ...]],
) -> None:
    """Every weight of the loaded model came from the checkpoint, and every checkpoint
    tensor went into the model (both as transformers reports it and by comparing names
    with the safetensors headers), apart from :data:`UNUSED_HF_TENSORS`. Otherwise
    ``UnsupportedModelError``: transformers fills a missing weight with random numbers and
    drops an unexpected one, and the vectors would be wrong with only a log line to say so.
    """
    prefix = f"{model.base_model_prefix}." if getattr(model, "base_model_prefix", "") else ""

    def local(name: str) -> str:
        name = name.removeprefix(prefix)
        for old, new in _LEGACY_SUFFIXES.items():
            if name.endswith(old):
                name = name[: -len(old)] + new
        return name

    params = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    present: dict[str, tuple[int, ...] | None] = {local(n): s for n, s in stored.items()}
    expected: dict[str, tuple[int, ...] | None] = dict(params)
    # What transformers itself reports (it may drop names the comparison above maps).
    for name in loading_info.get("missing_keys") or ():
        present.pop(local(name), None)
    for name in loading_info.get("unexpected_keys") or ():
        expected.pop(local(name), None)
        present.setdefault(local(name), None)
    mismatched = [
        str(m[0] if isinstance(m, tuple) else m) for m in loading_info.get("mismatched_keys") or ()
    ]
    for name in mismatched:
        present[local(name)] = (-1,)  # reported as the wrong shape
    check_tensor_accounting(
        f"{model_dir} (transformers {type(model).__name__})",
        expected=expected,
        present=present,
        unused_ok=UNUSED_HF_TENSORS,
    )


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

        # Refuse pickle-only checkpoints, and configs asking for what the transformers
        # class would ignore, before transformers sees them.
        stored = safetensors_shapes(model_dir)
        check_transformers_config(model_dir, read_config(model_dir))
        # transformers draws a "Loading weights" bar on stderr; a CLI run should not show it.
        bar_was_enabled = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            model, loading_info = AutoModel.from_pretrained(
                str(model_dir),
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=True,
                dtype=dtype,
                attn_implementation="sdpa",
                output_loading_info=True,
            )
        finally:
            if bar_was_enabled:
                transformers_logging.enable_progress_bar()
        check_loaded_weights(model_dir, model, loading_info, stored)
        model.to(device).eval()
        pad = model.config.pad_token_id
        return cls(model, int(pad) if pad is not None else 0)

    def quantize_int8(self, *, reduce_range: bool = False) -> None:
        """Run every ``nn.Linear`` of the model with int8 weights and per-token activations."""
        check_int8_ready(self.device, self.dtype)
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
