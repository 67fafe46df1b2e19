"""Test helpers: random checkpoints in the released reranker formats.

`write_tiny_reranker_v2_checkpoint` writes jina-reranker-v2-base-multilingual's layout
(XLM-RoBERTa flash layout, absolute positions, classifier head, XLM-RoBERTa
``tokenizer.json``); `write_tiny_reranker_v3_checkpoint` writes jina-reranker-v3's (Qwen3
``model.*`` tensors without ``lm_head``, the projector, a byte-level BPE ``tokenizer.json``
with the chat and marker tokens). Seeded random weights; overrides give any size, up to the
full architectures (`RERANKER_V2_FULL_SIZE`, `RERANKER_V3_FULL_SIZE`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .testing import (
    _TOKENIZER_CORPUS,
    _build_tokenizer,
    _layer_norm_specs,
    _normal,
    _Spec,
    _special_tokens_map,
    _tokenizer_config,
    _write_json,
    _write_safetensors,
)

# Both released configs point their auto classes at remote code; copied so that tests
# prove loading never follows it.
V2_AUTO_MAP = {
    "AutoConfig": "jinaai/jina-reranker-v2-base-multilingual--configuration_xlm_roberta."
    "XLMRobertaFlashConfig",
    "AutoModelForSequenceClassification": "jinaai/jina-reranker-v2-base-multilingual--"
    "modeling_xlm_roberta.XLMRobertaForSequenceClassification",
}
V3_AUTO_MAP = {"AutoModel": "jinaai/jina-reranker-v3--modeling.JinaForRanking"}

V2_TINY: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
}
RERANKER_V2_FULL_SIZE: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "vocab_size": 250002,
}
V3_TINY: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "intermediate_size": 64,
}
RERANKER_V3_FULL_SIZE: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 28,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 128,
    "intermediate_size": 3072,
    "vocab_size": 151936,
}
#: The released projector's output width.
V3_PROJECTOR_WIDTH = 512

# Qwen's chat and marker tokens, in the released order (the markers' released ids are
# 151670 and 151671; a tiny vocabulary gives them smaller ids, read from tokenizer.json).
V3_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|embed_token|>",
    "<|rerank_token|>",
)
V3_ADDED_TOKENS = ("<think>", "</think>")  # added, not special, as in Qwen3
# Qwen2/3's pre-tokenizer split pattern.
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def write_tiny_reranker_v2_checkpoint(
    path: str | Path,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    **config_overrides: Any,
) -> Path:
    """Write a random checkpoint in the released jina-reranker-v2 format into ``path``."""
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    config: dict[str, Any] = {
        "_name_or_path": "jinaai/jina-reranker-v2-base-multilingual",
        "architectures": ["XLMRobertaForSequenceClassification"],
        "attention_probs_dropout_prob": 0.1,
        "auto_map": dict(V2_AUTO_MAP),
        "bos_token_id": 0,
        "classifier_dropout": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "id2label": {"0": "LABEL_0"},
        "initializer_range": 0.02,
        "label2id": {"LABEL_0": 0},
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 1026,
        "model_type": "xlm-roberta",
        "num_labels": 1,
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "absolute",
        "torch_dtype": "bfloat16",
        "transformers_version": "4.40.2",
        "type_vocab_size": 1,
        "use_cache": False,
        "use_flash_attn": True,
        "vocab_size": tokenizer.get_vocab_size(),
        **V2_TINY,
    }
    _override(config, config_overrides, "jina-reranker-v2")
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    specs: list[_Spec] = [
        ("roberta.embeddings.word_embeddings.weight", (config["vocab_size"], hidden), _normal(1)),
        (
            "roberta.embeddings.position_embeddings.weight",
            (config["max_position_embeddings"], hidden),
            _normal(0.3),
        ),
        ("roberta.embeddings.token_type_embeddings.weight", (1, hidden), _normal(0.1)),
        *_layer_norm_specs("roberta.emb_ln", hidden),
    ]
    for i in range(config["num_hidden_layers"]):
        layer = f"roberta.encoder.layers.{i}"
        specs += [
            *_linear(f"{layer}.mixer.Wqkv", 3 * hidden, hidden),
            *_linear(f"{layer}.mixer.out_proj", hidden, hidden),
            *_layer_norm_specs(f"{layer}.norm1", hidden),
            *_linear(f"{layer}.mlp.fc1", inner, hidden),
            *_linear(f"{layer}.mlp.fc2", hidden, inner),
            *_layer_norm_specs(f"{layer}.norm2", hidden),
        ]
    # Logits of a unit or two: sigmoids spread over (0, 1) instead of saturating.
    specs += [
        ("classifier.dense.weight", (hidden, hidden), _normal(2 * hidden**-0.5)),
        ("classifier.dense.bias", (hidden,), _normal(0.1)),
        ("classifier.out_proj.weight", (1, hidden), _normal(0.5)),
        ("classifier.out_proj.bias", (1,), _normal(0.1)),
    ]
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer_config = _tokenizer_config(tokenizer)
    tokenizer_config["model_max_length"] = 1024
    _write_json(directory / "tokenizer_config.json", tokenizer_config)
    _write_json(directory / "special_tokens_map.json", _special_tokens_map())
    _write_json(directory / "config.json", config)
    _write_safetensors(directory / "model.safetensors", specs, seed, dtype)
    return directory


def write_tiny_reranker_v3_checkpoint(
    path: str | Path,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    model_max_length: int = 131072,
    **config_overrides: Any,
) -> Path:
    """Write a random checkpoint in the released jina-reranker-v3 format into ``path``.

    ``model_max_length`` is the tokenizer config's (the released 131072 by default); a
    smaller one makes the block capacity rule close blocks early with few tokens.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_v3_tokenizer()
    config: dict[str, Any] = {
        "architectures": ["JinaForRanking"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "auto_map": dict(V3_AUTO_MAP),
        "bos_token_id": tokenizer.token_to_id("<|endoftext|>"),
        "eos_token_id": tokenizer.token_to_id("<|im_end|>"),
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "max_position_embeddings": 131072,
        "max_window_layers": 28,
        "model_type": "qwen3",
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.3",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": tokenizer.get_vocab_size(),
        **V3_TINY,
    }
    _override(config, config_overrides, "jina-reranker-v3")
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads, head_dim = (
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config["head_dim"],
    )
    specs: list[_Spec] = [("model.embed_tokens.weight", (config["vocab_size"], hidden), _normal(1))]
    for i in range(config["num_hidden_layers"]):
        layer = f"model.layers.{i}"
        specs += [
            (f"{layer}.input_layernorm.weight", (hidden,), _normal(0.1, mean=1.0)),
            (f"{layer}.mlp.down_proj.weight", (hidden, inner), _normal(inner**-0.5)),
            (f"{layer}.mlp.gate_proj.weight", (inner, hidden), _normal(hidden**-0.5)),
            (f"{layer}.mlp.up_proj.weight", (inner, hidden), _normal(hidden**-0.5)),
            (f"{layer}.post_attention_layernorm.weight", (hidden,), _normal(0.1, mean=1.0)),
            (f"{layer}.self_attn.k_norm.weight", (head_dim,), _normal(0.1, mean=1.0)),
            (f"{layer}.self_attn.k_proj.weight", (kv_heads * head_dim, hidden), _normal(0.5)),
            (
                f"{layer}.self_attn.o_proj.weight",
                (hidden, heads * head_dim),
                _normal((heads * head_dim) ** -0.5),
            ),
            (f"{layer}.self_attn.q_norm.weight", (head_dim,), _normal(0.1, mean=1.0)),
            (f"{layer}.self_attn.q_proj.weight", (heads * head_dim, hidden), _normal(0.5)),
            (f"{layer}.self_attn.v_proj.weight", (kv_heads * head_dim, hidden), _normal(0.5)),
        ]
    specs += [
        ("model.norm.weight", (hidden,), _normal(0.1, mean=1.0)),
        ("projector.0.weight", (hidden // 2, hidden), _normal(hidden**-0.5)),
        ("projector.2.weight", (V3_PROJECTOR_WIDTH, hidden // 2), _normal((hidden // 2) ** -0.5)),
    ]
    tokenizer.save(str(directory / "tokenizer.json"))
    _write_json(
        directory / "tokenizer_config.json", _v3_tokenizer_config(tokenizer, model_max_length)
    )
    _write_json(directory / "config.json", config)
    _write_safetensors(directory / "model.safetensors", specs, seed, dtype)
    return directory


def _override(config: dict[str, Any], overrides: dict[str, Any], what: str) -> None:
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise TypeError(f"unknown {what} config field(s): {unknown}")
    config.update(overrides)


def _linear(module: str, out_features: int, in_features: int) -> list[_Spec]:
    return [
        (f"{module}.weight", (out_features, in_features), _normal(in_features**-0.5)),
        (f"{module}.bias", (out_features,), _normal(0.02)),
    ]


def build_v3_tokenizer() -> Any:
    """Qwen-style byte-level BPE: NFC, the Qwen split pattern, byte-level bytes, no
    specials added around a text; the chat and marker tokens as added tokens."""
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = BpeTrainer(
        vocab_size=700,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TOKENIZER_CORPUS, trainer=trainer)
    tokenizer.add_special_tokens(list(V3_SPECIAL_TOKENS))
    tokenizer.add_tokens(list(V3_ADDED_TOKENS))
    return tokenizer


def _v3_tokenizer_config(tokenizer: Any, model_max_length: int) -> dict[str, Any]:
    added = {}
    for token in (*V3_SPECIAL_TOKENS, *V3_ADDED_TOKENS):
        added[str(tokenizer.token_to_id(token))] = {
            "content": token,
            "lstrip": False,
            "normalized": token in V3_ADDED_TOKENS,
            "rstrip": False,
            "single_word": False,
            "special": token in V3_SPECIAL_TOKENS,
        }
    return {
        "added_tokens_decoder": added,
        "bos_token": None,
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|im_end|>",
        "errors": "replace",
        "model_max_length": model_max_length,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer",
        "unk_token": None,
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
