"""Inputs of the benchmarks: the random full-size checkpoint, exact-length texts, speeches."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tokenizers import Tokenizer

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "jina-connectors-bench"
# The speeches live in shared/, beside the repository checkout.
DEFAULT_SPEECHES = Path(__file__).resolve().parents[2] / "shared" / "data" / "sotu_speeches.jsonl"

FULL_SIZE_CONFIG: dict[str, Any] = {
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "vocab_size": 250002,
    "max_position_embeddings": 8194,
}


class TokenCounter(Protocol):
    def count_tokens(self, texts: Sequence[str], task: str | None = None) -> list[int]: ...


def random_jina_checkpoint(cache_dir: Path, config: dict[str, Any], *, seed: int = 0) -> Path:
    """A float32 random jina-v3-format checkpoint for `config`, generated once and cached.

    Written to a scratch directory and renamed into place, so an interrupted generation is
    never mistaken for a finished one.
    """
    from embedder_core.testing import write_tiny_jina_checkpoint

    # "lora": the adapters' spread scales with width (embedder_core.testing) since then.
    key = json.dumps(
        {"config": config, "seed": seed, "dtype": "float32", "lora": "width-scaled"},
        sort_keys=True,
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    directory = cache_dir / f"jina-v3-random-{config.get('hidden_size', 'tiny')}-{digest}"
    if (directory / "model.safetensors").is_file():
        return directory
    scratch = directory.with_name(directory.name + ".partial")
    shutil.rmtree(scratch, ignore_errors=True)
    write_tiny_jina_checkpoint(scratch, seed=seed, dtype=torch.float32, **config)
    scratch.rename(directory)
    return directory


def log_uniform_lengths(count: int, low: int, high: int, *, seed: int) -> list[int]:
    """`count` token lengths, log-uniform between `low` and `high` inclusive, seeded."""
    rng = np.random.default_rng(seed)
    logs = rng.uniform(math.log(low), math.log(high), size=count)
    return [int(min(high, max(low, round(math.exp(value))))) for value in logs]


def single_token_words(
    embedder: TokenCounter, model_dir: Path, task: str | None
) -> tuple[list[str], int]:
    """Words that tokenize to exactly one token, and the tokens every input adds.

    Candidates are the tokenizer's word-initial alphabetic pieces; each is kept only if
    `embedder.count_tokens` confirms it is one token (whatever the tokenizer's scheme).
    """
    vocab = Tokenizer.from_file(str(model_dir / "tokenizer.json")).get_vocab()
    candidates = sorted(
        {
            piece.lstrip("▁Ġ")
            for piece in vocab
            if not piece.startswith("##") and piece.lstrip("▁Ġ").isalpha()
        }
    )
    counts = embedder.count_tokens(candidates, task=task)
    overhead = min(counts) - 1  # specials + task instruction
    words = [word for word, count in zip(candidates, counts, strict=True) if count == overhead + 1]
    if not words:
        raise RuntimeError(f"no single-token words in the tokenizer of {model_dir}")
    return words, overhead


def exact_length_texts(
    embedder: TokenCounter,
    model_dir: Path,
    lengths: Sequence[int],
    *,
    task: str | None,
    seed: int,
) -> list[str]:
    """Texts of random single-token words whose token counts (specials included) are `lengths`.

    Each count is verified with `embedder.count_tokens`, so the benchmarks time exactly the
    token lengths they report.
    """
    words, overhead = single_token_words(embedder, model_dir, task)
    rng = np.random.default_rng(seed)
    texts = []
    for length in lengths:
        if length <= overhead:
            raise ValueError(f"length {length} leaves no room next to {overhead} special tokens")
        texts.append(" ".join(rng.choice(words, size=length - overhead)))
    counts = embedder.count_tokens(texts, task=task)
    wrong = [(want, got) for want, got in zip(lengths, counts, strict=True) if want != got]
    if wrong:
        raise RuntimeError(f"texts of the wrong token length (wanted, got): {wrong[:5]}")
    return texts


# --- speeches -----------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"“(\[A-Z])")


def load_speeches(path: Path) -> list[dict[str, Any]]:
    """The State of the Union addresses: dicts with id, year, president, party, text."""
    if not path.is_file():
        raise FileNotFoundError(
            f"speeches not found at {path}: pass --speeches PATH to sotu_speeches.jsonl"
        )
    with path.open(encoding="utf-8") as file:
        return [json.loads(line) for line in file if line.strip()]


def sentences(text: str) -> list[str]:
    return [sentence for sentence in _SENTENCE_END.split(text) if sentence.strip()]


def speech_paragraphs(speeches: Sequence[dict[str, Any]], count: int, *, seed: int) -> list[str]:
    """`count` paragraphs of mixed lengths from the speeches, in reading order.

    The speeches carry no paragraph breaks, so a paragraph here is a run of 1 to 8
    consecutive sentences (count drawn per paragraph, seeded): lengths from one short
    sentence to a few hundred tokens, as in real documents.
    """
    rng = np.random.default_rng(seed)
    paragraphs: list[str] = []
    for speech in speeches:
        pending = sentences(speech["text"])
        while pending and len(paragraphs) < count:
            take = int(rng.integers(1, 9))
            paragraphs.append(" ".join(pending[:take]))
            pending = pending[take:]
        if len(paragraphs) >= count:
            break
    if len(paragraphs) < count:
        raise ValueError(f"the speeches give {len(paragraphs)} paragraphs, {count} wanted")
    return paragraphs


def document_prefix(embedder: TokenCounter, text: str, max_tokens: int, *, task: str | None) -> str:
    """The longest run of whole leading sentences of `text` within `max_tokens` tokens."""
    parts = sentences(text)
    low, high = 1, len(parts)  # invariant: parts[:low] fits (checked below), parts[:high+1] not
    if embedder.count_tokens([parts[0]], task=task)[0] > max_tokens:
        raise ValueError("the first sentence alone exceeds the token budget")
    while low < high:
        middle = (low + high + 1) // 2
        if embedder.count_tokens([" ".join(parts[:middle])], task=task)[0] <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return " ".join(parts[:low])
