"""What the pipeline writes and reads: chunk records and their deterministic ids, the spec a
collection records, chunk states, hits, and search filters. Plain data, no database."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

# Fixed namespace of chunk ids: uuid5(CHUNK_NAMESPACE, f"{doc_id}\x1f{chunk_index}").
CHUNK_NAMESPACE = uuid.UUID("8a7c1f3e-5d2b-5f4a-9c6e-1b0d2e3f4a5b")
PASSAGE_TASK = "retrieval.passage"
QUERY_TASK = "retrieval.query"
DEFAULT_COLLECTION = "documents"
# Vector types a sink may be asked to store; each sink says which ones it supports.
SinkEmbeddingType = Literal["float", "ubinary"]
# Payload keys the pipeline writes; user metadata lives under "metadata".
PAYLOAD_KEYS = (
    "text",
    "doc_id",
    "chunk_index",
    "chunk_count",
    "start",
    "end",
    "metadata",
    "content_hash",
    "model",
    "task",
    "dimensions",
    "embedding_type",
)
SPEC_KEYS = ("model", "dimensions", "embedding_type", "task")
STATE_KEYS = ("content_hash", "chunk_count")


def chunk_id(doc_id: str, chunk_index: int) -> str:
    """Deterministic point id of a chunk: a UUID5 of document id and chunk index."""
    return str(uuid.uuid5(CHUNK_NAMESPACE, f"{doc_id}\x1f{chunk_index}"))


# --------------------------------------------------------------------------------------
# Data passed between the pipeline and the sinks
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection holds: vectors of ``model`` at ``dimensions``, as ``embedding_type``.

    ``embedding_type="float"`` vectors are compared by cosine; ``"ubinary"`` vectors are packed
    sign bits (``ceil(dimensions / 8)`` bytes) compared by Hamming distance.
    """

    model: str
    dimensions: int
    embedding_type: SinkEmbeddingType = "float"
    task: str = PASSAGE_TASK

    @property
    def metric(self) -> Literal["cosine", "hamming"]:
        return "hamming" if self.embedding_type == "ubinary" else "cosine"

    @property
    def vector_bits(self) -> int:
        """Binary vector width in bits, a multiple of 8 (the packed bytes times 8)."""
        return 8 * -(-self.dimensions // 8)

    @property
    def vector_size(self) -> int:
        """The collection's vector size: dimensions for float vectors, bits for binary ones."""
        return self.vector_bits if self.embedding_type == "ubinary" else self.dimensions

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CollectionSpec:
        return cls(
            model=str(payload["model"]),
            dimensions=int(payload["dimensions"]),
            embedding_type=payload.get("embedding_type", "float"),
            task=str(payload.get("task", PASSAGE_TASK)),
        )


def spec_of_payload(payload: Mapping[str, Any] | None) -> CollectionSpec | None:
    """The spec recorded in a point's payload; None for no point or a point without one."""
    if not payload or not all(key in payload for key in ("model", "dimensions")):
        return None
    return CollectionSpec.from_payload(payload)


@dataclass(frozen=True)
class ChunkState:
    """What the completeness check needs to know about a stored chunk."""

    content_hash: str
    chunk_count: int


@dataclass(frozen=True)
class ChunkRecord:
    """One point to write: its deterministic id, vector and payload fields.

    ``vector`` is float32 ``(dimensions,)`` for float collections, or uint8 packed bits
    ``(ceil(dimensions / 8),)`` for ``ubinary`` ones.
    """

    id: str
    vector: np.ndarray
    text: str
    doc_id: str
    chunk_index: int
    chunk_count: int
    start: int
    end: int
    content_hash: str
    metadata: Mapping[str, Any]
    model: str
    task: str
    dimensions: int
    embedding_type: SinkEmbeddingType

    @property
    def name(self) -> str:
        """How error messages name this record: ``document 'a.md' chunk 3``."""
        return f"document {self.doc_id!r} chunk {self.chunk_index}"

    def payload(self) -> dict[str, Any]:
        """Every field except ``id`` and ``vector``, as JSON-compatible values."""
        return {
            "text": self.text,
            "doc_id": self.doc_id,
            "chunk_index": self.chunk_index,
            "chunk_count": self.chunk_count,
            "start": self.start,
            "end": self.end,
            "metadata": dict(self.metadata),
            "content_hash": self.content_hash,
            "model": self.model,
            "task": self.task,
            "dimensions": self.dimensions,
            "embedding_type": self.embedding_type,
        }


@dataclass(frozen=True)
class Hit:
    """One search result. ``score``: higher is more similar (cosine, or ``1 - hamming/bits``)."""

    id: str
    score: float
    text: str
    doc_id: str
    chunk_index: int
    start: int
    end: int
    metadata: dict[str, Any]

    @classmethod
    def from_payload(cls, id: str, score: float, payload: Mapping[str, Any]) -> Hit:
        return cls(
            id=str(id),
            score=float(score),
            text=str(payload.get("text", "")),
            doc_id=str(payload.get("doc_id", "")),
            chunk_index=int(payload.get("chunk_index", 0)),
            start=int(payload.get("start", 0)),
            end=int(payload.get("end", 0)),
            metadata=dict(payload.get("metadata") or {}),
        )


@dataclass(frozen=True)
class CollectionInfo:
    """A collection of a database, for ``jina-connectors info``. ``spec`` is None when empty
    or not written by jina-connectors."""

    name: str
    count: int
    spec: CollectionSpec | None


@dataclass(frozen=True)
class StoredChunk:
    """A point read back from a collection (:meth:`VectorSink.read_points`): its id and its
    payload as the pipeline wrote it (:meth:`ChunkRecord.payload`, user metadata nested under
    ``"metadata"``), without its vector."""

    id: str
    payload: dict[str, Any]


# A search filter: equality on ``doc_id`` or on user-metadata keys; a list value means
# "any of". ``{"doc_id": "a.md"}``, ``{"president": ["lincoln", "grant"], "year": 1862}``.
# Sinks also accept their database's native filter object.
FilterValue = str | int | float | bool | Sequence[str | int | float | bool]
SearchFilter = Mapping[str, FilterValue]


def filter_items(filter: SearchFilter) -> list[tuple[str, bool, list[Any]]]:
    """A :data:`SearchFilter` as ``(key, is_metadata_key, allowed values)`` triples."""
    items: list[tuple[str, bool, list[Any]]] = []
    for key, value in filter.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"filter keys must be non-empty strings, got {key!r}")
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not values:
            raise ValueError(f"filter value list for {key!r} is empty")
        for v in values:
            if not isinstance(v, (str, int, float, bool)):
                raise ValueError(f"filter value for {key!r} must be a scalar, got {v!r}")
        items.append((key, key != "doc_id", values))
    return items
