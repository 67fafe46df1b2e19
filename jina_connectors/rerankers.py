"""Deprecated: :class:`JinaRerankFunction` moved to :mod:`jina_connectors.adapters.pymilvus`,
``load_reranker`` and ``DEFAULT_RERANKER`` to :mod:`jina_connectors.shared_models`."""

from jina_connectors._compat import warn_moved

from .adapters.pymilvus import JinaRerankFunction, RerankResult
from .shared_models import DEFAULT_RERANKER, load_reranker

__all__ = ["DEFAULT_RERANKER", "JinaRerankFunction", "RerankResult", "load_reranker"]

warn_moved(__name__, "jina_connectors.adapters.pymilvus")
