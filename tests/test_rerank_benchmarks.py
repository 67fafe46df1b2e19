"""The reranker benchmarks at tiny sizes, so their code cannot rot: the v2 baseline
(transformers' XLMRobertaForSequenceClassification on the renamed weights) computes the
same scores as the native reranker, and the v3 measurement runs both sides."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from paths import REPO_ROOT


@pytest.fixture(autouse=True)
def _importable_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT))


def test_v2_benchmark_baseline_scores_equal_ours(tmp_path: Path) -> None:
    from benchmarks.context import QUICK, Context
    from benchmarks.rerank import run_v2

    ctx = Context(QUICK, torch.device("cpu"), torch.float32, tmp_path, tmp_path / "none")
    result = run_v2(ctx)
    ratio, difference = result.figures
    assert ratio.ours > 0 and ratio.baseline is not None and ratio.baseline > 0
    assert difference.ours < 1e-4  # the padded transformers baseline agrees: same weights
    assert result.details["padded_tokens_baseline"] > result.details["tokens"]


def test_v3_benchmark_measures_both_sides(tmp_path: Path) -> None:
    from benchmarks.rerank import _checkpoint, measure_v3

    model_dir = str(_checkpoint(tmp_path, "v3", quick=True))
    ours = measure_v3(model_dir, "ours", "cpu", "float32", True)
    theirs = measure_v3(model_dir, "transformers", "cpu", "float32", True)
    assert ours["prompt_tokens"] == theirs["prompt_tokens"] > 64 * 8
    assert ours["seconds"] > 0 and theirs["seconds"] > 0


@pytest.mark.slow
def test_quick_rerank_suite_runs(tmp_path: Path) -> None:
    import json
    import subprocess

    output = tmp_path / "results.json"
    command = [sys.executable, "-m", "benchmarks", "--quick", "--only", "rerank"]
    command += ["--output", str(output), "--cache-dir", str(tmp_path / "cache")]
    run = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    assert json.loads(output.read_text())["errors"] == {}
