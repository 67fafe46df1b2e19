"""``POST /v1/rerank`` on the embedding server: the hosted Jina API's rerank shape over a
local reranker (``jina-connectors serve --reranker``).

Request: ``{"model", "query", "documents": [str | {"text": str}], "top_n",
"return_documents"}``; response: ``{"model", "usage": {"total_tokens"}, "results":
[{"index", "relevance_score", "document": {"text"}}]}`` (``document`` left out when
``return_documents`` is false). The reranker loads in the background like the embedder
(503 until it is ready); auth, body limits, 429 with Retry-After, client disconnects,
metrics and JSON errors work as for ``/v1/embeddings``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from embedder_core import RerankInputError
from embedder_core.reranker import Reranker, check_rerank_input, check_top_n, rank_results

from ..errors import CLIENT_CLOSED, ApiError
from ..schemas import _Body
from ..state import ServerState, ServerStateDep, served_name_of
from ..wire import ErrorCode
from ..work import await_result, characters_of, input_texts, json_response, run_work

__all__ = ["RerankRequest", "RerankService", "add_rerank_route", "router"]

_log = logging.getLogger("jina_connectors.server")


class RerankRequest(_Body):
    """``POST /v1/rerank``: the hosted Jina API's request."""

    query: str = Field(description="The query the documents are ranked against.")
    documents: list[Any] = Field(description='The documents: strings or {"text": ...} objects.')
    model: str | None = Field(default=None, description="The served reranker; omit for it.")
    top_n: int | None = Field(default=None, description="Return the best top_n (default: all).")
    return_documents: bool = Field(default=True, description="Include each document's text.")


class RerankService:
    """The served reranker and its lifecycle (loading -> ready, or failed)."""

    def __init__(
        self,
        server: ServerState,
        reranker: Reranker | Callable[[], Reranker],
        served_name: str | None,
        max_queued_tokens: int | None,
    ) -> None:
        self.server = server
        self.owned = not isinstance(reranker, Reranker)
        self._loader = reranker if self.owned else None
        self.reranker: Reranker | None = None
        self.load_error: BaseException | None = None
        self.served_name = served_name
        self.names: frozenset[str] = frozenset()
        self.max_queued_tokens = max_queued_tokens
        self.on_load_error: Callable[[BaseException], None] | None = None
        if not self.owned:
            self._attach(reranker)  # type: ignore[arg-type]

    def _attach(self, reranker: Reranker) -> None:
        if self.served_name is None:
            self.served_name = served_name_of(reranker.model_name)
        self.names = frozenset({self.served_name, reranker.model_name, reranker.kind})
        if self.max_queued_tokens is not None:
            reranker.max_queued_tokens = self.max_queued_tokens
        self.reranker = reranker

    def _load(self) -> None:
        try:
            loaded = self._loader()  # type: ignore[misc]
            if not isinstance(loaded, Reranker):
                raise TypeError(f"the reranker loader returned {type(loaded).__name__}")
            self._attach(loaded)
            _log.info("reranker %s loaded; serving it as %r", loaded.model_name, self.served_name)
        except BaseException as error:
            self.load_error = error
            _log.exception("the reranker failed to load")
            if self.on_load_error is not None:
                self.on_load_error(error)

    def start(self) -> None:
        """Load the reranker in the background (the app is starting)."""
        if self.owned:
            threading.Thread(target=self._load, name="reranker-loader", daemon=True).start()

    def stop(self) -> None:
        """The app is shutting down: finish accepted work of a reranker the app loaded."""
        if self.owned and self.reranker is not None:
            self.reranker.close()

    def ready(self) -> Reranker:
        self.server.ready()  # 503 while the server loads its embedder or shuts down
        if self.load_error is not None:
            raise ApiError(
                503, f"the reranker failed to load: {self.load_error}", ErrorCode.MODEL_FAILED
            )
        if self.reranker is None:
            raise ApiError(
                503,
                "the reranker is loading; retry shortly",
                ErrorCode.MODEL_LOADING,
                headers={"Retry-After": "1"},
            )
        return self.reranker

    def check_model(self, name: str | None) -> None:
        if name is not None and name not in self.names:
            raise ApiError(
                404,
                f"model {name!r} is not a reranker served here; /v1/rerank serves "
                f"{self.served_name!r} (also as: "
                f"{', '.join(sorted(self.names - {self.served_name}))})",
                ErrorCode.MODEL_NOT_FOUND,
                param="model",
            )

    def retry_after(self) -> str:
        """Seconds until the reranker's queue has likely drained (1 to 60)."""
        rate = self.server.metrics.tokens_per_second
        queued = self.reranker.queued_tokens if self.reranker is not None else 0
        seconds = queued / rate if rate > 0 else 1.0
        return str(min(60, max(1, math.ceil(seconds))))

    def model_entry(self) -> dict[str, Any] | None:
        """The reranker's entry in ``/v1/models`` (None until it is loaded)."""
        if self.reranker is None:
            return None
        return {
            "id": self.served_name,
            "object": "model",
            "created": self.server.created,
            "owned_by": "jina-connectors",
            "aliases": sorted(self.names - {self.served_name}),
            "type": "reranker",
        }


router = APIRouter()


def add_rerank_route(
    app: FastAPI,
    server: ServerState,
    reranker: Reranker | Callable[[], Reranker],
    *,
    served_name: str | None = None,
    max_queued_tokens: int | None = None,
    on_load_error: Callable[[BaseException], None] | None = None,
) -> RerankService:
    """Serve ``reranker`` (loaded, or a function that loads it) at ``POST /v1/rerank``;
    ``on_load_error`` is called if loading fails. The service is ``app.state.rerank`` (and
    ``server.rerank``); requests share ``server``'s limits and tokenizer threads."""
    service = RerankService(server, reranker, served_name, max_queued_tokens)
    service.on_load_error = on_load_error
    app.state.rerank = service
    server.rerank = service
    app.include_router(router)
    return service


@router.post("/v1/rerank", summary="Rerank documents against a query (Jina API shape)")
async def rerank(body: RerankRequest, request: Request, server: ServerStateDep) -> Response:
    service: RerankService = server.rerank
    model = service.ready()
    service.check_model(body.model)
    documents = input_texts(body.documents, server.limits.max_inputs, name="documents")
    try:
        check_rerank_input(body.query, documents)
        top_n = check_top_n(body.top_n)
    except RerankInputError as error:
        raise ApiError(400, str(error), ErrorCode.INVALID_RERANK_INPUT) from None
    except TypeError as error:
        raise ApiError(400, str(error), ErrorCode.INVALID_TYPE) from None
    # The same admission budget and tokenizer pool as /v1/embeddings; the answer is a
    # few numbers per document, plus the texts when they are returned.
    characters = characters_of(documents) + len(body.query)
    server.admit(request, 64 * len(documents) + (characters if body.return_documents else 0))
    try:
        pending = await run_work(
            server, request, lambda: model.submit(body.query, documents), characters, server.pool
        )
    except ApiError as error:
        if error.status == 429:  # the reranker's own queue is the one that is full
            error.headers = {"Retry-After": service.retry_after()}
        raise
    scores = await await_result(server, pending, request)
    if scores is None:
        return Response(status_code=CLIENT_CLOSED)
    server.metrics.tokens.inc(pending.tokens)
    server.metrics.inputs.inc(len(documents))
    results = []
    for result in rank_results(scores, documents, top_n, body.return_documents):
        item: dict[str, Any] = {
            "index": result.index,
            "relevance_score": result.relevance_score,
        }
        if body.return_documents:
            item["document"] = {"text": result.document}
        results.append(item)
    return json_response(
        {
            "model": body.model or service.served_name,
            "usage": {"total_tokens": pending.tokens},
            "results": results,
        }
    )
