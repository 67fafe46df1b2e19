"""Resolving a model reference (local directory or Hub id) and reading its files safely.

Weights come from safetensors only: nothing in the checkpoint is unpickled or executed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .errors import ModelNotFoundError, UnsafeCheckpointError

DEFAULT_MODEL = "jinaai/jina-embeddings-v3"
MODEL_ENV_VAR = "JINA_CONNECTORS_MODEL"

# Files an embedder needs; anything else in a Hub repo (onnx exports, pickles) is skipped.
_HUB_PATTERNS = [
    "*.json",
    "*.safetensors",
    "*.txt",
    "*.model",
    "1_Pooling/*",
]
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def default_model() -> str:
    """The model used when none is given: ``$JINA_CONNECTORS_MODEL``, else jina-embeddings-v3."""
    return os.environ.get(MODEL_ENV_VAR) or DEFAULT_MODEL


def _how_to_get(model: str) -> str:
    return (
        f"Download it with `huggingface-cli download {model}` (or `hf download {model}`) "
        "while online, then run with local_files_only=True / HF_HUB_OFFLINE=1; or pass a local "
        f"directory as model=... or set {MODEL_ENV_VAR}=/path/to/model."
    )


def resolve_model_dir(
    model: str | os.PathLike[str],
    *,
    revision: str | None = None,
    local_files_only: bool = False,
) -> Path:
    """The local directory holding ``model``: the directory itself, or its HF cache snapshot."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    name = str(model)
    looks_like_path = path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1
    if path.exists() or looks_like_path:
        raise ModelNotFoundError(
            f"model {name!r} is not a directory. Point model at a directory with config.json, "
            f"model.safetensors and tokenizer.json. {_how_to_get(DEFAULT_MODEL)}"
        )
    from huggingface_hub import snapshot_download

    try:
        snapshot = snapshot_download(
            repo_id=name,
            revision=revision,
            local_files_only=local_files_only,
            allow_patterns=_HUB_PATTERNS,
        )
    except Exception as exc:  # hub errors differ across huggingface_hub versions
        raise ModelNotFoundError(
            f"model {name!r} is not in the Hugging Face cache and could not be downloaded "
            f"({type(exc).__name__}). {_how_to_get(name)}"
        ) from exc
    return Path(snapshot)


def read_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def read_config(model_dir: Path) -> dict[str, Any]:
    config = model_dir / "config.json"
    if not config.is_file():
        raise ModelNotFoundError(f"{model_dir} has no config.json; it is not a model directory")
    return read_json(config)


def safetensors_files(model_dir: Path) -> list[Path]:
    """The safetensors weight files of a checkpoint; refuses pickle-only checkpoints."""
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index)["weight_map"].values()))
        return [model_dir / shard for shard in shards]
    pickles = [p.name for p in model_dir.iterdir() if p.suffix in _PICKLE_SUFFIXES]
    if pickles:
        raise UnsafeCheckpointError(
            f"{model_dir} only has pickle weights ({', '.join(sorted(pickles))}); loading them "
            "could execute arbitrary code, so they are refused. Convert the checkpoint to "
            "safetensors (e.g. with `safetensors.torch.save_file`) and try again."
        )
    raise ModelNotFoundError(f"{model_dir} has no model.safetensors")


def iter_safetensors(model_dir: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) one tensor at a time, so conversion never holds two copies."""
    from safetensors import safe_open

    for file in safetensors_files(model_dir):
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for name in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                yield name, f.get_tensor(name)
