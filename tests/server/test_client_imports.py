"""A process that only talks to a server pays for neither the model nor the web server:
importing the client (and ``jina_connectors.server``) and embedding through it imports no
torch, transformers, FastAPI, Starlette or uvicorn."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from paths import REPO_ROOT
from server_support import serve_app

from embedder_core import Embedder
from jina_connectors.server.app import create_app

HEAVY = ("torch", "transformers", "fastapi", "starlette", "uvicorn")
TEXTS = ["a harbour wall.", "science teachers wanted"]

CLIENT = """
import json, sys
import jina_connectors.server
from jina_connectors.server.client import RemoteEmbedder
with RemoteEmbedder(sys.argv[1]) as remote:
    vectors = remote.encode(json.loads(sys.argv[2]))
    info = remote.info
print(json.dumps({
    "heavy": sorted(set(json.loads(sys.argv[3])) & set(sys.modules)),
    "vectors": vectors.tolist(),
    "dimension": info.dimension,
}))
"""


def test_the_client_embeds_without_importing_the_model_or_the_web_server(
    tiny_jina_embedder: Embedder,
) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with serve_app(create_app(tiny_jina_embedder)) as url:
        result = subprocess.run(
            [sys.executable, "-c", CLIENT, url, json.dumps(TEXTS), json.dumps(HEAVY)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["heavy"] == []
    assert answer["dimension"] == tiny_jina_embedder.dimension
    local = tiny_jina_embedder.encode(TEXTS)
    np.testing.assert_array_equal(np.asarray(answer["vectors"], np.float32), local)
