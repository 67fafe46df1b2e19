"""sentence-transformers' own ONNX backends, fp32 and int8, as a MiniLM peer.

Run by `benchmarks.int8` with another interpreter: ``backend="onnx"`` needs ``optimum-onnx``,
which pins transformers < 4.58, so it lives in its own virtualenv (see the README). Usage:

    python benchmarks/st_onnx_peer.py MODEL_DIR TEXTS_JSON OUT_DIR REPEATS

Writes OUT_DIR/<variant>.npy (embeddings) and OUT_DIR/timings.json: per variant the
seconds of each timed ``encode`` of all texts (after one warm-up call), the
sentence-transformers version and the int8 file's quantization config. Variants: ``onnx``
(the fp32 export) and ``onnx_int8`` (dynamic int8 quantization for this CPU, exported on
the fly with ``export_dynamic_quantized_onnx_model``). Imports nothing from this repository.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path


def _int8_config() -> str:
    """The int8 preset for this CPU, as sentence-transformers names them."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def main(argv: list[str]) -> int:
    model_dir, texts_path, out_dir, repeats = argv[0], argv[1], Path(argv[2]), int(argv[3])
    import numpy as np
    import sentence_transformers
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    texts = json.loads(Path(texts_path).read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    # Work on a copy: the export writes onnx/ files into the model directory.
    work = out_dir / "model"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(model_dir, work)
    fp32 = SentenceTransformer(str(work), device="cpu", backend="onnx")
    fp32.save(str(work))  # keeps onnx/model.onnx beside the checkpoint
    config = _int8_config()
    export_dynamic_quantized_onnx_model(fp32, config, str(work))
    int8 = SentenceTransformer(
        str(work),
        device="cpu",
        backend="onnx",
        model_kwargs={"file_name": f"onnx/model_qint8_{config}.onnx"},
    )
    models = {"onnx": fp32, "onnx_int8": int8}
    timings: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():
        model.encode(texts[:32])  # warm-up
    for _ in range(repeats):
        for name, model in models.items():
            start = time.perf_counter()
            embeddings = model.encode(texts)
            timings[name].append(time.perf_counter() - start)
            np.save(out_dir / f"{name}.npy", embeddings.astype(np.float32))
    report = {
        "seconds": timings,
        "sentence_transformers": sentence_transformers.__version__,
        "int8_config": config,
    }
    (out_dir / "timings.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
