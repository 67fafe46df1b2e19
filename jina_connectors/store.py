"""Deprecated: moved to :mod:`jina_connectors.sinks.store`."""

from jina_connectors._compat import moved

moved(__name__, "jina_connectors.sinks.store")
