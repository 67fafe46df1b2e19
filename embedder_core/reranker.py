"""Local rerankers: ``get_reranker(model)`` (in :mod:`embedder_core.registry`) -> a
:class:`Reranker` that scores documents against a query, with the released checkpoints'
published ``rerank`` semantics.

- jina-reranker-v2-base-multilingual (:class:`CrossEncoderReranker`): one forward per
  query-document pair ``<s> query </s></s> document </s>``; the score is the sigmoid of the
  logit. The query is cut at 512 tokens (its ``<s>``/``</s>`` included). A document longer
  than the window (``1024 - query tokens - 2``) is cut into windows of that length that
  overlap by 80 tokens, the last window being the document's final tokens; the document's
  score is its best window's. Pairs run packed, without padding, through the model's
  :class:`~embedder_core.scheduler.EmbeddingScheduler`: concurrent calls share forwards.
- jina-reranker-v3 (:class:`ListwiseReranker`): transformers' native Qwen3 backbone plus
  the projector, listwise. Documents (cut at 2048 tokens) go into blocks of up to 125 with
  the query (cut at 512) in the released prompt; the query vector is averaged over the
  blocks, weighted by each block's best ``(1 + cos) / 2``; scores are cosines (-1 to 1).
  Blocks run one at a time on the reranker's own worker thread (a block is already one
  long sequence; there is nothing to pack it with).

Both tokenize through the checkpoint's ``tokenizer.json`` as it is.

Input rules (checked before any work): the query must be a non-empty, non-blank ``str``
(``RerankInputError``); ``documents`` a non-empty sequence (``RerankInputError``) of
``str`` (``TypeError``); ``top_n`` None or an int >= 1 (``RerankInputError``). An empty
or blank document is valid: it is scored as an empty text (v2: the pair
``<s> query </s></s></s>``; v3: an empty passage), so it gets the model's score for "no
content", usually low, and never an error.

dtype: float32 on CPU by default, bfloat16 on CUDA. ``dtype="bfloat16"`` on a CPU without
native bf16 instructions (AVX512-BF16/AMX on x86, FEAT_BF16 on Arm) works but warns
(``SlowDtypeWarning``): emulated bf16 matmuls run far slower than float32. bf16 rounds
every layer, so scores move against float32 (within 0.05 on the generated test
checkpoints; ``benchmarks.gpu_check`` checks <= 0.02 and the same best document on CUDA).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .devices import (
    OnModelDevice,
    default_batch_tokens,
    pick_device,
    pick_dtype,
    warn_if_slow_dtype,
)
from .errors import (
    ModelNotFoundError,
    QueueFullError,
    RerankInputError,
    SchedulerClosedError,
    UnsupportedModelError,
    moved_name,
)
from .late_chunking import SequenceJob
from .loading import model_dir_of, read_config, read_json, resolve_model_ref
from .pending import PendingEmbeddings
from .reranking import (  # the torch-free surface, re-exported here
    Reranker,
    RerankResult,
    check_rerank_input,
    check_top_n,
    rank_results,
)
from .scheduler import EmbeddingScheduler
from .tokenization import TextTokenizer

__all__ = [
    "CrossEncoderReranker",
    "ListwiseReranker",
    "RerankResult",
    "Reranker",
    "check_rerank_input",
    "check_top_n",
    "rank_results",
]

# jina-reranker-v2's published rerank settings.
V2_MAX_QUERY_TOKENS = 512
V2_OVERLAP = 80
# jina-reranker-v3's published rerank settings.
V3_MAX_DOC_TOKENS = 2048
V3_MAX_QUERY_TOKENS = 512
V3_BLOCK_DOCUMENTS = 125
V3_SYSTEM_PROMPT = (
    "You are a search relevance expert who can determine a ranking of the passages based on "
    "how relevant they are to the query. If the query is a question, how relevant a passage "
    "is depends on how well it answers the question. If not, try to analyze the intent of "
    "the query and assess how well each passage satisfies the intent. If an instruction is "
    "provided, you should follow the instruction when determining the ranking."
)


# ------------------------------------------------------------------ jina-reranker-v2
class CrossEncoderReranker(OnModelDevice, Reranker):
    """jina-reranker-v2-base-multilingual on the native packed encoder (see module doc)."""

    kind = "jina-reranker-v2-base-multilingual"

    def __init__(
        self,
        model: Any,
        tokenizer: TextTokenizer,
        *,
        model_name: str,
        max_tokens: int,
        max_batch_tokens: int | None = None,
    ) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self.model_name = model_name
        self.max_tokens = max_tokens
        if max_tokens <= V2_MAX_QUERY_TOKENS + 2:
            # A cut query (512 tokens) must leave room for a document window.
            raise UnsupportedModelError(
                f"{model_name}: a limit of {max_tokens} tokens leaves no document window after "
                f"a {V2_MAX_QUERY_TOKENS}-token query; the released model has 1024"
            )
        budget = max_batch_tokens or default_batch_tokens(model.device)
        # Every window must fit a batch: at least the longest pair.
        self._scheduler = EmbeddingScheduler(model, max_batch_tokens=max(int(budget), max_tokens))

    @classmethod
    def from_dir(
        cls,
        model_dir: Path,
        config: dict[str, Any],
        *,
        model_name: str,
        device: torch.device,
        dtype: torch.dtype,
        max_batch_tokens: int | None = None,
    ) -> CrossEncoderReranker:
        from .models.xlmr_reranker import CrossEncoderConfig, CrossEncoderModel

        settings = CrossEncoderConfig.from_dict(config)
        if settings.num_labels != 1:
            raise UnsupportedModelError(
                f"{model_dir}: a classifier with {settings.num_labels} labels; a reranker has 1"
            )
        tokenizer = _tokenizer_json(model_dir)
        text_tokenizer = TextTokenizer(tokenizer, [settings.bos_token_id], [settings.eos_token_id])
        model = CrossEncoderModel.from_dir(model_dir, settings, device, dtype)
        max_tokens = min(settings.max_tokens, _declared_max_length(model_dir, settings.max_tokens))
        return cls(
            model,
            text_tokenizer,
            model_name=model_name,
            max_tokens=max_tokens,
            max_batch_tokens=max_batch_tokens,
        )

    @property
    def scheduler(self) -> EmbeddingScheduler:
        return self._scheduler

    @property
    def max_queued_tokens(self) -> int | None:
        return self._scheduler.max_queued_tokens

    @max_queued_tokens.setter
    def max_queued_tokens(self, value: int | None) -> None:
        self._scheduler.max_queued_tokens = value

    @property
    def queued_tokens(self) -> int:
        return self._scheduler.queued_tokens

    def close(self) -> None:
        self._scheduler.close()

    def pair_windows(self, query: str, documents: Sequence[str]) -> list[list[list[int]]]:
        """The token ids of every window of every document, as the model runs them."""
        bos, eos = self._tokenizer.prefix_ids, self._tokenizer.suffix_ids
        query_ids = self._tokenizer.encode([query])[0]
        query_ids = query_ids[: V2_MAX_QUERY_TOKENS - len(bos) - len(eos)]
        head = [*bos, *query_ids, *eos, *eos]
        # The released rule: window = limit - (query with its specials) - 2 (the </s> before the
        # document and the final one).
        window = self.max_tokens - (len(query_ids) + len(bos) + len(eos)) - 2
        out = []
        for ids in self._tokenizer.encode(list(documents)):
            out.append([[*head, *ids[start:end], *eos] for start, end in windows(len(ids), window)])
        return out

    def submit(self, query: str, documents: Sequence[str]) -> PendingEmbeddings[np.ndarray]:
        items = check_rerank_input(query, documents)
        jobs: list[SequenceJob] = []
        first_rows = [0]
        for document_windows in self.pair_windows(query, items):
            for ids in document_windows:
                jobs.append(SequenceJob(ids, -1, ((len(jobs), 0, 1),)))
            first_rows.append(len(jobs))
        starts = np.asarray(first_rows[:-1])
        model = self._model

        def finish(first_token_states: np.ndarray) -> np.ndarray:
            logits = model.logits(torch.from_numpy(first_token_states))[:, 0]
            window_scores = torch.sigmoid(logits).cpu().numpy()
            return np.maximum.reduceat(window_scores, starts).astype(np.float32)

        return self._scheduler.submit(jobs, len(jobs), finalize=finish)


def windows(length: int, window: int, overlap: int = V2_OVERLAP) -> list[tuple[int, int]]:
    """[start, end) of the windows over ``length`` document tokens: one window when it fits,
    else windows of ``window`` tokens, each ``window - overlap`` after the previous, the last
    one being the final ``window`` tokens."""
    if window < 1:
        raise RerankInputError("the query leaves no room for the document")
    if length <= window:
        return [(0, length)]
    stride = max(window - overlap, 1)
    spans = [(start, start + window) for start in range(0, length - window, stride)]
    return [*spans, (length - window, length)]


# ------------------------------------------------------------------ jina-reranker-v3
class ListwiseReranker(OnModelDevice, Reranker):
    """jina-reranker-v3, listwise (see module doc)."""

    kind = "jina-reranker-v3"

    def __init__(self, model: Any, tokenizer: Any, *, model_name: str, max_length: int) -> None:
        from .models.qwen3_reranker import EMBED_TOKEN, RERANK_TOKEN

        self._model = model
        self._tokenizer = tokenizer
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.model_name = model_name
        self.max_length = max_length
        ids = [tokenizer.token_to_id(token) for token in (EMBED_TOKEN, RERANK_TOKEN)]
        if None in ids:
            raise UnsupportedModelError(
                f"{model_name}: tokenizer.json has no {EMBED_TOKEN} / {RERANK_TOKEN} token"
            )
        self.embed_token_id, self.rerank_token_id = int(ids[0]), int(ids[1])
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reranker-v3")
        self._lock = threading.Lock()
        self._queued = 0
        self._limit: int | None = None
        self._closed = False

    @classmethod
    def from_dir(
        cls,
        model_dir: Path,
        config: dict[str, Any],
        *,
        model_name: str,
        device: torch.device,
        dtype: torch.dtype,
    ) -> ListwiseReranker:
        from .models.qwen3_reranker import ListwiseConfig, ListwiseModel

        settings = ListwiseConfig.from_dict(config)
        tokenizer = _tokenizer_json(model_dir)
        model = ListwiseModel.from_dir(model_dir, settings, device, dtype)
        limit = settings.max_position_embeddings
        return cls(
            model,
            tokenizer,
            model_name=model_name,
            max_length=_declared_max_length(model_dir, limit),
        )

    @property
    def max_queued_tokens(self) -> int | None:
        return self._limit

    @max_queued_tokens.setter
    def max_queued_tokens(self, value: int | None) -> None:
        self._limit = value

    @property
    def queued_tokens(self) -> int:
        return self._queued

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=True)

    # --------------------------------------------------------------- the prompt
    def _count(self, text: str) -> int:
        return len(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def _truncate(self, text: str, limit: int) -> tuple[str, int]:
        """``text`` cut at ``limit`` tokens (tokenize, cut, decode) and its token count."""
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        if len(ids) <= limit:
            return text, len(ids)
        cut = self._tokenizer.decode(ids[:limit], skip_special_tokens=False)
        return cut, self._count(cut)

    @staticmethod
    def clean(text: str) -> str:
        """``text`` without the marker tokens' strings (they would add extra markers)."""
        from .models.qwen3_reranker import EMBED_TOKEN, RERANK_TOKEN

        return text.replace(EMBED_TOKEN, "").replace(RERANK_TOKEN, "")

    @staticmethod
    def prompt(query: str, documents: Sequence[str], instruction: str | None = None) -> str:
        """The released prompt of one block, for already cleaned and cut texts."""
        from .models.qwen3_reranker import EMBED_TOKEN, RERANK_TOKEN

        passages = "\n".join(
            f'<passage id="{i}">\n{document}{EMBED_TOKEN}\n</passage>'
            for i, document in enumerate(documents)
        )
        parts = [
            f"<|im_start|>system\n{V3_SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n",
            f"I will provide you with {len(documents)} passages, each indicated by a numerical "
            f"identifier. Rank the passages based on their relevance to query: {query}\n",
        ]
        if instruction:
            parts.append(f"<instruct>\n{instruction}\n</instruct>\n")
        parts += [
            passages,
            "\n",
            f"<query>\n{query}{RERANK_TOKEN}\n</query>",
            "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
        ]
        return "".join(parts)

    def blocks(self, query: str, documents: Sequence[str]) -> list[tuple[int, int, list[int]]]:
        """Each block as (first document, end, prompt token ids), in input order."""
        query_text, query_tokens = self._truncate(self.clean(query), V3_MAX_QUERY_TOKENS)
        texts, lengths = [], []
        for document in documents:
            text, count = self._truncate(self.clean(document), V3_MAX_DOC_TOKENS)
            texts.append(text)
            lengths.append(count)
        full = self.max_length - 2 * query_tokens
        bounds: list[tuple[int, int]] = []
        start, capacity = 0, full
        for i, length in enumerate(lengths):
            capacity -= length
            if i + 1 - start >= V3_BLOCK_DOCUMENTS or capacity <= V3_MAX_DOC_TOKENS:
                bounds.append((start, i + 1))
                start, capacity = i + 1, full
        if start < len(lengths):
            bounds.append((start, len(lengths)))
        out = []
        for first, end in bounds:
            prompt = self.prompt(query_text, texts[first:end])
            ids = self._tokenizer.encode(prompt, add_special_tokens=True).ids
            out.append((first, end, ids))
        return out

    def submit(self, query: str, documents: Sequence[str]) -> PendingEmbeddings[np.ndarray]:
        items = check_rerank_input(query, documents)
        blocks = self.blocks(query, items)
        marks = []
        for first, end, ids in blocks:
            embeds = [i for i, token in enumerate(ids) if token == self.embed_token_id]
            queries = [i for i, token in enumerate(ids) if token == self.rerank_token_id]
            if len(embeds) != end - first or len(queries) != 1:
                raise UnsupportedModelError(
                    f"{self.model_name}: the prompt has {len(embeds)} document and "
                    f"{len(queries)} query markers for {end - first} documents; the tokenizer "
                    "does not keep the marker tokens whole"
                )
            marks.append([*embeds, queries[0]])
        tokens = sum(len(ids) for _, _, ids in blocks)
        with self._lock:
            if self._closed:
                raise SchedulerClosedError("the reranker is closed")
            if self._limit is not None and self._queued and self._queued + tokens > self._limit:
                raise QueueFullError(self._queued, tokens, self._limit)
            self._queued += tokens
        future: Future[np.ndarray] = Future()

        def run() -> None:
            try:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    future.set_result(self._score_blocks(blocks, marks, len(items)))
                except BaseException as error:
                    future.set_exception(error)
            finally:
                with self._lock:
                    self._queued -= tokens

        self._executor.submit(run)
        return PendingEmbeddings(future, tokens)

    def _score_blocks(
        self, blocks: list[tuple[int, int, list[int]]], marks: list[list[int]], count: int
    ) -> np.ndarray:
        documents = torch.empty(count, 0)
        query_vectors, weights = [], []
        for (first, end, ids), positions in zip(blocks, marks):
            projected = self._model.project(ids, positions).cpu().double()
            if documents.shape[1] == 0:
                documents = torch.empty(count, projected.shape[1], dtype=torch.float64)
            documents[first:end] = projected[:-1]
            query = projected[-1]
            cosines = torch.nn.functional.cosine_similarity(projected[:-1], query[None, :])
            query_vectors.append(query)
            weights.append(float(((1 + cosines) / 2).max()))
        total = sum(weights)
        query = sum(w * q for w, q in zip(weights, query_vectors)) / total
        scores = torch.nn.functional.cosine_similarity(documents, query[None, :])
        return scores.numpy().astype(np.float32)


# ---------------------------------------------------------------------- loading
def _tokenizer_json(model_dir: Path) -> Any:
    from tokenizers import Tokenizer

    file = model_dir / "tokenizer.json"
    if not file.is_file():
        raise ModelNotFoundError(
            f"{model_dir} has no tokenizer.json; rerankers tokenize through it as released"
        )
    return Tokenizer.from_file(str(file))


def _declared_max_length(model_dir: Path, limit: int) -> int:
    """The tokenizer config's ``model_max_length`` (capped at ``limit``), else ``limit``."""
    file = model_dir / "tokenizer_config.json"
    declared = read_json(file).get("model_max_length") if file.is_file() else None
    if isinstance(declared, (int, float)) and math.isfinite(declared) and 0 < declared < limit:
        return int(declared)
    return limit


def load_reranker(
    model: str | os.PathLike[str],
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    max_batch_tokens: int | None = None,
    local_files_only: bool = False,
    revision: str | None = None,
) -> Reranker:
    """Load a reranker checkpoint (a new instance;
    :func:`~embedder_core.registry.get_reranker` shares them).

    ``model``: a local directory, a Hub id (``@revision`` or ``revision=``) or a hosted
    name (``jina-reranker-v2-base-multilingual``, ``jina-reranker-v3``). Weights come from
    safetensors only, no code from the checkpoint runs, and every tensor must be used.
    """
    from .models.qwen3_reranker import is_listwise_config
    from .models.xlmr_reranker import is_cross_encoder_config

    torch_device = pick_device(device)
    torch_dtype = pick_dtype(dtype, torch_device)
    if max_batch_tokens is not None and (
        isinstance(max_batch_tokens, bool) or int(max_batch_tokens) < 1
    ):
        raise ValueError(f"max_batch_tokens must be a positive int, got {max_batch_tokens!r}")
    ref = resolve_model_ref(model, revision)
    model_dir = model_dir_of(ref, local_files_only=local_files_only)
    config = read_config(model_dir)
    if is_cross_encoder_config(config):
        warn_if_slow_dtype(torch_device, torch_dtype)
        return CrossEncoderReranker.from_dir(
            model_dir,
            config,
            model_name=ref.canonical_id,
            device=torch_device,
            dtype=torch_dtype,
            max_batch_tokens=max_batch_tokens,
        )
    if is_listwise_config(config):
        warn_if_slow_dtype(torch_device, torch_dtype)
        return ListwiseReranker.from_dir(
            model_dir, config, model_name=ref.canonical_id, device=torch_device, dtype=torch_dtype
        )
    raise UnsupportedModelError(
        f"{model_dir} is not a reranker this suite runs (architectures "
        f"{config.get('architectures')!r}); supported: jina-reranker-v2-base-multilingual "
        "(XLMRobertaForSequenceClassification, flash layout) and jina-reranker-v3 "
        "(JinaForRanking). For an embedding model use get_embedder."
    )


def __getattr__(name: str) -> Any:
    """``get_reranker`` moved to :mod:`embedder_core.registry`; the old path warns."""
    if name == "get_reranker":
        return moved_name(__name__, name, "embedder_core.registry")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
