"""Ingesting speeches into Qdrant local mode: wall time vs the same embedding alone.

Both sides embed the same documents in the same batches with the same settings (MiniLM,
late chunking, sentence chunks): the ingestion pipeline's extra wall time is what its
database reads, writes and bookkeeping add on top of embedding. Writes happen on a
background thread, so they should hide behind the embedding of the next batch.
"""

from __future__ import annotations

import gc
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.context import Context
from benchmarks.measure import synchronize
from benchmarks.report import CaseResult, Figure, Target

NAME = "ingestion"
BATCH_SIZE = 16  # documents per embedding call, on both sides
CHUNK_SIZE = 256


def _documents(ctx: Context) -> list[dict[str, Any]]:
    limit = ctx.sizes.ingest_max_chars
    return [
        {"id": speech["id"], "text": speech["text"][:limit], "metadata": {"year": speech["year"]}}
        for speech in ctx.speeches()[: ctx.sizes.ingest_speeches]
    ]


def run(ctx: Context) -> CaseResult:
    from embedder_core.testing import minilm_path
    from jina_connectors.ingest import PASSAGE_TASK, ingest
    from jina_connectors.qdrant import QdrantSink

    embedder = ctx.load_embedder(minilm_path())
    documents = _documents(ctx)
    texts = [document["text"] for document in documents]
    embedder.embed_documents(texts[:1], task=PASSAGE_TASK, chunk_size=CHUNK_SIZE)  # warm-up

    def embed_only() -> int:
        chunks = 0
        for start in range(0, len(texts), BATCH_SIZE):
            batch = texts[start : start + BATCH_SIZE]
            chunks += sum(
                len(document)
                for document in embedder.embed_documents(
                    batch, task=PASSAGE_TASK, chunker="sentences", chunk_size=CHUNK_SIZE
                )
            )
        return chunks

    embed_seconds: list[float] = []
    ingest_seconds: list[float] = []
    points = chunks = 0
    with tempfile.TemporaryDirectory(prefix="bench-qdrant-") as scratch:
        # Alternate the two; each ingestion goes to a fresh collection (nothing to skip).
        for repeat in range(ctx.sizes.repeats):
            synchronize(ctx.device)
            start = time.perf_counter()
            chunks = embed_only()
            embed_seconds.append(time.perf_counter() - start)

            sink = QdrantSink("speeches", location=Path(scratch) / f"run{repeat}")
            start = time.perf_counter()
            report = ingest(
                documents, sink, model=embedder, chunk_size=CHUNK_SIZE, batch_size=BATCH_SIZE,
                progress=False, on_error="raise",
            )
            ingest_seconds.append(time.perf_counter() - start)
            points = sink.count()
            sink.close()
    del embedder
    gc.collect()
    if points != chunks or report.points_written != chunks:
        raise RuntimeError(f"ingested {points} points for {chunks} chunks")

    return CaseResult(
        figures=[
            Figure(NAME, "wall s, ingest vs embed only", min(ingest_seconds), min(embed_seconds),
                   Target("<=", 1.10), "ratio"),
        ],
        details={
            "model": "all-MiniLM-L6-v2",
            "documents": len(documents),
            "characters": sum(len(text) for text in texts),
            "points": points,
            "ingest_seconds": ingest_seconds,
            "embed_only_seconds": embed_seconds,
        },
    )
