"""The CUDA code path of the native jina-v3 model, checked without a GPU.

The attention modes CUDA uses (varlen, padded) run here on the meta device, where any
read of a device value on the host (``.item()``, ``.tolist()``, ``nonzero``, ``max`` of a
tensor) raises: so a run that completes proves the layer loop never synchronizes. The
padded mode also runs on CPU, where it must equal the per-sequence CPU path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
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
