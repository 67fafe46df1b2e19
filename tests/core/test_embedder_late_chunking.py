"""Late chunking past the token limit, and embed_document / embed_documents / embed_spans.

Exact late-chunking math is checked against the reference in test_reference_math.py;
here: lengths past `max_tokens` (128 on the tiny checkpoint), chunkers and invariants.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from embedder_core import DocumentChunk, Embedder

COSINE_MATCH = 0.99999

SENTENCES = [
    "The President spoke to Congress about the economy.",
    "Taxes, schools and health care were the main themes!",
    "Everyone has the right to life, liberty and security of person.",
    "Did the union grow stronger this year?",
    "All human beings are born free and equal in dignity and rights.",
    "Machine learning models turn sentences into vectors.",
    "He ended with the armed forces.",
]
# Not in the tiny tokenizer's training corpus, so it takes many tokens.
CJK_DOCUMENT = (
    "今天的天气很好，我们去公园散步吧！你觉得这个计划怎么样？明天可能会下雨，请带上雨伞。"
    "会议在下午三点开始。他们讨论了学校和医院的预算！日本語の文章も少し入れます。"
)


def long_document(sentences: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(SENTENCES) for _ in range(sentences))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    return (a64 * b64).sum(axis=1) / np.linalg.norm(a64, axis=1) / np.linalg.norm(b64, axis=1)


@pytest.fixture(scope="module")
def embedder(tiny_jina_embedder: Embedder) -> Embedder:
    return tiny_jina_embedder


@pytest.fixture(scope="module")
def tokenizer(tiny_jina_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(tiny_jina_dir / "tokenizer.json"))


def assert_chunk_sizes(tokenizer: Tokenizer, document: str, chunks, chunk_size: int) -> None:
    """Tokens of the document that overlap each chunk: at most chunk_size, plus one for a
    token straddling the chunk's start (e.g. "▁The" begins at the space before it)."""
    offsets = tokenizer.encode(document, add_special_tokens=False).offsets
    for chunk in chunks:
        overlapping = sum(1 for a, b in offsets if a < chunk.end and b > chunk.start)
        assert overlapping <= chunk_size + 1, (chunk.text, overlapping)


def assert_unit_rows(rows: np.ndarray, width: int = 32) -> None:
    assert rows.dtype == np.float32 and rows.shape[1] == width
    assert np.isfinite(rows).all()
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def assert_chunks_cover(document: str, chunks: list[DocumentChunk], *, overlapping_ok=False):
    """Chunks are the document's own substrings, in order, and miss no visible character."""
    assert chunks
    covered = np.zeros(len(document), dtype=bool)
    previous_end = 0
    for chunk in chunks:
        assert chunk.text == document[chunk.start : chunk.end]
        assert chunk.text.strip()
        if not overlapping_ok:
            assert chunk.start >= previous_end
        previous_end = chunk.end
        covered[chunk.start : chunk.end] = True
    missed = [i for i, c in enumerate(document) if not covered[i] and not c.isspace()]
    assert not missed, [document[i] for i in missed]
    assert_unit_rows(np.stack([chunk.embedding for chunk in chunks]))


# --- encode(late_chunking=True) ---------------------------------------------------------


def test_long_input_gives_one_row_per_piece(embedder: Embedder):
    pieces = long_document(40).split(". ")
    total = sum(embedder.count_tokens(pieces)) - 2 * len(pieces)
    assert total > 4 * embedder.max_tokens  # several windows
    got = embedder.encode(pieces, task="retrieval.passage", late_chunking=True)
    assert got.shape == (len(pieces), 32)
    assert_unit_rows(got)
    again = embedder.encode(pieces, task="retrieval.passage", late_chunking=True)
    np.testing.assert_array_equal(got, again)
    alone = embedder.encode(pieces, task="retrieval.passage")
    assert cosines(got, alone).max() < 0.9999  # context changed every piece


def test_one_piece_longer_than_the_limit(embedder: Embedder):
    huge = long_document(30, seed=1)
    assert embedder.count_tokens([huge])[0] > 3 * embedder.max_tokens
    got = embedder.encode(["Intro.", huge, "Outro."], late_chunking=True, task="separation")
    assert got.shape == (3, 32)
    assert_unit_rows(got)


def test_late_chunking_of_a_single_piece_is_plain_encoding(embedder: Embedder):
    """One piece that fits: late chunking pools the same tokens as encode, minus specials."""
    text = SENTENCES[2]
    got = embedder.encode([text], late_chunking=True, task="text-matching")
    plain = embedder.encode([text], task="text-matching")
    # Not equal (encode also averages <s> and </s>), but the same content: very close.
    assert 0.9 < cosines(got, plain)[0] < 0.99999


@pytest.mark.parametrize("dimensions", [1, 8])
def test_late_chunking_dimensions(embedder: Embedder, dimensions: int):
    pieces = SENTENCES[:3]
    full = embedder.encode(pieces, late_chunking=True, normalized=False)
    got = embedder.encode(pieces, late_chunking=True, dimensions=dimensions)
    truncated = full[:, :dimensions]
    np.testing.assert_allclose(
        got, truncated / np.linalg.norm(truncated, axis=1, keepdims=True), atol=1e-6
    )


# --- embed_document -----------------------------------------------------------------------


def test_sentence_chunks_cover_the_document(embedder: Embedder, tokenizer: Tokenizer):
    document = long_document(12, seed=3)
    chunks = embedder.embed_document(document, chunk_size=40)
    assert len(chunks) > 2
    assert_chunks_cover(document, chunks)
    assert_chunk_sizes(tokenizer, document, chunks, 40)
    for chunk in chunks:  # whole sentences: every sentence here fits in 40 tokens
        assert chunk.text[-1] in ".!?"
        assert chunk.start == 0 or document[chunk.start - 1] == " "


def test_cjk_sentences(embedder: Embedder, tokenizer: Tokenizer):
    chunks = embedder.embed_document(CJK_DOCUMENT, chunk_size=10)
    assert len(chunks) >= 4
    assert_chunks_cover(CJK_DOCUMENT, chunks)
    assert_chunk_sizes(tokenizer, CJK_DOCUMENT, chunks, 10)
    for chunk in chunks:  # every sentence fits in 10 tokens: chunks are whole sentences
        assert chunk.text[-1] in "。！？", chunk.text


def test_sentence_longer_than_chunk_size_is_cut_by_tokens(embedder: Embedder, tokenizer: Tokenizer):
    document = "Short one. The " + "word " * 60 + "end. Last sentence here."
    chunks = embedder.embed_document(document, chunk_size=16)
    assert_chunks_cover(document, chunks)
    assert_chunk_sizes(tokenizer, document, chunks, 16)
    for chunk in chunks:
        assert chunk.text == chunk.text.strip()
    assert chunks[0].text == "Short one."
    assert chunks[-1].text == "Last sentence here."


def test_token_chunks(embedder: Embedder, tokenizer: Tokenizer):
    document = long_document(10, seed=4)
    chunks = embedder.embed_document(document, chunker="tokens", chunk_size=16)
    assert_chunks_cover(document, chunks)
    assert_chunk_sizes(tokenizer, document, chunks, 16)
    total = embedder.count_tokens([document])[0] - 2
    assert len(chunks) == -(-total // 16)


def test_long_document_past_the_limit(embedder: Embedder):
    document = long_document(60, seed=5)
    assert embedder.count_tokens([document])[0] > 5 * embedder.max_tokens
    chunks = embedder.embed_document(document, chunk_size=30)
    assert_chunks_cover(document, chunks)
    again = embedder.embed_document(document, chunk_size=30)
    for first, second in zip(chunks, again):
        np.testing.assert_array_equal(first.embedding, second.embedding)


def test_callable_chunker_with_overlapping_spans(embedder: Embedder):
    document = " ".join(SENTENCES[:4])
    spans = [(0, 30), (10, 60), (0, len(document)), (45, len(document))]
    chunks = embedder.embed_document(document, chunker=lambda text: spans)
    assert [(c.start, c.end) for c in chunks] == spans
    assert_chunks_cover(document, chunks, overlapping_ok=True)
    (expected,) = embedder.embed_spans([(document, spans)])
    np.testing.assert_allclose(np.stack([c.embedding for c in chunks]), expected, atol=1e-6)
    # Overlapping text is pooled from the one encoding, never encoded twice.
    assert cosines(chunks[0].embedding, chunks[1].embedding)[0] < 0.9999


def test_document_chunk_is_frozen(embedder: Embedder):
    chunk = embedder.embed_document("One sentence. Another one.")[0]
    with pytest.raises(AttributeError):
        chunk.text = "changed"  # type: ignore[misc]


def test_embed_document_dimensions_and_normalization(embedder: Embedder):
    document = " ".join(SENTENCES)
    raw = embedder.embed_document(document, chunk_size=20, normalized=False)
    small = embedder.embed_document(document, chunk_size=20, dimensions=4)
    assert [(c.start, c.end) for c in raw] == [(c.start, c.end) for c in small]
    for r, s in zip(raw, small):
        assert s.embedding.shape == (4,)
        np.testing.assert_allclose(
            s.embedding, r.embedding[:4] / np.linalg.norm(r.embedding[:4]), atol=1e-6
        )
    assert abs(np.linalg.norm(raw[0].embedding) - 1) > 1e-3


def test_task_changes_chunk_embeddings(embedder: Embedder):
    document = " ".join(SENTENCES)
    passage = embedder.embed_document(document, chunk_size=20)
    query = embedder.embed_document(document, chunk_size=20, task="retrieval.query")
    assert [(c.start, c.end) for c in passage] == [(c.start, c.end) for c in query]
    assert cosines(passage[0].embedding, query[0].embedding)[0] < 0.999


# --- embed_documents --------------------------------------------------------------------


def test_embed_documents_equals_one_by_one(tiny_jina_dir: Path):
    """Documents share batches but never context: same as embedding each alone."""
    small_batches = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu", max_batch_tokens=1)
    documents = [long_document(n, seed=n) for n in (1, 25, 4)] + [CJK_DOCUMENT]
    together = small_batches.embed_documents(documents, chunk_size=24)
    assert len(together) == len(documents)
    for document, chunks in zip(documents, together):
        alone = small_batches.embed_document(document, chunk_size=24)
        assert [(c.start, c.end) for c in chunks] == [(c.start, c.end) for c in alone]
        np.testing.assert_array_less(
            COSINE_MATCH,
            cosines(
                np.stack([c.embedding for c in chunks]), np.stack([c.embedding for c in alone])
            ),
        )


def test_embed_documents_order_does_not_matter(embedder: Embedder):
    documents = [long_document(n, seed=10 + n) for n in (2, 14, 6)]
    forward = embedder.embed_documents(documents, chunk_size=24)
    backward = embedder.embed_documents(documents[::-1], chunk_size=24)[::-1]
    for a, b in zip(forward, backward):
        np.testing.assert_array_less(
            COSINE_MATCH,
            cosines(np.stack([c.embedding for c in a]), np.stack([c.embedding for c in b])),
        )


# --- real text --------------------------------------------------------------------------


def test_real_speech_and_parallel_text(embedder: Embedder, shared_data_dir: Path):
    with (shared_data_dir / "sotu_speeches.jsonl").open(encoding="utf-8") as f:
        speech = json.loads(f.readline())["text"][:6000]
    udhr = json.loads((shared_data_dir / "udhr_parallel_10lang.json").read_text(encoding="utf-8"))
    chinese = _first_paragraphs(udhr, "cmn_hans")
    for document in (speech, chinese):
        chunks = embedder.embed_document(document, chunk_size=48)
        assert_chunks_cover(document, chunks)


def _first_paragraphs(udhr: object, language: str) -> str:
    """A few paragraphs of one language, whatever the nesting of the aligned file."""
    texts: list[str] = []

    def walk(node: object, in_language: bool) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, in_language or key == language)
        elif isinstance(node, list):
            for value in node:
                walk(value, in_language)
        elif isinstance(node, str) and in_language and re.search(r"[\u4e00-\u9fff]", node):
            texts.append(node)

    walk(udhr, False)
    if not texts:
        pytest.skip(f"no {language} text found in the UDHR file")
    return "\n".join(texts[:8])
