"""No checkpoint is embedded silently wrong: every load accounts for every tensor, and a
config asking for what the architecture does not do is refused, with a typed error
before any vector, on the native jina-v2 and jina-v3 loaders and on transformers.AutoModel.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from embedder_core import Embedder, inspect_model
from embedder_core.errors import UnsupportedModelError
from embedder_core.models.hf_encoder import HFEncoder
from embedder_core.testing import write_tiny_jina_checkpoint, write_tiny_jina_v2_checkpoint

Edit = Callable[[dict[str, Any], dict[str, torch.Tensor]], None]


def edited_copy(source: Path, target: Path, edit: Edit) -> Path:
    """A copy of ``source`` whose config and tensors ``edit`` changed in place."""
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    tensors = load_file(target / "model.safetensors")
    edit(config, tensors)
    (target / "config.json").write_text(json.dumps(config))
    save_file(tensors, target / "model.safetensors")
    return target


def refused(directory: Path, match: str) -> None:
    with pytest.raises(UnsupportedModelError, match=match):
        Embedder.from_pretrained(str(directory), device="cpu")


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain BERT written by transformers itself (safetensors), with a WordPiece tokenizer."""
    from transformers import BertConfig, BertModel

    directory = tmp_path_factory.mktemp("tiny-bert")
    tokenizer_source = write_tiny_jina_v2_checkpoint(tmp_path_factory.mktemp("tokenizer"))
    shutil.copy(tokenizer_source / "tokenizer.json", directory / "tokenizer.json")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=640,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    BertModel(config).save_pretrained(str(directory), safe_serialization=True)
    return directory


# ------------------------------------------------------------------ jina-embeddings-v2


def _drop(name: str) -> Edit:
    def edit(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        del tensors[name]

    return edit


def _add(name: str) -> Edit:
    def edit(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        tensors[name] = torch.zeros(4)

    return edit


def _set(**values: Any) -> Edit:
    def edit(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        for key, value in values.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value

    return edit


V2_CASES: dict[str, tuple[Edit, str]] = {
    "missing-tensor": (
        _drop("encoder.layer.1.mlp.wo.bias"),
        r"1 tensor\(s\) missing: encoder.layer.1.mlp.wo.bias",
    ),
    "extra-tensor": (
        _add("encoder.layer.0.attention.self.rotary.inv_freq"),
        r"unused by the model: encoder.layer.0.attention.self.rotary.inv_freq",
    ),
    "unknown-mlp-type": (_set(feed_forward_type="swiglu"), "feed_forward_type 'swiglu'"),
    "unknown-activation": (_set(hidden_act="silu"), "hidden_act 'silu'"),
    "unknown-auto-map-architecture": (
        _set(auto_map={"AutoModel": "someone/bert-variant--modeling_bert.BertVariant"}),
        "auto_map AutoModel names remote code 'someone/bert-variant'",
    ),
    "base-code-auto-map": (
        _set(
            auto_map={"AutoModel": "jinaai/jina-bert-v2-qk-post-norm--modeling_bert.JinaBertModel"}
        ),
        "qk-post-norm variant",
    ),
    "base-code-tensors": (
        _add("encoder.layer.0.attention.self.layer_norm_q.weight"),
        "qk-post-norm",
    ),
    # Not ALiBi: no longer JinaBERT, so transformers would run it; its remote code is refused.
    "unknown-position-type": (_set(position_embedding_type="rotary"), "auto_map"),
    "unknown-position-type-no-auto-map": (
        _set(position_embedding_type="rotary", auto_map=None),
        "position_embedding_type 'rotary' is not implemented",
    ),
}


@pytest.mark.parametrize("case", list(V2_CASES))
def test_v2_checkpoint_refused(tiny_jina_v2_dir: Path, tmp_path: Path, case: str) -> None:
    edit, match = V2_CASES[case]
    refused(edited_copy(tiny_jina_v2_dir, tmp_path / "m", edit), match)


def test_v2_misshapen_tensor_is_refused(tiny_jina_v2_dir: Path, tmp_path: Path) -> None:
    def halve(config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        name = "encoder.layer.0.mlp.gated_layers.weight"
        tensors[name] = tensors[name][:32].contiguous()  # an ungated MLP's rows

    refused(edited_copy(tiny_jina_v2_dir, tmp_path / "m", halve), "of the wrong shape")


def test_v2_config_refusals_come_before_the_load_and_from_inspect(
    tiny_jina_v2_dir: Path, tmp_path: Path
) -> None:
    directory = edited_copy(tiny_jina_v2_dir, tmp_path / "m", _set(feed_forward_type="swiglu"))
    (directory / "model.safetensors").write_bytes(b"not weights")  # never read
    refused(directory, "feed_forward_type")
    with pytest.raises(UnsupportedModelError, match="feed_forward_type"):
        inspect_model(str(directory))


def test_v2_through_transformers_is_refused(tiny_jina_v2_dir: Path, tmp_path: Path) -> None:
    """What used to happen: AutoModel ran a v2 checkpoint as plain BERT (random positions,
    gated MLP dropped) and gave garbage. Through AutoModel each layer of the check refuses
    it; through the Embedder it now runs natively (tests/core/test_jina_v2.py)."""
    cpu, f32 = torch.device("cpu"), torch.float32
    with pytest.raises(UnsupportedModelError, match="auto_map"):
        HFEncoder.from_dir(tiny_jina_v2_dir, cpu, f32)
    bare = edited_copy(
        tiny_jina_v2_dir,
        tmp_path / "bare",
        _set(auto_map=None, position_embedding_type=None, feed_forward_type=None),
    )
    with pytest.raises(UnsupportedModelError, match="position_embeddings") as error:
        HFEncoder.from_dir(bare, cpu, f32)
    assert "mlp.gated_layers.weight" in str(error.value)  # named as unused


# ------------------------------------------------------------------ jina-embeddings-v3


V3_CASES: dict[str, tuple[Edit, str]] = {
    "missing-tensor": (
        _drop("roberta.encoder.layers.1.mlp.fc2.bias"),
        r"missing: encoder.layers.1.mlp.fc2.bias",
    ),
    "extra-tensor": (
        _add("roberta.encoder.layers.0.mixer.rotary_emb.inv_freq"),
        r"unused by the model: encoder.layers.0.mixer.rotary_emb.inv_freq",
    ),
    "unknown-auto-map-architecture": (
        _set(auto_map={"AutoModel": "someone/xlmr-variant--modeling.Variant"}),
        "auto_map AutoModel names remote code 'someone/xlmr-variant'",
    ),
    "unknown-position-type": (_set(position_embedding_type="alibi"), "auto_map"),
    "unknown-activation": (_set(hidden_act="relu"), "hidden_act 'relu'"),
}


@pytest.fixture(scope="module")
def v3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_jina_checkpoint(tmp_path_factory.mktemp("v3"), dtype=torch.float32)


@pytest.mark.parametrize("case", list(V3_CASES))
def test_v3_checkpoint_refused(v3_dir: Path, tmp_path: Path, case: str) -> None:
    edit, match = V3_CASES[case]
    refused(edited_copy(v3_dir, tmp_path / "m", edit), match)


# ------------------------------------------------------------- transformers.AutoModel


def test_plain_bert_loads_and_equals_transformers(tiny_bert_dir: Path) -> None:
    from transformers import BertModel

    embedder = Embedder.from_pretrained(str(tiny_bert_dir), device="cpu")
    text = "the quick brown fox"
    ids = embedder._tokenizer.encode([text])[0]
    sequence = [*embedder._tokenizer.prefix_ids, *ids, *embedder._tokenizer.suffix_ids]
    model = BertModel.from_pretrained(str(tiny_bert_dir)).eval()
    with torch.no_grad():
        states = model(input_ids=torch.tensor([sequence])).last_hidden_state[0]
    expected = torch.nn.functional.normalize(states.mean(0), dim=0)
    got = torch.from_numpy(embedder.encode(text)[0])
    assert float(got @ expected) >= 0.99999


HF_CASES: dict[str, tuple[Edit, str]] = {
    "missing-tensor": (
        _drop("encoder.layer.0.output.dense.weight"),
        r"missing: encoder.layer.0.output.dense.weight",
    ),
    "extra-tensor": (
        _add("encoder.layer.0.attention.self.extra.weight"),
        r"unused by the model: encoder.layer.0.attention.self.extra.weight",
    ),
    "unknown-position-type": (
        _set(position_embedding_type="relative_key"),
        "position_embedding_type 'relative_key'",
    ),
    "unknown-mlp-type": (_set(feed_forward_type="geglu"), "feed_forward_type 'geglu'"),
    "unknown-auto-map-architecture": (
        _set(auto_map={"AutoModel": "someone/bert-variant--modeling.Variant"}),
        "auto_map AutoModel names remote code 'someone/bert-variant'",
    ),
}


@pytest.mark.parametrize("case", list(HF_CASES))
def test_transformers_checkpoint_refused(tiny_bert_dir: Path, tmp_path: Path, case: str) -> None:
    edit, match = HF_CASES[case]
    directory = edited_copy(tiny_bert_dir, tmp_path / "m", edit)
    refused(directory, match)


@pytest.mark.parametrize(
    "edit",
    [
        _drop("pooler.dense.weight"),  # the pooler: never read by the embedder's pooling
        _add("cls.predictions.bias"),  # a pretraining head: reads the encoder, never feeds it
    ],
    ids=["no-pooler", "mlm-head"],
)
def test_justified_exceptions_load(tiny_bert_dir: Path, tmp_path: Path, edit: Edit) -> None:
    directory = edited_copy(tiny_bert_dir, tmp_path / "m", edit)
    assert Embedder.from_pretrained(str(directory), device="cpu").encode("hello").shape == (1, 32)
