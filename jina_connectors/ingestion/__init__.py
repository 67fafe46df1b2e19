"""Ingestion: documents in, chunks embedded, points written (see :mod:`jina_connectors.ingest`).

``options`` holds every ingest option, checked once (:class:`~.options.IngestOptions`).
"""
