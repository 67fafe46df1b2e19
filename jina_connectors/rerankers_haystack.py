"""Haystack: :class:`JinaRanker`, a ranker component on a local (or served) reranker.

A drop-in for ``haystack_integrations.components.rankers.jina.JinaRanker`` (``model``,
``top_k``, ``score_threshold``; no API key needed): ``run(query, documents, top_k=None,
score_threshold=None)`` returns ``{"documents": [...]}``, best first, each a copy of the
input ``Document`` with ``score`` set to the reranker's score.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from haystack import Document, component, default_from_dict, default_to_dict
from haystack.core.serialization import allow_deserialization_module

from embedder_core import Reranker

from .rerankers import DEFAULT_RERANKER, load_reranker

__all__ = ["JinaRanker"]

# Safe to build from pipeline YAML: it only reads safetensors weights.
allow_deserialization_module(__name__)


@component
class JinaRanker:
    """Rank documents by relevance to a query with jina-reranker-v2/v3.

    Args:
        model: reranker folder, Hub id, hosted name or server URL.
        top_k: documents to return (None: all).
        score_threshold: drop documents scoring below it (None: keep all).
        device, dtype: as for ``embedder_core.get_reranker``.
    """

    def __init__(
        self,
        model: str = DEFAULT_RERANKER,
        top_k: int | None = None,
        score_threshold: float | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        _check_top_k(top_k)
        self.model = model
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.device = device
        self.dtype = dtype
        self._reranker: Reranker | None = None

    def warm_up(self) -> None:
        """Load the reranker (shared with every instance of the same model and options)."""
        if self._reranker is None:
            self._reranker = load_reranker(self.model, device=self.device, dtype=self.dtype)

    def to_dict(self) -> dict[str, Any]:
        return default_to_dict(
            self,
            model=self.model,
            top_k=self.top_k,
            score_threshold=self.score_threshold,
            device=self.device,
            dtype=self.dtype,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JinaRanker:
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """``documents`` sorted by the reranker's score for ``query`` (copies with
        ``score`` set), cut to ``top_k`` and to scores >= ``score_threshold``."""
        top_k = self.top_k if top_k is None else top_k
        _check_top_k(top_k)
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if not documents:
            return {"documents": []}
        self.warm_up()
        assert self._reranker is not None
        texts = [document.content or "" for document in documents]
        results = self._reranker.rerank(query, texts, top_n=top_k, return_documents=False)
        ranked = [replace(documents[r.index], score=r.relevance_score) for r in results]
        if threshold is not None:
            ranked = [document for document in ranked if (document.score or 0.0) >= threshold]
        return {"documents": ranked}


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")
