"""Moved to :mod:`jina_connectors.server.routes.rerank` (this path works for one more
release)."""

from jina_connectors._compat import moved

moved(__name__, "jina_connectors.server.routes.rerank")
