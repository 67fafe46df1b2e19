"""The embedder surface every adapter relies on, as a ``typing.Protocol``.

``Embedder`` (a model in this process) and ``jina_connectors.remote.RemoteEmbedder`` (a
model behind a ``jina-connectors serve`` server) both implement it, so the LlamaIndex and
Haystack adapters, the ingestion pipeline, the sinks' ``search`` and the CLI take either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: importing the protocol imports no numpy or torch
    import numpy as np

    from .chunking import Chunker, Span
    from .late_chunking import LateChunkingOptions
    from .output import DocumentChunk, EmbeddingType

__all__ = ["EmbedderProtocol"]


@runtime_checkable
class EmbedderProtocol(Protocol):
    """What adapters call on an embedder; see ``docs/guide/python-api.md`` for the semantics.

    Bad input raises the same typed errors whichever implementation runs it
    (``ValueError``, ``TypeError``, ``TokenLimitError``, ``UnsupportedModelError``).
    """

    @property
    def model_name(self) -> str:
        """The model's canonical identity (what collections record)."""
        ...

    @property
    def dimension(self) -> int:
        """Full width of the embeddings."""
        ...

    @property
    def max_tokens(self) -> int:
        """Token limit of one sequence, special tokens included."""
        ...

    @property
    def tasks(self) -> tuple[str, ...]:
        """Valid task names."""
        ...

    @property
    def has_adapters(self) -> bool:
        """True when tasks select LoRA weights."""
        ...

    @property
    def supports_late_chunking(self) -> bool:
        """False for models that pool one token (CLS, last token)."""
        ...

    def instruction(self, task: str | None) -> str:
        """The text prepended to inputs of ``task``."""
        ...

    def count_tokens(self, texts: str | Sequence[str], task: str | None = None) -> list[int]:
        """Tokens each text takes, special tokens and task instruction included."""
        ...

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        task: str | Sequence[str | None] | None = None,
        dimensions: int | None = None,
        late_chunking: bool = False,
        late_chunking_options: LateChunkingOptions | None = None,
        normalized: bool = True,
        embedding_type: EmbeddingType = "float",
        truncate: bool = True,
        show_progress: bool = False,
    ) -> np.ndarray:
        """One row per input, in input order, as an ``np.ndarray`` of ``embedding_type``
        (the deprecated ``"base64"`` still gives ``list[str]`` for one release)."""
        ...

    def chunk(
        self, texts: str | Sequence[str], *, chunker: Chunker = "sentences", chunk_size: int = 256
    ) -> list[list[Span]]:
        """Character spans of each text's chunks (sizes in this model's tokens)."""
        ...

    def embed_spans(
        self,
        documents: Sequence[tuple[str, Sequence[Span]]],
        *,
        task: str | None = "retrieval.passage",
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
        show_progress: bool = False,
    ) -> list[np.ndarray]:
        """Late-chunk each (document, character spans) pair; float32 rows per span."""
        ...

    def embed_documents(
        self,
        texts: Sequence[str],
        *,
        task: str | None = "retrieval.passage",
        chunker: Chunker = "sentences",
        chunk_size: int = 256,
        dimensions: int | None = None,
        normalized: bool = True,
        late_chunking_options: LateChunkingOptions | None = None,
        show_progress: bool = False,
    ) -> list[list[DocumentChunk]]:
        """Split each document into chunks and late-chunk it; one list per document."""
        ...
