"""One canonical identity per model, and `get_embedder`'s cache keyed on it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from embedder_core import (
    DEFAULT_MODEL,
    Embedder,
    ModelNotFoundError,
    canonical_model_id,
    get_embedder,
)


@pytest.fixture
def model_copy(tiny_jina_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny checkpoint: get_embedder's cache has never seen it."""
    return Path(shutil.copytree(tiny_jina_dir, tmp_path / "models" / "tiny"))


@pytest.fixture
def no_hub(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Fail any Hub download; record the calls."""
    import huggingface_hub

    calls: list[dict[str, Any]] = []

    def refuse(**kwargs: Any) -> str:
        calls.append(kwargs)
        raise OSError("no network in tests")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    return calls


# --- canonical_model_id -----------------------------------------------------------------


def test_spellings_of_one_directory_are_one_identity(
    model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hub: list
):
    link = tmp_path / "link"
    link.symlink_to(model_copy, target_is_directory=True)
    monkeypatch.chdir(tmp_path / "models")
    monkeypatch.setenv("HOME", str(tmp_path))
    expected = str(model_copy.resolve())
    spellings = ["tiny", "./tiny", "tiny/", str(model_copy), link, "~/link", "../models/tiny"]
    assert {canonical_model_id(s) for s in spellings} == {expected}
    assert canonical_model_id(expected) == expected  # idempotent
    assert not no_hub


def test_existing_relative_path_is_never_a_hub_id(
    model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hub: list
):
    """`acme/model` is a valid Hub id spelling; a directory of that name still wins."""
    local = tmp_path / "acme" / "model"
    shutil.copytree(model_copy, local)
    monkeypatch.chdir(tmp_path)
    assert canonical_model_id("acme/model") == str(local.resolve())
    embedder = Embedder.from_pretrained("acme/model", device="cpu")
    assert embedder.model_name == str(local.resolve())
    assert not no_hub


def test_hub_ids_and_revisions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hub: list):
    monkeypatch.chdir(tmp_path)  # nothing local of these names
    assert canonical_model_id("BAAI/bge-small-en-v1.5") == "BAAI/bge-small-en-v1.5"
    assert canonical_model_id("org/name", revision="abc123") == "org/name@abc123"
    assert canonical_model_id("org/name@abc123") == "org/name@abc123"  # idempotent
    assert canonical_model_id("org/name@abc123", revision="abc123") == "org/name@abc123"
    assert canonical_model_id("org/name", revision="refs/pr/1") == "org/name@refs/pr/1"
    with pytest.raises(ValueError, match="pins revision"):
        canonical_model_id("org/name@abc123", revision="main")
    with pytest.raises(ValueError, match="empty revision"):
        canonical_model_id("org/name@")
    assert not no_hub  # cheap: nothing was fetched


def test_hosted_name_is_the_hub_id_unless_a_directory_has_it(
    model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    assert canonical_model_id("jina-embeddings-v3") == DEFAULT_MODEL
    assert canonical_model_id("jina-embeddings-v3", revision="v1") == f"{DEFAULT_MODEL}@v1"
    shutil.copytree(model_copy, tmp_path / "jina-embeddings-v3")
    assert canonical_model_id("jina-embeddings-v3") == str(tmp_path / "jina-embeddings-v3")


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("./missing", "not a directory"),
        ("/no/such/dir", "not a directory"),
        ("a/b/c", "not a directory"),
        ("my model", "valid Hugging Face Hub id"),
        ("org/na..me", "valid Hugging Face Hub id"),
    ],
)
def test_bad_references_are_refused_without_the_network(
    model: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hub: list
):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match=message):
        canonical_model_id(model)
    with pytest.raises(ModelNotFoundError, match=message):
        Embedder.from_pretrained(model)
    assert not no_hub


def test_a_file_is_not_a_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_hub: list):
    (tmp_path / "model").write_text("not a model")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError, match="not a directory"):
        canonical_model_id("model")
    assert not no_hub


def test_revision_of_a_local_directory_is_refused(model_copy: Path):
    with pytest.raises(ValueError, match="local directory"):
        canonical_model_id(model_copy, revision="main")


# --- loading by Hub id ------------------------------------------------------------------


@pytest.fixture
def fake_hub(tiny_jina_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """A Hub whose every repository is the tiny checkpoint; records what was asked for."""
    import huggingface_hub

    import embedder_core.registry as registry

    calls: list[dict[str, Any]] = []

    def download(**kwargs: Any) -> str:
        calls.append(kwargs)
        return str(tiny_jina_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", download)
    # Hub ids loaded from the stand-in stay out of the process-wide cache of other tests.
    monkeypatch.setattr(registry, "_CACHE", [])
    return calls


def test_hosted_name_loads_the_hub_model(
    fake_hub: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    embedder = Embedder.from_pretrained("jina-embeddings-v3", device="cpu", revision="r1")
    assert embedder.model_name == f"{DEFAULT_MODEL}@r1"
    assert fake_hub[-1]["repo_id"] == DEFAULT_MODEL
    assert fake_hub[-1]["revision"] == "r1"
    # The canonical id loads the same revision back (what a collection records).
    assert Embedder.from_pretrained(embedder.model_name, device="cpu").model_name == (
        f"{DEFAULT_MODEL}@r1"
    )
    assert fake_hub[-1]["revision"] == "r1"


def test_get_embedder_maps_the_hosted_name_to_one_instance(
    fake_hub: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)
    revision = "hosted-name-test"  # an identity no other test loads
    first = get_embedder("jina-embeddings-v3", revision=revision, device="cpu")
    assert get_embedder(f"{DEFAULT_MODEL}@{revision}", device="cpu") is first
    assert get_embedder(DEFAULT_MODEL, revision=revision) is first
    assert len(fake_hub) == 1


def test_the_framework_loader_still_maps_the_hosted_name(
    fake_hub: list[dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from embedder_core import HOSTED_MODEL_NAMES
    from jina_connectors.shared_models import load_embedder

    monkeypatch.chdir(tmp_path)
    assert HOSTED_MODEL_NAMES["jina-embeddings-v3"] == DEFAULT_MODEL
    embedder = load_embedder("jina-embeddings-v3", device="cpu", dtype=None)
    assert embedder.model_name == DEFAULT_MODEL
    assert fake_hub[-1]["repo_id"] == DEFAULT_MODEL


# --- get_embedder's cache ---------------------------------------------------------------


def test_get_embedder_one_instance_per_identity(
    model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    link = tmp_path / "link"
    link.symlink_to(model_copy, target_is_directory=True)
    monkeypatch.chdir(model_copy.parent)
    first = get_embedder("tiny", device="cpu")
    assert first.model_name == str(model_copy.resolve())
    for spelling in ("./tiny", "tiny/", str(model_copy), model_copy, str(link)):
        assert get_embedder(spelling, device="cpu") is first


def test_get_embedder_normalizes_options(model_copy: Path):
    first = get_embedder(model_copy, device="cpu", dtype="float32")
    assert get_embedder(model_copy, device=torch.device("cpu"), dtype=torch.float32) is first
    assert get_embedder(model_copy, device="cpu", dtype="fp32") is first
    assert get_embedder(model_copy, device="cpu", max_batch_tokens=first.max_batch_tokens) is first
    other = get_embedder(model_copy, device="cpu", max_batch_tokens=100)
    assert other is not first
    assert other.max_batch_tokens == 100


def test_get_embedder_without_options_reuses_a_loaded_instance(model_copy: Path):
    """What `ingest` loaded with explicit options, `search` gets back with none."""
    loaded = get_embedder(model_copy, device="cpu", dtype="float32", max_batch_tokens=321)
    assert get_embedder(model_copy) is loaded
    assert get_embedder(str(model_copy), dtype=None, device=None) is loaded
    # An option that is given must match.
    assert get_embedder(model_copy, max_batch_tokens=321) is loaded
    assert get_embedder(model_copy, max_batch_tokens=322) is not loaded


def test_get_embedder_without_options_loads_the_defaults_when_nothing_is_loaded(
    model_copy: Path,
):
    embedder = get_embedder(model_copy)
    assert embedder.device == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert get_embedder(model_copy, device=str(embedder.device), dtype=embedder.dtype) is embedder


def test_get_embedder_refuses_unknown_options(model_copy: Path):
    with pytest.raises(TypeError, match="unknown option"):
        get_embedder(model_copy, devcie="cpu")
    with pytest.raises(ValueError, match="unknown dtype"):
        get_embedder(model_copy, dtype="float8")
    with pytest.raises(ValueError, match="unknown device"):
        get_embedder(model_copy, device="gpu0")
