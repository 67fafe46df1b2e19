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
from benchmarks.measure import timed
from benchmarks.report import CaseResult, Figure, Target

NAME = "ingestion"
CHUNKER = "sentences"  # the pipeline's defaults, passed explicitly so both sides agree
CHUNK_SIZE = 256


def _documents(ctx: Context) -> list[dict[str, Any]]:
    limit = ctx.sizes.ingest_max_chars
    return [
        {"id": speech["id"], "text": speech["text"][:limit], "metadata": {"year": speech["year"]}}
        for speech in ctx.speeches()[: ctx.sizes.ingest_speeches]
    ]


def run(ctx: Context) -> CaseResult:
    from embedder_core.testing import minilm_path
    from jina_connectors import QdrantSink, ingest
    from jina_connectors.sinks.records import PASSAGE_TASK

    embedder = ctx.load_embedder(minilm_path())
    documents = _documents(ctx)
    texts = [document["text"] for document in documents]
    batch_size = ctx.sizes.ingest_batch_size

    def embed(batch: list[str]) -> int:
        per_document = embedder.embed_documents(
            batch, task=PASSAGE_TASK, chunker=CHUNKER, chunk_size=CHUNK_SIZE
        )
        return sum(len(chunks) for chunks in per_document)

    def embed_only() -> float:  # what ingest embeds, batch by batch, minus the database
        batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]
        seconds, chunks = timed(lambda: sum(embed(batch) for batch in batches), ctx.device)
        counts.append(chunks)
        return seconds

    def ingest_into(location: Path) -> float:  # a fresh collection: nothing to skip
        with QdrantSink("speeches", location=location) as sink:
            start = time.perf_counter()
            report = ingest(
                documents,
                sink,
                model=embedder,
                chunker=CHUNKER,
                chunk_size=CHUNK_SIZE,
                batch_size=batch_size,
                show_progress=False,
                on_error="raise",
            )
            seconds = time.perf_counter() - start
            counts.extend([report.points_written, sink.count()])
        return seconds

    counts: list[int] = []  # chunks embedded, points written and stored: all must agree
    embed(texts[:1])  # warm-up
    embed_seconds: list[float] = []
    ingest_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-qdrant-") as scratch:
        for repeat in range(ctx.sizes.repeats):  # alternate which goes first
            if repeat % 2:
                ingest_seconds.append(ingest_into(Path(scratch) / f"run{repeat}"))
                embed_seconds.append(embed_only())
            else:
                embed_seconds.append(embed_only())
                ingest_seconds.append(ingest_into(Path(scratch) / f"run{repeat}"))
    embedder = None
    gc.collect()
    if len(set(counts)) != 1:
        raise RuntimeError(f"chunks embedded, points written, points stored differ: {counts}")

    return CaseResult(
        figures=[
            Figure(
                NAME,
                "wall s, ingest vs embed only",
                min(ingest_seconds),
                min(embed_seconds),
                Target("<=", 1.10),
                "ratio",
            ),
        ],
        details={
            "model": "all-MiniLM-L6-v2",
            "documents": len(documents),
            "batch_size": batch_size,
            "characters": sum(len(text) for text in texts),
            "points": counts[0],
            "ingest_seconds": ingest_seconds,
            "embed_only_seconds": embed_seconds,
        },
    )
