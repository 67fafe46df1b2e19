"""Re-embedding a collection with another model (``jina_connectors.ingestion.reembed``) on
every sink, and the sinks' read-back (``read_points``/``fetch_points``) it rests on.

The old collection is written with the tiny jina-embeddings-v3-format checkpoint, the new one
with all-MiniLM-L6-v2 (real weights, so that searching the new collection means something).
The new collection must hold what ingesting the same documents with MiniLM and the old
collection's chunk boundaries gives: the same ids, payloads and vectors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from ingest_corpus import (
    CORPUS_V1,
    EmbedderWrapper,
    StoredPoint,
    assert_same_points,
    dump_milvus,
    dump_pinecone,
    dump_qdrant,
)
from sink_contract import SinkFactory

from jina_connectors.cli import main
from jina_connectors.ingest import (
    CollectionMismatchError,
    CollectionSpec,
    IngestInterrupted,
    VectorSink,
    ingest,
)
from jina_connectors.ingestion.reembed import TextsNotStoredError, reembed
from jina_connectors.sinks.records import PASSAGE_TASK, ChunkRecord, chunk_id

API_KEY = "test-key"
OLD_SETTINGS: dict[str, Any] = {"chunk_size": 48, "show_progress": False}
QUIET: dict[str, Any] = {"show_progress": False}
# What re-embedding changes in a payload: the fields that record the model and the hash.
MODEL_FIELDS = {"model", "task", "dimensions", "embedding_type", "content_hash"}


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


def without(payload: Mapping[str, Any], keys: set[str]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in keys}


def stored_spans(points: Mapping[str, StoredPoint]) -> dict[str, list[tuple[int, int]]]:
    """Each document's chunk spans, in chunk order."""
    chunks: dict[str, list[tuple[int, int, int]]] = {}
    for point in points.values():
        p = point.payload
        chunks.setdefault(p["doc_id"], []).append((p["chunk_index"], p["start"], p["end"]))
    return {doc: [(a, b) for _, a, b in sorted(found)] for doc, found in chunks.items()}


def reembed_reference(
    embedder: Any, old: Mapping[str, StoredPoint], **settings: Any
) -> dict[str, StoredPoint]:
    """What re-embedding ``old`` must give: CORPUS_V1 ingested with ``embedder`` and the old
    collection's chunk boundaries (a custom chunker), into an in-memory Qdrant."""
    from jina_connectors import QdrantSink

    spans = stored_spans(old)
    by_text = {document["text"]: spans[document["id"]] for document in CORPUS_V1}
    with QdrantSink("reference", location=":memory:") as reference:
        ingest(
            CORPUS_V1, reference, model=embedder, chunker=by_text.__getitem__, **QUIET, **settings
        )
        return dump_qdrant(reference.client, "reference")


class CtrlCOnEmbedding(EmbedderWrapper):
    """Ctrl-C during the ``at``-th embedding call (the real model runs the others)."""

    def __init__(self, inner: Any, at: int) -> None:
        super().__init__(inner)
        self.at = at
        self.calls = 0

    def embed_spans(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return self.inner.embed_spans(*args, **kwargs)


class NoEmbedding(EmbedderWrapper):
    """An embedder that must not be asked for vectors (an empty call, which checks options
    and embeds nothing, is allowed)."""

    def embed_spans(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing should be embedded")

    embed_documents = embed_spans

    def encode(self, texts: Any, **kwargs: Any) -> Any:
        if len(texts) == 0:
            return self.inner.encode(texts, **kwargs)
        raise AssertionError("nothing should be embedded")


class CtrlCDuringWrite:
    """The real sink, with Ctrl-C after the ``at``-th upsert wrote half of its points (a
    write the database took only part of)."""

    def __init__(self, inner: VectorSink, at: int) -> None:
        self.inner = inner
        self.at = at
        self.upserts = 0

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.upserts += 1
        if self.upserts == self.at:
            self.inner.upsert(records[: max(1, len(records) // 2)])
            raise KeyboardInterrupt
        self.inner.upsert(records)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def textless_records(doc_id: str, chunks: int, dimensions: int) -> list[ChunkRecord]:
    """The points of a collection that does not store texts (an empty text for each chunk)."""
    return [
        ChunkRecord(
            id=chunk_id(doc_id, index),
            vector=np.full(dimensions, 0.5, np.float32),
            text="",
            doc_id=doc_id,
            chunk_index=index,
            chunk_count=chunks,
            start=10 * index,
            end=10 * index + 9,
            content_hash="0" * 64,
            metadata={"source": "elsewhere"},
            model="old-model",
            task=PASSAGE_TASK,
            dimensions=dimensions,
            embedding_type="float",
        )
        for index in range(chunks)
    ]


def collection_names(sink: VectorSink) -> set[str]:
    return {info.name for info in sink.describe_collections()}


class ReembedTests:
    """The re-embedding contract; each database's class implements the fixtures and hooks."""

    #: Whether the database returns user metadata exactly as written (Pinecone returns
    #: integral floats as ints, so the hash of the metadata read back differs).
    exact_metadata: ClassVar[bool] = True

    def dump(self, sink: Any) -> dict[str, StoredPoint]:
        raise NotImplementedError

    @pytest.fixture
    def old(self, make_sink: SinkFactory, tiny_jina_embedder: Any) -> VectorSink:
        sink = make_sink("old")
        ingest(CORPUS_V1, sink, model=tiny_jina_embedder, **OLD_SETTINGS)
        return sink

    def test_read_points_pages_every_point_once(
        self, make_sink: SinkFactory, old: VectorSink
    ) -> None:
        stored = self.dump(old)
        pages = list(make_sink("old").read_points(page_size=5))
        assert all(1 <= len(page) <= 5 for page in pages) and len(pages) >= len(stored) // 5
        read = [point for page in pages for point in page]
        assert len(read) == len(stored) == len({point.id for point in read})
        assert {point.id: point.payload for point in read} == {
            point_id: point.payload for point_id, point in stored.items()
        }
        for page in old.read_points(["doc_id", "chunk_index"]):
            for point in page:
                for key in ("doc_id", "chunk_index"):
                    assert point.payload[key] == stored[point.id].payload[key]
        some = sorted(stored)[:3]
        fetched = old.fetch_points([*some, chunk_id("never-stored", 0)])
        assert fetched == {point_id: stored[point_id].payload for point_id in some}
        assert list(make_sink("absent").read_points()) == []
        assert make_sink("absent").fetch_points(some) == {}

    def test_new_model_same_ids_payloads_and_count(
        self, make_sink: SinkFactory, old: VectorSink, minilm: Any
    ) -> None:
        before = self.dump(old)
        new = make_sink("new")
        report = reembed(old, new, model=minilm, **QUIET)

        after = self.dump(new)
        assert set(after) == set(before)
        assert report.documents == report.completed == len(CORPUS_V1)
        assert report.points_written == report.chunks == len(after) == new.count() == old.count()
        assert report.skipped == 0 and report.errors == []
        for point_id, point in after.items():
            assert without(point.payload, MODEL_FIELDS) == without(
                before[point_id].payload, MODEL_FIELDS
            )
        spec = CollectionSpec(minilm.model_name, 384, "float", PASSAGE_TASK)
        assert make_sink("new").stored_spec() == spec
        assert_same_points(self.dump(old), before, atol=0)  # the old one is left as it was

        # The vectors and hashes of ingesting the same documents and chunks with MiniLM.
        expected = reembed_reference(minilm, before)
        assert set(expected) == set(after)
        compared = set() if self.exact_metadata else {"content_hash"}
        for point_id, point in after.items():
            want = expected[point_id]
            assert without(point.payload, compared) == without(want.payload, compared)
            np.testing.assert_allclose(point.vector, want.vector, atol=1e-5, err_msg=point_id)

        hits = make_sink("new").search("How long should the dough rise?", k=3)
        assert hits[0].doc_id == "bread"
        assert make_sink("new").search("an animal that sings underwater", k=1)[0].doc_id == (
            "whales"
        )

    def test_rerun_is_a_noop(self, make_sink: SinkFactory, old: VectorSink, minilm: Any) -> None:
        new = make_sink("new")
        reembed(old, new, model=minilm, **QUIET)
        first = self.dump(new)
        again = reembed(make_sink("old"), make_sink("new"), model=NoEmbedding(minilm), **QUIET)
        assert again.skipped == again.documents == again.completed == len(CORPUS_V1)
        assert again.chunks == again.points_written == 0 and again.errors == []
        second = self.dump(new)
        assert set(second) == set(first)
        for point_id, point in first.items():
            assert second[point_id].payload == point.payload
            np.testing.assert_array_equal(second[point_id].vector, point.vector)

    @pytest.mark.parametrize("where", ["embedding", "write"])
    def test_an_interrupted_run_is_completed_by_the_next(
        self, make_sink: SinkFactory, old: VectorSink, minilm: Any, where: str
    ) -> None:
        clean = make_sink("clean")
        reembed(old, clean, model=minilm, **QUIET)
        reference = self.dump(clean)

        # One document per batch, one batch queued: when the 4th document is embedded, the
        # writer has taken the 2nd, so at least the 1st is written when Ctrl-C comes.
        small = {"batch_size": 1, "write_batch_size": 3, "max_pending_batches": 1, **QUIET}
        new: Any = make_sink("new")
        model: Any = minilm
        if where == "embedding":
            model = CtrlCOnEmbedding(minilm, at=4)
        else:
            new = CtrlCDuringWrite(new, at=2)  # a document left with some new chunks only
        with pytest.raises(IngestInterrupted) as interrupted:
            reembed(old, new, model=model, **small)
        assert isinstance(interrupted.value, KeyboardInterrupt)
        done = interrupted.value.report.completed
        assert done < len(CORPUS_V1)
        partial = self.dump(make_sink("new"))
        assert 0 < len(partial) < len(reference)
        assert done >= (1 if where == "embedding" else 0)

        resumed = reembed(make_sink("old"), make_sink("new"), model=minilm, **small)
        assert resumed.errors == [] and resumed.skipped >= done
        assert resumed.completed == len(CORPUS_V1) and resumed.skipped < len(CORPUS_V1)
        final = self.dump(make_sink("new"))
        assert set(final) == set(reference)
        for point_id, point in reference.items():
            assert final[point_id].payload == point.payload
            np.testing.assert_allclose(final[point_id].vector, point.vector, atol=1e-6)

    def test_a_collection_without_texts_is_refused_before_the_model_loads(
        self, make_sink: SinkFactory
    ) -> None:
        old = make_sink("old")
        old.ensure_collection(CollectionSpec("old-model", 8))
        old.upsert(textless_records("a", 3, 8) + textless_records("b", 2, 8))
        new = make_sink("new")
        with pytest.raises(TextsNotStoredError, match="does not store the texts") as error:
            reembed(old, new, model="/no/such/model/is/ever/loaded", **QUIET)
        assert "'old'" in str(error.value) and "no text" in str(error.value)
        assert isinstance(error.value, ValueError)
        assert "new" not in collection_names(make_sink("old"))

    def test_a_document_stored_incomplete_is_a_bad_record(
        self, make_sink: SinkFactory, old: VectorSink, minilm: Any
    ) -> None:
        """An ingest that never finished leaves a document without some chunks: it is
        reported, and every other document is re-embedded."""
        before = self.dump(old)
        bread = sum(1 for point in before.values() if point.payload["doc_id"] == "bread")
        old.delete_stale({"bread": 1})  # chunk 0 still says chunk_count == bread
        new = make_sink("new")
        report = reembed(old, new, model=minilm, **QUIET)
        assert [error.record for error in report.errors] == ["bread"]
        assert "stored incomplete" in str(report.errors[0])
        assert report.completed == len(CORPUS_V1) - 1
        assert new.count() == len(before) - bread
        assert {p.payload["doc_id"] for p in self.dump(new).values()} == {
            d["id"] for d in CORPUS_V1 if d["id"] != "bread"
        }
        with pytest.raises(Exception, match="stored incomplete"):
            reembed(old, make_sink("other"), model=minilm, on_error="raise", **QUIET)

    def test_a_document_whose_text_is_cut_is_a_bad_record(
        self, make_sink: SinkFactory, old: VectorSink, minilm: Any
    ) -> None:
        """A chunk whose stored text is shorter than its span (Pinecone cuts texts over its
        metadata limit) cannot be embedded again; the other documents are."""
        spec = old.stored_spec()
        assert spec is not None
        cut = replace(
            textless_records("cut", 1, spec.dimensions)[0],
            text="The beginning of a long text",
            end=5000,
            model=spec.model,
        )
        old.upsert([cut])
        report = reembed(old, make_sink("new"), model=minilm, **QUIET)
        assert [error.record for error in report.errors] == ["cut"]
        assert "holds 28 of the chunk's 5000 characters" in str(report.errors[0])
        assert report.completed == len(CORPUS_V1)
        assert "cut" not in make_sink("new").doc_ids()


class TestQdrantReembed(ReembedTests):
    @pytest.fixture
    def make_sink(self) -> Iterator[SinkFactory]:
        pytest.importorskip("qdrant_client")
        from qdrant_client import QdrantClient

        from jina_connectors import QdrantSink

        client = QdrantClient(location=":memory:")
        sinks: list[VectorSink] = []

        def make(collection: str = "docs", **options: Any) -> VectorSink:
            sinks.append(QdrantSink(collection, client=client, **options))
            return sinks[-1]

        yield make
        for sink in sinks:
            sink.close()
        client.close()

    def dump(self, sink: Any) -> dict[str, StoredPoint]:
        if not sink.client.collection_exists(sink.collection):
            return {}
        return dump_qdrant(sink.client, sink.collection)

    def test_bad_sources_are_refused_before_the_model_loads(
        self, make_sink: SinkFactory, old: VectorSink
    ) -> None:
        nowhere = "/no/such/model/is/ever/loaded"
        with pytest.raises(ValueError, match="same Qdrant collection 'old'"):
            reembed(old, make_sink("old"), model=nowhere, **QUIET)
        with pytest.raises(ValueError, match=r"'absent' .*is missing or empty"):
            reembed(make_sink("absent"), make_sink("new"), model=nowhere, **QUIET)
        from qdrant_client import models

        foreign = make_sink("foreign")
        foreign.client.create_collection(  # type: ignore[attr-defined]
            "foreign", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE)
        )
        foreign.client.upsert(  # type: ignore[attr-defined]
            "foreign", [models.PointStruct(id=1, vector=[0.5] * 4, payload={"text": "x"})]
        )
        with pytest.raises(CollectionMismatchError, match="not written by jina-connectors"):
            reembed(foreign, make_sink("new"), model=nowhere, **QUIET)
        with pytest.raises(ValueError, match="batch_size"):
            reembed(old, make_sink("new"), model=nowhere, batch_size=0, **QUIET)
        assert "new" not in collection_names(old)

    def test_the_progress_bar_counts_the_old_collection_points(
        self,
        make_sink: SinkFactory,
        old: VectorSink,
        minilm: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        points = old.count()
        capsys.readouterr()
        reembed(old, make_sink("new"), model=minilm, batch_size=2)
        bar = capsys.readouterr().err
        assert f"reading old: 100%|██████████| {points}/{points}" in bar  # the scan of old
        assert "reembed old → new" in bar and f"{points}/{points}" in bar
        assert f"docs={len(CORPUS_V1)}, points={points}" in bar
        reembed(old, make_sink("new"), model=minilm, batch_size=2)  # all skipped: still full
        assert f"{points}/{points}" in capsys.readouterr().err

    def test_a_new_collection_of_another_model_is_refused(
        self, make_sink: SinkFactory, old: VectorSink, minilm: Any, tiny_jina_embedder: Any
    ) -> None:
        taken = make_sink("taken")
        ingest(CORPUS_V1[:1], taken, model=tiny_jina_embedder, **OLD_SETTINGS)
        before = self.dump(taken)
        with pytest.raises(CollectionMismatchError, match="size 32"):
            reembed(old, taken, model=minilm, **QUIET)
        assert self.dump(taken).keys() == before.keys()


class TestMilvusReembed(ReembedTests):
    @pytest.fixture
    def make_sink(self, tmp_path: Path) -> Iterator[SinkFactory]:
        pytest.importorskip("milvus_lite")
        from jina_connectors import MilvusSink

        owner = MilvusSink("docs", location=tmp_path / "milvus.db")  # owns the Lite server
        sinks: list[VectorSink] = []

        def make(collection: str = "docs", **options: Any) -> VectorSink:
            sinks.append(MilvusSink(collection, client=owner.client, **options))
            return sinks[-1]

        yield make
        for sink in sinks:
            sink.close()
        owner.close()

    def dump(self, sink: Any) -> dict[str, StoredPoint]:
        if not sink.client.has_collection(sink.collection):
            return {}
        return dump_milvus(sink.client, sink.collection)

    def test_packed_bits_stay_packed_bits(
        self, make_sink: SinkFactory, tiny_jina_embedder: Any, minilm: Any
    ) -> None:
        """A ``ubinary`` collection is re-embedded as ``ubinary`` (its vector type by
        default): the sign bits of the new model's float vectors."""
        old = make_sink("old")
        ingest(CORPUS_V1, old, model=tiny_jina_embedder, embedding_type="ubinary", **OLD_SETTINGS)
        report = reembed(old, make_sink("new"), model=minilm, dimensions=100, **QUIET)
        assert report.errors == [] and report.points_written == old.count()
        assert make_sink("new").stored_spec() == CollectionSpec(
            minilm.model_name, 100, "ubinary", PASSAGE_TASK
        )
        after = self.dump(make_sink("new"))
        floats = reembed_reference(minilm, self.dump(old), dimensions=100)
        assert set(after) == set(floats)
        for point_id, point in after.items():
            bits = np.packbits(floats[point_id].vector > 0)
            np.testing.assert_array_equal(point.vector, bits, err_msg=point_id)


class TestPineconeReembed(ReembedTests):
    exact_metadata = False

    def test_reading_back_retries_a_briefly_unavailable_service(self, old: VectorSink) -> None:
        stored = self.dump(old)
        self.server.clear_log()
        self.server.fail_next(2, status=503, path_suffix="/vectors/list")
        self.server.fail_next(1, status=429, path_suffix="/vectors/fetch")
        read = [point for page in old.read_points(page_size=7) for point in page]
        pages = -(-len(stored) // 7)
        assert len(self.server.requests_to("/vectors/list")) >= pages + 2  # failed, then retried
        assert len(self.server.requests_to("/vectors/fetch")) >= pages + 1
        assert {point.id: point.payload for point in read} == {
            point_id: point.payload for point_id, point in stored.items()
        }
        assert len(read) == len(stored)

    def test_a_text_cut_to_fit_pinecone_is_a_bad_record(
        self, make_sink: SinkFactory, old: VectorSink, minilm: Any
    ) -> None:
        spec = old.stored_spec()
        assert spec is not None
        text = "A long chunk. " * 4000  # over Pinecone's 40 KB metadata limit
        long = replace(
            textless_records("long", 1, spec.dimensions)[0],
            text=text,
            end=len(text),
            model=spec.model,
        )
        old.upsert([long])
        assert old.truncated == 1  # type: ignore[attr-defined]
        report = reembed(old, make_sink("new"), model=minilm, **QUIET)
        assert [error.record for error in report.errors] == ["long"]
        assert f"of the chunk's {len(text)} characters" in str(report.errors[0])
        assert report.completed == len(CORPUS_V1)

    @pytest.fixture
    def make_sink(self) -> Iterator[SinkFactory]:
        pytest.importorskip("pinecone")
        from pinecone_server import running_server

        from jina_connectors import PineconeSink

        with running_server(API_KEY) as server:
            self.server = server
            sinks: list[VectorSink] = []

            def make(collection: str = "docs", **options: Any) -> VectorSink:
                sinks.append(
                    PineconeSink(collection, location=server.url, api_key=API_KEY, **options)
                )
                return sinks[-1]

            yield make
            for sink in sinks:
                sink.close()

    def dump(self, sink: Any) -> dict[str, StoredPoint]:
        try:
            return dump_pinecone(self.server, sink.collection, sink.namespace)
        except KeyError:  # no such index
            return {}


def test_a_collection_moves_to_another_database(tiny_jina_embedder: Any, minilm: Any) -> None:
    """The Python function takes any two sinks: Qdrant to Pinecone here."""
    pytest.importorskip("qdrant_client")
    pytest.importorskip("pinecone")
    from pinecone_server import running_server

    from jina_connectors import PineconeSink, QdrantSink

    with (
        running_server(API_KEY) as server,
        QdrantSink("old", location=":memory:") as old,
        PineconeSink("new", location=server.url, api_key=API_KEY) as new,
    ):
        ingest(CORPUS_V1, old, model=tiny_jina_embedder, **OLD_SETTINGS)
        report = reembed(old, new, model=minilm, **QUIET)
        before, after = dump_qdrant(old.client, "old"), dump_pinecone(server, "new")
        assert report.errors == [] and set(after) == set(before)
        for point_id, point in after.items():
            assert without(point.payload, MODEL_FIELDS) == without(
                before[point_id].payload, MODEL_FIELDS
            )
        assert new.search("How long should the dough rise?", k=1)[0].doc_id == "bread"


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def write_corpus_file(folder: Path, records: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "docs.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return file


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main([*args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(--db, --location) of an empty store of each database."""
    db = request.param
    if db == "qdrant":
        yield db, str(tmp_path / "qdrant")
    elif db == "milvus":
        pytest.importorskip("milvus_lite")
        yield db, str(tmp_path / "m.db")
    else:
        pytest.importorskip("pinecone")
        from pinecone_server import running_server

        with running_server(API_KEY) as server, pytest.MonkeyPatch.context() as patch:
            patch.setenv("PINECONE_API_KEY", API_KEY)
            yield db, server.url


@pytest.mark.parametrize("store", ["qdrant", "milvus", "pinecone"], indirect=True)
def test_the_command(
    store: tuple[str, str],
    tmp_path: Path,
    tiny_jina_dir: Path,
    minilm_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    corpus = write_corpus_file(tmp_path / "corpus", CORPUS_V1)
    db, location = store
    where = ["--db", db, "--location", location]
    code, out, err = run(
        capsys, "ingest", str(corpus), "-c", "old", "--model", str(tiny_jina_dir),
        "--chunk-size", "48", "--no-progress", *where,
    )  # fmt: skip
    assert code == 0, err
    old_points = int(out.rsplit("holds ", 1)[1].split()[0])

    args = ["reembed", "-c", "old", "--into", "new", "--model", str(minilm_dir), *where]
    code, out, err = run(capsys, *args, "--no-progress")
    assert code == 0, err
    assert out.startswith(f"5 documents of 'old': 0 unchanged, {old_points} chunks embedded")
    assert out.rstrip().endswith(f"holds {old_points} points")

    code, out, err = run(capsys, *args, "--no-progress")
    assert code == 0, err
    assert out.startswith("5 documents of 'old': 5 unchanged, 0 chunks embedded, 0 points")

    code, out, _ = run(capsys, "search", "How long should the dough rise?", "-c", "new", *where)
    assert code == 0 and "bread" in out.splitlines()[0]

    code, _, err = run(capsys, "reembed", "-c", "old", "--into", "old", *where)
    assert code == 2 and "--into" in err and "name a new one" in err
    code, _, err = run(capsys, "reembed", "-c", "nothing", "--into", "new2", *where)
    assert code == 1 and "'nothing'" in err and "-c/--collection" in err
    code, _, err = run(capsys, *args[:5], "--model", str(minilm_dir), "--dimensions", "999", *where)
    assert code == 2 and "--dimensions" in err and "384" in err


def test_the_command_names_what_to_do_for_a_collection_without_texts(
    tmp_path: Path, minilm_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jina_connectors import QdrantSink

    store = tmp_path / "qdrant"
    with QdrantSink("old", location=store) as old:
        old.ensure_collection(CollectionSpec("old-model", 8))
        old.upsert(textless_records("a", 2, 8))
    code, out, err = run(
        capsys, "reembed", "-c", "old", "--into", "new", "--model", str(minilm_dir),
        "--location", str(store),
    )  # fmt: skip
    assert code == 1 and out == ""
    assert "does not store the texts" in err
    assert "jina-connectors ingest PATHS -c new --model MODEL" in err
    assert err.count("\n") == 1  # one line, no traceback
