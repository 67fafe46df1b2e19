"""The ``jina-connectors`` command: ingest, search and info on real embedded databases, and
one-line errors with the right exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ingest_corpus import CORPUS_V1
from paths import REPO_ROOT

from jina_connectors.cli import main

EXAMPLES = REPO_ROOT / "examples" / "data"


@pytest.fixture
def workdir(tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, with MiniLM as the default model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JINA_CONNECTORS_MODEL", str(minilm_dir))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


def write_corpus(folder: Path, records: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "docs.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return file


def test_readme_flow_on_the_example_corpus(
    workdir: Path, minilm_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "ingest", str(EXAMPLES), "--no-progress")
    assert code == 0, out
    assert out.startswith("8 documents: 0 unchanged, ")
    points = int(out.rsplit("holds ", 1)[1].split()[0])
    assert points > 8
    home = Path(os.environ["JINA_CONNECTORS_HOME"])
    assert (home / "qdrant" / "meta.json").is_file()  # the default database
    assert list(workdir.iterdir()) == []  # nothing in the working directory

    code, out, _ = run(capsys, "search", "Which president declared war on poverty?", "-k", "3")
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 6  # a header line and a snippet line per hit
    assert lines[0].startswith(" 1. ") and "1964_lyndon_b_johnson_d" in lines[0]
    scores = [float(line.split()[1]) for line in lines[0::2]]
    assert scores == sorted(scores, reverse=True)

    code, out, _ = run(capsys, "search", "freedom", "--where", "president=Harry S. Truman")
    assert code == 0 and all("1947_harry_s_truman_d" in line for line in out.splitlines()[0::2])

    code, out, _ = run(capsys, "info")
    assert code == 0
    assert out == (
        f"qdrant: embedded Qdrant at {home / 'qdrant'}\n"
        f"documents: {points} points; model {minilm_dir}, dimensions 384, float, "
        "task retrieval.passage\n"
    )

    code, out, _ = run(capsys, "ingest", str(EXAMPLES), "--no-progress")
    assert code == 0 and out.startswith("8 documents: 8 unchanged, 0 chunks embedded, 0 points")


def test_milvus_lite_through_the_cli(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("milvus_lite")
    corpus = write_corpus(workdir / "corpus", CORPUS_V1)
    db = ["--db", "milvus", "--location", str(workdir / "m.db")]
    common = [*db, "--collection", "small"]
    code, out, _ = run(capsys, "ingest", str(corpus), *common, "--chunk-size", "16",
                       "--dimensions", "128", "--no-late-chunking", "--no-progress")  # fmt: skip
    assert code == 0 and out.startswith("5 documents: 0 unchanged")
    code, out, _ = run(capsys, "search", "How long should the dough rise?", "-k", "1", *common)
    assert code == 0 and "  bread  " in out.splitlines()[0]
    code, out, _ = run(capsys, "info", *db)
    assert code == 0 and "small: " in out and "dimensions 128, float" in out


def test_pinecone_through_the_cli(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pinecone")
    from pinecone_server import running_server

    corpus = write_corpus(workdir / "corpus", CORPUS_V1)
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    code, _, err = run(capsys, "info", "--db", "pinecone")
    assert code == 1 and err == "error: no Pinecone API key: set PINECONE_API_KEY\n"
    monkeypatch.setenv("PINECONE_API_KEY", "test-key")
    with running_server("test-key") as server:
        db = ["--db", "pinecone", "--location", server.url]
        code, out, _ = run(
            capsys, "ingest", str(corpus), *db, "--chunk-size", "16", "--no-progress"
        )
        assert code == 0 and out.startswith("5 documents: 0 unchanged")
        code, out, _ = run(capsys, "search", "Which piece can jump?", "-k", "1", *db)
        assert code == 0 and "  chess  " in out.splitlines()[0]
        code, out, _ = run(capsys, "info", *db)
        assert out.startswith(f"pinecone: {server.url}\ndocuments: ")
        assert code == 0 and "dimensions 384, float" in out


def test_bad_records_are_listed_and_the_rest_is_ingested(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_corpus(workdir / "corpus", [CORPUS_V1[0], {"id": "x"}, CORPUS_V1[1]])
    code, out, err = run(capsys, "ingest", str(corpus), "--chunk-size", "16", "--no-progress")
    assert code == 1
    assert err.splitlines() == [
        f"error: {corpus}:2: missing 'text'",
        "error: 1 bad record skipped, listed above",
    ]
    assert out.startswith("2 documents: 0 unchanged")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["ingest", "no/such/path"], 2, "error: Invalid value for 'paths': path 'no/such/path'"),
        (["ingest", ".", "--bogus"], 2, "error: No such option: --bogus"),
        (["ingest"], 2, "error: Missing argument 'paths'"),
        (
            ["ingest", ".", "--db", "oracle"],
            2,
            "error: --db must be one of qdrant, milvus, pinecone, got 'oracle'; see",
        ),
        (
            ["ingest", ".", "--chunk-size", "0"],
            2,
            "error: --chunk-size must be at least 1, got 0; see",
        ),
        (["search", "x", "-k", "many"], 2, "error: --top-k takes a whole number, got 'many'; see"),
        (["search", "x", "--where", "novalue"], 2, "error: Invalid value for '--where'"),
        (["search", "x", "--collection", "nothing"], 1, "error: no embedded Qdrant store at "),
        (["ingest", ".", "--model", "/no/such/model"], 1, "error: model '/no/such/model' is "),
        (["ingest", ".", "--dimensions", "999"], 2, "error: Invalid value for '--dimensions'"),
        (
            ["ingest", ".", "--dimensions", "0"],
            2,
            "error: --dimensions must be at least 1, got 0; see",
        ),
        (["delete", "--doc-id", "a", "--all"], 2, "error: Invalid value for '--all' / '--doc"),
        (["ingest", ".", "--db", "milvus", "--binary-quantization"], 2, "error: Invalid value"),
        (
            ["ingest", ".", "--model", "http://127.0.0.1:9", "--quantization", "int8"],
            2,
            "error: Invalid value for '--quantization'",
        ),
        (["ingest", ".", "--quantization", "int4"], 2, "error: --quantization must be one of int8"),
    ],
)
def test_errors_are_one_line(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    (workdir / "a.txt").write_text("Some text.", encoding="utf-8")
    got, out, err = run(capsys, *args)
    assert got == code
    assert len(err.splitlines()) == 1 and err.startswith(message), err
    assert out == ""
    # Nothing was created before the error, here or in the store's home.
    assert [p.name for p in workdir.iterdir()] == ["a.txt"]
    assert list(Path(os.environ["JINA_CONNECTORS_HOME"]).iterdir()) == []


@pytest.mark.parametrize("command", [[], ["ingest"], ["search"], ["info"], ["delete"]])
def test_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, *command, "--help")
    assert code == 0 and err == ""
    assert out.startswith(f"Usage: jina-connectors {' '.join(command)}".rstrip() + " ")


def test_a_missing_model_is_one_line_in_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Some text.", encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "JINA_CONNECTORS_MODEL": str(tmp_path / "none")}
    result = subprocess.run(
        [sys.executable, "-m", "jina_connectors.cli", "ingest", "a.txt"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: model {str(tmp_path / 'none')!r} is not a directory")
    assert "--model DIR or $JINA_CONNECTORS_MODEL=DIR" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr


def test_quantization_flag_loads_the_int8_model_for_ingest_and_search(
    workdir: Path, minilm_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import warnings

    import torch

    import embedder_core.registry

    (workdir / "a.txt").write_text(
        "Tomatoes grow best in full sun. Rust has no garbage collector.", encoding="utf-8"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # QuantizationWarning where int8 is not faster
        code, out, err = run(
            capsys, "ingest", "a.txt", "-c", "q8", "--quantization", "int8", "--no-progress"
        )
        assert code == 0, err
        code, out, err = run(capsys, "search", "tomatoes", "-c", "q8", "--quantization", "int8")
    assert code == 0, err
    assert "a.txt" in out
    loaded = [
        (options.get("quantization"), embedder.quantization)
        for model, options, embedder in embedder_core.registry._CACHE
        if model == str(minilm_dir)
    ]
    from embedder_core.models.quantization import int8_support

    usable = int8_support(torch.device("cpu")).usable
    assert ("int8", "int8" if usable else None) in loaded


def test_search_refuses_a_query_model_narrower_than_the_collection(
    workdir: Path, minilm_dir: Path, tiny_jina_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "a.txt").write_text("Lyndon Johnson declared a war on poverty.", encoding="utf-8")
    assert run(capsys, "ingest", "a.txt", "--no-progress")[0] == 0  # MiniLM: 384 dimensions
    code, out, err = run(capsys, "search", "poverty", "--model", str(tiny_jina_dir))
    assert (code, out) == (2, "")
    assert err.startswith("error: Invalid value for '--model': ")
    assert "gives 32 dimensions; the collection holds 384-dimensional vectors of" in err
