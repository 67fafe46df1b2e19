"""A sentence-transformers export (``modules.json``), read into what the embedder runs.

Supported, exactly as sentence-transformers runs it:

- ``Transformer`` first (at the root or in a subfolder such as ``0_Transformer``), with its
  ``max_seq_length`` and ``do_lower_case``;
- then one ``Pooling`` with a single mode: ``cls``, ``mean``, ``max`` or ``lasttoken``
  (``include_prompt`` honoured);
- then any number of ``Dense`` (linear layer, activation, optional residual) and
  ``Normalize`` modules, in their order, applied to the pooled float32 rows.

Anything else (other module types, weighted-mean or sqrt-length pooling, several pooling
modes at once, modules reading token embeddings) raises ``UnsupportedModelError`` naming
the module: running part of a pipeline would give wrong vectors without a word.
A directory without ``modules.json`` is run as sentence-transformers runs a plain
transformers checkpoint: Transformer, then mean pooling.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

import torch

from ..errors import UnsafeCheckpointError, UnsupportedModelError
from ..loading import read_json

PoolingMode = Literal["cls", "mean", "max", "lasttoken"]
POOLING_MODES: tuple[str, ...] = ("cls", "mean", "max", "lasttoken")

_MODULE_NAMES = ("Transformer", "Pooling", "Dense", "Normalize")
# Pooling modes of the old config format (one bool per mode), in sentence-transformers' order.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_SENTENCE_EMBEDDING = "sentence_embedding"


@dataclass(frozen=True)
class SentenceTransformerPipeline:
    """What a sentence-transformers export asks for, checked and ready to run."""

    transformer_dir: Path
    pooling: PoolingMode = "mean"
    include_prompt: bool = True
    max_seq_length: int | None = None
    do_lower_case: bool = False
    #: Dense and Normalize modules, in order, in float32 on the CPU.
    post_pooling: tuple[torch.nn.Module, ...] = ()
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None


class Dense(torch.nn.Module):
    """sentence-transformers' Dense: ``activation(linear(x))``, plus an optional residual."""

    def __init__(
        self, linear: torch.nn.Linear, activation: torch.nn.Module, residual: torch.nn.Module | None
    ) -> None:
        super().__init__()
        self.linear = linear
        self.activation = activation
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.activation(self.linear(x))
        if self.residual is not None:
            out = out + self.residual(x)
        return out


class Normalize(torch.nn.Module):
    """sentence-transformers' Normalize: L2-normalize each row."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(x, p=2, dim=-1)


def read_pipeline(model_dir: Path) -> SentenceTransformerPipeline:
    """Read and check ``model_dir``'s sentence-transformers pipeline (see the module doc)."""
    settings = _read_optional(model_dir / "config_sentence_transformers.json")
    model_type = settings.get("model_type")
    if model_type not in (None, "SentenceTransformer"):
        raise UnsupportedModelError(
            f"{model_dir} is a sentence-transformers {model_type}, not a SentenceTransformer "
            "(dense text embedding) model"
        )
    prompts = {str(k): str(v) for k, v in (settings.get("prompts") or {}).items()}
    default_prompt = settings.get("default_prompt_name")
    if default_prompt is not None and default_prompt not in prompts:
        raise UnsupportedModelError(
            f"{model_dir}: default_prompt_name {default_prompt!r} is not one of its prompts"
        )
    modules_file = model_dir / "modules.json"
    if not modules_file.is_file():
        max_seq_length, lower = _transformer_settings(model_dir)
        return SentenceTransformerPipeline(
            model_dir,
            max_seq_length=max_seq_length,
            do_lower_case=lower,
            prompts=prompts,
            default_prompt_name=default_prompt,
        )
    modules = _read_list(modules_file)  # run in list order, as sentence-transformers does
    kinds = [_module_kind(model_dir, m) for m in modules]
    if (
        kinds[:2] != ["Transformer", "Pooling"]
        or "Transformer" in kinds[2:]
        or ("Pooling" in kinds[2:])
    ):
        raise UnsupportedModelError(
            f"{model_dir}/modules.json runs {' -> '.join(kinds) or 'nothing'}; supported: "
            "Transformer -> Pooling, then Dense and Normalize modules"
        )
    transformer_dir = _module_dir(model_dir, modules[0])
    max_seq_length, lower = _transformer_settings(transformer_dir)
    pooling, include_prompt = _pooling(_module_dir(model_dir, modules[1]), modules[1])
    post: list[torch.nn.Module] = []
    for module, kind in zip(modules[2:], kinds[2:]):
        folder = _module_dir(model_dir, module)
        post.append(_dense(folder, module) if kind == "Dense" else _normalize(folder, module))
    return SentenceTransformerPipeline(
        transformer_dir,
        pooling=pooling,
        include_prompt=include_prompt,
        max_seq_length=max_seq_length,
        do_lower_case=lower,
        post_pooling=tuple(post),
        prompts=prompts,
        default_prompt_name=default_prompt,
    )


def _module_kind(model_dir: Path, module: dict[str, Any]) -> str:
    type_name = str(module.get("type", ""))
    # Module classes moved between releases (sentence_transformers.models.Pooling, later
    # sentence_transformers.sentence_transformer.modules.pooling.Pooling): match the class.
    kind = type_name.rsplit(".", 1)[-1]
    if not type_name.startswith("sentence_transformers.") or kind not in _MODULE_NAMES:
        raise UnsupportedModelError(
            f"{model_dir}/modules.json: module {module.get('idx')} ({type_name or 'no type'}) is "
            f"not supported; supported modules: {', '.join(_MODULE_NAMES)}"
        )
    return kind


def _module_dir(model_dir: Path, module: dict[str, Any]) -> Path:
    folder = (model_dir / str(module.get("path") or "")).resolve()
    if not folder.is_relative_to(model_dir.resolve()):
        raise UnsupportedModelError(f"{model_dir}/modules.json: path {module.get('path')!r}")
    return folder


def _transformer_settings(folder: Path) -> tuple[int | None, bool]:
    config = _read_optional(folder / "sentence_bert_config.json")
    task = config.get("transformer_task", "feature-extraction")
    if task != "feature-extraction":
        raise UnsupportedModelError(
            f"{folder}: Transformer task {task!r}; only 'feature-extraction' is supported"
        )
    text = (config.get("modality_config") or {}).get("text", {})
    output = text.get("method_output_name", "last_hidden_state")
    if text.get("method", "forward") != "forward" or output != "last_hidden_state":
        raise UnsupportedModelError(
            f"{folder}: Transformer reads {text.get('method')}()['{output}']; only the model's "
            "forward() last_hidden_state is supported"
        )
    if config.get("module_output_name", "token_embeddings") != "token_embeddings":
        raise UnsupportedModelError(
            f"{folder}: Transformer writes {config['module_output_name']!r}, not token_embeddings"
        )
    length = config.get("max_seq_length")
    return (int(length) if length else None), bool(config.get("do_lower_case", False))


def _pooling(folder: Path, module: dict[str, Any]) -> tuple[PoolingMode, bool]:
    config = _read_optional(folder / "config.json")
    if "pooling_mode" in config:
        declared = config["pooling_mode"]
        modes = [declared] if isinstance(declared, str) else list(declared)
    else:
        modes = [m for key, m in _LEGACY_POOLING_KEYS.items() if config.get(key)] or ["mean"]
    where = f"{folder}: Pooling (module {module.get('idx')})"
    if len(modes) != 1:
        raise UnsupportedModelError(
            f"{where} concatenates {len(modes)} pooling modes ({', '.join(map(str, modes))}); "
            f"one of {', '.join(POOLING_MODES)} is supported"
        )
    if modes[0] not in POOLING_MODES:
        raise UnsupportedModelError(
            f"{where} mode {modes[0]!r} is not supported; supported: {', '.join(POOLING_MODES)}"
        )
    return cast(PoolingMode, modes[0]), bool(config.get("include_prompt", True))


def _dense(folder: Path, module: dict[str, Any]) -> Dense:
    where = f"{folder}: Dense (module {module.get('idx')})"
    config = _read_optional(folder / "config.json")
    if not config:
        raise UnsupportedModelError(f"{where} has no config.json")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, _SENTENCE_EMBEDDING) != _SENTENCE_EMBEDDING:
            raise UnsupportedModelError(
                f"{where} {key} is {config[key]!r}; only Dense on the sentence embedding is "
                "supported"
            )
    in_features, out_features = int(config["in_features"]), int(config["out_features"])
    bias = bool(config.get("bias", True))
    weights = _dense_weights(folder, where)
    linear = torch.nn.Linear(in_features, out_features, bias=bias)
    residual: torch.nn.Module | None = None
    if config.get("use_residual", False):
        residual = (
            torch.nn.Identity()
            if in_features == out_features
            else torch.nn.Linear(in_features, out_features, bias=False)
        )
    dense = Dense(linear, _activation(config.get("activation_function"), where), residual)
    expected = set(dense.state_dict())
    if set(weights) != expected:
        raise UnsupportedModelError(
            f"{where} weights are {sorted(weights)}, expected {sorted(expected)}"
        )
    dense.load_state_dict({k: v.float() for k, v in weights.items()})
    return dense.float().eval()


def _dense_weights(folder: Path, where: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    file = folder / "model.safetensors"
    if file.is_file():
        return load_file(str(file), device="cpu")
    if (folder / "pytorch_model.bin").is_file():
        raise UnsafeCheckpointError(
            f"{where} only has pickle weights (pytorch_model.bin); loading them could execute "
            "arbitrary code, so they are refused. Convert them to model.safetensors."
        )
    raise UnsupportedModelError(f"{where} has no model.safetensors")


def _activation(name: Any, where: str) -> torch.nn.Module:
    """The activation named in a Dense config: a torch.nn activation module, nothing else."""
    if name is None:
        return torch.nn.Tanh()  # sentence-transformers' default
    module_name, _, class_name = str(name).rpartition(".")
    cls = None
    if module_name == "torch.nn" or module_name.startswith("torch.nn."):
        try:
            cls = getattr(importlib.import_module(module_name), class_name, None)
        except ImportError:
            cls = None
    if (
        not inspect.isclass(cls)
        or not issubclass(cls, torch.nn.Module)
        or not (cls.__module__ == "torch.nn.modules.activation" or cls is torch.nn.Identity)
    ):
        raise UnsupportedModelError(
            f"{where} activation {name!r} is not supported; use a torch.nn activation "
            "(e.g. torch.nn.modules.activation.Tanh) or torch.nn.modules.linear.Identity"
        )
    try:
        activation: torch.nn.Module = cls()
    except TypeError as error:
        raise UnsupportedModelError(f"{where} activation {name!r}: {error}") from None
    return activation


def _normalize(folder: Path, module: dict[str, Any]) -> Normalize:
    config = _read_optional(folder / "config.json")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, _SENTENCE_EMBEDDING) != _SENTENCE_EMBEDDING:
            raise UnsupportedModelError(
                f"{folder}: Normalize (module {module.get('idx')}) {key} is {config[key]!r}; "
                "only Normalize on the sentence embedding is supported"
            )
    return Normalize()


def _read_optional(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def _read_list(path: Path) -> list[dict[str, Any]]:
    import json

    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise UnsupportedModelError(f"{path} is not a list of modules")
    return data
