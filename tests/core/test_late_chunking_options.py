"""Late-chunking window settings are per call (`LateChunkingOptions`), never shared state."""

from __future__ import annotations

import dataclasses
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from embedder_core import Embedder, LateChunkingOptions, get_embedder

SENTENCES = [
    "The President spoke to Congress about the economy.",
    "Taxes, schools and health care were the main themes!",
    "Everyone has the right to life, liberty and security of person.",
    "Did the union grow stronger this year?",
    "All human beings are born free and equal in dignity and rights.",
]
# The tiny checkpoint holds 128 tokens: these documents need several windows.
SMALL_WINDOWS = LateChunkingOptions(window=48, overlap=8)


def pieces(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(SENTENCES) for _ in range(count)]


# --- the value ----------------------------------------------------------------------


def test_defaults_are_the_hosted_api_semantics():
    options = LateChunkingOptions()
    assert (options.window, options.overlap) == (None, 512)
    assert options.window_tokens(8192) == 8192
    assert LateChunkingOptions(window=1024).window_tokens(8192) == 1024
    assert LateChunkingOptions(window=10**6).window_tokens(8192) == 8192  # capped


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 0}, "window must be at least 1"),
        ({"window": -5}, "window must be at least 1"),
        ({"window": True}, "window must be an int"),
        ({"window": "512"}, "window must be an int"),
        ({"window": 512.0}, "window must be an int"),
        ({"overlap": -1}, "overlap must be at least 0"),
        ({"overlap": None}, "overlap must be an int"),
        ({"overlap": 1.5}, "overlap must be an int"),
    ],
)
def test_bad_values_are_refused_at_construction(kwargs: dict, message: str):
    with pytest.raises(ValueError, match=message):
        LateChunkingOptions(**kwargs)


def test_frozen_and_hashable():
    options = LateChunkingOptions(window=1024, overlap=128)
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.window = 2048  # type: ignore[misc]
    assert options == LateChunkingOptions(window=1024, overlap=128)
    assert hash(options) == hash(LateChunkingOptions(window=1024, overlap=128))
    assert options != LateChunkingOptions(window=1024, overlap=0)
    assert dataclasses.asdict(options) == {"window": 1024, "overlap": 128}


def test_the_embedder_holds_no_late_chunking_settings():
    """The old mutable class attributes are gone: one shared instance, no per-caller state."""
    for name in ("late_chunking_window", "late_chunking_overlap"):
        assert not hasattr(Embedder, name)


# --- per call -----------------------------------------------------------------------


def test_two_callers_with_different_options_share_one_embedder(tiny_jina_dir: Path):
    """Two callers on the one shared embedder, at the same time, each with its own options:
    each gets exactly what a fresh embedder gives for its options."""
    shared = get_embedder(tiny_jina_dir, device="cpu")
    document = pieces(40, seed=3)
    callers = {"small": SMALL_WINDOWS, "default": None}
    results: dict[str, list[np.ndarray]] = {name: [] for name in callers}
    start = threading.Barrier(len(callers))

    def call(name: str) -> None:
        start.wait()
        for _ in range(3):
            results[name].append(
                shared.encode(
                    document,
                    task="retrieval.passage",
                    late_chunking=True,
                    late_chunking_options=callers[name],
                )
            )

    threads = [threading.Thread(target=call, args=(name,)) for name in callers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    fresh = Embedder.from_pretrained(tiny_jina_dir, device="cpu")
    for name, options in callers.items():
        expected = fresh.encode(
            document, task="retrieval.passage", late_chunking=True, late_chunking_options=options
        )
        assert len(results[name]) == 3
        for got in results[name]:
            np.testing.assert_array_equal(got, expected)
    # The options matter: the two callers really got different vectors.
    assert np.abs(results["small"][0] - results["default"][0]).max() > 1e-3


def test_every_late_chunking_method_takes_the_options(tiny_jina_embedder: Embedder):
    embedder = tiny_jina_embedder
    text = " ".join(pieces(30, seed=5))
    default = embedder.embed_document(text, chunker="tokens", chunk_size=16)
    small = embedder.embed_document(
        text, chunker="tokens", chunk_size=16, late_chunking_options=SMALL_WINDOWS
    )
    assert [c.start for c in small] == [c.start for c in default]
    assert not np.allclose(
        np.stack([c.embedding for c in small]), np.stack([c.embedding for c in default])
    )
    (documents,) = embedder.embed_documents(
        [text], chunker="tokens", chunk_size=16, late_chunking_options=SMALL_WINDOWS
    )
    spans = [(c.start, c.end) for c in small]
    (rows,) = embedder.embed_spans([(text, spans)], late_chunking_options=SMALL_WINDOWS)
    expected = np.stack([c.embedding for c in small])
    np.testing.assert_array_equal(np.stack([c.embedding for c in documents]), expected)
    np.testing.assert_array_equal(rows, expected)


def test_window_past_the_limit_is_the_limit(tiny_jina_embedder: Embedder):
    document = pieces(30, seed=7)
    default = tiny_jina_embedder.encode(document, late_chunking=True)
    huge = tiny_jina_embedder.encode(
        document, late_chunking=True, late_chunking_options=LateChunkingOptions(window=10**6)
    )
    np.testing.assert_array_equal(default, huge)


def test_options_are_ignored_without_late_chunking(tiny_jina_embedder: Embedder):
    texts = SENTENCES[:3]
    np.testing.assert_array_equal(
        tiny_jina_embedder.encode(texts, late_chunking_options=SMALL_WINDOWS),
        tiny_jina_embedder.encode(texts),
    )


def test_window_without_room_for_the_instruction_is_refused(tiny_jina_embedder: Embedder):
    tight = LateChunkingOptions(window=4)
    with pytest.raises(ValueError, match="no room"):
        tiny_jina_embedder.encode(
            SENTENCES[:2], task="retrieval.passage", late_chunking=True, late_chunking_options=tight
        )


@pytest.mark.parametrize("bad", [{"window": 48}, (48, 8), "small"])
def test_options_must_be_the_frozen_value(tiny_jina_embedder: Embedder, bad: object):
    with pytest.raises(TypeError, match="LateChunkingOptions"):
        tiny_jina_embedder.encode(SENTENCES[:2], late_chunking=True, late_chunking_options=bad)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="LateChunkingOptions"):
        tiny_jina_embedder.embed_documents(SENTENCES[:1], late_chunking_options=bad)  # type: ignore[arg-type]
