"""Splitting a document into chunks, as character spans of the original text.

Chunkers work on the document's own tokenization (token character offsets), so chunk
sizes are in model tokens and no text is ever re-assembled.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from typing import Literal, Union

Span = tuple[int, int]
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


def token_range(offsets: Sequence[Span], span: Span) -> tuple[int, int]:
    """Indices [first, last) of the tokens whose characters overlap ``span``.

    Offsets are non-decreasing, so the overlapping tokens form one contiguous run.
    """
    ends = [end for _, end in offsets]
    starts = [start for start, _ in offsets]
    return bisect_right(ends, span[0]), bisect_left(starts, span[1])


def chunk_spans(
    text: str, offsets: Sequence[Span], chunker: Chunker, chunk_size: int
) -> list[Span]:
    """Character spans of the chunks of ``text`` (its token ``offsets`` give chunk sizes)."""
    if callable(chunker):
        return check_spans(text, chunker(text))
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
    if chunker == "tokens":
        return _token_chunks(offsets, 0, len(offsets), chunk_size)
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


def _token_chunks(offsets: Sequence[Span], first: int, last: int, size: int) -> list[Span]:
    return [(offsets[i][0], offsets[min(i + size, last) - 1][1]) for i in range(first, last, size)]


def _sentence_chunks(text: str, offsets: Sequence[Span], chunk_size: int) -> list[Span]:
    starts = [start for start, _ in offsets]
    chunks: list[Span] = []
    current: Span | None = None
    current_tokens = 0
    for sentence in sentence_spans(text):
        first, last = bisect_left(starts, sentence[0]), bisect_left(starts, sentence[1])
        tokens = last - first
        if tokens > chunk_size:  # a sentence too long for one chunk is cut by tokens
            if current:
                chunks.append(current)
                current, current_tokens = None, 0
            chunks.extend(_token_chunks(offsets, first, last, chunk_size))
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
