"""Prometheus metrics of one server app, in a registry of its own (so several apps, as in
tests, never share or collide)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from embedder_core import Embedder
    from embedder_core.scheduler import BatchStats

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_POWERS_OF_TWO = tuple(float(2**i) for i in range(0, 18))


class ServerMetrics:
    """Requests by route and status, latency, tokens, forward-batch sizes, queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        prefix = "jina_connectors_"
        self.requests = Counter(
            prefix + "requests",
            "HTTP requests by route and response status (499: the client went away).",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            prefix + "request_duration_seconds",
            "Time from the request's arrival to its response, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            prefix + "tokens",
            "Tokens computed for answered requests (special tokens, instructions included).",
            registry=self.registry,
        )
        self.inputs = Counter(
            prefix + "inputs", "Texts and documents of answered requests.", registry=self.registry
        )
        self.cancelled = Counter(
            prefix + "cancelled_requests",
            "Requests whose client disconnected before the answer; their queued work is dropped.",
            registry=self.registry,
        )
        self.batch_tokens = Histogram(
            prefix + "batch_tokens",
            "Real tokens per forward batch.",
            buckets=_POWERS_OF_TWO,
            registry=self.registry,
        )
        self.batch_sequences = Histogram(
            prefix + "batch_sequences",
            "Sequences per forward batch.",
            buckets=_POWERS_OF_TWO,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            prefix + "batch_requests",
            "Distinct requests sharing one forward batch.",
            buckets=_POWERS_OF_TWO,
            registry=self.registry,
        )
        self.batch_seconds = Histogram(
            prefix + "batch_seconds",
            "Wall time of one forward batch and its pooling.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queued_tokens = Gauge(
            prefix + "queued_tokens",
            "Tokens accepted and not computed yet.",
            registry=self.registry,
        )
        self.queued_requests = Gauge(
            prefix + "queued_requests",
            "Requests accepted and not finished yet.",
            registry=self.registry,
        )
        self.model_loaded = Gauge(
            prefix + "model_loaded", "1 once the model is loaded.", registry=self.registry
        )
        self._rate_lock = threading.Lock()
        self._tokens_per_second = 0.0

    def watch(self, embedder: Embedder) -> None:
        """Read queue depth from ``embedder``'s scheduler and record its batches."""
        scheduler = embedder.scheduler
        self.queued_tokens.set_function(lambda: scheduler.queued_tokens)
        self.queued_requests.set_function(lambda: scheduler.queued_requests)
        self.model_loaded.set(1)
        scheduler.add_batch_listener(self.on_batch)

    def unwatch(self, embedder: Embedder) -> None:
        embedder.scheduler.remove_batch_listener(self.on_batch)

    def on_batch(self, stats: BatchStats) -> None:
        """Batch listener (runs on the scheduler's thread): sizes, and the token rate."""
        self.batch_tokens.observe(stats.tokens)
        self.batch_sequences.observe(stats.sequences)
        self.batch_requests.observe(stats.requests)
        self.batch_seconds.observe(stats.seconds)
        if stats.seconds > 0:
            rate = stats.tokens / stats.seconds
            with self._rate_lock:
                previous = self._tokens_per_second
                self._tokens_per_second = rate if not previous else 0.8 * previous + 0.2 * rate

    @property
    def tokens_per_second(self) -> float:
        """Recent forward throughput (exponential moving average over batches); 0 unknown."""
        return self._tokens_per_second
