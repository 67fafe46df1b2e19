"""Split into :mod:`jina_connectors.ingestion.stages` (the stages),
:mod:`~jina_connectors.ingestion.run` (``ingest`` and its report) and
:mod:`~jina_connectors.ingestion.options` (the settings); its names are re-exported here for
one release."""

from jina_connectors._compat import warn_moved

warn_moved(__name__, "jina_connectors.ingestion (stages, run, options)")

from jina_connectors.ingestion.documents import (  # noqa: E402
    SyncScope,
    check_sources,
)
from jina_connectors.ingestion.options import (  # noqa: E402
    BUILTIN_CHUNKERS,
    CUSTOM_CHUNKER,
    Chunker,
    EmbeddingSettings,
    Span,
    bad_record_logger,
)
from jina_connectors.ingestion.run import (  # noqa: E402
    ID_SCHEME_SAMPLE,
    IngestInterrupted,
    IngestReport,
    check_id_scheme,
    delete_unseen,
    ingest,
)
from jina_connectors.ingestion.stages import (  # noqa: E402
    EmbeddedBatch,
    Named,
    PreparedDocument,
    changed_documents,
    check_records,
    chunk_records,
    content_hash,
    document_batches,
    embed_batch,
    embed_isolating,
    embed_records,
    is_input_error,
    metadata_error,
    passage_spec,
    prepare_document,
    resolve_settings,
)

__all__ = [
    "BUILTIN_CHUNKERS",
    "CUSTOM_CHUNKER",
    "ID_SCHEME_SAMPLE",
    "Chunker",
    "EmbeddedBatch",
    "EmbeddingSettings",
    "IngestInterrupted",
    "IngestReport",
    "Named",
    "PreparedDocument",
    "Span",
    "SyncScope",
    "bad_record_logger",
    "changed_documents",
    "check_id_scheme",
    "check_records",
    "check_sources",
    "chunk_records",
    "content_hash",
    "delete_unseen",
    "document_batches",
    "embed_batch",
    "embed_isolating",
    "embed_records",
    "ingest",
    "is_input_error",
    "metadata_error",
    "passage_spec",
    "prepare_document",
    "resolve_settings",
]
