"""sentence-transformers pipelines (modules.json) run exactly as sentence-transformers runs them.

Each case saves a small random BERT through sentence-transformers' own modules
(`SentenceTransformer(modules=[...]).save(...)`) and compares `Embedder.encode` with
`SentenceTransformer.encode` on the saved directory.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from embedder_core import Embedder, UnsafeCheckpointError, UnsupportedModelError

st = pytest.importorskip("sentence_transformers")
# sentence-transformers moved its module classes between releases; the old import path
# still works (with a deprecation warning) in every release we support.
st_modules = pytest.importorskip("sentence_transformers.models")

COSINE_MATCH = 0.9999
HIDDEN = 32
MAX_SEQ_LENGTH = 48
PROMPTS = {"query": "query: Represent this sentence for searching relevant passages: "}

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models turn sentences into vectors.",
    "Hi",
    "人人生而自由，在尊严和权利上一律平等。",
    "All human beings are born free and equal in dignity and rights. " * 2,
    # Past the 48-token limit: truncation must match.
    "The President spoke to Congress about the economy, taxes, schools and jobs. " * 6,
]


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer BERT with the (cased) tiny XLM-R style tokenizer, as a transformers dir."""
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel

    from embedder_core.testing import write_tiny_jina_checkpoint

    root = tmp_path_factory.mktemp("st-base")
    source = write_tiny_jina_checkpoint(root / "source")
    base = root / "bert"
    base.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(source / name, base / name)
    # Read tokenizer.json as it is (transformers' XLMRobertaTokenizer class rebuilds its own
    # normalizer), so that both sides tokenize with the same file.
    _rewrite_json(
        base / "tokenizer_config.json",
        lambda config: {**config, "tokenizer_class": "PreTrainedTokenizerFast"},
    )
    vocab = Tokenizer.from_file(str(base / "tokenizer.json")).get_vocab_size()
    config = BertConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=1,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(base))
    return base


# Dense's residual connection came with sentence-transformers 6; older releases test without.
RESIDUAL = (
    {"use_residual": True}
    if "use_residual" in inspect.signature(st_modules.Dense).parameters
    else {}
)


def _dense(out_features: int, activation: torch.nn.Module, **kwargs: Any) -> Any:
    return st_modules.Dense(HIDDEN, out_features, activation_function=activation, **kwargs)


def _dense_after(in_features: int, out_features: int, activation: torch.nn.Module) -> Any:
    return st_modules.Dense(in_features, out_features, activation_function=activation)


# name -> (pooling mode, include_prompt, do_lower_case, post-pooling modules factory)
# (Current releases save do_lower_case into tokenizer.json; the older sentence_bert_config.json
# flag is tested on its own below.)
CASES: dict[str, tuple[str, bool, bool, Callable[[], list[Any]]]] = {
    "cls": ("cls", True, False, lambda: []),
    "mean": ("mean", True, False, lambda: []),
    "max": ("max", True, False, lambda: []),
    "lasttoken": ("lasttoken", True, False, lambda: []),
    "mean+dense_tanh": ("mean", True, False, lambda: [_dense(16, torch.nn.Tanh())]),
    "mean+normalize": ("mean", True, False, lambda: [st_modules.Normalize()]),
    "cls+dense_identity+normalize": (
        "cls",
        True,
        False,
        lambda: [_dense(24, torch.nn.Identity()), st_modules.Normalize()],
    ),
    "max+dense_residual+dense_gelu": (
        "max",
        True,
        False,
        lambda: [
            _dense(HIDDEN, torch.nn.Tanh(), **RESIDUAL),
            _dense_after(HIDDEN, 8, torch.nn.GELU()),
        ],
    ),
    "lasttoken+normalize": ("lasttoken", True, False, lambda: [st_modules.Normalize()]),
    "mean_without_prompt": ("mean", False, False, lambda: []),
    "cls_without_prompt": ("cls", False, False, lambda: []),
}


def save_st_model(bert_dir: Path, target: Path, case: str) -> Path:
    mode, include_prompt, lowercase, post = CASES[case]
    torch.manual_seed(1)
    modules = [
        st_modules.Transformer(
            str(bert_dir), max_seq_length=MAX_SEQ_LENGTH, do_lower_case=lowercase
        ),
        st_modules.Pooling(HIDDEN, pooling_mode=mode, include_prompt=include_prompt),
        *post(),
    ]
    model = st.SentenceTransformer(modules=modules, prompts=dict(PROMPTS), device="cpu")
    model.save(str(target))
    return target


@pytest.fixture(scope="module")
def st_models(bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("st-models")
    return {case: save_st_model(bert_dir, root / case.replace("+", "_"), case) for case in CASES}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(axis=1) / np.linalg.norm(a64, axis=1) / np.linalg.norm(b64, axis=1)


def assert_same_vectors(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert ours.shape == theirs.shape
    np.testing.assert_array_less(COSINE_MATCH, cosines(ours, theirs))
    # Unnormalized outputs: the scale must match too, not only the direction.
    np.testing.assert_allclose(
        np.linalg.norm(ours, axis=1), np.linalg.norm(theirs, axis=1), rtol=1e-3
    )


def reference(model_dir: Path, texts: list[str], prompt_name: str | None = None) -> np.ndarray:
    model = st.SentenceTransformer(str(model_dir), device="cpu")
    return model.encode(
        texts, prompt_name=prompt_name, convert_to_numpy=True, normalize_embeddings=False
    )


@pytest.mark.parametrize("case", list(CASES))
def test_encode_matches_sentence_transformers(st_models: dict[str, Path], case: str):
    embedder = Embedder.from_pretrained(st_models[case], device="cpu")
    mode = CASES[case][0]
    assert embedder.pooling == mode
    assert embedder.reduction == ("max" if mode == "max" else "mean")
    theirs = reference(st_models[case], TEXTS)
    assert embedder.dimension == theirs.shape[1]
    assert embedder.count_tokens(TEXTS)[-1] > MAX_SEQ_LENGTH  # the last text is truncated
    assert_same_vectors(embedder.encode(TEXTS, normalized=False), theirs)
    # With the prompt of a task (excluded from pooling where include_prompt is False).
    with_prompt = reference(st_models[case], TEXTS[:3], prompt_name="query")
    assert_same_vectors(embedder.encode(TEXTS[:3], task="query", normalized=False), with_prompt)


def test_normalize_module_makes_unit_vectors_even_unnormalized(st_models: dict[str, Path]):
    embedder = Embedder.from_pretrained(st_models["mean+normalize"], device="cpu")
    raw = embedder.encode(TEXTS, normalized=False)
    np.testing.assert_allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-5)
    # dimensions truncates the model's output, then normalizes it again.
    short = embedder.encode(TEXTS, dimensions=8)
    expected = raw[:, :8] / np.linalg.norm(raw[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(short, expected, atol=1e-6)


def test_dense_sets_the_dimension(st_models: dict[str, Path]):
    embedder = Embedder.from_pretrained(st_models["mean+dense_tanh"], device="cpu")
    assert embedder.dimension == 16
    assert embedder.encode(TEXTS[:2], dimensions=16).shape == (2, 16)
    with pytest.raises(ValueError, match="between 1 and 16"):
        embedder.encode(TEXTS[:2], dimensions=32)


def test_minilm_unnormalized_output_follows_its_normalize_module(minilm_dir: Path):
    """all-MiniLM-L6-v2's modules.json ends with Normalize: sentence-transformers returns unit
    vectors even with normalize_embeddings=False, and so must we."""
    embedder = Embedder.from_pretrained(minilm_dir, device="cpu")
    ours = embedder.encode(TEXTS, normalized=False)
    theirs = reference(minilm_dir, TEXTS)
    assert_same_vectors(ours, theirs)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


# --- older layouts ----------------------------------------------------------------------


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _rewrite_json(path: Path, change: Callable[[Any], Any]) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text())), indent=2))


def test_legacy_module_names_pooling_keys_and_transformer_folder(
    st_models: dict[str, Path], tmp_path: Path
):
    """Exports of older sentence-transformers releases: `sentence_transformers.models.X` type
    names, one `pooling_mode_*` bool per mode, and the Transformer in `0_Transformer/`."""
    source = st_models["max+dense_residual+dense_gelu"]
    legacy = _copy(source, tmp_path / "legacy")
    transformer = legacy / "0_Transformer"
    transformer.mkdir()
    for file in list(legacy.iterdir()):
        if file.is_file() and file.name not in (
            "modules.json",
            "config_sentence_transformers.json",
        ):
            file.rename(transformer / file.name)

    def old_modules(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for module in modules:
            module["type"] = "sentence_transformers.models." + module["type"].rsplit(".", 1)[1]
        modules[0]["path"] = "0_Transformer"
        return modules

    _rewrite_json(legacy / "modules.json", old_modules)
    pooling = legacy / "1_Pooling" / "config.json"
    pooling.write_text(
        json.dumps(
            {
                "word_embedding_dimension": HIDDEN,
                "pooling_mode_cls_token": False,
                "pooling_mode_mean_tokens": False,
                "pooling_mode_max_tokens": True,
                "pooling_mode_mean_sqrt_len_tokens": False,
            }
        )
    )
    ours = Embedder.from_pretrained(legacy, device="cpu")
    assert ours.pooling == "max"
    assert_same_vectors(ours.encode(TEXTS, normalized=False), reference(source, TEXTS))


def test_do_lower_case_of_an_older_export(st_models: dict[str, Path], tmp_path: Path):
    """Older exports say do_lower_case in sentence_bert_config.json; the tokenizer itself
    is cased, so sentence-transformers lowercases the input, and so must we."""
    model_dir = _copy(st_models["mean"], tmp_path / "lower")
    (model_dir / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": True})
    )
    texts = ["The Quick BROWN Fox.", "Machine Learning", "HELLO world", *TEXTS]
    embedder = Embedder.from_pretrained(model_dir, device="cpu")
    theirs = reference(model_dir, texts)
    assert_same_vectors(embedder.encode(texts, normalized=False), theirs)
    cased = Embedder.from_pretrained(st_models["mean"], device="cpu")
    assert cosines(cased.encode(texts[:3]), embedder.encode(texts[:3])).min() < 0.999
    # Offsets still point into the original text: late chunking keeps the case of chunks.
    (chunk,) = embedder.embed_document("The Quick BROWN Fox.")
    assert chunk.text == "The Quick BROWN Fox."


def test_default_prompt_applies_to_task_none(st_models: dict[str, Path], tmp_path: Path):
    """sentence-transformers prepends default_prompt_name's prompt when none is named."""
    model_dir = _copy(st_models["mean_without_prompt"], tmp_path / "default-prompt")
    _rewrite_json(
        model_dir / "config_sentence_transformers.json",
        lambda config: {**config, "default_prompt_name": "query"},
    )
    embedder = Embedder.from_pretrained(model_dir, device="cpu")
    theirs = reference(model_dir, TEXTS[:3])
    assert_same_vectors(embedder.encode(TEXTS[:3], normalized=False), theirs)
    assert_same_vectors(embedder.encode(TEXTS[:3], task="query", normalized=False), theirs)
    _rewrite_json(
        model_dir / "config_sentence_transformers.json",
        lambda config: {**config, "default_prompt_name": "passage"},
    )
    with pytest.raises(UnsupportedModelError, match="default_prompt_name 'passage'"):
        Embedder.from_pretrained(model_dir, device="cpu")


# --- refusals ---------------------------------------------------------------------------


def _pooling_config(**config: Any) -> Callable[[Any], Any]:
    return lambda _: {"embedding_dimension": HIDDEN, **config}


def _module_type(index: int, type_name: str) -> Callable[[Any], Any]:
    def change(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        modules[index]["type"] = type_name
        return modules

    return change


def _extra_module(type_name: str) -> Callable[[Any], Any]:
    def change(modules: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [*modules, {"idx": len(modules), "name": "x", "path": "", "type": type_name}]

    return change


def _dense_key(key: str, value: Any) -> Callable[[Any], Any]:
    return lambda config: {**config, key: value}


REFUSED = {
    "weighted mean": (
        "mean",
        "1_Pooling/config.json",
        _pooling_config(pooling_mode="weightedmean"),
        "weightedmean",
    ),
    "sqrt length": (
        "mean",
        "1_Pooling/config.json",
        _pooling_config(pooling_mode="mean_sqrt_len_tokens"),
        "mean_sqrt_len_tokens",
    ),
    "two modes": (
        "mean",
        "1_Pooling/config.json",
        _pooling_config(pooling_mode=["cls", "mean"]),
        "2 pooling modes",
    ),
    "legacy two modes": (
        "mean",
        "1_Pooling/config.json",
        lambda _: {"pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": True},
        "2 pooling modes",
    ),
    "layer norm module": (
        "mean",
        "modules.json",
        _extra_module("sentence_transformers.models.LayerNorm"),
        "LayerNorm",
    ),
    "custom module": (
        "mean",
        "modules.json",
        _module_type(1, "custom_st.Pooling"),
        "custom_st.Pooling",
    ),
    "no pooling": ("mean", "modules.json", lambda modules: modules[:1], "Transformer -> Pooling"),
    "dense before pooling": (
        "mean+dense_tanh",
        "modules.json",
        lambda modules: [modules[0], modules[2], modules[1]],
        "Transformer -> Dense -> Pooling",
    ),
    "untrusted activation": (
        "mean+dense_tanh",
        "2_Dense/config.json",
        _dense_key("activation_function", "os.system"),
        "os.system",
    ),
    "non-activation torch module": (
        "mean+dense_tanh",
        "2_Dense/config.json",
        _dense_key("activation_function", "torch.nn.modules.linear.Linear"),
        "torch.nn.modules.linear.Linear",
    ),
    "dense on token embeddings": (
        "mean+dense_tanh",
        "2_Dense/config.json",
        _dense_key("module_input_name", "token_embeddings"),
        "token_embeddings",
    ),
    "sparse encoder": (
        "mean",
        "config_sentence_transformers.json",
        lambda config: {**config, "model_type": "SparseEncoder"},
        "SparseEncoder",
    ),
}


@pytest.mark.parametrize("name", list(REFUSED))
def test_unsupported_pipelines_are_refused_with_the_module_named(
    st_models: dict[str, Path], tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
):
    case, file, change, named = REFUSED[name]
    model_dir = _copy(st_models[case], tmp_path / "model")
    _rewrite_json(model_dir / file, change)
    loads: list[str] = []
    from embedder_core.models import hf_encoder

    monkeypatch.setattr(hf_encoder.HFEncoder, "from_dir", lambda *a, **k: loads.append("x"))
    with pytest.raises(UnsupportedModelError, match=re.escape(named)):
        Embedder.from_pretrained(model_dir, device="cpu")
    assert not loads  # refused before any weights are loaded


def test_pickled_dense_weights_are_refused(st_models: dict[str, Path], tmp_path: Path):
    model_dir = _copy(st_models["mean+dense_tanh"], tmp_path / "model")
    weights = model_dir / "2_Dense" / "model.safetensors"
    weights.rename(weights.with_name("pytorch_model.bin"))
    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model\.bin"):
        Embedder.from_pretrained(model_dir, device="cpu")


# --- late chunking per pooling ----------------------------------------------------------


@pytest.mark.parametrize("case", ["cls", "lasttoken"])
def test_late_chunking_is_refused_for_one_token_pooling(st_models: dict[str, Path], case: str):
    embedder = Embedder.from_pretrained(st_models[case], device="cpu")
    assert not embedder.supports_late_chunking
    with pytest.raises(UnsupportedModelError, match=f"{case} pooling"):
        embedder.encode(TEXTS[:2], late_chunking=True)
    with pytest.raises(UnsupportedModelError, match=f"{case} pooling"):
        embedder.embed_documents([TEXTS[4]])
    with pytest.raises(UnsupportedModelError, match=f"{case} pooling"):
        embedder.embed_spans([(TEXTS[0], [(0, 9)])])
    # Chunk-by-chunk embedding still works.
    assert embedder.encode(TEXTS[:2]).shape == (2, HIDDEN)


def test_max_pooling_late_chunking_is_the_max_over_each_chunk(st_models: dict[str, Path]):
    """Late chunking with a max-pooling model: each row is the elementwise max of its
    piece's token states in the one encoded document (specials belong to no piece)."""
    from transformers import AutoModel

    model_dir = st_models["max"]
    embedder = Embedder.from_pretrained(model_dir, device="cpu")
    assert embedder.supports_late_chunking
    pieces = ["The quick brown fox.", "It jumps over the lazy dog!", "Then it sleeps."]
    got = embedder.encode(pieces, late_chunking=True, normalized=False)

    tokenizer = embedder._tokenizer
    ids = tokenizer.encode(pieces)
    sequence = [*tokenizer.prefix_ids, *[t for piece in ids for t in piece], *tokenizer.suffix_ids]
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    with torch.no_grad():
        states = model(input_ids=torch.tensor([sequence])).last_hidden_state[0]
    start = len(tokenizer.prefix_ids)
    expected = []
    for piece in ids:
        expected.append(states[start : start + len(piece)].max(dim=0).values.numpy())
        start += len(piece)
    np.testing.assert_allclose(got, np.stack(expected), atol=1e-5)


def test_hub_download_takes_every_module_folder():
    """What a Hub download fetches: every module's config and safetensors weights, never
    pickles or other runtimes' exports."""
    from huggingface_hub.utils import filter_repo_objects

    from embedder_core.loading import _HUB_PATTERNS

    wanted = [
        "config.json",
        "model.safetensors",
        "model.safetensors.index.json",
        "model-00001-of-00002.safetensors",
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "vocab.txt",
        "sentencepiece.bpe.model",
        "0_Transformer/config.json",
        "0_Transformer/model.safetensors",
        "1_Pooling/config.json",
        "2_Dense/config.json",
        "2_Dense/model.safetensors",
        "3_Normalize/config.json",
    ]
    unwanted = [
        "pytorch_model.bin",
        "2_Dense/pytorch_model.bin",
        "onnx/model.onnx",
        "onnx/model_qint8_avx512.onnx",
        "openvino/openvino_model.bin",
        "openvino/openvino_model.xml",
        "custom_st.py",
        "README.md",
    ]
    assert list(filter_repo_objects(wanted + unwanted, allow_patterns=_HUB_PATTERNS)) == wanted


# --- inspect_model: the same answers from the configuration alone -------------------------


def _described(embedder: Embedder) -> tuple[Any, ...]:
    return (
        embedder.model_name,
        embedder.dimension,
        embedder.max_tokens,
        embedder.tasks,
        embedder.pooling,
        embedder.has_adapters,
        embedder.supports_late_chunking,
    )


def _inspected(model_dir: Path) -> tuple[Any, ...]:
    from embedder_core import inspect_model

    info = inspect_model(model_dir)
    return (
        info.model_name,
        info.dimension,
        info.max_tokens,
        info.tasks,
        info.pooling,
        info.has_adapters,
        info.supports_late_chunking,
    )


@pytest.mark.parametrize("case", list(CASES))
def test_inspect_model_agrees_with_the_loaded_model(st_models: dict[str, Path], case: str):
    """Width after Dense modules, token limit, tasks (prompts included), pooling."""
    loaded = Embedder.from_pretrained(st_models[case], device="cpu")
    assert _inspected(st_models[case]) == _described(loaded)


def test_inspect_model_agrees_on_minilm_and_jina_v3(
    minilm_dir: Path, tiny_jina_dir: Path, tiny_jina_embedder: Embedder
):
    assert _inspected(minilm_dir) == _described(Embedder.from_pretrained(minilm_dir, device="cpu"))
    assert _inspected(tiny_jina_dir) == _described(tiny_jina_embedder)


@pytest.mark.parametrize("name", list(REFUSED))
def test_inspect_model_refuses_what_loading_refuses(
    st_models: dict[str, Path], tmp_path: Path, name: str
):
    from embedder_core import inspect_model

    case, file, change, named = REFUSED[name]
    model_dir = _copy(st_models[case], tmp_path / "model")
    _rewrite_json(model_dir / file, change)
    if name in LOAD_TIME_CHECKS:  # needs torch.nn to tell an activation class
        assert inspect_model(model_dir).dimension == 16
        return
    with pytest.raises(UnsupportedModelError, match=re.escape(named)):
        inspect_model(model_dir)


LOAD_TIME_CHECKS = ("untrusted activation", "non-activation torch module")
