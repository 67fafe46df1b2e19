"""Moved to :mod:`jina_connectors.ingestion.documents` (this path goes in the next release)."""

from jina_connectors._compat import moved

moved(__name__, "jina_connectors.ingestion.documents")
