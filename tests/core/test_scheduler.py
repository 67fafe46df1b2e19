"""The scheduler: many callers share forward batches, rows never depend on their neighbours,
large jobs do not starve small ones, cancelled work is never computed, errors stay local.

Real models (the tiny jina-v3 checkpoint, packed; MiniLM, padded) check the numbers
against an oracle that runs every sequence alone. A table model (a token's state is a
fixed vector per token id) records every batch cheaply, for the policy tests.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import CancelledError
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
import torch
from paths import REPO_ROOT

from embedder_core import Embedder, QueueFullError, SchedulerClosedError
from embedder_core.batching import batch_cost, padded_batch_with, plan_batches
from embedder_core.late_chunking import SequenceJob
from embedder_core.loading import read_config
from embedder_core.models.base import PackedBatch, TokenEncoder
from embedder_core.models.hf_encoder import HFEncoder
from embedder_core.models.jina_v3 import JinaV3Config, JinaV3Model
from embedder_core.scheduler import BatchStats, EmbeddingScheduler, PendingEmbeddings

COSINE_MATCH = 0.99999
CPU = torch.device("cpu")


# --- models ---------------------------------------------------------------------------


class TableModel:
    """Token state = a fixed random vector per token id (plus one per task): rows are exact,
    and every batch is recorded as the tuple of its sequences. ``hook(batch_index, batch)``
    runs on the worker before each batch (to block it, or raise)."""

    device = CPU
    dtype = torch.float32

    def __init__(self, *, packed: bool, hidden_size: int = 8, vocab: int = 100_000) -> None:
        generator = torch.Generator().manual_seed(0)
        self.packed = packed
        self.hidden_size = hidden_size
        self.table = torch.randn(vocab, hidden_size, generator=generator)
        self.task_rows = torch.randn(6, hidden_size, generator=generator)
        self.batches: list[list[tuple[int, ...]]] = []
        self.hook: Callable[[int, PackedBatch], None] | None = None

    def token_states(self, batch: PackedBatch) -> torch.Tensor:
        ids = batch.input_ids.tolist()
        sequences, start = [], 0
        for length in batch.seq_lens:
            sequences.append(tuple(ids[start : start + length]))
            start += length
        index = len(self.batches)
        self.batches.append(sequences)
        if self.hook is not None:
            self.hook(index, batch)
        tasks = torch.repeat_interleave(torch.tensor(batch.task_ids), torch.tensor(batch.seq_lens))
        return self.table[batch.input_ids] + self.task_rows[tasks]

    def batches_with(self, marker: int) -> list[int]:
        """Indices of the batches that held a sequence starting with ``marker``."""
        return [i for i, seqs in enumerate(self.batches) if any(s[0] == marker for s in seqs)]


class Gate:
    """Blocks the worker at the start of batch ``at`` until ``release()``."""

    def __init__(self, model: TableModel, at: int = 0) -> None:
        self.entered = threading.Event()
        self._open = threading.Event()
        self._at = at
        model.hook = self._hook

    def _hook(self, index: int, batch: PackedBatch) -> None:
        if index == self._at:
            self.entered.set()
            assert self._open.wait(30), "gate never released"

    def release(self) -> None:
        self._open.set()


def sequences_job(marker: int, lengths: list[int], *, task: int = -1) -> list[SequenceJob]:
    """One job per row; every sequence starts with ``marker`` so batches can be traced."""
    return [
        SequenceJob(
            [marker, *[(marker * 7 + i) % 200 for i in range(length - 1)]],
            task,
            ((row, 0, length),),
        )
        for row, length in enumerate(lengths)
    ]


def oracle(
    model: TokenEncoder, jobs: list[SequenceJob], rows: int, reduction: str = "mean"
) -> np.ndarray:
    """Each sequence run alone, pooled in float64."""
    fill = 0.0 if reduction == "mean" else -np.inf
    out = np.full((rows, model.hidden_size), fill)
    counts = np.zeros(rows)
    with torch.inference_mode():
        for job in jobs:
            batch = PackedBatch(torch.tensor(job.ids), [len(job.ids)], [job.task])
            states = model.token_states(batch).double().numpy()
            for row, start, end in job.pools:
                counts[row] += end - start
                if reduction == "mean":
                    out[row] += states[start:end].sum(axis=0)
                else:
                    out[row] = np.maximum(out[row], states[start:end].max(axis=0))
    if reduction == "mean":
        return out / np.maximum(counts, 1)[:, None]
    out[counts == 0] = 0.0
    return out


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(axis=1) / np.linalg.norm(a64, axis=1) / np.linalg.norm(b64, axis=1)


@pytest.fixture(scope="module")
def jina_model(tiny_jina_dir: Path) -> JinaV3Model:
    config = JinaV3Config.from_dict(read_config(tiny_jina_dir))
    return JinaV3Model.from_dir(tiny_jina_dir, config, CPU, torch.float32)


@pytest.fixture(scope="module")
def minilm_model(minilm_dir: Path) -> HFEncoder:
    return HFEncoder.from_dir(minilm_dir, CPU, torch.float32)


# --- rows do not depend on the batch --------------------------------------------------


def random_request(
    rng: random.Random, *, max_len: int, tasks: list[int], vocab: range
) -> tuple[list[SequenceJob], int]:
    """Either independent sequences (one row each), or a late-chunked document: windows
    whose chunks pool into rows shared across windows."""
    task = rng.choice(tasks)
    if rng.random() < 0.5:
        jobs = []
        for row in range(rng.randint(1, 6)):
            ids = [0, *rng.choices(vocab, k=rng.randint(1, max_len - 2)), 2]
            pool = (row, 1, len(ids) - 1) if rng.random() < 0.5 else (row, 0, len(ids))
            jobs.append(SequenceJob(ids, rng.choice(tasks), (pool,)))
        return jobs, len(jobs)
    rows = rng.randint(1, 5)
    jobs = []
    for window in range(rng.randint(1, 3)):  # the first window pools into every row
        ids = [0, *rng.choices(vocab, k=rng.randint(rows + 2, max_len - 2)), 2]
        cuts = sorted(rng.sample(range(2, len(ids) - 1), rows - 1))
        bounds = [1, *cuts, len(ids) - 1]
        pools = tuple(
            (row, a, b)
            for row, (a, b) in enumerate(pairwise(bounds))
            if window == 0 or rng.random() < 0.6
        )
        jobs.append(SequenceJob(ids, task, pools))
    return jobs, rows


def submit_concurrently(
    scheduler: EmbeddingScheduler, requests: list[tuple[list[SequenceJob], int]]
) -> dict[int, np.ndarray]:
    """Each request from its own thread, all released at once."""
    barrier = threading.Barrier(len(requests))
    results: dict[int, np.ndarray] = {}

    def caller(index: int) -> None:
        jobs, rows = requests[index]
        barrier.wait()
        results[index] = scheduler.submit(jobs, rows).result(timeout=120)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.parametrize("model_name", ["jina", "minilm"])
@pytest.mark.parametrize("seed", range(3))
def test_rows_do_not_depend_on_neighbours_budget_or_concurrency(
    request: pytest.FixtureRequest, model_name: str, seed: int
):
    model = request.getfixturevalue(f"{model_name}_model")
    rng = random.Random(seed)
    if model_name == "jina":
        settings = {"max_len": 128, "tasks": [-1, 0, 1, 2, 3, 4], "vocab": range(4, 200)}
    else:
        settings = {"max_len": 200, "tasks": [-1], "vocab": range(1000, 29000)}
    requests = [random_request(rng, **settings) for _ in range(rng.randint(4, 10))]
    expected = [oracle(model, jobs, rows) for jobs, rows in requests]
    for budget in (1, 64, 300, 100_000):
        scheduler = EmbeddingScheduler(model, max_batch_tokens=budget)
        results = submit_concurrently(scheduler, requests)
        assert sorted(results) == list(range(len(requests)))
        for index, want in enumerate(expected):
            got = results[index]
            assert got.dtype == np.float32 and got.shape == want.shape
            np.testing.assert_array_less(COSINE_MATCH, cosines(got, want))
        scheduler.close()


@pytest.mark.parametrize("packed", [True, False])
def test_max_reduction_is_the_elementwise_max(packed: bool):
    model = TableModel(packed=packed)
    rng = random.Random(5)
    requests = [random_request(rng, max_len=60, tasks=[-1, 1], vocab=range(5, 900)) for _ in "ab"]
    scheduler = EmbeddingScheduler(model, max_batch_tokens=70)
    pending = [scheduler.submit(jobs, rows, reduction="max") for jobs, rows in requests]
    for (jobs, rows), handle in zip(requests, pending):
        np.testing.assert_allclose(handle.result(), oracle(model, jobs, rows, "max"), atol=1e-6)
    # A max is not a mean: the control that the reduction was applied at all.
    jobs, rows = requests[0]
    assert not np.allclose(scheduler.submit(jobs, rows).result(), oracle(model, jobs, rows, "max"))


def test_rows_without_tokens_are_zero_and_empty_requests_finish_at_once():
    model = TableModel(packed=True)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=100)
    jobs = [SequenceJob([7, 8, 9], -1, ((1, 0, 3),))]
    for reduction in ("mean", "max"):
        got = scheduler.submit(jobs, 3, reduction=reduction).result()
        assert np.all(got[[0, 2]] == 0) and np.all(got[1] != 0)
    empty = scheduler.submit([], 0, finalize=lambda rows: rows.shape)
    assert empty.done() and empty.result() == (0, 8) and empty.tokens == 0
    assert len(model.batches) == 2


@pytest.mark.parametrize(
    ("jobs", "rows", "reduction", "error"),
    [
        ([SequenceJob([1, 2], -1, ((0, 0, 2),))], 0, "mean", "outside"),
        ([SequenceJob([1, 2], -1, ((0, 1, 3),))], 1, "mean", "outside"),
        ([SequenceJob([1, 2], -1, ((0, 1, 1),))], 1, "mean", "outside"),
        ([SequenceJob([], -1, ())], 1, "mean", "no tokens"),
        ([SequenceJob([1, 2], -1, ((0, 0, 2),))], 1, "median", "reduction"),
        ([SequenceJob([1, 2], -1, ((0, 0, 2),))], -1, "mean", "rows"),
    ],
)
def test_bad_requests_are_refused_before_queueing(jobs, rows, reduction, error):
    model = TableModel(packed=True)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=100)
    with pytest.raises(ValueError, match=error):
        scheduler.submit(jobs, rows, reduction=reduction)
    assert scheduler.queued_requests == 0 and model.batches == []


@pytest.mark.parametrize("seed", range(20))
def test_batch_planning_respects_the_budget_and_holds_the_head(seed: int):
    rng = random.Random(seed)
    lengths = [rng.randint(1, 300) for _ in range(rng.randint(1, 60))]
    budget = rng.choice([1, 50, 256, 2048])
    for packed in (True, False):
        groups = plan_batches(lengths, budget, packed=packed)
        assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
        for group in groups:
            group_lengths = [lengths[i] for i in group]
            assert len(group) == 1 or batch_cost(group_lengths, packed=packed) <= budget
    head = rng.randrange(len(lengths))
    group = padded_batch_with(lengths, head, budget)
    assert head in group and len(set(group)) == len(group)
    assert len(group) == 1 or batch_cost([lengths[i] for i in group], packed=False) <= budget


# --- sharing forwards -------------------------------------------------------------------


def test_concurrent_encodes_share_forward_batches(tiny_jina_dir: Path):
    """Requests that wait together run together: one forward, not one per caller."""
    embedder = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")
    stats: list[BatchStats] = []
    release, blocked = threading.Event(), threading.Event()

    def listener(batch: BatchStats) -> None:
        stats.append(batch)
        if len(stats) == 1:  # hold the worker after the first batch
            blocked.set()
            release.wait(30)

    embedder.scheduler.add_batch_listener(listener)
    first = embedder.submit("the first caller")
    assert blocked.wait(30)
    texts = {"a": ["one text", "two texts here"], "b": ["three", "four", "five"]}
    results: dict[str, np.ndarray] = {}
    threads = [
        threading.Thread(target=lambda k=k: results.update({k: embedder.encode(texts[k])}))
        for k in texts
    ]
    for thread in threads:
        thread.start()
    while embedder.scheduler.queued_requests < 3:  # both callers have queued their work
        threading.Event().wait(0.001)
    release.set()
    for thread in threads:
        thread.join()
    first.result()
    assert len(stats) == 2, stats  # the held batch, then ONE forward for both callers
    assert stats[1].requests == 2 and stats[1].sequences == 5
    for key, rows in results.items():
        alone = np.concatenate([embedder.encode(text) for text in texts[key]])
        np.testing.assert_array_less(COSINE_MATCH, cosines(rows, alone))


def test_mixed_tasks_share_one_forward(jina_model: JinaV3Model):
    """Requests of different tasks go into the same forward and keep their own adapter."""
    stats: list[BatchStats] = []
    scheduler = EmbeddingScheduler(jina_model, max_batch_tokens=10_000)
    requests = [sequences_job(10 + task, [20, 30], task=task) for task in (-1, 0, 3)]
    release = threading.Event()
    scheduler.add_batch_listener(lambda s: (stats.append(s), release.wait(30)))
    blocker = scheduler.submit(sequences_job(5, [5]), 1)
    while not stats:
        threading.Event().wait(0.001)
    pending = [scheduler.submit(jobs, 2) for jobs in requests]
    release.set()
    blocker.result()
    for jobs, handle in zip(requests, pending):
        np.testing.assert_array_less(
            COSINE_MATCH, cosines(handle.result(), oracle(jina_model, jobs, 2))
        )
    assert [s.requests for s in stats] == [1, 3]


# --- fairness -------------------------------------------------------------------------


@pytest.mark.parametrize("packed", [True, False])
def test_short_query_is_answered_in_the_next_batch_during_a_large_job(packed: bool):
    """A 100k-token job runs; a one-sequence query submitted meanwhile goes into the very
    next batch (first-come-first-served would run it after the whole job)."""
    model = TableModel(packed=packed)
    gate = Gate(model, at=1)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=2048)
    big = scheduler.submit(sequences_job(1, [125] * 800), 800)  # 100k tokens, ~50 batches
    assert gate.entered.wait(30)  # batch 1 of the job is running
    query = scheduler.submit(sequences_job(2, [12]), 1)
    gate.release()
    query.result(timeout=30)
    assert not big.done()
    big.result(timeout=60)
    assert model.batches_with(2) == [2]
    assert len(model.batches_with(1)) >= 49
    jobs = sequences_job(2, [12])
    np.testing.assert_allclose(query.result(), oracle(model, jobs, 1), atol=1e-6)


@pytest.mark.parametrize("packed", [True, False])
def test_short_query_overtakes_many_waiting_requests_of_equal_standing(packed: bool):
    """Twenty requests wait, none served yet; a one-sequence query that arrives after them
    still goes into the next batch (fewest tokens left first among equal tags)."""
    model = TableModel(packed=packed)
    gate = Gate(model, at=0)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=256)
    blocker = scheduler.submit(sequences_job(1, [8]), 1)
    assert gate.entered.wait(30)
    crowd = [scheduler.submit(sequences_job(100 + i, [64] * 10), 10) for i in range(20)]
    query = scheduler.submit(sequences_job(2, [10]), 1)
    gate.release()
    for handle in (blocker, query, *crowd):
        handle.result(timeout=60)
    assert model.batches_with(2) == [1]


@pytest.mark.parametrize("packed", [True, False])
def test_concurrent_large_requests_share_batches_equally_by_tokens(packed: bool):
    """Long sequences do not buy a request more of the batch: tokens served stay level."""
    model = TableModel(packed=packed)
    gate = Gate(model, at=0)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=1024)
    blocker = scheduler.submit(sequences_job(1, [4]), 1)
    assert gate.entered.wait(30)
    long_lengths, short_lengths = [128] * 100, [16] * 800
    long = scheduler.submit(sequences_job(2, long_lengths), 100)
    short = scheduler.submit(sequences_job(3, short_lengths), 800)
    gate.release()
    blocker.result(), long.result(timeout=60), short.result(timeout=60)
    served = {2: 0, 3: 0}
    for batch in model.batches[1:]:
        for sequence in batch:
            served[sequence[0]] += len(sequence)
        if served[2] < sum(long_lengths) and served[3] < sum(short_lengths):
            # Level within one sequence (+ one batch of the padded model's sorted window).
            slack = 128 + (0 if packed else 1024)
            assert abs(served[2] - served[3]) <= slack, (served, len(batch))


@pytest.mark.parametrize("packed", [True, False])
def test_a_stream_of_small_requests_does_not_starve_a_large_one(packed: bool):
    """Short queries keep arriving (two per batch, as from busy clients): the large job
    still runs in full batches and finishes while the stream goes on, and every query is
    answered within two batches. A padded model cannot share a batch between them without
    padding: it alternates."""
    model = TableModel(packed=packed)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=1024)
    stream: dict[int, tuple[int, PendingEmbeddings[np.ndarray]]] = {}  # marker -> arrival
    big = scheduler.submit(sequences_job(1, [64] * 160), 160)  # 10 batches alone

    def arrive(stats: BatchStats) -> None:
        if big.done() or len(model.batches) >= 100:  # bounded even when it starves
            return
        for _ in range(2):
            marker = 1000 + len(stream)
            stream[marker] = (len(model.batches), scheduler.submit(sequences_job(marker, [8]), 1))

    scheduler.add_batch_listener(arrive)
    big.result(timeout=60)
    big_batches = model.batches_with(1)
    assert len(big_batches) <= 11  # 160 x 64 tokens, at least 15 sequences a batch
    # Finished while the stream still ran: within 2 batches for each of its own.
    assert big_batches[-1] <= 2 * len(big_batches), big_batches
    for marker, (arrival, pending) in stream.items():
        pending.result(timeout=30)
        assert model.batches_with(marker)[0] <= arrival + 1, (marker, arrival)


def padded_efficiency(requests: list[list[int]], budget: int) -> float:
    """Real / padded tokens when ``requests`` (sequence lengths) all wait together."""
    model = TableModel(packed=False)
    gate = Gate(model, at=0)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=budget)
    stats: list[BatchStats] = []
    blocker = scheduler.submit(sequences_job(1, [3]), 1)
    assert gate.entered.wait(30)
    scheduler.add_batch_listener(stats.append)
    pending = [scheduler.submit(sequences_job(2, lengths), len(lengths)) for lengths in requests]
    gate.release()
    for handle in (blocker, *pending):
        handle.result(timeout=60)
    return sum(s.tokens for s in stats) / sum(s.padded_tokens for s in stats)


def one_call_efficiency(lengths: list[int], budget: int) -> float:
    groups = plan_batches(lengths, budget)
    padded = sum(batch_cost([lengths[i] for i in group], packed=False) for group in groups)
    return sum(lengths) / padded


@pytest.mark.parametrize("clients", [8, 64])
def test_padded_batches_of_many_clients_pad_about_as_little_as_one_call(clients: int):
    rng = random.Random(clients)
    lengths = [round(3 * 80 ** rng.random()) for _ in range(512)]  # log-uniform 3..240
    requests = [lengths[i::clients] for i in range(clients)]
    ours = padded_efficiency(requests, 2048)
    assert ours >= 0.95 * one_call_efficiency(lengths, 2048), ours


def test_padded_batches_keep_long_and_short_requests_apart():
    """Two requests of very different lengths: batches stay homogeneous, not mixed."""
    assert padded_efficiency([[128] * 100, [16] * 800], 1024) >= 0.95


# --- cancellation ---------------------------------------------------------------------


def test_cancelled_request_is_not_computed():
    model = TableModel(packed=True)
    gate = Gate(model, at=0)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=256)
    doomed = scheduler.submit(sequences_job(1, [64] * 40), 40)
    assert gate.entered.wait(30)
    other = scheduler.submit(sequences_job(2, [64] * 8), 8)
    assert scheduler.queued_tokens == 48 * 64
    assert doomed.cancel() and doomed.cancelled()
    assert scheduler.queued_tokens == 8 * 64 + 4 * 64  # the running batch's tokens remain
    gate.release()
    other.result(timeout=30)
    assert model.batches_with(1) == [0]  # only the batch already running when cancelled
    with pytest.raises(CancelledError):
        doomed.result()
    assert scheduler.queued_tokens == 0 and scheduler.queued_requests == 0


def test_cancelling_an_awaiting_asyncio_task_cancels_the_request():
    """What a server sees when its client disconnects."""
    model = TableModel(packed=True)
    gate = Gate(model, at=0)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=256)
    blocker = scheduler.submit(sequences_job(1, [8]), 1)
    assert gate.entered.wait(30)

    async def client() -> PendingEmbeddings[np.ndarray]:
        pending = scheduler.submit(sequences_job(2, [64] * 10), 10)
        task = asyncio.ensure_future(_await(pending))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return pending

    pending = asyncio.run(client())
    assert pending.cancelled()
    gate.release()
    blocker.result(timeout=30)
    assert model.batches_with(2) == [] and scheduler.queued_tokens == 0


async def _await(pending: PendingEmbeddings[np.ndarray]) -> np.ndarray:
    return await pending


def test_await_gives_the_result():
    model = TableModel(packed=False)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=256)
    jobs = sequences_job(3, [5, 9])
    got = asyncio.run(_await(scheduler.submit(jobs, 2)))
    np.testing.assert_allclose(got, oracle(model, jobs, 2), atol=1e-6)


# --- errors and out-of-memory ---------------------------------------------------------


@pytest.mark.parametrize("packed", [True, False])
def test_out_of_memory_halves_the_budget_and_retries(packed: bool):
    model = TableModel(packed=packed)

    def limit(index: int, batch: PackedBatch) -> None:
        cost = sum(batch.seq_lens) if packed else len(batch.seq_lens) * max(batch.seq_lens)
        if cost > 300:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    model.hook = limit
    scheduler = EmbeddingScheduler(model, max_batch_tokens=2000)
    rng = random.Random(0)
    requests = [sequences_job(10 + i, [rng.randint(2, 90) for _ in range(12)]) for i in range(3)]
    pending = [scheduler.submit(jobs, len(jobs)) for jobs in requests]
    for jobs, handle in zip(requests, pending):
        np.testing.assert_allclose(
            handle.result(timeout=30), oracle(model, jobs, len(jobs)), atol=1e-6
        )
    assert scheduler.max_batch_tokens <= 300
    # A single sequence over what memory allows fails its own request only.
    lonely = scheduler.submit(sequences_job(5, [400]), 1)
    fine = scheduler.submit(sequences_job(6, [20]), 1)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        lonely.result(timeout=30)
    fine.result(timeout=30)


def test_an_error_in_a_forward_fails_only_that_batch_and_the_worker_survives():
    model = TableModel(packed=True)
    poison = 666
    gate, entered = threading.Event(), threading.Event()

    def hook(index: int, batch: PackedBatch) -> None:
        if index == 0:
            entered.set()
            gate.wait(30)
        if poison in batch.input_ids.tolist():
            raise ValueError("bad batch")

    model.hook = hook
    scheduler = EmbeddingScheduler(model, max_batch_tokens=100)
    blocker = scheduler.submit(sequences_job(1, [4]), 1)
    assert entered.wait(30)
    bad = scheduler.submit(sequences_job(poison, [50]), 1)
    neighbour = scheduler.submit(sequences_job(2, [40]), 1)  # same batch as the poison
    later = scheduler.submit(sequences_job(3, [90]), 1)  # next batch
    gate.set()
    blocker.result(timeout=30)
    with pytest.raises(ValueError, match="bad batch"):
        bad.result(timeout=30)
    with pytest.raises(ValueError, match="bad batch"):
        neighbour.result(timeout=30)
    want = oracle(model, sequences_job(3, [90]), 1)
    np.testing.assert_allclose(later.result(timeout=30), want, atol=1e-6)
    assert scheduler.submit(sequences_job(4, [9]), 1).result(timeout=30).shape == (1, 8)
    assert scheduler.queued_tokens == 0 and scheduler.queued_requests == 0


# --- progress, metrics, limits --------------------------------------------------------


def test_the_worker_runs_in_inference_mode_on_one_daemon_thread():
    model = TableModel(packed=True)
    seen: list[tuple[bool, str, bool]] = []
    model.hook = lambda index, batch: seen.append(
        (
            torch.is_inference_mode_enabled(),
            threading.current_thread().name,
            threading.current_thread().daemon,
        )
    )
    scheduler = EmbeddingScheduler(model, max_batch_tokens=10)
    assert scheduler._worker is None  # started by the first submit, not before
    handles = [scheduler.submit(sequences_job(i, [8, 8]), 2) for i in range(3)]
    for handle in handles:
        handle.result(timeout=30)
    assert seen and set(seen) == {(True, "embedder-scheduler", True)}


def test_progress_reports_each_batch_of_a_long_request():
    model = TableModel(packed=True)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=256)
    updates: list[int] = []
    handle = scheduler.submit(sequences_job(1, [64] * 20), 20, on_progress=updates.append)
    handle.result(timeout=30)
    assert updates == [256] * 5 and sum(updates) == handle.tokens == 20 * 64


def test_queue_metrics_and_queue_limit():
    model = TableModel(packed=True)
    gate = Gate(model, at=0)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=100, max_queued_tokens=300)
    first = scheduler.submit(sequences_job(1, [50, 50]), 2)
    assert gate.entered.wait(30)
    second = scheduler.submit(sequences_job(2, [100, 100]), 2)
    assert (scheduler.queued_tokens, scheduler.queued_requests) == (300, 2)
    with pytest.raises(QueueFullError) as caught:
        scheduler.submit(sequences_job(3, [1]), 1)
    assert caught.value.queued_tokens == 300 and caught.value.limit == 300
    gate.release()
    first.result(timeout=30), second.result(timeout=30)
    assert (scheduler.queued_tokens, scheduler.queued_requests) == (0, 0)
    # The limit never refuses work to an empty queue, whatever its size.
    scheduler.submit(sequences_job(4, [400]), 1).result(timeout=30)


def test_waiting_inside_a_worker_callback_raises_instead_of_deadlocking():
    model = TableModel(packed=True)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=100)
    gate = Gate(model, at=0)
    other = scheduler.submit(sequences_job(1, [50]), 1)
    assert gate.entered.wait(30)
    waiting = scheduler.submit(sequences_job(2, [60]), 1, on_progress=lambda tokens: later.result())
    later = scheduler.submit(sequences_job(3, [60]), 1)
    gate.release()
    with pytest.raises(RuntimeError, match="callback"):
        waiting.result(timeout=30)
    other.result(timeout=30), later.result(timeout=30)


# --- lifecycle ------------------------------------------------------------------------


def test_close_finishes_accepted_work_then_refuses_more():
    model = TableModel(packed=True)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=64)
    pending = scheduler.submit(sequences_job(1, [32] * 20), 20)
    scheduler.close()
    assert pending.done() and pending.result().shape == (20, 8)
    with pytest.raises(SchedulerClosedError):
        scheduler.submit(sequences_job(2, [3]), 1)
    assert scheduler._worker is not None and not scheduler._worker.is_alive()


def test_close_with_cancel_drops_waiting_work():
    model = TableModel(packed=True)
    gate = Gate(model, at=0)
    scheduler = EmbeddingScheduler(model, max_batch_tokens=64)
    pending = scheduler.submit(sequences_job(1, [32] * 20), 20)
    assert gate.entered.wait(30)
    closer = threading.Thread(target=lambda: scheduler.close(cancel_pending=True))
    closer.start()
    while not pending.cancelled():
        threading.Event().wait(0.001)
    gate.release()
    closer.join(30)
    assert not closer.is_alive() and model.batches_with(1) == [0]


def test_an_unreferenced_embedder_is_collected_and_its_worker_ends(tiny_jina_dir: Path):
    embedder = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")
    embedder.encode("start the worker")
    worker = embedder.scheduler._worker
    assert worker is not None and worker.is_alive()
    reference = weakref.ref(embedder)
    del embedder
    gc.collect()
    assert reference() is None
    worker.join(10)
    assert not worker.is_alive()


def test_interpreter_exits_with_work_pending(tmp_path: Path):
    """Daemon worker, cancelled at exit: no hang, no crash."""
    script = tmp_path / "exit.py"
    script.write_text(
        "import time, torch\n"
        "from embedder_core.late_chunking import SequenceJob\n"
        "from embedder_core.scheduler import EmbeddingScheduler\n"
        "class Slow:\n"
        "    packed, hidden_size, device, dtype = True, 4, torch.device('cpu'), torch.float32\n"
        "    def token_states(self, batch):\n"
        "        time.sleep(0.05)\n"
        "        return torch.ones(batch.num_tokens, 4)\n"
        "s = EmbeddingScheduler(Slow(), max_batch_tokens=10)\n"
        "p = s.submit([SequenceJob([1] * 10, -1, ((i, 0, 10),)) for i in range(1000)], 1000)\n"
        "time.sleep(0.2)\n"
        "print('exiting', p.done())\n"
    )
    root = REPO_ROOT
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "exiting False"


# --- the Embedder's submit API ----------------------------------------------------------


def test_submit_equals_encode_and_reports_tokens(tiny_jina_embedder: Embedder):
    texts = ["a short one", "and a somewhat longer second text to embed"]
    pending = tiny_jina_embedder.submit(texts, task="separation", dimensions=16)
    got = pending.result(timeout=30)
    np.testing.assert_array_equal(
        got, tiny_jina_embedder.encode(texts, task="separation", dimensions=16)
    )
    assert pending.done() and not pending.cancelled()
    assert pending.tokens == sum(tiny_jina_embedder.count_tokens(texts, task="separation"))
    binary = tiny_jina_embedder.submit(texts, embedding_type="base64").result()
    assert isinstance(binary, list) and all(isinstance(b, str) for b in binary)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda e: e.submit(["ok", ""]), ValueError),
        (lambda e: e.submit(["ok"], task="nope"), ValueError),
        (lambda e: e.submit(["ok"], dimensions=0), ValueError),
        (lambda e: e.submit(["ok"], embedding_type="float64"), ValueError),
        (lambda e: e.submit(["ok", 3]), TypeError),
        (lambda e: e.submit(["ok"], on_progress=5), TypeError),
        (lambda e: e.submit_documents(["ok", 3]), TypeError),
        (lambda e: e.submit_spans([("Hello world.", [(0, 50)])]), ValueError),
    ],
)
def test_submit_validates_before_queueing(tiny_jina_dir: Path, call, error):
    embedder = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")
    stats: list[BatchStats] = []
    embedder.scheduler.add_batch_listener(stats.append)
    with pytest.raises(error):
        call(embedder)
    assert embedder.scheduler.queued_requests == 0 and stats == []


def test_submit_documents_and_spans_equal_the_blocking_calls(tiny_jina_embedder: Embedder):
    documents = ["One sentence here. Another one there! A third?", "Short doc. Two parts."]
    pending = tiny_jina_embedder.submit_documents(documents, chunk_size=4)
    blocking = tiny_jina_embedder.embed_documents(documents, chunk_size=4)
    for got, want in zip(pending.result(timeout=30), blocking):
        assert [c.text for c in got] == [c.text for c in want]
        np.testing.assert_array_equal(
            np.stack([c.embedding for c in got]), np.stack([c.embedding for c in want])
        )
    spans = [(doc, [(c.start, c.end) for c in chunks]) for doc, chunks in zip(documents, blocking)]
    for got, want in zip(tiny_jina_embedder.submit_spans(spans).result(timeout=30), blocking):
        np.testing.assert_array_equal(got, np.stack([c.embedding for c in want]))


def test_show_progress_counts_tokens(tiny_jina_embedder: Embedder, capsys: pytest.CaptureFixture):
    texts = ["first text", "second text that is longer"]
    updates: list[int] = []
    pending = tiny_jina_embedder.submit(texts, show_progress=True, on_progress=updates.append)
    pending.result(timeout=30)
    total = sum(tiny_jina_embedder.count_tokens(texts))
    assert sum(updates) == total == pending.tokens
    assert f"{total}/{total}" in capsys.readouterr().err


def test_out_of_memory_retry_runs_after_the_failed_forward_is_freed():
    """The retry must not run while the failed batch's tensors live on: a CUDA retry would
    then run out of memory again. Tracebacks caught in reference cycles keep frames, and
    their tensors, alive until the cycle collector runs."""
    model = TableModel(packed=True)
    failed_tensor: list[weakref.ref[torch.Tensor]] = []
    alive_at_retry: list[bool] = []

    def hook(index: int, batch: PackedBatch) -> None:
        if len(batch.seq_lens) > 1 and not failed_tensor:
            activations = torch.ones(1024)
            failed_tensor.append(weakref.ref(activations))
            cycle = sys._getframe()  # noqa: F841 - the frame refers to itself, as real ones do
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        if failed_tensor:
            alive_at_retry.append(failed_tensor[0]() is not None)

    model.hook = hook
    scheduler = EmbeddingScheduler(model, max_batch_tokens=2000)
    jobs = sequences_job(3, [20, 30, 40])
    got = scheduler.submit(jobs, len(jobs)).result(timeout=30)
    np.testing.assert_allclose(got, oracle(model, jobs, len(jobs)), atol=1e-6)
    assert alive_at_retry and not any(alive_at_retry)
