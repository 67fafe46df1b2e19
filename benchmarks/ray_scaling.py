"""The Ray engine against plain `ingest`: the same speeches into Qdrant local mode, one actor.

What is measured, on a local Ray started first (as on a running cluster, its start is
reported but not counted):

- `ingest` (one process: embed, then write on the background writer) vs
  `jina_connectors.ray.ingest_dataset` with one actor (the driver path: a Qdrant folder
  allows one process; the actor embeds, the driver writes). Both use all cores: `ingest`
  with torch's default threads, the actor with `plan_actors`' threads.
- The fixed cost of a Ray run: `ingest_dataset` of a single short document (the first pass,
  the actor's start and model load, the pipeline's start and end).
- The per-batch cost of Ray: `ingest_dataset` of many one-sentence documents in batches of
  one, with the tiny jina-format model (embedding costs next to nothing), minus the fixed
  cost, per batch.
- The actor's embedding time: the same documents embedded in this process, batch by batch.

From these, `details["projected_docs_per_second_by_actors"]`: N actors embed about
`N * batch_size / (embed_per_batch + overhead_per_batch)` documents per second once started
(plus `fixed` once per run), as long as the writer (the driver path: one background writer)
or the write tasks (the workers path) keep up. For GPU actors, put a GPU's time per batch
for `embed_per_batch`: the per-batch overhead is Ray's, measured here.
"""

from __future__ import annotations

import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.context import Context
from benchmarks.measure import timed
from benchmarks.report import CaseResult, Figure, Target

NAME = "ray"
CHUNKER = "sentences"
CHUNK_SIZE = 256


def _documents(ctx: Context) -> list[dict[str, Any]]:
    limit = ctx.sizes.ray_max_chars
    return [
        {"id": speech["id"], "text": speech["text"][:limit], "metadata": {"year": speech["year"]}}
        for speech in ctx.speeches()[: ctx.sizes.ray_speeches]
    ]


def run(ctx: Context) -> CaseResult:
    import ray

    from embedder_core.testing import minilm_path, write_tiny_jina_checkpoint
    from jina_connectors import QdrantSink, ingest
    from jina_connectors.ray import connect, ingest_dataset
    from jina_connectors.sinks.records import PASSAGE_TASK

    cores = os.cpu_count() or 1
    started = time.perf_counter()
    connect(address="local", num_cpus=cores, include_dashboard=False, logging_level="ERROR")
    ray_start = time.perf_counter() - started
    model = str(minilm_path())
    embedder = ctx.load_embedder(minilm_path())
    documents = _documents(ctx)
    batch_size = ctx.sizes.ingest_batch_size
    options = {"chunker": CHUNKER, "chunk_size": CHUNK_SIZE, "batch_size": batch_size}
    options |= {"show_progress": False, "on_error": "raise"}

    def plain(location: Path) -> float:
        with QdrantSink("speeches", location=location) as sink:
            seconds, report = timed(
                lambda: ingest(documents, sink, model=embedder, **options), ctx.device
            )
            assert sink.count() == report.points_written
            plain_counts.append(report.points_written)
        return seconds

    def on_ray(location: Path, docs: list[dict[str, Any]], model: str, **more: Any) -> float:
        with QdrantSink("speeches", location=location) as sink:
            start = time.perf_counter()
            report = ingest_dataset(
                ray.data.from_items(docs), sink, model=model, actors=1, **{**options, **more}
            )
            seconds = time.perf_counter() - start
            assert sink.count() == report.points_written and report.write_path == "driver"
            counts.append(report.points_written)
        return seconds

    counts: list[int] = []
    plain_counts: list[int] = []
    plain_seconds: list[float] = []
    ray_seconds: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as scratch:
        root = Path(scratch)
        on_ray(root / "warm", documents[:1], model)  # Ray's own first-use costs, not ours
        for repeat in range(ctx.sizes.repeats):  # alternate which goes first
            runs = [
                lambda r=repeat: plain_seconds.append(plain(root / f"plain{r}")),
                lambda r=repeat: ray_seconds.append(on_ray(root / f"ray{r}", documents, model)),
            ]
            for measure in runs if repeat % 2 == 0 else runs[::-1]:
                measure()
        points = plain_counts[0]
        if set(counts[1:]) | set(plain_counts) != {points}:
            raise RuntimeError(f"ray runs wrote {counts[1:]} points, ingest {plain_counts}")
        fixed = min(on_ray(root / f"fixed{i}", documents[:1], model) for i in range(2))

        # Per-batch cost of Ray: one-sentence documents, one per batch, a near-free model.
        tiny = write_tiny_jina_checkpoint(root / "tiny-jina")
        short = [{"id": f"s{i}", "text": f"Sentence number {i}."} for i in range(64)]
        tiny_fixed = on_ray(root / "tiny1", short[:1], str(tiny), batch_size=1)
        tiny_many = on_ray(root / "tiny64", short, str(tiny), batch_size=1)
        overhead_per_batch = max(0.0, (tiny_many - tiny_fixed) / (len(short) - 1))

    # The actor's share: the same batches embedded in this process.
    texts = [document["text"] for document in documents]
    batches = [texts[i : i + batch_size] for i in range(0, len(texts), batch_size)]

    def embed_all() -> int:
        return sum(
            len(chunks)
            for batch in batches
            for chunks in embedder.embed_documents(
                batch, task=PASSAGE_TASK, chunker=CHUNKER, chunk_size=CHUNK_SIZE
            )
        )

    embed_seconds, _ = timed(embed_all, ctx.device)
    embedder = None
    gc.collect()

    ray_best, plain_best = min(ray_seconds), min(plain_seconds)
    embed_per_batch = embed_seconds / len(batches)
    per_actor_docs_per_second = len(documents) / max(ray_best - fixed, 1e-9)
    per_actor = batch_size / (embed_per_batch + overhead_per_batch)
    projection = {str(n): n * per_actor for n in (1, 2, 4, 8, 16, 64)}
    return CaseResult(
        figures=[
            Figure(
                NAME,
                "wall s, ray 1 actor vs ingest",
                ray_best,
                plain_best,
                Target("<=", 1.2),
                "ratio",
            ),
            Figure(NAME, "ray fixed s per run", fixed),
            Figure(NAME, "ray overhead ms per batch", 1000 * overhead_per_batch),
            Figure(NAME, "per-actor docs/s", per_actor_docs_per_second),
        ],
        details={
            "model": "all-MiniLM-L6-v2",
            "documents": len(documents),
            "characters": sum(len(text) for text in texts),
            "points": points,
            "batch_size": batch_size,
            "batches": len(batches),
            "cores": cores,
            "ray_start_seconds": ray_start,
            "ingest_seconds": plain_seconds,
            "ray_seconds": ray_seconds,
            "ray_fixed_seconds": fixed,
            "tiny_model_one_batch_seconds": tiny_fixed,
            "tiny_model_64_batches_seconds": tiny_many,
            "overhead_per_batch_seconds": overhead_per_batch,
            "embed_only_seconds": embed_seconds,
            "embed_per_batch_seconds": embed_per_batch,
            "per_actor_docs_per_second": per_actor_docs_per_second,
            # Ray's steady-state cost over the same embedding in one process.
            "ray_steady_over_embed_only": (ray_best - fixed) / embed_seconds,
            "projected_docs_per_second_by_actors": projection,
        },
    )
