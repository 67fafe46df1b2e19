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
from pathlib import Path
from typing import Any

import torch

from ..errors import UnsafeCheckpointError, UnsupportedModelError
from ..model_info import (
    POOLING_MODES,
    PipelineConfig,
    PoolingMode,
    read_optional,
    read_pipeline_config,
)

__all__ = ["POOLING_MODES", "PoolingMode", "read_pipeline"]


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


def read_pipeline(model_dir: Path) -> tuple[PipelineConfig, tuple[torch.nn.Module, ...]]:
    """Read and check ``model_dir``'s sentence-transformers pipeline (see the module doc):
    its JSON files through :func:`embedder_core.model_info.read_pipeline_config`, and its
    Dense and Normalize modules, built with their weights (float32, on the CPU)."""
    config = read_pipeline_config(model_dir)
    modules = tuple(
        _dense(m.folder, m.entry) if m.kind == "Dense" else _normalize(m.folder, m.entry)
        for m in config.post_pooling
    )
    return config, modules


def _dense(folder: Path, module: dict[str, Any]) -> Dense:
    where = f"{folder}: Dense (module {module.get('idx')})"
    config = read_optional(folder / "config.json")  # checked by read_pipeline_config
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
    return Normalize()  # its config is checked by read_pipeline_config
