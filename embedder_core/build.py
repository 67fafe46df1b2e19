"""Assembling an :class:`~embedder_core.embedder.Embedder` from a checkpoint directory.

The checkpoint's own files decide the model family: a jina-embeddings-v2 or -v3 config
loads the native model; anything else is read as a sentence-transformers pipeline (or a
plain transformers encoder). Options are checked before the model is looked for, and no
code from the checkpoint is ever executed.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .devices import pick_device, pick_dtype, warn_if_slow_dtype
from .embedder import Embedder, TaskSpec
from .loading import model_dir_of, read_config, read_json, resolve_model_ref
from .model_info import (
    JINA_V2_TASKS,
    STANDARD_TASKS,  # the five jina-embeddings-v3 task names
    JinaV2Config,
    check_native_auto_map,
    check_not_reranker,
    is_jina_v2_config,
    read_jina_v2_pipeline,
)
from .models.hf_encoder import HFEncoder, hf_max_tokens
from .models.jina_v2 import JinaV2Model
from .models.jina_v3 import JinaV3Config, JinaV3Model, is_jina_v3_config
from .models.quantization import Int8Support, plan_quantization
from .models.st_pipeline import read_pipeline
from .tokenization import TextTokenizer

__all__ = ["load_embedder"]

_PROMPT_ALIASES = {"retrieval.query": ("query",), "retrieval.passage": ("passage", "document")}


def load_embedder(
    cls: type[Embedder],
    model: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    max_batch_tokens: int | None = None,
    local_files_only: bool = False,
    revision: str | None = None,
    quantization: str | None = None,
) -> Embedder:
    """:meth:`Embedder.from_pretrained` (see there): a new ``cls`` for ``model``."""
    # Options first: a bad one fails before the model is looked for.
    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    int8 = plan_quantization(quantization, torch_device, torch_dtype)
    ref = resolve_model_ref(model, revision)
    warn_if_slow_dtype(torch_device, torch_dtype)
    model_dir = model_dir_of(ref, local_files_only=local_files_only)
    check_not_reranker(model_dir)
    root_config = model_dir / "config.json"
    if root_config.is_file() and is_jina_v2_config(read_json(root_config)):
        return _jina_v2(
            cls, model_dir, ref.canonical_id, torch_device, torch_dtype, int8, max_batch_tokens
        )
    if root_config.is_file() and is_jina_v3_config(read_json(root_config)):
        check_native_auto_map(model_dir, read_json(root_config), "jina-embeddings-v3")
        jina = JinaV3Config.from_dict(read_json(root_config))
        tokenizer = TextTokenizer.from_dir(
            model_dir, bos_token_id=jina.bos_token_id, eos_token_id=jina.eos_token_id
        )
        encoder = JinaV3Model.from_dir(model_dir, jina, torch_device, torch_dtype)
        if int8 is not None:
            encoder.quantize_int8(reduce_range=int8.reduce_range)
        tasks = {
            name: TaskSpec(i, jina.task_instructions.get(name) or "")
            for i, name in enumerate(jina.lora_adaptations)
        }
        return cls(
            encoder,
            tokenizer,
            model_name=ref.canonical_id,
            max_tokens=jina.max_tokens,
            tasks=tasks,
            has_adapters=True,
            max_batch_tokens=max_batch_tokens,
        )
    pipeline, post_pooling = read_pipeline(model_dir)
    transformer_dir = pipeline.transformer_dir
    config = read_config(transformer_dir)
    prompts = pipeline.prompts
    tasks = {task: TaskSpec(-1, _prompt_for(task, prompts)) for task in STANDARD_TASKS}
    tasks.update({task: TaskSpec(-1, prompt) for task, prompt in prompts.items()})
    default = pipeline.default_prompt_name
    hf_encoder = HFEncoder.from_dir(transformer_dir, torch_device, torch_dtype)
    if int8 is not None:
        hf_encoder.quantize_int8(reduce_range=int8.reduce_range)
    return cls(
        hf_encoder,
        TextTokenizer.from_dir(transformer_dir, lowercase=pipeline.do_lower_case),
        model_name=ref.canonical_id,
        max_tokens=hf_max_tokens(transformer_dir, config, pipeline.max_seq_length),
        tasks=tasks,
        has_adapters=False,
        pooling=pipeline.pooling,
        include_prompt=pipeline.include_prompt,
        post_pooling=post_pooling,
        default_task=TaskSpec(-1, prompts[default]) if default else TaskSpec(),
        max_batch_tokens=max_batch_tokens,
    )


def _jina_v2(
    cls: type[Embedder],
    model_dir: Path,
    model_name: str,
    device: torch.device,
    dtype: torch.dtype,
    int8: Int8Support | None,
    max_batch_tokens: int | None,
) -> Embedder:
    """jina-embeddings-v2 natively: checked config and pipeline, then the weights."""
    config = JinaV2Config.from_dict(model_dir, read_json(model_dir / "config.json"))
    pipeline = read_jina_v2_pipeline(model_dir)  # before the weights: it may refuse
    _, post_pooling = read_pipeline(model_dir)
    encoder = JinaV2Model.from_dir(model_dir, config, device, dtype)
    if int8 is not None:
        encoder.quantize_int8(reduce_range=int8.reduce_range)
    return cls(
        encoder,
        TextTokenizer.from_dir(model_dir, lowercase=pipeline.do_lower_case),
        model_name=model_name,
        max_tokens=min(config.max_tokens, pipeline.max_seq_length or config.max_tokens),
        tasks={task: TaskSpec() for task in JINA_V2_TASKS},
        has_adapters=False,
        post_pooling=post_pooling,
        max_batch_tokens=max_batch_tokens,
        truncatable=False,
        task_note=(
            "jina-embeddings-v2 has no task adapters and no prompts: it embeds queries and "
            f"passages alike, so only {' and '.join(JINA_V2_TASKS)} (which change nothing) "
            "or None are accepted"
        ),
    )


def _prompt_for(task: str, prompts: dict[str, str]) -> str:
    for name in (task, *_PROMPT_ALIASES.get(task, ())):
        if name in prompts:
            return prompts[name]
    return ""
