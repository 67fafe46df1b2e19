"""Every ingest option is checked once, by ``IngestOptions``: a bad value raises one typed
``OptionError`` naming it (the CLI names its flag), the model check is
``IngestOptions.settings``, and the content hash covers exactly the hashed fields."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from jina_connectors.errors import InvalidDocumentError, OptionError
from jina_connectors.ingestion.documents import Document
from jina_connectors.ingestion.options import BadRecords, IngestKeywords, IngestOptions
from jina_connectors.ingestion.stages import content_hash

# One bad value per checked field (what a user could type).
BAD_VALUES: dict[str, dict[str, Any]] = {
    "task": {"task": ""},
    "dimensions": {"dimensions": 0},
    "embedding_type": {"embedding_type": "int8"},
    "late_chunking": {"late_chunking": "yes"},
    "late_chunking_window": {"late_chunking_window": 0},
    "late_chunking_overlap": {"late_chunking_overlap": -1},
    "chunker": {"chunker": "paragraphs"},
    "chunk_size": {"chunk_size": 0},
    "batch_size": {"batch_size": True},
    "write_batch_size": {"write_batch_size": 2.5},
    "max_pending_batches": {"max_pending_batches": -3},
    "on_error": {"on_error": "ignore"},
}

# A model as its configuration describes it (the fields the model check reads).
MODEL = SimpleNamespace(
    model_name="m",
    dimension=64,
    tasks=("retrieval.passage", "retrieval.query"),
    supports_late_chunking=True,
)


@pytest.mark.parametrize("field", sorted(BAD_VALUES))
def test_each_bad_value_raises_an_option_error_naming_its_field(field: str) -> None:
    with pytest.raises(OptionError) as error:
        IngestOptions(**BAD_VALUES[field])
    assert error.value.option == field
    assert str(error.value).startswith(f"{field} ")
    assert isinstance(error.value, ValueError)
    # The same error whichever way the option is given.
    with pytest.raises(OptionError, match=f"^{field} "):
        IngestOptions.of(IngestOptions(), **BAD_VALUES[field])


def test_window_and_overlap_need_late_chunking() -> None:
    for name in ("late_chunking_window", "late_chunking_overlap"):
        with pytest.raises(OptionError) as error:
            IngestOptions(late_chunking=False, **{name: 64})
        assert error.value.option == name
    assert IngestOptions(late_chunking=False).late_chunking_options is None


def test_keywords_fold_into_options_once() -> None:
    from embedder_core import LateChunkingOptions

    base = IngestOptions(chunk_size=64, batch_size=4)
    folded = IngestOptions.of(base, batch_size=8, late_chunking_options=LateChunkingOptions(32, 8))
    assert folded == dataclasses.replace(
        base, batch_size=8, late_chunking_window=32, late_chunking_overlap=8
    )
    assert folded.late_chunking_options == LateChunkingOptions(window=32, overlap=8)
    assert IngestOptions.of(base) is base
    with pytest.raises(TypeError, match="'chunksize'"):
        IngestOptions.of(chunksize=3)
    with pytest.raises(TypeError, match="LateChunkingOptions"):
        IngestOptions.of(late_chunking_options={"window": 3})


def test_the_typed_keywords_are_the_options_and_every_entry_point_takes_them() -> None:
    """``**keywords: Unpack[IngestKeywords]`` tells editors each option; the TypedDict must
    name exactly the fields (plus the core's late-chunking options object)."""
    import inspect

    from jina_connectors.ingestion.run import ingest
    from jina_connectors.ray import embed_dataset, ingest_dataset, ingest_documents

    fields = {field.name for field in dataclasses.fields(IngestOptions)}
    assert set(IngestKeywords.__annotations__) == fields | {"late_chunking_options"}
    for function in (ingest, embed_dataset, ingest_dataset, ingest_documents, IngestOptions.of):
        keywords = inspect.signature(function).parameters["keywords"]
        assert keywords.annotation == "Unpack[IngestKeywords]", function.__qualname__


def test_the_model_check_names_the_option() -> None:
    cases = {
        "task": IngestOptions(task="classification"),
        "dimensions": IngestOptions(dimensions=65),
    }
    for field, options in cases.items():
        with pytest.raises(OptionError) as error:
            options.settings(MODEL)
        assert error.value.option == field
    cls_pooled = SimpleNamespace(**{**vars(MODEL), "supports_late_chunking": False})
    with pytest.raises(OptionError) as error:
        IngestOptions().settings(cls_pooled)
    assert error.value.option == "late_chunking" and "--no-late-chunking" in str(error.value)
    assert IngestOptions(late_chunking=False).settings(cls_pooled).dimensions == 64


def test_content_hashes_are_those_of_before_the_options_moved() -> None:
    """The hashed fields (field metadata) give the fingerprint the stored points carry: the
    hashes below were computed with the settings of the previous release."""
    document = Document("doc", "Some text.", {"a": 1})
    default = IngestOptions(chunk_size=32).settings(MODEL)
    assert content_hash(document, default) == (
        "9e4a2d4adf75a3a91abde876462535eb1972b2a03324cc20abab6ca19d0a4d71"
    )
    other = IngestOptions(
        task="retrieval.query",
        dimensions=32,
        embedding_type="ubinary",
        late_chunking=False,
        chunker="tokens",
        chunk_size=16,
    ).settings(MODEL)
    assert content_hash(document, other) == (
        "c7666c572ef73bfd3b0e5b7a22974dedd4c2d0dce36d17689f8b4424aac455f3"
    )
    # A run option changes no hash.
    assert IngestOptions(chunk_size=32, batch_size=3, on_error="raise").settings(MODEL) == default


def test_bad_records_raise_or_are_kept_and_survive_pickling() -> None:
    error = InvalidDocumentError("doc-1", "broken")
    with pytest.raises(InvalidDocumentError):
        BadRecords("raise").add(error)
    kept = BadRecords("skip", log=False)
    kept.add(error)
    copy = pickle.loads(pickle.dumps(kept))
    copy.add(InvalidDocumentError("doc-2", "broken"))
    assert [e.record for e in copy.errors] == ["doc-1", "doc-2"]
    assert [e.record for e in kept.errors] == ["doc-1"]
    with pytest.raises(OptionError):
        BadRecords("ignore")
    restored = pickle.loads(pickle.dumps(OptionError("chunk_size", "is bad", value=0, minimum=1)))
    assert (restored.option, restored.value, restored.minimum) == ("chunk_size", 0, 1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch-size", "0"], "error: --batch-size must be at least 1, got 0; see"),
        (["--late-chunking-overlap", "-1"], "error: --late-chunking-overlap must be at least 0"),
        (["--dimensions", "-2"], "error: --dimensions must be at least 1, got -2; see"),
        (
            ["--no-late-chunking", "--late-chunking-window", "64"],
            "error: Invalid value for '--late-chunking-window': (late_chunking_options) applies",
        ),
    ],
)
def test_cli_messages_name_the_flag(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    from jina_connectors.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.md").write_text("Alpha.", encoding="utf-8")
    assert main(["ingest", "a.md", *args]) == 2
    assert capsys.readouterr().err.startswith(message)


def test_every_checked_option_is_a_cli_flag(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI names an option's flag as ``--`` + its name with ``-``, with no table: so
    every option that can be refused is a flag of that name (``task``: of ``reembed``)."""
    from jina_connectors.cli import main

    flags = ""
    for command in ("ingest", "reembed"):
        main([command, "--help"])
        flags += capsys.readouterr().out
    for field in BAD_VALUES:
        if field in ("write_batch_size", "max_pending_batches", "on_error"):
            continue  # Python-only options: the CLI gives their defaults
        assert OptionError(field, "").flag in flags, field
