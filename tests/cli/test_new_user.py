"""What a new user tripped on (issue 20): a placeholder file that blocked --sync, messages
that were not true, and duplicates through --root. Real embedded Qdrant and MiniLM."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from paths import REPO_ROOT

from jina_connectors.cli import main

pytest.importorskip("qdrant_client")


@pytest.fixture
def workdir(tmp_path: Path, minilm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working directory, with MiniLM as the default model."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JINA_CONNECTORS_MODEL", str(minilm_dir))
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def stored_doc_ids(collection: str = "documents") -> set[str]:
    from jina_connectors import QdrantSink

    with QdrantSink(collection, read_only=True) as sink:
        return sink.doc_ids()


def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any) -> Any:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("jina_connectors.cli.models.load_model", refuse)


def absolute(path: Path) -> str:
    return path.resolve().as_posix()


# -- 1. an empty file does not block --sync ------------------------------------------------


def test_an_empty_placeholder_file_does_not_block_sync(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "sync: nothing deleted, because of the bad records listed above" (exit 1),
    and search still found the deleted b.md."""
    notes = workdir / "n2"
    notes.mkdir()
    (notes / "a.md").write_text("alpha owls\n", encoding="utf-8")
    (notes / "b.md").write_text("beta hawks\n", encoding="utf-8")
    (notes / "placeholder.md").write_text("", encoding="utf-8")
    code, out, err = run(capsys, "ingest", "n2", "--sync", "--no-progress")
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == [
        "skipped 1 empty file: n2/placeholder.md",
        "sync: deleted 0 documents (0 points) no longer under the given paths",
    ]
    (notes / "b.md").unlink()
    code, out, err = run(capsys, "ingest", "n2", "--sync", "--no-progress")
    assert (code, err) == (0, "")
    assert out.splitlines()[2] == (
        "sync: deleted 1 document (1 point) no longer under the given paths"
    )
    assert stored_doc_ids() == {absolute(notes / "a.md")}
    code, out, _ = run(capsys, "search", "hawks")
    assert code == 0 and "b.md" not in out


def test_a_bad_record_keeps_only_its_own_document_from_sync(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: one unreadable file stopped the deletion of every deleted file."""
    notes = workdir / "notes"
    notes.mkdir()
    for name, text in (("a.md", "alpha owls"), ("b.md", "beta hawks"), ("c.md", "gamma")):
        (notes / name).write_text(text, encoding="utf-8")
    assert run(capsys, "ingest", "notes", "--sync", "--no-progress")[0] == 0
    (notes / "b.md").unlink()
    (notes / "c.md").write_bytes(b"\xff\xfe binary now")
    code, out, err = run(capsys, "ingest", "notes", "--sync", "--no-progress")
    assert code == 1
    assert err.splitlines() == [
        f"error: {Path('notes') / 'c.md'}: cannot read: 'utf-8' codec can't decode byte 0xff "
        "in position 0: invalid start byte",
        "error: 1 bad record skipped, listed above",
    ]
    assert out.splitlines()[1] == (
        "sync: deleted 1 document (1 point) no longer under the given paths; kept 1 "
        "document of the files with bad records listed above"
    )
    assert stored_doc_ids() == {absolute(notes / "a.md"), absolute(notes / "c.md")}


# -- 2. messages that are true --------------------------------------------------------------


def test_sync_of_a_single_file_says_what_it_does(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "nothing deleted, because of the bad records listed above", with none."""
    (workdir / "notes" / "sub").mkdir(parents=True)
    readme = workdir / "notes" / "sub" / "readme.md"
    readme.write_text("Read me first.", encoding="utf-8")
    code, out, err = run(capsys, "ingest", "notes/sub/readme.md", "--sync", "--no-progress")
    assert (code, err) == (0, "")
    assert out.splitlines()[1] == (
        "sync: nothing to delete; a .txt/.md file given by itself owns only its own "
        "document, deleted when the file is empty (give its folder to delete the documents "
        "of deleted files)"
    )
    readme.write_text("  \n", encoding="utf-8")  # emptied: what it stored goes
    code, out, _ = run(capsys, "ingest", "notes/sub/readme.md", "--sync", "--no-progress")
    assert code == 0 and out.splitlines()[1:] == [
        "skipped 1 empty file: notes/sub/readme.md",
        "sync: deleted 1 document (1 point) no longer under the given paths",
    ]


def test_delete_takes_a_relative_path_as_ingest_does(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ``delete --doc-id notes/a.md`` said "nothing to delete"."""
    (workdir / "notes").mkdir()
    for name in ("a.md", "b.md"):
        (workdir / "notes" / name).write_text(f"Text of {name}.", encoding="utf-8")
    assert run(capsys, "ingest", "notes", "--no-progress")[0] == 0
    no_model_load(monkeypatch)
    code, out, _ = run(capsys, "delete", "--doc-id", "notes/a.md", "--yes")
    assert code == 0 and out.startswith("deleted 1 document (1 point) from qdrant collection")
    assert stored_doc_ids() == {absolute(workdir / "notes" / "b.md")}
    code, out, _ = run(capsys, "delete", "--prefix", "./notes/", "--yes")
    assert code == 0 and out.startswith("deleted 1 document (1 point)")
    assert stored_doc_ids() == set()


def test_delete_without_a_terminal_does_not_blame_a_flag_not_given(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "Invalid value for '--yes'", although --yes was not given."""
    (workdir / "a.md").write_text("Alpha.", encoding="utf-8")
    assert run(capsys, "ingest", "a.md", "--no-progress")[0] == 0
    code, out, err = run(capsys, "delete", "--doc-id", "a.md")
    assert code == 2 and out == ""
    assert err == (
        "error: would delete 1 document (1 point) from qdrant collection 'documents' in "
        f"embedded Qdrant at {Path(os.environ['JINA_CONNECTORS_HOME']) / 'qdrant'}, but stdin "
        "is not a terminal to ask for confirmation on; add --yes to delete without asking\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", ".", "--dimensions", "0"], "--dimensions must be at least 1, got 0"),
        (
            ["ingest", ".", "--db", "sqlite"],
            "--db must be one of qdrant, milvus, pinecone, got 'sqlite'",
        ),
        (["search", "x", "--width", "3"], "--width must be at least 20, got 3"),
        (["ingest", ".", "--gpus-per-actor", "x"], "--gpus-per-actor takes a number, got 'x'"),
    ],
)
def test_refused_flag_values_are_one_plain_sentence(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    """Before: pydantic's wording ("Input should be greater than or equal to 1", "Value
    error, 'sqlite' is not one of ...")."""
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err == f"error: {message}; see 'jina-connectors {args[0]} --help'\n"


def test_a_mismatched_collection_gives_its_advice_once(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "a.md").write_text("Alpha.", encoding="utf-8")
    assert run(capsys, "ingest", "a.md", "--dimensions", "64", "--no-progress")[0] == 0
    no_model_load(monkeypatch)
    code, _, err = run(capsys, "ingest", "a.md", "--dimensions", "32", "--no-progress")
    assert code == 1 and len(err.splitlines()) == 1
    assert err.lower().count("use another") == 1
    assert err.endswith(
        "Use another --collection, or reset this one with 'jina-connectors delete -c "
        "documents --all'\n"
    )


def test_counts_are_singular_and_an_unchanged_run_shows_no_rate(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: "1 chunks", "1 documents", and "0.0 points/s" on an unchanged run."""
    (workdir / "a.md").write_text("One sentence.", encoding="utf-8")
    code, out, _ = run(capsys, "ingest", "a.md", "--no-progress")
    assert code == 0
    assert out.startswith("1 document: 0 unchanged, 1 chunk embedded, 1 point written in ")
    assert out.rstrip().endswith(" holds 1 point") and " points/s)" in out
    code, out, _ = run(capsys, "ingest", "a.md", "--no-progress")
    assert out.startswith("1 document: 1 unchanged, 0 chunks embedded, 0 points written in ")
    assert "points/s" not in out


# -- 3. no silent duplicates through --root -------------------------------------------------


def test_another_root_than_the_collections_is_refused_naming_the_flag(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the same 4 files without and with --root made 8 points, without a word."""
    docs = workdir / "repo" / "docs"
    docs.mkdir(parents=True)
    for i in range(4):
        (docs / f"{i}.md").write_text(f"Text number {i}.", encoding="utf-8")
    code, out, _ = run(capsys, "ingest", "repo/docs", "--no-progress")
    assert code == 0 and out.rstrip().endswith("holds 4 points")
    first = absolute(docs / "0.md")
    with monkeypatch.context() as patch:
        no_model_load(patch)
        code, out, err = run(capsys, "ingest", "repo/docs", "--root", "repo", "--no-progress")
    assert code == 1 and out == ""
    assert err.startswith("error: Qdrant collection 'documents' in embedded Qdrant at ")
    assert err.endswith(
        f" holds {Path('repo/docs/0.md')} as '{first}', ingested without --root; this run "
        "with --root repo would store it a second time as 'docs/0.md'. Ingest without "
        "--root as before, or use another --collection\n"
    )
    # The other way round, and another root, into a collection written with --root repo.
    assert (
        run(capsys, "ingest", "repo/docs", "--root", "repo", "-c", "rel", "--no-progress")[0] == 0
    )
    with monkeypatch.context() as patch:
        no_model_load(patch)
        for flags in ([], ["--root", "repo/docs"]):
            code, _, err = run(capsys, "ingest", "repo/docs", "-c", "rel", *flags, "--no-progress")
            assert code == 1 and "as 'docs/0.md', ingested with --root " in err, flags
            assert f"Ingest with --root {(workdir / 'repo').resolve()} as before" in err
    assert (
        run(capsys, "ingest", "repo/docs", "--root", "repo", "-c", "rel", "--no-progress")[0] == 0
    )
    assert len(stored_doc_ids("rel")) == len(stored_doc_ids()) == 4


# -- 6. cold commands -----------------------------------------------------------------------

PROBE = (
    "import json, sys\n"
    "from jina_connectors.cli import main\n"
    "code = main(json.loads(sys.argv[1]))\n"
    "heavy = ['torch', 'transformers', 'qdrant_client', 'uvicorn', 'fastapi']\n"
    "print(json.dumps([code, [m for m in heavy if m in sys.modules]]))\n"
)


def probe(args: list[str], cwd: Path) -> tuple[int, list[str], str]:
    """Run the CLI in a fresh process: its exit code, which heavy packages it imported, and
    its stdout before the probe's own line."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stdout.splitlines()
    code, heavy = json.loads(lines[-1])
    return code, heavy, "\n".join(lines[:-1]) + result.stderr


def test_an_unchanged_re_ingest_never_loads_the_model(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: every re-ingest loaded the model (7-9 s cold) to find nothing to do."""
    notes = workdir / "notes"
    notes.mkdir()
    for i in range(3):
        (notes / f"{i}.md").write_text(f"Note {i} about owls.", encoding="utf-8")
    assert run(capsys, "ingest", "notes", "--no-progress")[0] == 0
    code, heavy, out = probe(["ingest", "notes", "--no-progress"], workdir)
    assert code == 0 and out.startswith("3 documents: 3 unchanged, 0 chunks embedded"), out
    assert "torch" not in heavy and "transformers" not in heavy
    # A changed file loads it, and only that file is embedded.
    (notes / "1.md").write_text("Note 1 is now about hawks.", encoding="utf-8")
    code, heavy, out = probe(["ingest", "notes", "--no-progress"], workdir)
    assert code == 0 and out.startswith("3 documents: 2 unchanged, 1 chunk embedded"), out
    assert "torch" in heavy


def test_info_on_a_locked_store_answers_before_importing_the_database_client(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: info imported qdrant-client (about 3 s) before it found the lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir / "store")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        code, heavy, out = probe(["info", "--location", "store"], workdir)
    finally:
        holder.kill()
        holder.wait()
    assert code == 1 and heavy == []
    assert out.startswith(f"error: the embedded Qdrant store {workdir / 'store'} is in use by")


HOLDER = (
    "import sys, time\n"
    "from jina_connectors import QdrantSink\n"
    "sink = QdrantSink('docs', location=sys.argv[1])\n"
    "print('ready', flush=True)\n"
    "time.sleep(300)\n"
)


# -- 5. serve answers like the rest of the CLI ----------------------------------------------


def test_serve_checks_the_model_and_the_port_before_the_web_stack(
    workdir: Path, minilm_dir: Path
) -> None:
    """Before: a missing model folder took 4-6 s and printed Python-API hints; a busy port
    printed uvicorn's [Errno 98] between its start and stop lines and exited 3."""
    code, heavy, out = probe(["serve", "--model", str(workdir / "none")], workdir)
    assert code == 1 and heavy == []
    assert out == (
        f"error: model {str(workdir / 'none')!r} is not a directory. Pass a model folder "
        "(config.json, model.safetensors, tokenizer.json) with --model DIR or "
        "$JINA_CONNECTORS_MODEL=DIR\n"
    )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, heavy, out = probe(
            ["serve", "--model", str(minilm_dir), "--port", str(port)], workdir
        )
    assert code == 1 and heavy == []
    assert out == (
        f"error: --port {port}: 127.0.0.1:{port} is in use by another process; pass another "
        "--port (0: any free port), or stop that process\n"
    )


# -- 5 and 6. Ray: no start for a small or unchanged input, and none of its own noise --------


def test_engine_ray_on_a_small_input_runs_the_local_engine_and_says_so(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a 5-file folder started a local Ray (2.3x the local engine's time)."""
    ray = pytest.importorskip("ray")
    (workdir / "notes").mkdir()
    (workdir / "notes" / "a.md").write_text("Alpha owls.", encoding="utf-8")
    code, out, err = run(capsys, "ingest", "notes", "--engine", "ray", "--no-progress")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == (
        "ray: 0 KiB of input is under 4 MiB, less than starting a local Ray costs (10-20 s); "
        "running the local engine instead (name a cluster with --ray-address, or the pool "
        "with --actors, to use Ray)"
    )
    assert out.splitlines()[1].startswith("1 document: 0 unchanged, 1 chunk embedded")
    assert not ray.is_initialized()


def test_an_unchanged_ray_run_starts_no_ray_and_embeds_nothing(
    workdir: Path, minilm_dir: Path
) -> None:
    """Before: an unchanged re-run on Ray started Ray and its hashing tasks (22 s)."""
    ray = pytest.importorskip("ray")
    from jina_connectors import QdrantSink, ingest
    from jina_connectors.ray import ingest_documents

    (workdir / "notes").mkdir()
    for i in range(3):
        (workdir / "notes" / f"{i}.md").write_text(f"Note {i} on owls.", encoding="utf-8")
    with QdrantSink("docs", location=workdir / "store") as sink:
        ingest([workdir / "notes"], sink, model=str(minilm_dir), show_progress=False)
        before = sink.document_points()
        report = ingest_documents(
            [workdir / "notes"], sink, model=str(minilm_dir), show_progress=False, sync=True
        )
        assert (report.documents, report.skipped, report.chunks) == (3, 3, 0)
        assert report.write_path_reason.endswith("so no Ray work ran")
        assert report.synced and sink.document_points() == before
    assert not ray.is_initialized()


@pytest.mark.slow
def test_engine_ray_prints_none_of_rays_own_lines(workdir: Path) -> None:
    """Before: a token-authentication WARNING, about 20 INFO lines of Ray Data, an
    error-level core_worker.cc line about max_restarts, and a progress-bar notice."""
    pytest.importorskip("ray")
    (workdir / "notes").mkdir()
    (workdir / "notes" / "a.md").write_text("Alpha owls.", encoding="utf-8")
    command = [sys.executable, "-m", "jina_connectors.cli", "ingest", "notes", "--no-progress"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    env.pop("RAY_ADDRESS")
    result = subprocess.run(
        [*command, "--engine", "ray", "--actors", "1"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    noise = [line for line in result.stderr.splitlines() if "logging.cc" not in line]
    assert noise == [], result.stderr
    assert result.stdout.splitlines()[1].startswith("1 document: 0 unchanged, 1 chunk")


def test_the_readme_synopsis_names_every_command_and_the_debug_variable() -> None:
    """Before: the synopsis lacked `serve`, and JINA_CONNECTORS_DEBUG was only in a
    docstring."""
    import re

    import typer

    from jina_connectors.cli import app

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    synopsis = next(
        block
        for block in re.findall(r"^```text\n(.*?)^```$", readme, re.MULTILINE | re.DOTALL)
        if block.startswith("jina-connectors ingest")
    )
    listed = set(re.findall(r"^jina-connectors (\w+)", synopsis, re.MULTILINE))
    assert listed == set(typer.main.get_command(app).commands)  # type: ignore[attr-defined]
    assert "`JINA_CONNECTORS_DEBUG=1`" in readme
