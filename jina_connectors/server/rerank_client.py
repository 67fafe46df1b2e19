"""``RemoteReranker``: the :class:`embedder_core.Reranker` surface over ``POST /v1/rerank``
of a ``jina-connectors serve --reranker`` server, or of the hosted Jina API
(``RemoteReranker("https://api.jina.ai", api_key=..., model="jina-reranker-v3")``).

``embedder_core.get_reranker("http://host:port")`` returns one. Input is checked here
first, with the local rerankers' rules and errors; HTTP behaviour (API key, retries of
429/5xx with Retry-After, error mapping) is ``RemoteEmbedder``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import httpx
import numpy as np

from embedder_core.pending import PendingEmbeddings
from embedder_core.reranking import (
    Reranker,
    RerankResult,
    check_rerank_input,
    check_top_n,
)

from .client import RemoteEmbedder
from .wire import ServerError

__all__ = ["RemoteReranker"]


class RemoteReranker(Reranker):
    """A reranker whose model runs behind ``/v1/rerank``.

    Args are ``RemoteEmbedder``'s: ``base_url`` (a trailing ``/v1`` is accepted),
    ``api_key`` (None: ``$JINA_CONNECTORS_API_KEY``), ``model`` (the ``model`` field of
    every request; None lets the server use its reranker), ``timeout``, ``retries``,
    ``transport``.
    """

    kind = "remote"

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float = 300.0,
        retries: int = 5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = RemoteEmbedder(
            base_url,
            api_key=api_key,
            model=model,
            timeout=timeout,
            retries=retries,
            transport=transport,
        )
        self.base_url = self._http.base_url
        self.model = model
        self.model_name = model or self.base_url
        self._last_tokens = 0

    def __repr__(self) -> str:
        return f"RemoteReranker({self.base_url!r}, model={self.model!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RemoteReranker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _post(
        self, query: str, documents: list[str], top_n: int | None, return_documents: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "query": query,
            "documents": documents,
            "return_documents": return_documents,
        }
        if top_n is not None:
            body["top_n"] = top_n
        if self.model is not None:
            body["model"] = self.model
        answer: dict[str, Any] = self._http._request("POST", "/v1/rerank", body)
        if not isinstance(answer.get("results"), list):
            raise ServerError(
                f"{self.base_url}/v1/rerank answered without a results list", status=200
            )
        self._last_tokens = int((answer.get("usage") or {}).get("total_tokens") or 0)
        return answer

    def rerank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        top_n: int | None = None,
        return_documents: bool = True,
    ) -> list[RerankResult]:
        items = check_rerank_input(query, documents, top_n)
        answer = self._post(query, items, check_top_n(top_n), return_documents)
        results = []
        for entry in answer["results"]:
            index = int(entry["index"])
            text = None
            if return_documents:
                # Our server and the hosted API send {"text": ...}; take the local text
                # (the same string) so that nothing depends on the server echoing it.
                text = items[index]
            results.append(RerankResult(index, float(entry["relevance_score"]), text))
        return results

    def score(self, query: str, documents: Sequence[str]) -> np.ndarray:
        items = check_rerank_input(query, documents)
        answer = self._post(query, items, None, False)
        scores = np.full(len(items), np.nan, dtype=np.float32)
        for entry in answer["results"]:
            scores[int(entry["index"])] = float(entry["relevance_score"])
        if np.isnan(scores).any():
            raise ServerError(
                f"{self.base_url}/v1/rerank left out documents "
                f"{np.flatnonzero(np.isnan(scores)).tolist()[:10]}",
                status=200,
            )
        return scores

    def submit(self, query: str, documents: Sequence[str]) -> PendingEmbeddings[np.ndarray]:
        """Runs the request now (HTTP is the background); the handle is already done."""
        future: Future[np.ndarray] = Future()
        future.set_result(self.score(query, documents))
        return PendingEmbeddings(future, self._last_tokens)

    @property
    def max_queued_tokens(self) -> int | None:
        return None

    @max_queued_tokens.setter
    def max_queued_tokens(self, value: int | None) -> None:
        raise ValueError("a remote reranker's queue is the server's (serve --max-queued-tokens)")

    @property
    def queued_tokens(self) -> int:
        return 0
