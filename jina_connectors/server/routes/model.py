"""What the server says of its model: ``GET /v1/models`` (OpenAI's list, with the request
limits), and the extensions ``GET /v1/x/model`` (the model's ``ModelInfo`` and the limits),
``POST /v1/x/count-tokens`` and ``POST /v1/x/chunk``."""

from __future__ import annotations

from dataclasses import replace

from fastapi import APIRouter, Request
from fastapi.responses import Response

from embedder_core import EMBEDDING_TYPES

from ..schemas import ChunkRequest, CountTokensRequest
from ..state import ServerStateDep
from ..wire import model_description
from ..work import characters_of, input_texts, json_response, run_work

__all__ = ["router"]

router = APIRouter()


@router.get("/v1/models", summary="The served model, and this server's request limits")
async def models(state: ServerStateDep) -> Response:
    model = state.ready()
    entry = {
        "id": state.served_model_name,
        "object": "model",
        "created": state.created,
        "owned_by": "jina-connectors",
        "aliases": state.aliases,
        "max_input_tokens": model.info.max_tokens,
        **state.limits.to_json(),
    }
    reranker_entry = state.rerank.model_entry() if state.rerank is not None else None
    data = [entry] if reranker_entry is None else [entry, reranker_entry]
    return json_response({"object": "list", "data": data})


@router.get("/v1/x/model", summary="Extension: what RemoteEmbedder needs to know of the model")
async def model_info(state: ServerStateDep) -> Response:
    model = state.ready()
    info = replace(model.info, model_name=state.model_name)
    return json_response(
        model_description(
            info,
            served_name=state.served_model_name,
            aliases=state.aliases,
            embedding_types=EMBEDDING_TYPES,
            limits=state.limits.to_json(),
        )
    )


@router.post("/v1/x/count-tokens", summary="Extension: tokens each text takes")
async def count_tokens(
    body: CountTokensRequest, request: Request, state: ServerStateDep
) -> Response:
    model = state.ready()
    state.check_model(body.model)
    texts = input_texts(body.input, state.limits.max_inputs)
    state.admit(request, 0)
    counts = await run_work(
        state,
        request,
        lambda: model.count_tokens(texts, task=body.task),
        characters_of(texts),
        state.pool,
    )
    return json_response({"object": "list", "tokens": counts})


@router.post("/v1/x/chunk", summary="Extension: character spans of each text's chunks")
async def chunk(body: ChunkRequest, request: Request, state: ServerStateDep) -> Response:
    model = state.ready()
    state.check_model(body.model)
    texts = input_texts(body.input, state.limits.max_inputs)
    state.admit(request, 0)
    spans = await run_work(
        state,
        request,
        lambda: model.chunk(texts, chunker=body.chunker, chunk_size=body.chunk_size),
        characters_of(texts),
        state.pool,
    )
    return json_response({"object": "list", "spans": spans})
