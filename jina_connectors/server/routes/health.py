"""``GET /health`` (200 once the model is loaded, else 503) and ``GET /metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..errors import ApiError, error_response
from ..state import ServerStateDep
from ..work import json_response

__all__ = ["router"]

router = APIRouter()


@router.get("/health", summary="200 once the model is loaded, else 503")
async def health(state: ServerStateDep) -> Response:
    try:
        state.ready()
    except ApiError as error:
        return error_response(error)
    return json_response({"status": "ok", "model": state.served_model_name})


@router.get("/metrics", summary="Prometheus metrics")
async def prometheus(state: ServerStateDep) -> Response:
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
