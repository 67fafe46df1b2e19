"""A route room works alone: its ``APIRouter`` mounted in a bare app whose ``state.server``
is a ``ServerState``, without ``create_app``."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from server_support import serve_app

from embedder_core import Embedder
from jina_connectors.server.errors import add_error_handlers
from jina_connectors.server.metrics import ServerMetrics
from jina_connectors.server.routes import health, model
from jina_connectors.server.state import ServerLimits, ServerState


def test_the_health_and_model_routers_serve_a_bare_app(tiny_jina_embedder: Embedder) -> None:
    app = FastAPI()
    state = ServerState("tiny", ServerMetrics(), None, limits=ServerLimits(max_inputs=7))
    app.state.server = state
    add_error_handlers(app)
    app.include_router(health.router)
    app.include_router(model.router)
    with serve_app(app) as url:
        loading = httpx.get(url + "/health", timeout=30)
        assert loading.status_code == 503
        assert loading.json()["error"]["code"] == "model_loading"
        state.attach(tiny_jina_embedder)
        assert httpx.get(url + "/health", timeout=30).json() == {"status": "ok", "model": "tiny"}
        described = httpx.get(url + "/v1/x/model", timeout=30).json()
        assert described["max_inputs"] == 7 and described["id"] == "tiny"
        assert described["dimension"] == tiny_jina_embedder.dimension
        counted = httpx.post(url + "/v1/x/count-tokens", json={"input": ["a b c"]}, timeout=30)
        assert counted.json()["tokens"] == tiny_jina_embedder.count_tokens(["a b c"])
        assert httpx.get(url + "/v1/embeddings", timeout=30).status_code == 404  # not mounted
    state.metrics.unwatch(tiny_jina_embedder)
