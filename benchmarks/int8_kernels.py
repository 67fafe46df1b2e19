"""The int8 mechanisms we measured before choosing one, GEMM-level and on MiniLM.

`python -m benchmarks.int8_kernels` prints, for each mechanism, its speed as a ratio to
float32 ``F.linear`` measured in the same run, and its error:

- ``onednn_per_token`` (ours, `embedder_core.models.quantization`): per-token u8
  activations, per-channel s8 weights, ``torch.ops.onednn.qlinear_pointwise``;
- ``quantized_dynamic_x86`` / ``_onednn``: ``torch.ops.quantized.linear_dynamic``, the
  kernel behind ``torch.ao`` dynamic quantization (per-tensor activations; building its
  weight needs ``torch.quantize_per_channel``, deprecated in torch 2.13 with the qint8
  dtypes); the x86 engine is fbgemm with ``reduce_range``, as ``quantize_dynamic`` sets it;
- ``torchao``: ``Int8DynamicActivationInt8WeightConfig`` in eager mode (per-token, but the
  int32 GEMM and the rescaling are separate ops on CPU; torchao targets torch.compile);
- ``onnxruntime``: a MatMul+Add graph quantized with ``quantize_dynamic`` (per-channel
  weights, per-tensor ``DynamicQuantizeLinear`` activations), run by ONNX Runtime.

Inputs have a few outlier channels (x20), as transformer activations do: that is where
per-tensor activation scales lose precision.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

Linear = Callable[[torch.Tensor], torch.Tensor]


def _ours(weight: torch.Tensor, bias: torch.Tensor) -> Linear:
    from embedder_core.models.quantization import Int8Weight, int8_linear, int8_support

    packed = Int8Weight(weight, reduce_range=int8_support(torch.device("cpu")).reduce_range)
    return lambda x: int8_linear(x, packed, bias)


def _quantized_dynamic(engine: str) -> Callable[[torch.Tensor, torch.Tensor], Linear]:
    def build(weight: torch.Tensor, bias: torch.Tensor) -> Linear:
        scale = (weight.abs().amax(dim=1) / 127).double()
        zero = torch.zeros(weight.shape[0], dtype=torch.long)
        previous = torch.backends.quantized.engine
        torch.backends.quantized.engine = engine
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the qint8 dtype's deprecation warning
            qweight = torch.quantize_per_channel(weight, scale, zero, 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(qweight, bias)
        reduce_range = engine in ("x86", "fbgemm")

        def run(x: torch.Tensor) -> torch.Tensor:
            torch.backends.quantized.engine = engine
            try:
                return torch.ops.quantized.linear_dynamic(x, packed, reduce_range)
            finally:
                torch.backends.quantized.engine = previous

        torch.backends.quantized.engine = previous
        return run

    return build


def _torchao(weight: torch.Tensor, bias: torch.Tensor) -> Linear:
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    linear = torch.nn.Linear(weight.shape[1], weight.shape[0])
    linear.weight.data, linear.bias.data = weight.clone(), bias.clone()
    quantize_(linear, Int8DynamicActivationInt8WeightConfig())
    return linear


def _onnxruntime(weight: torch.Tensor, bias: torch.Tensor) -> Linear:
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_features, in_features = weight.shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "wt"], ["m"]),
            helper.make_node("Add", ["m", "b"], ["y"]),
        ],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["rows", in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["rows", out_features])],
        [
            numpy_helper.from_array(weight.t().contiguous().numpy(), "wt"),
            numpy_helper.from_array(bias.numpy(), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    directory = Path(tempfile.mkdtemp(prefix="int8-ort-"))
    onnx.save(model, str(directory / "fp32.onnx"))
    quantize_dynamic(
        str(directory / "fp32.onnx"),
        str(directory / "int8.onnx"),
        weight_type=QuantType.QInt8,
        per_channel=True,
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(
        str(directory / "int8.onnx"), options, providers=["CPUExecutionProvider"]
    )
    return lambda x: torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


MECHANISMS: dict[str, Callable[[torch.Tensor, torch.Tensor], Linear]] = {
    "onednn_per_token": _ours,
    "quantized_dynamic_x86": _quantized_dynamic("x86"),
    "quantized_dynamic_onednn": _quantized_dynamic("onednn"),
    "torchao": _torchao,
    "onnxruntime": _onnxruntime,
}


def _best_seconds(run: Callable[[], Any], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def gemm_ratios(
    shape: tuple[int, int, int] = (2048, 1024, 4096), repeats: int = 5
) -> dict[str, dict[str, float | str]]:
    """Per mechanism: speed ratio to float32 on (m x k) @ (k x n), and relative error.

    float32 is timed again next to each mechanism (machines here are shared and noisy).
    """
    rows, inner, outer = shape
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, inner, generator=generator)
    x[:, :8] *= 20
    weight = torch.randn(outer, inner, generator=generator) * inner**-0.5
    bias = torch.randn(outer, generator=generator) * 0.02
    results: dict[str, dict[str, float | str]] = {}
    with torch.inference_mode():
        reference = F.linear(x, weight, bias)
        for name, build in MECHANISMS.items():
            try:
                linear = build(weight, bias)
                out = linear(x)
            except Exception as error:  # a mechanism missing here is a result, not a crash
                results[name] = {"error": f"{type(error).__name__}: {error}"[:200]}
                continue
            fp32 = _best_seconds(lambda: F.linear(x, weight, bias), repeats)
            seconds = _best_seconds(lambda linear=linear: linear(x), repeats)
            fp32 = min(fp32, _best_seconds(lambda: F.linear(x, weight, bias), repeats))
            error = float((out - reference).norm() / reference.norm())
            results[name] = {"ratio_vs_fp32": fp32 / seconds, "relative_error": error}
    return results


class _Wrapped(torch.nn.Module):
    def __init__(self, linear: Linear) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return self.linear(x.reshape(-1, shape[-1]).contiguous()).reshape(*shape[:-1], -1)


def _swap_linears(module: torch.nn.Module, build: Callable[..., Linear]) -> None:
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.Linear):
            bias = (
                child.bias.detach() if child.bias is not None else torch.zeros(child.out_features)
            )
            setattr(module, name, _Wrapped(build(child.weight.detach(), bias)))
        else:
            _swap_linears(child, build)


def minilm_ratios(texts: list[str], repeats: int = 3) -> dict[str, dict[str, float | str]]:
    """Each mechanism inside our MiniLM pipeline: paragraphs/s ratio to our float32, cosines."""
    import numpy as np

    from embedder_core import Embedder
    from embedder_core.testing import minilm_path

    embedders = {"fp32": Embedder.from_pretrained(minilm_path())}
    errors: dict[str, str] = {}
    for name, build in MECHANISMS.items():
        embedder = Embedder.from_pretrained(minilm_path())
        try:
            with torch.inference_mode():
                _swap_linears(embedder._model.model, build)  # type: ignore[attr-defined]
            embedder.encode(texts[:4])
        except Exception as error:
            errors[name] = f"{type(error).__name__}: {error}"[:200]
            continue
        embedders[name] = embedder
    seconds: dict[str, float] = {name: float("inf") for name in embedders}
    outputs: dict[str, Any] = {}
    for _ in range(repeats):  # alternate, so machine noise hits all alike
        for name, embedder in embedders.items():
            start = time.perf_counter()
            outputs[name] = embedder.encode(texts)
            seconds[name] = min(seconds[name], time.perf_counter() - start)
    results: dict[str, dict[str, float | str]] = {name: {"error": e} for name, e in errors.items()}
    for name in embedders:
        if name == "fp32":
            continue
        cosines = (np.asarray(outputs[name]) * np.asarray(outputs["fp32"])).sum(axis=1)
        results[name] = {
            "ratio_vs_fp32": seconds["fp32"] / seconds[name],
            "cosine_median": float(np.median(cosines)),
            "cosine_min": float(cosines.min()),
        }
    return results


def _print(title: str, results: dict[str, dict[str, float | str]]) -> None:
    print(title)
    for name, row in results.items():
        cells = ", ".join(
            f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
            for key, value in row.items()
        )
        print(f"  {name:26s} {cells}")


def main() -> None:
    from benchmarks.context import SEED
    from benchmarks.workloads import DEFAULT_SPEECHES, load_speeches, speech_paragraphs

    parser = argparse.ArgumentParser(prog="python -m benchmarks.int8_kernels")
    parser.add_argument("--speeches", type=Path, default=DEFAULT_SPEECHES)
    parser.add_argument("--paragraphs", type=int, default=200)
    args = parser.parse_args()
    for shape in ((2048, 1024, 4096), (2048, 4096, 1024), (256, 384, 1536)):
        _print(f"GEMM {shape[0]}x{shape[1]}x{shape[2]}", gemm_ratios(shape))
    texts = speech_paragraphs(load_speeches(args.speeches), args.paragraphs, seed=SEED)
    _print(f"MiniLM, {len(texts)} speech paragraphs", minilm_ratios(texts))


if __name__ == "__main__":
    main()
