"""Crash safety: SIGKILL an ingestion at six different points, re-run it, and check that the
collection holds exactly the expected points (no duplicates, no missing or stale chunks,
intact payloads). Real subprocesses, real Qdrant local mode and Milvus Lite files.

The worker (``ingest_worker.py``) uses the tiny jina-format checkpoint: the test is about
what is stored, not about meaning, and the small model keeps six subprocesses quick.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ingest_corpus import (
    CORPUS_V1,
    CORPUS_V2,
    CRASH_SETTINGS,
    StoredPoint,
    assert_same_points,
    dump_milvus,
    dump_qdrant,
)

from jina_connectors.ingest import VectorSink, ingest

WORKER = Path(__file__).with_name("ingest_worker.py")

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


@contextmanager
def open_sink(db: str, location: Path) -> Iterator[VectorSink]:
    if db == "qdrant":
        from jina_connectors.qdrant import QdrantSink

        sink: VectorSink = QdrantSink("docs", location=location)
    else:
        from jina_connectors.milvus import MilvusSink

        sink = MilvusSink("docs", location=location)
    try:
        yield sink
    finally:
        sink.close()


def dump(db: str, sink: Any) -> dict[str, StoredPoint]:
    return dump_qdrant(sink.client, "docs") if db == "qdrant" else dump_milvus(sink.client, "docs")


def payloads(points: dict[str, StoredPoint]) -> dict[str, dict[str, Any]]:
    return {point_id: point.payload for point_id, point in points.items()}


@pytest.fixture(scope="module")
def expected(tiny_jina_dir: Path) -> dict[str, dict[str, StoredPoint]]:
    """What each corpus looks like ingested once, uninterrupted, into an empty database."""
    from jina_connectors.qdrant import QdrantSink

    result = {}
    for name, corpus in (("v1", CORPUS_V1), ("v2", CORPUS_V2)):
        with QdrantSink("docs", location=":memory:") as sink:
            ingest(corpus, sink, model=str(tiny_jina_dir), **CRASH_SETTINGS)
            result[name] = dump_qdrant(sink.client, "docs")
    return result


@pytest.mark.parametrize("db", ["qdrant", "milvus"])
def test_killed_ingestion_is_completed_by_a_rerun(
    db: str,
    tmp_path: Path,
    tiny_jina_dir: Path,
    expected: dict[str, dict[str, StoredPoint]],
) -> None:
    if db == "milvus":
        pytest.importorskip("milvus_lite")
    model = str(tiny_jina_dir)
    corpus_files = {}
    for name, corpus in (("v1", CORPUS_V1), ("v2", CORPUS_V2)):
        corpus_files[name] = tmp_path / f"{name}.json"
        corpus_files[name].write_text(json.dumps(corpus), encoding="utf-8")

    runs = []
    for number, (start, kill_point) in enumerate(KILL_POINTS):
        location = tmp_path / (f"qdrant-{number}" if db == "qdrant" else f"milvus-{number}.db")
        if start == "v1":
            with open_sink(db, location) as sink:
                ingest(CORPUS_V1, sink, model=model, **CRASH_SETTINGS)
        target = "v1" if start == "empty" else "v2"
        runs.append((location, target, kill_point))

    def run_killed(run: tuple[Path, str, str]) -> subprocess.CompletedProcess[str]:
        location, target, kill_point = run
        command = [sys.executable, str(WORKER), db, str(location), model]
        return subprocess.run(
            [*command, str(corpus_files[target]), kill_point],
            capture_output=True,
            text=True,
            timeout=300,
        )

    with ThreadPoolExecutor(max_workers=3) as pool:  # worker start-up is mostly imports
        results = list(pool.map(run_killed, runs))

    for (location, target, kill_point), result in zip(runs, results, strict=True):
        assert result.returncode == -signal.SIGKILL, (kill_point, result.stdout, result.stderr)
        corpus = CORPUS_V1 if target == "v1" else CORPUS_V2
        with open_sink(db, location) as sink:
            # The kill left work undone...
            assert payloads(dump(db, sink)) != payloads(expected[target]), kill_point
            # ...which a re-run completes: exactly the expected points, nothing else.
            report = ingest(corpus, sink, model=model, **CRASH_SETTINGS)
            assert report.points_written > 0 and not report.errors, kill_point
            stored = dump(db, sink)
            assert_same_points(stored, expected[target], atol=1e-5)
            assert sink.count() == len(expected[target])
            # And the collection is now complete: a third run writes nothing.
            again = ingest(corpus, sink, model=model, **CRASH_SETTINGS)
            assert (again.points_written, again.skipped) == (0, len(corpus)), kill_point
