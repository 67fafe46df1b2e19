"""The ``Embedder`` facade: one loaded model, shared by every adapter of the suite.

Data flows one way: texts -> token ids -> sequence jobs (which positions pool into which
row) -> the model's scheduler (token-budget batches shared by every caller) -> pooled
float32 rows (mean or max) -> the model's post-pooling modules (Dense, Normalize) ->
dimensions/normalization -> output type.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from .chunking import Chunker, Span, check_spans, chunk_spans
from .devices import OnModelDevice, default_batch_tokens
from .errors import TokenLimitError, UnsupportedModelError, moved_name
from .late_chunking import LateChunkingOptions, Reduction, SequenceJob, document_jobs
from .model_info import ModelInfo
from .models.base import TokenEncoder
from .models.st_pipeline import POOLING_MODES, PoolingMode
from .output import (
    DocumentChunk,
    EmbeddingType,
    check_embedding_type,
    convert_checked,
    document_chunks,
    truncate_and_normalize,
)
from .scheduler import EmbeddingScheduler, PendingEmbeddings
from .tokenization import TextTokenizer, TokenOffsets

T = TypeVar("T")


@dataclass(frozen=True)
class TaskSpec:
    """What a task name selects: a LoRA adapter and the text put before every input."""

    adapter: int = -1  # index into the model's adapters; -1: the base weights
    instruction: str = ""


class Embedder(OnModelDevice):
    """Text embeddings from a jina-embeddings-v3 or -v2 checkpoint (native) or a
    sentence-transformers / transformers encoder (CLS, mean, max or last-token pooling,
    Dense, Normalize).

    Holds no per-caller settings: one instance is shared by every caller of
    :func:`~embedder_core.registry.get_embedder`; whatever changes a vector is an argument
    of the call.
    """

    def __init__(
        self,
        model: TokenEncoder,
        tokenizer: TextTokenizer,
        *,
        model_name: str,
        max_tokens: int,
        tasks: Mapping[str, TaskSpec],
        has_adapters: bool,
        pooling: PoolingMode = "mean",
        include_prompt: bool = True,
        post_pooling: Sequence[torch.nn.Module] = (),
        default_task: TaskSpec = TaskSpec(),
        max_batch_tokens: int | None = None,
        truncatable: bool = True,
        task_note: str = "",
    ) -> None:
        if max_tokens <= tokenizer.special_count:
            raise ValueError(f"max_tokens {max_tokens} leaves no room for text")
        if pooling not in POOLING_MODES:
            raise ValueError(f"pooling must be one of {', '.join(POOLING_MODES)}, got {pooling!r}")
        self._model = model
        self._tokenizer = tokenizer
        self._tasks = dict(tasks)
        self._no_task = default_task
        self._pooling: PoolingMode = pooling
        self._include_prompt = include_prompt
        self._post_pooling = torch.nn.Sequential(*post_pooling).float().eval()
        self._prompt_tokens: dict[str, int] = {}
        # False: the model was not trained for truncated (Matryoshka) vectors, so only the
        # full width is valid; ``task_note`` explains, in an unknown-task error, what
        # tasks mean for this model.
        self._truncatable = truncatable
        self._task_note = task_note
        self._info: ModelInfo | None = None
        self.model_name = model_name
        self.max_tokens = max_tokens
        self.has_adapters = has_adapters
        with torch.inference_mode():
            probe = torch.zeros(1, model.hidden_size, dtype=torch.float32)
            self._dimension = int(self._post_pooling(probe).shape[1])
        budget = max_batch_tokens or default_batch_tokens(model.device)
        self._scheduler = EmbeddingScheduler(model, max_batch_tokens=max(int(budget), 1))

    @classmethod
    def from_pretrained(
        cls,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        max_batch_tokens: int | None = None,
        local_files_only: bool = False,
        revision: str | None = None,
        quantization: str | None = None,
    ) -> Embedder:
        """Load ``model``: a local directory or a Hub id (default: ``$JINA_CONNECTORS_MODEL``,
        else ``jinaai/jina-embeddings-v3``; the hosted name ``jina-embeddings-v3`` is that Hub
        id). ``model_name`` becomes :func:`canonical_model_id`'s answer. No code from the
        checkpoint is ever executed.

        ``quantization="int8"`` (CPU): Linear layers run with int8 weights and per-token
        int8 activations; LoRA adapters, attention and norms stay float32. Where int8 would
        not be faster (CUDA, CPUs without AVX2) it warns and runs unquantized."""
        from .build import load_embedder  # the assembly imports every model family

        return load_embedder(
            cls,
            model,
            device=device,
            dtype=dtype,
            max_batch_tokens=max_batch_tokens,
            local_files_only=local_files_only,
            revision=revision,
            quantization=quantization,
        )

    # ----------------------------------------------------------------- introspection
    @property
    def dimension(self) -> int:
        """Full width of the embeddings (after the model's Dense modules, if any)."""
        return self._dimension

    @property
    def quantization(self) -> str | None:
        """The quantization in effect: "int8" (Linear layers in int8) or None."""
        return "int8" if getattr(self._model, "quantized", False) else None

    @property
    def pooling(self) -> PoolingMode:
        """How a sequence becomes one vector: "mean", "max", "cls" or "lasttoken"."""
        return self._pooling

    @property
    def reduction(self) -> Reduction:
        """How the batch runner combines the positions pooled into one row: "max" for max
        pooling, else "mean" (CLS and last-token pooling pool a single position)."""
        return "max" if self._pooling == "max" else "mean"

    @property
    def supports_late_chunking(self) -> bool:
        """Late chunking pools each chunk over its own tokens, by mean or max. A model that
        pools one token (CLS, last token) has no such vector per chunk, so it refuses."""
        return self._pooling in ("mean", "max")

    @property
    def tasks(self) -> tuple[str, ...]:
        """Valid task names (for jina-embeddings-v3: its LoRA adapters)."""
        return tuple(self._tasks)

    @property
    def max_batch_tokens(self) -> int:
        """Current token budget of one forward batch (halved after an out-of-memory)."""
        return self._scheduler.max_batch_tokens

    @property
    def scheduler(self) -> EmbeddingScheduler:
        """The scheduler that batches every caller's work for this model (queue metrics,
        batch listeners, ``max_queued_tokens``, ``close``)."""
        return self._scheduler

    def instruction(self, task: str | None) -> str:
        """The text prepended to inputs of ``task``."""
        return self._task(task).instruction

    @property
    def info(self) -> ModelInfo:
        """This model's description, as ``inspect_model`` and ``RemoteEmbedder.info`` give it
        (made once: it also checks every call's ``dimensions``)."""
        if self._info is None:
            self._info = ModelInfo(
                model_name=self.model_name,
                dimension=self.dimension,
                max_tokens=self.max_tokens,
                tasks=self.tasks,
                pooling=self.pooling,
                has_adapters=self.has_adapters,
                instructions={task: self.instruction(task) for task in self.tasks},
                default_instruction=self.instruction(None),
                matryoshka=self._truncatable,
            )
        return self._info

    def count_tokens(self, texts: str | Sequence[str], task: str | None = None) -> list[int]:
        """Tokens each text takes, special tokens and task instruction included, untruncated."""
        items = _check_texts(texts)
        tasks = self._resolve_tasks(task, len(items))
        counts = self._tokenizer.count([t.instruction + text for t, text in zip(tasks, items)])
        return [count + self._tokenizer.special_count for count in counts]

    # ----------------------------------------------------------------------- encode
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        task: str | Sequence[str | None] | None = None,
        dimensions: int | None = None,
        late_chunking: bool = False,
        late_chunking_options: LateChunkingOptions | None = None,
        normalized: bool = True,
        embedding_type: EmbeddingType = "float",
        truncate: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray:
        """Embed ``texts``; one row per input, in input order.

        ``late_chunking=True`` treats the texts as consecutive pieces of one document:
        ``<s>``, the instruction, the pieces (each tokenized on its own), ``</s>`` are
        encoded together and each row pools its piece's token states (windowed past
        ``max_tokens`` as ``late_chunking_options`` says; they are ignored without late
        chunking). The rows are an ``np.ndarray`` of ``embedding_type`` (the deprecated
        ``"base64"`` warns and still gives ``list[str]`` for one release).
        Same as ``submit(...).result()``: concurrent callers share forward batches.
        """
        return self.submit(
            texts,
            task=task,
            dimensions=dimensions,
            late_chunking=late_chunking,
            late_chunking_options=late_chunking_options,
            normalized=normalized,
            embedding_type=embedding_type,
            truncate=truncate,
            show_progress=show_progress,
        ).result()

    def submit(
        self,
        texts: str | Sequence[str],
        *,
        task: str | Sequence[str | None] | None = None,
        dimensions: int | None = None,
        late_chunking: bool = False,
        late_chunking_options: LateChunkingOptions | None = None,
        normalized: bool = True,
        embedding_type: EmbeddingType = "float",
        truncate: bool = True,
        show_progress: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> PendingEmbeddings[np.ndarray]:
        """``encode`` without waiting: checks and tokenizes now, computes in the background.

        Bad input raises here, before anything is queued. The handle's ``result()`` is what
        ``encode`` returns; ``cancel()`` drops the work not yet computed. ``on_progress``
        is called on the scheduler's thread with the tokens each batch computed.
        """
        items = _check_texts(texts)
        tasks = self._resolve_tasks(task, len(items))
        width = self._check_dimensions(dimensions)
        check_embedding_type(embedding_type)
        options = _check_late_chunking_options(late_chunking_options)
        if late_chunking:
            self._check_late_chunking()
            jobs = self._piece_jobs(items, tasks, options)
        else:
            jobs = self._sequence_jobs(items, tasks, truncate)

        def finish(pooled: np.ndarray) -> np.ndarray:
            rows = truncate_and_normalize(pooled, width, normalized)
            return convert_checked(rows, embedding_type)

        return self._schedule(jobs, len(items), finish, show_progress, on_progress)

    def submit_token_ids(
        self,
        inputs: Sequence[Sequence[int]],
        *,
        task: str | None = None,
        dimensions: int | None = None,
        normalized: bool = True,
        embedding_type: EmbeddingType = "float",
        truncate: bool = True,
    ) -> PendingEmbeddings[np.ndarray]:
        """``submit`` for inputs given as token ids of this model's tokenizer (what OpenAI,
        TEI and vLLM accept): one row per id sequence, as the text they encode would give.

        The model's special tokens are added around each sequence unless it already starts
        and ends with them. A task whose instruction is text (a prompt) cannot be combined
        with ids; adapter tasks can. Ids outside the vocabulary, empty sequences and
        non-int items raise before anything is queued.
        """
        tasks = self._resolve_tasks(task, len(inputs))
        width = self._check_dimensions(dimensions)
        check_embedding_type(embedding_type)
        for spec in {t.instruction for t in tasks}:
            if spec:
                raise ValueError(
                    f"token ids cannot be combined with task {task!r}: its instruction is "
                    "text that would have to be tokenized with the input; send text instead"
                )
        vocabulary = self._tokenizer.vocab_size
        prefix, suffix = self._tokenizer.prefix_ids, self._tokenizer.suffix_ids
        contents: list[list[int]] = []
        for i, sequence in enumerate(inputs):
            ids = list(sequence)
            if not ids:
                raise ValueError(f"input {i} has no token ids")
            for j, token in enumerate(ids):
                if isinstance(token, bool) or not isinstance(token, int):
                    raise TypeError(f"input {i}: token {j} is {type(token).__name__}, not int")
                if not 0 <= token < vocabulary:
                    raise ValueError(
                        f"input {i}: token {j} is {token}, not an id of this model's "
                        f"tokenizer (0 to {vocabulary - 1})"
                    )
            wrapped = (
                len(ids) >= len(prefix) + len(suffix)
                and ids[: len(prefix)] == prefix
                and ids[len(ids) - len(suffix) :] == suffix
            )
            if wrapped and (prefix or suffix):
                ids = ids[len(prefix) : len(ids) - len(suffix)]
            contents.append(ids)
        jobs = self._jobs_of(
            contents, tasks, truncate, lambda i: len(contents[i]) + self._tokenizer.special_count
        )

        def finish(pooled: np.ndarray) -> np.ndarray:
            rows = truncate_and_normalize(pooled, width, normalized)
            return convert_checked(rows, embedding_type)

        return self._schedule(jobs, len(contents), finish, False, None)

    def embed_spans(
        self,
        documents: Sequence[tuple[str, Sequence[Span]]],
        *,
        task: str | None = "retrieval.passage",
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
        show_progress: bool = False,
    ) -> list[np.ndarray]:
        """Late-chunk each (document text, character spans) pair; float32 rows per span.

        Each document is tokenized and encoded once (in windows past ``max_tokens``, as
        ``late_chunking_options`` says); a span is pooled over the tokens whose characters
        overlap it, so overlapping spans never duplicate text.
        """
        return self.submit_spans(
            documents,
            task=task,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking_options=late_chunking_options,
            show_progress=show_progress,
        ).result()

    def submit_spans(
        self,
        documents: Sequence[tuple[str, Sequence[Span]]],
        *,
        task: str | None = "retrieval.passage",
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
        show_progress: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> PendingEmbeddings[list[np.ndarray]]:
        """``embed_spans`` without waiting (see ``submit``)."""
        texts = _check_texts([doc for doc, _ in documents])
        spans = [check_spans(text, doc_spans) for text, (_, doc_spans) in zip(texts, documents)]
        resolved = self._task(task)
        width = self._check_dimensions(dimensions)
        options = _check_late_chunking_options(late_chunking_options)
        self._check_late_chunking()
        encoded = self._tokenizer.encode_with_offsets(texts)
        return self._late_chunk(
            encoded, spans, resolved, width, normalized, options, show_progress, on_progress, _same
        )

    def chunk(
        self, texts: str | Sequence[str], *, chunker: Chunker = "sentences", chunk_size: int = 256
    ) -> list[list[Span]]:
        """Character spans of each text's chunks (sizes in this model's tokens)."""
        items = _check_texts(texts)
        encoded = self._tokenizer.encode_with_offsets(items)
        return [
            chunk_spans(text, offsets, chunker, chunk_size)
            for text, (_, offsets) in zip(items, encoded)
        ]

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        task: str | None = "retrieval.passage",
        chunker: Chunker = "sentences",
        chunk_size: int = 256,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
        show_progress: bool = False,
    ) -> list[list[DocumentChunk]]:
        """Split each document into chunks and late-chunk it; one list per document.

        Documents share forward batches but are never encoded together.
        """
        return self.submit_documents(
            texts,
            task=task,
            chunker=chunker,
            chunk_size=chunk_size,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking_options=late_chunking_options,
            show_progress=show_progress,
        ).result()

    def submit_documents(
        self,
        texts: Sequence[str],
        *,
        task: str | None = "retrieval.passage",
        chunker: Chunker = "sentences",
        chunk_size: int = 256,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
        show_progress: bool = False,
        on_progress: Callable[[int], None] | None = None,
    ) -> PendingEmbeddings[list[list[DocumentChunk]]]:
        """``embed_documents`` without waiting (see ``submit``)."""
        items = _check_texts(texts)
        resolved = self._task(task)
        width = self._check_dimensions(dimensions)
        options = _check_late_chunking_options(late_chunking_options)
        self._check_late_chunking()
        encoded = self._tokenizer.encode_with_offsets(items)
        spans = [
            chunk_spans(text, offsets, chunker, chunk_size)
            for text, (_, offsets) in zip(items, encoded)
        ]

        def chunks(vectors: list[np.ndarray]) -> list[list[DocumentChunk]]:
            return document_chunks(items, spans, vectors)

        return self._late_chunk(
            encoded, spans, resolved, width, normalized, options, show_progress, on_progress, chunks
        )

    def embed_document(
        self,
        text: str,
        *,
        task: str | None = "retrieval.passage",
        chunker: Chunker = "sentences",
        chunk_size: int = 256,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
    ) -> list[DocumentChunk]:
        """Split one document of any length into chunks and late-chunk it."""
        return self.embed_documents(
            [text],
            task=task,
            chunker=chunker,
            chunk_size=chunk_size,
            dimensions=dimensions,
            normalized=normalized,
            late_chunking_options=late_chunking_options,
        )[0]

    # ------------------------------------------------------------------ validation
    def _task(self, name: str | None) -> TaskSpec:
        if name is None:
            return self._no_task
        if not isinstance(name, str):
            raise TypeError(f"task must be a str or None, got {type(name).__name__}")
        try:
            return self._tasks[name]
        except KeyError:
            note = f". {self._task_note}" if self._task_note else ""
            raise ValueError(
                f"unknown task {name!r}; valid tasks: {', '.join(self._tasks)} (or None){note}"
            ) from None

    def _resolve_tasks(self, task: str | Sequence[str | None] | None, count: int) -> list[TaskSpec]:
        if task is None or isinstance(task, str):
            return [self._task(task)] * count
        return [self._task(name) for name in ModelInfo.check_tasks(task, count)]

    def _check_dimensions(self, dimensions: int | None) -> int:
        width = self.info.check_dimensions(dimensions)
        assert width is not None  # a loaded model always knows its width
        return width

    def _check_late_chunking(self) -> None:
        if not self.supports_late_chunking:
            raise UnsupportedModelError(
                f"late chunking pools each chunk over its own tokens, but {self.model_name} "
                f"pools one token per text ({self._pooling} pooling), so it has no vector per "
                "chunk; embed the chunks one by one (late_chunking=False) instead"
            )

    # -------------------------------------------------------------- job building
    def _head(self, task: TaskSpec) -> list[int]:
        instruction = self._tokenizer.encode([task.instruction])[0] if task.instruction else []
        return [*self._tokenizer.prefix_ids, *instruction]

    def _pool_start(self, task: TaskSpec) -> int:
        """First pooled position of a sequence: 0, or past the prompt when the model's
        pooling excludes it (sentence-transformers' include_prompt=False counts the prompt
        as tokenized alone, prefix specials included)."""
        if self._include_prompt or not task.instruction:
            return 0
        count = self._prompt_tokens.get(task.instruction)
        if count is None:
            count = len(self._head(task))
            self._prompt_tokens[task.instruction] = count
        return count

    def _sequence_jobs(
        self, texts: list[str], tasks: list[TaskSpec], truncate: bool
    ) -> list[SequenceJob]:
        full = [t.instruction + text for t, text in zip(tasks, texts)]
        room = self.max_tokens - self._tokenizer.special_count
        # One token past the room tells an input is too long; a long input is tokenized
        # only as far as that (its full count is computed, slice by slice, for the error).
        ids = self._tokenizer.encode(full, max_tokens=room + 1)

        def count(i: int) -> int:
            return self._tokenizer.count([full[i]])[0] + self._tokenizer.special_count

        return self._jobs_of(ids, tasks, truncate, count)

    def _jobs_of(
        self,
        ids: list[list[int]],
        tasks: list[TaskSpec],
        truncate: bool,
        count: Callable[[int], int],
    ) -> list[SequenceJob]:
        """One job per input from its content ids (no specials); ``count(i)``: the tokens
        of input ``i``, for the error when it is too long and not truncated."""
        room = self.max_tokens - self._tokenizer.special_count
        prefix, suffix = self._tokenizer.prefix_ids, self._tokenizer.suffix_ids
        jobs = []
        for i, (content, task) in enumerate(zip(ids, tasks)):
            if len(content) > room:
                if not truncate:
                    raise TokenLimitError(i, count(i), self.max_tokens)
                content = content[:room]
            sequence = [*prefix, *content, *suffix]
            start = self._pool_start(task)
            if start >= len(sequence):
                raise ValueError(
                    f"input {i}: the task prompt fills the whole token limit, leaving no "
                    "token to pool"
                )
            if self._pooling == "cls":  # the first pooled token, as sentence-transformers
                pool = (i, start, start + 1)
            elif self._pooling == "lasttoken":
                pool = (i, len(sequence) - 1, len(sequence))
            else:
                pool = (i, start, len(sequence))
            jobs.append(SequenceJob(sequence, task.adapter, (pool,)))
        return jobs

    def _piece_jobs(
        self, pieces: list[str], tasks: list[TaskSpec], options: LateChunkingOptions
    ) -> list[SequenceJob]:
        if any(t != tasks[0] for t in tasks):
            raise ValueError("late_chunking encodes one document: give one task for all pieces")
        if not pieces:
            return []
        ids = self._tokenizer.encode(pieces)
        spans: list[tuple[int, int]] = []
        content: list[int] = []
        for i, piece in enumerate(ids):
            if not piece:
                raise ValueError(f"piece {i} produces no tokens and cannot be pooled")
            spans.append((len(content), len(content) + len(piece)))
            content.extend(piece)
        return document_jobs(
            content,
            spans,
            first_row=0,
            head=self._head(tasks[0]),
            tail=self._tokenizer.suffix_ids,
            task=tasks[0].adapter,
            max_tokens=options.window_tokens(self.max_tokens),
            overlap=options.overlap,
        )

    def _late_chunk(
        self,
        encoded: list[tuple[list[int], TokenOffsets]],
        spans: list[list[Span]],
        task: TaskSpec,
        width: int,
        normalized: bool,
        options: LateChunkingOptions,
        show_progress: bool,
        on_progress: Callable[[int], None] | None,
        finish: Callable[[list[np.ndarray]], T],
    ) -> PendingEmbeddings[T]:
        head = self._head(task)
        jobs: list[SequenceJob] = []
        first_rows = [0]
        for doc, ((ids, offsets), doc_spans) in enumerate(zip(encoded, spans)):
            token_spans = []
            for j, span in enumerate(doc_spans):
                first, last = offsets.token_range(span)
                if first >= last:
                    raise ValueError(f"document {doc}: span {j} {span} covers no token")
                token_spans.append((first, last))
            jobs += document_jobs(
                ids,
                token_spans,
                first_row=first_rows[-1],
                head=head,
                tail=self._tokenizer.suffix_ids,
                task=task.adapter,
                max_tokens=options.window_tokens(self.max_tokens),
                overlap=options.overlap,
            )
            first_rows.append(first_rows[-1] + len(doc_spans))

        def split(pooled: np.ndarray) -> T:
            rows = truncate_and_normalize(pooled, width, normalized)
            return finish([rows[a:b] for a, b in pairwise(first_rows)])

        return self._schedule(jobs, first_rows[-1], split, show_progress, on_progress)

    # ------------------------------------------------------------------- running
    def _post_pool(self, pooled: np.ndarray) -> np.ndarray:
        """Pooled rows through the model's post-pooling modules (Dense, Normalize), float32."""
        if not len(self._post_pooling):
            return pooled
        with torch.inference_mode():
            out: np.ndarray = self._post_pooling(torch.from_numpy(pooled)).numpy()
        return out

    def _schedule(
        self,
        jobs: list[SequenceJob],
        rows: int,
        finish: Callable[[np.ndarray], T],
        show_progress: bool,
        on_progress: Callable[[int], None] | None,
    ) -> PendingEmbeddings[T]:
        """Queue the jobs on the model's scheduler; ``finish`` turns the pooled rows (after
        the post-pooling modules) into the output, on the scheduler's thread."""
        if on_progress is not None and not callable(on_progress):
            raise TypeError("on_progress must be callable or None")

        def post_and_finish(pooled: np.ndarray) -> T:
            return finish(self._post_pool(pooled))

        total = sum(len(job.ids) for job in jobs if job.pools)  # the scheduler runs only these
        if not show_progress or not total:  # no bar for nothing to run (an empty "0tok" bar)
            return self._scheduler.submit(
                jobs,
                rows,
                reduction=self.reduction,
                finalize=post_and_finish,
                on_progress=on_progress,
            )
        bar = tqdm(total=total, unit="tok", desc="embedding")

        def progress(tokens: int) -> None:
            bar.update(tokens)
            if on_progress is not None:
                on_progress(tokens)

        def finish_and_close(pooled: np.ndarray) -> T:
            bar.close()  # before the result is delivered, so the bar ends before encode does
            return post_and_finish(pooled)

        try:
            pending = self._scheduler.submit(
                jobs,
                rows,
                reduction=self.reduction,
                finalize=finish_and_close,
                on_progress=progress,
            )
        except BaseException:
            bar.close()
            raise
        pending.future.add_done_callback(lambda _: bar.close())  # failed or cancelled
        return pending


def _same(value: T) -> T:
    return value


def _check_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, (Sequence, np.ndarray)):
        raise TypeError(f"texts must be a str or a sequence of str, got {type(texts).__name__}")
    items = list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"input {i} is {type(text).__name__}, not str")
        if not text.strip():
            raise ValueError(f"input {i} is empty or whitespace-only")
    return items


def _check_late_chunking_options(options: LateChunkingOptions | None) -> LateChunkingOptions:
    if options is None:
        return LateChunkingOptions()
    if not isinstance(options, LateChunkingOptions):
        raise TypeError(
            "late_chunking_options must be an embedder_core.LateChunkingOptions or None, got "
            f"{type(options).__name__}"
        )
    return options


def __getattr__(name: str) -> Any:
    """``get_embedder`` moved to :mod:`embedder_core.registry`; the old path warns."""
    if name == "get_embedder":
        return moved_name(__name__, name, "embedder_core.registry")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
