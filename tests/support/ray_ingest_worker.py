"""A Ray driver to SIGKILL mid-run (the Ray crash tests).

    python ray_ingest_worker.py RAY_ADDRESS DB LOCATION COLLECTION MODEL CORPUS_JSON KILL

Joins the Ray cluster at ``RAY_ADDRESS`` and runs ``ingest_dataset`` on the records of
``CORPUS_JSON`` (settings ``RAY_CRASH_SETTINGS``) into ``DB`` (``qdrant``: an embedded
folder, written from this driver; ``pinecone``: the local test server at ``LOCATION``,
written from Ray's workers, key from ``$PINECONE_API_KEY``). ``KILL`` is

- ``after-upsert:N``: this driver SIGKILLs itself just after its N-th upsert (the driver
  path: the writes are this process's);
- ``points:N``: a thread SIGKILLs this driver once the collection holds at least N points
  (the workers path: the writes are Ray's), after writing the count it saw to
  ``CORPUS_JSON.killed``;
- ``none``: run to the end.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ingest_worker import KillingSink, open_sink

RAY_CRASH_SETTINGS = {"chunk_size": 32, "batch_size": 1, "write_batch_size": 3}


def _kill_when_stored(location: str, collection: str, points: int, report: Path) -> None:
    watcher = open_sink("pinecone", location, collection)
    while True:
        count = watcher.count()
        if count >= points:
            report.write_text(str(count))
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.05)


def main() -> None:
    address, db, location, collection, model, corpus_file, kill = sys.argv[1:8]
    import ray

    from jina_connectors.ray import connect, ingest_dataset

    connect(address)
    records = json.loads(Path(corpus_file).read_text(encoding="utf-8"))
    rows = [{**r, "metadata": json.dumps(r.get("metadata", {}))} for r in records]
    sink = open_sink(db, location, collection)
    when, _, count = kill.partition(":")
    if when == "after-upsert":
        sink = KillingSink(sink, kill)  # type: ignore[assignment]
    elif when == "points":
        report = Path(corpus_file + ".killed")
        args = (location, collection, int(count), report)
        threading.Thread(target=_kill_when_stored, args=args, daemon=True).start()
    result = ingest_dataset(
        ray.data.from_items(rows), sink, model=model, show_progress=False, **RAY_CRASH_SETTINGS
    )
    print(json.dumps({"points_written": result.points_written, "skipped": result.skipped}))


if __name__ == "__main__":
    main()
