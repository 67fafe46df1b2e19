"""Deprecated: :class:`JinaRanker` moved to :mod:`jina_connectors.adapters.haystack`."""

from jina_connectors._compat import warn_moved

from .adapters.haystack import JinaRanker

__all__ = ["JinaRanker"]

warn_moved(__name__, "jina_connectors.adapters.haystack")
