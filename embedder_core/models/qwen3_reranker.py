"""jina-reranker-v3: transformers' native Qwen3 backbone (no remote code) plus the MLP
projector (Linear, ReLU, Linear, no biases), as the released checkpoint lays them out.

The released file holds ``model.*`` (the Qwen3 decoder) and ``projector.{0,2}.weight``;
``lm_head`` is tied to the embeddings and unused, so it is neither in the file nor built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .xlmr_reranker import take_all_tensors

#: The marker tokens of the released prompt: a document's end and the query's end.
EMBED_TOKEN = "<|embed_token|>"
RERANK_TOKEN = "<|rerank_token|>"


def is_listwise_config(config: dict[str, Any]) -> bool:
    """The released jina-reranker-v3 config: a Qwen3 model declared as ``JinaForRanking``."""
    return config.get("model_type") == "qwen3" and "JinaForRanking" in (
        config.get("architectures") or ()
    )


@dataclass(frozen=True)
class ListwiseConfig:
    """The config fields the Qwen3 backbone reads, as the released config.json has them."""

    values: dict[str, Any]

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ListwiseConfig:
        keys = (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "hidden_act",
            "max_position_embeddings",
            "rms_norm_eps",
            "attention_bias",
            "rope_theta",
            "rope_scaling",
            "rope_parameters",
            "use_sliding_window",
            "sliding_window",
            "max_window_layers",
            "layer_types",
            "pad_token_id",
            "bos_token_id",
            "eos_token_id",
        )
        values = {key: config[key] for key in keys if key in config}
        if values.get("use_sliding_window"):
            raise ValueError("jina-reranker-v3 with sliding-window attention is not supported")
        return cls(values)

    @property
    def hidden_size(self) -> int:
        return int(self.values["hidden_size"])

    @property
    def max_position_embeddings(self) -> int:
        return int(self.values.get("max_position_embeddings", 32768))

    @property
    def rope_theta(self) -> float:
        parameters = self.values.get("rope_parameters") or {}
        return float(self.values.get("rope_theta", parameters.get("rope_theta", 10000.0)))

    def qwen3_config(self, dtype: torch.dtype) -> Any:
        import inspect

        from transformers import Qwen3Config

        values = dict(self.values)
        scaling = values.pop("rope_scaling", None) or (values.get("rope_parameters") or {})
        if scaling.get("rope_type", scaling.get("type", "default")) != "default":
            raise ValueError(f"rope scaling {scaling!r} is not supported")
        values.pop("rope_theta", None)
        values.pop("rope_parameters", None)
        # transformers 5 takes rope_parameters, 4.x rope_theta; the rotary table is checked
        # against the config once built (ListwiseModel.from_dir).
        if "rope_parameters" in inspect.signature(Qwen3Config.__init__).parameters:
            values["rope_parameters"] = {"rope_type": "default", "rope_theta": self.rope_theta}
        else:
            values["rope_theta"] = self.rope_theta
        config = Qwen3Config(**values, tie_word_embeddings=True, use_cache=False)
        config._attn_implementation = "sdpa"
        return config


class ListwiseModel:
    """The Qwen3 decoder and the projector; ``project`` runs one block prompt."""

    def __init__(self, backbone: Any, projector: tuple[torch.Tensor, torch.Tensor]) -> None:
        self.backbone = backbone
        self.projector_in, self.projector_out = projector
        self.hidden_size = int(backbone.config.hidden_size)

    @classmethod
    def from_dir(
        cls, model_dir: Path, config: ListwiseConfig, device: torch.device, dtype: torch.dtype
    ) -> ListwiseModel:
        from transformers import Qwen3Model

        qwen = config.qwen3_config(dtype)
        with torch.device("meta"):
            skeleton = Qwen3Model(qwen)
        names = [f"model.{name}" for name in skeleton.state_dict()]
        expected = [*names, "projector.0.weight", "projector.2.weight"]
        tensors = take_all_tensors(model_dir, expected, dtype, "jina-reranker-v3")
        projector = (tensors.pop("projector.0.weight"), tensors.pop("projector.2.weight"))
        half = config.hidden_size // 2
        if projector[0].shape != (half, config.hidden_size) or projector[1].shape[1] != half:
            raise ValueError(
                f"{model_dir}: projector shapes {tuple(projector[0].shape)}, "
                f"{tuple(projector[1].shape)} do not fit hidden size {config.hidden_size}"
            )
        state = {name.removeprefix("model."): tensor for name, tensor in tensors.items()}
        # Built on the meta device (no random init of 0.6B weights), then given the file's
        # tensors; buffers that are not in the file (rotary inverse frequencies) are
        # computed afresh on the target device.
        skeleton.load_state_dict(state, strict=True, assign=True)
        with torch.device(device):
            fresh_rotary = type(skeleton.rotary_emb)(qwen)
        skeleton.rotary_emb = fresh_rotary
        head_dim = int(config.values.get("head_dim") or 0) or config.hidden_size // int(
            config.values["num_attention_heads"]
        )
        steps = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim
        expected_inv_freq = 1.0 / (config.rope_theta**steps)
        if not torch.allclose(fresh_rotary.inv_freq.float(), expected_inv_freq, rtol=1e-5):
            raise ValueError(
                f"{model_dir}: this transformers version built a rotary table that does not "
                f"match rope_theta {config.rope_theta}"
            )
        backbone = skeleton.to(device).eval()  # file dtype kept; rotary stays float32
        for module in backbone.modules():
            for name, buffer in list(module.named_buffers(recurse=False)):
                if buffer.is_meta:
                    raise ValueError(f"{model_dir}: backbone buffer {name} was not initialized")
        return cls(backbone, (projector[0].to(device).float(), projector[1].to(device).float()))

    @property
    def device(self) -> torch.device:
        return self.projector_in.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.embed_tokens.weight.dtype

    def project(self, input_ids: list[int], positions: list[int]) -> torch.Tensor:
        """The last layer's states at ``positions`` of one prompt, through the projector:
        (len(positions), projector width), float32."""
        ids = torch.tensor([input_ids], dtype=torch.long, device=self.device)
        with torch.inference_mode():
            states = self.backbone(input_ids=ids, use_cache=False).last_hidden_state[0]
            picked = states[torch.tensor(positions, device=self.device)].float()
            hidden = F.relu(F.linear(picked, self.projector_in))
            return F.linear(hidden, self.projector_out)
