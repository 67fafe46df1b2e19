"""Deprecated: :class:`JinaRerank` moved to :mod:`jina_connectors.adapters.llama_index`."""

from jina_connectors._compat import warn_moved

from .adapters.llama_index import JinaRerank

__all__ = ["JinaRerank"]

warn_moved(__name__, "jina_connectors.adapters.llama_index")
