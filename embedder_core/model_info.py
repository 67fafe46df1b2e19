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
import operator
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from .errors import RerankerCheckpointError, UnsupportedModelError
from .loading import (
    V2_BASE_CODE_REFUSAL,
    model_dir_of,
    read_config,
    read_json,
    resolve_model_ref,
)

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

#: What jina-embeddings-v2 accepts as ``task``: the two sides of retrieval, which every
#: adapter of the suite names. They select no adapter and no prompt (v2 has neither, and
#: embeds queries and passages alike); any other task is refused.
JINA_V2_TASKS: tuple[str, ...] = ("retrieval.query", "retrieval.passage")

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


@dataclass(frozen=True, init=False)
class ModelInfo:
    """A model as its configuration describes it: the one description of a model, for a
    model on disk (:func:`inspect_model`), a loaded ``Embedder`` (``Embedder.info``) and a
    served one (``RemoteEmbedder.info``, from the server's ``/v1/x/model``).

    ``model_name``: the canonical id (:func:`~embedder_core.canonical_model_id`), as
    ``Embedder.model_name``; ``dimension``: the full embedding width (``Embedder.dimension``),
    None when the config does not say; ``max_tokens``: the token limit, special tokens
    included (``Embedder.max_tokens``); ``tasks``: the valid task names; ``pooling``:
    ``"mean"``, ``"max"``, ``"cls"`` or ``"lasttoken"``; ``has_adapters``: task LoRA adapters
    (jina-embeddings-v3); ``model_dir``: the checkpoint's folder (None for a served model);
    ``instructions``: the text prepended to inputs of each task, and
    ``default_instruction`` to inputs without one (known once the tokenizer is read: empty
    from :func:`inspect_model`); ``matryoshka``: its leading dimensions are meaningful on
    their own (False for jina-embeddings-v2, which takes its full width only).
    ``model=`` is accepted for ``model_name=``, deprecated.
    """

    model_name: str
    dimension: int | None
    max_tokens: int
    tasks: tuple[str, ...]
    pooling: PoolingMode
    has_adapters: bool
    model_dir: Path | None = field(default=None, compare=False, repr=False)
    instructions: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    default_instruction: str = field(default="", compare=False, repr=False)
    matryoshka: bool = True

    def __init__(
        self,
        model_name: str | None = None,
        dimension: int | None = None,
        max_tokens: int = 0,
        tasks: Sequence[str] = (),
        pooling: PoolingMode = "mean",
        has_adapters: bool = False,
        model_dir: Path | None = None,
        instructions: Mapping[str, str] | None = None,
        default_instruction: str = "",
        matryoshka: bool = True,
        *,
        model: str | None = None,
    ) -> None:
        if model is not None:
            _warn_model_renamed()
            if model_name is not None and model_name != model:
                raise TypeError("give model_name, not both model_name and model (its old name)")
            model_name = model
        if model_name is None:
            raise TypeError("ModelInfo needs model_name")
        values = {
            "model_name": model_name,
            "dimension": dimension,
            "max_tokens": max_tokens,
            "tasks": tuple(tasks),
            "pooling": pooling,
            "has_adapters": has_adapters,
            "model_dir": model_dir,
            "instructions": dict(instructions or {}),
            "default_instruction": default_instruction,
            "matryoshka": matryoshka,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @property
    def model(self) -> str:
        """Deprecated: ``model_name`` (the name ``Embedder`` uses for the same id)."""
        _warn_model_renamed()
        return self.model_name

    @property
    def supports_late_chunking(self) -> bool:
        """Late chunking pools each chunk over its own tokens (mean or max pooling)."""
        return self.pooling in ("mean", "max")

    def check_task(self, task: str | None) -> str | None:
        """``task`` when it is None or one of ``tasks``; else ``TypeError``/``ValueError``."""
        if task is None:
            return None
        if not isinstance(task, str):
            raise TypeError(f"task must be a str or None, got {type(task).__name__}")
        if task not in self.tasks:
            raise ValueError(
                f"unknown task {task!r}; valid tasks: {', '.join(self.tasks)} (or None)"
            )
        return task

    @staticmethod
    def check_tasks(task: str | Sequence[str | None] | None, count: int) -> list[str | None]:
        """One task per text: ``task`` repeated, or the list given (its length and its
        names' types checked; the names themselves by whoever runs the model)."""
        if task is None or isinstance(task, str):
            return [task] * count
        names = list(task)
        if len(names) != count:
            raise ValueError(f"got {len(names)} tasks for {count} texts; give one task per text")
        for name in names:
            if name is not None and not isinstance(name, str):
                raise TypeError(f"task must be a str or None, got {type(name).__name__}")
        return names

    def check_dimensions(self, dimensions: int | None) -> int | None:
        """The output width for ``dimensions``: the full width for None, else ``dimensions``
        when it is an int from 1 to ``dimension`` and the model allows it (a model without
        Matryoshka training: its full width only); ``ValueError`` otherwise. The one check of
        ``dimensions`` against a model, wherever the model runs."""
        if dimensions is None:
            return self.dimension
        if isinstance(dimensions, bool):
            raise ValueError(f"dimensions must be an int, got {dimensions!r}")
        try:
            value = operator.index(dimensions)
        except TypeError:
            raise ValueError(f"dimensions must be an int, got {dimensions!r}") from None
        if self.dimension is None:
            if value < 1:
                raise ValueError(f"dimensions must be positive, got {value}")
            return value
        if not self.matryoshka and value != self.dimension:
            raise ValueError(
                f"dimensions={value}: {self.model_name} has no Matryoshka training, so its "
                f"embeddings are only meaningful at their full width; pass {self.dimension} "
                "or omit dimensions"
            )
        if not 1 <= value <= self.dimension:
            raise ValueError(f"dimensions must be between 1 and {self.dimension}, got {value}")
        return value

    def instruction(self, task: str | None) -> str:
        """The text prepended to inputs of ``task`` (checked)."""
        if self.check_task(task) is None:
            return self.default_instruction
        return self.instructions[task]  # type: ignore[index]

    @classmethod
    def of(cls, model: Any) -> ModelInfo:
        """``model``'s description: itself, its ``info`` (``Embedder``, ``RemoteEmbedder``, a
        deferred embedder), or one made from what the embedder protocol exposes."""
        if isinstance(model, ModelInfo):
            return model
        info = getattr(model, "info", None)
        if isinstance(info, ModelInfo):
            return info
        return cls(
            model_name=model.model_name,
            dimension=model.dimension,
            max_tokens=getattr(model, "max_tokens", 0),
            tasks=tuple(model.tasks),
            pooling=getattr(model, "pooling", "mean"),
            has_adapters=getattr(model, "has_adapters", False),
        )

    def to_json(self) -> dict[str, Any]:
        """The description as JSON (the model part of the server's ``/v1/x/model``)."""
        return {
            "model_name": self.model_name,
            "dimension": self.dimension,
            "max_tokens": self.max_tokens,
            "tasks": list(self.tasks),
            "instructions": dict(self.instructions),
            "default_instruction": self.default_instruction,
            "has_adapters": self.has_adapters,
            "pooling": self.pooling,
            "supports_late_chunking": self.supports_late_chunking,
            "matryoshka": self.matryoshka,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelInfo:
        """The description ``to_json`` wrote (``KeyError``/``TypeError`` on another shape)."""
        dimension = data["dimension"]
        return cls(
            model_name=str(data["model_name"]),
            dimension=None if dimension is None else int(dimension),
            max_tokens=int(data["max_tokens"]),
            tasks=tuple(data["tasks"]),
            pooling=data["pooling"],
            has_adapters=bool(data["has_adapters"]),
            instructions=dict(data["instructions"]),
            default_instruction=str(data["default_instruction"]),
            matryoshka=bool(data.get("matryoshka", True)),  # servers before it: every width
        )


def _warn_model_renamed() -> None:
    warnings.warn(
        "ModelInfo.model is now ModelInfo.model_name (as Embedder.model_name); "
        "model goes in the next release",
        DeprecationWarning,
        stacklevel=3,
    )


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
        if is_jina_v2_config(config):
            v2 = JinaV2Config.from_dict(model_dir, config)
            v2_pipeline = read_jina_v2_pipeline(model_dir)
            return ModelInfo(
                model_name=ref.canonical_id,
                dimension=v2_pipeline.output_width(v2.hidden_size),
                max_tokens=min(v2.max_tokens, v2_pipeline.max_seq_length or v2.max_tokens),
                tasks=JINA_V2_TASKS,
                pooling="mean",
                has_adapters=False,
                model_dir=model_dir,
                matryoshka=False,
            )
        if is_jina_v3_config(config):
            check_native_auto_map(model_dir, config, "jina-embeddings-v3")
            return ModelInfo(
                model_name=ref.canonical_id,
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
    check_transformers_config(pipeline.transformer_dir, config)
    tasks = dict.fromkeys([*STANDARD_TASKS, *pipeline.prompts])
    return ModelInfo(
        model_name=ref.canonical_id,
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


def is_jina_v2_config(config: dict[str, Any]) -> bool:
    """Whether a root ``config.json`` is the released jina-embeddings-v2 (JinaBERT) format:
    ``model_type`` "bert" with ALiBi positions, which ``transformers.BertModel`` would run
    as plain BERT (random position table, gated MLP dropped)."""
    return config.get("model_type") == "bert" and config.get("position_embedding_type") == "alibi"


#: GELU variants ``hidden_act`` may name for JinaBERT's GEGLU: "gelu" is exact (erf).
_V2_GELU = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}
V2_FEED_FORWARD_TYPES = ("geglu", "reglu")


@dataclass(frozen=True)
class JinaV2Config:
    """A jina-embeddings-v2 (JinaBERT) config, checked: every value is read from config.json,
    and a setting the native implementation does not do is refused."""

    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    feed_forward_type: str  # "geglu": GELU gate; "reglu": ReLU gate
    gelu_approximate: str  # torch's F.gelu ``approximate``: "none" (erf) or "tanh"
    layer_norm_eps: float
    vocab_size: int
    type_vocab_size: int
    max_position_embeddings: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def max_tokens(self) -> int:
        # ALiBi has no position table; the limit is the trained length (8192 as released).
        return self.max_position_embeddings

    @classmethod
    def from_dict(cls, model_dir: Path, config: dict[str, Any]) -> JinaV2Config:
        where = f"{model_dir}/config.json"
        check_native_auto_map(model_dir, config, "jina-embeddings-v2")
        position = config.get("position_embedding_type")
        if position != "alibi":
            raise UnsupportedModelError(
                f"{where}: position_embedding_type {position!r}; jina-embeddings-v2 uses 'alibi'"
            )
        feed_forward = config.get("feed_forward_type", "geglu")
        if feed_forward not in V2_FEED_FORWARD_TYPES:
            raise UnsupportedModelError(
                f"{where}: feed_forward_type {feed_forward!r} is not implemented; "
                f"jina-embeddings-v2 supports {', '.join(V2_FEED_FORWARD_TYPES)}"
            )
        act = config.get("hidden_act", "gelu")
        if act not in _V2_GELU:
            raise UnsupportedModelError(
                f"{where}: hidden_act {act!r} is not implemented; jina-embeddings-v2 supports "
                f"{', '.join(_V2_GELU)}"
            )
        pooler = config.get("emb_pooler")
        if pooler not in (None, "mean"):
            raise UnsupportedModelError(
                f"{where}: emb_pooler {pooler!r}; jina-embeddings-v2 pools by mean"
            )
        try:
            parsed = cls(
                hidden_size=int(config["hidden_size"]),
                num_hidden_layers=int(config["num_hidden_layers"]),
                num_attention_heads=int(config["num_attention_heads"]),
                intermediate_size=int(config["intermediate_size"]),
                feed_forward_type=str(feed_forward),
                gelu_approximate=_V2_GELU[act],
                layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
                vocab_size=int(config["vocab_size"]),
                type_vocab_size=int(config.get("type_vocab_size", 2)),
                max_position_embeddings=int(config.get("max_position_embeddings", 8192)),
            )
        except KeyError as missing:
            raise UnsupportedModelError(f"{where} has no {missing.args[0]!r}") from None
        if parsed.hidden_size % parsed.num_attention_heads:
            raise UnsupportedModelError(
                f"{where}: hidden_size {parsed.hidden_size} is not a multiple of "
                f"num_attention_heads {parsed.num_attention_heads}"
            )
        return parsed


#: Remote-code repositories named by ``auto_map`` whose architecture is implemented
#: natively, mapped to the family name; the code itself is never run.
NATIVE_REMOTE_CODE: dict[str, str] = {
    "jinaai/xlm-roberta-flash-implementation": "jina-embeddings-v3",
    "jinaai/jina-bert-implementation": "jina-embeddings-v2",
}
#: jina-embeddings-v2-base-code's remote code (see ``loading.V2_BASE_CODE_REFUSAL``).
JINA_V2_QK_POST_NORM = "jinaai/jina-bert-v2-qk-post-norm"


def remote_code_targets(config: dict[str, Any]) -> dict[str, str]:
    """``auto_map`` entries as {auto class: "repo" or "(the checkpoint's own code)"}."""
    targets: dict[str, str] = {}
    for auto_class, value in (config.get("auto_map") or {}).items():
        for ref in value if isinstance(value, list) else [value]:
            if isinstance(ref, str) and ref:
                repo, sep, _ = ref.partition("--")
                targets[str(auto_class)] = repo if sep else "(the checkpoint's own code)"
    return targets


def check_native_auto_map(model_dir: Path, config: dict[str, Any], family: str) -> None:
    """Refuse an ``auto_map`` that names remote code other than ``family``'s own: the
    config then asks for an architecture the native ``family`` implementation is not."""
    for auto_class, repo in remote_code_targets(config).items():
        if repo == JINA_V2_QK_POST_NORM:
            raise UnsupportedModelError(f"{model_dir}: {V2_BASE_CODE_REFUSAL}")
        if NATIVE_REMOTE_CODE.get(repo) != family:
            raise UnsupportedModelError(
                f"{model_dir}/config.json: auto_map {auto_class} names remote code {repo!r}, "
                f"which is not the {family} architecture the core implements; the core never "
                "runs remote code, and running the checkpoint as another model would give "
                "wrong vectors"
            )


def check_transformers_config(model_dir: Path, config: dict[str, Any]) -> None:
    """Refuse a config that asks ``transformers.AutoModel`` for what its class for
    ``model_type`` does not do (loaded without remote code, it would silently ignore it).

    - ``auto_map`` naming a model class: the architecture is remote code, which the core
      never runs; ``AutoModel`` would load ``model_type``'s plain class instead.
    - ``position_embedding_type`` other than "absolute": transformers' BERT-family classes
      implement absolute position tables only and ignore the field.
    - ``feed_forward_type``: no transformers encoder reads it (it selects JinaBERT's gated
      MLP, whose weights a plain BERT would drop).
    """
    where = f"{model_dir}/config.json"
    for auto_class, repo in remote_code_targets(config).items():
        if auto_class.startswith(("AutoModel", "AutoConfig")):
            family = NATIVE_REMOTE_CODE.get(repo)
            hint = f" ({family}'s code, but the config is not in its format)" if family else ""
            raise UnsupportedModelError(
                f"{where}: auto_map {auto_class} names remote code {repo!r}{hint}. The core "
                "never runs remote code and does not implement this architecture natively; "
                f"transformers would load it as a plain {config.get('model_type')!r} model "
                "and give wrong vectors"
            )
    position = config.get("position_embedding_type")
    if position not in (None, "absolute"):
        raise UnsupportedModelError(
            f"{where}: position_embedding_type {position!r} is not implemented by the "
            f"transformers {config.get('model_type')!r} model (absolute positions only)"
        )
    if "feed_forward_type" in config:
        raise UnsupportedModelError(
            f"{where}: feed_forward_type {config['feed_forward_type']!r} is not implemented by "
            f"the transformers {config.get('model_type')!r} model, which has an ungated MLP"
        )


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


def read_jina_v2_pipeline(model_dir: Path) -> PipelineConfig:
    """The sentence-transformers pipeline of a jina-embeddings-v2 checkpoint (the releases
    ship Transformer -> mean Pooling); anything but the model at the root, mean pooling
    over all tokens and no prompts is refused, as it is not the published model."""
    pipeline = read_pipeline_config(model_dir)
    if (
        pipeline.transformer_dir.resolve() != model_dir.resolve()
        or pipeline.pooling != "mean"
        or not pipeline.include_prompt
        or pipeline.prompts
    ):
        raise UnsupportedModelError(
            f"{model_dir}: jina-embeddings-v2 runs with its Transformer at the root, mean "
            f"pooling over every token and no prompts; its modules.json asks for "
            f"{pipeline.pooling} pooling from {pipeline.transformer_dir}"
            + (f" with prompts {sorted(pipeline.prompts)}" if pipeline.prompts else "")
        )
    return pipeline


def read_optional(path: Path) -> dict[str, Any]:
    """A JSON object file, or ``{}`` when it does not exist."""
    return read_json(path) if path.is_file() else {}


def _read_list(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list) or not all(isinstance(m, dict) for m in data):
        raise UnsupportedModelError(f"{path} is not a list of modules")
    return data
