"""What a model is, read from its configuration files alone: no torch, no weights.

:func:`inspect_model` answers the questions a caller must settle before paying for a model
load (seconds, gigabytes): the canonical id, the embedding width (after any
sentence-transformers Dense module), the token limit, the task names, the pooling and so
whether late chunking works. The loader reads the same files through the same functions
(the sentence-transformers pipeline of ``modules.json`` is read here, its Dense and
Normalize modules are built in :mod:`embedder_core.models.st_pipeline`), so the two agree.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from .errors import RerankerCheckpointError, UnsupportedModelError
from .loading import model_dir_of, read_config, read_json, resolve_model_ref

PoolingMode = Literal["cls", "mean", "max", "lasttoken"]
POOLING_MODES: tuple[str, ...] = ("cls", "mean", "max", "lasttoken")
#: The five jina-embeddings-v3 task names. Encoders without adapters accept them too, as
#: prompt-only tasks, so that every adapter can always say which side of retrieval it is.
STANDARD_TASKS: tuple[str, ...] = (
    "retrieval.query",
    "retrieval.passage",
    "separation",
    "classification",
    "text-matching",
)

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
# How transformers configs of various architectures name the hidden width.
_SENTENCE_EMBEDDING = "sentence_embedding"
_HIDDEN_SIZE_KEYS = ("hidden_size", "d_model", "dim", "n_embd")
# Files that describe a model (a Hub snapshot of these alone is enough to inspect it).
_CONFIG_PATTERNS = ["*.json"]


@dataclass(frozen=True)
class ModelInfo:
    """A model as its configuration describes it.

    ``model``: the canonical id (:func:`~embedder_core.canonical_model_id`); ``dimension``:
    the full embedding width (``Embedder.dimension``), None when the config does not say;
    ``max_tokens``: the token limit, special tokens included (``Embedder.max_tokens``);
    ``tasks``: the valid task names; ``pooling``: ``"mean"``, ``"max"``, ``"cls"`` or
    ``"lasttoken"``; ``has_adapters``: task LoRA adapters (jina-embeddings-v3).
    """

    model: str
    dimension: int | None
    max_tokens: int
    tasks: tuple[str, ...]
    pooling: PoolingMode
    has_adapters: bool
    model_dir: Path = field(compare=False, repr=False)

    @property
    def supports_late_chunking(self) -> bool:
        """Late chunking pools each chunk over its own tokens (mean or max pooling)."""
        return self.pooling in ("mean", "max")


def inspect_model(
    model: str | os.PathLike[str] | None = None,
    *,
    revision: str | None = None,
    local_files_only: bool = False,
) -> ModelInfo:
    """Describe ``model`` (as :meth:`Embedder.from_pretrained` names it) from its JSON files.

    Imports no torch and loads no weights; for a Hub id it fetches only the ``*.json`` files
    (or finds them in the cache). Raises what loading would raise for the same reason:
    ``ModelNotFoundError`` for a missing model, ``UnsupportedModelError`` for a
    sentence-transformers pipeline the core does not run.
    """
    ref = resolve_model_ref(model, revision)
    model_dir = model_dir_of(ref, local_files_only=local_files_only, patterns=_CONFIG_PATTERNS)
    check_not_reranker(model_dir)
    root_config = model_dir / "config.json"
    if root_config.is_file():
        config = read_json(root_config)
        if is_jina_v3_config(config):
            return ModelInfo(
                model=ref.canonical_id,
                dimension=int(config["hidden_size"]),
                # RoBERTa convention: two position slots are reserved (8194 -> 8192 tokens).
                max_tokens=int(config["max_position_embeddings"]) - 2,
                tasks=tuple(config["lora_adaptations"]),
                pooling="mean",
                has_adapters=True,
                model_dir=model_dir,
            )
    pipeline = read_pipeline_config(model_dir)
    config = read_config(pipeline.transformer_dir)
    tasks = dict.fromkeys([*STANDARD_TASKS, *pipeline.prompts])
    return ModelInfo(
        model=ref.canonical_id,
        dimension=pipeline.output_width(hidden_size(config)),
        max_tokens=hf_max_tokens(pipeline.transformer_dir, config, pipeline.max_seq_length),
        tasks=tuple(tasks),
        pooling=pipeline.pooling,
        has_adapters=False,
        model_dir=model_dir,
    )


def reranker_architecture(config: dict[str, Any]) -> str | None:
    """The reranker architecture a root ``config.json`` declares, or None for an encoder:
    ``JinaForRanking`` (jina-reranker-v3) or a ``...ForSequenceClassification`` head
    (cross-encoders such as jina-reranker-v2). Read from the config alone: no code runs."""
    for name in config.get("architectures") or ():
        if name == "JinaForRanking" or str(name).endswith("ForSequenceClassification"):
            return str(name)
    return None


def check_not_reranker(model_dir: Path) -> None:
    """Refuse a reranker checkpoint as an embedder (``RerankerCheckpointError``): its
    hidden states are not embeddings, so serving it as one gives wrong vectors silently."""
    config = read_optional(model_dir / "config.json")
    architecture = reranker_architecture(config)
    settings = read_optional(model_dir / "config_sentence_transformers.json")
    if architecture is None and settings.get("model_type") == "CrossEncoder":
        architecture = "sentence-transformers CrossEncoder"
    if architecture is not None:
        raise RerankerCheckpointError(
            f"{model_dir} is a reranker ({architecture}), not an embedding model: load it "
            "with embedder_core.get_reranker(...), or serve it with `jina-connectors serve "
            "--reranker`"
        )


def is_jina_v3_config(config: dict[str, Any]) -> bool:
    """Whether a root ``config.json`` is the released jina-embeddings-v3 format."""
    return "lora_adaptations" in config and config.get("position_embedding_type") == "rotary"


def hidden_size(config: dict[str, Any]) -> int | None:
    """The hidden width a transformers config declares (under one of its usual names)."""
    for key in _HIDDEN_SIZE_KEYS:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def hf_max_tokens(model_dir: Path, config: dict[str, Any], max_seq_length: int | None) -> int:
    """Token limit, specials included: sentence-transformers' max_seq_length when set, else
    the smaller of the position table and the tokenizer's model_max_length."""
    if max_seq_length:
        return int(max_seq_length)
    limit = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        limit -= 2  # positions start after the padding index
    tokenizer_config = model_dir / "tokenizer_config.json"
    if tokenizer_config.is_file():
        declared = read_json(tokenizer_config).get("model_max_length")
        if isinstance(declared, int) and declared < limit:
            limit = declared
    return limit


# ------------------------------------------------------------ sentence-transformers pipeline


@dataclass(frozen=True)
class PostPoolingModule:
    """A Dense or Normalize module of ``modules.json``: its kind, folder and entry."""

    kind: Literal["Dense", "Normalize"]
    folder: Path
    entry: dict[str, Any]


@dataclass(frozen=True)
class PipelineConfig:
    """What a sentence-transformers export asks for, checked, as its JSON files say it."""

    transformer_dir: Path
    pooling: PoolingMode = "mean"
    include_prompt: bool = True
    max_seq_length: int | None = None
    do_lower_case: bool = False
    post_pooling: tuple[PostPoolingModule, ...] = ()
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None

    def output_width(self, hidden: int | None) -> int | None:
        """The embedding width: the last Dense module's ``out_features``, else ``hidden``."""
        width = hidden
        for module in self.post_pooling:
            if module.kind == "Dense":
                width = int(read_optional(module.folder / "config.json")["out_features"])
        return width


def read_pipeline_config(model_dir: Path) -> PipelineConfig:
    """Read and check ``model_dir``'s sentence-transformers pipeline (``modules.json``).

    Supported: ``Transformer`` first, then one ``Pooling`` with a single mode (``cls``,
    ``mean``, ``max`` or ``lasttoken``), then any number of ``Dense`` and ``Normalize``
    modules. Anything else raises ``UnsupportedModelError`` naming the module. A directory
    without ``modules.json`` is a plain transformers checkpoint: Transformer, mean pooling.
    """
    settings = read_optional(model_dir / "config_sentence_transformers.json")
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
        return PipelineConfig(
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
    post = tuple(
        _post_pooling_module(kind, _module_dir(model_dir, m), m)
        for m, kind in zip(modules[2:], kinds[2:])
    )
    return PipelineConfig(
        transformer_dir,
        pooling=pooling,
        include_prompt=include_prompt,
        max_seq_length=max_seq_length,
        do_lower_case=lower,
        post_pooling=post,
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


def _post_pooling_module(kind: str, folder: Path, entry: dict[str, Any]) -> PostPoolingModule:
    """A Dense or Normalize entry, checked: it reads and writes the sentence embedding (and a
    Dense module says its width)."""
    where = f"{folder}: {kind} (module {entry.get('idx')})"
    config = read_optional(folder / "config.json")
    if kind == "Dense" and not {"in_features", "out_features"} <= set(config):
        raise UnsupportedModelError(f"{where} has no config.json with in_features, out_features")
    for key in ("module_input_name", "module_output_name"):
        if config.get(key, _SENTENCE_EMBEDDING) != _SENTENCE_EMBEDDING:
            raise UnsupportedModelError(
                f"{where} {key} is {config[key]!r}; only {kind} on the sentence embedding is "
                "supported"
            )
    return PostPoolingModule(cast(Literal["Dense", "Normalize"], kind), folder, entry)


def _transformer_settings(folder: Path) -> tuple[int | None, bool]:
    config = read_optional(folder / "sentence_bert_config.json")
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
    config = read_optional(folder / "config.json")
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


def read_optional(path: Path) -> dict[str, Any]:
    """A JSON object file, or ``{}`` when it does not exist."""
    return read_json(path) if path.is_file() else {}


def _read_list(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise UnsupportedModelError(f"{path} is not a list of modules")
    return data
