"""Rows <-> documents and records: the Arrow-row codec of the Ray engine (input rows as
``ingest`` reads records; output rows of chunks and, in the ingestion stream, statuses)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from ray.data import Dataset

from ..errors import InvalidDocumentError
from ..ingestion.documents import (
    Document,
    iter_documents,
    text_document_id,
)
from ..ingestion.options import EmbeddingSettings
from ..ingestion.stages import PreparedDocument
from ..ingestion.writer import WriteJob
from ..sinks.records import ChunkRecord

#: Columns of :func:`embed_dataset`'s output, one row per chunk. ``metadata`` is the
#: document's metadata as a JSON object (text): Arrow would merge the differing keys of
#: documents into one struct, filling the missing ones with nulls.
CHUNK_COLUMNS = (
    "id",
    "doc_id",
    "chunk_index",
    "chunk_count",
    "start",
    "end",
    "text",
    "embedding",
    "content_hash",
    "metadata",
)

# Rows of the ingestion stream besides chunks: one per document left out as unchanged, one
# per bad record (counted as a document when it was a valid one, as ``ingest`` counts them).
_CHUNK, _SKIPPED, _BAD_DOCUMENT, _BAD_RECORD = "chunk", "skipped", "bad-document", "bad-record"
_STATUS_COLUMNS = ("kind", "record", "error")


@dataclass(frozen=True)
class _Columns:
    """Which input columns hold the text, the id and (optionally) the record name."""

    text: str
    id: str
    record: str | None

    def special(self) -> set[str]:
        return {self.text, self.id, *([self.record] if self.record else [])}


def _columns(text_column: str, id_column: str, record_column: str | None) -> _Columns:
    for name, value in (("text_column", text_column), ("id_column", id_column)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    if record_column is not None and (not isinstance(record_column, str) or not record_column):
        raise ValueError(f"record_column must be a non-empty string or None, got {record_column!r}")
    names = [text_column, id_column, *([record_column] if record_column else [])]
    if len(set(names)) != len(names):
        raise ValueError(f"text_column, id_column and record_column must differ, got {names}")
    return _Columns(text_column, id_column, record_column)


def _check_dataset(ds: Any, columns: _Columns) -> None:
    """A Dataset with a text column (an id column is optional: ids then come from the text,
    as for ``ingest``'s records without one)."""
    if not isinstance(ds, Dataset):
        raise TypeError(f"expected a ray.data.Dataset, got {type(ds).__name__}")
    schema = ds.schema()
    if schema is None:
        return  # nothing known before execution; rows are checked one by one
    names = list(schema.names)
    if columns.text not in names:
        raise ValueError(f"the dataset has no {columns.text!r} column (columns: {names})")
    if columns.record is not None and columns.record not in names:
        raise ValueError(f"the dataset has no {columns.record!r} column (columns: {names})")


# --------------------------------------------------------------------------------------
# Rows <-> documents and records
# --------------------------------------------------------------------------------------


def _document_of_row(
    row: Mapping[str, Any], columns: _Columns, texts: dict[str, str] | None = None
) -> Document:
    """A row as ``ingest`` reads a record: the other columns are metadata, merged with a
    ``metadata`` column's object (a mapping, or JSON text). ``texts``: where to keep the
    JSON text of a row whose metadata is that text alone (by document id), so the output
    copies it instead of encoding the metadata again."""
    text = row.get(columns.text)
    doc_id = row.get(columns.id)
    if doc_id is None and isinstance(text, str):
        doc_id = text_document_id(text)
    record = row.get(columns.record) if columns.record else None
    if record:
        name = str(record)
    elif doc_id is not None:
        name = f"{columns.id}={doc_id!r}"
    else:
        name = f"{columns.text}={str(text)[:40]!r}"
    special = columns.special()
    metadata = {k: v for k, v in row.items() if k not in special and k != "metadata"}
    if "metadata" in row and "metadata" not in special:
        value = row["metadata"]
        raw = value if isinstance(value, str) and not metadata else None
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise InvalidDocumentError(name, f"'metadata' is not JSON: {exc.msg}") from None
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise InvalidDocumentError(
                name, f"'metadata' must be an object, got {type(value).__name__}"
            )
        metadata.update(value)
        # The text is the whole metadata: kept for the row's id (the first row of an id is
        # the document; a later one is a duplicate, a bad record).
        if texts is not None and raw is not None and value and isinstance(doc_id, str):
            texts.setdefault(doc_id, raw)
    return Document(doc_id, text, metadata, name)  # type: ignore[arg-type]  # checked next


def _read_rows(
    table: pa.Table, columns: _Columns, texts: dict[str, str] | None = None
) -> list[Document | InvalidDocumentError]:
    """The rows of a batch as validated documents (``iter_documents``' checks, duplicate ids
    within the batch included), or the bad record each row is. ``texts``: see
    :func:`_document_of_row`."""
    errors: list[InvalidDocumentError] = []
    documents: list[Document] = []
    for row in table.to_pylist():
        try:
            documents.append(_document_of_row(row, columns, texts))
        except InvalidDocumentError as error:
            errors.append(error)
    return [*errors, *iter_documents(documents)]


def _metadata_json(metadata: Mapping[str, Any]) -> str:
    return json.dumps(dict(metadata), ensure_ascii=False, allow_nan=False)


def _vector_width(settings: EmbeddingSettings) -> int:
    return (
        -(-settings.dimensions // 8)
        if settings.embedding_type == "ubinary"
        else (settings.dimensions)
    )


def _vector_dtype(settings: EmbeddingSettings) -> type[np.generic]:
    return np.uint8 if settings.embedding_type == "ubinary" else np.float32


@dataclass
class _Rows:
    """Output rows under construction: chunks, then (in the ingestion stream) statuses."""

    settings: EmbeddingSettings
    with_status: bool
    columns: dict[str, list[Any]] = field(default_factory=dict)
    vectors: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        names = [c for c in CHUNK_COLUMNS if c != "embedding"]
        names += list(_STATUS_COLUMNS) if self.with_status else []
        self.columns = {name: [] for name in names}

    def add_document(
        self,
        prepared: PreparedDocument,
        records: Sequence[ChunkRecord],
        metadata_json: str | None = None,
    ) -> None:
        """The chunk rows of a document; ``metadata_json``: its input's metadata text (else
        its metadata is encoded here)."""
        metadata = metadata_json or _metadata_json(prepared.document.metadata)
        for record in records:
            self._add(
                id=record.id,
                doc_id=record.doc_id,
                chunk_index=record.chunk_index,
                chunk_count=record.chunk_count,
                start=record.start,
                end=record.end,
                text=record.text,
                content_hash=record.content_hash,
                metadata=metadata,
                kind=_CHUNK,
                record=prepared.source,
                error="",
                vector=np.asarray(record.vector, dtype=_vector_dtype(self.settings)),
            )

    def add_status(self, kind: str, record: str = "", error: str = "", doc_id: str = "") -> None:
        width = _vector_width(self.settings)
        self._add(
            id="",
            doc_id=doc_id,
            chunk_index=-1,
            chunk_count=0,
            start=0,
            end=0,
            text="",
            content_hash="",
            metadata="{}",
            kind=kind,
            record=record,
            error=error,
            vector=np.zeros(width, dtype=_vector_dtype(self.settings)),
        )

    def _add(self, *, vector: np.ndarray, **values: Any) -> None:
        for name, column in self.columns.items():
            column.append(values[name])
        self.vectors.append(vector)

    def batch(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for name, column in self.columns.items():
            if name in ("chunk_index", "chunk_count", "start", "end"):
                out[name] = np.asarray(column, dtype=np.int64)
            else:
                out[name] = np.asarray(column, dtype=object)
        width = _vector_width(self.settings)
        dtype = _vector_dtype(self.settings)
        out["embedding"] = (
            np.stack(self.vectors) if self.vectors else np.zeros((0, width), dtype=dtype)
        )
        return {name: out[name] for name in (*CHUNK_COLUMNS, *self.columns) if name in out}


@dataclass(frozen=True)
class _Source:
    """A document named for error messages (what :func:`check_records` needs)."""

    source: str


@dataclass
class _Stream:
    """What a batch of the ingestion stream holds, read back into the pipeline's terms."""

    documents: list[tuple[_Source, list[ChunkRecord]]] = field(default_factory=list)
    bad: list[tuple[InvalidDocumentError, bool]] = field(default_factory=list)  # (error, counted)
    skipped: int = 0
    embedded: int = 0  # documents whose chunk 0 is here

    @property
    def chunks(self) -> int:
        return sum(len(records) for _, records in self.documents)


def _read_stream(batch: Mapping[str, np.ndarray], settings: EmbeddingSettings) -> _Stream:
    """Group a batch's chunk rows per document (in order) into records; collect statuses."""
    stream = _Stream()
    kinds = batch["kind"]
    by_doc: dict[str, tuple[_Source, list[ChunkRecord]]] = {}
    metadata_of: dict[str, Mapping[str, Any]] = {}
    for i, kind in enumerate(kinds):
        if kind == _SKIPPED:
            stream.skipped += 1
            continue
        if kind in (_BAD_DOCUMENT, _BAD_RECORD):
            error = InvalidDocumentError(str(batch["record"][i]), str(batch["error"][i]))
            stream.bad.append((error, kind == _BAD_DOCUMENT))
            continue
        doc_id = str(batch["doc_id"][i])
        if doc_id not in metadata_of:
            metadata_of[doc_id] = json.loads(batch["metadata"][i])
        index = int(batch["chunk_index"][i])
        if index == 0:
            stream.embedded += 1
        record = ChunkRecord(
            id=str(batch["id"][i]),
            vector=np.asarray(batch["embedding"][i]),
            text=str(batch["text"][i]),
            doc_id=doc_id,
            chunk_index=index,
            chunk_count=int(batch["chunk_count"][i]),
            start=int(batch["start"][i]),
            end=int(batch["end"][i]),
            content_hash=str(batch["content_hash"][i]),
            metadata=metadata_of[doc_id],
            model=settings.model,
            task=settings.task,
            dimensions=settings.dimensions,
            embedding_type=settings.embedding_type,
        )
        entry = by_doc.get(doc_id)
        if entry is None:
            entry = by_doc[doc_id] = (_Source(str(batch["record"][i])), [])
        entry[1].append(record)
    stream.documents = list(by_doc.values())
    return stream


def _write_job_of(
    documents: Sequence[tuple[_Source, list[ChunkRecord]]], completes: int
) -> WriteJob:
    return WriteJob.of(
        [(source.source, records) for source, records in documents], completes=completes
    )
