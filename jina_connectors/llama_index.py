"""Deprecated: moved to :mod:`jina_connectors.adapters.llama_index`."""

from jina_connectors._compat import moved

moved(__name__, "jina_connectors.adapters.llama_index")
