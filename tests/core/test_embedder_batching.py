"""Batching never changes a row: mixed tasks, order, batch size and composition, threads."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from embedder_core import Embedder, get_embedder

COSINE_MATCH = 0.99999

# Words in several scripts, so that texts tokenize to very different lengths.
VOCABULARY = (
    "the president spoke to congress about economy taxes schools health care jobs",
    "armed forces rights dignity liberty security person search vectors documents",
    "Menschen frei gleich Würde libres égaux dignité seres humanos",
    "人人 自由 尊严 权利 機械 文档 向量 люди свободными",
)
WORDS = [word for line in VOCABULARY for word in line.split()]
TASKS = [
    None,
    "retrieval.query",
    "retrieval.passage",
    "separation",
    "classification",
    "text-matching",
]


def random_texts(rng: random.Random, count: int, max_words: int = 100) -> list[str]:
    """Texts of very different lengths (1 word up to past the 128-token limit)."""
    lengths = [rng.randint(1, rng.choice((3, max_words // 3, max_words))) for _ in range(count)]
    return [" ".join(rng.choices(WORDS, k=length)) for length in lengths]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    return (a64 * b64).sum(axis=1) / np.linalg.norm(a64, axis=1) / np.linalg.norm(b64, axis=1)


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str | None]]:
    rng = random.Random(1234)
    texts = random_texts(rng, 24)
    return texts, [rng.choice(TASKS) for _ in texts]


@pytest.fixture(scope="module")
def alone(tiny_jina_embedder: Embedder, corpus: tuple[list[str], list[str | None]]) -> np.ndarray:
    """Each text encoded on its own, with its own task: the rows every batch must give."""
    texts, tasks = corpus
    return np.concatenate(
        [tiny_jina_embedder.encode([text], task=task) for text, task in zip(texts, tasks)]
    )


@pytest.fixture(scope="module", params=[1, 64, 300, 1_000_000], ids=lambda b: f"budget{b}")
def budget_embedder(request: pytest.FixtureRequest, tiny_jina_dir: Path) -> Embedder:
    """Embedders whose forward batches hold from one sequence to everything at once."""
    return Embedder.from_pretrained(
        str(tiny_jina_dir), device="cpu", max_batch_tokens=request.param
    )


def test_corpus_is_mixed(tiny_jina_embedder: Embedder, corpus):
    texts, tasks = corpus
    counts = tiny_jina_embedder.count_tokens(texts)
    assert min(counts) < 10 and max(counts) > tiny_jina_embedder.max_tokens  # truncation too
    assert len(set(tasks)) >= 4


def test_mixed_task_batch_rows_equal_single_encodes(budget_embedder: Embedder, corpus, alone):
    texts, tasks = corpus
    got = budget_embedder.encode(texts, task=tasks)
    np.testing.assert_array_less(COSINE_MATCH, cosines(got, alone))


@pytest.mark.parametrize("seed", range(4))
def test_invariant_to_order_and_composition(budget_embedder: Embedder, corpus, alone, seed):
    """Any subset in any order, with any budget, gives each text's own row."""
    texts, tasks = corpus
    rng = random.Random(seed)
    chosen = rng.sample(range(len(texts)), rng.randint(1, len(texts)))
    got = budget_embedder.encode([texts[i] for i in chosen], task=[tasks[i] for i in chosen])
    np.testing.assert_array_less(COSINE_MATCH, cosines(got, alone[chosen]))


def test_single_task_for_all_rows_equals_per_row_task(tiny_jina_embedder: Embedder, corpus):
    texts, _ = corpus
    shared = tiny_jina_embedder.encode(texts, task="separation")
    per_row = tiny_jina_embedder.encode(texts, task=["separation"] * len(texts))
    np.testing.assert_array_equal(shared, per_row)


def test_duplicates_in_one_batch(tiny_jina_embedder: Embedder, corpus, alone):
    texts, tasks = corpus
    got = tiny_jina_embedder.encode([texts[0]] * 3 + [texts[1]], task=[tasks[0]] * 3 + [tasks[1]])
    np.testing.assert_array_less(COSINE_MATCH, cosines(got, alone[[0, 0, 0, 1]]))


def test_same_text_different_tasks_in_one_batch(tiny_jina_embedder: Embedder, corpus):
    text = corpus[0][2]
    got = tiny_jina_embedder.encode([text] * len(TASKS), task=TASKS)
    for i, task in enumerate(TASKS):
        alone = tiny_jina_embedder.encode(text, task=task)
        assert cosines(got[i : i + 1], alone)[0] > COSINE_MATCH
    similarity = got @ got.T
    assert similarity[~np.eye(len(TASKS), dtype=bool)].max() < 0.999  # each row has its task


def test_late_chunking_invariant_to_budget(tiny_jina_dir: Path, corpus):
    pieces = corpus[0][:12]  # well past 128 tokens: several windows
    small = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu", max_batch_tokens=1)
    large = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu", max_batch_tokens=10**6)
    got_small = small.encode(pieces, task="retrieval.passage", late_chunking=True)
    got_large = large.encode(pieces, task="retrieval.passage", late_chunking=True)
    np.testing.assert_array_less(COSINE_MATCH, cosines(got_small, got_large))


# --- get_embedder ---------------------------------------------------------------------


def test_get_embedder_caches_per_options(tiny_jina_dir: Path):
    model = str(tiny_jina_dir)
    first = get_embedder(model, device="cpu")
    assert get_embedder(model, device="cpu") is first
    assert get_embedder(tiny_jina_dir, device="cpu") is first  # a Path names the same model
    other = get_embedder(model, device="cpu", max_batch_tokens=128)
    assert other is not first
    assert get_embedder(model, device="cpu", max_batch_tokens=128) is other
    assert other.max_batch_tokens == 128
    assert first.model_name == model


def test_get_embedder_default_model_from_environment(
    tiny_jina_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("JINA_CONNECTORS_MODEL", str(tiny_jina_dir))
    embedder = get_embedder(device="cpu")
    assert embedder is get_embedder(None, device="cpu")
    assert embedder.model_name == str(tiny_jina_dir)
    assert embedder.dimension == 32


def test_get_embedder_is_thread_safe(tiny_jina_dir: Path):
    """Concurrent first calls still load one instance."""
    results: list[Embedder] = []
    barrier = threading.Barrier(4)

    def load() -> None:
        barrier.wait()
        results.append(get_embedder(str(tiny_jina_dir), device="cpu", max_batch_tokens=777))

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and all(r is results[0] for r in results)


def test_concurrent_encodes_equal_sequential(tiny_jina_embedder: Embedder):
    rng = random.Random(99)
    jobs = [(random_texts(rng, 8), rng.choice(TASKS)) for _ in range(6)]
    sequential = [tiny_jina_embedder.encode(texts, task=task) for texts, task in jobs]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def work(index: int) -> None:
        texts, task = jobs[index]
        try:
            barrier.wait()
            for _ in range(3):
                results[index] = tiny_jina_embedder.encode(texts, task=task)
                np.testing.assert_array_less(
                    COSINE_MATCH, cosines(results[index], sequential[index])
                )
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(results) == list(range(len(jobs)))
