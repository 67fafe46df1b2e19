"""``get_embedder`` / ``get_reranker`` (embedder_core.registry): a thin client of a server
pays for no model code, and the package's face costs nothing to import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from paths import REPO_ROOT
from server_support import serve_app

from embedder_core import Embedder, get_reranker
from jina_connectors.server import create_app

HEAVY = ("torch", "transformers")


def run_python(code: str, *args: str) -> str:
    """``code`` in a fresh interpreter (this worktree first on the path); its last line."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()[-1]


def test_get_embedder_of_a_url_imports_no_torch_nor_transformers(
    tiny_jina_embedder: Embedder,
) -> None:
    code = (
        "import json, sys\n"
        "from embedder_core import get_embedder\n"
        "embedder = get_embedder(sys.argv[1])\n"
        "rows = embedder.encode(['a harbour wall', 'science teachers'], task='retrieval.query')\n"
        f"heavy = sorted(set({HEAVY!r}) & set(sys.modules))\n"
        "print(json.dumps([heavy, type(embedder).__name__, rows.tolist()]))\n"
    )
    texts = ["a harbour wall", "science teachers"]
    with serve_app(create_app(tiny_jina_embedder)) as url:
        heavy, kind, rows = json.loads(run_python(code, url))
    assert heavy == []
    assert kind == "RemoteEmbedder"
    # The client really embedded through the server: the local model's vectors.
    local = tiny_jina_embedder.encode(texts, task="retrieval.query")
    np.testing.assert_allclose(np.asarray(rows, np.float32), local, atol=1e-5)


@pytest.mark.parametrize(
    "name", ["get_embedder", "get_reranker", "EmbedderProtocol", "Reranker", "RerankResult"]
)
def test_the_registry_and_the_face_import_no_torch(name: str) -> None:
    code = (
        "import json, sys\n"
        f"from embedder_core import {name}\n"
        "import embedder_core.registry\n"
        f"print(json.dumps(sorted(set({HEAVY!r}) & set(sys.modules))))\n"
    )
    assert json.loads(run_python(code)) == []


def test_get_reranker_of_a_url_imports_no_torch_nor_transformers(
    tiny_jina_embedder: Embedder, tmp_path: Path
) -> None:
    from embedder_core.testing_rerankers import write_tiny_reranker_v2_checkpoint

    local = get_reranker(str(write_tiny_reranker_v2_checkpoint(tmp_path)), device="cpu")
    query = "What do models turn sentences into?"
    documents = ["Models turn sentences into vectors.", "The fox jumps over the dog."]
    code = (
        "import json, sys\n"
        "from embedder_core import get_reranker\n"
        "reranker = get_reranker(sys.argv[1])\n"
        "results = reranker.rerank(sys.argv[2], json.loads(sys.argv[3]))\n"
        f"heavy = sorted(set({HEAVY!r}) & set(sys.modules))\n"
        "print(json.dumps([heavy, [[r.index, r.relevance_score] for r in results]]))\n"
    )
    with serve_app(create_app(tiny_jina_embedder, reranker=local)) as url:
        heavy, results = json.loads(run_python(code, url, query, json.dumps(documents)))
    assert heavy == []
    expected = local.rerank(query, documents)
    assert [index for index, _ in results] == [r.index for r in expected]
    np.testing.assert_allclose(
        [s for _, s in results], [r.relevance_score for r in expected], atol=1e-5
    )
