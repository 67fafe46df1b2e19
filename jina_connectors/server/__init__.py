"""``jina-connectors serve``: the embedding server (needs ``jina-connectors[server]``), and
its client.

``create_app`` builds the ASGI app (FastAPI) around an ``Embedder``; ``run_server`` loads a
model in the background and serves it with uvicorn, as the ``serve`` command does;
``wire`` is the contract both ends share. Names load on first use, so importing the client
or the wire contract imports neither the web framework nor torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .app import (
        DEFAULT_MAX_INPUTS,
        DEFAULT_MAX_REQUEST_BYTES,
        HOSTED_MODEL_NAME,
        create_app,
    )
    from .app import (
        served_name_of as served_name_of,
    )
    from .run import (
        API_KEYS_ENV_VAR,
        ModelLoadError,
        limit_cpu_caches,
        run_server,
        server_api_keys,
    )

__all__ = [
    "API_KEYS_ENV_VAR",
    "DEFAULT_MAX_INPUTS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "HOSTED_MODEL_NAME",
    "ModelLoadError",
    "create_app",
    "limit_cpu_caches",
    "run_server",
    "server_api_keys",
]

# Where each public name lives (its module is imported on first use).
_HOMES = {
    "API_KEYS_ENV_VAR": ".run",
    "DEFAULT_MAX_INPUTS": ".app",
    "DEFAULT_MAX_REQUEST_BYTES": ".app",
    "HOSTED_MODEL_NAME": ".app",
    "ModelLoadError": ".run",
    "create_app": ".app",
    "limit_cpu_caches": ".run",
    "run_server": ".run",
    "server_api_keys": ".run",
    "served_name_of": ".app",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
