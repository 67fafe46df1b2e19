"""Source paths are checked once, at the edge (``check_sources``): the run reads the checked
sources without checking them again, and the CLI's messages name the argument or flag."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jina_connectors.errors import SourcePathError
from jina_connectors.ingestion import documents
from jina_connectors.ingestion.documents import CheckedSources, check_sources, iter_documents


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("Alpha text.", encoding="utf-8")
    (docs / "sub" / "b.txt").write_text("Beta text.", encoding="utf-8")
    (docs / "c.jsonl").write_text('{"text": "Gamma."}\n{"id": "d", "text": "Delta."}\n')
    return docs


def spy_path_checks(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the real path check's calls per path (it still runs)."""
    calls: Counter[str] = Counter()
    check = documents.check_source_path

    def counted(path: Any, root: Any) -> None:
        calls[str(path)] += 1
        check(path, root)

    monkeypatch.setattr(documents, "check_source_path", counted)
    return calls


def test_checked_sources_read_as_the_paths_do(folder: Path) -> None:
    paths = [folder / "a.md", folder / "sub", folder / "c.jsonl"]
    checked = check_sources(paths, root=folder, sync=True)
    assert isinstance(checked, CheckedSources) and checked.root == folder
    assert checked.scopes is not None and len(checked.scopes) == 3
    assert list(iter_documents(checked)) == list(iter_documents(paths, root=folder))
    # Checked once: the same sources come back as they are.
    assert check_sources(checked, root=folder, sync=True) is checked
    assert check_sources(checked) is checked
    # Another root is another check.
    with pytest.raises(SourcePathError, match="lies outside the root"):
        check_sources(checked, root=folder / "sub")


def test_each_path_is_checked_once_in_a_python_run(
    folder: Path, monkeypatch: pytest.MonkeyPatch, minilm_dir: Path
) -> None:
    from jina_connectors import QdrantSink
    from jina_connectors.ingestion.options import IngestOptions
    from jina_connectors.ingestion.run import ingest

    calls = spy_path_checks(monkeypatch)
    paths = [folder / "a.md", folder / "sub"]
    options = IngestOptions(root=folder, sync=True, show_progress=False, chunk_size=32)
    with QdrantSink("docs", location=":memory:") as sink:
        report = ingest(paths, sink, model=str(minilm_dir), options=options)
    assert report.documents == 2 and report.synced
    assert calls == Counter({str(p): 1 for p in paths})


def test_each_path_is_checked_once_in_a_cli_run(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    minilm_dir: Path,
) -> None:
    from jina_connectors.cli import main

    monkeypatch.chdir(folder.parent)
    monkeypatch.setenv("JINA_CONNECTORS_MODEL", str(minilm_dir))
    calls = spy_path_checks(monkeypatch)
    args = ["ingest", "docs/a.md", "docs", "--root", "docs", "--sync", "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err
    assert calls == Counter({"docs/a.md": 1, "docs": 1})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nothing.md"], "error: Invalid value for 'paths': path 'nothing.md' does not exist"),
        (["docs", "--root", "nowhere"], "error: Invalid value for '--root': dir 'nowhere' does "),
        (["docs", "--root", "docs/a.md"], "error: Invalid value for '--root': the root is not a"),
        (["docs/a.md", "--root", "docs/sub"], "error: Invalid value for '--root': docs/a.md: lies"),
        (["notes.pdf"], "error: Invalid value for 'PATHS': notes.pdf: unsupported file type"),
    ],
)
def test_cli_messages_name_the_argument_or_flag(
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    from jina_connectors.cli import main

    monkeypatch.chdir(folder.parent)
    (folder.parent / "notes.pdf").write_bytes(b"%PDF")
    assert main(["ingest", *args]) == 2
    assert capsys.readouterr().err.startswith(message)
