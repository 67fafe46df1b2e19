"""The model of a command, checked from its configuration before it loads (no weights, no
torch), then loaded; a missing model is one line saying how to provide it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from .errors import CommandError
from .flags import Quantization

if TYPE_CHECKING:
    from embedder_core import Embedder, ModelInfo


def inspect_model(model: str | None) -> ModelInfo | None:
    """The model's configuration (no weights, no torch); None for a server URL, which only
    its backend can describe."""
    from embedder_core import ModelNotFoundError, default_model
    from embedder_core import inspect_model as inspect

    name = model or default_model()
    if "://" in name:
        return None
    try:
        return inspect(name)
    except ModelNotFoundError as error:
        raise CommandError(model_not_found(name, error)) from None


def load_model(model: str | None, quantization: Quantization | None = None) -> Embedder:
    from embedder_core import ModelNotFoundError, default_model

    from ..shared_models import load_embedder

    try:
        return load_embedder(
            model, quantization=None if quantization is None else quantization.value
        )
    except ModelNotFoundError as error:
        raise CommandError(model_not_found(model or default_model(), error)) from None


def check_quantization(model: str | None, quantization: Quantization | None) -> None:
    """--quantization needs a model run by this process, not a server's."""
    from embedder_core import model_url

    url = model_url(model)
    if quantization is not None and url is not None:
        raise typer.BadParameter(
            f"applies to a model run in this process; the server at {url} runs its own "
            "(start it with: jina-connectors serve --quantization int8)",
            param_hint="'--quantization'",
        )


def model_not_found(name: str, error: Exception) -> str:
    from embedder_core import MODEL_ENV_VAR

    reason = str(error).split(". ")[0].rstrip(".")
    local = Path(name).expanduser().exists() or name.startswith(("/", ".", "~"))
    fetch = "" if local else f", or download {name} once with `hf download {name}` while online"
    return (
        f"{reason}. Pass a model folder (config.json, model.safetensors, tokenizer.json) with "
        f"--model DIR or ${MODEL_ENV_VAR}=DIR{fetch}"
    )
