"""Moved to :mod:`jina_connectors.server.rerank_client` (this path works for one more
release; ``jina_connectors.server.client.RemoteReranker`` is the same class)."""

from jina_connectors._compat import moved

moved(__name__, "jina_connectors.server.rerank_client")
