"""The ingestion pipeline and the contract every database sink implements (the public import).

Documents go in (strings, ``{"id", "text", "metadata"}`` dicts, or ``.txt``/``.md``/``.jsonl``
paths and folders), are chunked and embedded with ``retrieval.passage`` (late chunking by
default), and are written to a :class:`VectorSink` in batches while the next batch is
being embedded. The code lives in :mod:`jina_connectors.ingestion`: ``documents`` (reading),
``options`` (the options, checked once), ``stages`` (hashing, change detection, embedding),
``run`` (``ingest``), ``writer`` (the background writer); and :mod:`jina_connectors.sinks`
(records and the sink base class). This module re-exports the names a script needs (as
:mod:`jina_connectors` does); the internals it used to re-export still import from here for
one release, with a DeprecationWarning naming their home.

Idempotence and crash safety (the design every sink relies on):

- A chunk's id is ``uuid5(CHUNK_NAMESPACE, f"{doc_id}\\x1f{chunk_index}")``: re-writing a chunk
  overwrites it, never duplicates it.
- Every chunk's payload carries ``content_hash`` and ``chunk_count``. The hash covers the
  document's text and metadata and every setting that changes a vector, as one frozen
  :class:`EmbeddingSettings` (model, as its canonical id with any revision, task, dimensions,
  embedding type, late chunking and its window and overlap, chunker and chunk size), plus a
  custom chunker's spans.
  Equal hashes therefore mean equal chunks, so the state of a document can be checked without
  embedding it.
- A document is *complete* when chunks ``0..n-1`` all exist with the current hash and
  ``chunk_count == n``, and chunk ``n`` does not exist. Every version of a document numbers its
  chunks ``0..m-1``, so leftovers of older, longer versions always include chunk ``n``.
- Writing a document upserts all its chunks, then deletes its chunks with
  ``chunk_index >= n``. A kill at any point leaves the document incomplete (or complete),
  never wrongly complete, so the next run re-embeds it and overwrites the same ids.
- Unchanged complete documents are skipped before any embedding (``IngestReport.skipped``).
"""

from __future__ import annotations

import warnings
from importlib import import_module
from typing import Any

from .errors import (
    CollectionMismatchError,
    EmptyDocumentError,
    IdSchemeError,
    InvalidDocumentError,
    OptionError,
    SourcePathError,
    StoreLockedError,
    StoreNotFoundError,
)
from .ingestion.documents import (
    Document,
    DocumentSource,
    iter_documents,
)
from .ingestion.options import (
    Chunker,
    IngestOptions,
)
from .ingestion.run import (
    IngestInterrupted,
    IngestReport,
    ingest,
)
from .sinks.base import (
    VectorSink,
)
from .sinks.records import (
    CollectionSpec,
    Hit,
    SearchFilter,
)

__all__ = [
    "Chunker",
    "CollectionMismatchError",
    "CollectionSpec",
    "Document",
    "DocumentSource",
    "EmptyDocumentError",
    "Hit",
    "IdSchemeError",
    "IngestInterrupted",
    "IngestOptions",
    "IngestReport",
    "InvalidDocumentError",
    "OptionError",
    "SearchFilter",
    "SourcePathError",
    "StoreLockedError",
    "StoreNotFoundError",
    "VectorSink",
    "ingest",
    "iter_documents",
]

# Internals this module re-exported before the rooms: importable for one release, with a
# DeprecationWarning naming their home.
_MOVED = {
    "BackgroundWriter": "jina_connectors.ingestion.writer",
    "BadRecords": "jina_connectors.ingestion.options",
    "CHUNK_NAMESPACE": "jina_connectors.sinks.records",
    "ChunkRecord": "jina_connectors.sinks.records",
    "ChunkState": "jina_connectors.sinks.records",
    "CollectionInfo": "jina_connectors.sinks.records",
    "CollectionLayout": "jina_connectors.sinks.base",
    "DEFAULT_COLLECTION": "jina_connectors.sinks.records",
    "DOCUMENT_SUFFIXES": "jina_connectors.ingestion.documents",
    "EmbeddingSettings": "jina_connectors.ingestion.options",
    "FilterValue": "jina_connectors.sinks.records",
    "MAX_DOC_ID_CHARS": "jina_connectors.ingestion.documents",
    "PASSAGE_TASK": "jina_connectors.sinks.records",
    "PAYLOAD_KEYS": "jina_connectors.sinks.records",
    "PreparedDocument": "jina_connectors.ingestion.stages",
    "QUERY_TASK": "jina_connectors.sinks.records",
    "SOURCE_KEY": "jina_connectors.ingestion.documents",
    "SinkEmbeddingType": "jina_connectors.sinks.records",
    "SyncScope": "jina_connectors.ingestion.documents",
    "WriteJob": "jina_connectors.ingestion.writer",
    "WriteOutcome": "jina_connectors.ingestion.writer",
    "bad_record_logger": "jina_connectors.ingestion.options",
    "changed_documents": "jina_connectors.ingestion.stages",
    "check_layout": "jina_connectors.sinks.base",
    "check_recorded_spec": "jina_connectors.sinks.base",
    "check_records": "jina_connectors.ingestion.stages",
    "chunk_id": "jina_connectors.sinks.records",
    "chunk_records": "jina_connectors.ingestion.stages",
    "content_hash": "jina_connectors.ingestion.stages",
    "document_batches": "jina_connectors.ingestion.stages",
    "embed_isolating": "jina_connectors.ingestion.stages",
    "embed_query": "jina_connectors.sinks.search",
    "embed_records": "jina_connectors.ingestion.stages",
    "file_id": "jina_connectors.ingestion.documents",
    "filter_items": "jina_connectors.sinks.records",
    "is_input_error": "jina_connectors.ingestion.stages",
    "passage_spec": "jina_connectors.ingestion.stages",
    "prepare_document": "jina_connectors.ingestion.stages",
    "resolve_embedder": "jina_connectors.sinks.search",
    "resolve_settings": "jina_connectors.ingestion.stages",
    "sync_scope": "jina_connectors.ingestion.documents",
    "text_document_id": "jina_connectors.ingestion.documents",
    "with_retries": "jina_connectors.sinks.base",
    "write_job": "jina_connectors.ingestion.writer",
}


def __getattr__(name: str) -> Any:
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(
        f"jina_connectors.ingest.{name} is internal: import it from {home} (this alias goes in "
        "the next release)",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(import_module(home), name)
