"""The CUDA code path of the native jina-v3 model, checked without a GPU.

The attention modes CUDA uses (varlen, padded) run here on the meta device, where any
read of a device value on the host (``.item()``, ``.tolist()``, ``nonzero``, ``max`` of a
tensor) raises: so a run that completes proves the layer loop never synchronizes. The
padded mode also runs on CPU, where it must equal the per-sequence CPU path.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from paths import REPO_ROOT
from torch.utils._python_dispatch import TorchDispatchMode

from embedder_core import Embedder
from embedder_core.models.base import PackedBatch
from embedder_core.models.jina_v3 import ATTENTION_MODES, JinaV3Model


def _texts(count: int) -> list[str]:
    rng = np.random.default_rng(11)
    words = ["alpha", "beta", "gamma", "delta", "state", "union", "free", "people", "vote", "work"]
    return [" ".join(rng.choice(words, size=int(n))) for n in rng.integers(1, 50, size=count)]


def _jina_model(embedder: Embedder) -> JinaV3Model:
    model = embedder._model
    assert isinstance(model, JinaV3Model)
    return model


def test_auto_attention_is_per_sequence_on_cpu(tiny_jina_embedder: Embedder) -> None:
    assert _jina_model(tiny_jina_embedder).attention_mode() == "per_sequence"


@pytest.mark.parametrize("quantization", [None, "int8"])
def test_padded_attention_equals_per_sequence(
    tiny_jina_dir: Path, quantization: str | None
) -> None:
    from embedder_core.models.quantization import int8_support

    if quantization and not int8_support(torch.device("cpu")).usable:
        pytest.skip("int8 not usable on this CPU")
    embedder = Embedder.from_pretrained(tiny_jina_dir, quantization=quantization)
    texts = _texts(17)
    tasks = [("retrieval.query", None, "classification")[i % 3] for i in range(len(texts))]
    model = _jina_model(embedder)
    per_sequence = embedder.encode(texts, task=tasks)
    model.attention = "padded"
    padded = embedder.encode(texts, task=tasks)
    if quantization is None:
        np.testing.assert_allclose(padded, per_sequence, atol=2e-6)
    else:  # float noise of 1e-7 can flip an int8 rounding: equal up to that
        assert (np.asarray(padded) * np.asarray(per_sequence)).sum(axis=1).min() >= 0.99999


class _DeviceTraffic(TorchDispatchMode):
    """Counts ops that take a host tensor and return a tensor on ``device``."""

    def __init__(self, device: torch.device) -> None:
        super().__init__()
        self.device = device
        self.uploads: list[str] = []

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in (*args, *(kwargs or {}).values()) if isinstance(a, torch.Tensor)]
        host_input = any(t.device.type == "cpu" and t.dim() > 0 for t in inputs)
        if host_input and isinstance(out, torch.Tensor) and out.device == self.device:
            self.uploads.append(str(func))
        return out


@pytest.mark.parametrize("mode", ATTENTION_MODES)
@pytest.mark.parametrize("task_ids", [[0, 0, 0], [-1, -1, -1], [0, 3, -1]])
def test_layer_loop_never_reads_the_device_and_uploads_once(
    tiny_jina_dir: Path, mode: str, task_ids: list[int]
) -> None:
    embedder = Embedder.from_pretrained(tiny_jina_dir)
    model = _jina_model(embedder).to("meta", torch.bfloat16)
    model.attention = mode
    lengths = [5, 17, 9]
    ids = torch.zeros(sum(lengths), dtype=torch.long, device="meta")
    batch = PackedBatch(ids, lengths, task_ids)
    traffic = _DeviceTraffic(torch.device("meta"))
    with torch.inference_mode(), traffic:
        states = model.token_states(batch)
    assert states.shape == (sum(lengths), model.hidden_size) and states.device.type == "meta"
    assert len(traffic.uploads) == 1, traffic.uploads  # positions, cu_seqlens, tasks: one copy


def test_meta_tensors_refuse_host_reads() -> None:
    # The premise of the test above: a host read of a meta tensor raises.
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.ones(3, device="meta").sum().item()
    with pytest.raises((RuntimeError, NotImplementedError)):
        torch.ones(3, device="meta").nonzero()


def test_out_of_memory_halves_the_budget_once_for_every_queued_batch(
    tiny_jina_dir: Path,
) -> None:
    # Four batches of the starting budget are queued; the first one that runs out of memory
    # halves the budget, and the queued ones are re-planned under it instead of each
    # running out of memory in turn.
    embedder = Embedder.from_pretrained(tiny_jina_dir, max_batch_tokens=1024)
    texts = ["alpha beta gamma delta " * 3] * 300
    expected = embedder.encode(texts)
    tokens = embedder.count_tokens(texts[:1])[0]
    model = _jina_model(embedder)
    original = model.token_states
    seen: list[int] = []

    def token_states(batch: PackedBatch) -> torch.Tensor:
        seen.append(batch.num_tokens)
        if batch.num_tokens > 600:  # fits 512 tokens, not 1024
            raise torch.cuda.OutOfMemoryError("injected")
        return original(batch)

    model.token_states = token_states  # type: ignore[method-assign]
    got = embedder.encode(texts)
    # Half of the failing batch's cost (at most the budget, over the 600 that failed).
    assert 300 < embedder.max_batch_tokens <= 512
    assert sum(1 for n in seen if n > 600) == 1, seen
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert sum(seen) - max(seen) == tokens * len(texts)


def test_gpu_check_runs_on_cpu(tmp_path: Path) -> None:
    # The same script as on a GPU; only the device differs (and the OOM is injected).
    import json
    import subprocess
    import sys

    repo = REPO_ROOT
    output = tmp_path / "gpu_check.json"
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick"]
    command += ["--output", str(output), "--cache-dir", str(tmp_path / "cache")]
    run = subprocess.run(
        command, cwd=repo, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["failed"] == []
    names = [check["name"] for check in result["checks"]]
    assert sum(name.startswith("parity") for name in names) == 16 + 3  # v3: 2 x 8; v2: 3
    assert sum(name.startswith("parity v2 ") for name in names) == 3
    assert any("late chunking" in name for name in names)
    budget = next(c for c in result["checks"] if c["name"].endswith("budget halves"))
    assert budget["value"] == "2048 -> 1024"
    throughput = next(c for c in result["checks"] if c["name"].startswith("throughput"))
    assert throughput["value"] > 0


def test_gpu_check_fails_loudly_without_cuda(tmp_path: Path) -> None:
    import subprocess
    import sys

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    repo = REPO_ROOT
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--output", str(tmp_path / "x")]
    run = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "no CUDA device" in run.stderr


def test_gpu_peer_runs_on_cpu_and_both_models_agree(tmp_path: Path) -> None:
    """The transformers-peer comparison the GPU runs: same weights, so the rows agree."""
    import json
    import subprocess
    import sys

    repo = REPO_ROOT
    output = tmp_path / "gpu_peer.json"
    command = [sys.executable, "-m", "benchmarks.gpu_peer", "--device", "cpu", "--quick"]
    command += ["--repeats", "1", "--output", str(output), "--cache-dir", str(tmp_path / "c")]
    run = subprocess.run(
        command, cwd=repo, capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result["min_cosine_ours_to_peer"] >= 0.99999
    assert set(result["peer"]) == {"32", "128"} and result["ours"]["tokens_per_s"] > 0


@pytest.mark.parametrize("with_num_splits", [True, False])
def test_varlen_kernel_passes_num_splits_only_where_torch_has_it(
    monkeypatch: pytest.MonkeyPatch, with_num_splits: bool
) -> None:
    """torch 2.11's varlen_attn has no num_splits (seen on an H200): passing it anyway made
    every packed bf16 batch on the GPU fail with a TypeError."""
    import types

    from embedder_core.models import jina_v3

    calls: list[dict[str, object]] = []

    def with_splits(q, k, v, cu_q, cu_k, max_q, max_k, *, num_splits=None):  # type: ignore[no-untyped-def]
        calls.append({"num_splits": num_splits})
        return q

    def without_splits(q, k, v, cu_q, cu_k, max_q, max_k):  # type: ignore[no-untyped-def]
        calls.append({})
        return q

    module = types.ModuleType("torch.nn.attention.varlen")
    module.varlen_attn = with_splits if with_num_splits else without_splits  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.nn.attention.varlen", module)
    kernel = jina_v3._varlen_attention_kernel()
    kernel(1, 2, 3, 4, 5, 6, 7)
    assert calls == ([{"num_splits": 1}] if with_num_splits else [{}])
