"""``jina-connectors search --rerank`` (local and against a server) and ``serve``'s
reranker checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ingest_corpus import CORPUS_V1
from server_support import serve_app

from embedder_core import Embedder, get_reranker
from embedder_core.testing_rerankers import (
    write_tiny_reranker_v2_checkpoint,
    write_tiny_reranker_v3_checkpoint,
)
from jina_connectors.cli import main
from jina_connectors.server.app import create_app

QUERY = "How long should the dough rise?"


@pytest.fixture
def store(tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> Path:
    """A store with the small corpus, embedded by MiniLM (the default model here)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JINA_CONNECTORS_MODEL", str(minilm_dir))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in CORPUS_V1))
    assert main(["ingest", str(corpus), "--chunk-size", "16", "--no-progress"]) == 0
    capsys.readouterr()
    return tmp_path


@pytest.fixture(scope="module")
def v2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_reranker_v2_checkpoint(tmp_path_factory.mktemp("cli-v2"))


def run_json(capsys: Any, *args: str) -> list[dict[str, Any]]:
    code = main(["search", QUERY, *args, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_search_reranks_the_vector_candidates(store: Path, v2_dir: Path, capsys: Any) -> None:
    candidates = run_json(capsys, "-k", "6")
    assert len(candidates) == 6 and all(row["rerank_score"] is None for row in candidates)
    expected = get_reranker(str(v2_dir)).rerank(QUERY, [row["text"] for row in candidates], top_n=3)
    reranked = run_json(capsys, "-k", "3", "--rerank", str(v2_dir), "--candidates", "6")
    assert [row["id"] for row in reranked] == [candidates[r.index]["id"] for r in expected]
    assert [row["rerank_score"] for row in reranked] == pytest.approx(
        [r.relevance_score for r in expected]
    )
    # Both scores: each hit keeps its vector score.
    by_id = {row["id"]: row["score"] for row in candidates}
    assert all(row["score"] == pytest.approx(by_id[row["id"]]) for row in reranked)
    # The text output shows both as well.
    code = main(["search", QUERY, "-k", "3", "--candidates", "6", "--rerank", str(v2_dir)])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 6
    assert lines[0].startswith(f" 1. {expected[0].relevance_score:.4f} (vector ")


def test_a_bare_rerank_flag_uses_the_default_reranker(
    store: Path, v2_dir: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JINA_CONNECTORS_RERANKER", str(v2_dir))
    explicit = run_json(capsys, "--rerank", str(v2_dir), "--candidates", "8", "-k", "2")
    bare = run_json(capsys, "-k", "2", "--candidates", "8", "--rerank")  # --json follows
    assert bare == explicit


def test_search_reranks_through_a_server(
    store: Path, v2_dir: Path, capsys: Any, tiny_jina_embedder: Embedder
) -> None:
    local = run_json(capsys, "-k", "2", "--candidates", "6", "--rerank", str(v2_dir))
    app = create_app(tiny_jina_embedder, reranker=get_reranker(str(v2_dir), device="cpu"))
    with serve_app(app) as url:
        remote = run_json(capsys, "-k", "2", "--candidates", "6", "--rerank", url)
    assert [row["id"] for row in remote] == [row["id"] for row in local]
    assert [row["rerank_score"] for row in remote] == pytest.approx(
        [row["rerank_score"] for row in local]
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidates", "10"], "--candidates': applies with --rerank"),
        (["-k", "5", "--candidates", "3", "--rerank", "x/y"], "3 is fewer than -k 5"),
    ],
)
def test_bad_rerank_flags_are_usage_errors(args: list[str], message: str, capsys: Any) -> None:
    assert main(["search", QUERY, *args]) == 2
    assert message in capsys.readouterr().err


def test_an_embedding_model_is_not_a_reranker(store: Path, minilm_dir: Path, capsys: Any) -> None:
    assert main(["search", QUERY, "--rerank", str(minilm_dir)]) == 2
    assert "is not a reranker" in capsys.readouterr().err


def test_serve_refuses_a_reranker_as_model(tmp_path: Path, minilm_dir: Path, capsys: Any) -> None:
    reranker = write_tiny_reranker_v3_checkpoint(tmp_path / "v3")
    assert main(["serve", "--model", str(reranker)]) == 2
    err = capsys.readouterr().err
    assert "'--model'" in err and f"--reranker {reranker}" in err
    assert main(["serve", "--model", str(minilm_dir), "--reranker", str(minilm_dir)]) == 2
    assert "'--reranker'" in capsys.readouterr().err


def test_the_old_rerank_cli_path_warns_and_gives_the_same_functions() -> None:
    import importlib
    import sys

    from jina_connectors.cli import search, serve

    sys.modules.pop("jina_connectors.rerank_cli", None)
    with pytest.warns(DeprecationWarning, match="jina_connectors.rerank_cli moved to"):
        old = importlib.import_module("jina_connectors.rerank_cli")
    for name in ("bare_rerank", "check_reranker", "check_reranker_dir", "hits_json"):
        assert getattr(old, name) is getattr(search, name)
    assert old.rerank_hits is search.rerank_hits
    assert old.check_serve_models is serve.check_serve_models
