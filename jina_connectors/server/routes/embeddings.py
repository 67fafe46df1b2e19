"""``POST /v1/embeddings`` (the Jina API's and OpenAI's request shapes) and the extension
``POST /v1/x/embed-spans`` (late chunking over given spans)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
from anyio import to_thread
from fastapi import APIRouter, Request
from fastapi.responses import Response

from embedder_core import Embedder, LateChunkingOptions

from ..errors import ApiError
from ..schemas import EmbeddingsRequest, EmbedSpansRequest, LateChunkingOptionsBody
from ..state import ServerStateDep
from ..wire import ErrorCode, encode_base64_rows
from ..work import (
    await_result,
    characters_of,
    check_surrogates,
    input_texts,
    input_token_ids,
    json_response,
    run_work,
)

__all__ = ["router"]

router = APIRouter()
# Bytes of an answer per embedding value, by output type: a JSON float is ~12 characters.
_ANSWER_BYTES_PER_VALUE = {"float": 12, "base64": 6}


def _answer_bytes(model: Embedder, rows: int, dimensions: int | None, kind: str) -> int:
    values = rows * (dimensions or model.dimension)
    return values * _ANSWER_BYTES_PER_VALUE.get(kind, 4)


@router.post("/v1/embeddings", summary="Embed texts (Jina API and OpenAI request shapes)")
async def embeddings(body: EmbeddingsRequest, request: Request, state: ServerStateDep) -> Response:
    model = state.ready()
    state.check_model(body.model)
    ids = input_token_ids(body.input, state.limits.max_inputs)
    texts = input_texts(body.input, state.limits.max_inputs) if ids is None else ids
    embedding_type = _output_type(body)
    options = _late_chunking_options(body.late_chunking_options)
    if ids is not None and body.late_chunking:
        raise ApiError(
            400, "late_chunking needs text input, not token ids", ErrorCode.INVALID_VALUE
        )
    state.admit(request, _answer_bytes(model, len(texts), body.dimensions, embedding_type))
    if ids is not None:
        work = partial(
            model.submit_token_ids,
            ids,
            task=body.task,
            dimensions=body.dimensions,
            normalized=body.normalized,
            embedding_type=_core_type(embedding_type),
            truncate=body.truncate,
        )
        size = sum(len(sequence) for sequence in ids)
    else:
        work = partial(
            model.submit,
            texts,
            task=body.task,
            dimensions=body.dimensions,
            late_chunking=body.late_chunking,
            late_chunking_options=options,
            normalized=body.normalized,
            embedding_type=_core_type(embedding_type),
            truncate=body.truncate,
        )
        size = characters_of(texts)
    pending = await run_work(state, request, work, size, state.pool)
    result = await await_result(state, pending, request)
    state.metrics.tokens.inc(pending.tokens)
    state.metrics.inputs.inc(len(texts))
    data = [
        {"object": "embedding", "index": i, "embedding": row}
        for i, row in enumerate(_rows(result, embedding_type))
    ]
    usage = {"total_tokens": pending.tokens, "prompt_tokens": pending.tokens}
    content = {
        "object": "list",
        "model": body.model or state.served_model_name,
        "data": data,
        "usage": usage,
    }
    return (
        await to_thread.run_sync(json_response, content)
        if len(data) > 64
        else json_response(content)
    )


@router.post("/v1/x/embed-spans", summary="Extension: late-chunk documents over given spans")
async def embed_spans(body: EmbedSpansRequest, request: Request, state: ServerStateDep) -> Response:
    model = state.ready()
    state.check_model(body.model)
    if not body.documents:
        raise ApiError(400, "documents is empty", ErrorCode.EMPTY_INPUT, param="documents")
    if len(body.documents) > state.limits.max_inputs:
        raise ApiError(
            400,
            f"documents has {len(body.documents)} items, over this server's limit of "
            f"{state.limits.max_inputs} per request",
            ErrorCode.TOO_MANY_INPUTS,
            param="documents",
        )
    spans = _check_spans(body, state.limits.max_spans)
    documents = [(doc.text, doc.spans) for doc in body.documents]
    options = _late_chunking_options(body.late_chunking_options)
    state.admit(request, _answer_bytes(model, spans, body.dimensions, body.embedding_type))
    pending = await run_work(
        state,
        request,
        lambda: model.submit_spans(
            documents,
            task=body.task,
            dimensions=body.dimensions,
            normalized=body.normalized,
            late_chunking_options=options,
        ),
        characters_of([text for text, _ in documents]),
        state.pool,
    )
    result = await await_result(state, pending, request)
    state.metrics.tokens.inc(pending.tokens)
    state.metrics.inputs.inc(len(documents))
    data = []
    for i, rows in enumerate(result):
        if body.embedding_type == "base64":
            embeddings: Any = encode_base64_rows(np.asarray(rows, dtype=np.float32))
        else:
            embeddings = np.ascontiguousarray(rows)
        data.append({"object": "spans", "index": i, "embeddings": embeddings})
    usage = {"total_tokens": pending.tokens, "prompt_tokens": pending.tokens}
    content = {"object": "list", "model": state.served_model_name, "data": data, "usage": usage}
    return await to_thread.run_sync(json_response, content)


def _late_chunking_options(body: LateChunkingOptionsBody | None) -> LateChunkingOptions | None:
    if body is None:
        return None
    try:
        return LateChunkingOptions(window=body.window, overlap=body.overlap)
    except ValueError as error:
        raise ApiError(
            400, str(error), ErrorCode.INVALID_VALUE, param="late_chunking_options"
        ) from None


def _output_type(body: EmbeddingsRequest) -> str:
    if (
        body.embedding_type is not None
        and body.encoding_format is not None
        and body.embedding_type != body.encoding_format
    ):
        raise ApiError(
            400,
            f"embedding_type {body.embedding_type!r} and encoding_format "
            f"{body.encoding_format!r} disagree; give one of them",
            ErrorCode.INVALID_VALUE,
            param="embedding_type",
        )
    return body.embedding_type or body.encoding_format or "float"


def _core_type(embedding_type: str) -> str:
    """What to ask the core for: base64 is the wire's encoding of float rows."""
    return "float" if embedding_type == "base64" else embedding_type


def _rows(result: Any, embedding_type: str) -> list[Any]:
    if embedding_type == "base64":
        return encode_base64_rows(result)
    array = np.ascontiguousarray(result)
    return [array[i] for i in range(len(array))]


def _check_spans(body: EmbedSpansRequest, max_spans: int) -> int:
    """The request's span count, after checking every span (a 400 naming the first bad one)
    and the caps: ``max_spans`` per request, one span per character of a document."""
    total = 0
    for i, doc in enumerate(body.documents):
        where = f"documents[{i}]"
        check_surrogates(doc.text, f"{where}.text")
        count = len(doc.spans)
        total += count
        if count > max(1, len(doc.text)):
            raise ApiError(
                400,
                f"{where} has {count} spans over a text of {len(doc.text)} characters; a "
                "document has at most one span per character",
                ErrorCode.TOO_MANY_SPANS,
                param=f"{where}.spans",
            )
        if total > max_spans:
            raise ApiError(
                400,
                f"documents have more than {max_spans} spans, this server's limit per request; "
                "split them into several requests",
                ErrorCode.TOO_MANY_SPANS,
                param="documents",
            )
        for j, span in enumerate(doc.spans):
            if len(span) != 2 or not 0 <= span[0] < span[1] <= len(doc.text):
                raise ApiError(
                    400,
                    f"{where}: span {j} {span} is empty, reversed or outside the text; a "
                    f"span is [start, end] with 0 <= start < end <= {len(doc.text)}",
                    ErrorCode.INVALID_SPAN,
                    param=f"{where}.spans[{j}]",
                )
    return total
