"""Bad input gets a clear, typed error before any model work."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from embedder_core import Embedder, TokenLimitError

VALID_TASKS = (
    "retrieval.query",
    "retrieval.passage",
    "separation",
    "classification",
    "text-matching",
)


@pytest.fixture(scope="module")
def embedder(tiny_jina_embedder: Embedder) -> Embedder:
    return tiny_jina_embedder


@pytest.fixture
def forward_calls() -> Iterator[list[str]]:
    """Names of torch modules run while the test runs (a global forward pre-hook)."""
    calls: list[str] = []
    handle = torch.nn.modules.module.register_module_forward_pre_hook(
        lambda module, args: calls.append(type(module).__name__)
    )
    yield calls
    handle.remove()


def text_with_token_count(embedder: Embedder, count: int) -> str:
    """A varied text that takes exactly `count` tokens (specials included, no task)."""
    words = ("the people of 自由 union state liberty " * count).split()[:count]
    prefixes = [" ".join(words[: k + 1]) for k in range(len(words))]
    fitting = [p for p, n in zip(prefixes, embedder.count_tokens(prefixes)) if n <= count]
    text = fitting[-1]
    while (current := embedder.count_tokens([text])[0]) < count:
        text += " a" * (count - current)  # "▁a" is one token
    assert current == count
    return text


# Each case: (description, call, error type, regex the message must match).
Case = tuple[str, Callable[[Embedder], Any], type[Exception], str]
BAD_CALLS: list[Case] = [
    (
        "unknown task",
        lambda e: e.encode(["a", "b"], task="retrieval"),
        ValueError,
        "retrieval",
    ),
    (
        "unknown task in a per-row list",
        lambda e: e.encode(["a", "b"], task=["separation", "query"]),
        ValueError,
        "query",
    ),
    (
        "task list of the wrong length",
        lambda e: e.encode(["a", "b", "c"], task=["separation", "separation"]),
        ValueError,
        "task",
    ),
    ("dimensions zero", lambda e: e.encode(["a"], dimensions=0), ValueError, "dimensions"),
    ("dimensions too big", lambda e: e.encode(["a"], dimensions=33), ValueError, "dimensions"),
    ("dimensions float", lambda e: e.encode(["a"], dimensions=4.0), ValueError, "dimensions"),
    ("non-string", lambda e: e.encode(["ok", "fine", 3, "x"]), TypeError, r"\b2\b"),
    ("None in list", lambda e: e.encode(["ok", None]), TypeError, r"\b1\b"),
    ("bytes", lambda e: e.encode(["ok", b"bytes"]), TypeError, r"\b1\b"),
    ("bytes as texts", lambda e: e.encode(b"bytes"), TypeError, "str"),
    ("empty string", lambda e: e.encode(["ok", ""]), ValueError, r"\b1\b"),
    ("whitespace string", lambda e: e.encode(["a", "b", "c", " \n\t "]), ValueError, r"\b3\b"),
    (
        "late chunking: empty piece",
        lambda e: e.encode(["one", "  "], late_chunking=True),
        ValueError,
        r"\b1\b",
    ),
    (
        "late chunking: two tasks",
        lambda e: e.encode(
            ["one", "two"], task=["separation", "classification"], late_chunking=True
        ),
        ValueError,
        "task",
    ),
    ("embedding type", lambda e: e.encode(["a"], embedding_type="float64"), ValueError, "float64"),
    (
        "embed_document: unknown task",
        lambda e: e.embed_document("One. Two.", task="passage"),
        ValueError,
        "passage",
    ),
    (
        "embed_document: unknown chunker",
        lambda e: e.embed_document("One. Two.", chunker="paragraphs"),
        ValueError,
        "paragraphs",
    ),
    (
        "embed_document: chunk_size 0",
        lambda e: e.embed_document("One. Two.", chunk_size=0),
        ValueError,
        "chunk_size",
    ),
    (
        "embed_document: empty",
        lambda e: e.embed_document("   "),
        ValueError,
        r"\b0\b",
    ),
    (
        "embed_documents: non-string",
        lambda e: e.embed_documents(["One.", 7]),
        TypeError,
        r"\b1\b",
    ),
    (
        "embed_spans: span outside the text",
        lambda e: e.embed_spans([("Hello world.", [(0, 5), (6, 40)])]),
        ValueError,
        r"\b1\b",
    ),
    (
        "embed_spans: empty span",
        lambda e: e.embed_spans([("Hello world.", [(3, 3)])]),
        ValueError,
        r"\b0\b",
    ),
    (
        # The normalizer folds runs of spaces into one: (5, 7) maps to no token.
        "embed_spans: span covering no token",
        lambda e: e.embed_spans([("Hello   world.", [(0, 5), (5, 7)])]),
        ValueError,
        r"\b1\b",
    ),
    (
        "callable chunker returning a bad span",
        lambda e: e.embed_document("Hello world.", chunker=lambda text: [(0, 5), (4, 99)]),
        ValueError,
        r"\b1\b",
    ),
]


@pytest.mark.parametrize(
    ("description", "call", "error", "pattern"), BAD_CALLS, ids=[c[0] for c in BAD_CALLS]
)
def test_bad_input_is_refused_before_model_work(
    embedder: Embedder, forward_calls: list[str], description, call, error, pattern
):
    with pytest.raises(error, match=pattern):
        call(embedder)
    assert forward_calls == [], f"{description}: the model ran before the error"


def test_forward_hook_sees_model_work(embedder: Embedder, forward_calls: list[str]):
    """Control for the test above: a valid call is visible to the hook."""
    embedder.encode(["hello"])
    assert forward_calls


def test_unknown_task_message_lists_valid_tasks(embedder: Embedder):
    with pytest.raises(ValueError) as caught:
        embedder.encode("hello", task="retrieval")
    for task in VALID_TASKS:
        assert task in str(caught.value)


def test_task_must_be_str(embedder: Embedder):
    with pytest.raises(TypeError):
        embedder.encode(["a"], task=[3])


def test_empty_list_gives_empty_array(embedder: Embedder, forward_calls: list[str]):
    assert embedder.encode([]).shape == (0, 32)
    assert embedder.encode([]).dtype == np.float32
    assert embedder.encode([], dimensions=8).shape == (0, 8)
    assert embedder.encode([], late_chunking=True).shape == (0, 32)
    assert embedder.embed_documents([]) == []
    assert embedder.embed_spans([]) == []
    assert forward_calls == []


def test_token_limit_error_names_index_and_count(embedder: Embedder, forward_calls: list[str]):
    limit = embedder.max_tokens
    at_limit = text_with_token_count(embedder, limit)
    over = text_with_token_count(embedder, limit + 7)
    texts = ["short", at_limit, "another", over]
    with pytest.raises(TokenLimitError) as caught:
        embedder.encode(texts, truncate=False)
    assert isinstance(caught.value, ValueError)
    message = str(caught.value)
    assert re.search(r"\b3\b", message) and re.search(rf"\b{limit + 7}\b", message)
    assert forward_calls == []
    # Exactly at the limit is fine, and equals the truncating path.
    fits = embedder.encode(texts[:3], truncate=False)
    np.testing.assert_array_equal(fits, embedder.encode(texts[:3]))


def test_token_limit_counts_the_instruction(embedder: Embedder):
    text = text_with_token_count(embedder, embedder.max_tokens)
    embedder.encode(text, task="separation", truncate=False)  # no instruction: fits
    (with_instruction,) = embedder.count_tokens([text], task="retrieval.query")
    assert with_instruction > embedder.max_tokens
    with pytest.raises(TokenLimitError, match=rf"\b{with_instruction}\b"):
        embedder.encode(text, task="retrieval.query", truncate=False)


def test_late_chunking_never_raises_for_length(embedder: Embedder):
    long_piece = text_with_token_count(embedder, 3 * embedder.max_tokens)
    got = embedder.encode([long_piece, "tail"], late_chunking=True, truncate=False)
    assert got.shape == (2, 32) and np.isfinite(got).all()
