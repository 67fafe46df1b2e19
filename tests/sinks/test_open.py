"""Opening a sink by database name, and the store checks that run before any client import
(``jina_connectors.sinks.open``); the CLI's use of them is tested in ``test_cli_safety.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from jina_connectors.errors import CollectionNotFoundError, MissingApiKeyError, StoreNotFoundError
from jina_connectors.sinks import CollectionSpec
from jina_connectors.sinks.open import (
    check_api_key,
    check_collection_listed,
    check_store_unlocked,
    open_sink,
    sink_class,
    store_location,
)

SPEC = CollectionSpec("some-model", 8)


def test_each_sink_class_says_what_it_stores_and_which_key_it_needs() -> None:
    qdrant, milvus, pinecone = (sink_class(db) for db in ("qdrant", "milvus", "pinecone"))
    assert (qdrant.embedding_types, qdrant.supports_binary_quantization) == (("float",), True)
    assert (milvus.embedding_types, milvus.supports_binary_quantization) == (
        ("float", "ubinary"),
        False,
    )
    assert (pinecone.embedding_types, pinecone.supports_binary_quantization) == (
        ("float",),
        False,
    )
    assert [c.api_key_env for c in (qdrant, milvus, pinecone)] == [
        "QDRANT_API_KEY",
        "MILVUS_TOKEN",
        "PINECONE_API_KEY",
    ]
    assert [c.requires_api_key for c in (qdrant, milvus, pinecone)] == [False, False, True]
    with pytest.raises(ValueError, match="unknown database 'chroma'"):
        sink_class("chroma")


def test_a_listed_collection_passes_and_a_missing_one_names_what_is_there(tmp_path: Path) -> None:
    folder = tmp_path / "qdrant"
    with open_sink("qdrant", "notes", str(folder)) as sink:
        sink.ensure_collection(SPEC)
    check_collection_listed("qdrant", "notes", str(folder))
    check_store_unlocked("qdrant", str(folder))
    with pytest.raises(CollectionNotFoundError) as missing:
        check_collection_listed("qdrant", "papers", str(folder))
    assert (missing.value.collection, missing.value.names) == ("papers", ["notes"])
    assert str(missing.value) == (
        f"qdrant collection 'papers' is missing in embedded Qdrant at {folder}; "
        "collections there: notes"
    )
    with pytest.raises(StoreNotFoundError):
        check_collection_listed("qdrant", "notes", str(tmp_path / "nowhere"))
    # Only an embedded Qdrant lists its collections in a file; the others answer when opened.
    check_collection_listed("milvus", "papers", str(tmp_path / "nowhere.db"))
    check_collection_listed("qdrant", "papers", "http://127.0.0.1:1")


def test_store_location_is_absolute_or_a_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    home = Path.cwd()
    assert store_location("qdrant", "q") == str(home / "q")
    assert store_location("milvus", "http://host:19530") == "http://host:19530"
    assert store_location("pinecone", None) == "Pinecone"
    assert store_location("milvus", None).endswith("milvus.db")


def test_the_pinecone_key_is_checked_before_anything_opens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    with pytest.raises(MissingApiKeyError, match="no Pinecone API key: set PINECONE_API_KEY"):
        check_api_key("pinecone")
    with pytest.raises(MissingApiKeyError):
        open_sink("pinecone", "docs")
    check_api_key("pinecone", "a-key")  # given as an argument
    check_api_key("qdrant")  # a database that needs none
    monkeypatch.setenv("PINECONE_API_KEY", "a-key")
    check_api_key("pinecone")


def test_options_a_database_cannot_take_are_refused_before_a_store_is_made(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError, match="binary_quantization applies to Qdrant, not Milvus"):
        open_sink("milvus", "docs", str(tmp_path / "m.db"), binary_quantization=True)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(StoreNotFoundError):
        open_sink("qdrant", "docs", str(tmp_path / "q"), read_only=True)
    with open_sink("qdrant", "docs", ":memory:", binary_quantization=True) as sink:
        assert sink.binary_quantization is True  # type: ignore[attr-defined]
