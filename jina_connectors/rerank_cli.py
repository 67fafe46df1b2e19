"""Moved to :mod:`jina_connectors.cli.search` (the rerank step of ``search``) and
:mod:`jina_connectors.cli.serve` (``check_serve_models``); this path works for one more
release."""

from jina_connectors._compat import warn_moved

from .cli.search import bare_rerank, check_reranker, check_reranker_dir, hits_json, rerank_hits
from .cli.serve import check_serve_models

warn_moved(__name__, "jina_connectors.cli.search and jina_connectors.cli.serve")

__all__ = [
    "bare_rerank",
    "check_reranker",
    "check_reranker_dir",
    "check_serve_models",
    "hits_json",
    "rerank_hits",
]
