"""Bounded tokenization, as the server relies on it: long texts go to the fast tokenizer in
slices cut before a space, truncation tokenizes only a prefix, and both give exactly the ids
and offsets of tokenizing the whole text at once (MiniLM's WordPiece and the XLM-R-style
Unigram of the jina-v3 format)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embedder_core import Embedder
from embedder_core.tokenization import CHARS_PER_TOKEN, SLICE_CHARACTERS, TextTokenizer

PIECES = (
    "river",
    "stones",
    "Überraschung",
    "naïve",
    "café",
    "自然呵护",
    "敏感肌专门设计的天然有机护肤产品",
    "🙂",
    "e\u0301",
    "don't",
    "x" * 150,  # past WordPiece's 100 characters per word: one [UNK]
    ",",
    ".",
    "  ",
    "\n",
    "\t",
    "1234567",
)


def text_of(rng: random.Random, characters: int) -> str:
    parts: list[str] = []
    size = 0
    while size < characters:
        piece = rng.choice(PIECES)
        parts.append(piece)
        parts.append(rng.choice((" ", " ", " ", "", "\n", "   ", " \n ")))
        size += len(piece) + 1
    return "".join(parts)


@pytest.fixture(scope="module", params=["minilm", "tiny-jina"])
def tokenizer(request: pytest.FixtureRequest, tiny_jina_dir: Path) -> TextTokenizer:
    if request.param == "minilm":
        directory: Path = request.getfixturevalue("minilm_dir")
        return TextTokenizer.from_dir(directory, lowercase=True)
    return TextTokenizer.from_dir(tiny_jina_dir)


def whole(tokenizer: TextTokenizer, text: str) -> Any:
    return tokenizer._tokenizer.encode(text, add_special_tokens=False)


def test_sliced_tokenization_equals_whole_text(tokenizer: TextTokenizer) -> None:
    rng = random.Random(7)
    texts = [text_of(rng, size) for size in (10, 1000, SLICE_CHARACTERS + 5, 3 * SLICE_CHARACTERS)]
    texts.append(" " * 5 + text_of(rng, 2 * SLICE_CHARACTERS) + "   ")
    encoded = tokenizer.encode_with_offsets(texts)
    ids_only = tokenizer.encode(texts)
    counts = tokenizer.count(texts)
    for text, (ids, offsets), plain, count in zip(texts, encoded, ids_only, counts, strict=True):
        expected = whole(tokenizer, text)
        assert ids == expected.ids == plain
        assert list(zip(offsets.starts, offsets.ends)) == expected.offsets
        assert count == len(expected.ids)


def test_truncated_encoding_is_the_whole_texts_first_tokens(tokenizer: TextTokenizer) -> None:
    rng = random.Random(11)
    texts = [text_of(rng, size) for size in (50, 5000, 4 * SLICE_CHARACTERS)]
    texts.append("x" * 3000 + " " + text_of(rng, 20000))  # too few tokens in the first prefix
    texts.append(" " * 40000 + text_of(rng, 20000))  # a whitespace run: the prefix grows
    for limit in (0, 1, 7, 126, 511):
        cut = tokenizer.encode(texts, max_tokens=limit)
        for text, ids in zip(texts, cut, strict=True):
            assert ids == whole(tokenizer, text).ids[:limit]


class Recording:
    """The real fast tokenizer, recording the longest string it was handed."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.longest = 0

    def encode_batch(self, texts: list[str], **options: Any) -> Any:
        self.longest = max(self.longest, *(len(text) for text in texts))
        return self.tokenizer.encode_batch(texts, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


def test_a_huge_input_is_cut_before_the_tokenizer_sees_it(tiny_jina_dir: Path) -> None:
    embedder = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")
    recording = Recording(embedder._tokenizer._tokenizer)
    embedder._tokenizer._tokenizer = recording
    huge = text_of(random.Random(3), 400_000)
    short = huge[: huge.index(" ", 2000)]
    rows = embedder.encode([huge, "a short one."], truncate=True)
    # The truncated input is computed from a prefix: at most the bound of characters.
    assert recording.longest <= (embedder.max_tokens + 16) * CHARS_PER_TOKEN * 4
    assert np.allclose(rows[0], embedder.encode(short, truncate=True)[0], atol=1e-6)
    # Counting it (for the token-limit error, or count_tokens) goes slice by slice.
    recording.longest = 0
    with pytest.raises(ValueError, match="over the model's limit of 128"):
        embedder.encode(huge, truncate=False)
    assert embedder.count_tokens(huge) == [len(whole(embedder._tokenizer, huge).ids) + 2]
    assert recording.longest <= 2 * SLICE_CHARACTERS
