"""Tokenization through the `tokenizers` library, with special tokens placed by us.

We tokenize content without special tokens and add the checkpoint's own prefix/suffix
(``<s>``/``</s>`` or ``[CLS]``/``[SEP]``) ourselves: late chunking needs to know where
each piece starts, and truncation must keep the specials.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer, normalizers

_PROBE = "hello"

Span = tuple[int, int]  # character offsets [start, end)


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
    def special_count(self) -> int:
        return len(self.prefix_ids) + len(self.suffix_ids)

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, without special tokens."""
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[list[int], TokenOffsets]]:
        """Token ids and character offsets of each text, without special tokens."""
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [(e.ids, TokenOffsets(e.offsets)) for e in encodings]


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
