"""pymilvus drop-ins on the local models: :class:`JinaEmbeddingFunction` for
``pymilvus.model.dense.JinaEmbeddingFunction`` and :class:`JinaRerankFunction` for
``pymilvus.model.reranker.JinaRerankFunction``. Neither imports pymilvus: they only take its
call signatures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from embedder_core import ModelInfo

from ..shared_models import DEFAULT_RERANKER, load_reranker
from ..sinks.records import PASSAGE_TASK, QUERY_TASK

if TYPE_CHECKING:
    from embedder_core import EmbedderProtocol

__all__ = ["JinaEmbeddingFunction", "JinaRerankFunction", "RerankResult"]


class JinaEmbeddingFunction:
    """A drop-in for ``pymilvus.model.dense.JinaEmbeddingFunction``, backed by the local model.

    ``JinaEmbeddingFunction(model_name="jina-embeddings-v3", api_key=None,
    task="retrieval.passage", dimensions=None, late_chunking=False)`` takes the hosted
    class's arguments, in its order; ``device`` and ``dtype`` choose where the local model
    runs. ``model_name``: a model id or directory (the hosted name ``"jina-embeddings-v3"`` is
    ``jinaai/jina-embeddings-v3``), a loaded ``Embedder``, or None for the default model.
    ``api_key`` is accepted and ignored: nothing is sent anywhere.

    ``encode_documents`` uses ``retrieval.passage``, ``encode_queries`` ``retrieval.query``,
    ``__call__`` the ``task`` given here; each returns one float32 vector per text.
    ``late_chunking=True`` makes ``encode_documents`` and ``__call__`` treat the texts of one
    call as consecutive pieces of one document, as the hosted API does; unlike the hosted
    class, ``encode_queries`` never joins queries.
    """

    def __init__(
        self,
        model_name: str | EmbedderProtocol | None = None,
        api_key: str | None = None,
        task: str = PASSAGE_TASK,
        dimensions: int | None = None,
        late_chunking: bool = False,
        *,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        from ..shared_models import load_embedder

        del api_key  # accepted for drop-in compatibility; never stored
        if model_name is None or isinstance(model_name, (str, os.PathLike)):
            model = None if model_name is None else os.fspath(model_name)
            self._embedder = load_embedder(model, device=device, dtype=dtype)
        elif device is not None or dtype is not None:
            raise ValueError("device and dtype apply to a model name, not to a loaded Embedder")
        else:
            self._embedder = model_name
        if task not in self._embedder.tasks:
            raise ValueError(f"unknown task {task!r}; expected one of {self._embedder.tasks}")
        if dimensions is not None:
            ModelInfo.of(self._embedder).check_dimensions(dimensions)
        self.model_name = self._embedder.model_name
        self.task = task
        self.dimensions = dimensions
        self.late_chunking = bool(late_chunking)

    @property
    def dim(self) -> int:
        return self.dimensions or self._embedder.dimension

    def _encode(self, texts: Sequence[str], task: str, late_chunking: bool) -> list[np.ndarray]:
        if isinstance(texts, str):
            raise TypeError("pass a list of strings, not a single string")
        if not texts:
            return []
        vectors = self._embedder.encode(
            list(texts), task=task, dimensions=self.dimensions, late_chunking=late_chunking
        )
        return list(np.asarray(vectors, dtype=np.float32))

    def encode_queries(self, queries: Sequence[str]) -> list[np.ndarray]:
        return self._encode(queries, QUERY_TASK, late_chunking=False)

    def encode_documents(self, documents: Sequence[str]) -> list[np.ndarray]:
        return self._encode(documents, PASSAGE_TASK, self.late_chunking)

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        return self._encode(texts, self.task, self.late_chunking)


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
            from embedder_core import get_reranker

            self._reranker = get_reranker(model_name, api_key=api_key)
        else:
            self._reranker = load_reranker(model_name, device=device, dtype=dtype)

    def __call__(self, query: str, documents: Sequence[str], top_k: int = 5) -> list[RerankResult]:
        """The ``top_k`` best documents for ``query``, highest score first."""
        results = self._reranker.rerank(query, documents, top_n=top_k)
        return [RerankResult(str(r.document), r.relevance_score, r.index) for r in results]
