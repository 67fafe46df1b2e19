"""``inspect_model``: a model described from its JSON files, with no torch and no weights.

That it agrees with the loaded model on every pipeline the core runs is tested beside those
pipelines (``test_sentence_transformers_pipelines.py``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import embedder_core
from embedder_core import ModelInfo, ModelNotFoundError, inspect_model


def test_importing_the_core_and_inspecting_a_model_imports_no_torch(minilm_dir: Path) -> None:
    code = (
        "import sys, embedder_core\n"
        f"info = embedder_core.inspect_model({str(minilm_dir)!r})\n"
        "heavy = ['torch', 'numpy', 'tokenizers', 'transformers', 'safetensors']\n"
        "print(info.dimension, info.max_tokens, sorted(m for m in heavy if m in sys.modules))\n"
        "embedder_core.Embedder  # the heavy names still import on first use\n"
        "print('torch' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.splitlines() == ["384 256 []", "True"]


def test_lazy_names_are_the_modules_own(minilm_dir: Path) -> None:
    from embedder_core.embedder import Embedder
    from embedder_core.output import convert_embeddings
    from embedder_core.registry import get_embedder

    assert embedder_core.Embedder is Embedder
    assert embedder_core.get_embedder is get_embedder
    assert embedder_core.convert_embeddings is convert_embeddings
    assert set(embedder_core.__all__) <= set(dir(embedder_core))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        embedder_core.nothing  # noqa: B018


def test_a_hub_model_is_inspected_from_its_json_files_only(
    minilm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only ``*.json`` is fetched for a Hub id (the weights come with the load)."""
    import huggingface_hub

    snapshot = tmp_path / "snapshot"
    shutil.copytree(minilm_dir, snapshot, ignore=shutil.ignore_patterns("*.safetensors"))
    calls: list[dict[str, Any]] = []

    def fake_snapshot_download(**kwargs: Any) -> str:
        calls.append(kwargs)
        return str(snapshot)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    info = inspect_model("sentence-transformers/all-MiniLM-L6-v2@abc123")
    assert (info.model_name, info.dimension, info.max_tokens) == (
        "sentence-transformers/all-MiniLM-L6-v2@abc123",
        384,
        256,
    )
    assert [(c["repo_id"], c["revision"], c["allow_patterns"]) for c in calls] == [
        ("sentence-transformers/all-MiniLM-L6-v2", "abc123", ["*.json"])
    ]


def test_a_dense_module_sets_the_width_and_a_missing_model_says_hf_download(
    minilm_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(minilm_dir, model)
    modules = json.loads((model / "modules.json").read_text())
    dense = {"idx": 9, "name": "9", "path": "9_Dense", "type": "sentence_transformers.models.Dense"}
    (model / "9_Dense").mkdir()
    (model / "9_Dense" / "config.json").write_text(
        json.dumps({"in_features": 384, "out_features": 96, "bias": True})
    )
    (model / "modules.json").write_text(json.dumps([*modules, dense]))
    assert inspect_model(model).dimension == 96

    with pytest.raises(ModelNotFoundError) as missing:
        inspect_model("no-such-org/no-such-model", local_files_only=True)
    assert "`hf download no-such-org/no-such-model`" in str(missing.value)
    assert "huggingface-cli" not in str(missing.value)


def test_model_info_names_the_model_as_embedder_does(minilm_dir: Path) -> None:
    info = inspect_model(str(minilm_dir))
    with pytest.warns(DeprecationWarning, match="model_name"):
        old = info.model
    assert old == info.model_name
    with pytest.warns(DeprecationWarning, match="model_name"):
        built = ModelInfo(model="m", dimension=8, max_tokens=16, tasks=("a",), pooling="mean")
    assert built.model_name == "m"
    assert replace(info, dimension=1).model_name == info.model_name


def test_model_info_checks_tasks_and_dimensions(minilm_dir: Path) -> None:
    info = inspect_model(str(minilm_dir))
    assert info.check_task(None) is None and info.check_task("retrieval.query") == "retrieval.query"
    with pytest.raises(ValueError, match=r"unknown task .nope.; valid tasks: retrieval\.query"):
        info.check_task("nope")
    with pytest.raises(TypeError, match="task must be a str or None, got int"):
        info.check_task(3)  # type: ignore[arg-type]
    assert info.check_dimensions(None) == 384 and info.check_dimensions(5) == 5
    for bad in (0, 385, True, 2.0, "8"):
        with pytest.raises(ValueError, match="dimensions must be"):
            info.check_dimensions(bad)  # type: ignore[arg-type]
    assert ModelInfo.check_tasks(["retrieval.query", None], 2) == ["retrieval.query", None]
    with pytest.raises(ValueError, match="got 1 tasks for 2 texts"):
        ModelInfo.check_tasks(["retrieval.query"], 2)


def test_model_info_json_round_trip(minilm_dir: Path) -> None:
    info = replace(
        inspect_model(str(minilm_dir)),
        instructions={"retrieval.query": "q: "},
        default_instruction="",
    )
    again = ModelInfo.from_json(json.loads(json.dumps(info.to_json())))
    assert again == info and again.instructions == info.instructions
    assert again.supports_late_chunking == info.supports_late_chunking
    assert again.model_dir is None  # a description over the wire has no folder
