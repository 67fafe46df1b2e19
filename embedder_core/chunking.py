"""Splitting a document into chunks, as character spans of the original text.

Chunkers work on the document's own tokenization (token character offsets), so chunk
sizes are in model tokens and no text is ever re-assembled.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Literal, Union

from .tokenization import Span, TokenOffsets

SpanChunker = Callable[[str], Sequence[Span]]
Chunker = Union[Literal["sentences", "tokens"], SpanChunker]  # noqa: UP007 - runtime alias on 3.10

# A sentence ends at Latin-style terminators followed by whitespace, at CJK/Indic/Arabic/
# Ethiopic terminators (no space needed after them), or at a blank line.
_SENTENCE_END = re.compile(
    r"[.!?…]+[\"'”’)\]»]*\s+"
    r"|[。！？｡．︒﹒।॥؟۔።፧]+[\"'”’」』）)\]»]*\s*"
    r"|\n\s*\n"
)


def sentence_spans(text: str) -> list[Span]:
    """Character spans of the sentences of ``text``, without surrounding whitespace."""
    spans: list[Span] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        _append_trimmed(text, start, match.end(), spans)
        start = match.end()
    _append_trimmed(text, start, len(text), spans)
    return spans


def _append_trimmed(text: str, start: int, end: int, spans: list[Span]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if start < end:
        spans.append((start, end))


def chunk_spans(text: str, offsets: TokenOffsets, chunker: Chunker, chunk_size: int) -> list[Span]:
    """Character spans of the chunks of ``text`` (its token ``offsets`` give chunk sizes)."""
    if callable(chunker):
        return check_spans(text, chunker(text))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if chunker == "tokens":
        return _token_chunks(text, offsets, 0, len(offsets), chunk_size)
    if chunker == "sentences":
        return _sentence_chunks(text, offsets, chunk_size)
    raise ValueError(f"unknown chunker {chunker!r}; expected 'sentences', 'tokens' or a callable")


def check_spans(text: str, spans: Sequence[Span]) -> list[Span]:
    checked: list[Span] = []
    for i, span in enumerate(spans):
        try:
            start, end = (int(v) for v in span)
        except (TypeError, ValueError):
            raise ValueError(f"span {i} is {span!r}, not a (start, end) pair") from None
        if not 0 <= start < end <= len(text):
            raise ValueError(
                f"span {i} ({start}, {end}) is empty or outside the text (length {len(text)})"
            )
        checked.append((start, end))
    return checked


def _token_chunks(text: str, offsets: TokenOffsets, first: int, last: int, size: int) -> list[Span]:
    spans: list[Span] = []
    for i in range(first, last, size):
        # A token's offsets may include the space before its word ("▁The"): trim it.
        _append_trimmed(text, offsets.starts[i], offsets.ends[min(i + size, last) - 1], spans)
    return spans


def _sentence_chunks(text: str, offsets: TokenOffsets, chunk_size: int) -> list[Span]:
    chunks: list[Span] = []
    current: Span | None = None
    current_tokens = 0
    for sentence in sentence_spans(text):
        first, last = offsets.token_range(sentence)
        tokens = last - first
        if tokens > chunk_size:  # a sentence too long for one chunk is cut by tokens
            if current:
                chunks.append(current)
                current, current_tokens = None, 0
            chunks.extend(_token_chunks(text, offsets, first, last, chunk_size))
            continue
        if current and current_tokens + tokens <= chunk_size:
            current = (current[0], sentence[1])
            current_tokens += tokens
        else:
            if current:
                chunks.append(current)
            current, current_tokens = sentence, tokens
    if current:
        chunks.append(current)
    return chunks
