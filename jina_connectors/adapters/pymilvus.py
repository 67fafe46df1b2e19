"""Reranker adapters for the frameworks: a local (or served) jina-reranker-v2/v3 where each
stack calls the hosted Jina rerank API.

- LlamaIndex: :class:`JinaRerank`, a ``BaseNodePostprocessor`` with the parameters of
  ``llama_index.postprocessor.jinaai_rerank.JinaRerank`` (``top_n``, ``model``).
- Haystack: :class:`JinaRanker`, a ``@component`` with the parameters of
  ``haystack_integrations.components.rankers.jina.JinaRanker`` (``model``, ``top_k``,
  ``score_threshold``).
- pymilvus: :class:`JinaRerankFunction`, a drop-in for
  ``pymilvus.model.reranker.JinaRerankFunction`` (``__call__(query, documents, top_k)``).

Each framework is imported only by the class that needs it (``rerankers_llama_index``,
``rerankers_haystack``); the pymilvus one needs no framework at all. ``model`` is a
reranker folder, Hub id, hosted name or a server URL (``embedder_core.get_reranker``);
instances with the same model and options share one loaded reranker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from embedder_core import Reranker, get_reranker

__all__ = ["DEFAULT_RERANKER", "JinaRerankFunction", "RerankResult", "load_reranker"]

#: The reranker the adapters use when none is given.
DEFAULT_RERANKER = "jina-reranker-v3"


def load_reranker(
    model: str | None, *, device: str | None = None, dtype: str | None = None
) -> Reranker:
    """The shared reranker for ``model`` (None: ``DEFAULT_RERANKER``)."""
    return get_reranker(model or DEFAULT_RERANKER, device=device, dtype=dtype)


@dataclass(frozen=True)
class RerankResult:
    """pymilvus.model's rerank result: the document's ``text``, ``score`` and ``index``."""

    text: str
    score: float
    index: int


class JinaRerankFunction:
    """Drop-in for ``pymilvus.model.reranker.JinaRerankFunction`` on a local reranker.

    ``model_name`` as pymilvus names it (a hosted name, folder, Hub id or server URL);
    ``device``/``dtype`` as for ``get_reranker``. ``api_key`` is accepted for the same
    call signature and used only for a server URL.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_RERANKER,
        api_key: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        self.model_name = model_name
        if "://" in model_name:
            self._reranker = get_reranker(model_name, api_key=api_key)
        else:
            self._reranker = load_reranker(model_name, device=device, dtype=dtype)

    def __call__(self, query: str, documents: Sequence[str], top_k: int = 5) -> list[RerankResult]:
        """The ``top_k`` best documents for ``query``, highest score first."""
        results = self._reranker.rerank(query, documents, top_n=top_k)
        return [RerankResult(str(r.document), r.relevance_score, r.index) for r in results]
