"""From pooled float32 vectors to the API's output types.

- ``float``: float32.
- ``ubinary``: sign bits (x > 0) packed 8 per byte, big-endian bit order (``np.packbits``), uint8.
- ``binary``: the same packed sign bits as int8, each byte offset by -128
  (``ubinary - 128``: an offset, not a reinterpretation of the bits). Everywhere in the core
  "binary" means this form; ``binary + 128`` gives the ``ubinary`` bytes back.
- ``int8`` / ``uint8``: symmetric per-vector scaling. With ``m = max|x|`` of the vector,
  ``int8 = round(127 * x / m)`` in [-127, 127] and ``uint8 = round(127.5 * (x / m + 1))`` in
  [0, 255]. The calibration range of each vector is its own [-m, m], so the result never
  depends on the rest of the batch and nothing is clipped; the scale is per vector, so
  compare quantized vectors by cosine, not raw dot product.
- ``base64`` (deprecated, goes in the next release): each float32 vector as little-endian
  bytes, base64-encoded, as ``str``; the only type that is not an ``np.ndarray``. base64 is
  a wire format: the server and its client encode and decode it, the core returns arrays.
"""

from __future__ import annotations

import base64
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .errors import user_stacklevel

#: Every ``embedding_type`` the core accepts ("base64" is deprecated).
EmbeddingType = Literal["float", "binary", "ubinary", "int8", "uint8", "base64"]
#: The embedding types returned as one ``np.ndarray`` (every one but the deprecated "base64").
ArrayEmbeddingType = Literal["float", "binary", "ubinary", "int8", "uint8"]
EMBEDDING_TYPES: tuple[str, ...] = ("float", "binary", "ubinary", "int8", "uint8", "base64")


def check_embedding_type(embedding_type: str) -> None:
    """Refuse an unknown type; warn (DeprecationWarning) for "base64", at the caller's line."""
    if embedding_type not in EMBEDDING_TYPES:
        raise ValueError(
            f"unknown embedding_type {embedding_type!r}; "
            f"expected one of {', '.join(EMBEDDING_TYPES)}"
        )
    if embedding_type == "base64":
        warnings.warn(
            'embedding_type="base64" is deprecated and goes in the next release: the core '
            "returns arrays (take the float32 rows; base64 is the server's wire format)",
            DeprecationWarning,
            stacklevel=user_stacklevel(),
        )


def truncate_and_normalize(
    vectors: np.ndarray, dimensions: int | None, normalized: bool
) -> np.ndarray:
    """Matryoshka: keep the first ``dimensions`` values, then L2-normalize (in float32)."""
    out = np.ascontiguousarray(vectors[:, :dimensions] if dimensions else vectors, dtype=np.float32)
    if normalized and len(out):
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out = out / np.maximum(norms, np.finfo(np.float32).tiny)
    return out


def convert_embeddings(vectors: np.ndarray, embedding_type: EmbeddingType) -> np.ndarray:
    """Convert float rows to ``embedding_type`` (see the module docstring for the formats).

    The deprecated "base64" warns and still returns ``list[str]`` for one release.
    """
    check_embedding_type(embedding_type)
    return convert_checked(vectors, embedding_type)


def convert_checked(vectors: np.ndarray, embedding_type: str) -> Any:
    """``convert_embeddings`` for a type already checked (and warned about)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise ValueError(f"expected a 2-D array of embeddings, got shape {vectors.shape}")
    if embedding_type == "float":
        return vectors
    if embedding_type == "base64":
        little = vectors.astype("<f4", copy=False)
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in little]
    if embedding_type in ("ubinary", "binary"):
        packed = np.packbits(vectors > 0, axis=1)
        if embedding_type == "ubinary":
            return packed
        return (packed.astype(np.int16) - 128).astype(np.int8)
    scale = np.abs(vectors).max(axis=1, keepdims=True)
    unit = vectors / np.maximum(scale, np.finfo(np.float32).tiny)
    if embedding_type == "int8":
        return np.clip(np.rint(unit * 127.0), -127, 127).astype(np.int8)
    return np.clip(np.rint((unit + 1.0) * 127.5), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class DocumentChunk:
    """A chunk of a document: ``text == document[start:end]``, and its embedding."""

    text: str
    start: int
    end: int
    embedding: np.ndarray


def document_chunks(
    texts: Sequence[str],
    spans: Sequence[Sequence[tuple[int, int]]],
    vectors: Sequence[np.ndarray],
) -> list[list[DocumentChunk]]:
    """Each document's chunks: its spans with their text and their rows of ``vectors``."""
    return [
        [DocumentChunk(text[start:end], start, end, row) for (start, end), row in zip(doc, rows)]
        for text, doc, rows in zip(texts, spans, vectors)
    ]
