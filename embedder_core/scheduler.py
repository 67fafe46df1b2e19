"""One scheduler per loaded model: many callers, one worker thread, shared forward batches.

Callers (threads, asyncio tasks) submit requests: lists of ``SequenceJob`` (token ids, an
adapter, and which token ranges pool into which output row). One daemon worker thread packs
the waiting sequences of all requests into token-budget batches, runs the model, and pools
each request's rows into its own float32 accumulator. Tasks mix freely in one forward, and
late-chunking windows are ordinary jobs. A row never depends on what else was in its batch.

Fairness: start-time fair queuing by tokens. Every request carries a tag, its virtual start
plus the tokens it has been served; a new request starts at the current virtual time (the
smallest tag at the last batch), so it owes nothing for the past. Batches are filled with
the next sequence of the request with the smallest tag, repeatedly; among equal tags the
request with the fewest tokens left goes first (then arrival). So concurrent requests share
every batch equally by tokens, a large job cannot starve small ones, and a short query
goes into the very next batch, even while a large job or many other requests wait. Within
a request, sequences run longest first.

Budgets: a packed model (no padding) costs the sum of lengths; a padded one costs count x
longest, and there the fair order alone would mix lengths and waste padding. For a padded
model the scheduler therefore takes a window of several batches' worth of sequences in fair
order and runs the denser of two batches that hold its first sequence: the one it falls in
when the window is cut by length (as one call would cut it), and its length neighbours
grown by least padding. The rest wait for the next selection.

That alone would starve a long request on a padded model: short requests keep arriving at
the current virtual time, so the head would always be a short sequence, and no batch built
around one takes the long ones. So each padded batch is also a turn that the waiting
requests are owed max-min fair shares of, by what they still need (their waiting tokens,
in batches): a short query needs a sliver of one, and what it leaves goes to the others,
as a packed batch would give it. A request is charged its sequences' share of the batch it
runs in; what it is owed stays between zero (being served past its share is no debt) and
what it needs, at most one turn (an old claim must not keep others waiting). A request
owed three quarters of that heads the next batch with its next sequence (the most owed
relative to its need first, then in fair order), and that sequence's length neighbours
fill it. So a long request beside a stream of short queries heads every second batch, a
short query passed over once heads the next, and among n long requests each heads a batch
at least every 3n / 4 + 1 or so.

No batching delay: an idle worker wakes on each submit and runs what is there at once.
"""

from __future__ import annotations

import atexit
import gc
import heapq
import itertools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, overload

import numpy as np
import torch

from .batching import batch_cost, padded_batch_with, plan_batches
from .errors import QueueFullError, SchedulerClosedError
from .late_chunking import Reduction, SequenceJob
from .models.base import PackedBatch, TokenEncoder
from .pending import PendingEmbeddings, _Signal

__all__ = ["BatchStats", "EmbeddingScheduler", "PendingEmbeddings", "Reduction"]

_REDUCTIONS = ("mean", "max")
T = TypeVar("T")

# A padded model's fair window: this many batches' budget of sequences. Simulated with
# MiniLM's lengths of 512 random texts in 64 concurrent requests, real / padded tokens:
# 0.80 with a 4-batch window, 0.85 with 8, 0.87 with 16; one call of all: 0.88.
_WINDOW_BATCHES = 16
# At most this many sequences in a window (or a packed batch): selection costs a few
# microseconds per sequence on the worker thread.
_WINDOW_SEQUENCES = 4096
# A padded model's request owed this share of what it needs (at most a turn) heads the
# next batch (see above). Lower, long requests submitted together force heads more often and
# pad more: 8 clients' real / padded tokens, 0.865 at a half, 0.881 at three quarters.
_OWED_TURNS = 0.75

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchStats:
    """One forward batch, as the worker reports it to batch listeners."""

    sequences: int
    tokens: int  # real tokens
    padded_tokens: int  # tokens the model computed: ``tokens`` for a packed model
    requests: int  # distinct requests with sequences in the batch
    seconds: float  # wall time of the forward and pooling (device work included)


class _Request:
    """A submitted request as the worker sees it. Fields change under the scheduler lock,
    except ``accumulator``, which only the worker touches while the request is in flight."""

    __slots__ = (
        "accumulator",
        "arrival",
        "counts",
        "cursor",
        "finalize",
        "future",
        "in_flight",
        "jobs",
        "on_progress",
        "order",
        "owed",
        "reduction",
        "tag",
        "unfinished",
        "waiting_tokens",
    )

    def __init__(
        self,
        jobs: list[SequenceJob],
        counts: np.ndarray,
        reduction: Reduction,
        finalize: Callable[[np.ndarray], Any] | None,
        on_progress: Callable[[int], None] | None,
        future: Future[Any],
        tokens: int,
    ) -> None:
        self.jobs = jobs
        self.counts = counts
        self.reduction = reduction
        self.finalize = finalize
        self.on_progress = on_progress
        self.future = future
        # Waiting job indices, longest first; -1 once taken into a batch.
        self.order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i].ids))
        self.cursor = 0
        self.waiting_tokens = tokens
        self.unfinished = len(jobs)  # jobs not computed yet
        self.in_flight = 0  # jobs taken into a batch (running or to retry), not computed
        self.tag = 0
        self.arrival = 0
        self.owed = 0.0  # padded models: batch turns owed (entitled minus received)
        self.accumulator: torch.Tensor | None = None

    def next_waiting(self, position: int) -> int:
        """First position >= ``position`` in ``order`` that is still waiting (or the end)."""
        order = self.order
        while position < len(order) and order[position] < 0:
            position += 1
        return position

    def release(self) -> None:
        """Free what a finished request holds, once none of its sequences is in flight
        (its future, and so this object, may outlive it for a long time)."""
        if self.in_flight or not self.future.done():
            return
        self.jobs = []
        self.order = []
        self.finalize = None
        self.on_progress = None
        self.accumulator = None


_Item = tuple[_Request, int]  # (request, job index)
_IDLE, _RAN, _STOP = 0, 1, 2


class EmbeddingScheduler:
    """Runs the sequences of every caller of one model in shared token-budget batches.

    Thread-safe. ``submit`` never blocks on model work; one daemon worker thread, started
    on the first submit, runs the batches under ``torch.inference_mode()``.
    """

    def __init__(
        self,
        model: TokenEncoder,
        *,
        max_batch_tokens: int,
        max_queued_tokens: int | None = None,
    ) -> None:
        if max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be at least 1, got {max_batch_tokens}")
        self._model = model
        self._packed = bool(getattr(model, "packed", False))
        self._budget = int(max_batch_tokens)
        #: Refuse a submit (``QueueFullError``) when the queue already holds tokens and
        #: this many would be passed; None: no limit.
        self.max_queued_tokens = max_queued_tokens
        self._lock = threading.Lock()
        self._signal = _Signal()
        self._active: dict[_Request, None] = {}  # requests with waiting jobs, by arrival
        self._retry: deque[list[_Item]] = deque()  # batches to rerun after out-of-memory
        self._queued_tokens = 0
        self._queued_requests = 0
        self._vtime = 0
        self._arrivals = itertools.count()
        self._listeners: list[Callable[[BatchStats], None]] = []
        self._closed = False
        self._worker: threading.Thread | None = None
        _LIVE.add(self)
        weakref.finalize(self, self._signal.stop)

    # ---------------------------------------------------------------- observation
    @property
    def packed(self) -> bool:
        """True when the model runs sequences without padding (budget: sum of lengths)."""
        return self._packed

    @property
    def max_batch_tokens(self) -> int:
        """Current token budget of one forward batch (halved after an out-of-memory)."""
        return self._budget

    @property
    def queued_tokens(self) -> int:
        """Tokens of accepted requests that are not computed yet (running batch included)."""
        return self._queued_tokens

    @property
    def queued_requests(self) -> int:
        """Accepted requests that have not finished."""
        return self._queued_requests

    def add_batch_listener(self, listener: Callable[[BatchStats], None]) -> None:
        """Call ``listener`` on the worker thread after each forward batch, before the
        batch's results are delivered."""
        with self._lock:
            self._listeners = [*self._listeners, listener]

    def remove_batch_listener(self, listener: Callable[[BatchStats], None]) -> None:
        with self._lock:
            self._listeners = [f for f in self._listeners if f is not listener]

    # ------------------------------------------------------------------- submit
    @overload
    def submit(
        self,
        jobs: Sequence[SequenceJob],
        rows: int,
        *,
        reduction: Reduction = "mean",
        finalize: None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> PendingEmbeddings[np.ndarray]: ...

    @overload
    def submit(
        self,
        jobs: Sequence[SequenceJob],
        rows: int,
        *,
        reduction: Reduction = "mean",
        finalize: Callable[[np.ndarray], T],
        on_progress: Callable[[int], None] | None = None,
    ) -> PendingEmbeddings[T]: ...

    def submit(
        self,
        jobs: Sequence[SequenceJob],
        rows: int,
        *,
        reduction: Reduction = "mean",
        finalize: Callable[[np.ndarray], Any] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> PendingEmbeddings[Any]:
        """Queue ``jobs``, whose pools fill ``rows`` output rows; returns at once.

        The result is a float32 (rows, hidden) array: per row, the mean ("mean") or the
        elementwise maximum ("max") of the token states pooled into it (zeros for a row
        that pools nothing), passed through ``finalize`` on the worker thread if given.
        ``on_progress(tokens)`` is called on the worker thread after each batch that held
        some of the request's sequences, with the number of its tokens that batch computed.
        """
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if on_progress is not None and not callable(on_progress):
            raise TypeError("on_progress must be callable or None")
        counts = _row_counts(jobs, rows)
        job_list = [job for job in jobs if job.pools]  # a job that pools nothing need not run
        tokens = sum(len(job.ids) for job in job_list)
        future: Future[Any] = Future()
        pending: PendingEmbeddings[Any] = PendingEmbeddings(future, tokens, self._signal)
        if not job_list:
            if self._closed:
                raise SchedulerClosedError("the scheduler is closed")
            empty = np.zeros((rows, self._model.hidden_size), dtype=np.float32)
            try:
                future.set_result(finalize(empty) if finalize is not None else empty)
            except Exception as error:
                future.set_exception(error)
            return pending
        request = _Request(job_list, counts, reduction, finalize, on_progress, future, tokens)
        with self._lock:
            if self._closed:
                raise SchedulerClosedError("the scheduler is closed")
            limit = self.max_queued_tokens
            if limit is not None and self._queued_tokens and self._queued_tokens + tokens > limit:
                raise QueueFullError(self._queued_tokens, tokens, limit)
            request.tag = self._vtime
            request.arrival = next(self._arrivals)
            self._active[request] = None
            self._queued_tokens += tokens
            self._queued_requests += 1
            if self._worker is None:
                self._start_worker()
        future.add_done_callback(partial(_forget, weakref.ref(self), request))
        self._signal.event.set()
        return pending

    # ------------------------------------------------------------------ shutdown
    def close(self, *, cancel_pending: bool = False, timeout: float | None = None) -> None:
        """Accept no more work; finish what was accepted (or cancel it), then stop the worker.

        Waits up to ``timeout`` seconds for the worker to stop (None: until it has).
        """
        with self._lock:
            self._closed = True
            doomed: list[_Request] = []
            if cancel_pending:
                doomed = list(self._active)
                doomed += [request for batch in self._retry for request, _ in batch]
            worker = self._worker
        for request in doomed:
            request.future.cancel()
        self._signal.event.set()
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------- worker
    def _start_worker(self) -> None:
        signal = self._signal
        signal.stopped = False
        self._worker = threading.Thread(
            target=_work, args=(weakref.ref(self), signal), name="embedder-scheduler", daemon=True
        )
        self._worker.start()

    def _forget(self, request: _Request) -> None:
        """Done callback: a finished, failed or cancelled request leaves the queue."""
        with self._lock:
            self._active.pop(request, None)
            self._queued_tokens -= request.waiting_tokens
            request.waiting_tokens = 0
            self._queued_requests -= 1
            request.release()

    def _step(self) -> int:
        """Run one batch if there is work: _RAN, _IDLE, or _STOP once closed and drained."""
        with self._lock:
            batch = self._next_batch()
            if batch is None:
                return _STOP if self._closed else _IDLE
        self._run(batch)
        return _RAN

    def _next_batch(self) -> list[_Item] | None:
        while self._retry:
            batch = self._retry.popleft()
            live = [item for item in batch if not item[0].future.done()]
            self._settle_dropped([item for item in batch if item[0].future.done()])
            if live:
                return live
        if not self._active:
            return None
        return self._select()

    def _select(self) -> list[_Item] | None:
        """Take the next batch in fair order (see the module docstring)."""
        heap = []
        for request in list(self._active):
            if request.future.done():  # its done callback is about to run
                continue
            heap.append((request.tag, request.waiting_tokens, request.arrival, request))
        if not heap:
            return None
        heapq.heapify(heap)
        self._vtime = max(self._vtime, heap[0][0])
        budget = self._budget
        limit = budget if self._packed else budget * _WINDOW_BATCHES
        cursors: dict[_Request, int] = {}
        taken: list[tuple[_Request, int]] = []  # (request, position in its order)
        lengths: list[int] = []
        total = 0
        entitled = [entry[3] for entry in heap]  # every waiting request
        owed: _Request | None = None
        if not self._packed:
            # Owed relative to need (0 to 1): a query passed over once is owed all it needs.
            def urgency(request: _Request) -> float:
                return request.owed / min(max(request.waiting_tokens / budget, 1e-9), 1.0)

            most = max(heap, key=lambda entry: (urgency(entry[3]), [-key for key in entry[:3]]))
            if most is not heap[0] and urgency(most[3]) >= _OWED_TURNS - 1e-9:
                owed = most[3]
        while heap and len(taken) < _WINDOW_SEQUENCES:
            tag, waiting, arrival, request = heap[0]
            position = cursors.get(request, request.cursor)
            length = len(request.jobs[request.order[position]].ids)
            if taken and total + length > limit:
                if not self._packed:
                    break
                heapq.heappop(heap)  # its next sequence does not fit; others' may
                continue
            taken.append((request, position))
            lengths.append(length)
            total += length
            position = request.next_waiting(position + 1)
            if position < len(request.order):
                cursors[request] = position
                heapq.heapreplace(heap, (tag + length, waiting - length, arrival, request))
            else:
                heapq.heappop(heap)
        if not self._packed:
            head = 0
            if owed is not None:  # its next sequence heads: in the window, or added to it
                head = next((i for i, (r, _) in enumerate(taken) if r is owed), len(taken))
                if head == len(taken):
                    taken.append((owed, owed.cursor))
                    lengths.append(len(owed.jobs[owed.order[owed.cursor]].ids))
            if len(taken) > 1:
                taken = [taken[i] for i in padded_batch_with(lengths, head, budget)]
            demands = [request.waiting_tokens / budget for request in entitled]  # in turns
            for request, share in zip(entitled, _water_fill(demands), strict=True):
                request.owed += share
            for request, _ in taken:  # each sequence costs the same share of a padded batch
                request.owed -= 1 / len(taken)
            for request, demand in zip(entitled, demands, strict=True):
                request.owed = min(max(request.owed, 0.0), demand, 1.0)
        batch = []
        for request, position in taken:
            job = request.order[position]
            request.order[position] = -1
            length = len(request.jobs[job].ids)
            request.waiting_tokens -= length
            request.tag += length
            request.in_flight += 1
            batch.append((request, job))
        for request, _ in taken:
            request.cursor = request.next_waiting(request.cursor)
            if request.cursor >= len(request.order):
                self._active.pop(request, None)
        return batch

    def _settle_dropped(self, items: list[_Item]) -> None:
        """Account for taken sequences of finished requests that will not run (lock held)."""
        for request, job in items:
            self._queued_tokens -= len(request.jobs[job].ids)
            request.in_flight -= 1
            request.release()

    def _run(self, batch: list[_Item]) -> None:
        if any(request.future.done() for request, _ in batch):  # cancelled since taken
            with self._lock:
                self._settle_dropped([item for item in batch if item[0].future.done()])
            batch = [item for item in batch if not item[0].future.done()]
            if not batch:
                return
        lengths = [len(request.jobs[job].ids) for request, job in batch]
        tokens = sum(lengths)
        start = time.perf_counter()
        out_of_memory = False
        try:
            pooled = self._forward(batch)
        except torch.cuda.OutOfMemoryError as error:
            if len(batch) == 1:
                self._fail(batch, error, tokens)
                return
            out_of_memory = True
        except Exception as error:
            self._fail(batch, error, tokens)
            return
        if out_of_memory:
            # Out of the except block: its traceback no longer holds the failed batch's tensors.
            self._retry_smaller(batch, lengths)
            return
        try:  # accumulators change from here on: no retry
            _accumulate(*pooled)
        except Exception as error:
            self._fail(batch, error, tokens)
            return
        del pooled
        if self._model.device.type == "cuda":
            torch.cuda.synchronize(self._model.device)
        stats = BatchStats(
            sequences=len(batch),
            tokens=tokens,
            padded_tokens=batch_cost(lengths, packed=self._packed),
            requests=len({id(request) for request, _ in batch}),
            seconds=time.perf_counter() - start,
        )
        for listener in self._listeners:  # before the results: metrics never lag a response
            try:
                listener(stats)
            except Exception:
                _log.exception("batch listener %r failed", listener)
        self._deliver(batch, lengths, tokens)

    def _forward(
        self, batch: list[_Item]
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[_Request, int, int]]]:
        """Run one batch; the pooled token states (float32), their target rows, and each
        request's slice of them. Allocates the accumulators that are still missing."""
        groups: dict[_Request, list[int]] = {}
        for request, job in batch:
            groups.setdefault(request, []).append(job)
        ids: list[int] = []
        seq_lens: list[int] = []
        task_ids: list[int] = []
        pool_starts: list[int] = []
        pool_lens: list[int] = []
        pool_rows: list[int] = []
        bounds: list[tuple[_Request, int, int]] = []  # (request, first, end) in pooled tokens
        pooled = 0
        for request, job_indices in groups.items():
            first = pooled
            for job_index in job_indices:
                job = request.jobs[job_index]
                offset = len(ids)
                ids += job.ids
                seq_lens.append(len(job.ids))
                task_ids.append(job.task)
                for row, start, end in job.pools:
                    pool_starts.append(offset + start)
                    pool_lens.append(end - start)
                    pool_rows.append(row)
                    pooled += end - start
            bounds.append((request, first, pooled))
        # Token positions and target rows of every pooled token, without a Python loop.
        counts = np.asarray(pool_lens, dtype=np.int64)
        starts = np.asarray(pool_starts, dtype=np.int64) - (np.cumsum(counts) - counts)
        positions = np.repeat(starts, counts) + np.arange(pooled)
        rows = np.repeat(np.asarray(pool_rows, dtype=np.int64), counts)
        index = torch.from_numpy(np.stack([positions, rows]))
        input_ids = torch.tensor(ids, dtype=torch.long)
        device = self._model.device
        if device.type == "cuda":
            input_ids, index = input_ids.pin_memory(), index.pin_memory()
        input_ids = input_ids.to(device, non_blocking=True)
        index = index.to(device, non_blocking=True)
        width = self._model.hidden_size
        for request in groups:
            if request.accumulator is None:
                fill = 0.0 if request.reduction == "mean" else float("-inf")
                shape = (len(request.counts), width)
                request.accumulator = torch.full(shape, fill, dtype=torch.float32, device=device)
        states = self._model.token_states(PackedBatch(input_ids, seq_lens, task_ids))
        if pooled == len(ids) and np.array_equal(positions, np.arange(pooled)):
            return states.float(), index[1], bounds  # every token, in order: no gather
        return states.index_select(0, index[0]).float(), index[1], bounds

    def _deliver(self, batch: list[_Item], lengths: list[int], tokens: int) -> None:
        progress: dict[_Request, int] = {}
        for (request, _), length in zip(batch, lengths):
            progress[request] = progress.get(request, 0) + length
        finished: list[_Request] = []
        with self._lock:
            self._queued_tokens -= tokens
            for request, _ in batch:
                request.in_flight -= 1
                request.unfinished -= 1
            for request in progress:
                if request.future.done():
                    request.release()
                elif not request.unfinished:
                    finished.append(request)
        for request, done_tokens in progress.items():
            callback = request.on_progress
            if callback is None or request.future.done():
                continue
            try:
                callback(done_tokens)
            except Exception as error:
                _log.exception("progress callback %r failed", callback)
                _set_exception(request, error)
        for request in finished:
            self._finish(request)

    def _finish(self, request: _Request) -> None:
        try:
            accumulator = request.accumulator
            if accumulator is None:  # cancelled meanwhile
                return
            pooled = accumulator.cpu().numpy()
            request.accumulator = None
            if request.reduction == "mean":
                pooled = (pooled / np.maximum(request.counts, 1)[:, None]).astype(np.float32)
            else:
                pooled[request.counts == 0] = 0.0
            finalize = request.finalize
            output = finalize(pooled) if finalize is not None else pooled
        except Exception as error:
            _set_exception(request, error)
            return
        if request.future.set_running_or_notify_cancel():
            request.future.set_result(output)

    def _fail(self, batch: list[_Item], error: BaseException, tokens: int) -> None:
        """An error in a forward fails exactly the requests with sequences in it."""
        with self._lock:
            self._queued_tokens -= tokens
            for request, _ in batch:
                request.in_flight -= 1
                request.unfinished -= 1
        for request in {id(r): r for r, _ in batch}.values():
            _set_exception(request, error)
            with self._lock:
                request.release()

    def _retry_smaller(self, batch: list[_Item], lengths: list[int]) -> None:
        """Out of memory: halve the budget for this and every later batch, and retry."""
        gc.collect()  # frames of the failed forward caught in reference cycles hold its tensors
        if self._model.device.type == "cuda":
            torch.cuda.empty_cache()
        with self._lock:
            cost = batch_cost(lengths, packed=self._packed)
            self._budget = max(min(self._budget, cost) // 2, 1)
            groups = plan_batches(lengths, self._budget, packed=self._packed)
            self._retry.extendleft([batch[i] for i in group] for group in reversed(groups))


def _water_fill(demands: Sequence[float], capacity: float = 1.0) -> list[float]:
    """Max-min fair shares of ``capacity``: equal, except that nobody gets more than its
    demand, and what the small demands leave goes to the others."""
    shares = [0.0] * len(demands)
    left = capacity
    order = sorted(range(len(demands)), key=demands.__getitem__)
    for rank, index in enumerate(order):
        shares[index] = min(demands[index], left / (len(order) - rank))
        left -= shares[index]
    return shares


def _accumulate(
    states: torch.Tensor, rows: torch.Tensor, bounds: list[tuple[_Request, int, int]]
) -> None:
    """Pool each request's slice of ``states`` into its rows (skips finished requests)."""
    for request, first, end in bounds:
        accumulator = request.accumulator
        if request.future.done() or accumulator is None:
            continue
        if request.reduction == "mean":
            accumulator.index_add_(0, rows[first:end], states[first:end])
        else:
            source = states[first:end]
            index = rows[first:end, None].expand_as(source)
            accumulator.scatter_reduce_(0, index, source, "amax")


def _forget(ref: weakref.ref[EmbeddingScheduler], request: _Request, _: Future[Any]) -> None:
    """Done callback. It holds its scheduler weakly: the future may outlive it."""
    scheduler = ref()
    if scheduler is not None:
        scheduler._forget(request)


def _set_exception(request: _Request, error: BaseException) -> None:
    if not request.future.done() and request.future.set_running_or_notify_cancel():
        request.future.set_exception(error)


def _row_counts(jobs: Sequence[SequenceJob], rows: int) -> np.ndarray:
    """Tokens pooled into each output row; checks every pool."""
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise ValueError(f"rows must be a non-negative int, got {rows!r}")
    counts = np.zeros(rows, dtype=np.float64)
    for i, job in enumerate(jobs):
        if not job.ids:
            raise ValueError(f"job {i} has no tokens")
        for row, start, end in job.pools:
            if not (0 <= row < rows and 0 <= start < end <= len(job.ids)):
                raise ValueError(
                    f"job {i}: pool (row {row}, tokens {start}:{end}) is outside "
                    f"{rows} rows x {len(job.ids)} tokens"
                )
            counts[row] += end - start
    return counts


def _work(ref: weakref.ref[EmbeddingScheduler], signal: _Signal) -> None:
    """The worker loop. It holds its scheduler only while running a batch, so a scheduler
    nobody references is collected and its worker exits."""
    signal.worker_ident = threading.get_ident()
    with torch.inference_mode():
        while True:
            signal.event.clear()
            scheduler = ref()
            if scheduler is None or signal.stopped:
                return
            try:
                state = scheduler._step()
            except Exception:  # a bug in the scheduler itself; keep serving the others
                _log.exception("embedding scheduler step failed")
                state = _RAN
            del scheduler
            if state == _STOP:
                return
            if state == _IDLE:
                signal.event.wait()


_LIVE: weakref.WeakSet[EmbeddingScheduler] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """At interpreter exit nobody waits for results: cancel, let the current batch end."""
    for scheduler in list(_LIVE):
        scheduler.close(cancel_pending=True, timeout=10.0)


def _after_fork_in_child() -> None:
    """A forked child has no worker thread and must not wait on the parent's locks."""
    for scheduler in list(_LIVE):
        scheduler._lock = threading.Lock()
        scheduler._signal.event = threading.Event()
        scheduler._signal.stopped = False
        scheduler._signal.worker_ident = None
        scheduler._worker = None
        scheduler._active.clear()
        scheduler._retry.clear()
        scheduler._queued_tokens = scheduler._queued_requests = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
