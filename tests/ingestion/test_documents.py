"""Reading documents: texts, records, files and folders, their ids, bad records, bad paths."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from ingest_corpus import dump_qdrant

from jina_connectors.ingest import (
    Document,
    EmptyDocumentError,
    InvalidDocumentError,
    ingest,
    iter_documents,
)
from jina_connectors.ingestion.documents import sync_scope

pytest.importorskip("qdrant_client")

from jina_connectors import QdrantSink

SETTINGS: dict[str, Any] = {"chunk_size": 16, "show_progress": False}


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


@pytest.fixture
def sink() -> Iterator[QdrantSink]:
    with QdrantSink("docs", location=":memory:") as s:
        yield s


def fresh_dump(minilm: Any, corpus: Sequence[Any], **settings: Any) -> dict[str, Any]:
    """What a collection holds after ingesting ``corpus`` once into an empty database."""
    with QdrantSink("docs", location=":memory:") as reference:
        ingest(corpus, reference, model=minilm, **{**SETTINGS, **settings})
        return dump_qdrant(reference.client, "docs")


# -- documents in --------------------------------------------------------------------------


def test_documents_from_strings_records_files_and_folders(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Alpha text.", encoding="utf-8")
    (folder / "sub" / "b.md").write_text("# Beta\n\nBeta text.", encoding="utf-8")
    (folder / "c.jsonl").write_text(
        json.dumps({"id": "c1", "text": "Gamma.", "metadata": {"k": 1}, "year": 1862})
        + "\n\n"
        + json.dumps({"text": "Delta."})
        + "\n",
        encoding="utf-8",
    )
    (folder / ".hidden.md").write_text("hidden", encoding="utf-8")
    (folder / "notes.csv").write_text("x,y", encoding="utf-8")
    single = tmp_path / "single.md"
    single.write_text("Single file.", encoding="utf-8")

    items = list(iter_documents([folder, single, "Plain string.", {"id": "r", "text": "Record."}]))
    assert all(isinstance(i, Document) for i in items), items
    docs = {d.id: d for d in items if isinstance(d, Document)}
    text_id = next(iter_documents("Plain string.")).id
    assert text_id.startswith("text-")
    at = folder.resolve().as_posix()  # files are named by their canonical absolute path
    single_id = single.resolve().as_posix()
    delta = hashlib.sha256(b"Delta.").hexdigest()[:16]
    assert list(docs) == [
        f"{at}/a.txt",
        "c1",
        f"{at}/c.jsonl:{delta}",
        f"{at}/sub/b.md",
        single_id,
        text_id,
        "r",
    ]
    assert docs[f"{at}/sub/b.md"].text == "# Beta\n\nBeta text."
    assert docs[f"{at}/sub/b.md"].metadata == {"source": f"{at}/sub/b.md"}
    # Extra keys become metadata; the file is the record's source.
    assert docs["c1"].metadata == {"source": f"{at}/c.jsonl", "k": 1, "year": 1862}
    assert docs["c1"].record == f"{folder / 'c.jsonl'}:1"
    assert docs[f"{at}/c.jsonl:{delta}"].text == "Delta."  # no id: file id and text hash
    assert docs[text_id].text == "Plain string."
    assert docs[single_id].text == "Single file."

    # With a root, file ids are relative to it.
    relative = [d.id for d in iter_documents([folder, single], root=tmp_path)]
    assert relative == [
        "corpus/a.txt",
        "c1",
        f"corpus/c.jsonl:{delta}",
        "corpus/sub/b.md",
        "single.md",
    ]


def test_id_less_jsonl_lines_keep_their_ids_when_other_lines_change(tmp_path: Path) -> None:
    """Before: an id-less line's id was its line number, so removing line 1 renumbered (and
    re-embedded) every line after it. Now the id is the text's hash, repeats numbered in
    file order."""
    corpus = tmp_path / "c.jsonl"
    texts = ["Alpha.", "Beta.", "Alpha.", "Gamma.", "Alpha."]

    def ids(lines: list[str]) -> list[str]:
        corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines), "utf-8")
        return [d.id for d in iter_documents(corpus)]

    first = ids(texts)
    at = corpus.resolve().as_posix()
    key = {t: f"{at}:{hashlib.sha256(t.encode()).hexdigest()[:16]}" for t in [*texts, "Delta."]}
    alpha = key["Alpha."]
    assert first == [alpha, key["Beta."], f"{alpha}.2", key["Gamma."], f"{alpha}.3"]
    # Remove the second line and add one in front: every other line keeps its id.
    changed = ids(["Delta.", "Alpha.", "Alpha.", "Gamma.", "Alpha."])
    assert changed == [key["Delta."], alpha, f"{alpha}.2", key["Gamma."], f"{alpha}.3"]
    # The scope a sync deletes in covers these ids (and the line numbers of older runs).
    prefix, pattern = sync_scope(corpus)
    assert all(pattern.fullmatch(i) for i in [*first, f"{prefix}7"])
    assert not pattern.fullmatch(f"{prefix}own") and not pattern.fullmatch(f"{alpha}x")


def test_empty_files_are_not_bad_records(tmp_path: Path) -> None:
    """Before: an empty placeholder file was a bad record ("'text' is empty")."""
    (tmp_path / "a.md").write_text("Alpha.", encoding="utf-8")
    (tmp_path / "empty.md").write_text("", encoding="utf-8")
    (tmp_path / "blank.txt").write_text(" \n\t", encoding="utf-8")
    (tmp_path / "binary.md").write_bytes(b"\xff\xfe\x00")
    items = list(iter_documents(tmp_path))
    empty = [i for i in items if isinstance(i, EmptyDocumentError)]
    bad = [i for i in items if isinstance(i, InvalidDocumentError) and i not in empty]
    names = ["blank.txt", "empty.md"]
    assert [e.record for e in empty] == [str(tmp_path / name) for name in names]
    assert [e.source_id for e in empty] == [(tmp_path / n).resolve().as_posix() for n in names]
    assert [b.record for b in bad] == [str(tmp_path / "binary.md")]
    assert bad[0].reason.startswith("cannot read") and bad[0].source_id is not None


def test_bad_records_are_named(tmp_path: Path) -> None:
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"id": "fine", "text": "ok"}\n{not json\n', encoding="utf-8")
    sources: list[Any] = [
        {"id": "no-text"},
        {"id": 7, "text": "numeric id"},
        {"id": "blank", "text": "   \n"},
        {"id": "good", "text": "Good."},
        {"id": "good", "text": "Duplicate."},
        42,
        {"id": "meta", "text": "t", "metadata": "not a dict"},
        {"id": "unserializable", "text": "t", "metadata": {"x": object()}},
        {"id": "text-type", "text": b"bytes"},
        {"id": "two\nlines", "text": "t"},
        jsonl,
    ]
    items = list(iter_documents(sources))
    errors = [i for i in items if isinstance(i, InvalidDocumentError)]
    assert [d.id for d in items if isinstance(d, Document)] == ["good", "fine"]
    messages = [str(e) for e in errors]
    assert messages[0] == "documents[0]: missing 'text'"
    assert messages[1] == "documents[1]: 'id' must be a string, got int"
    assert messages[2] == "documents[2]: 'text' is empty"
    assert messages[3].startswith("documents[4]: duplicate document id 'good'")
    assert messages[4] == "documents[5]: unsupported type int"
    assert messages[5] == "documents[6]: 'metadata' must be an object, got str"
    assert messages[6].startswith("documents[7]: metadata is not JSON-serializable")
    assert messages[7] == "documents[8]: 'text' must be a string, got bytes"
    assert messages[8] == "documents[9]: 'id' contains the control character U+000A"
    assert messages[9].startswith(f"{jsonl}:2: invalid JSON")
    assert len(errors) == 10


def test_a_file_has_one_id_whatever_path_reaches_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Relative, absolute, ``./``, ``..`` and symlinked spellings of one file give one id
    (and, in one run, one document); two files never share an id."""
    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "b").mkdir()
    for folder in ("a", "b"):
        (tmp_path / folder / "notes.md").write_text(f"Notes of {folder}.", encoding="utf-8")
    (tmp_path / "link.md").symlink_to(tmp_path / "a" / "notes.md")
    (tmp_path / "linked").symlink_to(tmp_path / "a")
    monkeypatch.chdir(tmp_path / "a" / "sub")
    spellings = [
        Path("../notes.md"),
        tmp_path / "a" / "notes.md",
        Path("./../notes.md"),
        tmp_path / "a" / "sub" / ".." / "notes.md",
        tmp_path / "link.md",
        tmp_path / "linked" / "notes.md",
    ]
    expected = (tmp_path / "a" / "notes.md").resolve().as_posix()
    for spelling in spellings:
        assert [d.id for d in iter_documents(spelling)] == [expected], spelling  # type: ignore[union-attr]
    together = list(iter_documents([*spellings, tmp_path / "a", tmp_path / "b"]))
    assert [d.id for d in together] == [
        expected,
        (tmp_path / "b" / "notes.md").resolve().as_posix(),
    ]  # type: ignore[union-attr]


def test_bad_paths_raise_before_anything_is_written(
    tmp_path: Path, minilm: Any, sink: QdrantSink
) -> None:
    """A missing path, a file of another type, a file outside ``root``: typed errors before
    any write (the CLI refuses them too), not bad records after a partial run."""
    from jina_connectors.ingest import SourcePathError

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("Alpha.", encoding="utf-8")
    (tmp_path / "report.pdf").write_text("%PDF", encoding="utf-8")
    cases = [
        ([tmp_path / "docs", tmp_path / "missing.md"], {}, "no such file or folder"),
        ([tmp_path / "docs", tmp_path / "report.pdf"], {}, "unsupported file type '.pdf'"),
        ([tmp_path / "report.pdf"], {"root": tmp_path / "docs"}, "unsupported file type"),
        ([tmp_path / "docs"], {"root": tmp_path / "docs" / "a.md"}, "the root is not a folder"),
        ([tmp_path / "docs", tmp_path], {"root": tmp_path / "docs"}, "lies outside the root"),
    ]
    for documents, options, message in cases:
        with pytest.raises(SourcePathError, match=re.escape(message)):
            ingest(documents, sink, model=minilm, **options, **SETTINGS)
    with pytest.raises(ValueError, match="sync=True needs documents given as paths"):
        ingest([tmp_path / "docs", "a text"], sink, model=minilm, sync=True, **SETTINGS)
    assert sink.count() == 0 and not sink.client.collection_exists("docs")
