"""jina-embeddings-v2 (JinaBERT) natively: equal to an independent computation of the
published architecture on generated checkpoints in the released layout.

The reference below is written from the paper's description and the released tensor
names alone: plain torch in float64, one sequence at a time, each head's whole (n, n)
ALiBi bias matrix, one layer after the other. It shares no code with ``embedder_core.models``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from embedder_core import Embedder, LateChunkingOptions, canonical_model_id, inspect_model
from embedder_core.errors import UnsupportedModelError
from embedder_core.late_chunking import document_jobs
from embedder_core.models.jina_v2 import alibi_slopes
from embedder_core.models.quantization import int8_support
from embedder_core.testing import write_tiny_jina_v2_checkpoint

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Machine learning models turn sentences into vectors for retrieval and search.",
    "Everyone has the right to life, liberty and security of person.",
    "Embeddings, chunking, documents, passages, queries, questions and answers.",
]
WORDS = " ".join(SENTENCES).split()


def long_text(tokens_at_least: int, embedder: Embedder) -> str:
    """Text of at least that many tokens, with varied words (no periodic input)."""
    rng = np.random.default_rng(tokens_at_least)
    words: list[str] = []
    while True:
        words += list(rng.choice(WORDS, size=256))
        text = " ".join(words)
        if embedder.count_tokens(text)[0] >= tokens_at_least:
            return text


# ----------------------------------------------------------------------- the reference


def reference_slopes(heads: int) -> list[float]:
    """ALiBi slopes as the paper defines them: 2^(-8k/n) for n a power of two; otherwise
    those of the largest power of two below n, then every other slope of twice that."""
    if heads & (heads - 1) == 0:
        return [2.0 ** (-8.0 * (k + 1) / heads) for k in range(heads)]
    below = 1 << (heads.bit_length() - 1)
    double = [2.0 ** (-8.0 * (k + 1) / (2 * below)) for k in range(2 * below)]
    return reference_slopes(below) + double[0::2][: heads - below]


def reference_token_states(model_dir: Path, sequences: list[list[int]]) -> list[torch.Tensor]:
    """Last hidden states of each sequence (float64), each computed on its own."""
    config = json.loads((model_dir / "config.json").read_text())
    weights = {
        k.removeprefix("bert."): v.double()
        for k, v in load_file(model_dir / "model.safetensors").items()
    }
    return [_reference_one(config, weights, sequence) for sequence in sequences]


def _reference_one(
    config: dict, weights: dict[str, torch.Tensor], sequence: list[int]
) -> torch.Tensor:
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    inner, eps = config["intermediate_size"], config["layer_norm_eps"]
    head_dim = hidden // heads
    tanh_gelu = config["hidden_act"] == "gelu_new"

    def act(t: torch.Tensor) -> torch.Tensor:
        if config["feed_forward_type"] == "reglu":
            return torch.relu(t)
        return torch.nn.functional.gelu(t, approximate="tanh" if tanh_gelu else "none")

    n = len(sequence)

    def norm(x: torch.Tensor, name: str) -> torch.Tensor:
        return torch.nn.functional.layer_norm(
            x, (hidden,), weights[f"{name}.weight"], weights[f"{name}.bias"], eps
        )

    def dense(x: torch.Tensor, name: str) -> torch.Tensor:
        y = x @ weights[f"{name}.weight"].T
        return y + weights[f"{name}.bias"] if f"{name}.bias" in weights else y

    x = weights["embeddings.word_embeddings.weight"][torch.tensor(sequence)]
    x = norm(x + weights["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    position = torch.arange(n, dtype=torch.float64)
    slopes = reference_slopes(heads)
    # A head's whole (n, n) bias at once; past 2048 tokens (only the 8192-token window
    # test), 2048 query rows at a time, so that float64 stays within a few hundred MiB.
    rows = 2048
    for i in range(config["num_hidden_layers"]):
        layer = f"encoder.layer.{i}"
        q, k, v = (
            dense(x, f"{layer}.attention.self.{name}").view(n, heads, head_dim).transpose(0, 1)
            for name in ("query", "key", "value")
        )
        context = torch.empty(heads, n, head_dim, dtype=torch.float64)
        for h in range(heads):
            for a in range(0, n, rows):
                bias = -slopes[h] * (position[a : a + rows, None] - position[None, :]).abs()
                scores = q[h, a : a + rows] @ k[h].T / math.sqrt(head_dim) + bias
                context[h, a : a + rows] = scores.softmax(-1) @ v[h]
        context = context.transpose(0, 1).reshape(n, hidden)
        x = norm(
            x + dense(context, f"{layer}.attention.output.dense"),
            f"{layer}.attention.output.LayerNorm",
        )
        both = x @ weights[f"{layer}.mlp.gated_layers.weight"].T
        gated, rest = both[:, :inner], both[:, inner:]
        x = norm(dense(act(gated) * rest, f"{layer}.mlp.wo") + x, f"{layer}.mlp.layernorm")
    return x


def reference_embeddings(model_dir: Path, embedder: Embedder, texts: list[str]) -> np.ndarray:
    """Mean over every token, [CLS] and [SEP] included, then L2-normalized."""
    tokenizer = embedder._tokenizer
    sequences = [
        [*tokenizer.prefix_ids, *ids, *tokenizer.suffix_ids] for ids in tokenizer.encode(texts)
    ]
    rows = [states.mean(0) for states in reference_token_states(model_dir, sequences)]
    stacked = torch.stack(rows)
    return (stacked / stacked.norm(dim=1, keepdim=True)).numpy()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


# ------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def v2_dir(tiny_jina_v2_dir: Path) -> Path:
    return tiny_jina_v2_dir


@pytest.fixture(scope="module")
def v2(v2_dir: Path) -> Embedder:
    return Embedder.from_pretrained(str(v2_dir), device="cpu")


# ---------------------------------------------------------------------------- tests


def test_slopes_follow_the_published_recipe() -> None:
    assert alibi_slopes(6).tolist() == [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    for heads in (1, 2, 3, 4, 5, 6, 8, 12, 16, 20):
        assert alibi_slopes(heads).tolist() == pytest.approx(reference_slopes(heads), rel=1e-6)


def test_short_texts_equal_the_reference(v2: Embedder, v2_dir: Path) -> None:
    got = v2.encode(SENTENCES)
    assert got.shape == (len(SENTENCES), 32)
    assert cosines(got, reference_embeddings(v2_dir, v2, SENTENCES)).min() >= 0.99999


def test_texts_past_512_and_past_2048_tokens_equal_the_reference(
    v2: Embedder, v2_dir: Path
) -> None:
    texts = [long_text(600, v2), long_text(2100, v2), SENTENCES[0]]
    counts = v2.count_tokens(texts)
    assert counts[0] > 512 and counts[1] > 2048
    got = v2.encode(texts)
    assert cosines(got, reference_embeddings(v2_dir, v2, texts)).min() >= 0.99999


@pytest.mark.parametrize(
    ("overrides", "tokenizer"),
    [
        ({"num_attention_heads": 6, "hidden_size": 48}, "wordpiece"),  # not a power of two
        ({"feed_forward_type": "reglu"}, "wordpiece"),
        ({"num_attention_heads": 3, "hidden_size": 24, "hidden_act": "gelu_new"}, "wordpiece"),
        ({}, "bpe"),  # the bilingual models' own cased vocabularies and <s>/</s> specials
        ({"num_hidden_layers": 3}, "wordpiece"),
    ],
    ids=["6-heads", "reglu", "3-heads-tanh-gelu", "bilingual-tokenizer", "3-layers"],
)
def test_variants_equal_the_reference(tmp_path: Path, overrides: dict, tokenizer: str) -> None:
    directory = write_tiny_jina_v2_checkpoint(tmp_path, seed=3, tokenizer=tokenizer, **overrides)
    embedder = Embedder.from_pretrained(str(directory), device="cpu")
    texts = [
        *SENTENCES,
        "人人生而自由，在尊严和权利上一律平等。",
        "Alle Menschen sind frei.",
        long_text(1100, embedder),
    ]
    got = embedder.encode(texts)
    assert cosines(got, reference_embeddings(directory, embedder, texts)).min() >= 0.99999


def test_geglu_gates_the_first_half(tmp_path: Path) -> None:
    """Swapping the two halves of gated_layers changes the vectors: which half goes through
    the activation matters, and the reference (first half gated) is what is matched."""
    directory = write_tiny_jina_v2_checkpoint(tmp_path / "a", seed=5)
    embedder = Embedder.from_pretrained(str(directory), device="cpu")
    expected = reference_embeddings(directory, embedder, SENTENCES)
    weights = load_file(directory / "model.safetensors")
    swapped_dir = write_tiny_jina_v2_checkpoint(tmp_path / "b", seed=5)
    from safetensors.torch import save_file

    for name in list(weights):
        if name.endswith("mlp.gated_layers.weight"):
            first, second = weights[name].chunk(2)
            weights[name] = torch.cat([second, first]).contiguous()
    save_file(weights, swapped_dir / "model.safetensors")
    swapped = Embedder.from_pretrained(str(swapped_dir), device="cpu").encode(SENTENCES)
    assert cosines(embedder.encode(SENTENCES), expected).min() >= 0.99999
    assert cosines(swapped, expected).max() < 0.999


def test_bert_prefix_is_tolerated(tmp_path: Path, v2: Embedder) -> None:
    directory = write_tiny_jina_v2_checkpoint(tmp_path, bert_prefix=True)
    prefixed = Embedder.from_pretrained(str(directory), device="cpu")
    np.testing.assert_allclose(prefixed.encode(SENTENCES), v2.encode(SENTENCES), atol=1e-6)


def test_packed_neighbours_batch_size_and_order_do_not_change_a_vector(
    v2_dir: Path, v2: Embedder
) -> None:
    texts = [*SENTENCES, long_text(700, v2), long_text(90, v2), "short"]
    alone = np.concatenate([v2.encode(t) for t in texts])
    together = v2.encode(texts)
    order = [5, 2, 0, 6, 3, 1, 4]
    shuffled = v2.encode([texts[i] for i in order])
    small = Embedder.from_pretrained(str(v2_dir), device="cpu", max_batch_tokens=64).encode(texts)
    for other in (together, small):
        assert cosines(alone, other).min() >= 0.999999
    assert cosines(alone[order], shuffled).min() >= 0.999999


def test_late_chunking_equals_the_reference_over_each_pieces_tokens(
    v2: Embedder, v2_dir: Path
) -> None:
    pieces = [SENTENCES[0], " " + long_text(300, v2), " " + SENTENCES[2]]
    got = v2.encode(pieces, late_chunking=True)
    tokenizer = v2._tokenizer
    ids = tokenizer.encode(pieces)
    sequence = [
        *tokenizer.prefix_ids,
        *(token for piece in ids for token in piece),
        *tokenizer.suffix_ids,
    ]
    (states,) = reference_token_states(v2_dir, [sequence])
    start, rows = len(tokenizer.prefix_ids), []
    for piece in ids:
        rows.append(states[start : start + len(piece)].mean(0))
        start += len(piece)
    expected = torch.nn.functional.normalize(torch.stack(rows), dim=1).numpy()
    assert cosines(got, expected).min() >= 0.99999


@pytest.mark.parametrize(
    "window",
    [pytest.param(None, marks=pytest.mark.slow), 700],  # 8192-token windows: ~30 s of float64
    ids=["8192-windows", "700-windows"],
)
def test_late_chunking_windows_equal_the_reference(tmp_path: Path, window: int | None) -> None:
    """A document past the window: every window is its own input (the suite's windowing,
    as for jina-v3), each chunk pools its tokens from the window that keeps them. One layer
    and two heads keep the float64 reference over 8192-token windows to seconds."""
    v2_dir = write_tiny_jina_v2_checkpoint(
        tmp_path, seed=7, num_hidden_layers=1, num_attention_heads=2
    )
    v2 = Embedder.from_pretrained(str(v2_dir), device="cpu")
    limit = window or v2.max_tokens
    pieces = [" " + long_text(limit // 3, v2) for _ in range(4)]
    options = LateChunkingOptions(window=window, overlap=128)
    got = v2.encode(pieces, late_chunking=True, late_chunking_options=options)
    tokenizer = v2._tokenizer
    ids = tokenizer.encode(pieces)
    content = [token for piece in ids for token in piece]
    assert len(content) > limit
    spans, start = [], 0
    for piece in ids:
        spans.append((start, start + len(piece)))
        start += len(piece)
    jobs = document_jobs(
        content,
        spans,
        first_row=0,
        head=tokenizer.prefix_ids,
        tail=tokenizer.suffix_ids,
        task=-1,
        max_tokens=limit,
        overlap=128,
    )
    assert len(jobs) > 1 and max(len(job.ids) for job in jobs) == limit
    sums = torch.zeros(len(pieces), v2.dimension, dtype=torch.float64)
    counts = torch.zeros(len(pieces), 1, dtype=torch.float64)
    for job in jobs:  # one window at a time keeps the reference's bias to one window
        (states,) = reference_token_states(v2_dir, [job.ids])
        for row, first, last in job.pools:
            sums[row] += states[first:last].sum(0)
            counts[row] += last - first
    expected = torch.nn.functional.normalize(sums / counts, dim=1).numpy()
    assert cosines(got, expected).min() >= 0.99999


def test_dimensions_full_width_or_omitted_only(v2: Embedder) -> None:
    full = v2.encode(SENTENCES[:2])
    np.testing.assert_array_equal(v2.encode(SENTENCES[:2], dimensions=v2.dimension), full)
    for dimensions in (8, 16, 31):
        with pytest.raises(ValueError, match="no Matryoshka training"):
            v2.encode(SENTENCES[:2], dimensions=dimensions)
    with pytest.raises(ValueError, match="no Matryoshka training"):
        v2.encode(SENTENCES[0], late_chunking=False, dimensions=16)


def test_task_adapters_are_refused_and_retrieval_sides_change_nothing(v2: Embedder) -> None:
    assert v2.tasks == ("retrieval.query", "retrieval.passage") and not v2.has_adapters
    plain = v2.encode(SENTENCES)
    for side in v2.tasks:
        np.testing.assert_array_equal(v2.encode(SENTENCES, task=side), plain)
    for task in ("classification", "separation", "text-matching", "code.query"):
        with pytest.raises(ValueError, match="jina-embeddings-v2 has no task adapters"):
            v2.encode(SENTENCES, task=task)


def test_inspect_model_describes_v2_without_loading(v2_dir: Path) -> None:
    info = inspect_model(str(v2_dir))
    assert (info.dimension, info.max_tokens, info.pooling, info.has_adapters) == (
        32,
        8192,
        "mean",
        False,
    )
    assert info.tasks == ("retrieval.query", "retrieval.passage") and info.supports_late_chunking


def test_8192_tokens_run_and_more_are_refused_or_cut(v2: Embedder) -> None:
    text = long_text(8300, v2)
    with pytest.raises(ValueError, match="over the model's limit of 8192"):
        v2.encode(text, truncate=False)
    cut = v2.encode(text)  # truncate=True by default: the first 8192 tokens
    assert cut.shape == (1, 32) and np.isfinite(cut).all()


@pytest.mark.parametrize("variant", ["small-en", "base-en", "base-de", "base-es", "base-zh"])
def test_hosted_names_map_to_hub_ids(variant: str) -> None:
    assert (
        canonical_model_id(f"jina-embeddings-v2-{variant}")
        == f"jinaai/jina-embeddings-v2-{variant}"
    )


@pytest.mark.parametrize(
    "name", ["jina-embeddings-v2-base-code", "jinaai/jina-embeddings-v2-base-code"]
)
def test_base_code_is_refused_by_name(name: str) -> None:
    with pytest.raises(UnsupportedModelError, match="qk-post-norm variant"):
        Embedder.from_pretrained(name, device="cpu", local_files_only=True)


@pytest.mark.skipif(not int8_support(torch.device("cpu")).usable, reason="int8 not usable here")
def test_int8_runs_every_v2_linear_in_int8(v2_dir: Path, v2: Embedder) -> None:
    quantized = Embedder.from_pretrained(str(v2_dir), device="cpu", quantization="int8")
    assert quantized.quantization == "int8" and v2.quantization is None
    texts = [*SENTENCES, long_text(900, v2)]
    close = cosines(quantized.encode(texts), v2.encode(texts))
    assert close.min() >= 0.99 and close.max() < 1 - 1e-7  # close, and really quantized


def test_dense_bias_blocks_equal_the_strided_view(
    v2_dir: Path, v2: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CUDA path (dense bias, copied one block of query rows at a time), run on CPU
    with blocks of a few rows, gives the vectors of the CPU path."""
    import embedder_core.models.jina_v2 as jina_v2

    texts = [*SENTENCES, long_text(700, v2)]
    expected = v2.encode(texts)
    blocked = Embedder.from_pretrained(str(v2_dir), device="cpu")
    blocked._model.dense_bias = True
    monkeypatch.setattr(jina_v2, "_BIAS_BLOCK_ELEMENTS", 4 * 700 * 5)  # 5 rows per block
    assert jina_v2._rows_per_block(4, 700) == 5
    assert cosines(blocked.encode(texts), expected).min() >= 0.999999


def _with_pipeline(source: Path, target: Path, pooling: dict[str, bool]) -> Path:
    """A copy with a sentence-transformers pipeline (modules.json), as v2 releases ship."""
    import shutil

    shutil.copytree(source, target)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
    ]
    (target / "modules.json").write_text(json.dumps(modules))
    (target / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 8192}))
    (target / "1_Pooling").mkdir()
    (target / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": 32, **pooling})
    )
    return target


def test_sentence_transformers_pipeline_of_mean_pooling_runs_and_others_are_refused(
    v2_dir: Path, v2: Embedder, tmp_path: Path
) -> None:
    mean = _with_pipeline(v2_dir, tmp_path / "mean", {"pooling_mode_mean_tokens": True})
    with_pipeline = Embedder.from_pretrained(str(mean), device="cpu")
    np.testing.assert_array_equal(with_pipeline.encode(SENTENCES), v2.encode(SENTENCES))
    assert inspect_model(str(mean)).max_tokens == 8192
    cls = _with_pipeline(v2_dir, tmp_path / "cls", {"pooling_mode_cls_token": True})
    with pytest.raises(UnsupportedModelError, match="mean pooling"):
        Embedder.from_pretrained(str(cls), device="cpu")
    with pytest.raises(UnsupportedModelError, match="mean pooling"):
        inspect_model(str(cls))
