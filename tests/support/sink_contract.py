"""The contract every database sink keeps, as mixin test classes run on every sink.

In the style of Haystack's document-store test mixins: each mixin holds the tests of one part
of the contract and relies only on the hooks of :class:`SinkHarness`; ``test_sink_contract.py``
combines them into :class:`SinkContractTests` once per database (Qdrant local mode, Milvus
Lite, the local Pinecone REST server) and implements the hooks. A new sink passes the same
suite by implementing the hooks.

Meaning comes from all-MiniLM-L6-v2 (real weights); the crash test runs its subprocesses on
the tiny jina-format checkpoint, which loads faster.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from ingest_corpus import (
    CORPUS_V1,
    CORPUS_V2,
    CRASH_SETTINGS,
    EmbedderWrapper,
    StoredPoint,
    assert_same_points,
    dump_qdrant,
)

from jina_connectors import IngestInterrupted, ingest
from jina_connectors.errors import CollectionMismatchError
from jina_connectors.sinks import ChunkRecord, CollectionInfo, CollectionSpec, VectorSink, chunk_id

SETTINGS: dict[str, Any] = {"chunk_size": 16, "show_progress": False}
WORKER = Path(__file__).with_name("ingest_worker.py")
SinkFactory = Callable[..., VectorSink]

# (what the database holds before the killed run, where the run is killed). The killed run
# ingests CORPUS_V1 into an empty database, or CORPUS_V2 over CORPUS_V1 (a changed, a
# shrunk, a new document, a metadata-only change, and two unchanged ones).
KILL_POINTS = [
    ("empty", "before-upsert:1"),
    ("empty", "partial-upsert:3"),
    ("empty", "after-upsert:5"),
    ("v1", "partial-upsert:2"),
    ("v1", "after-delete:1"),
    ("v1", "before-delete:2"),  # chess shrank: its old chunks are still there
]


def reference_points(embedder: Any, corpus: Any, **settings: Any) -> dict[str, StoredPoint]:
    """What a collection holds after ingesting ``corpus`` once into an empty Qdrant
    (``test_ingest.py`` checks those points against the embedder itself)."""
    from jina_connectors.sinks.qdrant import QdrantSink

    with QdrantSink("docs", location=":memory:") as reference:
        ingest(corpus, reference, model=embedder, **{**SETTINGS, **settings})
        return dump_qdrant(reference.client, "docs")


def payloads(points: dict[str, StoredPoint]) -> dict[str, dict[str, Any]]:
    return {point_id: point.payload for point_id, point in points.items()}


def doc_ids(hits: Any) -> set[str]:
    return {hit.doc_id for hit in hits}


class SinkHarness:
    """The hooks a database's test class implements (fixtures and methods)."""

    #: The ``DB`` argument of ``ingest_worker.py``.
    db: ClassVar[str]

    # Fixtures: ``make_sink(collection="docs")`` opens a sink on this test's own, initially
    # empty database (every call a new sink object on the same database), and
    # ``crash_store`` (see CrashSafetyTests).

    def dump(self, sink: VectorSink) -> dict[str, StoredPoint]:
        """Every point of the sink's collection, read past the sink, as the pipeline wrote it."""
        raise NotImplementedError

    def create_foreign_collection(
        self, sink: VectorSink, *, size: int, metric: str, payload: dict[str, Any] | None
    ) -> None:
        """Create the sink's collection past the sink: ``size`` float dimensions compared by
        ``metric`` (``"cosine"`` or another one), holding one point with ``payload`` (none
        when None)."""
        raise NotImplementedError

    def native_filter_year_from(self, year: int) -> Any:
        """The database's own filter for ``metadata.year >= year``."""
        raise NotImplementedError


@pytest.fixture(scope="session")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


class CreateAndMismatchTests(SinkHarness):
    def test_ingest_creates_the_collection_and_records_its_spec(
        self, make_sink: SinkFactory, minilm: Any
    ) -> None:
        sink = make_sink()
        assert sink.count() == 0 and sink.stored_spec() is None
        report = ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        stored = self.dump(sink)
        assert report.points_written == report.chunks == len(stored) == sink.count() > 5

        reopened = make_sink()  # a new sink on the same database: nothing cached
        spec = CollectionSpec(minilm.model_name, 384, "float", "retrieval.passage")
        assert reopened.stored_spec() == spec
        assert reopened.count() == len(stored)
        assert CollectionInfo("docs", len(stored), spec) in reopened.describe_collections()

    def test_other_dimensions_are_refused_and_nothing_is_touched(
        self, make_sink: SinkFactory, minilm: Any
    ) -> None:
        sink = make_sink()
        ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        before = self.dump(sink)
        with pytest.raises(CollectionMismatchError, match=r"size 384 .*needs size 128"):
            ingest(CORPUS_V2, make_sink(), model=minilm, dimensions=128, **SETTINGS)
        assert_same_points(self.dump(sink), before, atol=0)

    def test_another_model_at_equal_dimensions_is_refused(
        self, make_sink: SinkFactory, minilm: Any, tiny_jina_embedder: Any
    ) -> None:
        width = tiny_jina_embedder.dimension
        sink = make_sink()
        ingest(CORPUS_V1[:1], sink, model=tiny_jina_embedder, **SETTINGS)
        before = self.dump(sink)
        with pytest.raises(CollectionMismatchError, match="holds vectors of model"):
            ingest(CORPUS_V1, make_sink(), model=minilm, dimensions=width, **SETTINGS)
        assert_same_points(self.dump(sink), before, atol=0)

    def test_another_metric_is_refused_and_nothing_is_touched(
        self, make_sink: SinkFactory, minilm: Any
    ) -> None:
        sink = make_sink()
        self.create_foreign_collection(sink, size=384, metric="euclidean", payload=None)
        for _ in range(2):  # refused, and left as it was: refused again
            with pytest.raises(CollectionMismatchError, match=r"size 384 and metric (l2|euclid)"):
                ingest(CORPUS_V1, make_sink(), model=minilm, **SETTINGS)
        assert self.dump(sink) == {} and sink.count() == 0

    def test_an_unsupported_vector_type_is_refused_before_anything_is_created(
        self, make_sink: SinkFactory, minilm: Any
    ) -> None:
        sink = make_sink()
        if "ubinary" in sink.embedding_types:
            pytest.skip(f"{type(sink).__name__} stores binary vectors")
        with pytest.raises(ValueError, match="float vectors"):
            ingest(CORPUS_V1, sink, model=minilm, embedding_type="ubinary", **SETTINGS)
        assert "docs" not in {info.name for info in sink.describe_collections()}


class RerunTests(SinkHarness):
    def test_a_rerun_writes_nothing(self, make_sink: SinkFactory, minilm: Any) -> None:
        ingest(CORPUS_V1, make_sink(), model=minilm, **SETTINGS)
        sink = make_sink()
        before = self.dump(sink)
        report = ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        assert (report.documents, report.skipped, report.chunks, report.points_written) == (
            5,
            5,
            0,
            0,
        )
        assert_same_points(self.dump(sink), before, atol=0)

    def test_changed_shrunk_and_new_documents_leave_no_stale_chunks(
        self, make_sink: SinkFactory, minilm: Any
    ) -> None:
        sink = make_sink()
        ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        report = ingest(CORPUS_V2, sink, model=minilm, **SETTINGS)
        assert (report.documents, report.skipped) == (6, 2)  # bread and whales are unchanged
        stored = self.dump(sink)
        assert_same_points(stored, reference_points(minilm, CORPUS_V2))
        chess = [p.payload for p in stored.values() if p.payload["doc_id"] == "chess"]
        assert [p["text"] for p in chess] == ["Chess is a board game for two players."]
        assert sink.count() == len(stored)


class BadRecordTests(SinkHarness):
    def test_bad_records_are_named_and_the_rest_is_stored(
        self, make_sink: SinkFactory, minilm: Any
    ) -> None:
        documents = [
            CORPUS_V1[0],
            {"id": "no-text", "metadata": {}},
            {"id": 12345, "text": "A numeric id."},
            {"id": "blank", "text": "  "},
            *CORPUS_V1[1:3],
        ]
        sink = make_sink()
        report = ingest(documents, sink, model=minilm, batch_size=2, **SETTINGS)
        assert [str(e) for e in report.errors] == [
            "documents[1]: missing 'text'",
            "documents[2]: 'id' must be a string, got int",
            "documents[3]: 'text' is empty",
        ]
        assert report.documents == 3
        assert_same_points(self.dump(sink), reference_points(minilm, CORPUS_V1[:3]))


class FilterTests(SinkHarness):
    def test_filters_on_doc_id_and_user_metadata(self, make_sink: SinkFactory, minilm: Any) -> None:
        sink = make_sink()
        ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)

        def found(filter: Any) -> set[str]:
            return doc_ids(sink.search("bread, volcanoes and whales", k=50, filter=filter))

        assert found(None) == {"bread", "volcano", "chess", "whales", "tea"}
        assert found({"doc_id": "tea"}) == {"tea"}
        assert found({"doc_id": ["tea", "chess"]}) == {"tea", "chess"}
        assert found({"topic": "science"}) == {"volcano", "whales"}
        assert found({"year": [2020, 2023]}) == {"bread", "tea"}
        assert found({"rating": 4.5}) == {"bread", "tea"}
        assert found({"verified": False}) == {"volcano", "tea"}
        assert found({"verified": [True, False]}) == {"bread", "volcano", "chess", "whales", "tea"}
        assert found({"topic": "food", "year": 2020}) == {"bread"}
        assert found({"topic": "food", "year": 2021}) == set()
        assert found(self.native_filter_year_from(2022)) == {"whales", "tea"}

    def test_search_arguments_are_checked(self, make_sink: SinkFactory, minilm: Any) -> None:
        sink = make_sink()
        ingest(CORPUS_V1[:1], sink, model=minilm, **SETTINGS)
        with pytest.raises(ValueError, match="k must be"):
            sink.search("dough", k=0)
        with pytest.raises(ValueError, match="query must be a non-empty string"):
            sink.search("  ")
        with pytest.raises(ValueError, match="filter value for 'topic' must be a scalar"):
            sink.search("dough", filter={"topic": [{"a": 1}]})  # type: ignore[list-item]


class PayloadTests(SinkHarness):
    def test_points_round_trip_exactly(self, make_sink: SinkFactory, minilm: Any) -> None:
        sink = make_sink()
        ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        assert_same_points(self.dump(sink), reference_points(minilm, CORPUS_V1))

    def test_search_finds_the_answering_passage(self, make_sink: SinkFactory, minilm: Any) -> None:
        sink = make_sink()
        ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        texts = {doc["id"]: doc["text"] for doc in CORPUS_V1}
        for question, answer, phrase in (
            ("How long should the dough rise?", "bread", "rise for two hours"),
            ("Which animal is the largest ever?", "whales", "blue whale"),
            ("Which piece can jump over others?", "chess", "knight"),
        ):
            hits = sink.search(question, k=3)
            assert len(hits) == 3
            top = hits[0]
            assert top.doc_id == answer and phrase in top.text, (question, hits)
            assert top.text == texts[answer][top.start : top.end]
            assert top.id == chunk_id(answer, top.chunk_index)
            assert top.metadata == next(d["metadata"] for d in CORPUS_V1 if d["id"] == answer)
            scores = [hit.score for hit in hits]
            assert scores == sorted(scores, reverse=True) and scores[0] > scores[2]

    def test_awkward_document_ids(self, make_sink: SinkFactory, minilm: Any) -> None:
        awkward = 'say "hi" \\ back\\slash, it\'s ünïcode ✓ 😀 $in {x}'
        long_doc = {"id": awkward, "text": CORPUS_V1[1]["text"], "metadata": {}}
        short_doc = {"id": awkward, "text": "A volcano is an opening in the crust.", "metadata": {}}
        sink = make_sink()
        ingest([long_doc, CORPUS_V1[0]], sink, model=minilm, **SETTINGS)
        ingest([short_doc, CORPUS_V1[0]], sink, model=minilm, **SETTINGS)  # shrinks to 1 chunk
        mine = [p.payload for p in self.dump(sink).values() if p.payload["doc_id"] == awkward]
        assert [p["text"] for p in mine] == [short_doc["text"]]
        assert [h.doc_id for h in sink.search("crust", k=10, filter={"doc_id": awkward})] == [
            awkward
        ]

    def test_an_absent_collection_reads_as_empty_and_is_not_created(
        self, make_sink: SinkFactory
    ) -> None:
        sink = make_sink("absent")
        assert sink.count() == 0
        assert sink.stored_spec() is None
        assert sink.fetch_states([chunk_id("a", 0)]) == {}
        assert sink.search("anything", k=3) == []
        assert "absent" not in {info.name for info in sink.describe_collections()}


class ForeignDataTests(SinkHarness):
    def test_points_not_written_by_jina_connectors_are_refused(
        self, make_sink: SinkFactory, minilm: Any
    ) -> None:
        sink = make_sink()
        self.create_foreign_collection(sink, size=384, metric="cosine", payload={"a": "b"})
        assert sink.count() == 1
        with pytest.raises(CollectionMismatchError, match=r"(not written|not created) by jina"):
            ingest(CORPUS_V1, sink, model=minilm, **SETTINGS)
        assert sink.count() == 1 and payloads(self.dump(sink)) != {}
        assert sink.search("anything") == []  # no model recorded: nothing to search with
        info = next(i for i in sink.describe_collections() if i.name == "docs")
        assert (info.count, info.spec) == (1, None)


class ConcurrencyTests(SinkHarness):
    def test_one_sink_shared_by_writers_and_readers(self, make_sink: SinkFactory) -> None:
        """The pipeline looks up states while its writer writes: hammer one sink (opened
        lazily by the threads themselves) from three threads; every write must land."""
        spec = CollectionSpec("test-model", 8)
        make_sink().ensure_collection(spec)
        sink = make_sink()  # fresh: its lazy handles and caches are created by the threads
        rounds, errors = 12, []
        barrier = threading.Barrier(3)

        def versions(doc: str) -> list[list[ChunkRecord]]:
            rng = np.random.default_rng(sum(map(ord, doc)))
            out = []
            for version in range(rounds):
                n = 1 + (version * 7 + len(doc)) % 5
                vectors = rng.standard_normal((n, 8)).astype(np.float32)
                vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
                out.append(
                    [
                        ChunkRecord(
                            chunk_id(doc, i),
                            vectors[i],
                            f"{doc} v{version} chunk {i}",
                            doc,
                            i,
                            n,
                            0,
                            1,
                            f"{doc}-{version}",
                            {"version": version},
                            spec.model,
                            spec.task,
                            8,
                            "float",
                        )
                        for i in range(n)
                    ]
                )
            return out

        def writer(doc: str) -> None:
            try:
                barrier.wait()
                for records in versions(doc):
                    sink.upsert(records)
                    sink.delete_stale({doc: len(records)})
            except BaseException as error:  # reported below
                errors.append(error)

        def reader() -> None:
            try:
                barrier.wait()
                ids = [chunk_id(doc, i) for doc in ("left", "right") for i in range(5)]
                for _ in range(2 * rounds):
                    for point_id, state in sink.fetch_states(ids).items():
                        assert state.content_hash.startswith(("left-", "right-")), point_id
                    sink.count()
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=writer, args=(d,)) for d in ("left", "right")]
        threads.append(threading.Thread(target=reader))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not errors, errors
        stored = self.dump(sink)
        expected = {r.id: r for doc in ("left", "right") for r in versions(doc)[-1]}
        assert set(stored) == set(expected)
        for point_id, record in expected.items():
            assert stored[point_id].payload["content_hash"] == record.content_hash
            np.testing.assert_allclose(stored[point_id].vector, record.vector, atol=1e-6)
        assert sink.count() == len(expected)


class InterruptedEmbedder(EmbedderWrapper):
    """An embedder whose embedding is interrupted (Ctrl-C) at once."""

    def embed_documents(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt


def collection_names(sink: VectorSink) -> set[str]:
    return {info.name for info in sink.describe_collections()}


AWKWARD_PATH_IDS = ["/d/a_b/x.md", "/d/axb/y.md", "/d/a%b/z.md", "/d/a_b", "/d/a\\b/w.md"]


class DocumentTests(SinkHarness):
    def test_documents_by_prefix_and_deleted_by_id(
        self, make_sink: SinkFactory, minilm: Any
    ) -> None:
        """Prefixes are literal (``_`` and ``%`` are not wildcards); deleting documents
        removes all their points and nothing else."""
        documents = [
            {"id": doc_id, "text": CORPUS_V1[i % len(CORPUS_V1)]["text"]}
            for i, doc_id in enumerate([*AWKWARD_PATH_IDS, "bread"])
        ]
        sink = make_sink()
        ingest(documents, sink, model=minilm, **SETTINGS)
        stored = self.dump(sink)
        per_document: dict[str, int] = {}
        for point in stored.values():
            doc_id = point.payload["doc_id"]
            per_document[doc_id] = per_document.get(doc_id, 0) + 1
        assert sink.document_points() == per_document
        assert sink.document_points("/d/a_b/") == {"/d/a_b/x.md": per_document["/d/a_b/x.md"]}
        assert sink.doc_ids("/d/a%b/") == {"/d/a%b/z.md"}
        assert sink.doc_ids("/d/a\\b/") == {"/d/a\\b/w.md"}
        assert sink.doc_ids("/d/a_b") == {"/d/a_b/x.md", "/d/a_b"}
        assert sink.doc_ids("/d/") == set(AWKWARD_PATH_IDS)
        assert sink.doc_ids("/e/") == set() and make_sink("absent").doc_ids() == set()

        gone = {"/d/a_b/x.md", "bread"}
        make_sink().delete_documents([*gone, "never-stored"])
        kept = {k: p for k, p in stored.items() if p.payload["doc_id"] not in gone}
        assert_same_points(self.dump(sink), kept, atol=0)
        assert sink.count() == len(kept)

    def test_drop_collection(self, make_sink: SinkFactory, minilm: Any) -> None:
        sink = make_sink()
        ingest(CORPUS_V1[:2], sink, model=minilm, **SETTINGS)
        make_sink("other").ensure_collection(CollectionSpec(minilm.model_name, 384))
        assert sink.drop_collection() is True
        assert collection_names(sink) == {"other"}
        assert make_sink().count() == 0 and self.dump(make_sink()) == {}
        assert make_sink().drop_collection() is False
        report = ingest(CORPUS_V1[:1], sink, model=minilm, **SETTINGS)  # created again
        assert sink.count() == report.points_written > 0

    def test_a_run_that_writes_nothing_leaves_no_collection(
        self, make_sink: SinkFactory, minilm: Any
    ) -> None:
        sink = make_sink()
        report = ingest([{"id": "x"}, {"id": "y", "text": " "}], sink, model=minilm, **SETTINGS)
        assert len(report.errors) == 2
        with pytest.raises(IngestInterrupted) as interrupted:
            ingest(CORPUS_V1, make_sink(), model=InterruptedEmbedder(minilm), **SETTINGS)
        assert isinstance(interrupted.value, KeyboardInterrupt)
        assert interrupted.value.report.completed == 0
        assert "docs" not in collection_names(sink)
        report = ingest(CORPUS_V1, make_sink(), model=minilm, **SETTINGS)  # the first write
        assert "docs" in collection_names(sink) and sink.count() == report.points_written

    def test_a_read_only_sink_writes_nothing(self, make_sink: SinkFactory, minilm: Any) -> None:
        with pytest.raises(PermissionError, match="read-only"):
            ingest(CORPUS_V1, make_sink(read_only=True), model=minilm, **SETTINGS)
        assert "docs" not in collection_names(make_sink())
        ingest(CORPUS_V1[:1], make_sink(), model=minilm, **SETTINGS)
        reader = make_sink(read_only=True)
        assert reader.count() > 0 and reader.search("dough", k=1)[0].doc_id == "bread"
        for write in (lambda: reader.delete_documents(["bread"]), reader.drop_collection):
            with pytest.raises(PermissionError, match="read-only"):
                write()
        assert reader.doc_ids() == {"bread"}


class SyncTests(SinkHarness):
    def test_sync_deletes_what_the_paths_no_longer_hold(
        self, make_sink: SinkFactory, minilm: Any, tmp_path: Path
    ) -> None:
        """Removed files and removed ``.jsonl`` lines go; a sibling folder whose name
        extends the folder's, records with their own ids, and the document of a file that is
        now a bad record stay; an emptied file is no bad record, and its document goes.
        Before: one bad record, or one empty placeholder file, blocked the whole deletion."""
        docs, sibling = tmp_path / "docs", tmp_path / "docs2"
        (docs / "sub").mkdir(parents=True)
        sibling.mkdir()
        texts = [doc["text"] for doc in CORPUS_V1]
        (docs / "a.md").write_text(texts[0], encoding="utf-8")
        (docs / "sub" / "b.md").write_text(texts[1], encoding="utf-8")
        (docs / "f.md").write_text(texts[4], encoding="utf-8")
        lines = [json.dumps({"text": texts[2]}), json.dumps({"id": "own", "text": texts[3]})]
        (docs / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (sibling / "d.md").write_text(texts[4], encoding="utf-8")
        at = docs.resolve().as_posix()
        line_id = f"{at}/c.jsonl:" + hashlib.sha256(texts[2].encode()).hexdigest()[:16]
        sink = make_sink()
        ingest([sibling], sink, model=minilm, **SETTINGS)
        first = ingest([docs], sink, model=minilm, sync=True, **SETTINGS)
        assert (first.synced, first.deleted_documents, first.deleted_points) == (True, 0, 0)
        before = sink.document_points()
        assert set(before) == {
            f"{at}/a.md",
            f"{at}/sub/b.md",
            f"{at}/f.md",
            line_id,
            "own",
            f"{sibling.resolve().as_posix()}/d.md",
        }

        (docs / "sub" / "b.md").unlink()
        (docs / "c.jsonl").write_text(lines[1] + "\n", encoding="utf-8")  # line 1 removed
        (docs / "a.md").write_bytes(b"\xff\xfe not UTF-8")  # a bad record: a.md stays
        (docs / "f.md").write_text(" \n", encoding="utf-8")  # emptied: f.md goes
        (docs / "e.txt").write_text("", encoding="utf-8")  # an empty placeholder
        report = ingest([docs], sink, model=minilm, sync=True, **SETTINGS)
        assert [e.record for e in report.errors] == [str(docs / "a.md")]
        assert sorted(e.record for e in report.empty) == [str(docs / "e.txt"), str(docs / "f.md")]
        gone = {f"{at}/sub/b.md", line_id, f"{at}/f.md"}
        assert (report.synced, report.deleted_documents, report.kept_documents) == (True, 3, 1)
        assert report.deleted_points == sum(before[doc_id] for doc_id in gone)
        assert sink.document_points() == {k: n for k, n in before.items() if k not in gone}
        # "own" moved from line 2 to line 1: same id, so it was never deleted.
        assert report.skipped == 1

        (docs / "a.md").write_text(texts[0], encoding="utf-8")  # readable again: unchanged
        again = ingest([docs], sink, model=minilm, sync=True, **SETTINGS)
        assert (again.skipped, again.deleted_documents, again.errors) == (2, 0, [])


class CrashStore:
    """Where a crash test's runs live: ``location(n)`` gives run ``n`` its own
    ``(location, collection)``; ``open`` opens a sink there in this process (closed before
    the worker runs); ``env`` is added to the worker's environment."""

    def __init__(
        self,
        location: Callable[[int], tuple[str, str]],
        open: Callable[[str, str], VectorSink],
        env: dict[str, str] | None = None,
    ) -> None:
        self.location = location
        self.open = open
        self.env = env or {}


class CrashSafetyTests(SinkHarness):
    @pytest.fixture(scope="class")
    def crash_expected(self, tiny_jina_dir: Path) -> dict[str, dict[str, StoredPoint]]:
        """Each corpus ingested once, uninterrupted, into an empty database."""
        from jina_connectors.sinks.qdrant import QdrantSink

        result = {}
        for name, corpus in (("v1", CORPUS_V1), ("v2", CORPUS_V2)):
            with QdrantSink("docs", location=":memory:") as sink:
                ingest(corpus, sink, model=str(tiny_jina_dir), **CRASH_SETTINGS)
                result[name] = dump_qdrant(sink.client, "docs")
        return result

    def test_killed_ingestion_is_completed_by_a_rerun(
        self,
        crash_store: CrashStore,
        tmp_path: Path,
        tiny_jina_dir: Path,
        crash_expected: dict[str, dict[str, StoredPoint]],
    ) -> None:
        """SIGKILL an ingestion at six points, re-run it: the collection then holds exactly
        the expected points (no duplicates, no missing or stale chunks, intact payloads), and
        a third run writes nothing. Real subprocesses, real databases."""
        import os

        model = str(tiny_jina_dir)
        corpus_files = {}
        for name, corpus in (("v1", CORPUS_V1), ("v2", CORPUS_V2)):
            corpus_files[name] = tmp_path / f"{name}.json"
            corpus_files[name].write_text(json.dumps(corpus), encoding="utf-8")

        runs = []
        for number, (start, kill_point) in enumerate(KILL_POINTS):
            location, collection = crash_store.location(number)
            if start == "v1":
                with crash_store.open(location, collection) as sink:
                    ingest(CORPUS_V1, sink, model=model, **CRASH_SETTINGS)
            runs.append((location, collection, "v1" if start == "empty" else "v2", kill_point))

        def run_killed(run: tuple[str, str, str, str]) -> subprocess.CompletedProcess[str]:
            location, collection, target, kill_point = run
            command = [sys.executable, str(WORKER), self.db, location, collection, model]
            return subprocess.run(
                [*command, str(corpus_files[target]), kill_point],
                capture_output=True,
                text=True,
                timeout=300,
                env={**os.environ, **crash_store.env},
            )

        with ThreadPoolExecutor(max_workers=3) as pool:  # worker start-up is mostly imports
            results = list(pool.map(run_killed, runs))

        for (location, collection, target, kill_point), result in zip(runs, results, strict=True):
            assert result.returncode == -signal.SIGKILL, (kill_point, result.stdout, result.stderr)
            corpus = CORPUS_V1 if target == "v1" else CORPUS_V2
            expected = crash_expected[target]
            with crash_store.open(location, collection) as sink:
                # The kill left work undone...
                assert payloads(self.dump(sink)) != payloads(expected), kill_point
                # ...which a re-run completes: exactly the expected points, nothing else.
                report = ingest(corpus, sink, model=model, **CRASH_SETTINGS)
                assert report.points_written > 0 and not report.errors, kill_point
                assert_same_points(self.dump(sink), expected, atol=1e-5)
                assert sink.count() == len(expected)
                # And the collection is now complete: a third run writes nothing.
                again = ingest(corpus, sink, model=model, **CRASH_SETTINGS)
                assert (again.points_written, again.skipped) == (0, len(corpus)), kill_point


class SinkContractTests(
    DocumentTests,
    SyncTests,
    CreateAndMismatchTests,
    RerunTests,
    BadRecordTests,
    FilterTests,
    PayloadTests,
    ForeignDataTests,
    ConcurrencyTests,
    CrashSafetyTests,
):
    """Every part of the sink contract."""
