"""What every benchmark shares: sizes, device, the measured ceiling, the cached inputs."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from benchmarks.measure import gemm_ceiling_flops
from benchmarks.workloads import FULL_SIZE_CONFIG, load_speeches, random_jina_checkpoint

if TYPE_CHECKING:
    from embedder_core import Embedder


@dataclass(frozen=True)
class Sizes:
    """Workload sizes. `FULL` is the issue's; `QUICK` exercises the same code in seconds."""

    jina_config: dict[str, Any]
    # Mixed workload: `mixed_count` inputs, lengths log-uniform in [mixed_low, mixed_high].
    mixed_count: int
    mixed_low: int
    mixed_high: int
    baseline_batch_size: int
    long_lengths: tuple[int, int]  # (short, long): memory must grow at most linearly
    minilm_paragraphs: int
    late_document_tokens: int
    late_chunk_tokens: int
    # Ingestion: the first `ingest_speeches` speeches, each cut to `ingest_max_chars`, so
    # that several embedding batches of `ingest_batch_size` documents (writes overlap the
    # next batch's embedding) fit in the time budget.
    ingest_speeches: int
    ingest_max_chars: int
    ingest_batch_size: int
    # Ray: the first `ray_speeches` speeches, each cut to `ray_max_chars`; enough embedding
    # that Ray's fixed cost per run (actor start, model load: seconds) is a small share.
    ray_speeches: int
    ray_max_chars: int
    # Scheduler: `scheduler_texts` random-length texts sent by concurrent threads in requests
    # of `scheduler_request_size` texts; `scheduler_probes` idle short-query latencies.
    scheduler_texts: int
    scheduler_request_size: int
    scheduler_probes: int
    repeats: int  # timed runs of the cheap benchmarks (best is kept)
    # Server: paragraphs posted in requests of a few texts; single-query latency samples.
    server_paragraphs: int
    server_probes: int


FULL = Sizes(
    jina_config=FULL_SIZE_CONFIG,
    mixed_count=48,
    mixed_low=16,
    mixed_high=1024,
    baseline_batch_size=32,
    long_lengths=(2048, 8192),
    minilm_paragraphs=400,
    late_document_tokens=8192,
    late_chunk_tokens=256,
    ingest_speeches=64,
    ingest_max_chars=6000,
    ingest_batch_size=16,  # the pipeline's default
    ray_speeches=96,
    ray_max_chars=6000,
    scheduler_texts=512,
    scheduler_request_size=8,
    scheduler_probes=50,
    repeats=2,
    server_paragraphs=512,
    server_probes=100,
)

QUICK = Sizes(
    # The tiny default architecture with 1024 usable tokens, so long inputs are testable.
    jina_config={"max_position_embeddings": 1026},
    mixed_count=12,
    mixed_low=8,
    mixed_high=256,
    baseline_batch_size=4,
    long_lengths=(128, 512),
    minilm_paragraphs=8,
    late_document_tokens=512,
    late_chunk_tokens=32,
    ingest_speeches=4,
    ingest_max_chars=1500,
    ingest_batch_size=2,
    ray_speeches=4,
    ray_max_chars=1500,
    scheduler_texts=24,
    scheduler_request_size=2,
    scheduler_probes=5,
    repeats=1,
    server_paragraphs=16,
    server_probes=5,
)

# One LoRA adapter. Synthetic inputs use one without an instruction, so every token of an
# exact-length input is content; documents use the task they are indexed with.
ADAPTER_TASK = "text-matching"
PASSAGE_TASK = "retrieval.passage"
SEED = 0


@dataclass
class Context:
    sizes: Sizes
    device: torch.device
    dtype: torch.dtype
    cache_dir: Path
    speeches_path: Path
    ceiling_repeats: int = 10
    ceiling_samples: list[float] = field(default_factory=list)
    _speeches: list[dict[str, Any]] | None = field(default=None, repr=False)

    def measure_ceiling(self) -> float:
        """Sample the GEMM ceiling again; returns the best so far.

        Other work on the machine can only slow a sample down, so the best one is the
        machine's capability, and MFU against it is never flattered by a slow sample.
        """
        self.ceiling_samples.append(
            gemm_ceiling_flops(self.device, self.dtype, repeats=self.ceiling_repeats)
        )
        return self.ceiling_flops

    @property
    def ceiling_flops(self) -> float:
        if not self.ceiling_samples:
            return self.measure_ceiling()
        return max(self.ceiling_samples)

    def log(self, message: str) -> None:
        """Progress on stderr: the full suite runs for many minutes."""
        print(f"[benchmarks]   {message}", file=sys.stderr, flush=True)

    def jina_checkpoint(self) -> Path:
        """The random jina-v3-format checkpoint of `sizes.jina_config` (cached on disk)."""
        return random_jina_checkpoint(self.cache_dir, self.sizes.jina_config, seed=SEED)

    def speeches(self) -> list[dict[str, Any]]:
        if self._speeches is None:
            self._speeches = load_speeches(self.speeches_path)
        return self._speeches

    def load_embedder(self, model_dir: Path) -> Embedder:
        from embedder_core import Embedder

        return Embedder.from_pretrained(str(model_dir), device=self.device, dtype=self.dtype)
