"""A real model: all-MiniLM-L6-v2 through Embedder equals sentence-transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedder_core import STANDARD_TASKS, Embedder

COSINE_MATCH = 0.9999

TEXTS = [
    "A man is playing a guitar.",
    "The new movie is awesome.",
    "Hi",
    "人人生而自由，在尊严和权利上一律平等。",
    "Everyone has the right to life, liberty and security of person. " * 3,
    # Past the 256-token limit: truncation must match sentence-transformers'.
    "The President spoke to Congress about the economy, taxes, schools and jobs. " * 40,
]


@pytest.fixture(scope="module")
def embedder(minilm_dir: Path) -> Embedder:
    return Embedder.from_pretrained(str(minilm_dir), device="cpu")


@pytest.fixture(scope="module")
def sentence_transformer(minilm_dir: Path):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    return sentence_transformers.SentenceTransformer(str(minilm_dir), device="cpu")


def test_introspection(embedder: Embedder, minilm_dir: Path):
    assert embedder.dimension == 384
    assert embedder.max_tokens == 256
    assert not embedder.has_adapters
    assert set(STANDARD_TASKS) <= set(embedder.tasks)
    assert embedder.model_name == str(minilm_dir)


def test_matches_sentence_transformers(embedder: Embedder, sentence_transformer):
    assert embedder.count_tokens(TEXTS)[-1] > 256  # the last text is really truncated
    ours = embedder.encode(TEXTS)
    theirs = sentence_transformer.encode(TEXTS, convert_to_numpy=True, normalize_embeddings=True)
    assert ours.shape == theirs.shape == (len(TEXTS), 384)
    cosine = (ours * theirs).sum(axis=1)
    np.testing.assert_array_less(COSINE_MATCH, cosine)


def test_batch_composition_does_not_matter(embedder: Embedder):
    together = embedder.encode(TEXTS)
    order = [5, 2, 0, 4, 1, 3]
    shuffled = embedder.encode([TEXTS[i] for i in order])
    np.testing.assert_array_less(COSINE_MATCH, (shuffled * together[order]).sum(axis=1))
    alone = np.concatenate([embedder.encode(text) for text in TEXTS])
    np.testing.assert_array_less(COSINE_MATCH, (alone * together).sum(axis=1))


def test_count_tokens_matches_the_tokenizer(embedder: Embedder, sentence_transformer):
    tokenizer = sentence_transformer.tokenizer
    expected = [len(tokenizer(text)["input_ids"]) for text in TEXTS]
    assert embedder.count_tokens(TEXTS) == expected


def test_paraphrase_scores_above_unrelated(embedder: Embedder):
    query, paraphrase, unrelated = embedder.encode(
        [
            "How do I bake bread at home?",
            "What is a good recipe for homemade bread?",
            "The stock market fell sharply on Monday.",
        ]
    )
    assert query @ paraphrase > query @ unrelated + 0.3


def test_standard_tasks_are_prompt_only(embedder: Embedder):
    """No adapters and no prompts in this model: every task gives the plain embedding."""
    plain = embedder.encode(TEXTS[:3])
    for task in STANDARD_TASKS:
        np.testing.assert_allclose(embedder.encode(TEXTS[:3], task=task), plain, atol=1e-6)
    with pytest.raises(ValueError, match=r"retrieval\.query"):
        embedder.encode("x", task="retrieval")


def test_truncate_false_over_the_limit(embedder: Embedder):
    from embedder_core import TokenLimitError

    with pytest.raises(TokenLimitError, match=r"\b5\b"):
        embedder.encode(TEXTS, truncate=False)


def test_late_chunking_with_minilm(embedder: Embedder):
    pieces = ["A man is playing a guitar.", "He plays it every evening.", TEXTS[-1]]
    got = embedder.encode(pieces, late_chunking=True)
    assert got.shape == (3, 384) and np.isfinite(got).all()
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_dtype_reaches_the_transformers_model(minilm_dir: Path):
    """`dtype=` must load the weights in that dtype (a transformers release that ignores the
    keyword would load float32 silently); pooling still runs in float32."""
    import warnings

    import torch

    from embedder_core import SlowDtypeWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SlowDtypeWarning)  # bf16 on a CPU without bf16 units
        embedder = Embedder.from_pretrained(str(minilm_dir), device="cpu", dtype="bfloat16")
    assert embedder.dtype == torch.bfloat16
    assert {p.dtype for p in embedder._model.model.parameters()} == {torch.bfloat16}
    got = embedder.encode(TEXTS[:3])
    assert got.dtype == np.float32
    reference = Embedder.from_pretrained(str(minilm_dir), device="cpu").encode(TEXTS[:3])
    assert ((got * reference).sum(axis=1) > 0.99).all()
