"""What every reranker is, local or remote, without torch: :class:`Reranker` (the surface
callers use), :class:`RerankResult`, and the input checks every implementation makes
before doing any work (see :mod:`embedder_core.reranker` for the rules and the local
models)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .checks import int_value
from .errors import RerankInputError
from .pending import PendingEmbeddings

__all__ = ["RerankResult", "Reranker", "check_rerank_input", "check_top_n", "rank_results"]


@dataclass(frozen=True)
class RerankResult:
    """One ranked document: its position in the input, its score and (optionally) text."""

    index: int
    relevance_score: float
    document: str | None = None


def check_rerank_input(query: object, documents: object, top_n: object = None) -> list[str]:
    """The documents as a list, after the checks every reranker (local or remote) makes
    before doing any work; see the module doc for the rules."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, got {type(query).__name__}")
    if not query.strip():
        raise RerankInputError("query is empty or whitespace-only")
    if isinstance(documents, (str, bytes, bytearray)) or not isinstance(
        documents, (Sequence, np.ndarray)
    ):
        raise TypeError(f"documents must be a sequence of str, got {type(documents).__name__}")
    items = list(documents)
    if not items:
        raise RerankInputError("documents is empty: give at least one document")
    for i, document in enumerate(items):
        if not isinstance(document, str):
            raise TypeError(f"document {i} is {type(document).__name__}, not str")
    check_top_n(top_n)
    return items


def check_top_n(top_n: object) -> int | None:
    if top_n is None:
        return None
    value = int_value(top_n, name="top_n", expected="an int >= 1 or None", error=RerankInputError)
    if value < 1:
        raise RerankInputError(f"top_n must be at least 1, got {value}")
    return value


def rank_results(
    scores: np.ndarray,
    documents: Sequence[str],
    top_n: int | None = None,
    return_documents: bool = True,
) -> list[RerankResult]:
    """Results sorted by score, highest first (ties: input order), cut to ``top_n``."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if top_n is not None:
        order = order[:top_n]
    return [
        RerankResult(int(i), float(scores[i]), documents[i] if return_documents else None)
        for i in order
    ]


class Reranker:
    """Scores documents against a query. Subclasses implement :meth:`submit`."""

    model_name: str
    #: "jina-reranker-v2-base-multilingual" or "jina-reranker-v3": which published
    #: semantics the scores follow (v2: sigmoid in [0, 1]; v3: cosine in [-1, 1]).
    kind: str

    def submit(self, query: str, documents: Sequence[str]) -> PendingEmbeddings[np.ndarray]:
        """Check and tokenize now, score in the background: the handle's ``result()`` is
        :meth:`score`'s array and its ``tokens`` the tokens the model runs."""
        raise NotImplementedError

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        """Relevance scores (float32), in input order."""
        return self.submit(query, documents).result()

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        return_documents: bool = True,
    ) -> list[RerankResult]:
        """The documents sorted by relevance to ``query``, highest first; the first
        ``top_n`` only when given. ``document`` is None when ``return_documents=False``."""
        items = check_rerank_input(query, documents, top_n)
        return rank_results(self.score(query, items), items, top_n, return_documents)

    @property
    def max_queued_tokens(self) -> int | None:
        """Refuse a submit (``QueueFullError``) past this many queued tokens; None: no limit."""
        raise NotImplementedError

    @max_queued_tokens.setter
    def max_queued_tokens(self, value: int | None) -> None:
        raise NotImplementedError

    @property
    def queued_tokens(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        """Accept no more work; finish what was accepted."""
