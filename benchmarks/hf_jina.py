"""The peer a user would pick instead of us: transformers' native ``JinaEmbeddingsV3Model``.

transformers 5.x ships jina-embeddings-v3 for the converted ``-hf`` layout: separate
q/k/v projections, ``post_attention_layernorm``/``post_mlp_layernorm``, no LoRA tensors
(adapters come through PEFT). ``converted_state_dict`` maps the released layout onto it,
merging one task's LoRA into every weight (``W + s * B_t A_t`` for Linear layers,
``W + s * A_t B_t`` for embeddings, s = lora_alpha / lora_rank), so the peer computes that
task with identical weights. ``HFJinaPeer.encode`` runs it as sentence-transformers does:
inputs sorted by character length (longest first), batches padded to their longest input,
SDPA attention, mean pooling over the attention mask, L2 normalization.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from tokenizers import Tokenizer

_LORA = "parametrizations.weight"


def _released_tensors(model_dir: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as reader:
            for name in reader.keys():  # noqa: SIM118 (safe_open is not a mapping)
                tensors[name.removeprefix("roberta.")] = reader.get_tensor(name)
    return tensors


def converted_state_dict(
    model_dir: Path, task: str | None, dtype: torch.dtype = torch.float32
) -> dict[str, torch.Tensor]:
    """The released checkpoint in ``JinaEmbeddingsV3Model``'s layout, ``task``'s LoRA merged."""
    config = json.loads((model_dir / "config.json").read_text())
    released = _released_tensors(model_dir)
    task_index = config["lora_adaptations"].index(task) if task is not None else None
    scaling = config["lora_alpha"] / config["lora_rank"]
    hidden = config["hidden_size"]

    def merged(module: str, embedding: bool = False) -> torch.Tensor:
        weight = released[f"{module}.{_LORA}.original"].float()
        if task_index is None:
            return weight
        lora_a = released[f"{module}.{_LORA}.0.lora_A"][task_index].float()
        lora_b = released[f"{module}.{_LORA}.0.lora_B"][task_index].float()
        return weight + scaling * (lora_a @ lora_b if embedding else lora_b @ lora_a)

    state = {
        "embeddings.word_embeddings.weight": merged("embeddings.word_embeddings", True),
        "embeddings.token_type_embeddings.weight": merged("embeddings.token_type_embeddings", True),
        "embeddings.LayerNorm.weight": released["emb_ln.weight"],
        "embeddings.LayerNorm.bias": released["emb_ln.bias"],
    }
    for i in range(config["num_hidden_layers"]):
        source, target = f"encoder.layers.{i}", f"layers.{i}"
        wqkv, bqkv = merged(f"{source}.mixer.Wqkv"), released[f"{source}.mixer.Wqkv.bias"]
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            rows = slice(j * hidden, (j + 1) * hidden)
            state[f"{target}.self_attn.{name}.weight"] = wqkv[rows]
            state[f"{target}.self_attn.{name}.bias"] = bqkv[rows]
        pairs = {
            "self_attn.o_proj": "mixer.out_proj",
            "mlp.fc1": "mlp.fc1",
            "mlp.fc2": "mlp.fc2",
        }
        for ours, theirs in pairs.items():
            state[f"{target}.{ours}.weight"] = merged(f"{source}.{theirs}")
            state[f"{target}.{ours}.bias"] = released[f"{source}.{theirs}.bias"]
        for ours, theirs in (
            ("post_attention_layernorm", "norm1"),
            ("post_mlp_layernorm", "norm2"),
        ):
            state[f"{target}.{ours}.weight"] = released[f"{source}.{theirs}.weight"]
            state[f"{target}.{ours}.bias"] = released[f"{source}.{theirs}.bias"]
    return {name: tensor.to(dtype).contiguous() for name, tensor in state.items()}


def hf_config(model_dir: Path) -> Any:
    from transformers import JinaEmbeddingsV3Config

    config = json.loads((model_dir / "config.json").read_text())
    return JinaEmbeddingsV3Config(
        vocab_size=config["vocab_size"],
        hidden_size=config["hidden_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=config["num_attention_heads"],
        intermediate_size=config["intermediate_size"],
        hidden_act=config["hidden_act"],
        max_position_embeddings=config["max_position_embeddings"],
        type_vocab_size=config["type_vocab_size"],
        layer_norm_eps=config["layer_norm_eps"],
        pad_token_id=config["pad_token_id"],
        bos_token_id=config["bos_token_id"],
        eos_token_id=config["eos_token_id"],
        rope_parameters={"rope_type": "default", "rope_theta": config["rotary_emb_base"]},
    )


class HFJinaPeer:
    """``JinaEmbeddingsV3Model`` (SDPA) with one task merged, encoding as sentence-transformers."""

    def __init__(
        self,
        model_dir: str | Path,
        task: str | None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        from transformers import JinaEmbeddingsV3Model

        directory = Path(model_dir)
        self.task = task
        self.device = torch.device(device)
        self.instruction = (
            json.loads((directory / "config.json").read_text())["task_instructions"].get(task, "")
            if task
            else ""
        )
        config = hf_config(directory)
        config._attn_implementation = "sdpa"
        with torch.device("meta"):
            model = JinaEmbeddingsV3Model(config, add_pooling_layer=False)
        state = converted_state_dict(directory, task, dtype)
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
        if unexpected or any(
            not name.endswith(("position_ids", "token_type_ids")) for name in missing
        ):
            raise RuntimeError(f"layout mismatch: missing {missing}, unexpected {unexpected}")
        # Non-persistent buffers are still on meta: rebuild them on the real device.
        model.embeddings.position_ids = torch.arange(config.max_position_embeddings)[None, :]
        model.embeddings.token_type_ids = torch.zeros_like(model.embeddings.position_ids)
        rotary = type(model.rotary_emb)(config)
        model.rotary_emb = rotary
        self.model = model.to(self.device).eval()
        self.pad_token_id = int(config.pad_token_id)
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=int(config.max_position_embeddings) - 2)

    def encode(self, texts: Sequence[str], *, batch_size: int = 32) -> np.ndarray:
        """Normalized mean-pooled embeddings in input order (float32)."""
        prefixed = [self.instruction + text for text in texts]
        order = sorted(range(len(prefixed)), key=lambda i: -len(prefixed[i]))
        out = np.empty((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                encodings = self.tokenizer.encode_batch([prefixed[i] for i in batch])
                longest = max(len(e.ids) for e in encodings)
                ids = torch.full((len(batch), longest), self.pad_token_id, dtype=torch.long)
                mask = torch.zeros((len(batch), longest), dtype=torch.long)
                for row, encoding in enumerate(encodings):
                    ids[row, : len(encoding.ids)] = torch.tensor(encoding.ids)
                    mask[row, : len(encoding.ids)] = 1
                ids, mask = ids.to(self.device), mask.to(self.device)
                states = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
                weights = mask[..., None].to(states.dtype)
                pooled = (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                out[batch] = F.normalize(pooled.float(), dim=-1).cpu().numpy()
        return out
