"""The typed errors of the ingestion pipeline and the sinks."""

from __future__ import annotations


class CollectionMismatchError(ValueError):
    """An existing collection was built with another vector size, metric, model or type, or
    holds points that jina-connectors did not write.

    Raised by :meth:`~jina_connectors.sink.VectorSink.ensure_collection` before anything is
    written; the collection is left untouched (never recreated).
    """


class InvalidDocumentError(ValueError):
    """One input record is unusable; ``record`` names it (``"a.jsonl:3"``, ``"documents[5]"``).

    The pipeline reports it in ``IngestReport.errors`` (a *bad record*) and goes on with the
    other documents, or raises it with ``on_error="raise"``.
    """

    def __init__(self, record: str, reason: str) -> None:
        super().__init__(f"{record}: {reason}")
        self.record = record
        self.reason = reason

    def __reduce__(self) -> tuple[type[InvalidDocumentError], tuple[str, str]]:
        # Picklable with its two arguments (Ray workers send errors back to the driver).
        return (type(self), (self.record, self.reason))
