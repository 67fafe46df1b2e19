"""Late chunking for framework chunks: group them per source document, rebuild the source.

Node parsers and splitters hand over chunks, not documents. To late-chunk them, each source
document's text is rebuilt from its own chunks and encoded once; every chunk is then pooled
over its own character span of that text (``Embedder.embed_spans``). Chunks of different
sources are never joined, and overlapping chunks (``chunk_overlap``, ``split_overlap``) share
their text instead of repeating it.

Both the LlamaIndex and the Haystack adapters use this module; they only translate their
framework's chunk metadata into ``SourceChunk``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from embedder_core import EmbedderProtocol

__all__ = ["LateChunked", "SourceChunk", "SourceLayout", "late_chunk", "layout_source"]


@dataclass(frozen=True)
class SourceChunk:
    """One chunk of a source document, as a framework describes it.

    ``start`` is the chunk's character offset in the source document (LlamaIndex
    ``start_char_idx``, Haystack ``split_idx_start``), or None when the framework did not record
    it. ``order`` is the chunk's position in document order (Haystack ``split_id``, the node's
    place in its PREVIOUS/NEXT chain); it is only used when some offset is missing.
    ``chunk_id`` names the chunk in error messages.
    """

    source_id: str
    chunk_id: str
    text: str
    start: int | None
    order: int = 0


@dataclass(frozen=True)
class SourceLayout:
    """A rebuilt source text and each chunk's character span in it (input order)."""

    text: str
    spans: list[tuple[int, int]]


@dataclass(frozen=True)
class LateChunked:
    """Result of ``late_chunk``: one float32 row per chunk (input order) and the rebuilt sources."""

    embeddings: np.ndarray
    source_texts: list[str]


def _check_chunk(chunk: SourceChunk) -> None:
    if not isinstance(chunk.text, str):
        raise TypeError(
            f"chunk {chunk.chunk_id!r} of source {chunk.source_id!r} has text of type "
            f"{type(chunk.text).__name__}; expected str"
        )
    if not chunk.text.strip():
        raise ValueError(
            f"chunk {chunk.chunk_id!r} of source {chunk.source_id!r} is empty or whitespace only"
        )
    if chunk.start is not None and (
        isinstance(chunk.start, bool) or not isinstance(chunk.start, int) or chunk.start < 0
    ):
        raise ValueError(
            f"chunk {chunk.chunk_id!r} of source {chunk.source_id!r} has character offset "
            f"{chunk.start!r}; expected a non-negative int or None"
        )


def _tail(parts: list[str], n: int) -> str:
    """The last ``n`` characters of ``"".join(parts)``, reading only the parts it needs."""
    taken: list[str] = []
    length = 0
    for part in reversed(parts):
        if length >= n:
            break
        taken.append(part)
        length += len(part)
    joined = "".join(reversed(taken))
    return joined[len(joined) - n :] if n else ""


def _needs_space(before: str, after: str) -> bool:
    return not before[-1:].isspace() and not after[:1].isspace()


def _layout_by_offsets(chunks: Sequence[SourceChunk]) -> SourceLayout:
    # Sweep the chunks by source offset. Covered source text is copied once; a chunk that
    # starts inside covered text must agree with it and only adds what lies past the end.
    # A gap (text no chunk covers, usually whitespace a splitter dropped) becomes one space,
    # unless the text on either side of it is already whitespace.
    by_position = sorted(
        range(len(chunks)),
        key=lambda i: (chunks[i].start, -len(chunks[i].text), chunks[i].chunk_id, i),
    )
    out_parts: list[str] = []  # rebuilt text, all runs
    run_parts: list[str] = []  # the current run of contiguous source text
    out_length = 0
    run_source_start = run_out_start = 0
    covered_until = -1  # source offset where the current run ends; -1 before the first chunk
    spans: list[tuple[int, int]] = [(0, 0)] * len(chunks)
    for i in by_position:
        chunk = chunks[i]
        start = chunk.start
        assert start is not None  # layout_source only calls this when every offset is known
        end = start + len(chunk.text)
        if start > covered_until:  # a new run: the first chunk, or one after a gap
            if out_parts and _needs_space(out_parts[-1], chunk.text):
                out_parts.append(" ")
                out_length += 1
            run_parts = []
            run_source_start, run_out_start = start, out_length
            new_text = chunk.text
        elif start == covered_until:
            new_text = chunk.text
        else:
            overlap = min(end, covered_until) - start
            covered = _tail(run_parts, covered_until - start)[:overlap]
            if covered != chunk.text[:overlap]:
                raise ValueError(
                    f"chunks of source {chunk.source_id!r} disagree at character {start}: chunk "
                    f"{chunk.chunk_id!r} has {chunk.text[:overlap][:40]!r} where another chunk "
                    f"has {covered[:40]!r}; their offsets do not match their text"
                )
            new_text = chunk.text[overlap:]
        if new_text:
            out_parts.append(new_text)
            run_parts.append(new_text)
            out_length += len(new_text)
            covered_until = end
        span_start = run_out_start + (start - run_source_start)
        spans[i] = (span_start, span_start + len(chunk.text))
    return SourceLayout("".join(out_parts), spans)


def _layout_in_order(chunks: Sequence[SourceChunk]) -> SourceLayout:
    # Without offsets, nothing tells where chunks overlap: join them in document order,
    # with a space where neither side already has whitespace.
    by_order = sorted(range(len(chunks)), key=lambda i: (chunks[i].order, i))
    parts: list[str] = []
    length = 0
    spans: list[tuple[int, int]] = [(0, 0)] * len(chunks)
    for i in by_order:
        text = chunks[i].text
        if parts and _needs_space(parts[-1], text):
            parts.append(" ")
            length += 1
        spans[i] = (length, length + len(text))
        parts.append(text)
        length += len(text)
    return SourceLayout("".join(parts), spans)


def layout_source(chunks: Sequence[SourceChunk]) -> SourceLayout:
    """Rebuild one source document's text from its chunks; return it with each chunk's span.

    When every chunk has a character offset, each chunk's text is laid at its offset:
    overlapping chunks must agree on the text they share (else ``ValueError``), which is written
    once; an uncovered gap becomes one space (none if either side is already whitespace).
    Each span covers exactly its chunk's text.

    When any offset is missing, the chunks are joined in document order (``order``) with a
    space between them where neither side has whitespace. Overlapping text then cannot be
    recognised and appears once per chunk that holds it.
    """
    if not chunks:
        raise ValueError("a source needs at least one chunk")
    for chunk in chunks:
        _check_chunk(chunk)
    if all(chunk.start is not None for chunk in chunks):
        return _layout_by_offsets(chunks)
    return _layout_in_order(chunks)


def late_chunk(
    embedder: EmbedderProtocol,
    chunks: Sequence[SourceChunk],
    *,
    task: str | None,
    dimensions: int | None,
    normalized: bool,
    show_progress: bool = False,
) -> LateChunked:
    """Late-chunk ``chunks``: one encoding per source document, one row per chunk.

    Chunks are grouped by ``source_id``; each group becomes one rebuilt source text
    (``layout_source``), and all sources go to ``embedder.embed_spans`` in one call (batched
    across documents by the core, windowed past the model's token limit). Sources are
    processed in ``source_id`` order, so the result never depends on the order of ``chunks``.
    """
    groups: dict[str, list[int]] = {}
    for i, chunk in enumerate(chunks):
        groups.setdefault(chunk.source_id, []).append(i)
    if not chunks:
        return LateChunked(np.zeros((0, dimensions or embedder.dimension), np.float32), [])
    source_ids = sorted(groups)
    layouts = [layout_source([chunks[i] for i in groups[s]]) for s in source_ids]
    per_source = embedder.embed_spans(
        [(layout.text, layout.spans) for layout in layouts],
        task=task,
        dimensions=dimensions,
        normalized=normalized,
        show_progress=show_progress,
    )
    width = per_source[0].shape[1]
    rows = np.empty((len(chunks), width), dtype=np.float32)
    for source_id, source_rows in zip(source_ids, per_source, strict=True):
        rows[groups[source_id]] = source_rows
    return LateChunked(rows, [layout.text for layout in layouts])
