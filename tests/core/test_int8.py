"""int8 on CPU: the kernel, the quantized models, quality against float32, and fallbacks."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from embedder_core import Embedder
from embedder_core.models.quantization import (
    Int8Linear,
    Int8Weight,
    QuantizationWarning,
    int8_linear,
    int8_support,
    plan_quantization,
    quantize_linear_layers,
)

pytestmark = pytest.mark.skipif(
    not int8_support(torch.device("cpu")).usable,
    reason=f"int8 not usable on this CPU: {int8_support(torch.device('cpu')).reason}",
)


def _row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))


def _activations(rows: int, width: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, width, generator=generator)
    x[:, :4] *= 20  # a few outlier channels, as transformer activations have
    return x


# --- the kernel ---------------------------------------------------------------------


@pytest.mark.parametrize("reduce_range", [False, True, None])
def test_int8_linear_is_within_quantization_error_of_float(reduce_range: bool | None) -> None:
    if reduce_range is False and int8_support(torch.device("cpu")).reduce_range:
        pytest.skip("8-bit weights saturate without VNNI; this CPU uses 7-bit (reduce_range)")
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(96, 64, generator=generator) / 8
    bias = torch.randn(96, generator=generator)
    x = _activations(37, 64, seed=1)
    reference = torch.nn.functional.linear(x, weight, bias)
    out = int8_linear(x, Int8Weight(weight, reduce_range=reduce_range), bias)
    error = float((out - reference).norm() / reference.norm())
    # 8-bit per-row activations, 8-bit (7-bit with reduce_range) per-channel weights.
    # The default (None) is whatever this CPU needs, so it is accurate everywhere.
    assert error < (0.02 if reduce_range is False else 0.04), error
    assert error > 1e-5  # it really is quantized


@pytest.mark.parametrize(("reduce_range", "levels"), [(False, 127), (True, 63)])
def test_int8_weight_round_trips_within_half_a_step(reduce_range: bool, levels: int) -> None:
    weight = torch.randn(48, 32, generator=torch.Generator().manual_seed(2))
    packed = Int8Weight(weight, reduce_range=reduce_range)
    step = weight.abs().amax(dim=1, keepdim=True) / levels
    error = (packed.dequantized() - weight).abs()
    assert torch.all(error <= step / 2 + 1e-6)
    assert error.max() > step.min() / 8  # on the grid of `levels` steps, not a finer one


def test_int8_rows_do_not_depend_on_their_batch_neighbours() -> None:
    # Per-token activation scales: a row's output is the same, bit for bit, whatever else
    # is in the batch (a per-tensor scale would change with the batch's largest value).
    weight = Int8Weight(torch.randn(80, 64, generator=torch.Generator().manual_seed(3)))
    x = _activations(50, 64, seed=4)
    alone = torch.cat([int8_linear(x[i : i + 1], weight, None) for i in range(10)])
    loud = torch.cat([x[:10], 1000 * x[10:]])
    together = int8_linear(loud, weight, None)[:10]
    assert torch.equal(alone, together)


def test_int8_linear_keeps_leading_dimensions_and_empty_inputs() -> None:
    weight = Int8Weight(torch.randn(24, 16))
    x = torch.randn(2, 5, 16)
    assert int8_linear(x, weight, None).shape == (2, 5, 24)
    assert torch.allclose(
        int8_linear(x, weight, None).reshape(10, 24), int8_linear(x.reshape(10, 16), weight, None)
    )
    assert int8_linear(torch.zeros(0, 16), weight, None).shape == (0, 24)


def test_quantize_linear_layers_replaces_every_linear() -> None:
    model = torch.nn.Sequential(
        torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Sequential(torch.nn.Linear(16, 4))
    )
    x = torch.randn(5, 8)
    reference = model(x)
    assert quantize_linear_layers(model) == 2
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert sum(isinstance(m, Int8Linear) for m in model.modules()) == 2
    assert torch.nn.functional.cosine_similarity(model(x), reference).min() > 0.99


# --- support and fallbacks ----------------------------------------------------------


def test_support_follows_the_cpu_flags() -> None:
    cpu = torch.device("cpu")
    assert int8_support(cpu, frozenset({"avx2", "avx512_vnni"})) == int8_support(
        cpu, frozenset({"avx_vnni"})
    )
    assert int8_support(cpu, frozenset({"avx512_vnni"})).reduce_range is False
    avx2 = int8_support(cpu, frozenset({"avx2", "fma"}))
    assert avx2.usable and avx2.reduce_range  # no VNNI: 7-bit activations, no saturation
    old = int8_support(cpu, frozenset({"sse4_2"}))
    assert not old.usable and "avx2" in old.reason


def test_cuda_falls_back_with_a_warning_before_loading() -> None:
    with pytest.warns(QuantizationWarning, match="CPU only"):
        assert plan_quantization("int8", torch.device("cuda"), torch.bfloat16) is None


def test_bad_quantization_arguments_fail_before_loading(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ValueError, match="unknown quantization 'int4'"):
        Embedder.from_pretrained(missing, quantization="int4")
    with pytest.raises(ValueError, match="bfloat16"):
        Embedder.from_pretrained(missing, quantization="int8", dtype="bfloat16")


def test_unusable_int8_loads_unquantized_and_says_so(
    tiny_jina_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embedder_core.models import quantization

    monkeypatch.setattr(quantization, "cpu_flags", lambda: frozenset({"sse4_2"}))
    with pytest.warns(QuantizationWarning, match="neither VNNI nor AVX2"):
        embedder = Embedder.from_pretrained(tiny_jina_dir, quantization="int8")
    assert embedder.quantization is None


# --- jina-v3 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_jina_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wide enough (256) that quantization noise averages out as in the real model."""
    from embedder_core.testing import write_tiny_jina_checkpoint

    return write_tiny_jina_checkpoint(
        tmp_path_factory.mktemp("wide-jina"),
        dtype=torch.float32,
        hidden_size=256,
        num_attention_heads=4,
        intermediate_size=1024,
        num_hidden_layers=3,
    )


def _sentences(count: int) -> list[str]:
    rng = np.random.default_rng(5)
    words = [
        "the",
        "state",
        "of",
        "our",
        "union",
        "is",
        "strong",
        "and",
        "free",
        "people",
        "work",
        "build",
        "learn",
        "vote",
    ]
    return [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(2, 60, size=count)]


@pytest.fixture(scope="module")
def jina_pair(wide_jina_dir: Path) -> tuple[Embedder, Embedder]:
    fp32 = Embedder.from_pretrained(wide_jina_dir)
    int8 = Embedder.from_pretrained(wide_jina_dir, quantization="int8")
    return fp32, int8


def test_jina_int8_quantizes_the_base_weights_and_frees_them(
    jina_pair: tuple[Embedder, Embedder],
) -> None:
    fp32, int8 = jina_pair
    assert fp32.quantization is None and int8.quantization == "int8"
    assert int8.dtype == torch.float32
    layer = int8._model.layers[0]  # type: ignore[attr-defined]
    for linear in (layer.wqkv, layer.out_proj, layer.fc1, layer.fc2):
        assert linear.weight is None and linear.weight_int8 is not None
        assert linear.lora_a.dtype == torch.float32  # the LoRA side path stays float


@pytest.mark.parametrize(
    "task", [None, "retrieval.query", "retrieval.passage", "separation", "text-matching"]
)
def test_jina_int8_is_close_to_float32_for_every_task(
    jina_pair: tuple[Embedder, Embedder], task: str | None
) -> None:
    fp32, int8 = jina_pair
    texts = _sentences(40)
    cosines = _row_cosines(fp32.encode(texts, task=task), int8.encode(texts, task=task))
    assert np.median(cosines) >= 0.995 and cosines.min() >= 0.98, cosines.min()


def test_jina_int8_adapters_still_apply(jina_pair: tuple[Embedder, Embedder]) -> None:
    _, int8 = jina_pair
    texts = _sentences(10)
    cosines = _row_cosines(
        int8.encode(texts, task="separation"), int8.encode(texts, task="text-matching")
    )
    assert cosines.max() < 0.999


def test_jina_int8_mixed_task_batch_equals_one_task_at_a_time(
    jina_pair: tuple[Embedder, Embedder],
) -> None:
    _, int8 = jina_pair
    texts = _sentences(30)
    tasks = [("retrieval.query", "separation", None)[i % 3] for i in range(len(texts))]
    mixed = int8.encode(texts, task=tasks)
    for task in set(tasks):
        rows = [i for i, t in enumerate(tasks) if t == task]
        alone = int8.encode([texts[i] for i in rows], task=task)
        assert _row_cosines(mixed[rows], alone).min() >= 0.99999


def test_jina_int8_does_not_depend_on_batch_order_or_size(wide_jina_dir: Path) -> None:
    texts = _sentences(24)
    whole = Embedder.from_pretrained(wide_jina_dir, quantization="int8")
    small = Embedder.from_pretrained(wide_jina_dir, quantization="int8", max_batch_tokens=64)
    order = np.random.default_rng(6).permutation(len(texts))
    reference = whole.encode(texts, task="retrieval.passage")
    shuffled = small.encode([texts[i] for i in order], task="retrieval.passage")
    assert _row_cosines(reference[order], shuffled).min() >= 0.99999


# --- MiniLM ---------------------------------------------------------------------------


def _speech_paragraphs(shared_data_dir: Path, count: int) -> list[list[str]]:
    """Paragraphs of 3-6 sentences from the speeches, as lists of sentences."""
    sentence_end = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"“])")
    rng = np.random.default_rng(7)
    paragraphs: list[list[str]] = []
    with (shared_data_dir / "sotu_speeches.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            sentences = [s for s in sentence_end.split(json.loads(line)["text"]) if s.strip()]
            while len(sentences) >= 6 and len(paragraphs) < count:
                take = int(rng.integers(3, 7))
                paragraphs.append(sentences[:take])
                sentences = sentences[take:]
            if len(paragraphs) >= count:
                break
    return paragraphs


@pytest.fixture(scope="module")
def minilm_pair(minilm_dir: Path) -> tuple[Embedder, Embedder]:
    return Embedder.from_pretrained(minilm_dir), Embedder.from_pretrained(
        minilm_dir, quantization="int8"
    )


def test_minilm_int8_quantizes_every_linear(minilm_pair: tuple[Embedder, Embedder]) -> None:
    _, int8 = minilm_pair
    model = int8._model.model  # type: ignore[attr-defined]
    assert int8.quantization == "int8"
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())


def test_minilm_int8_vectors_are_close_to_float32(
    minilm_pair: tuple[Embedder, Embedder], shared_data_dir: Path
) -> None:
    fp32, int8 = minilm_pair
    texts = [" ".join(p) for p in _speech_paragraphs(shared_data_dir, 120)]
    cosines = _row_cosines(fp32.encode(texts), int8.encode(texts))
    assert np.median(cosines) >= 0.995 and cosines.min() >= 0.98, (
        np.median(cosines),
        cosines.min(),
    )


def _mrr_at_10(queries: np.ndarray, passages: np.ndarray) -> float:
    scores = queries @ passages.T
    ranks = (scores > scores.diagonal()[:, None]).sum(axis=1)  # 0 = the right passage first
    return float(np.where(ranks < 10, 1.0 / (ranks + 1), 0.0).mean())


# Slow (20-90 s on 2 cores): kept out of the default run; `pytest -m slow` runs it.
@pytest.mark.slow
def test_minilm_int8_retrieval_quality_matches_float32(
    minilm_pair: tuple[Embedder, Embedder], shared_data_dir: Path
) -> None:
    # Each paragraph's first sentence is the query for the rest of the paragraph.
    paragraphs = _speech_paragraphs(shared_data_dir, 200)
    queries = [p[0] for p in paragraphs]
    passages = [" ".join(p[1:]) for p in paragraphs]
    results = {}
    for name, embedder in zip(("fp32", "int8"), minilm_pair):
        results[name] = _mrr_at_10(
            np.asarray(embedder.encode(queries)), np.asarray(embedder.encode(passages))
        )
    assert results["fp32"] > 0.1, results  # meaningful: chance is about 0.015
    assert abs(results["int8"] - results["fp32"]) <= 0.01, results


def test_minilm_int8_pipeline_emits_no_deprecation_warnings(minilm_dir: Path) -> None:
    # The chosen kernel uses plain int8 tensors, not torch's deprecated quantized dtypes.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder = Embedder.from_pretrained(minilm_dir, quantization="int8")
        embedder.encode(["a short sentence"])


_SATURATION_PROBE = """
import torch
from embedder_core.models.quantization import Int8Weight, int8_linear
g = torch.Generator().manual_seed(0)
w = torch.randn(256, 512, generator=g) / 16
x = torch.randn(64, 512, generator=g)
ref = torch.nn.functional.linear(x, w)
for reduce_range in (False, True):
    out = int8_linear(x, Int8Weight(w, reduce_range=reduce_range), None)
    print(float((out - ref).norm() / ref.norm()))
"""


def _probe_errors(env: dict[str, str]) -> tuple[float, float]:
    import os
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-c", _SATURATION_PROBE],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    full_range, reduced = (float(line) for line in run.stdout.split())
    return full_range, reduced


def test_reduce_range_avoids_saturation_without_vnni() -> None:
    # oneDNN limited to AVX2 runs the u8 x s8 products the way a CPU without VNNI does
    # (vpmaddubsw, saturating int16 pair sums): full-range int8 loses precision there,
    # 7-bit weights do not.
    from embedder_core.models.quantization import cpu_flags

    if not {"avx512_vnni", "avx_vnni"} & cpu_flags():
        pytest.skip("needs a VNNI CPU to compare against")
    full_vnni, _ = _probe_errors({})
    full_avx2, reduced_avx2 = _probe_errors({"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert full_avx2 > 1.8 * full_vnni, (full_avx2, full_vnni)  # saturation
    assert reduced_avx2 < 0.02 and reduced_avx2 < full_avx2, (reduced_avx2, full_avx2)
