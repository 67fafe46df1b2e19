"""The CLI as a tool people live in: ids that never collide, sync and delete, stores that
nothing creates by reading, one stable default location, the lock, answers before the model
loads, flags named in messages, and Ctrl-C that says what was stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1

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


def holds(out: str) -> int:
    """The point count of an ingest summary line."""
    return int(out.rsplit("holds ", 1)[1].split()[0])


def home() -> Path:
    return Path(os.environ["JINA_CONNECTORS_HOME"])


def stored_doc_ids(collection: str = "documents", location: Path | None = None) -> set[str]:
    from jina_connectors import QdrantSink

    with QdrantSink(collection, location=location, read_only=True) as sink:
        return sink.doc_ids()


def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if the command loads a model."""

    def refuse(*args: Any) -> Any:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("jina_connectors.cli.models.load_model", refuse)


# -- 1. document ids -----------------------------------------------------------------------


def test_same_file_names_in_two_folders_are_two_documents(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: a single file's id was its base name, so projB/notes.md replaced
    projA/notes.md (1 point left, exit 0)."""
    for project, text in (("projA", "tomatoes need sun"), ("projB", "Rust has no GC")):
        (workdir / project).mkdir()
        (workdir / project / "notes.md").write_text(text, encoding="utf-8")
    assert run(capsys, "ingest", "projA/notes.md", "-c", "same", "--no-progress")[0] == 0
    code, out, _ = run(capsys, "ingest", "projB/notes.md", "-c", "same", "--no-progress")
    assert code == 0 and holds(out) == 2
    assert stored_doc_ids("same") == {
        (workdir / "projA" / "notes.md").resolve().as_posix(),
        (workdir / "projB" / "notes.md").resolve().as_posix(),
    }
    code, out, _ = run(capsys, "search", "tomatoes", "-c", "same", "-k", "1")
    assert code == 0 and "projA/notes.md" in out.splitlines()[0]


def test_a_folder_then_its_subfolder_stores_each_file_once(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: ``ingest mydocs`` then ``ingest mydocs/sub`` stored the sub files twice."""
    (workdir / "mydocs" / "sub").mkdir(parents=True)
    for i, doc in enumerate(CORPUS_V1):
        folder = "mydocs/sub" if i % 2 else "mydocs"
        (workdir / folder / f"{doc['id']}.md").write_text(doc["text"], encoding="utf-8")
    code, out, _ = run(capsys, "ingest", "mydocs", "--chunk-size", "16", "--no-progress")
    points = holds(out)
    code, out, _ = run(capsys, "ingest", "mydocs/sub", "--chunk-size", "16", "--no-progress")
    assert code == 0 and out.startswith("2 documents: 2 unchanged, 0 chunks embedded")
    assert holds(out) == points
    # Any spelling of the same files: ./, absolute, .., a symlinked folder.
    (workdir / "link").symlink_to(workdir / "mydocs")
    for spelling in ("./mydocs", str(workdir / "mydocs"), "mydocs/sub/../", "link"):
        code, out, _ = run(capsys, "ingest", spelling, "--chunk-size", "16", "--no-progress")
        assert code == 0 and out.startswith("5 documents: 5 unchanged"), spelling
        assert holds(out) == points


def test_root_makes_ids_relative_and_refuses_files_outside_it(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "repo" / "docs").mkdir(parents=True)
    (workdir / "repo" / "docs" / "a.md").write_text("Alpha text.", encoding="utf-8")
    (workdir / "outside.md").write_text("Outside.", encoding="utf-8")
    with monkeypatch.context() as patch:
        no_model_load(patch)
        code, out, err = run(capsys, "ingest", "outside.md", "--root", "repo")
    assert code == 2 and out == ""
    assert err.startswith("error: Invalid value for '--root': outside.md: lies outside the root")
    assert list(home().iterdir()) == []
    code, _, _ = run(capsys, "ingest", "repo/docs", "--root", "repo", "--no-progress")
    assert code == 0 and stored_doc_ids() == {"docs/a.md"}


# -- 2. sync and delete --------------------------------------------------------------------


def test_sync_deletes_the_points_of_deleted_files(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = workdir / "docs"
    docs.mkdir()
    for doc in CORPUS_V1:
        (docs / f"{doc['id']}.md").write_text(doc["text"], encoding="utf-8")
    code, out, _ = run(capsys, "ingest", docs, "--sync", "--chunk-size", "16", "--no-progress")
    assert (
        code == 0
        and out.splitlines()[1]
        == "sync: deleted 0 documents (0 points) no longer under the given paths"
    )
    before = holds(out)
    (docs / "bread.md").unlink()
    (docs / "tea.md").unlink()
    code, out, _ = run(capsys, "ingest", docs, "--sync", "--chunk-size", "16", "--no-progress")
    deleted = out.splitlines()[1]
    assert code == 0 and deleted.startswith("sync: deleted 2 documents (")
    gone = int(deleted.split("(")[1].split()[0])
    assert holds(out) == before - gone and gone >= 2
    assert {Path(d).stem for d in stored_doc_ids()} == {"volcano", "chess", "whales"}
    # Without --sync nothing is deleted.
    (docs / "chess.md").unlink()
    code, out, _ = run(capsys, "ingest", docs, "--chunk-size", "16", "--no-progress")
    assert len(out.splitlines()) == 1 and holds(out) == before - gone


def test_delete_documents_prefixes_and_collections(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus = workdir / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in CORPUS_V1), encoding="utf-8")
    code, out, _ = run(capsys, "ingest", corpus, "--chunk-size", "16", "--no-progress")
    assert code == 0
    no_model_load(monkeypatch)

    # Not on a terminal and no --yes: refused, nothing deleted.
    code, out, err = run(capsys, "delete", "--doc-id", "bread")
    assert code == 2 and "not a terminal" in err and "add --yes" in err
    assert "bread" in stored_doc_ids()
    # On a terminal, a "no" keeps everything.
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": "n")
    code, out, _ = run(capsys, "delete", "--doc-id", "bread")
    assert code == 1 and "bread" in stored_doc_ids()

    code, out, _ = run(capsys, "delete", "--doc-id", "bread", "--doc-id", "nope", "--yes")
    assert code == 0 and out.startswith("deleted 1 document (")
    assert stored_doc_ids() == {"volcano", "chess", "whales", "tea"}
    code, out, _ = run(capsys, "delete", "--prefix", "wh", "--prefix", "te", "-y")
    assert code == 0 and stored_doc_ids() == {"volcano", "chess"}
    code, out, _ = run(capsys, "delete", "--prefix", "zzz", "-y")
    assert code == 0 and out.startswith("nothing to delete")
    code, out, _ = run(capsys, "delete", "--all", "--yes")
    assert code == 0 and out.startswith("deleted the whole qdrant collection 'documents'")
    code, out, _ = run(capsys, "info")
    assert out.splitlines()[1:] == ["no collections"]
    code, _, err = run(capsys, "delete", "--all", "--yes")
    assert code == 1 and "collection 'documents' is missing" in err


# -- 3. reading creates nothing; a failed first ingest leaves no collection ---------------


@pytest.mark.parametrize(
    "args",
    [
        ["search", "x"],
        ["info", "--location", "typo_dir"],
        ["info", "--db", "milvus", "--location", "typo.db"],
        ["search", "x", "--db", "milvus", "--location", "typo.db"],
        ["delete", "--all", "--yes", "--location", "typo_dir"],
    ],
)
def test_read_commands_create_nothing_and_name_the_path(
    workdir: Path, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """Before: search and info created empty stores where they looked."""
    code, out, err = run(capsys, *args)
    looked = workdir / args[-1] if "--location" in args else home() / "qdrant"
    assert code == 1 and out == ""
    assert err.startswith("error: no ") and f" store at {looked};" in err
    assert list(workdir.iterdir()) == [] and list(home().iterdir()) == []


def test_a_failed_first_ingest_leaves_no_collection(
    workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = workdir / "bad.jsonl"
    corpus.write_text('{"id": "no text"}\n{not json\n', encoding="utf-8")
    code, _, err = run(capsys, "ingest", corpus, "--no-progress")
    assert code == 1 and err.splitlines()[-1] == "error: 2 bad records skipped, listed above"
    assert list(home().iterdir()) == []  # no collection, and so no store either
    (workdir / "good.md").write_text("Good text.", encoding="utf-8")
    assert run(capsys, "ingest", "good.md", "--no-progress")[0] == 0
    code, _, err = run(capsys, "ingest", corpus, "-c", "other", "--no-progress")
    assert code == 1
    code, out, _ = run(capsys, "info")
    assert [line.split(":")[0] for line in out.splitlines()[1:]] == ["documents"]


def test_ctrl_c_before_anything_is_written_says_so_and_leaves_nothing(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "a.md").write_text("Alpha.", encoding="utf-8")

    def interrupted(model: Any, quantization: Any = None) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr("jina_connectors.cli.models.load_model", interrupted)
    code, out, err = run(capsys, "ingest", "a.md", "--no-progress")
    assert code == 130 and out == ""
    assert err == (
        "error: interrupted before any document was stored in qdrant collection 'documents' "
        f"in embedded Qdrant at {home() / 'qdrant'}; nothing was written (a document is stored "
        "only whole: its chunks' vectors depend on all of its text)\n"
    )
    assert list(home().iterdir()) == []


# -- 4. one default location ----------------------------------------------------------------


def test_the_default_store_is_found_from_any_directory(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: ./.jina_connectors was relative to the working directory."""
    (workdir / "a" / "b").mkdir(parents=True)
    (workdir / "a" / "doc.md").write_text("The knight jumps over pieces.", encoding="utf-8")
    monkeypatch.chdir(workdir / "a")
    assert run(capsys, "ingest", "doc.md", "--no-progress")[0] == 0
    monkeypatch.chdir(workdir / "a" / "b")
    code, out, _ = run(capsys, "search", "knight", "-k", "1")
    assert code == 0 and "a/doc.md" in out
    code, out, _ = run(capsys, "info")
    assert out.splitlines()[0] == f"qdrant: embedded Qdrant at {home() / 'qdrant'}"
    assert not (workdir / "a" / ".jina_connectors").exists()


def test_the_default_home_follows_xdg_without_jina_connectors_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jina_connectors import store

    monkeypatch.delenv("JINA_CONNECTORS_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert store.default_qdrant_path() == tmp_path / "data" / "jina-connectors" / "qdrant"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    expected = tmp_path / "me" / ".local" / "share" / "jina-connectors" / "milvus.db"
    assert store.default_milvus_path() == expected


# -- 5. the lock ----------------------------------------------------------------------------

HOLDER = textwrap.dedent(
    """
    import sys, time
    kind, location = sys.argv[1], sys.argv[2]
    if kind == "qdrant":
        from jina_connectors import QdrantSink as Sink
    elif kind == "milvus":
        from jina_connectors import MilvusSink as Sink
    else:
        from qdrant_client import QdrantClient
        Sink = lambda collection, location: QdrantClient(path=location)
    holder = Sink("docs", location=location)
    print("ready", flush=True)
    time.sleep(300)
    """
)


@pytest.fixture
def hold(tmp_path: Path) -> Iterator[Any]:
    """``hold(kind, location)``: a second process that keeps a store open."""
    processes: list[subprocess.Popen[str]] = []

    def start(kind: str, location: Path) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, kind, str(location)],
            stdout=subprocess.PIPE,
            text=True,
        )
        processes.append(process)
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


@pytest.mark.parametrize("kind", ["qdrant", "client"])
def test_a_locked_qdrant_folder_is_named_before_the_model_loads(
    workdir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    hold: Any,
    kind: str,
) -> None:
    """Before: a second ingest failed after the model load, with Qdrant's own message."""
    (workdir / "a.md").write_text("Alpha.", encoding="utf-8")
    folder = workdir / "store"
    holder = hold(kind, folder)
    no_model_load(monkeypatch)
    who = f"pid {holder.pid} (python -c ...)" if kind == "qdrant" else "another process"
    for args in (["ingest", "a.md"], ["search", "x", "-c", "docs"], ["info"]):
        code, out, err = run(capsys, *args, "--location", folder)
        assert code == 1 and out == "", args
        assert err == (
            f"error: the embedded Qdrant store {folder} is in use by {who}; it can be open in "
            "one process at a time. Wait for it, or run a Qdrant server and pass --location "
            "http://HOST:PORT for concurrent use\n"
        ), args


def test_a_locked_milvus_lite_file_is_named(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, hold: Any
) -> None:
    pytest.importorskip("milvus_lite")
    (workdir / "a.md").write_text("Alpha.", encoding="utf-8")
    holder = hold("milvus", workdir / "m.db")
    no_model_load(monkeypatch)
    code, _, err = run(capsys, "ingest", "a.md", "--db", "milvus", "--location", "m.db")
    assert code == 1
    assert err.startswith(
        f"error: the embedded Milvus Lite store {workdir / 'm.db'} is in use by pid "
        f"{holder.pid} (python -c ...)"
    )
    assert "run a Milvus server and pass --location http://HOST:PORT" in err


# -- 6. answers before the model loads, without torch ---------------------------------------


def test_errors_that_need_no_model_import_no_torch(
    workdir: Path, minilm_dir: Path, hold: Any, minilm: Any
) -> None:
    """Each of these fails before the model loads, and without importing torch (which,
    with the model load, cost 5-10 s before any of them was reported)."""
    from jina_connectors import QdrantSink, ingest

    (workdir / "a.md").write_text("Alpha.", encoding="utf-8")
    with QdrantSink("plain", location=workdir / "store") as sink:
        ingest(["An existing document."], sink, model=minilm, show_progress=False)
    hold("qdrant", workdir / "locked")
    cases = {
        "dimensions 0": ["ingest", "a.md", "--dimensions", "0"],
        "dimensions over the model's": ["ingest", "a.md", "--dimensions", "999"],
        "no Pinecone key": ["ingest", "a.md", "--db", "pinecone"],
        "Qdrant and ubinary": ["ingest", "a.md", "--embedding-type", "ubinary"],
        "locked folder": ["ingest", "a.md", "--location", "locked"],
        "chunks over the limit": ["ingest", "a.md", "--no-late-chunking", "--chunk-size", "999"],
        "no such model": ["ingest", "a.md", "--model", "no-org/no-model"],
        "quantization flag": [
            *("ingest", "a.md", "-c", "plain", "--location", "store", "--binary-quantization"),
        ],
        "missing collection": ["search", "x", "-c", "nothing", "--location", "store"],
        "window without late chunking": [
            *("ingest", "a.md", "--no-late-chunking", "--late-chunking-window", "64"),
        ],
    }
    code = (
        "import json, sys\n"
        "from jina_connectors.cli import main\n"
        "codes = {name: main(args) for name, args in json.loads(sys.argv[1]).items()}\n"
        "heavy = ['torch', 'transformers', 'embedder_core.embedder']\n"
        "print(json.dumps([codes, [m for m in heavy if m in sys.modules]]))\n"
    )
    env = {**os.environ, "JINA_CONNECTORS_MODEL": str(minilm_dir)}
    env.pop("PINECONE_API_KEY", None)
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cases)],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    codes, heavy = json.loads(result.stdout.splitlines()[-1])
    assert heavy == [], result.stderr
    assert all(code in (1, 2) for code in codes.values()), codes
    errors = result.stderr.splitlines()
    assert len(errors) == len(cases) and all(e.startswith("error: ") for e in errors), errors


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


# -- 8. messages name the flags -------------------------------------------------------------


def test_messages_name_cli_flags(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "a.md").write_text("Alpha text.", encoding="utf-8")
    assert run(capsys, "ingest", "a.md", "--no-progress")[0] == 0
    with monkeypatch.context() as patch:
        no_model_load(patch)
        # --binary-quantization on a collection created without it (before: ignored, exit 0).
        code, _, err = run(capsys, "ingest", "a.md", "--binary-quantization")
        assert code == 1 and err.startswith("error: --binary-quantization: qdrant collection")
        assert "only applies when a collection is created" in err
        # Chunks the model would cut (before: cut without a word).
        code, _, err = run(capsys, "ingest", "a.md", "--no-late-chunking", "--chunk-size", "9999")
        assert code == 2 and err.startswith("error: Invalid value for '--chunk-size': 9999 tokens")
        assert "--no-late-chunking" in err and "--chunk-size 256 or less" in err
        # ubinary on Qdrant (before: "use QdrantSink(binary_quantization=True)").
        code, _, err = run(capsys, "ingest", "a.md", "--embedding-type", "ubinary")
        assert code == 2 and "--binary-quantization" in err and "--db milvus" in err
        assert "QdrantSink" not in err
        # A missing model (before: "local_files_only=True", "model=...", huggingface-cli).
        code, _, err = run(capsys, "ingest", "a.md", "--model", "no-org/no-model")
        assert code == 1 and "--model DIR or $JINA_CONNECTORS_MODEL=DIR" in err
        assert "`hf download no-org/no-model`" in err
        assert "local_files_only" not in err and "model=" not in err
        # The late-chunking window flags are checked before the model loads.
        code, _, err = run(capsys, "ingest", "a.md", "--late-chunking-window", "0")
        assert code == 2 and "--late-chunking-window must be at least 1" in err
    assert run(capsys, "ingest", "a.md", "--chunk-size", "256", "--no-late-chunking")[0] == 0


def test_late_chunking_window_and_overlap_reach_the_embedder(
    workdir: Path, capsys: pytest.CaptureFixture[str], minilm: Any
) -> None:
    """The flags give the vectors of ``LateChunkingOptions(window, overlap)``."""
    from embedder_core import LateChunkingOptions
    from jina_connectors import QdrantSink, ingest

    text = " ".join(f"Sentence {i} is about rivers and hills." for i in range(60))
    (workdir / "long.md").write_text(text, encoding="utf-8")
    flags = ["--late-chunking-window", "64", "--late-chunking-overlap", "16"]
    code, _, _ = run(capsys, "ingest", "long.md", *flags, "--chunk-size", "32", "--no-progress")
    assert code == 0
    with QdrantSink("documents", read_only=True) as sink:
        stored = sink.client.scroll("documents", limit=100, with_vectors=True)[0]
    with QdrantSink("docs", location=":memory:") as reference:
        options = LateChunkingOptions(window=64, overlap=16)
        ingest(
            [workdir / "long.md"],
            reference,
            model=minilm,
            chunk_size=32,
            late_chunking_options=options,
            show_progress=False,
        )
        expected = reference.client.scroll("docs", limit=100, with_vectors=True)[0]
        default = QdrantSink("default", client=reference.client)
        ingest([workdir / "long.md"], default, model=minilm, chunk_size=32, show_progress=False)
        plain = reference.client.scroll("default", limit=100, with_vectors=True)[0]
    got = {p.id: np.asarray(p.vector) for p in stored}
    assert set(got) == {p.id for p in expected} == {p.id for p in plain}
    for point in expected:
        np.testing.assert_allclose(got[point.id], point.vector, atol=1e-6)
    # The window changed the vectors (60 sentences are several 64-token windows).
    assert max(np.abs(got[p.id] - np.asarray(p.vector)).max() for p in plain) > 1e-2


# -- 9. Ctrl-C in a real process ------------------------------------------------------------


def test_sigint_mid_ingest_says_what_was_stored_and_a_rerun_completes(
    workdir: Path, minilm_dir: Path
) -> None:
    corpus = workdir / "corpus"
    corpus.mkdir()
    for i in range(120):
        doc = CORPUS_V1[i % len(CORPUS_V1)]
        (corpus / f"{i:03d}.md").write_text(f"{doc['text']} Copy {i}.", encoding="utf-8")
    command = [sys.executable, "-m", "jina_connectors.cli", "ingest", str(corpus)]
    command += ["--batch-size", "2", "--chunk-size", "16"]
    env = {**os.environ, "JINA_CONNECTORS_MODEL": str(minilm_dir), "COLUMNS": "200"}
    # The child takes Ctrl-C as a user's terminal process does, whatever this process
    # inherited: a suite started in the background ignores SIGINT, and children inherit that.
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    stderr: list[bytes] = []

    def read() -> None:
        assert process.stderr is not None
        while chunk := process.stderr.read1(4096):  # type: ignore[attr-defined]
            stderr.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 180
    while b"docs=" not in b"".join(stderr) and process.poll() is None:
        assert time.monotonic() < deadline, b"".join(stderr)
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=60)
    reader.join(10)  # the only reader of stderr, so no part of it goes elsewhere
    assert process.stdout is not None
    out = process.stdout.read()
    assert process.returncode == 130, b"".join(stderr)
    last = b"".join(stderr).decode().replace("\r", "\n").splitlines()[-1]
    assert last.startswith("error: interrupted: ") and out == b""
    assert last.endswith(
        "run the same command again to complete the ingest (complete documents are skipped)"
    )
    completed = int(last.split("interrupted: ")[1].split()[0])
    assert 0 < completed < 120

    rerun = subprocess.run([*command, "--no-progress"], env=env, capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = rerun.stdout.decode()
    unchanged = int(summary.split("unchanged")[0].split()[-1])
    assert summary.startswith("120 documents: ") and completed <= unchanged < 120
    again = subprocess.run([*command, "--no-progress"], env=env, capture_output=True, timeout=300)
    assert again.stdout.decode().startswith("120 documents: 120 unchanged, 0 chunks")
