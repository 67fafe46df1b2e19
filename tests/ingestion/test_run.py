"""The shared ingestion pipeline, on a real Qdrant (in-memory local mode) with MiniLM."""

from __future__ import annotations

import dataclasses
import functools
import re
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1, EmbedderWrapper, assert_same_points, dump_qdrant

from jina_connectors.ingest import Document, IdSchemeError, InvalidDocumentError, ingest
from jina_connectors.ingestion.stages import content_hash, resolve_settings
from jina_connectors.sinks.records import chunk_id

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
    with pytest.raises(ValueError, match=r"dimensions must be between 1 and 384"):
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
