"""Run one ingestion and SIGKILL this process at a chosen point (for the crash tests).

    python ingest_worker.py DB LOCATION COLLECTION MODEL CORPUS_JSON KILL_POINT

``DB`` is ``qdrant``, ``milvus`` or ``pinecone`` (``LOCATION`` is then the URL of the local
test server, the key comes from ``PINECONE_API_KEY``); ``CORPUS_JSON`` a file holding a list
of records;
``KILL_POINT`` is ``OPERATION:N``: the process kills itself with SIGKILL

- ``before-upsert:N``  just before the N-th upsert call,
- ``partial-upsert:N`` after writing only the first half of the N-th upsert's points
  (a write the database took only part of),
- ``after-upsert:N``   just after the N-th upsert call returns,
- ``before-delete:N``  just before the N-th stale-chunk deletion,
- ``after-delete:N``   just after the N-th stale-chunk deletion,

or ``none`` to run to the end. The sink underneath is the real one; only the kill is added.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_corpus import CRASH_SETTINGS

from jina_connectors.ingest import VectorSink, ingest
from jina_connectors.sinks.records import ChunkRecord


class KillingSink:
    """Forwards to a real sink and SIGKILLs the process at the chosen operation."""

    def __init__(self, inner: VectorSink, kill_point: str) -> None:
        self.inner = inner
        self.collection = inner.collection
        self.when, _, count = kill_point.partition(":")
        self.at = int(count) if count else 0
        self.upserts = 0
        self.deletes = 0

    def _maybe_kill(self, when: str, calls: int) -> None:
        if self.when == when and calls == self.at:
            os.kill(os.getpid(), signal.SIGKILL)

    def upsert(self, records: Sequence[ChunkRecord]) -> None:
        self.upserts += 1
        self._maybe_kill("before-upsert", self.upserts)
        if self.when == "partial-upsert" and self.upserts == self.at:
            self.inner.upsert(records[: max(1, len(records) // 2)])
            self._maybe_kill("partial-upsert", self.upserts)
        self.inner.upsert(records)
        self._maybe_kill("after-upsert", self.upserts)

    def delete_stale(self, keep: Mapping[str, int]) -> None:
        self.deletes += 1
        self._maybe_kill("before-delete", self.deletes)
        self.inner.delete_stale(keep)
        self._maybe_kill("after-delete", self.deletes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def open_sink(db: str, location: str, collection: str) -> VectorSink:
    if db == "qdrant":
        from jina_connectors import QdrantSink

        return QdrantSink(collection, location=location)
    if db == "milvus":
        from jina_connectors import MilvusSink

        return MilvusSink(collection, location=location)
    from jina_connectors import PineconeSink

    return PineconeSink(collection, location=location)


def main() -> None:
    db, location, collection, model, corpus_file, kill_point = sys.argv[1:7]
    corpus = json.loads(Path(corpus_file).read_text(encoding="utf-8"))
    sink = open_sink(db, location, collection)
    wrapped = KillingSink(sink, kill_point) if kill_point != "none" else sink
    report = ingest(corpus, wrapped, model=model, **CRASH_SETTINGS)  # type: ignore[arg-type]
    sink.close()
    print(json.dumps({"points_written": report.points_written, "skipped": report.skipped}))


if __name__ == "__main__":
    main()
