"""The Ray engine (``jina_connectors.ray``) against the single-process pipeline, on one local
Ray for the module (``num_cpus=2``): same points, change detection in both write paths, an
actor killed mid-run, a driver killed mid-run, bad records, the CLI, the LlamaIndex Ray
pipeline and the README example."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from paths import REPO_ROOT, SUPPORT_DIR

pytest.importorskip("ray")
pytest.importorskip("qdrant_client")
pytest.importorskip("pinecone")

import ray
from ingest_corpus import (
    CORPUS_V1,
    CORPUS_V2,
    StoredPoint,
    dump_pinecone,
    dump_qdrant,
)
from pinecone_server import PineconeTestServer, running_server
from ray_faults import FAULTS_ENV, FIRED, TRIGGER
from ray_ingest_worker import RAY_CRASH_SETTINGS

from jina_connectors import PineconeSink, QdrantSink, ingest
from jina_connectors.ingestion.stages import prepare_document, resolve_settings
from jina_connectors.ray import (
    CHUNK_COLUMNS,
    ActorResources,
    embed_dataset,
    ingest_dataset,
    plan_actors,
)
from jina_connectors.sinks.records import chunk_id

API_KEY = "test-key"
# The speeches' subset: the six shortest whole speeches (about 12k MiniLM tokens).
SPEECHES = 6


@dataclass(frozen=True)
class LocalRay:
    address: str
    faults: Path


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRay]:
    """One local Ray for the module. Its workers import this checkout and the test helpers,
    and run the fault hook of ``ray_faults.py`` (idle unless a test arms it)."""
    faults = tmp_path_factory.mktemp("ray-faults")
    paths = [str(REPO_ROOT), str(SUPPORT_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
    ray.init(
        address="local",  # never join another session's Ray on this machine
        num_cpus=2,
        include_dashboard=False,
        logging_level=logging.WARNING,
        runtime_env={
            "env_vars": {"PYTHONPATH": os.pathsep.join(paths), FAULTS_ENV: str(faults)},
            "worker_process_setup_hook": "ray_faults.install",
        },
    )
    try:
        yield LocalRay(ray.get_runtime_context().gcs_address, faults)
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def server() -> Iterator[PineconeTestServer]:
    with running_server(API_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> str:
    return str(minilm_dir)


def pinecone(server: PineconeTestServer, index: str) -> PineconeSink:
    return PineconeSink(index, location=server.url, api_key=API_KEY)


def rows(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as dataset rows, metadata as JSON text (Arrow would merge differing keys)."""
    return [{**r, "metadata": json.dumps(r.get("metadata", {}))} for r in records]


def dataset(records: Sequence[dict[str, Any]], blocks: int | None = None) -> Any:
    return ray.data.from_items(rows(records), override_num_blocks=blocks)


@pytest.fixture(scope="module")
def speeches(shared_data_dir: Path) -> list[dict[str, Any]]:
    with (shared_data_dir / "sotu_speeches.jsonl").open(encoding="utf-8") as lines:
        all_speeches = [json.loads(line) for line in lines if line.strip()]
    shortest = sorted(all_speeches, key=lambda s: len(s["text"]))[:SPEECHES]
    return [
        {
            "id": s["id"],
            "text": s["text"],
            "metadata": {"year": s["year"], "president": s["president"], "party": s["party"]},
        }
        for s in shortest
    ]


def local_points_qdrant(records: Sequence[Any], model: str, **settings: Any) -> dict[str, Any]:
    with QdrantSink("expected", location=":memory:") as reference:
        ingest(records, reference, model=model, show_progress=False, **settings)
        return dump_qdrant(reference.client, "expected")


def assert_same_collection(
    actual: dict[str, StoredPoint], expected: dict[str, StoredPoint], min_cosine: float = 0.99999
) -> None:
    """Exactly the same ids and payloads; vectors with cosine >= ``min_cosine``."""
    assert sorted(actual) == sorted(expected)
    for point_id, want in expected.items():
        got = actual[point_id]
        assert got.payload == want.payload, point_id
        cosine = float(got.vector @ want.vector) / float(
            np.linalg.norm(got.vector) * np.linalg.norm(want.vector)
        )
        assert cosine >= min_cosine, (point_id, cosine)


# -- the actor pool --------------------------------------------------------------------------


def test_the_default_pool_leaves_room_for_read_tasks_on_two_cores() -> None:
    one = plan_actors(
        actors=None,
        gpus_per_actor=None,
        cpus_per_actor=None,
        cluster_cpus=2,
        cluster_gpus=0,
        nodes=1,
    )
    # One actor reserving 1 of the 2 CPUs (a read task takes 1), computing on both cores.
    assert one == ActorResources(actors=1, cpus=1.0, gpus=None, threads=2, device="cpu")
    two = plan_actors(
        actors=2, gpus_per_actor=None, cpus_per_actor=None, cluster_cpus=2, cluster_gpus=0, nodes=1
    )
    assert two == ActorResources(actors=2, cpus=0.5, gpus=None, threads=1, device="cpu")
    for plan in (one, two):  # what 2 actors at 1 CPU each got wrong: no CPU left for reads
        assert 2 - plan.actors * plan.cpus >= 1.0


def test_the_pool_scales_with_the_cluster() -> None:
    cpus = plan_actors(
        actors=None,
        gpus_per_actor=None,
        cpus_per_actor=None,
        cluster_cpus=64,
        cluster_gpus=0,
        nodes=4,
    )
    assert cpus == ActorResources(actors=4, cpus=15.75, gpus=None, threads=16, device="cpu")
    gpus = plan_actors(
        actors=None,
        gpus_per_actor=0.5,
        cpus_per_actor=None,
        cluster_cpus=64,
        cluster_gpus=8,
        nodes=2,
    )
    assert gpus == ActorResources(actors=16, cpus=1.0, gpus=0.5, threads=None, device="cuda")
    given = plan_actors(
        actors=3, gpus_per_actor=None, cpus_per_actor=1.5, cluster_cpus=8, cluster_gpus=0, nodes=1
    )
    assert given == ActorResources(actors=3, cpus=1.5, gpus=None, threads=2, device="cpu")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"actors": 0}, "actors must be a positive integer"),
        ({"actors": 1.5}, "actors must be a positive integer"),
        ({"gpus_per_actor": 0}, "gpus_per_actor must be a positive number"),
        ({"cpus_per_actor": -1}, "cpus_per_actor must be a positive number"),
        ({"gpus_per_actor": 1.0}, "the Ray cluster has 0 GPUs"),
    ],
)
def test_pool_options_are_checked(options: dict[str, Any], message: str) -> None:
    base = {"actors": None, "gpus_per_actor": None, "cpus_per_actor": None}
    with pytest.raises(ValueError, match=message):
        plan_actors(**{**base, **options}, cluster_cpus=2, cluster_gpus=0, nodes=1)


# -- embed_dataset -------------------------------------------------------------------------


def test_embed_dataset_equals_embed_documents_row_for_row(
    local_ray: LocalRay, tmp_path: Path, tiny_jina_dir: Path, tiny_jina_embedder: Any
) -> None:
    records = [
        {"id": f"doc-{i}", "text": text, "metadata": {"n": i}}
        for i, text in enumerate(
            [
                "Rotary embeddings rotate query and key vectors. They encode relative positions.",
                "Matryoshka training makes prefixes of a vector useful embeddings.",
                "Late chunking embeds a whole document first. Then it pools each chunk.",
                "Short.",
                "One more document with a few sentences. It has three. This is the third.",
            ]
        )
    ]
    # Read by Ray's read tasks (1 CPU each) next to two actors on the 2 CPUs: the default
    # pool leaves them room (two actors at 1 CPU each would not). Five documents in batches
    # of two: documents stay whole anyway.
    source = tmp_path / "docs.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows(records)), encoding="utf-8")
    out = embed_dataset(
        ray.data.read_json(source), model=str(tiny_jina_dir), chunk_size=8, batch_size=2, actors=2
    ).take_all()
    assert set(out[0]) == set(CHUNK_COLUMNS)
    expected = tiny_jina_embedder.embed_documents(
        [r["text"] for r in records], task="retrieval.passage", chunk_size=8
    )
    settings = resolve_settings(tiny_jina_embedder, chunk_size=8)
    by_id = {row["id"]: row for row in out}
    assert len(by_id) == len(out) == sum(len(chunks) for chunks in expected)
    for record, chunks in zip(records, expected, strict=True):
        from jina_connectors.ingest import Document

        document = Document(record["id"], record["text"], record["metadata"])
        digest = prepare_document(document, settings).content_hash
        for index, chunk in enumerate(chunks):
            row = by_id[chunk_id(record["id"], index)]
            assert (row["doc_id"], row["chunk_index"], row["chunk_count"]) == (
                record["id"],
                index,
                len(chunks),
            )
            assert (row["start"], row["end"], row["text"]) == (chunk.start, chunk.end, chunk.text)
            assert row["content_hash"] == digest
            assert json.loads(row["metadata"]) == record["metadata"]
            np.testing.assert_allclose(row["embedding"], chunk.embedding, atol=1e-5)


def test_the_input_metadata_json_is_decoded_once_and_copied_to_the_output(
    local_ray: LocalRay, tiny_jina_dir: Path
) -> None:
    """A row whose metadata is its JSON text alone keeps that text, as given (compact,
    non-ASCII): the actor decodes it once, to hash the document, and copies the text to the
    output instead of encoding the metadata again."""
    given = ['{"b":1,"a":"été"}', '{"n": 2,  "tags": ["x"]}']
    items = [
        {"id": f"doc-{i}", "text": "One short text. With two sentences.", "metadata": text}
        for i, text in enumerate(given)
    ]
    out = embed_dataset(
        ray.data.from_items(items), model=str(tiny_jina_dir), chunk_size=8, actors=1
    ).take_all()
    assert {row["doc_id"]: row["metadata"] for row in out} == {
        f"doc-{i}": text for i, text in enumerate(given)
    }


def test_embed_dataset_runs_jina_v2_as_embed_documents(
    local_ray: LocalRay, tiny_jina_v2_dir: Path
) -> None:
    """jina-embeddings-v2 in the Ray actors, unchanged: rows equal the core's own chunks."""
    from embedder_core import get_embedder

    texts = [
        "ALiBi biases attention by distance. It needs no position table.",
        "Mean pooling reads every token. The CLS and SEP tokens count too.",
        "Short.",
    ]
    records = [{"id": f"v2-{i}", "text": text, "metadata": {}} for i, text in enumerate(texts)]
    out = embed_dataset(
        dataset(records), model=str(tiny_jina_v2_dir), chunk_size=8, batch_size=2, actors=1
    ).take_all()
    expected = get_embedder(str(tiny_jina_v2_dir), device="cpu").embed_documents(
        texts, task="retrieval.passage", chunk_size=8
    )
    by_id = {row["id"]: row for row in out}
    assert len(by_id) == sum(len(chunks) for chunks in expected)
    for record, chunks in zip(records, expected, strict=True):
        for index, chunk in enumerate(chunks):
            row = by_id[chunk_id(record["id"], index)]
            assert row["text"] == chunk.text
            np.testing.assert_allclose(row["embedding"], chunk.embedding, atol=1e-5)


# -- ingest_dataset: the same points as ingest -----------------------------------------------


def test_workers_path_writes_exactly_what_ingest_writes_and_a_rerun_writes_nothing(
    local_ray: LocalRay, server: PineconeTestServer, minilm: str, speeches: list[dict[str, Any]]
) -> None:
    with pinecone(server, "expected-speeches") as reference:
        ingest(speeches, reference, model=minilm, show_progress=False)
    with pinecone(server, "ray-speeches") as sink:
        report = ingest_dataset(dataset(speeches), sink, model=minilm, show_progress=False)
        assert report.write_path == "workers", report.write_path_reason
        assert (report.documents, report.skipped, report.errors) == (SPEECHES, 0, [])
        expected = dump_pinecone(server, "expected-speeches")
        assert report.points_written == report.chunks == len(expected)
        assert_same_collection(dump_pinecone(server, "ray-speeches"), expected)

        upserts = server.requests_to("/vectors/upsert")
        again = ingest_dataset(dataset(speeches), sink, model=minilm, show_progress=False)
        assert (again.documents, again.skipped, again.chunks, again.points_written) == (
            SPEECHES,
            SPEECHES,
            0,
            0,
        )
        assert server.requests_to("/vectors/upsert") == upserts  # not one write request


# Slow (20-90 s on 2 cores): kept out of the default run; `pytest -m slow` runs it.
@pytest.mark.slow
def test_driver_path_writes_exactly_what_ingest_writes_including_updates(
    local_ray: LocalRay, tmp_path: Path, minilm: str, speeches: list[dict[str, Any]]
) -> None:
    # A Qdrant folder allows one process: the driver checks and writes, the actors embed.
    first, update = [*speeches, *CORPUS_V1], [*speeches, *CORPUS_V2]
    with (
        QdrantSink("ray", location=tmp_path / "qdrant") as sink,
        QdrantSink("expected", location=":memory:") as reference,
    ):
        ingest(first, reference, model=minilm, show_progress=False, chunk_size=32)
        report = ingest_dataset(
            dataset(first), sink, model=minilm, show_progress=False, chunk_size=32
        )
        assert report.write_path == "driver", report.write_path_reason
        expected = dump_qdrant(reference.client, "expected")
        assert (report.documents, report.skipped, report.errors) == (len(first), 0, [])
        assert report.points_written == report.chunks == len(expected)
        assert_same_collection(dump_qdrant(sink.client, "ray"), expected)

        # The second version: a changed, a shrunk (stale chunks), a re-tagged and a new
        # document; the speeches, bread and whales are unchanged and not embedded again.
        ingest(update, reference, model=minilm, show_progress=False, chunk_size=32)
        report = ingest_dataset(
            dataset(update), sink, model=minilm, show_progress=False, chunk_size=32
        )
        assert (report.documents, report.skipped) == (len(update), SPEECHES + 2)
        assert_same_collection(
            dump_qdrant(sink.client, "ray"), dump_qdrant(reference.client, "expected")
        )

        again = ingest_dataset(
            dataset(update), sink, model=minilm, show_progress=False, chunk_size=32
        )
        assert (again.skipped, again.chunks, again.points_written) == (len(update), 0, 0)


# -- fault tolerance -----------------------------------------------------------------------


# Slow (20-90 s on 2 cores): kept out of the default run; `pytest -m slow` runs it.
@pytest.mark.slow
def test_an_actor_that_dies_mid_run_is_replaced_and_the_run_completes(
    local_ray: LocalRay, server: PineconeTestServer, minilm: str
) -> None:
    expected_sink = "expected-v1"
    with pinecone(server, expected_sink) as reference:
        ingest(CORPUS_V1, reference, model=minilm, show_progress=False, chunk_size=32)
    trigger, fired = local_ray.faults / TRIGGER, local_ray.faults / FIRED
    fired.unlink(missing_ok=True)
    trigger.write_text("3")  # the actor exits in its third batch (of five)
    with pinecone(server, "ray-actor-dies") as sink:
        report = ingest_dataset(
            dataset(CORPUS_V1), sink, model=minilm, show_progress=False, **RAY_CRASH_SETTINGS
        )
    assert fired.exists() and not trigger.exists()  # it did die, once
    assert (report.documents, report.errors) == (len(CORPUS_V1), [])
    assert_same_collection(
        dump_pinecone(server, "ray-actor-dies"), dump_pinecone(server, expected_sink)
    )


def run_driver(local_ray: LocalRay, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps(CORPUS_V1), encoding="utf-8")
    command = [sys.executable, str(SUPPORT_DIR / "ray_ingest_worker.py"), local_ray.address]
    command += [*args[:-1], str(corpus), args[-1]]
    env = {**os.environ, "PINECONE_API_KEY": API_KEY, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


# Slow (20-90 s on 2 cores): kept out of the default run; `pytest -m slow` runs it.
@pytest.mark.slow
def test_a_driver_killed_mid_write_then_run_again_ends_with_exactly_the_expected_points(
    local_ray: LocalRay, tmp_path: Path, minilm: str
) -> None:
    folder = str(tmp_path / "qdrant")
    killed = run_driver(local_ray, tmp_path, "qdrant", folder, "crash", minilm, "after-upsert:2")
    assert killed.returncode == -9, killed.stderr[-3000:]
    with QdrantSink("crash", location=folder) as sink:
        partial = sink.count()
        report = ingest_dataset(
            dataset(CORPUS_V1), sink, model=minilm, show_progress=False, **RAY_CRASH_SETTINGS
        )
        stored = dump_qdrant(sink.client, "crash")
    expected = local_points_qdrant(CORPUS_V1, minilm, chunk_size=32)
    assert 0 < partial < len(expected)  # killed in the middle
    assert report.skipped >= 1  # what the killed run completed is not embedded again
    assert_same_collection(stored, expected)


@pytest.mark.slow
def test_a_driver_killed_while_workers_write_then_run_again_ends_with_the_expected_points(
    local_ray: LocalRay, tmp_path: Path, server: PineconeTestServer, minilm: str
) -> None:
    with pinecone(server, "expected-killed") as reference:
        ingest(CORPUS_V1, reference, model=minilm, show_progress=False, chunk_size=32)
    expected = dump_pinecone(server, "expected-killed")
    killed = run_driver(
        local_ray, tmp_path, "pinecone", server.url, "ray-killed", minilm, "points:1"
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    seen = int((tmp_path / "corpus.json.killed").read_text())
    assert 0 < seen < len(expected)  # killed in the middle
    with pinecone(server, "ray-killed") as sink:
        ingest_dataset(
            dataset(CORPUS_V1), sink, model=minilm, show_progress=False, **RAY_CRASH_SETTINGS
        )
    assert_same_collection(dump_pinecone(server, "ray-killed"), expected)


# -- bad records ---------------------------------------------------------------------------


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """A custom chunker: one chunk per sentence; none for a text containing NOCHUNK."""
    if "NOCHUNK" in text:
        return []
    spans, start = [], 0
    for end in [i + 1 for i, c in enumerate(text) if c == "."] or [len(text)]:
        if text[start:end].strip():
            spans.append((start, end))
        start = end
    return spans


GOOD = CORPUS_V1[:3]
BAD_ROWS = [
    {"id": "blank", "text": "   ", "metadata": "{}"},
    {"id": "no-text", "text": None, "metadata": "{}"},
    {"id": "listed", "text": "Metadata that is a list.", "metadata": "[1, 2]"},
    {"id": "unchunked", "text": "NOCHUNK makes no spans.", "metadata": "{}"},
]
BAD_REASONS = {
    "id='blank'": "'text' is empty",
    "id='no-text'": "'text' must be a string",
    "id='listed'": "'metadata' must be an object",
    "id='unchunked'": "produced no chunks",
}


def assert_bad_records(errors: Sequence[Any], reasons: dict[str, str]) -> None:
    assert sorted(e.record for e in errors) == sorted(reasons)
    for error in errors:
        assert reasons[error.record] in error.reason, error


# Slow (20-90 s on 2 cores): kept out of the default run; `pytest -m slow` runs it.
@pytest.mark.slow
def test_bad_records_are_named_and_the_rest_is_stored_from_the_workers(
    local_ray: LocalRay, server: PineconeTestServer, minilm: str
) -> None:
    nested = {"id": "nested", "text": "Nested metadata.", "metadata": '{"a": {"b": 1}}'}
    settings = {"chunker": sentence_spans, "show_progress": False}
    with pinecone(server, "expected-bad") as reference:
        ingest(GOOD, reference, model=minilm, **settings)
    # Batches of two rows: good and bad records share batches.
    table = [*BAD_ROWS[:2], *rows(GOOD), nested, *BAD_ROWS[2:]]
    with pinecone(server, "ray-bad") as sink:
        report = ingest_dataset(
            ray.data.from_items(table), sink, model=minilm, batch_size=2, **settings
        )
    # Pinecone cannot nest metadata: its records are refused before they are written.
    assert_bad_records(report.errors, {**BAD_REASONS, "id='nested'": "cannot nest objects"})
    # Documents, as ingest counts them: valid records the sink can hold (not nested).
    assert report.documents == len(GOOD) + 1
    assert_same_collection(dump_pinecone(server, "ray-bad"), dump_pinecone(server, "expected-bad"))


def test_bad_records_are_named_and_the_rest_is_stored_from_the_driver(
    local_ray: LocalRay, tmp_path: Path, minilm: str
) -> None:
    settings = {"chunker": sentence_spans, "show_progress": False}
    twice = [
        {"id": "twice", "text": "One id. First row.", "metadata": "{}"},
        {"id": "twice", "text": "One id. Second row.", "metadata": "{}"},
    ]
    # The two rows of one id are in different blocks: only the driver path sees both.
    table = [twice[0], *BAD_ROWS, *rows(GOOD), twice[1]]
    with QdrantSink("bad", location=tmp_path / "qdrant") as sink:
        report = ingest_dataset(
            ray.data.from_items(table, override_num_blocks=3), sink, model=minilm, **settings
        )
        stored = dump_qdrant(sink.client, "bad")
    duplicate = "duplicate document id 'twice' (2 rows"
    records = sorted(e.record for e in report.errors)
    assert records == sorted([*BAD_REASONS, "id='twice'", "id='twice'"])
    for error in report.errors:
        want = duplicate if error.record == "id='twice'" else BAD_REASONS[error.record]
        assert want in error.reason, error
    assert report.documents == len(GOOD) + 1  # the good ones and the unchunked one
    assert_same_collection(stored, local_points_qdrant(GOOD, minilm, chunker=sentence_spans))


def test_on_error_raise_raises_the_bad_record(
    local_ray: LocalRay, server: PineconeTestServer, tiny_jina_dir: Path
) -> None:
    from jina_connectors.ingest import InvalidDocumentError

    table = [*rows(GOOD), BAD_ROWS[3]]  # a document without chunks: found while embedding
    chunker = {"chunker": sentence_spans, "show_progress": False, "on_error": "raise"}
    for sink in (QdrantSink("raise", location=":memory:"), pinecone(server, "raise")):
        # Raised here from the driver's first pass, or from a Ray actor (unwrapped).
        with sink, pytest.raises(InvalidDocumentError, match="id='unchunked': produced no"):
            ingest_dataset(ray.data.from_items(table), sink, model=str(tiny_jina_dir), **chunker)


def test_bad_options_raise_before_any_ray_work_or_write(
    local_ray: LocalRay, tiny_jina_dir: Path
) -> None:
    ds = dataset(GOOD)
    with QdrantSink("never", location=":memory:") as sink:
        for options, message in [
            ({"batch_size": 0}, "batch_size must be a positive integer"),
            ({"actors": 0}, "actors must be a positive integer"),
            ({"gpus_per_actor": -1.0}, "gpus_per_actor must be a positive number"),
            ({"dimensions": 10_000}, "dimensions must be between 1 and"),
            ({"text_column": "body"}, "the dataset has no 'body' column"),
            ({"id_column": "text"}, "must differ"),
            ({"on_error": "ignore"}, "on_error must be"),
        ]:
            with pytest.raises(ValueError, match=message):
                ingest_dataset(ds, sink, model=str(tiny_jina_dir), **options)
        assert sink.count() == 0 and not sink.client.collection_exists("never")
    with pytest.raises(ValueError, match="task must be one of"):
        embed_dataset(ds, model=str(tiny_jina_dir), task="summarization")
    with pytest.raises(TypeError, match=r"expected a ray\.data\.Dataset"):
        embed_dataset(GOOD, model=str(tiny_jina_dir))  # type: ignore[arg-type]


# -- where the writes run --------------------------------------------------------------------


def test_only_a_database_server_is_opened_from_the_workers(
    tmp_path: Path, server: PineconeTestServer
) -> None:
    import pickle

    from qdrant_client import QdrantClient

    assert QdrantSink("c", location=tmp_path / "q").remote_opener() is None
    assert QdrantSink("c", location=":memory:").remote_opener() is None
    assert QdrantSink("c", client=QdrantClient(location=":memory:")).remote_opener() is None
    served = QdrantSink("c", location="http://127.0.0.1:1", api_key="k", attempts=2)
    reopened = pickle.loads(pickle.dumps(served.remote_opener()))()
    assert (reopened.collection, reopened.client.init_options["url"]) == ("c", "http://127.0.0.1:1")
    assert (reopened.attempts, reopened.client.init_options["api_key"]) == (2, "k")

    sink = PineconeSink("opened", location=server.url, api_key=API_KEY, namespace="n")
    with sink, pickle.loads(pickle.dumps(sink.remote_opener()))() as other:
        assert isinstance(other, PineconeSink)
        assert (other.collection, other.namespace) == ("opened", "n")
        assert other._options == sink._options


# -- one IngestOptions for both engines -------------------------------------------------------


def test_the_same_options_give_the_same_points_by_ingest_and_by_ray(
    local_ray: LocalRay, tiny_jina_dir: Path
) -> None:
    """Options given once (``options=IngestOptions(...)``, not the defaults) mean the same to
    both engines: the same point ids, payloads and vectors."""
    from jina_connectors.ingestion.options import IngestOptions
    from jina_connectors.ray import ingest_documents

    options = IngestOptions(
        dimensions=32,
        chunker="tokens",
        chunk_size=8,
        late_chunking_window=24,
        late_chunking_overlap=4,
        batch_size=2,
        show_progress=False,
    )
    records = CORPUS_V1[:3]
    with QdrantSink("local", location=":memory:") as sink:
        ingest(records, sink, model=str(tiny_jina_dir), options=options)
        local = dump_qdrant(sink.client, "local")
    with QdrantSink("ray", location=":memory:") as sink:
        report = ingest_documents(records, sink, model=str(tiny_jina_dir), options=options)
        assert report.resources is not None  # it ran on Ray
        by_ray = dump_qdrant(sink.client, "ray")
    assert len(local) > len(records)  # several chunks per document
    assert_same_collection(by_ray, local)


# -- the CLI -------------------------------------------------------------------------------


def test_cli_engine_ray_ingests_what_engine_local_ingests(
    local_ray: LocalRay,
    tmp_path: Path,
    minilm: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from jina_connectors.cli import main

    monkeypatch.setenv("JINA_CONNECTORS_MODEL", minilm)
    folder = tmp_path / "docs"
    folder.mkdir()
    for record in CORPUS_V1[:2]:
        (folder / f"{record['id']}.md").write_text(record["text"], encoding="utf-8")
    lines = [json.dumps(r) for r in CORPUS_V1[2:]] + ["{not json"]
    (folder / "more.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = ["ingest", str(folder), "--location", str(tmp_path / "q"), "--no-progress"]
    base += ["--chunk-size", "32"]
    assert main([*base, "--collection", "ray", "--engine", "ray", "--actors", "1"]) == 1
    out = capsys.readouterr()
    assert "written from the driver" in out.out
    assert f"{folder / 'more.jsonl'}:4: invalid JSON" in out.err  # named as ingest names it
    assert "5 documents: 0 unchanged" in out.out
    assert main([*base, "--collection", "local"]) == 1
    capsys.readouterr()
    with QdrantSink("ray", location=tmp_path / "q") as sink:
        ray_points = dump_qdrant(sink.client, "ray")
        local_points = dump_qdrant(sink.client, "local")
    assert_same_collection(ray_points, local_points)


def test_cli_ray_options_need_engine_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jina_connectors.cli import main

    assert main(["ingest", str(tmp_path), "--actors", "2", "--ray-address", "auto"]) == 2
    assert "--ray-address, --actors need --engine ray" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path), "--engine", "ray", "--gpus-per-actor", "0"]) == 2


# -- the README and LlamaIndex ---------------------------------------------------------------


def readme_ray_snippets() -> list[str]:
    """The Python blocks of the README's "Scaling out" section, in order."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Scaling out (Ray)", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def run_snippet(code: str, monkeypatch: pytest.MonkeyPatch, minilm: str) -> dict[str, Any]:
    """Run a README snippet as written, from the repository root, with MiniLM as the model
    (the README's quick start sets ``JINA_CONNECTORS_MODEL`` the same way)."""
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv("JINA_CONNECTORS_MODEL", minilm)
    namespace: dict[str, Any] = {"__name__": "readme"}
    exec(compile(code, "README.md", "exec"), namespace)
    return namespace


def test_readme_scaling_out_example_runs_as_written(
    local_ray: LocalRay,
    minilm: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    snippets = readme_ray_snippets()
    assert len(snippets) == 2
    namespace = run_snippet(snippets[0], monkeypatch, minilm)
    report = namespace["report"]
    assert (report.write_path, report.documents, report.errors) == ("driver", 3, [])
    printed = capsys.readouterr().out.splitlines()
    assert printed[0] == f"driver 3 {report.points_written}" and report.points_written > 3
    assert printed[-1] == "1964_lyndon_b_johnson_d"  # the war on poverty speech


# Slow (20-90 s on 2 cores): kept out of the default run; `pytest -m slow` runs it.
@pytest.mark.slow
def test_llama_index_ray_pipeline_equals_the_plain_pipeline(
    local_ray: LocalRay, minilm: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter

    from jina_connectors import JinaLateChunking

    namespace = run_snippet(readme_ray_snippets()[1], monkeypatch, minilm)
    plain = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=32), JinaLateChunking()]
    ).run(documents=namespace["docs"])
    assert_same_nodes(namespace["nodes"], plain)


def assert_same_nodes(actual: Sequence[Any], expected: Sequence[Any]) -> None:
    """The same nodes (by source document and offset, text) with cosine >= 0.99999."""

    def key(node: Any) -> tuple[str, int]:
        return (node.ref_doc_id, node.start_char_idx)

    got = {key(node): node for node in actual}
    want = {key(node): node for node in expected}
    assert len(got) == len(actual) and sorted(got) == sorted(want)
    for k, node in want.items():
        assert got[k].text == node.text
        a, b = np.asarray(got[k].embedding), np.asarray(node.embedding)
        assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) >= 0.99999, k


@pytest.mark.slow
def test_a_plain_ray_step_splits_documents_across_batches_and_changes_their_vectors(
    local_ray: LocalRay, minilm: str
) -> None:
    # Why RayJinaLateChunking groups the nodes: without grouping, a batch of three nodes
    # holds part of a document, which is then embedded from part of its text.
    from llama_index.core import Document
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.ingestion.ray import RayIngestionPipeline, RayTransformComponent

    from jina_connectors import JinaLateChunking, RayJinaLateChunking

    docs = [Document(text=r["text"] * 3, id_=r["id"]) for r in CORPUS_V1[:3]]
    splitter = {"chunk_size": 32, "chunk_overlap": 0}
    plain = IngestionPipeline(
        transformations=[SentenceSplitter(**splitter), JinaLateChunking(model=minilm)]
    ).run(documents=docs)
    assert len(plain) > 3 * len(docs)
    split = RayTransformComponent(SentenceSplitter, **splitter)
    small_batches = {"batch_size": 3, "compute": ray.data.ActorPoolStrategy(size=1)}
    naive = RayIngestionPipeline(
        transformations=[
            split,
            RayTransformComponent(JinaLateChunking, model=minilm, map_batches_kwargs=small_batches),
        ]
    ).run(documents=docs)
    with pytest.raises(AssertionError):
        assert_same_nodes(naive, plain)
    grouped = RayIngestionPipeline(transformations=[split, RayJinaLateChunking(model=minilm)])
    assert_same_nodes(grouped.run(documents=docs), plain)
