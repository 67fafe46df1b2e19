"""PineconeSink driven through the real ``pinecone`` SDK against the local REST server in
``tests/pinecone_server.py`` (which enforces Pinecone's request limits)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pinecone_server import (
    MAX_METADATA_BYTES,
    MAX_REQUEST_BYTES,
    MAX_UPSERT_RECORDS,
    PineconeTestServer,
    running_server,
)

pytest.importorskip("pinecone")

from pinecone import Pinecone
from pinecone.errors.exceptions import ApiError, PayloadTooLargeError

from jina_connectors import ingest
from jina_connectors.errors import CollectionMismatchError, InvalidDocumentError
from jina_connectors.sinks.pinecone import PineconeSink
from jina_connectors.sinks.records import CHUNK_NAMESPACE, ChunkRecord, CollectionSpec, chunk_id

API_KEY = "test-key"
SinkFactory = Callable[..., PineconeSink]

CORPUS = [
    {
        "id": "france",
        "text": "Paris is the capital and largest city of France. The Seine flows through it.",
        "metadata": {"topic": "geography", "year": 2001, "reviewed": True},
    },
    {
        "id": "plants",
        "text": "Photosynthesis lets green plants turn sunlight, water and carbon dioxide into "
        "sugar and oxygen.",
        "metadata": {"topic": "biology", "year": 2002, "reviewed": False},
    },
    {
        "id": "python",
        "text": "Python is a programming language created by Guido van Rossum. Its design "
        "emphasises readable code.",
        "metadata": {"topic": "computing", "year": 2003, "tags": ["language", "software"]},
    },
    {
        "id": "everest",
        "text": "Mount Everest, in the Himalayas, is the highest mountain on Earth above the sea.",
        "metadata": {"topic": "geography", "year": 2004},
    },
]


@pytest.fixture
def server() -> Iterator[PineconeTestServer]:
    with running_server(API_KEY) as running:
        yield running


@pytest.fixture
def make_sink(server: PineconeTestServer) -> Iterator[SinkFactory]:
    sinks: list[PineconeSink] = []

    def make(index: str = "docs", namespace: str | None = None, **options: Any) -> PineconeSink:
        sink = PineconeSink(
            index, api_key=API_KEY, location=server.url, namespace=namespace, **options
        )
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


@pytest.fixture
def sdk(server: PineconeTestServer) -> Iterator[Pinecone]:
    client = Pinecone(api_key=API_KEY, host=server.url)
    yield client
    client.close()


@pytest.fixture(scope="session")
def minilm(minilm_dir: Path) -> str:
    return str(minilm_dir)


def spec(dimensions: int = 8, model: str = "test-model") -> CollectionSpec:
    return CollectionSpec(model=model, dimensions=dimensions)


def records(
    doc_id: str,
    n: int,
    *,
    dimensions: int = 8,
    text: str | Callable[[int], str] = "chunk",
    metadata: dict[str, Any] | None = None,
    seed: int = 0,
) -> list[ChunkRecord]:
    """``n`` chunks of one document with random unit vectors, as the pipeline builds them."""
    vectors = np.random.default_rng(seed).standard_normal((n, dimensions)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out = []
    for i in range(n):
        chunk_text = text(i) if callable(text) else f"{text} {i}"
        out.append(
            ChunkRecord(
                id=chunk_id(doc_id, i),
                vector=vectors[i],
                text=chunk_text,
                doc_id=doc_id,
                chunk_index=i,
                chunk_count=n,
                start=10 * i,
                end=10 * i + len(chunk_text),
                content_hash="hash-" + doc_id,
                metadata=metadata or {},
                model="test-model",
                task="retrieval.passage",
                dimensions=dimensions,
                embedding_type="float",
            )
        )
    return out


def create_index(sdk: Pinecone, name: str, dimension: int, metric: str = "cosine") -> Any:
    return sdk.indexes.create(
        name=name,
        schema={
            "fields": {
                "_values": {"type": "dense_vector", "dimension": dimension, "metric": metric}
            }
        },
        deployment={"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
    )


def writes(server: PineconeTestServer) -> list[Any]:
    """Requests that changed something: index creation/deletion, upserts and deletes."""
    return [
        r
        for r in server.requests
        if (r.method, r.path) == ("POST", "/indexes")
        or r.method == "DELETE"
        or r.path.endswith(("/vectors/upsert", "/vectors/delete"))
    ]


# -- index creation and checks -------------------------------------------------------------


def test_ensure_collection_creates_a_serverless_cosine_index_once(
    server: PineconeTestServer, make_sink: SinkFactory, sdk: Pinecone
) -> None:
    sink = make_sink("docs", cloud="gcp", region="us-central1")
    sink.ensure_collection(spec(dimensions=384))
    sink.ensure_collection(spec(dimensions=384))

    description = sdk.indexes.describe("docs")
    field = description.schema.fields["_values"]
    assert (field.dimension, field.metric) == (384, "cosine")
    assert (description.deployment.cloud, description.deployment.region) == ("gcp", "us-central1")
    assert description.status.ready
    (create,) = server.requests_to("/indexes", method="POST")
    assert create.body["deployment"]["deployment_type"] == "managed"  # serverless


@pytest.mark.parametrize(
    ("dimension", "metric"), [(128, "cosine"), (384, "dotproduct"), (384, "euclidean")]
)
def test_existing_index_with_other_dimension_or_metric_is_refused_untouched(
    server: PineconeTestServer, make_sink: SinkFactory, sdk: Pinecone, dimension: int, metric: str
) -> None:
    create_index(sdk, "docs", dimension, metric)
    sdk.index(name="docs").upsert(vectors=[("keep-me", [0.5] * dimension, {"k": "v"})])
    before = server.records("docs")
    server.clear_log()

    sink = make_sink("docs")
    with pytest.raises(CollectionMismatchError, match=rf"size {dimension} and metric {metric}"):
        sink.ensure_collection(spec(dimensions=384))

    assert writes(server) == []
    assert server.records("docs") == before
    description = sdk.indexes.describe("docs")
    assert description.schema.fields["_values"].dimension == dimension


def test_binary_vectors_are_refused_before_any_request(
    server: PineconeTestServer, make_sink: SinkFactory
) -> None:
    sink = make_sink("docs")
    with pytest.raises(ValueError, match="float vectors only"):
        sink.ensure_collection(CollectionSpec("m", 64, embedding_type="ubinary"))
    assert server.requests == []


def test_constructor_rejects_bad_index_names_and_missing_api_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("Docs", "my_docs", "-docs", "x" * 46, ""):
        with pytest.raises(ValueError, match="invalid Pinecone index name"):
            PineconeSink(name, api_key=API_KEY)
    monkeypatch.delenv("PINECONE_API_KEY", raising=False)
    with pytest.raises(ValueError, match="PINECONE_API_KEY"):
        PineconeSink("docs")


# -- records, ids and metadata --------------------------------------------------------------


def test_records_are_stored_under_uuid5_ids_with_the_full_payload(
    server: PineconeTestServer, make_sink: SinkFactory
) -> None:
    sink = make_sink("docs")
    sink.ensure_collection(spec())
    written = records("report.md", 3, metadata={"author": "Ada", "pages": 12, "tags": ["a", "b"]})
    sink.upsert(written)

    stored = server.records("docs")
    assert set(stored) == {str(uuid.uuid5(CHUNK_NAMESPACE, f"report.md\x1f{i}")) for i in range(3)}
    for record in written:
        values, metadata = stored[record.id]
        np.testing.assert_allclose(values, record.vector, rtol=1e-6)
        assert metadata == {
            "text": record.text,
            "doc_id": "report.md",
            "chunk_index": record.chunk_index,
            "chunk_count": 3,
            "start": record.start,
            "end": record.end,
            "content_hash": "hash-report.md",
            "model": "test-model",
            "task": "retrieval.passage",
            "dimensions": 8,
            "embedding_type": "float",
            "metadata.author": "Ada",
            "metadata.pages": 12,
            "metadata.tags": ["a", "b"],
        }
    states = sink.fetch_states([r.id for r in written] + [chunk_id("report.md", 3)])
    assert {i: (s.content_hash, s.chunk_count) for i, s in states.items()} == {
        r.id: ("hash-report.md", 3) for r in written
    }


def test_unstorable_user_metadata_is_refused_naming_the_document_before_any_write(
    server: PineconeTestServer, make_sink: SinkFactory
) -> None:
    sink = make_sink("docs")
    sink.ensure_collection(spec())
    server.clear_log()
    for bad in ({"scores": [1, 2]}, {"author": {"name": "Ada"}}, {"big": 2**60}):
        good = records("good", 2)
        with pytest.raises(InvalidDocumentError, match=r"document 'bad' chunk 0"):
            sink.upsert([*good, *records("bad", 1, metadata=bad)])
        with pytest.raises(ValueError, match=next(iter(bad))):
            sink.check_metadata(bad)
    assert writes(server) == []

    sink.upsert(records("nulls", 1, metadata={"keep": "yes", "gone": None}))
    ((_, metadata),) = server.records("docs").values()
    assert metadata["metadata.keep"] == "yes"
    assert "metadata.gone" not in metadata


def test_over_long_text_is_truncated_at_a_character_boundary_and_flagged(
    server: PineconeTestServer, make_sink: SinkFactory
) -> None:
    sink = make_sink("docs")
    sink.ensure_collection(spec())
    # Multi-byte characters (2, 3 and 4 bytes in UTF-8) and JSON escapes, ~120 KB encoded.
    long_text = 'é€😀"\\ plain ' * 5000
    written = records("long", 3, text=lambda i: long_text if i == 1 else f"short {i}")

    sink.upsert(written)
    assert sink.truncated == 1

    stored = server.records("docs")
    kept = stored[written[1].id][1]
    assert kept["text_truncated"] is True
    assert long_text.startswith(kept["text"])
    size = len(json.dumps(kept, separators=(",", ":"), ensure_ascii=False).encode())
    assert 0.9 * MAX_METADATA_BYTES < size <= MAX_METADATA_BYTES
    assert (kept["start"], kept["end"]) == (written[1].start, written[1].end)  # the full span
    for i in (0, 2):
        assert stored[written[i].id][1]["text"] == f"short {i}"
        assert "text_truncated" not in stored[written[i].id][1]


def test_metadata_too_large_without_text_is_refused(make_sink: SinkFactory) -> None:
    sink = make_sink("docs")
    sink.ensure_collection(spec())
    with pytest.raises(InvalidDocumentError, match="without the chunk text"):
        sink.upsert(records("huge", 1, metadata={"blob": "x" * MAX_METADATA_BYTES}))
    with pytest.raises(ValueError, match="keep user metadata under"):
        sink.check_metadata({"blob": "x" * MAX_METADATA_BYTES})


# -- request limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "dimensions", "text_chars"),
    [
        (2500, 8, 20),  # the 1,000-record cap binds: 1000 + 1000 + 500
        (300, 1024, 2000),  # the 2 MB cap binds: ~25 KB per record, ~80 per request
    ],
)
def test_upserts_stay_within_pinecone_request_limits(
    server: PineconeTestServer, make_sink: SinkFactory, n: int, dimensions: int, text_chars: int
) -> None:
    sink = make_sink("docs")
    sink.ensure_collection(spec(dimensions))
    written = records(
        "big", n, dimensions=dimensions, text=lambda i: f"{i:05d}" * (text_chars // 5)
    )
    sink.upsert(written)

    upserts = server.requests_to("/vectors/upsert")
    assert all(r.status == 200 for r in upserts)
    assert len(upserts) >= 3
    assert max(r.record_count for r in upserts) <= MAX_UPSERT_RECORDS
    assert max(r.body_bytes for r in upserts) <= MAX_REQUEST_BYTES
    # Batches are full, not needlessly small: all but the last hit one of the two caps.
    for r in upserts[:-1]:
        assert r.record_count == MAX_UPSERT_RECORDS or r.body_bytes > 0.9 * MAX_REQUEST_BYTES
    assert [i for r in upserts for i in r.body["ids"]] == [r.id for r in written]  # in order
    assert set(server.records("docs")) == {r.id for r in written}
    assert sink.count() == n


def test_state_lookups_and_deletes_are_batched(
    server: PineconeTestServer, make_sink: SinkFactory
) -> None:
    sink = make_sink("docs")
    sink.ensure_collection(spec())
    # 1,100 documents keep one chunk (more than one filter's $in takes), a few keep more.
    docs = {f"doc-{d}": 1 if d < 1100 else 2 + d % 3 for d in range(1106)}
    # Each document has two chunks more than will be kept.
    sink.upsert([r for doc_id, n in docs.items() for r in records(doc_id, n + 2)])
    ids = [chunk_id(doc_id, i) for doc_id, n in docs.items() for i in range(n + 2)]

    states = sink.fetch_states(ids)
    assert len(states) == len(ids)
    fetches = server.requests_to("/vectors/fetch")
    assert all(r.status == 200 and r.record_count <= 100 for r in fetches)
    assert sum(r.record_count for r in fetches) == len(ids)

    server.clear_log()
    sink.delete_stale(docs)
    deletes = server.requests_to("/vectors/delete")
    assert all(r.status == 200 for r in deletes)
    in_lists = [r.body["filter"]["doc_id"]["$in"] for r in deletes]
    assert max(len(values) for values in in_lists) <= 1000
    assert sorted(doc_id for values in in_lists for doc_id in values) == sorted(docs)
    expected = {chunk_id(doc_id, i) for doc_id, n in docs.items() for i in range(n)}
    assert set(server.records("docs")) == expected


def test_test_server_enforces_the_limits(server: PineconeTestServer, sdk: Pinecone) -> None:
    """The limit tests above mean something only because the server refuses what Pinecone
    refuses."""
    create_index(sdk, "limits", 4)
    index = sdk.index(name="limits")
    with pytest.raises(ApiError, match="exceeds the maximum of 1000"):
        index.upsert(vectors=[(f"v{i}", [1.0, 0, 0, 0]) for i in range(1001)])
    with pytest.raises(PayloadTooLargeError):
        index.upsert(vectors=[(f"v{i}", [1.0, 0, 0, 0], {"t": "x" * 30_000}) for i in range(80)])
    with pytest.raises(ApiError, match="exceeds the limit of 40960 bytes"):
        index.upsert(vectors=[("v", [1.0, 0, 0, 0], {"t": "x" * MAX_METADATA_BYTES})])
    with pytest.raises(ApiError, match="does not match the dimension of the index 4"):
        index.upsert(vectors=[("v", [1.0, 0, 0])])
    with pytest.raises(ApiError, match="Too many ids"):
        index.fetch(ids=[f"v{i}" for i in range(1001)])
    assert index.describe_index_stats().total_vector_count == 0


def test_test_server_index_lifecycle(server: PineconeTestServer, sdk: Pinecone) -> None:
    create_index(sdk, "one", 3)
    create_index(sdk, "two", 5, "euclidean")
    assert {(i.name, i.host) for i in sdk.indexes.list()} == {
        ("one", server.index_host("one")),
        ("two", server.index_host("two")),
    }
    with pytest.raises(ApiError, match="already exists"):
        create_index(sdk, "one", 3)
    sdk.indexes.delete("one")
    assert not sdk.indexes.exists("one")
    assert sdk.indexes.exists("two")


def test_test_server_filters_like_pinecone(server: PineconeTestServer, sdk: Pinecone) -> None:
    create_index(sdk, "filters", 2)
    index = sdk.index(name="filters")
    index.upsert(
        vectors=[
            ("a", [1.0, 0.0], {"genre": ["comedy", "drama"], "year": 2001, "ok": True}),
            ("b", [0.8, 0.6], {"genre": "comedy", "year": 2005}),
            ("c", [0.0, 1.0], {"genre": ["documentary"], "year": 2010, "ok": False}),
        ]
    )

    def ids(flt: dict[str, Any]) -> set[str]:
        response = index.query(vector=[1.0, 0.0], top_k=10, filter=flt)
        return {m.id for m in response.matches}

    assert ids({"genre": {"$eq": "drama"}}) == {"a"}
    assert ids({"genre": "comedy"}) == {"a", "b"}
    assert ids({"genre": {"$ne": "comedy"}}) == {"c"}
    assert ids({"genre": {"$in": ["drama", "documentary"]}}) == {"a", "c"}
    assert ids({"genre": {"$nin": ["drama", "documentary"]}}) == {"b"}
    assert ids({"year": {"$gte": 2005, "$lt": 2010}}) == {"b"}
    assert ids({"ok": {"$eq": True}}) == {"a"}
    assert ids({"ok": {"$ne": True}}) == {"b", "c"}  # absent counts as "not equal"
    assert ids({"ok": {"$exists": False}}) == {"b"}
    assert ids({"$or": [{"year": {"$lte": 2001}}, {"year": {"$gt": 2007}}]}) == {"a", "c"}
    assert ids({"$and": [{"genre": "comedy"}, {"year": {"$gt": 2001}}]}) == {"b"}


@pytest.mark.parametrize(
    ("metric", "order", "scores"),
    [
        ("cosine", ["a", "b", "c"], [1.0, 0.8, 0.0]),
        ("dotproduct", ["b", "a", "c"], [3.2, 2.0, 0.0]),
        ("euclidean", ["a", "b", "c"], [1.0, 1.6, 8.0]),  # squared distance, nearest first
    ],
)
def test_test_server_scores_like_pinecone(
    server: PineconeTestServer, sdk: Pinecone, metric: str, order: list[str], scores: list[float]
) -> None:
    create_index(sdk, "scores", 2, metric)
    index = sdk.index(name="scores")
    index.upsert(vectors=[("a", [1.0, 0.0]), ("b", [1.6, 1.2]), ("c", [0.0, 2.0])])
    matches = index.query(vector=[2.0, 0.0], top_k=3, include_values=True).matches
    assert [m.id for m in matches] == order
    np.testing.assert_allclose([m.score for m in matches], scores, atol=1e-6)
    np.testing.assert_allclose(matches[0].values, {"a": [1.0, 0.0], "b": [1.6, 1.2]}[order[0]])


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_transient_errors_are_retried_until_the_write_lands(
    server: PineconeTestServer, make_sink: SinkFactory, status: int
) -> None:
    sink = make_sink("docs")
    sink.ensure_collection(spec())
    # Six failures: more than the SDK's own 3 retries per request, so our backoff must retry.
    server.fail_next(6, status=status, path_suffix="/vectors/upsert")
    written = records("doc", 4)
    sink.upsert(written)

    statuses = [r.status for r in server.requests_to("/vectors/upsert")]
    assert statuses == [status] * 6 + [200]
    assert set(server.records("docs")) == {r.id for r in written}

    server.fail_next(5, status=status, path_suffix="/query")
    assert sink.stored_spec() == spec()


def test_permanent_errors_are_not_retried(
    server: PineconeTestServer, make_sink: SinkFactory
) -> None:
    sink = make_sink("docs")
    sink.ensure_collection(spec())
    server.fail_next(1, status=400, path_suffix="/vectors/upsert")
    with pytest.raises(ApiError) as raised:
        sink.upsert(records("doc", 2))
    assert raised.value.status_code == 400
    assert len(server.requests_to("/vectors/upsert")) == 1
    assert server.records("docs") == {}


# -- the pipeline through the sink ---------------------------------------------------------


def test_list_metadata_and_k_bounds(make_sink: SinkFactory, minilm: str) -> None:
    sink = make_sink("docs")
    ingest(CORPUS, sink, model=minilm, show_progress=False)
    question = "What is the capital of France?"

    def docs(flt: Any) -> set[str]:
        return {h.doc_id for h in sink.search(question, k=20, filter=flt)}

    assert docs({"tags": "software", "topic": "computing"}) == {"python"}  # a list of strings
    assert docs({"tags": ["language", "nothing"]}) == {"python"}
    assert docs({"reviewed": [True, False]}) == {"france", "plants"}  # $in takes no booleans
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 10000\]"):
        sink.search(question, k=10_001)


def test_a_record_pinecone_refuses_is_a_bad_record_and_the_rest_is_stored(
    server: PineconeTestServer, make_sink: SinkFactory, minilm: str
) -> None:
    """Pinecone does not document how it measures metadata: a service stricter than our
    budget refuses some records (400). Only their documents become bad records."""
    server.max_metadata_bytes = 1200  # the long document's chunk text does not fit
    long_doc = {"id": "long", "text": "Rivers and lakes. " + "Water flows downhill. " * 60}
    sink = make_sink("docs")
    documents = [CORPUS[0], long_doc, *CORPUS[1:]]
    report = ingest(
        documents, sink, model=minilm, chunk_size=512, batch_size=5, show_progress=False
    )
    assert [e.record for e in report.errors] == ["documents[1]"]
    assert "document 'long' was refused by the database" in str(report.errors[0])
    assert "exceeds the limit of 1200 bytes" in str(report.errors[0])
    stored = server.records("docs")
    assert {m["doc_id"] for _, m in stored.values()} == {d["id"] for d in CORPUS}
    assert report.points_written == len(stored)
    # Each of the others is complete: a re-run skips them and tries the refused one again.
    again = ingest(documents, sink, model=minilm, chunk_size=512, show_progress=False)
    assert (again.skipped, [e.record for e in again.errors]) == (4, ["documents[1]"])


def test_threads_open_the_data_plane_once(
    server: PineconeTestServer, make_sink: SinkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index handle is opened lazily, by whichever thread comes first (the pipeline and
    its writer share the sink): it must be opened once, not once per thread."""
    make_sink("docs").ensure_collection(spec())
    sink = make_sink("docs")
    opened: list[Any] = []
    real_index, real_describe = sink._pc.index, sink._pc.indexes.describe

    def slow_describe(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.2)  # a real round trip: both threads get here before either is done
        return real_describe(*args, **kwargs)

    def counting_index(*args: Any, **kwargs: Any) -> Any:
        opened.append(real_index(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(sink._pc.indexes, "describe", slow_describe)
    monkeypatch.setattr(sink._pc, "index", counting_index)
    barrier = threading.Barrier(3)
    results: list[Any] = []

    def look_up() -> None:
        barrier.wait()
        results.append(sink.fetch_states([chunk_id("doc", 0)]))

    threads = [threading.Thread(target=look_up) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == [{}, {}, {}]
    assert len(opened) == 1


def test_ingest_reports_unstorable_metadata_as_a_bad_record(
    server: PineconeTestServer, make_sink: SinkFactory, minilm: str
) -> None:
    sink = make_sink("docs")
    bad = {"id": "bad", "text": "Some text.", "metadata": {"scores": [1, 2]}}
    report = ingest([CORPUS[0], bad], sink, model=minilm, show_progress=False)

    assert [error.record for error in report.errors] == ["documents[1]"]
    assert "scores" in report.errors[0].reason
    assert {m["doc_id"] for _, m in server.records("docs").values()} == {"france"}


def test_ingest_flags_a_chunk_too_long_for_pinecone_metadata(
    server: PineconeTestServer, make_sink: SinkFactory, minilm: str
) -> None:
    text = "".join(f"word{i} " for i in range(6000))  # ~52 KB, one chunk
    sink = make_sink("docs")
    report = ingest(
        [{"id": "long", "text": text}],
        sink,
        model=minilm,
        chunker=lambda t: [(0, len(t))],
        late_chunking=False,
        show_progress=False,
    )

    ((_, metadata),) = server.records("docs").values()
    assert metadata["text_truncated"] is True
    assert text.startswith(metadata["text"]) and len(metadata["text"]) < len(text)
    assert (metadata["start"], metadata["end"]) == (0, len(text))
    assert sink.truncated == 1
    if hasattr(report, "truncated"):
        assert report.truncated == 1


def test_namespaces_are_isolated(
    server: PineconeTestServer, make_sink: SinkFactory, minilm: str
) -> None:
    left = make_sink("docs", namespace="left")
    right = make_sink("docs", namespace="right")
    ingest(CORPUS[:2], left, model=minilm, show_progress=False)
    ingest(
        [{"id": "france", "text": "Lyon is a city in France known for its food."}, CORPUS[3]],
        right,
        model=minilm,
        show_progress=False,
    )

    assert {h.doc_id for h in left.search("mountains and cities", k=10)} == {"france", "plants"}
    assert {h.doc_id for h in right.search("mountains and cities", k=10)} == {"france", "everest"}
    assert "Lyon" in right.search("French city food", k=1)[0].text
    assert "Paris" in left.search("French city food", k=1)[0].text
    assert left.count() == len(server.records("docs", "left"))
    assert right.count() == len(server.records("docs", "right"))
    assert server.records("docs", "") == {}

    right_before = server.records("docs", "right")
    left.delete_stale({"france": 0})  # empties "france" in left only
    assert all(m["doc_id"] != "france" for _, m in server.records("docs", "left").values())
    assert server.records("docs", "right") == right_before


def test_describe_collections_lists_indexes_with_count_and_spec(
    make_sink: SinkFactory, sdk: Pinecone, minilm: str
) -> None:
    sink = make_sink("docs", namespace="ns")
    report = ingest(CORPUS, sink, model=minilm, show_progress=False)
    create_index(sdk, "empty", 16, "dotproduct")

    infos = {info.name: info for info in sink.describe_collections()}
    assert set(infos) == {"docs", "empty"}
    assert infos["docs"].count == report.points_written
    assert infos["docs"].spec == CollectionSpec(model=minilm, dimensions=384)
    assert (infos["empty"].count, infos["empty"].spec) == (0, None)


# -- the real service ---------------------------------------------------------------------


@pytest.mark.pinecone_live
def test_live_pinecone_roundtrip(minilm: str) -> None:
    """Against the real service (needs PINECONE_API_KEY): a fresh serverless index, cleaned up
    afterwards, whatever happens."""
    if not os.environ.get("PINECONE_API_KEY"):
        pytest.skip("PINECONE_API_KEY is not set")
    name = f"jc-test-{uuid.uuid4().hex[:12]}"
    admin = Pinecone()
    sink = PineconeSink(name, namespace="live")
    try:
        report = ingest(CORPUS, sink, model=minilm, show_progress=False)
        assert (report.documents, report.errors) == (4, [])
        _wait_for(lambda: sink.count() == report.points_written)  # eventually consistent

        hits = sink.search("What is the capital of France?", k=2)
        assert hits[0].doc_id == "france"
        assert {h.doc_id for h in sink.search("mountain", k=10, filter={"topic": "geography"})} == {
            "france",
            "everest",
        }
        again = ingest(CORPUS, sink, model=minilm, show_progress=False)
        assert (again.skipped, again.points_written) == (4, 0)
        with pytest.raises(CollectionMismatchError):
            PineconeSink(name).ensure_collection(CollectionSpec(minilm, 128))
    finally:
        sink.close()
        if admin.indexes.exists(name):
            admin.indexes.delete(name, timeout=120)
        admin.close()


def _wait_for(condition: Callable[[], bool], seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        time.sleep(2.0)
