"""The generated checkpoint has the released jina-embeddings-v3 format, and loading is safe.

Expected names and shapes are written here from the released checkpoint's published
``config.json`` fields and ``model.safetensors`` tensor names (base weight plus per-task
``lora_A``/``lora_B`` under ``parametrizations.weight``), not taken from embedder_core.testing.
"""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from tokenizers import Tokenizer

from embedder_core import (
    Embedder,
    ModelNotFoundError,
    UnsafeCheckpointError,
    UnsupportedModelError,
)
from embedder_core.testing import write_tiny_jina_checkpoint

RELEASED_TASKS = [
    "retrieval.query",
    "retrieval.passage",
    "separation",
    "classification",
    "text-matching",
]
RELEASED_FILES = {
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
}


def expected_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of the released checkpoint, from the facts file."""
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    tasks, rank = len(config["lora_adaptations"]), config["lora_rank"]
    shapes: dict[str, tuple[int, ...]] = {}

    def embedding(module: str, num: int) -> None:
        shapes[f"{module}.parametrizations.weight.original"] = (num, hidden)
        shapes[f"{module}.parametrizations.weight.0.lora_A"] = (tasks, num, rank)
        shapes[f"{module}.parametrizations.weight.0.lora_B"] = (tasks, rank, hidden)

    def linear(module: str, out_features: int, in_features: int) -> None:
        shapes[f"{module}.parametrizations.weight.original"] = (out_features, in_features)
        shapes[f"{module}.parametrizations.weight.0.lora_A"] = (tasks, rank, in_features)
        shapes[f"{module}.parametrizations.weight.0.lora_B"] = (tasks, out_features, rank)
        shapes[f"{module}.bias"] = (out_features,)

    def layer_norm(module: str) -> None:
        shapes[f"{module}.weight"] = (hidden,)
        shapes[f"{module}.bias"] = (hidden,)

    embedding("roberta.embeddings.word_embeddings", config["vocab_size"])
    embedding("roberta.embeddings.token_type_embeddings", config["type_vocab_size"])
    layer_norm("roberta.emb_ln")
    for i in range(config["num_hidden_layers"]):
        layer = f"roberta.encoder.layers.{i}"
        linear(f"{layer}.mixer.Wqkv", 3 * hidden, hidden)
        linear(f"{layer}.mixer.out_proj", hidden, hidden)
        layer_norm(f"{layer}.norm1")
        linear(f"{layer}.mlp.fc1", inner, hidden)
        linear(f"{layer}.mlp.fc2", hidden, inner)
        layer_norm(f"{layer}.norm2")
    linear("roberta.pooler.dense", hidden, hidden)
    return shapes


def read_config(directory: Path) -> dict:
    return json.loads((directory / "config.json").read_text())


def header_shapes(directory: Path) -> dict[str, tuple[int, ...]]:
    with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
        return {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}  # noqa: SIM118


def test_files_and_released_config_fields(tiny_jina_dir: Path):
    assert {p.name for p in tiny_jina_dir.iterdir()} == RELEASED_FILES
    config = read_config(tiny_jina_dir)
    released_values = {
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-5,
        "pad_token_id": 1,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "type_vocab_size": 1,
        "position_embedding_type": "rotary",
        "rotary_emb_base": 20000.0,
        "lora_adaptations": RELEASED_TASKS,
        "lora_rank": 4,
        "lora_alpha": 1,
        "truncate_dim": None,
        "emb_pooler": None,
        "model_type": "xlm-roberta",
        "architectures": ["XLMRobertaModel"],
        "torch_dtype": "bfloat16",
        "task_instructions": {
            "retrieval.query": "Represent the query for retrieving evidence documents: ",
            "retrieval.passage": "Represent the document for retrieval: ",
            "separation": "",
            "classification": "",
            "text-matching": "",
        },
    }
    for field, value in released_values.items():
        assert config[field] == value, field
    tiny = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 130,
    }
    assert {field: config[field] for field in tiny} == tiny
    assert set(config["auto_map"]) >= {"AutoConfig", "AutoModel"}
    dims = config["matryoshka_dimensions"]
    assert dims == sorted(dims) and dims[-1] == config["hidden_size"] and len(dims) >= 3
    tokenizer = Tokenizer.from_file(str(tiny_jina_dir / "tokenizer.json"))
    assert config["vocab_size"] >= tokenizer.get_vocab_size()


def test_tensor_names_shapes_and_values(tiny_jina_dir: Path):
    config = read_config(tiny_jina_dir)
    tensors = load_file(tiny_jina_dir / "model.safetensors")
    assert {name: tuple(t.shape) for name, t in tensors.items()} == expected_shapes(config)
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    for name, tensor in tensors.items():
        values = tensor.float()
        assert torch.isfinite(values).all(), name
        if ".lora_" in name:
            # Non-zero for every task, and large enough that every task moves the output.
            assert values.flatten(1).abs().amax(dim=1).min() > 0.1, name
            if values.numel() >= 100:
                assert 0.2 < values.std() < 0.6, name
        elif name.endswith(("emb_ln.weight", "norm1.weight", "norm2.weight")):
            assert 0.5 < values.mean() < 1.5 and values.min() > 0, name


def test_tokenizer_is_xlm_roberta_style(tiny_jina_dir: Path):
    tokenizer = Tokenizer.from_file(str(tiny_jina_dir / "tokenizer.json"))
    specials = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    assert {token: tokenizer.token_to_id(token) for token in specials} == specials
    assert tokenizer.token_to_id("<mask>") == tokenizer.get_vocab_size() - 1
    spec = json.loads((tiny_jina_dir / "tokenizer.json").read_text())
    assert spec["pre_tokenizer"]["type"] == "Metaspace"
    assert spec["model"]["type"] in {"Unigram", "BPE"}

    for text in ["The quick brown fox.", "人人生而自由，在尊严和权利上一律平等。"]:
        encoding = tokenizer.encode(text)
        assert encoding.ids[0] == 0 and encoding.ids[-1] == 2
        content = encoding.ids[1:-1]
        # Non-trivial subwords: more than one token, fewer than characters, few unknowns.
        assert 1 < len(content) < len(text)
        assert content.count(3) <= len(content) // 4
        for token_id, (start, end) in zip(encoding.ids[1:-1], encoding.offsets[1:-1]):
            assert 0 <= start < end <= len(text), token_id

    tokenizer_config = json.loads((tiny_jina_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == 8194
    assert tokenizer_config["tokenizer_class"] == "XLMRobertaTokenizer"
    special_map = json.loads((tiny_jina_dir / "special_tokens_map.json").read_text())
    contents = {key: value["content"] for key, value in special_map.items()}
    assert contents == {
        "bos_token": "<s>",
        "cls_token": "<s>",
        "eos_token": "</s>",
        "mask_token": "<mask>",
        "pad_token": "<pad>",
        "sep_token": "</s>",
        "unk_token": "<unk>",
    }


def test_generation_is_deterministic_per_seed(tmp_path: Path):
    first = write_tiny_jina_checkpoint(tmp_path / "a", seed=7)
    second = write_tiny_jina_checkpoint(tmp_path / "b", seed=7)
    other_seed = write_tiny_jina_checkpoint(tmp_path / "c", seed=8)
    for name in RELEASED_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert (first / "model.safetensors").read_bytes() != (
        other_seed / "model.safetensors"
    ).read_bytes()
    assert (first / "tokenizer.json").read_bytes() == (other_seed / "tokenizer.json").read_bytes()


def test_config_overrides_change_the_architecture(tmp_path: Path):
    overrides = {
        "hidden_size": 48,
        "num_hidden_layers": 3,
        "num_attention_heads": 6,
        "intermediate_size": 80,
        "vocab_size": 1500,
        "max_position_embeddings": 66,
        "lora_rank": 2,
    }
    directory = write_tiny_jina_checkpoint(tmp_path / "m", dtype=torch.float32, **overrides)
    config = read_config(directory)
    assert {field: config[field] for field in overrides} == overrides
    assert header_shapes(directory) == expected_shapes(config)
    with safe_open(str(directory / "model.safetensors"), framework="pt") as f:
        assert f.get_tensor("roberta.emb_ln.weight").dtype == torch.float32

    embedder = Embedder.from_pretrained(str(directory), device="cpu")
    assert embedder.dimension == 48
    assert embedder.max_tokens == 64
    assert embedder.encode(["hello"], task="separation").shape == (1, 48)


def test_unknown_override_is_refused(tmp_path: Path):
    with pytest.raises(TypeError, match="hiden_size"):
        write_tiny_jina_checkpoint(tmp_path, hiden_size=64)


@pytest.mark.slow
def test_full_size_architecture(tmp_path: Path):
    full = {
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "vocab_size": 250002,
        "max_position_embeddings": 8194,
    }
    directory = write_tiny_jina_checkpoint(tmp_path, **full)
    config = read_config(directory)
    assert config["matryoshka_dimensions"] == [32, 64, 128, 256, 512, 768, 1024]
    shapes = header_shapes(directory)
    assert shapes == expected_shapes(config)
    assert len(shapes) == 492
    params = sum(int(np.prod(shape)) for shape in shapes.values())
    assert 550e6 < params < 600e6  # ~570M, like the released model
    (directory / "model.safetensors").unlink()  # 1.1 GB: do not leave it to tmp retention


# --- safe loading -------------------------------------------------------------------

MARKER_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("checkpoint code was executed")
"""


def test_loading_never_executes_checkpoint_code(tiny_jina_dir: Path, tmp_path: Path):
    """auto_map points at local modules that leave a marker when imported: no marker."""
    directory = tmp_path / "model"
    shutil.copytree(tiny_jina_dir, directory)
    marker = tmp_path / "executed.txt"
    for module in ("configuration_evil", "modeling_evil"):
        (directory / f"{module}.py").write_text(MARKER_MODULE.format(marker=str(marker)))
    config = read_config(directory)
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModel": "modeling_evil.EvilModel",
        "AutoTokenizer": ["modeling_evil.EvilTokenizer", None],
    }
    (directory / "config.json").write_text(json.dumps(config))

    # The config names an architecture (the checkpoint's own code) other than the native
    # jina-embeddings-v3: refused, and nothing of it was run.
    with pytest.raises(UnsupportedModelError, match="auto_map AutoConfig names remote code"):
        Embedder.from_pretrained(str(directory), device="cpu")
    assert not marker.exists()


def test_released_auto_map_to_missing_remote_code_still_loads(tiny_jina_embedder: Embedder):
    # The fixture keeps the released auto_map (a Hub repo of code, unreachable offline).
    assert tiny_jina_embedder.encode("hello").shape == (1, 32)


class _PickleBomb:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_only_checkpoint_is_refused(tiny_jina_dir: Path, tmp_path: Path):
    directory = tmp_path / "pickled"
    shutil.copytree(tiny_jina_dir, directory)
    (directory / "model.safetensors").unlink()
    marker = tmp_path / "unpickled.txt"
    with (directory / "pytorch_model.bin").open("wb") as f:
        pickle.dump({"roberta.emb_ln.weight": _PickleBomb(marker)}, f)

    with pytest.raises(UnsafeCheckpointError, match=r"pytorch_model\.bin"):
        Embedder.from_pretrained(str(directory), device="cpu")
    assert not marker.exists()


def test_missing_local_directory(tmp_path: Path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelNotFoundError) as caught:
        Embedder.from_pretrained(str(missing), device="cpu")
    message = str(caught.value)
    assert "no-such-model" in message
    assert "download" in message and "directory" in message


def test_hub_id_not_in_cache():
    model = "jina-connectors-tests/not-a-real-model"
    with pytest.raises(ModelNotFoundError) as caught:
        Embedder.from_pretrained(model, device="cpu", local_files_only=True)
    message = str(caught.value)
    assert f"download {model}" in message
    assert "directory" in message
    assert isinstance(caught.value, FileNotFoundError)


def test_directory_without_weights(tiny_jina_dir: Path, tmp_path: Path):
    directory = tmp_path / "empty"
    shutil.copytree(tiny_jina_dir, directory)
    (directory / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match=r"model\.safetensors"):
        Embedder.from_pretrained(str(directory), device="cpu")


@pytest.mark.parametrize("width", [32, 1024])
def test_adapters_move_a_layer_by_the_same_fraction_at_any_width(tmp_path: Path, width: int):
    """A wide generated checkpoint must be as well conditioned as the tiny one: with the
    adapters' spread fixed, a 1024-wide adapter outweighed its base weight twice over and
    bf16 disagreed with float32 (cosine 0.44) on an H200 whatever the code did."""
    directory = write_tiny_jina_checkpoint(
        tmp_path / "m",
        dtype=torch.float32,
        hidden_size=width,
        num_attention_heads=4,
        intermediate_size=2 * width,
        num_hidden_layers=1,
    )
    tensors = load_file(str(directory / "model.safetensors"))
    config = json.loads((directory / "config.json").read_text())
    scaling = config["lora_alpha"] / config["lora_rank"]
    prefix = "roberta.encoder.layers.0.mixer.Wqkv.parametrizations.weight"
    weight = tensors[f"{prefix}.original"]
    lora_a, lora_b = tensors[f"{prefix}.0.lora_A"], tensors[f"{prefix}.0.lora_B"]
    x = torch.randn(256, width, generator=torch.Generator().manual_seed(0))
    base = (x @ weight.T).norm()
    for task in range(lora_a.shape[0]):
        delta = (x @ lora_a[task].T @ lora_b[task].T * scaling).norm()
        assert delta / base < 0.6, (width, task, float(delta / base))
