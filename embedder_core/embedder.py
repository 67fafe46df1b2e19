"""The ``Embedder`` facade: one loaded model, shared by every adapter of the suite.

Data flows one way: texts -> token ids -> sequence jobs (with what to pool) ->
token-budget batches -> model -> pooled float32 sums -> dimensions/normalization ->
output type.
"""

from __future__ import annotations

import operator
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .batching import plan_batches
from .chunking import Chunker, Span, check_spans, chunk_spans
from .errors import TokenLimitError
from .late_chunking import SequenceJob, document_jobs
from .loading import default_model, read_config, resolve_model_dir
from .models.base import PackedBatch, TokenEncoder
from .models.hf_encoder import HFEncoder, hf_max_tokens, sentence_transformers_settings
from .models.jina_v3 import JinaV3Config, JinaV3Model, is_jina_v3_config
from .models.quantization import plan_quantization
from .output import check_embedding_type, convert_embeddings, truncate_and_normalize
from .tokenization import TextTokenizer, TokenOffsets

# The five jina-embeddings-v3 task names. Encoders without adapters accept them too, as
# prompt-only tasks, so that every adapter can always say which side of retrieval it is.
STANDARD_TASKS: tuple[str, ...] = (
    "retrieval.query",
    "retrieval.passage",
    "separation",
    "classification",
    "text-matching",
)
_PROMPT_ALIASES = {"retrieval.query": ("query",), "retrieval.passage": ("passage", "document")}

# Padded tokens per forward batch. CPU GEMMs saturate early; GPUs want large batches.
# Tokens per forward batch. CPU: small batches keep each layer's activations (2048 x 4096
# floats = 32 MiB for the FFN) near the caches and below glibc's mmap threshold, so
# elementwise ops do not page-fault fresh memory; GEMMs of 2048 rows already run at the
# ceiling (it is measured at 2048 rows). Measured: +12% on the full-size jina-v3 mixed
# workload, +44% on MiniLM, against 16384.
_DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 65536}


@dataclass(frozen=True)
class DocumentChunk:
    """A chunk of a document: ``text == document[start:end]``, and its embedding."""

    text: str
    start: int
    end: int
    embedding: np.ndarray


@dataclass(frozen=True)
class _Task:
    adapter: int  # index into the model's adapters, -1 for the base weights
    instruction: str


_NO_TASK = _Task(-1, "")


class Embedder:
    """Text embeddings from a jina-embeddings-v3 checkpoint or a mean-pooling encoder."""

    #: Tokens of left context every token keeps when a late-chunked document is longer
    #: than ``max_tokens`` and is encoded in overlapping windows.
    late_chunking_overlap: int = 512
    #: Largest window of a late-chunked document, in tokens (specials and instruction
    #: included); None means ``max_tokens``, the hosted API's semantics. Attention cost per
    #: token grows with the window, so a smaller window is faster and gives less context.
    late_chunking_window: int | None = None

    def __init__(
        self,
        model: TokenEncoder,
        tokenizer: TextTokenizer,
        *,
        model_name: str,
        max_tokens: int,
        tasks: dict[str, _Task],
        has_adapters: bool,
        pooling: str = "mean",
        max_batch_tokens: int | None = None,
    ) -> None:
        if max_tokens <= tokenizer.special_count:
            raise ValueError(f"max_tokens {max_tokens} leaves no room for text")
        self._model = model
        self._tokenizer = tokenizer
        self._tasks = tasks
        self._pooling = pooling
        self._lock = threading.Lock()
        self.model_name = model_name
        self.max_tokens = max_tokens
        self.has_adapters = has_adapters
        budget = max_batch_tokens or _DEFAULT_BATCH_TOKENS.get(model.device.type, 16384)
        self._batch_tokens = max(int(budget), 1)

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
        else ``jinaai/jina-embeddings-v3``). No code from the checkpoint is ever executed.

        ``quantization="int8"`` (CPU): Linear layers run with int8 weights and per-token
        int8 activations; LoRA adapters, attention and norms stay float32. Where int8 would
        not be faster (CUDA, CPUs without AVX2) it warns and runs unquantized."""
        name = str(model) if model is not None else default_model()
        torch_device = _pick_device(device)
        torch_dtype = _pick_dtype(dtype, torch_device)
        int8 = plan_quantization(quantization, torch_device, torch_dtype)
        model_dir = resolve_model_dir(name, revision=revision, local_files_only=local_files_only)
        config = read_config(model_dir)
        if is_jina_v3_config(config):
            jina = JinaV3Config.from_dict(config)
            tokenizer = TextTokenizer.from_dir(
                model_dir, bos_token_id=jina.bos_token_id, eos_token_id=jina.eos_token_id
            )
            encoder = JinaV3Model.from_dir(model_dir, jina, torch_device, torch_dtype)
            if int8 is not None:
                encoder.quantize_int8(reduce_range=int8.reduce_range)
            tasks = {
                name: _Task(i, jina.task_instructions.get(name) or "")
                for i, name in enumerate(jina.lora_adaptations)
            }
            return cls(
                encoder,
                tokenizer,
                model_name=name,
                max_tokens=jina.max_tokens,
                tasks=tasks,
                has_adapters=True,
                max_batch_tokens=max_batch_tokens,
            )
        settings = sentence_transformers_settings(model_dir)
        prompts: dict[str, str] = settings.get("prompts", {})
        tasks = {task: _Task(-1, _prompt_for(task, prompts)) for task in STANDARD_TASKS}
        tasks.update({task: _Task(-1, prompt) for task, prompt in prompts.items()})
        hf_encoder = HFEncoder.from_dir(model_dir, torch_device, torch_dtype)
        if int8 is not None:
            hf_encoder.quantize_int8(reduce_range=int8.reduce_range)
        return cls(
            hf_encoder,
            TextTokenizer.from_dir(model_dir),
            model_name=name,
            max_tokens=hf_max_tokens(model_dir, config, settings),
            tasks=tasks,
            has_adapters=False,
            pooling=settings.get("pooling", "mean"),
            max_batch_tokens=max_batch_tokens,
        )

    # ----------------------------------------------------------------- introspection
    @property
    def dimension(self) -> int:
        """Full width of the embeddings."""
        return self._model.hidden_size

    @property
    def tasks(self) -> tuple[str, ...]:
        """Valid task names (for jina-embeddings-v3: its LoRA adapters)."""
        return tuple(self._tasks)

    @property
    def device(self) -> torch.device:
        return self._model.device

    @property
    def dtype(self) -> torch.dtype:
        return self._model.dtype

    @property
    def quantization(self) -> str | None:
        """The quantization in effect: "int8" (Linear layers in int8) or None."""
        return "int8" if getattr(self._model, "quantized", False) else None

    @property
    def max_batch_tokens(self) -> int:
        """Current padded-token budget of one forward batch (halved after an out-of-memory)."""
        return self._batch_tokens

    def instruction(self, task: str | None) -> str:
        """The text prepended to inputs of ``task``."""
        return self._task(task).instruction

    def count_tokens(self, texts: str | Sequence[str], task: str | None = None) -> list[int]:
        """Tokens each text takes, special tokens and task instruction included, untruncated."""
        items = _check_texts(texts)
        tasks = self._resolve_tasks(task, len(items))
        ids = self._tokenizer.encode([t.instruction + text for t, text in zip(tasks, items)])
        return [len(i) + self._tokenizer.special_count for i in ids]

    # ----------------------------------------------------------------------- encode
    def encode(
        self,
        texts: str | Sequence[str],
        *,
        task: str | Sequence[str | None] | None = None,
        dimensions: int | None = None,
        late_chunking: bool = False,
        normalized: bool = True,
        embedding_type: str = "float",
        truncate: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray | list[str]:
        """Embed ``texts``; one row per input, in input order.

        ``late_chunking=True`` treats the texts as consecutive pieces of one document:
        ``<s>``, the instruction, the pieces (each tokenized on its own), ``</s>`` are
        encoded together and each row is the mean of its piece's token states.
        """
        items = _check_texts(texts)
        tasks = self._resolve_tasks(task, len(items))
        width = self._check_dimensions(dimensions)
        check_embedding_type(embedding_type)
        if late_chunking:
            jobs = self._piece_jobs(items, tasks)
        else:
            jobs = self._sequence_jobs(items, tasks, truncate)
        pooled = self._run(jobs, len(items), show_progress)
        return convert_embeddings(truncate_and_normalize(pooled, width, normalized), embedding_type)

    def embed_spans(
        self,
        documents: Sequence[tuple[str, Sequence[Span]]],
        *,
        task: str | None = "retrieval.passage",
        dimensions: int | None = None,
        normalized: bool = True,
        show_progress: bool = False,
    ) -> list[np.ndarray]:
        """Late-chunk each (document text, character spans) pair; float32 rows per span.

        Each document is tokenized and encoded once (in windows past ``max_tokens``);
        a span is pooled over the tokens whose characters overlap it, so overlapping
        spans never duplicate text.
        """
        texts = _check_texts([doc for doc, _ in documents])
        spans = [check_spans(text, doc_spans) for text, (_, doc_spans) in zip(texts, documents)]
        resolved = self._task(task)
        width = self._check_dimensions(dimensions)
        encoded = self._tokenizer.encode_with_offsets(texts)
        return self._late_chunk(encoded, spans, resolved, width, normalized, show_progress)

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
        show_progress: bool = False,
    ) -> list[list[DocumentChunk]]:
        """Split each document into chunks and late-chunk it; one list per document.

        Documents share forward batches but are never encoded together.
        """
        items = _check_texts(texts)
        resolved = self._task(task)
        width = self._check_dimensions(dimensions)
        encoded = self._tokenizer.encode_with_offsets(items)
        spans = [
            chunk_spans(text, offsets, chunker, chunk_size)
            for text, (_, offsets) in zip(items, encoded)
        ]
        vectors = self._late_chunk(encoded, spans, resolved, width, normalized, show_progress)
        return [
            [
                DocumentChunk(text[start:end], start, end, row)
                for (start, end), row in zip(doc_spans, rows)
            ]
            for text, doc_spans, rows in zip(items, spans, vectors)
        ]

    def embed_document(
        self,
        text: str,
        *,
        task: str | None = "retrieval.passage",
        chunker: Chunker = "sentences",
        chunk_size: int = 256,
        dimensions: int | None = None,
        normalized: bool = True,
    ) -> list[DocumentChunk]:
        """Split one document of any length into chunks and late-chunk it."""
        return self.embed_documents(
            [text],
            task=task,
            chunker=chunker,
            chunk_size=chunk_size,
            dimensions=dimensions,
            normalized=normalized,
        )[0]

    # ------------------------------------------------------------------ validation
    def _task(self, name: str | None) -> _Task:
        if name is None:
            return _NO_TASK
        if not isinstance(name, str):
            raise TypeError(f"task must be a str or None, got {type(name).__name__}")
        try:
            return self._tasks[name]
        except KeyError:
            raise ValueError(
                f"unknown task {name!r}; valid tasks: {', '.join(self._tasks)} (or None)"
            ) from None

    def _resolve_tasks(self, task: str | Sequence[str | None] | None, count: int) -> list[_Task]:
        if task is None or isinstance(task, str):
            return [self._task(task)] * count
        names = list(task)
        if len(names) != count:
            raise ValueError(f"got {len(names)} tasks for {count} texts; give one task per text")
        return [self._task(name) for name in names]

    def _check_dimensions(self, dimensions: int | None) -> int:
        if dimensions is None:
            return self.dimension
        if isinstance(dimensions, bool):
            raise ValueError(f"dimensions must be an int, got {dimensions!r}")
        try:
            value = operator.index(dimensions)
        except TypeError:
            raise ValueError(
                f"dimensions must be an int, got {type(dimensions).__name__}"
            ) from None
        if not 1 <= value <= self.dimension:
            raise ValueError(f"dimensions must be between 1 and {self.dimension}, got {value}")
        return value

    # -------------------------------------------------------------- job building
    def _head(self, task: _Task) -> list[int]:
        instruction = self._tokenizer.encode([task.instruction])[0] if task.instruction else []
        return [*self._tokenizer.prefix_ids, *instruction]

    def _window_tokens(self) -> int:
        return min(self.late_chunking_window or self.max_tokens, self.max_tokens)

    def _sequence_jobs(
        self, texts: list[str], tasks: list[_Task], truncate: bool
    ) -> list[SequenceJob]:
        ids = self._tokenizer.encode([t.instruction + text for t, text in zip(tasks, texts)])
        room = self.max_tokens - self._tokenizer.special_count
        prefix, suffix = self._tokenizer.prefix_ids, self._tokenizer.suffix_ids
        jobs = []
        for i, (content, task) in enumerate(zip(ids, tasks)):
            if len(content) > room:
                if not truncate:
                    count = len(content) + self._tokenizer.special_count
                    raise TokenLimitError(i, count, self.max_tokens)
                content = content[:room]
            sequence = [*prefix, *content, *suffix]
            end = 1 if self._pooling == "cls" else len(sequence)
            jobs.append(SequenceJob(sequence, task.adapter, ((i, 0, end),)))
        return jobs

    def _piece_jobs(self, pieces: list[str], tasks: list[_Task]) -> list[SequenceJob]:
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
            max_tokens=self._window_tokens(),
            overlap=self.late_chunking_overlap,
        )

    def _late_chunk(
        self,
        encoded: list[tuple[list[int], TokenOffsets]],
        spans: list[list[Span]],
        task: _Task,
        width: int,
        normalized: bool,
        show_progress: bool,
    ) -> list[np.ndarray]:
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
                max_tokens=self._window_tokens(),
                overlap=self.late_chunking_overlap,
            )
            first_rows.append(first_rows[-1] + len(doc_spans))
        pooled = truncate_and_normalize(
            self._run(jobs, first_rows[-1], show_progress), width, normalized
        )
        return [pooled[a:b] for a, b in pairwise(first_rows)]

    # ------------------------------------------------------------------- running
    @torch.inference_mode()
    def _run(self, jobs: list[SequenceJob], rows: int, show_progress: bool) -> np.ndarray:
        """Run the jobs in token-budget batches; mean of the pooled states per output row."""
        counts = np.zeros(rows, dtype=np.float64)
        for job in jobs:
            for row, start, end in job.pools:
                counts[row] += end - start
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        with self._lock:
            sums = torch.zeros(rows, self.dimension, dtype=torch.float32, device=self.device)
            queue = deque(plan_batches([len(j.ids) for j in jobs], self._batch_tokens))
            total = sum(len(j.ids) for j in jobs)
            with tqdm(total=total, disable=not show_progress, unit="tok", desc="embedding") as bar:
                while queue:
                    batch = [jobs[i] for i in queue.popleft()]
                    try:
                        self._forward(batch, sums)
                    except torch.cuda.OutOfMemoryError:
                        if len(batch) == 1:
                            raise
                        # Halve the budget, and re-plan this batch and every queued one
                        # under it (queued batches planned under the old budget would
                        # run out of memory again and halve it once more).
                        self._batch_tokens = max(self._batch_tokens // 2, 1)
                        if self.device.type == "cuda":
                            torch.cuda.empty_cache()
                        jobs_index = {id(j): i for i, j in enumerate(jobs)}
                        pending = [jobs_index[id(j)] for j in batch]
                        pending += [i for group in queue for i in group]
                        retry = plan_batches(
                            [len(jobs[i].ids) for i in pending], self._batch_tokens
                        )
                        queue = deque([pending[k] for k in group] for group in retry)
                        continue
                    bar.update(sum(len(j.ids) for j in batch))
            means = sums.cpu().numpy()
        return (means / np.maximum(counts, 1)[:, None]).astype(np.float32)

    def _forward(self, batch: list[SequenceJob], sums: torch.Tensor) -> None:
        ids = torch.tensor([t for job in batch for t in job.ids], dtype=torch.long)
        token_index: list[np.ndarray] = []
        row_index: list[np.ndarray] = []
        offset = 0
        for job in batch:
            for row, start, end in job.pools:
                token_index.append(np.arange(offset + start, offset + end))
                row_index.append(np.full(end - start, row))
            offset += len(job.ids)
        if not token_index:
            return
        tokens = torch.from_numpy(np.concatenate(token_index))
        targets = torch.from_numpy(np.concatenate(row_index))
        if self.device.type == "cuda":
            ids, tokens, targets = (t.pin_memory() for t in (ids, tokens, targets))
        ids = ids.to(self.device, non_blocking=True)
        states = self._model.token_states(
            PackedBatch(ids, [len(j.ids) for j in batch], [j.task for j in batch])
        )
        tokens = tokens.to(self.device, non_blocking=True)
        targets = targets.to(self.device, non_blocking=True)
        sums.index_add_(0, targets, states.index_select(0, tokens).float())


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


def _prompt_for(task: str, prompts: dict[str, str]) -> str:
    for name in (task, *_PROMPT_ALIASES.get(task, ())):
        if name in prompts:
            return prompts[name]
    return ""


def _pick_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def _pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device.type != "cuda":
            return torch.float32  # bf16 GEMMs are slower than fp32 on most CPUs
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    try:
        return _DTYPES[str(dtype).removeprefix("torch.")]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {', '.join(_DTYPES)}") from None


_CACHE: dict[tuple[str, tuple[tuple[str, str], ...]], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def get_embedder(model: str | os.PathLike[str] | None = None, **options: Any) -> Embedder:
    """The process-wide ``Embedder`` for (model, options): loaded once, then shared.

    ``model=None`` means ``$JINA_CONNECTORS_MODEL``, else ``jinaai/jina-embeddings-v3``.
    """
    name = str(Path(model).expanduser()) if model is not None else default_model()
    key = (name, tuple(sorted((k, str(v)) for k, v in options.items() if v is not None)))
    with _CACHE_LOCK:
        embedder = _CACHE.get(key)
        if embedder is None:
            embedder = Embedder.from_pretrained(name, **options)
            _CACHE[key] = embedder
        return embedder
