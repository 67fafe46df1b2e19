"""Request bodies of the server, as pydantic models (they make the OpenAPI schema at /docs).

Unknown fields are refused (422), as the OpenAI API refuses unrecognized arguments, so a
misspelt option never passes silently. Types are strict: ``"dimensions": "256"`` is an
error, not 256. What the core checks (task names, the dimensions range, empty or non-string
inputs, token limits) it checks itself, so the server and ``Embedder.encode`` refuse the
same things with the same messages.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EmbeddingTypeName = Literal["float", "base64", "binary", "ubinary", "int8", "uint8"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LateChunkingOptionsBody(_Body):
    """``embedder_core.LateChunkingOptions``: how a late-chunked document longer than one
    window is split (extension; the hosted APIs do not have it)."""

    window: int | None = Field(default=None, description="Largest window in tokens.")
    overlap: int = Field(default=512, description="Tokens of left context every token keeps.")


class EmbeddingsRequest(_Body):
    """``POST /v1/embeddings``: the Jina API's request and OpenAI's, in one shape."""

    input: str | list[Any] = Field(
        description='A string, a list of strings, or a list of {"text": ...} objects.'
    )
    model: str | None = Field(default=None, description="The served model; omit for it.")
    task: str | None = Field(
        default=None,
        description="retrieval.query, retrieval.passage, separation, classification, "
        "text-matching (jina-embeddings-v3); omit for no task.",
    )
    dimensions: int | None = Field(default=None, description="Matryoshka width; omit: full.")
    late_chunking: bool = Field(
        default=False, description="The inputs are consecutive pieces of one document."
    )
    late_chunking_options: LateChunkingOptionsBody | None = None
    embedding_type: EmbeddingTypeName | None = Field(
        default=None, description="Jina API output type (default float)."
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        default=None, description="OpenAI output type; same as embedding_type."
    )
    normalized: bool = Field(default=True, description="L2-normalize the embeddings.")
    truncate: bool = Field(
        default=False,
        description="Cut inputs past the model's token limit; false: such an input is a 400.",
    )
    user: str | None = Field(default=None, description="OpenAI's end-user id; ignored.")


class CountTokensRequest(_Body):
    """``POST /v1/x/count-tokens`` (extension)."""

    input: str | list[Any]
    task: str | None = None
    model: str | None = None


class ChunkRequest(_Body):
    """``POST /v1/x/chunk`` (extension): character spans of each text's chunks."""

    input: str | list[Any]
    chunker: str = Field(default="sentences", description='"sentences" or "tokens".')
    chunk_size: int = Field(default=256, description="Maximum tokens per chunk.")
    model: str | None = None


class SpanDocument(_Body):
    text: str
    spans: list[list[int]] = Field(description="[start, end] pairs of character offsets.")


class EmbedSpansRequest(_Body):
    """``POST /v1/x/embed-spans`` (extension): late-chunk documents over given spans."""

    documents: list[SpanDocument]
    task: str | None = "retrieval.passage"
    dimensions: int | None = None
    normalized: bool = True
    late_chunking_options: LateChunkingOptionsBody | None = None
    embedding_type: Literal["float", "base64"] = "float"
    model: str | None = None
