"""The padded baseline: jina-embeddings-v3 computed the way common implementations do.

A small, plain torch implementation of the jina-embeddings-v3 architecture (a post-norm
XLM-RoBERTa encoder with rotary positions and per-task LoRA adapters), independent of
``embedder_core``, that loads the same safetensors checkpoint. It does what the usual
encode loops do:

- sort the inputs by length and cut them into fixed batches of 32;
- pad each batch to its longest input and mask the padding in attention (SDPA with a
  boolean padding mask, as transformers' ``sdpa`` attention does);
- merge the task's LoRA delta into every weight, the vocabulary-sized word embedding
  included, on every forward (what a ``torch.nn.utils.parametrize`` LoRA does).

It is a fair baseline, not a strawman: float32 accumulation for pooling, ``inference_mode``,
fused SDPA. The suite checks that its outputs equal ``Embedder``'s (cosine >= 0.99999).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from tokenizers import Tokenizer

_LORA = "parametrizations.weight"
_WORD_EMBEDDINGS = "roberta.embeddings.word_embeddings"
_TOKEN_TYPE_EMBEDDINGS = "roberta.embeddings.token_type_embeddings"


class PaddedBaseline:
    """jina-embeddings-v3 forward over padded fixed-size batches, LoRA merged per forward."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 32,
    ) -> None:
        directory = Path(model_dir)
        self.config: dict[str, Any] = json.loads((directory / "config.json").read_text())
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_tokens = int(self.config["max_position_embeddings"]) - 2
        self.weights = {
            name: tensor.to(device=self.device, dtype=dtype)
            for name, tensor in load_file(str(directory / "model.safetensors")).items()
        }
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_tokens)

    # --- public ---------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str], task: str | None) -> list[list[int]]:
        """Token ids of each text, task instruction prepended, `<s> ... </s>`, truncated."""
        instruction = self.config["task_instructions"].get(task, "") if task else ""
        encodings = self.tokenizer.encode_batch([instruction + text for text in texts])
        return [encoding.ids for encoding in encodings]

    def encode(self, texts: Sequence[str], *, task: str | None = None) -> np.ndarray:
        """L2-normalized mean-pooled embeddings, float32 (n, hidden), in input order."""
        ids = self.tokenize(texts, task)
        out = np.empty((len(ids), self.config["hidden_size"]), dtype=np.float32)
        with torch.inference_mode():
            for batch in self.batches([len(sequence) for sequence in ids]):
                input_ids, mask = self._pad([ids[i] for i in batch])
                pooled = self._forward(input_ids, mask, task)
                out[batch] = F.normalize(pooled, dim=-1).cpu().numpy()
        return out

    def batches(self, lengths: Sequence[int]) -> list[list[int]]:
        """Input indices sorted by length, longest first, cut into fixed-size batches."""
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    # --- model ----------------------------------------------------------------------

    def _pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        longest = max(len(sequence) for sequence in sequences)
        input_ids = torch.full(
            (len(sequences), longest), self.config["pad_token_id"], dtype=torch.long
        )
        mask = torch.zeros((len(sequences), longest), dtype=torch.bool)
        for row, sequence in enumerate(sequences):
            input_ids[row, : len(sequence)] = torch.tensor(sequence)
            mask[row, : len(sequence)] = True
        return input_ids.to(self.device), mask.to(self.device)

    def _merged_weights(self, task: str | None) -> dict[str, torch.Tensor]:
        """Every LoRA-parametrized weight with the task's delta merged in, as on each forward."""
        merged: dict[str, torch.Tensor] = {}
        task_index = self.config["lora_adaptations"].index(task) if task else None
        scaling = self.config["lora_alpha"] / self.config["lora_rank"]
        for name, base in self.weights.items():
            if not name.endswith(f"{_LORA}.original"):
                continue
            module = name.removesuffix(f".{_LORA}.original")
            if module.startswith("roberta.pooler"):  # the CLS pooler: embeddings never use it
                continue
            if task_index is None:
                merged[module] = base
                continue
            lora_a = self.weights[f"{module}.{_LORA}.0.lora_A"][task_index]
            lora_b = self.weights[f"{module}.{_LORA}.0.lora_B"][task_index]
            is_embedding = module in (_WORD_EMBEDDINGS, _TOKEN_TYPE_EMBEDDINGS)
            delta = lora_a @ lora_b if is_embedding else lora_b @ lora_a
            merged[module] = base + scaling * delta
        return merged

    def _rotary(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        head_dim = self.config["hidden_size"] // self.config["num_attention_heads"]
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device=self.device)
        inverse_frequencies = 1.0 / (self.config["rotary_emb_base"] ** (exponents / head_dim))
        positions = torch.arange(length, dtype=torch.float32, device=self.device)
        angles = torch.outer(positions, inverse_frequencies)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().to(self.dtype), angles.sin().to(self.dtype)

    def _forward(
        self, input_ids: torch.Tensor, mask: torch.Tensor, task: str | None
    ) -> torch.Tensor:
        config, w = self.config, self.weights
        weights = self._merged_weights(task)
        batch, length = input_ids.shape
        hidden = config["hidden_size"]
        heads = config["num_attention_heads"]
        head_dim = hidden // heads
        eps = config["layer_norm_eps"]

        x = F.embedding(input_ids, weights[_WORD_EMBEDDINGS]) + weights[_TOKEN_TYPE_EMBEDDINGS][0]
        x = F.layer_norm(x, (hidden,), w["roberta.emb_ln.weight"], w["roberta.emb_ln.bias"], eps)
        cos, sin = self._rotary(length)
        attention_mask = mask[:, None, None, :]

        def rotate(t: torch.Tensor) -> torch.Tensor:
            first, second = t.chunk(2, dim=-1)
            return t * cos + torch.cat([-second, first], dim=-1) * sin

        for i in range(config["num_hidden_layers"]):
            layer = f"roberta.encoder.layers.{i}"
            qkv = F.linear(x, weights[f"{layer}.mixer.Wqkv"], w[f"{layer}.mixer.Wqkv.bias"])
            q, k, v = qkv.view(batch, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            attended = F.scaled_dot_product_attention(
                rotate(q), rotate(k), v, attn_mask=attention_mask
            )
            attended = attended.transpose(1, 2).reshape(batch, length, hidden)
            projected = F.linear(
                attended, weights[f"{layer}.mixer.out_proj"], w[f"{layer}.mixer.out_proj.bias"]
            )
            x = F.layer_norm(
                x + projected, (hidden,), w[f"{layer}.norm1.weight"], w[f"{layer}.norm1.bias"], eps
            )
            inner = F.gelu(F.linear(x, weights[f"{layer}.mlp.fc1"], w[f"{layer}.mlp.fc1.bias"]))
            output = F.linear(inner, weights[f"{layer}.mlp.fc2"], w[f"{layer}.mlp.fc2.bias"])
            x = F.layer_norm(
                x + output, (hidden,), w[f"{layer}.norm2.weight"], w[f"{layer}.norm2.bias"], eps
            )

        weights_per_token = mask.unsqueeze(-1).to(torch.float32)
        summed = (x.to(torch.float32) * weights_per_token).sum(dim=1)
        return summed / weights_per_token.sum(dim=1)
