"""The benchmark suite at tiny sizes, so its code cannot rot.

`python -m benchmarks --quick` must run every benchmark end to end and report sane figures;
the baseline it compares against must compute the same embeddings as `Embedder`; and its
measuring tools (exact-length inputs, peak memory, parameter counts) must measure what
they claim.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import torch
from paths import REPO_ROOT

if TYPE_CHECKING:
    from embedder_core import Embedder

ALL_BENCHMARKS = (
    "full_size",
    "long_inputs",
    "minilm",
    "late_chunking",
    "ingestion",
    "scheduler",
    "server",
    "int8_full_size",
    "int8_minilm",
)


def _int8_usable() -> bool:
    import torch

    from embedder_core.models.quantization import int8_support

    return int8_support(torch.device("cpu")).usable


@pytest.fixture(autouse=True)
def _importable_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    # `benchmarks/` sits at the repository root and is not an installed package.
    monkeypatch.syspath_prepend(str(REPO_ROOT))


@pytest.fixture
def speeches(request: pytest.FixtureRequest) -> Path | None:
    """The shared speeches (read through `shared_data_dir`); None when they are absent, so
    that the benchmarks that need no speeches still run."""
    try:
        return request.getfixturevalue("shared_data_dir") / "sotu_speeches.jsonl"
    except pytest.skip.Exception:
        return None


# Slow (20-90 s on 2 cores): kept out of the default run; `pytest -m slow` runs it.
@pytest.mark.slow
def test_quick_run_reports_every_benchmark(tmp_path: Path, speeches: Path | None) -> None:
    selected = ALL_BENCHMARKS if speeches is not None else ("full_size", "long_inputs", "scheduler")
    if not _int8_usable():
        selected = tuple(name for name in selected if not name.startswith("int8"))
    output = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--output", str(output)]
    command += ["--cache-dir", str(tmp_path / "cache")]
    command += ["--speeches", str(speeches)] if speeches is not None else []
    command += [arg for name in selected for arg in ("--only", name)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 0, run.stderr[-4000:]

    results = json.loads(output.read_text())
    assert results["errors"] == {}
    assert results["meta"]["mode"] == "quick"
    assert results["meta"]["torch_threads"] >= 1
    assert results["meta"]["ceiling_flops"] > 1e9  # any CPU does more than 1 GFLOP/s
    assert set(results["details"]) == set(selected)
    figures = results["figures"]
    # The int8 cases report their rows under full_size_int8, minilm_int8 and int8_gemm.
    int8_rows = (
        {"full_size_int8", "minilm_int8", "int8_gemm"} if "int8_minilm" in selected else set()
    )
    expected = {"hardware", *int8_rows, *(name for name in selected if not name.startswith("int8"))}
    assert {figure["benchmark"] for figure in figures} == expected
    for figure in figures:
        assert math.isfinite(figure["ours"]) and figure["ours"] > 0, figure
        if figure["baseline"] is not None:
            assert figure["ratio"] == pytest.approx(figure["ours"] / figure["baseline"])
        assert figure["benchmark"] in run.stdout and figure["metric"] in run.stdout

    # Correctness holds at any size: our outputs equal the baseline's and
    # sentence-transformers'. Speed and memory targets only mean something at full size.
    cosines = {f["benchmark"]: f for f in figures if "cosine" in f["metric"]}
    assert cosines["full_size"]["met"] is True, cosines["full_size"]
    if "minilm" in selected:
        assert cosines["minilm"]["met"] is True, cosines["minilm"]
    assert cosines["scheduler"]["met"] is True, cosines["scheduler"]
    if "server" in selected:  # served rows equal in-process encode
        assert cosines["server"]["met"] is True, cosines["server"]
    # int8 quality, and transformers' JinaEmbeddingsV3Model equal to ours on the same weights.
    for figure in figures:
        if figure["benchmark"] in int8_rows and "cosine" in figure["metric"] and figure["target"]:
            assert figure["met"] is True, figure
    full_size = results["details"]["full_size"]
    assert full_size["tokens"] == sum(full_size["lengths"])
    assert full_size["baseline_padded_tokens"] >= full_size["tokens"]
    for run_details in results["details"]["long_inputs"]["runs"]:
        assert run_details["peak_bytes"] >= run_details["footprint_before_bytes"] > 0


# Slow (10-20 s on 2 cores): kept out of the default run; `pytest -m slow` runs it.
@pytest.mark.slow
def test_isolated_case_returns_its_figures_and_only_its_ceiling_samples(
    tmp_path: Path, speeches: Path | None
) -> None:
    # The full run puts every case in a fresh process; the quick run above does not.
    import torch

    from benchmarks.__main__ import _run_isolated
    from benchmarks.context import QUICK, Context

    speeches = speeches or tmp_path / "no-speeches.jsonl"  # full_size reads no speeches
    ctx = Context(QUICK, torch.device("cpu"), torch.float32, tmp_path, speeches, ceiling_repeats=1)
    ctx.measure_ceiling()
    result, samples = _run_isolated("full_size", ctx)
    assert len(samples) == 2  # full_size samples the ceiling before and after its runs
    assert all(sample > 1e9 for sample in samples)
    assert [figure.metric for figure in result.figures][-1] == "min cosine to baseline"
    assert result.figures[-1].met is True


def _mixed_texts() -> list[str]:
    words = [
        "the",
        "state",
        "of",
        "the",
        "union",
        "is",
        "strong",
        "and",
        "our",
        "people",
        "are",
        "free",
    ]
    rng = np.random.default_rng(3)
    return [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 40, size=11)]


@pytest.mark.parametrize("task", [None, "retrieval.query", "text-matching"])
def test_baseline_equals_embedder_whatever_its_batch_size(
    tiny_jina_dir: Path, tiny_jina_embedder: Embedder, task: str | None
) -> None:
    from benchmarks.baseline import PaddedBaseline
    from benchmarks.measure import min_row_cosine

    texts = _mixed_texts()
    ours = tiny_jina_embedder.encode(texts, task=task)
    for batch_size in (1, 4, 32):
        baseline = PaddedBaseline(tiny_jina_dir, batch_size=batch_size)
        assert min_row_cosine(baseline.encode(texts, task=task), ours) >= 0.99999


def test_baseline_task_adapters_change_the_embeddings(tiny_jina_dir: Path) -> None:
    # Guards the check above against a baseline that silently ignores LoRA.
    from benchmarks.baseline import PaddedBaseline
    from benchmarks.measure import min_row_cosine

    baseline = PaddedBaseline(tiny_jina_dir)
    texts = _mixed_texts()
    assert (
        min_row_cosine(
            baseline.encode(texts, task="separation"), baseline.encode(texts, task="text-matching")
        )
        < 0.999
    )


def test_exact_length_texts_have_the_requested_token_counts(
    tiny_jina_dir: Path, tiny_jina_embedder: Embedder
) -> None:
    from benchmarks.baseline import PaddedBaseline
    from benchmarks.workloads import exact_length_texts, log_uniform_lengths

    lengths = log_uniform_lengths(20, 3, 128, seed=7)
    assert min(lengths) >= 3 and max(lengths) <= 128 and len(set(lengths)) > 5
    for task in ("text-matching", "retrieval.query"):
        overhead = tiny_jina_embedder.count_tokens(["x"], task=task)[0]
        wanted = [max(n, overhead + 1) for n in lengths]
        texts = exact_length_texts(tiny_jina_embedder, tiny_jina_dir, wanted, task=task, seed=1)
        assert tiny_jina_embedder.count_tokens(texts, task=task) == wanted
        assert [len(ids) for ids in PaddedBaseline(tiny_jina_dir).tokenize(texts, task)] == wanted


@pytest.mark.parametrize("high_water_mark", [True, False], ids=["VmHWM", "sampling"])
def test_peak_memory_sees_a_freed_allocation(
    monkeypatch: pytest.MonkeyPatch, high_water_mark: bool
) -> None:
    import time

    import torch

    from benchmarks import measure

    if not high_water_mark:  # as where /proc/self/clear_refs cannot be written
        monkeypatch.setattr(measure, "_reset_peak_resident", lambda: False)
    size = 256 * 1024**2
    with measure.PeakMemory(torch.device("cpu")) as memory:
        block = torch.ones(size // 4, dtype=torch.float32)
        time.sleep(0.05)  # the sampler's period is 1 ms
        del block
    assert memory.peak_above_start >= 0.9 * size
    assert memory.method.startswith("VmHWM" if high_water_mark else "RSS sampled")
    with measure.PeakMemory(torch.device("cpu")) as idle:
        pass
    assert idle.peak_above_start < 0.1 * size


def test_non_embedding_parameters_count_the_encoder_stack(tiny_jina_dir: Path) -> None:
    from benchmarks.measure import non_embedding_parameters

    config = json.loads((tiny_jina_dir / "config.json").read_text())
    hidden, inner = config["hidden_size"], config["intermediate_size"]
    per_layer = (
        3 * hidden * hidden
        + 3 * hidden  # Wqkv
        + hidden * hidden
        + hidden  # out_proj
        + 2 * hidden * inner
        + inner
        + hidden  # fc1, fc2
        + 4 * hidden  # norm1, norm2
    )
    expected = config["num_hidden_layers"] * per_layer + 2 * hidden  # + emb_ln
    assert non_embedding_parameters(tiny_jina_dir) == expected


@pytest.mark.slow
def test_quick_ray_benchmark_reports_its_figures(tmp_path: Path, speeches: Path | None) -> None:
    # Its own run: it starts a local Ray (tens of seconds on 2 cores).
    if speeches is None:
        pytest.skip("the ray benchmark ingests the shared speeches")
    output = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", "ray"]
    command += ["--output", str(output), "--speeches", str(speeches)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(output.read_text())
    assert results["errors"] == {}
    metrics = {f["metric"]: f for f in results["figures"] if f["benchmark"] == "ray"}
    ratio = metrics["wall s, ray 1 actor vs ingest"]
    assert ratio["ratio"] == pytest.approx(ratio["ours"] / ratio["baseline"])
    details = results["details"]["ray"]
    assert details["points"] > 0 and details["overhead_per_batch_seconds"] >= 0
    assert details["ray_fixed_seconds"] > 0 and set(
        details["projected_docs_per_second_by_actors"]
    ) == {
        "1",
        "2",
        "4",
        "8",
        "16",
        "64",
    }


@pytest.mark.parametrize("task", [None, "retrieval.query", "text-matching"])
def test_transformers_jina_model_equals_ours_on_converted_weights(
    tiny_jina_dir: Path, tiny_jina_embedder: Embedder, task: str | None
) -> None:
    # An independent implementation of the architecture (transformers' native
    # JinaEmbeddingsV3Model, the task's LoRA merged by our conversion) must agree with ours.
    pytest.importorskip("transformers.models.jina_embeddings_v3")
    from benchmarks.hf_jina import HFJinaPeer
    from benchmarks.measure import min_row_cosine

    texts = _mixed_texts()
    ours = tiny_jina_embedder.encode(texts, task=task)
    peer = HFJinaPeer(tiny_jina_dir, task)
    for batch_size in (1, 32):
        assert min_row_cosine(peer.encode(texts, batch_size=batch_size), ours) >= 0.9999


def test_converted_weights_merge_the_task_lora(tiny_jina_dir: Path) -> None:
    # Guards the check above: merging must change the weights, per task.
    from benchmarks.hf_jina import converted_state_dict

    base = converted_state_dict(tiny_jina_dir, None)
    query = converted_state_dict(tiny_jina_dir, "retrieval.query")
    passage = converted_state_dict(tiny_jina_dir, "retrieval.passage")
    name = "layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(base[name], query[name])
    assert not torch.allclose(query[name], passage[name])
    assert torch.equal(
        base["layers.0.post_mlp_layernorm.bias"], query["layers.0.post_mlp_layernorm.bias"]
    )


# Slow (10-20 s on 2 cores): kept out of the default run; `pytest -m slow` runs it.
@pytest.mark.slow
def test_jina_v2_benchmark_runs_small_and_equals_its_padded_baseline(tmp_path: Path) -> None:
    """`python -m benchmarks --only jina_v2` at quick sizes, in this process: every figure
    finite and positive, ours equal to the padded baseline, both memory runs reported."""
    import torch

    from benchmarks import jina_v2
    from benchmarks.context import QUICK, Context

    ctx = Context(QUICK, torch.device("cpu"), torch.float32, tmp_path, tmp_path / "none.jsonl")
    ctx.ceiling_repeats = 1
    result = jina_v2.run(ctx)
    figures = {figure.metric: figure for figure in result.figures}
    for figure in result.figures:
        assert math.isfinite(figure.ours) and figure.ours > 0, figure
    for label in jina_v2.QUICK_MODELS:
        assert figures[f"{label} min cosine to padded"].met is True
    assert {"tiny peak MiB above model @128", "tiny peak MiB above model @512"} <= set(figures)
    assert [run["tokens"] for run in result.details["memory"]["runs"]] == [128, 512]


@pytest.mark.slow
def test_quick_cli_benchmark_reports_its_figures(tmp_path: Path) -> None:
    """`--only cli`: cold search and unchanged re-ingest, now and before, as ratios to
    `import torch` (ten fresh processes: slow)."""
    pytest.importorskip("qdrant_client")
    output = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", "cli"]
    command += ["--output", str(output), "--cache-dir", str(tmp_path / "cache")]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    run = subprocess.run(
        command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(output.read_text())
    figures = [f for f in results["figures"] if f["benchmark"] == "cli"]
    assert [f["metric"].split(" (")[0] for f in figures] == [
        "search, small store",
        "search, jina-v3 format",
        "unchanged re-ingest",
    ]
    for figure in figures:
        assert figure["ours"] > 0 and figure["baseline"] > 0
    best = results["details"]["cli"]["best_seconds"]
    assert set(best) == {
        *("import torch", "search", "search before", "search v3", "search v3 before"),
        *("re-ingest", "re-ingest before"),
    }
