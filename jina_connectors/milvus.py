"""Deprecated: :class:`MilvusSink` moved to :mod:`jina_connectors.sinks.milvus`,
:class:`JinaEmbeddingFunction` to :mod:`jina_connectors.adapters.pymilvus`."""

from typing import Any

from jina_connectors._compat import warn_moved

from .adapters.pymilvus import JinaEmbeddingFunction
from .sinks import milvus as _sink_module
from .sinks.milvus import MilvusSink

__all__ = ["JinaEmbeddingFunction", "MilvusSink"]

warn_moved(__name__, "jina_connectors.sinks.milvus")


def __getattr__(name: str) -> Any:
    return getattr(_sink_module, name)  # the sink module's other names, as before the move
