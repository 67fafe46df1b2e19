"""The shared ingestion pipeline, on a real Qdrant (in-memory local mode) with MiniLM."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import threading
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1, EmbedderWrapper, assert_same_points, dump_qdrant

from jina_connectors.ingest import (
    ChunkRecord,
    Document,
    EmptyDocumentError,
    IdSchemeError,
    IngestInterrupted,
    InvalidDocumentError,
    chunk_id,
    content_hash,
    ingest,
    iter_documents,
    resolve_settings,
    sync_scope,
)

pytest.importorskip("qdrant_client")

from jina_connectors.qdrant import QdrantSink

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


def test_a_file_stored_under_another_root_is_refused_before_anything_is_written(
    minilm: Any, sink: QdrantSink, tmp_path: Path
) -> None:
    """Before: ``root`` and no ``root`` over the same files stored each file twice."""
    docs = tmp_path / "repo" / "docs"
    docs.mkdir(parents=True)
    (docs / "a.md").write_text("Alpha text.", encoding="utf-8")
    (docs / "b.jsonl").write_text('{"text": "Beta."}\n', encoding="utf-8")
    ingest([docs], sink, model=minilm, root=tmp_path / "repo", **SETTINGS)
    before = sink.document_points()
    for root in (None, docs, tmp_path):
        with pytest.raises(IdSchemeError) as caught:
            ingest([docs], sink, model=minilm, root=root, **SETTINGS)
        assert (caught.value.stored_id, caught.value.stored_root) == (
            "docs/a.md",
            (tmp_path / "repo").resolve().as_posix(),
        )
        assert sink.document_points() == before
    again = ingest([docs], sink, model=minilm, root=tmp_path / "repo", **SETTINGS)
    assert again.skipped == 2 and sink.document_points() == before


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


def test_bad_records_do_not_cost_the_rest_of_the_batch(minilm: Any, sink: QdrantSink) -> None:
    huge = " ".join(
        f"Sentence number {i} talks about rivers, mountains and the weather." for i in range(400)
    )
    assert minilm.count_tokens([huge])[0] > 10 * minilm.max_tokens  # late chunking windows it
    documents = [
        CORPUS_V1[0],
        {"id": "no-text", "metadata": {}},
        {"id": 12345, "text": "A numeric id."},
        {"id": "huge", "text": huge},
        CORPUS_V1[1],
    ]
    report = ingest(documents, sink, model=minilm, batch_size=8, **SETTINGS)

    assert [str(e) for e in report.errors] == [
        "documents[1]: missing 'text'",
        "documents[2]: 'id' must be a string, got int",
    ]
    assert report.documents == 3 and report.skipped == 0
    stored = dump_qdrant(sink.client, "docs")
    by_doc: dict[str, list[dict[str, Any]]] = {}
    for point in stored.values():
        by_doc.setdefault(point.payload["doc_id"], []).append(point.payload)
    assert set(by_doc) == {"bread", "volcano", "huge"}
    huge_chunks = sorted(by_doc["huge"], key=lambda p: p["chunk_index"])
    assert len(huge_chunks) == huge_chunks[0]["chunk_count"] > 20
    assert all(huge[p["start"] : p["end"]] == p["text"] for p in huge_chunks)
    assert report.points_written == report.chunks == len(stored)


def test_a_document_the_embedder_rejects_as_input_is_a_bad_record(
    minilm: Any, sink: QdrantSink
) -> None:
    # The core refuses a chunk that covers no token (a bell character is no token): input
    # errors raised by embedder_core cost only their own document.
    documents = [dict(doc) for doc in CORPUS_V1]
    documents[1]["text"] += " \a\a"

    def two_spans(text: str) -> list[tuple[int, int]]:
        first = text.index(".") + 1
        if text.endswith("\a\a"):
            return [(0, first), (len(text) - 2, len(text))]
        return [(0, first), (first + 1, len(text))]

    report = ingest(documents, sink, model=minilm, chunker=two_spans, **SETTINGS)
    assert [e.record for e in report.errors] == ["documents[1]"]
    assert "cannot be embedded: document 0: span 1" in str(report.errors[0])
    assert "covers no token" in str(report.errors[0])
    stored = dump_qdrant(sink.client, "docs")
    assert sorted({p.payload["doc_id"] for p in stored.values()}) == [
        "bread",
        "chess",
        "tea",
        "whales",
    ]
    assert len(stored) == 8 == report.points_written


def test_spans_a_custom_chunker_gets_wrong_are_bad_records(minilm: Any, sink: QdrantSink) -> None:
    spans: dict[str, Any] = {
        "bread": [(0, 10_000)],  # past the end
        "volcano": [(5, 5)],  # empty
        "chess": [(0, 5), "x"],  # not a pair
        "whales": [],  # no chunks
        "tea": [(0, 3), (3, 12)],
    }
    documents = [{**doc, "metadata": {}} for doc in CORPUS_V1]
    report = ingest(
        documents,
        sink,
        model=minilm,
        chunker=lambda text: spans[next(d["id"] for d in CORPUS_V1 if d["text"] == text)],
        **SETTINGS,
    )
    lengths = [len(doc["text"]) for doc in CORPUS_V1]
    assert [str(e) for e in report.errors] == [
        f"documents[0]: chunker span 0 (0, 10000) is empty or outside the text "
        f"(length {lengths[0]})",
        f"documents[1]: chunker span 0 (5, 5) is empty or outside the text (length {lengths[1]})",
        "documents[2]: chunker span 1 is 'x', not a (start, end) pair",
        "documents[3]: produced no chunks",
    ]
    assert [p.payload["text"] for p in dump_qdrant(sink.client, "docs").values()] in (
        ["Tea", " is made "],
        [" is made ", "Tea"],
    )


class _BrokenEmbedder(EmbedderWrapper):
    """A real embedder whose document embedding fails with a bug of ours (or of a library)."""

    def __init__(self, inner: Any, error: BaseException) -> None:
        super().__init__(inner)
        self.error = error

    def embed_documents(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        TypeError("embed_documents() got an unexpected keyword argument 'chunkr'"),
        ValueError("operands could not be broadcast together with shapes (3,) (4,)"),
        RuntimeError("CUDA error: device-side assert triggered"),
    ],
    ids=["TypeError", "ValueError", "RuntimeError"],
)
def test_a_bug_in_embedding_stops_the_run_instead_of_making_bad_records(
    minilm: Any, sink: QdrantSink, error: BaseException
) -> None:
    broken = _BrokenEmbedder(minilm, error)
    with pytest.raises(type(error), match=re.escape(str(error))):
        ingest(CORPUS_V1, sink, model=broken, **SETTINGS)  # type: ignore[arg-type]
    assert sink.count() == 0


def test_on_error_raise_stops_before_writing(minilm: Any, sink: QdrantSink) -> None:
    with pytest.raises(InvalidDocumentError, match=r"documents\[1\]: missing 'text'") as info:
        ingest([CORPUS_V1[0], {"id": "x"}], sink, model=minilm, on_error="raise", **SETTINGS)
    assert info.value.record == "documents[1]"
    assert sink.count() == 0


def test_invalid_settings_raise_before_anything_is_created(minilm: Any, sink: QdrantSink) -> None:
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        ingest(CORPUS_V1, sink, model=minilm, chunk_size=0)
    with pytest.raises(ValueError, match="chunker must be 'sentences', 'tokens' or a callable"):
        ingest(CORPUS_V1, sink, model=minilm, chunker="paragraphs")
    with pytest.raises(ValueError, match=r"dimensions must be an integer in \[1, 384\]"):
        ingest(CORPUS_V1, sink, model=minilm, dimensions=385)
    with pytest.raises(ValueError, match="embedding_type must be 'float' or 'ubinary'"):
        ingest(CORPUS_V1, sink, model=minilm, embedding_type="int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Qdrant sink stores float vectors"):
        ingest(CORPUS_V1, sink, model=minilm, embedding_type="ubinary")
    assert not sink.client.collection_exists("docs")


# -- what is stored ------------------------------------------------------------------------


def test_chunk_ids_are_pinned_uuid5s() -> None:
    # Changing the namespace or the key format would orphan every existing collection.
    assert chunk_id("doc", 0) == "2f7b7d8f-bb1f-5c99-85f0-bde541fc6d02"
    ids = {chunk_id(d, i) for d in ("a", "b", "a\x1f0") for i in range(3)}
    assert len(ids) == 9
    assert all(uuid.UUID(i).version == 5 for i in ids)


def test_ids_payloads_and_vectors(minilm: Any, sink: QdrantSink) -> None:
    report = ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    stored = dump_qdrant(sink.client, "docs")
    assert report.documents == 5 and report.points_written == len(stored) == report.chunks

    expected_chunks = minilm.embed_documents(
        [d["text"] for d in CORPUS_V1], task="retrieval.passage", chunk_size=16
    )
    hashes = set()
    for doc, chunks in zip(CORPUS_V1, expected_chunks, strict=True):
        doc_hashes = set()
        for index, chunk in enumerate(chunks):
            point = stored[chunk_id(doc["id"], index)]
            payload = point.payload
            assert payload["text"] == chunk.text == doc["text"][payload["start"] : payload["end"]]
            assert (payload["start"], payload["end"]) == (chunk.start, chunk.end)
            assert payload["doc_id"] == doc["id"]
            assert payload["chunk_index"] == index
            assert payload["chunk_count"] == len(chunks)
            assert payload["metadata"] == doc["metadata"]
            assert payload["model"] == minilm.model_name
            assert payload["task"] == "retrieval.passage"
            assert payload["dimensions"] == 384
            assert payload["embedding_type"] == "float"
            np.testing.assert_allclose(point.vector, chunk.embedding, atol=1e-5)
            doc_hashes.add(payload["content_hash"])
        assert len(doc_hashes) == 1
        hashes |= doc_hashes
    assert len(hashes) == len(CORPUS_V1)


def test_no_late_chunking_embeds_each_chunk_alone(minilm: Any, sink: QdrantSink) -> None:
    ingest(CORPUS_V1, sink, model=minilm, late_chunking=False, dimensions=128, **SETTINGS)
    stored = dump_qdrant(sink.client, "docs")
    texts = [p.payload["text"] for p in stored.values()]
    alone = minilm.encode(texts, task="retrieval.passage", dimensions=128)
    np.testing.assert_allclose(np.stack([p.vector for p in stored.values()]), alone, atol=1e-5)
    late = minilm.embed_documents([CORPUS_V1[0]["text"]], chunk_size=16, dimensions=128)[0]
    assert len(late) == sum(p.payload["doc_id"] == "bread" for p in stored.values())
    first = stored[chunk_id("bread", 0)]
    assert not np.allclose(first.vector, late[0].embedding, atol=1e-3)  # really not late


def test_same_points_whatever_the_batching(minilm: Any) -> None:
    small = fresh_dump(minilm, CORPUS_V1, batch_size=1, write_batch_size=1, max_pending_batches=1)
    large = fresh_dump(minilm, CORPUS_V1, batch_size=64, write_batch_size=1000)
    assert_same_points(small, large)


# -- idempotence ---------------------------------------------------------------------------


def test_the_content_hash_covers_every_setting_that_changes_a_vector(minilm: Any) -> None:
    settings = resolve_settings(minilm, chunk_size=16)
    assert set(settings.fingerprint()) == {
        "model",
        "task",
        "dimensions",
        "embedding_type",
        "late_chunking",
        "chunker",
        "chunk_size",
        "late_chunking_window",
        "late_chunking_overlap",
    }
    document = Document("doc", "Some text.")
    other_values = {
        "model": "another/model",
        "task": "text-matching",
        "dimensions": 128,
        "embedding_type": "ubinary",
        "late_chunking": False,
        "chunker": "tokens",
        "chunk_size": 17,
        "late_chunking_window": 1024,
        "late_chunking_overlap": 64,
    }
    digest = content_hash(document, settings)
    for name, value in other_values.items():
        assert getattr(settings, name) != value
        changed = dataclasses.replace(settings, **{name: value})
        assert content_hash(document, changed) != digest, name
    # What does not change a vector does not change the hash.
    same = dataclasses.replace(settings, late_chunking_options=object())
    assert content_hash(document, same) == digest
    assert content_hash(document, settings, [(0, 4)]) != content_hash(document, settings, [(0, 5)])


@pytest.fixture(scope="module")
def private_tiny(tiny_jina_dir: Path) -> Any:
    """A jina-format embedder of this module's own (its settings may be changed)."""
    from embedder_core import Embedder

    return Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")


def _window(window: int | None) -> dict[str, Any]:
    """The ingest options that set the late-chunking window to ``window`` tokens."""
    from embedder_core import LateChunkingOptions

    return {"late_chunking_options": None if window is None else LateChunkingOptions(window=window)}


LONG = [{"id": "long", "text": " ".join(doc["text"] for doc in CORPUS_V1 * 2)}, *CORPUS_V1[:2]]


@pytest.mark.parametrize(
    "change",
    ["chunk_size", "chunker", "late_chunking", "window", "lambda", "partial"],
)
def test_a_rerun_with_a_changed_setting_re_embeds_every_document(
    change: str, minilm: Any, private_tiny: Any, sink: QdrantSink
) -> None:
    """Whatever setting changed, the re-run re-embeds everything and the collection then
    holds exactly what a first run with the new setting writes."""
    embedder: Any = minilm
    corpus: list[dict[str, Any]] = CORPUS_V1
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    if change == "chunk_size":
        after = {"chunk_size": 40}
    elif change == "chunker":
        after = {"chunker": "tokens"}
    elif change == "late_chunking":
        after = {"late_chunking": False}
    elif change == "window":
        embedder, corpus = private_tiny, LONG
        assert private_tiny.count_tokens(LONG[0]["text"])[0] > 2 * private_tiny.max_tokens
    elif change == "lambda":  # every lambda has the same __qualname__
        before = {"chunker": lambda text: [(0, text.index(".") + 1)]}
        after = {"chunker": lambda text: [(0, text.index(" "))]}
    elif change == "partial":  # a functools.partial has no __qualname__ at all
        before = {"chunker": functools.partial(_first_characters, count=20)}
        after = {"chunker": functools.partial(_first_characters, count=30)}

    def run(target: QdrantSink, second: bool) -> Any:
        options = after if second else before
        model = embedder
        if change == "window":
            options = {**options, **_window(48 if second else None)}
        return ingest(corpus, target, model=model, **{**SETTINGS, **options})

    run(sink, second=False)
    first = dump_qdrant(sink.client, "docs")
    report = run(sink, second=True)
    assert (report.skipped, report.documents) == (0, len(corpus))
    with QdrantSink("docs", location=":memory:") as reference:
        run(reference, second=True)
        expected = dump_qdrant(reference.client, "docs")
    assert_same_points(dump_qdrant(sink.client, "docs"), expected)
    assert payloads_differ(first, expected)
    if change == "window":  # the setting really changes vectors, not only the hash
        assert any(
            not np.allclose(first[i].vector, expected[i].vector, atol=1e-4) for i in expected
        )


def _first_characters(text: str, count: int) -> list[tuple[int, int]]:
    return [(0, count)]


def payloads_differ(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: p.payload for k, p in a.items()} != {k: p.payload for k, p in b.items()}


def test_a_custom_chunker_that_makes_the_same_chunks_changes_nothing(
    minilm: Any, sink: QdrantSink
) -> None:
    def by_sentence(text: str) -> list[tuple[int, int]]:
        end = text.index(".") + 1
        return [(0, end), (end + 1, len(text))]

    ingest(CORPUS_V1, sink, model=minilm, chunker=by_sentence, **SETTINGS)
    same_spans = functools.partial(lambda text, f: f(text), f=by_sentence)
    report = ingest(CORPUS_V1, sink, model=minilm, chunker=same_spans, **SETTINGS)
    assert (report.skipped, report.points_written) == (5, 0)


# -- the background writer -----------------------------------------------------------------


class _ObservedSink:
    """A real QdrantSink whose upserts wait until the pipeline has started the next batch."""

    def __init__(self, inner: QdrantSink, next_batch_started: threading.Event) -> None:
        self.inner = inner
        self.collection = inner.collection
        self.next_batch_started = next_batch_started
        self.overlapped = False
        self.writer_threads: set[str] = set()

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.writer_threads.add(threading.current_thread().name)
        if not self.overlapped:
            # Sequential code would deadlock here: the next batch only starts after we return.
            self.overlapped = self.next_batch_started.wait(timeout=30)
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class _CountingEmbedder(EmbedderWrapper):
    def __init__(self, inner: Any, started: threading.Event) -> None:
        super().__init__(inner)
        self.started = started
        self.calls = 0

    def embed_documents(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 2:
            self.started.set()
        return self.inner.embed_documents(*args, **kwargs)


def test_next_batch_is_embedded_while_the_previous_one_is_written(
    minilm: Any, sink: QdrantSink
) -> None:
    started = threading.Event()
    observed = _ObservedSink(sink, started)
    embedder = _CountingEmbedder(minilm, started)
    report = ingest(CORPUS_V1, observed, model=embedder, batch_size=1, **SETTINGS)  # type: ignore[arg-type]
    assert observed.overlapped
    assert observed.writer_threads == {"jina-connectors-writer"}
    assert embedder.calls == 5 and sink.count() == report.points_written


class _FailingSink:
    def __init__(self, inner: QdrantSink) -> None:
        self.inner = inner
        self.collection = inner.collection
        self.calls = 0

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.calls += 1
        if self.calls == 2:
            raise ConnectionError("database went away")
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_write_error_reaches_the_caller(minilm: Any, sink: QdrantSink) -> None:
    failing = _FailingSink(sink)
    with pytest.raises(ConnectionError, match="database went away"):
        ingest(CORPUS_V1, failing, model=minilm, batch_size=1, **SETTINGS)  # type: ignore[arg-type]
    assert failing.calls == 2  # the writer stopped at the first failure
    # The documents that were written are complete; a re-run writes only the rest.
    report = ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
    assert report.skipped == 1
    assert_same_points(dump_qdrant(sink.client, "docs"), fresh_dump(minilm, CORPUS_V1))


class _RefusingSink:
    """A real QdrantSink that refuses, as a database would, any write holding some documents."""

    def __init__(self, inner: QdrantSink, refused: set[str]) -> None:
        self.inner = inner
        self.collection = inner.collection
        self.refused = refused
        self.upserts: list[set[str]] = []

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        docs = {r.doc_id for r in records}
        self.upserts.append(docs)
        if docs & self.refused:
            raise InvalidDocumentError("upsert", f"refused {sorted(docs & self.refused)}")
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_document_the_database_refuses_is_a_bad_record_and_the_rest_is_stored(
    minilm: Any, sink: QdrantSink
) -> None:
    refusing = _RefusingSink(sink, {"volcano"})
    report = ingest(CORPUS_V1, refusing, model=minilm, batch_size=5, **SETTINGS)  # type: ignore[arg-type]
    assert [e.record for e in report.errors] == ["documents[1]"]
    assert "document 'volcano' was refused by the database" in str(report.errors[0])
    others = [doc for doc in CORPUS_V1 if doc["id"] != "volcano"]
    assert_same_points(dump_qdrant(sink.client, "docs"), fresh_dump(minilm, others))
    assert report.points_written == sink.count()
    # Found by halving: {all} -> {bread, volcano} / {chess, whales, tea} -> {bread} / {volcano}.
    assert refusing.upserts[0] == {d["id"] for d in CORPUS_V1}
    assert {"volcano"} in refusing.upserts and len(refusing.upserts) <= 5
    # The refused document was not marked complete: a re-run tries it again, alone.
    again = ingest(CORPUS_V1, refusing, model=minilm, **SETTINGS)  # type: ignore[arg-type]
    assert (again.skipped, [e.record for e in again.errors]) == (4, ["documents[1]"])


def test_a_database_that_refuses_every_document_stops_the_run(
    minilm: Any, sink: QdrantSink
) -> None:
    refusing = _RefusingSink(sink, {d["id"] for d in CORPUS_V1})
    with pytest.raises(InvalidDocumentError, match="refused"):
        ingest(CORPUS_V1, refusing, model=minilm, batch_size=5, **SETTINGS)  # type: ignore[arg-type]
    assert sink.count() == 0


def test_a_document_written_in_two_jobs_keeps_every_chunk(sink: QdrantSink) -> None:
    # The Ray engine can get a document's chunks in two blocks, written as two jobs (in
    # either order, by two writers): each job's stale-chunk deletion must spare the chunks
    # of the other, so it keeps the document's chunk_count, not the chunks it holds.
    from jina_connectors.ingest import CollectionSpec, WriteJob, write_job

    spec = CollectionSpec("test-model", 4)
    sink.ensure_collection(spec)
    rng = np.random.default_rng(0)
    records = [
        ChunkRecord(
            id=chunk_id("a", i),
            vector=rng.standard_normal(4).astype(np.float32),
            text=f"chunk {i}",
            doc_id="a",
            chunk_index=i,
            chunk_count=4,
            start=8 * i,
            end=8 * i + 7,
            content_hash="h",
            metadata={},
            model=spec.model,
            task=spec.task,
            dimensions=4,
            embedding_type="float",
        )
        for i in range(4)
    ]
    second, first = WriteJob.of([("a", records[2:])]), WriteJob.of([("a", records[:2])])
    assert first.keep == second.keep == {"a": 4}
    for job in (second, first):
        write_job(sink, job, write_batch_size=10)
    assert sorted(p.payload["chunk_index"] for p in dump_qdrant(sink.client, "docs").values()) == [
        0,
        1,
        2,
        3,
    ]


def _recording_opens(monkeypatch: pytest.MonkeyPatch, file: Path) -> list[Any]:
    opened: list[Any] = []
    real_open = Path.open

    def recording_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        if self == file:
            opened.append(handle)
        return handle

    monkeypatch.setattr(Path, "open", recording_open)
    return opened


def test_a_failed_run_closes_the_file_it_was_reading(
    minilm: Any, sink: QdrantSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text("".join(json.dumps(doc) + "\n" for doc in CORPUS_V1), encoding="utf-8")
    opened = _recording_opens(monkeypatch, jsonl)
    failing = _FailingSink(sink)
    try:
        ingest(iter_documents([jsonl]), failing, model=minilm, batch_size=1, **SETTINGS)  # type: ignore[arg-type]
    except ConnectionError:
        # The traceback (and so the failed run's frames and arguments) is still alive here.
        assert len(opened) == 1 and opened[0].closed
    else:  # pragma: no cover - the sink always fails
        pytest.fail("the write error did not reach the caller")

    # A reader that stops early and closes the generator closes the file at once.
    documents = iter_documents(iter_documents([jsonl]))
    assert next(documents).id == "bread"
    assert not opened[1].closed
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        documents.close()
    assert opened[1].closed


class _StuckSink:
    """A real QdrantSink whose first upsert hangs (a database that stopped answering)."""

    def __init__(self, inner: QdrantSink) -> None:
        self.inner = inner
        self.collection = inner.collection
        self.stuck = threading.Event()
        self.release = threading.Event()

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.stuck.set()
        self.release.wait(60)
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_ctrl_c_is_not_held_up_by_a_stuck_writer(
    minilm: Any, sink: QdrantSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jina_connectors.writer

    monkeypatch.setattr(jina_connectors.writer, "ABANDON_WAIT_SECONDS", 0.5)
    stuck = _StuckSink(sink)

    def documents() -> Iterator[dict[str, Any]]:
        yield from CORPUS_V1[:2]  # the writer hangs on the first, the second waits in the queue
        stuck.stuck.wait(30)
        raise KeyboardInterrupt  # what Ctrl-C raises in the main thread

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            ingest(
                documents(), stuck, model=minilm, batch_size=1, max_pending_batches=1, **SETTINGS
            )  # type: ignore[arg-type]
        except BaseException as error:
            outcome.append(error)

    caller = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    caller.start()
    caller.join(20)
    try:
        assert not caller.is_alive(), "ingest hung behind the stuck writer"
        assert [type(e) for e in outcome] == [IngestInterrupted]  # a KeyboardInterrupt
        assert time.monotonic() - started < 15
    finally:
        stuck.release.set()


def test_importing_the_package_and_cli_loads_no_model_or_database_code() -> None:
    """The CLI answers --help and usage errors without torch, numpy or a database client."""
    import subprocess
    import sys

    heavy = ["torch", "transformers", "numpy", "embedder_core", "qdrant_client", "pymilvus"]
    code = (
        "import sys, jina_connectors, jina_connectors.ingest, jina_connectors.cli; "
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_progress_counts_input_bytes_against_the_known_total(
    tmp_path: Path,
    minilm: Any,
    sink: QdrantSink,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bar counts input bytes (files' sizes) of a total known upfront, so it has an ETA;
    a stream shows its rate only; a long batch also shows the core's token bar."""
    folder = tmp_path / "docs"
    folder.mkdir()
    for doc in CORPUS_V1:
        (folder / f"{doc['id']}.md").write_text(doc["text"], encoding="utf-8")
    from tqdm import tqdm

    size = tqdm.format_sizeof(sum(f.stat().st_size for f in folder.iterdir()), "", 1024)

    def last_bar(err: str) -> str:
        return [line for line in err.replace("\r", "\n").splitlines() if "ingest →" in line][-1]

    settings = {**SETTINGS, "show_progress": True}
    ingest([folder], sink, model=minilm, **settings)
    bar = last_bar(capsys.readouterr().err)
    assert "100%" in bar and f" {size}/{size} " in bar and "docs=5" in bar
    assert "tok" not in bar
    ingest([folder], sink, model=minilm, **settings)  # all unchanged: done as well
    assert f" {size}/{size} " in last_bar(capsys.readouterr().err)

    stream = (doc for doc in CORPUS_V1)
    ingest(stream, sink, model=minilm, **settings)
    bar = last_bar(capsys.readouterr().err)
    assert not re.search(r"[0-9.]+[kMG]?/[0-9]", bar) and "B/s" in bar  # no total: a rate

    monkeypatch.setattr("jina_connectors.progress.LONG_BATCH_BYTES", 2048)  # 64 KiB: slow
    long = " ".join(f"Sentence {i} talks about rivers and the weather." for i in range(50))
    assert len(long) >= 2048
    ingest([long], sink, model=EmbedderWrapper(minilm), **settings)  # no submit_*: per batch
    err = capsys.readouterr().err
    assert "embedding" in err and "tok" in err  # the core's bar, in tokens, with its total


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


class ReportingEmbedder:
    """An embedder with the core scheduler's ``submit_documents``: its handle says the
    request runs 400 tokens, and ``on_progress`` reports 100 at a time, twice before the
    handle is returned (the scheduler's thread can be that quick)."""

    def __init__(self, inner: Any, progress: Any) -> None:
        self.inner = inner
        self.progress = progress
        self.seen: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def submit_documents(self, texts: Any, *, on_progress: Any, **options: Any) -> Any:
        result = self.inner.embed_documents(texts, **options)
        on_progress(100)
        on_progress(100)
        owner = self

        class Pending:
            tokens = 400

            def result(self) -> Any:
                owner.seen.append(owner.progress.done_bytes)
                for _ in range(2):
                    on_progress(100)
                    owner.seen.append(owner.progress.done_bytes)
                return result

            def cancel(self) -> bool:
                return False

        return Pending()


def test_token_reports_move_the_bar_inside_a_batch(minilm: Any) -> None:
    from jina_connectors.ingest import embed_records, prepare_document
    from jina_connectors.progress import IngestProgress

    settings = resolve_settings(minilm, chunk_size=16)
    prepared = [prepare_document(d, settings) for d in iter_documents(CORPUS_V1)]  # type: ignore[arg-type]
    progress = IngestProgress(None, description="test", enabled=False)
    reporting = ReportingEmbedder(minilm, progress)
    with progress.embedding(1000) as batch:
        records = embed_records(reporting, settings, prepared, progress=batch)
    # 200, 300 and 400 of 400 tokens: 95% of the batch at most until it is done.
    assert reporting.seen == [475, 712, 950] and progress.done_bytes == 1000
    plain = embed_records(minilm, settings, prepared)
    assert [[r.id for r in doc] for doc in records] == [[r.id for r in doc] for doc in plain]
    for ours, theirs in zip(records, plain, strict=True):
        np.testing.assert_allclose(
            np.stack([r.vector for r in ours]), np.stack([r.vector for r in theirs]), atol=1e-6
        )
