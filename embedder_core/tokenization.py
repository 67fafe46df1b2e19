"""Tokenization through the `tokenizers` library, with special tokens placed by us.

We tokenize content without special tokens and add the checkpoint's own prefix/suffix
(``<s>``/``</s>`` or ``[CLS]``/``[SEP]``) ourselves: late chunking needs to know where
each piece starts, and truncation must keep the specials.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Sequence
from pathlib import Path

from tokenizers import Tokenizer, normalizers

_PROBE = "hello"

Span = tuple[int, int]  # character offsets [start, end)

#: Characters given to the fast tokenizer in one call. Its working structures (normalized
#: strings with per-byte alignments, ``Encoding`` objects) take about 150 bytes per character
#: (measured: +300 MB at peak for one 2 MB text on MiniLM), so longer texts are tokenized in
#: slices of about this size, cut only before a space, and only their ids are kept.
SLICE_CHARACTERS = 1 << 16
#: Characters per token assumed when cutting a text before truncating it by tokens. Natural
#: text averages 2-5; when a prefix this long holds too few tokens (long words, whitespace
#: runs), the prefix grows until it holds enough or is the whole text, so the cut is exact.
CHARS_PER_TOKEN = 8
#: Tokens tokenized past a truncation limit, so no kept token lies next to the cut.
_CUT_MARGIN = 16
# Every pre-tokenizer of the supported families (BERT, Metaspace, byte-level BPE) starts a
# new word at a space (Metaspace at no other whitespace), so a text cut just before a space
# tokenizes as its two parts do: slices and prefixes are only ever cut there. Never inside a
# run of whitespace: normalizers that collapse runs of spaces would then keep one space more.
_CUT = re.compile(r"(?<=\S) ")


class TextTokenizer:
    """A fast tokenizer plus the special tokens its template puts around one sequence."""

    def __init__(self, tokenizer: Tokenizer, prefix_ids: list[int], suffix_ids: list[int]) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self.prefix_ids = prefix_ids
        self.suffix_ids = suffix_ids

    @classmethod
    def from_dir(
        cls,
        model_dir: Path,
        *,
        bos_token_id: int | None = None,
        eos_token_id: int | None = None,
        lowercase: bool = False,
    ) -> TextTokenizer:
        """The tokenizer of ``model_dir``; ``lowercase`` adds a Lowercase normalizer in front
        (sentence-transformers' ``do_lower_case``; normalizers keep character offsets)."""
        file = model_dir / "tokenizer.json"
        if file.is_file():
            tokenizer = Tokenizer.from_file(str(file))
        else:  # e.g. only a sentencepiece model: let transformers convert it to a fast tokenizer
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(
                str(model_dir), local_files_only=True, trust_remote_code=False
            ).backend_tokenizer
        if lowercase:
            steps = [normalizers.Lowercase()]
            if tokenizer.normalizer is not None:
                steps.append(tokenizer.normalizer)
            tokenizer.normalizer = normalizers.Sequence(steps)
        prefix, suffix = _template_specials(tokenizer)
        if not prefix and not suffix:
            # Some exports (e.g. all-MiniLM-L6-v2) leave the post-processor out of
            # tokenizer.json; transformers knows the specials from the tokenizer config.
            prefix, suffix = _transformers_specials(model_dir)
        if not prefix and not suffix and bos_token_id is not None and eos_token_id is not None:
            prefix, suffix = [bos_token_id], [eos_token_id]
        return cls(tokenizer, prefix, suffix)

    @property
    def vocab_size(self) -> int:
        """Ids of this tokenizer, added tokens included: valid ids are 0 to this - 1."""
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    @property
    def special_count(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)

    def encode(self, texts: Sequence[str], *, max_tokens: int | None = None) -> list[list[int]]:
        """Token ids of each text, without special tokens.

        ``max_tokens``: only the first ``max_tokens`` ids of each text, tokenized from a
        prefix of it (``CHARS_PER_TOKEN`` characters per token, grown until it holds enough
        tokens), so a long text costs what its first tokens cost; the ids are the same as
        the first ones of the whole text's.
        """
        if max_tokens is None:
            return [ids for ids, _ in self._encode(texts, offsets=False)]
        if max_tokens < 0:
            raise ValueError(f"max_tokens must be at least 0, got {max_tokens}")
        wanted = max_tokens + _CUT_MARGIN
        bound = wanted * CHARS_PER_TOKEN
        prefixes = [_prefix(text, bound) for text in texts]
        out = [ids for ids, _ in self._encode(prefixes, offsets=False)]
        for i, (text, prefix) in enumerate(zip(texts, prefixes)):
            grown = bound
            while len(out[i]) < wanted and len(prefix) < len(text):  # too few tokens: grow
                grown *= 4
                prefix = _prefix(text, grown)
                out[i] = self._encode([prefix], offsets=False)[0][0]
            del out[i][max_tokens:]
        return out

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, without special tokens (the length of ``encode``'s ids),
        computed slice by slice so no text's ids or offsets are held at once."""
        counts = [0] * len(texts)
        for group in _groups(texts):
            batch = [texts[i][start:end] for i, start, end in group]
            encodings = self._tokenizer.encode_batch(batch, add_special_tokens=False)
            for (i, _, _), encoding in zip(group, encodings):
                counts[i] += len(encoding.ids)
        return counts

    def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], TokenOffsets]]:
        """Token ids and character offsets of each text, without special tokens."""
        return [
            (ids, TokenOffsets(offsets or [])) for ids, offsets in self._encode(texts, offsets=True)
        ]

    def _encode(
        self, texts: Sequence[str], *, offsets: bool
    ) -> list[tuple[list[int], list[Span] | None]]:
        """Ids (and offsets) of each text, tokenized in slices of about ``SLICE_CHARACTERS``
        characters (a batch of short texts is one call; a long text is several)."""
        ids: list[list[int]] = [[] for _ in texts]
        spans: list[list[Span]] = [[] for _ in texts]
        for group in _groups(texts):
            batch = [texts[i][start:end] for i, start, end in group]
            encodings = self._tokenizer.encode_batch(batch, add_special_tokens=False)
            for (i, start, _), encoding in zip(group, encodings):
                ids[i].extend(encoding.ids)
                if offsets:
                    spans[i].extend((a + start, b + start) for a, b in encoding.offsets)
        return [(text_ids, spans[i] if offsets else None) for i, text_ids in enumerate(ids)]


def _cut(text: str, position: int) -> int:
    """The first cut at or after ``position`` that falls just before a space that follows
    a non-space character (or the end of the text)."""
    if position >= len(text):
        return len(text)
    found = _CUT.search(text, max(position, 1))
    return found.start() if found is not None else len(text)


def _prefix(text: str, characters: int) -> str:
    """``text`` up to the first space at or after ``characters`` characters."""
    end = _cut(text, characters)
    return text if end >= len(text) else text[:end]


def _slices(text: str) -> Iterator[Span]:
    """[start, end) ranges covering ``text``, each about ``SLICE_CHARACTERS`` long (longer
    when there is no space to cut at), every cut just before a space."""
    start = 0
    while True:
        end = _cut(text, start + SLICE_CHARACTERS)
        yield start, end
        if end >= len(text):
            return
        start = end


def _groups(texts: Sequence[str]) -> Iterator[list[tuple[int, int, int]]]:
    """(text index, start, end) pieces of the texts, grouped into tokenizer calls of about
    ``SLICE_CHARACTERS`` characters each; every text has at least one piece."""
    group: list[tuple[int, int, int]] = []
    size = 0
    for i, text in enumerate(texts):
        for start, end in _slices(text):
            if group and size + end - start > SLICE_CHARACTERS:
                yield group
                group, size = [], 0
            group.append((i, start, end))
            size += end - start
    if group:
        yield group


class TokenOffsets:
    """Character offsets of a document's tokens, for mapping character spans to tokens."""

    def __init__(self, offsets: Sequence[Span]) -> None:
        self.starts = [start for start, _ in offsets]
        self.ends = [end for _, end in offsets]

    def __len__(self) -> int:
        return len(self.starts)

    def token_range(self, span: Span) -> tuple[int, int]:
        """Indices [first, last) of the tokens whose characters overlap ``span``.

        Offsets are non-decreasing, so the overlapping tokens form one contiguous run.
        """
        return bisect_right(self.ends, span[0]), bisect_left(self.starts, span[1])


def _template_specials(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The ids the post-processor adds before and after a single sequence."""
    bare = tokenizer.encode(_PROBE, add_special_tokens=False).ids
    full = tokenizer.encode(_PROBE, add_special_tokens=True).ids
    return _split_specials(bare, full)


def _transformers_specials(model_dir: Path) -> tuple[list[int], list[int]]:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(model_dir), local_files_only=True, trust_remote_code=False
        )
    except (OSError, ValueError):
        return [], []
    bare = tokenizer.encode(_PROBE, add_special_tokens=False)
    full = tokenizer.encode(_PROBE, add_special_tokens=True)
    return _split_specials(bare, full)


def _split_specials(bare: list[int], full: list[int]) -> tuple[list[int], list[int]]:
    """The ids before and after ``bare`` inside ``full``."""
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return full[:start], full[start + len(bare) :]
    return [], []
