"""The ingestion pipeline and the contract every database sink implements (the public import).

Documents go in (strings, ``{"id", "text", "metadata"}`` dicts, or ``.txt``/``.md``/``.jsonl``
paths and folders), are chunked and embedded with ``retrieval.passage`` (late chunking by
default), and are written to a :class:`VectorSink` in batches while the next batch is
being embedded. The code lives in :mod:`jina_connectors.ingestion`: ``documents`` (reading),
``options`` (the options, checked once), ``stages`` (hashing, change detection, embedding),
``run`` (``ingest``), ``writer`` (the background writer); and :mod:`~jina_connectors.sink`
(records and the sink base class); this module re-exports their public names.

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
    DOCUMENT_SUFFIXES,
    MAX_DOC_ID_CHARS,
    SOURCE_KEY,
    Document,
    DocumentSource,
    SyncScope,
    file_id,
    iter_documents,
    sync_scope,
    text_document_id,
)
from .ingestion.options import (
    BadRecords,
    Chunker,
    EmbeddingSettings,
    IngestOptions,
    bad_record_logger,
)
from .ingestion.run import IngestInterrupted, IngestReport, ingest
from .ingestion.stages import (
    PreparedDocument,
    changed_documents,
    check_records,
    chunk_records,
    content_hash,
    document_batches,
    embed_isolating,
    embed_records,
    is_input_error,
    passage_spec,
    prepare_document,
    resolve_settings,
)
from .ingestion.writer import BackgroundWriter, WriteJob, WriteOutcome, write_job
from .sinks.base import (
    CollectionLayout,
    VectorSink,
    check_layout,
    check_recorded_spec,
    with_retries,
)
from .sinks.records import (
    CHUNK_NAMESPACE,
    DEFAULT_COLLECTION,
    PASSAGE_TASK,
    PAYLOAD_KEYS,
    QUERY_TASK,
    ChunkRecord,
    ChunkState,
    CollectionInfo,
    CollectionSpec,
    FilterValue,
    Hit,
    SearchFilter,
    SinkEmbeddingType,
    chunk_id,
    filter_items,
)
from .sinks.search import (
    embed_query,
    resolve_embedder,
)

__all__ = [
    "CHUNK_NAMESPACE",
    "DEFAULT_COLLECTION",
    "DOCUMENT_SUFFIXES",
    "MAX_DOC_ID_CHARS",
    "PASSAGE_TASK",
    "PAYLOAD_KEYS",
    "QUERY_TASK",
    "SOURCE_KEY",
    "BackgroundWriter",
    "BadRecords",
    "ChunkRecord",
    "ChunkState",
    "Chunker",
    "CollectionInfo",
    "CollectionLayout",
    "CollectionMismatchError",
    "CollectionSpec",
    "Document",
    "DocumentSource",
    "EmbeddingSettings",
    "EmptyDocumentError",
    "FilterValue",
    "Hit",
    "IdSchemeError",
    "IngestInterrupted",
    "IngestOptions",
    "IngestReport",
    "InvalidDocumentError",
    "OptionError",
    "PreparedDocument",
    "SearchFilter",
    "SinkEmbeddingType",
    "SourcePathError",
    "StoreLockedError",
    "StoreNotFoundError",
    "SyncScope",
    "VectorSink",
    "WriteJob",
    "WriteOutcome",
    "bad_record_logger",
    "changed_documents",
    "check_layout",
    "check_recorded_spec",
    "check_records",
    "chunk_id",
    "chunk_records",
    "content_hash",
    "document_batches",
    "embed_isolating",
    "embed_query",
    "embed_records",
    "file_id",
    "filter_items",
    "ingest",
    "is_input_error",
    "iter_documents",
    "passage_spec",
    "prepare_document",
    "resolve_embedder",
    "resolve_settings",
    "sync_scope",
    "text_document_id",
    "with_retries",
    "write_job",
]
