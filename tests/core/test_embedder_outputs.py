"""Matryoshka dimensions, normalization and every output embedding type."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from embedder_core import EMBEDDING_TYPES, Embedder
from embedder_core.output import convert_embeddings

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "人人生而自由，在尊严和权利上一律平等。",
    "Everyone has the right to life, liberty and security of person.",
    "Tous les êtres humains naissent libres et égaux en dignité et en droits.",
    "x",
]
WIDTH = 32  # the tiny checkpoint
DIMENSIONS = [1, 2, 3, 7, 8, 9, 16, 31, WIDTH]


@pytest.fixture(scope="module")
def embedder(tiny_jina_embedder: Embedder) -> Embedder:
    return tiny_jina_embedder


@pytest.fixture(scope="module")
def full(embedder: Embedder) -> np.ndarray:
    return embedder.encode(TEXTS, task="text-matching")


@pytest.fixture(scope="module")
def raw(embedder: Embedder) -> np.ndarray:
    return embedder.encode(TEXTS, task="text-matching", normalized=False)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_full_output_is_unit_float32(embedder: Embedder, full: np.ndarray):
    assert embedder.dimension == WIDTH
    assert full.dtype == np.float32 and full.shape == (len(TEXTS), WIDTH)
    np.testing.assert_allclose(np.linalg.norm(full, axis=1), 1.0, atol=1e-6)


def test_unnormalized_output_is_the_raw_mean(full: np.ndarray, raw: np.ndarray):
    norms = np.linalg.norm(raw, axis=1)
    assert np.abs(norms - 1).min() > 1e-3  # really not normalized
    np.testing.assert_allclose(unit_rows(raw), full, atol=1e-6)


@pytest.mark.parametrize("d", DIMENSIONS)
def test_dimensions_truncate_then_normalize(embedder: Embedder, raw: np.ndarray, d: int):
    got = embedder.encode(TEXTS, task="text-matching", dimensions=d)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), d)
    np.testing.assert_allclose(got, unit_rows(raw[:, :d]), rtol=0, atol=1e-6)
    unnormalized = embedder.encode(TEXTS, task="text-matching", dimensions=d, normalized=False)
    np.testing.assert_allclose(unnormalized, raw[:, :d], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("bad", [0, -1, WIDTH + 1, 2.5, "8", 8.0, True])
def test_bad_dimensions_raise_value_error(embedder: Embedder, bad):
    with pytest.raises(ValueError, match="dimensions"):
        embedder.encode(TEXTS, dimensions=bad)


def test_single_string_is_one_row(embedder: Embedder, full: np.ndarray):
    got = embedder.encode(TEXTS[1], task="text-matching")
    assert got.shape == (1, WIDTH)
    np.testing.assert_allclose(got[0], full[1], atol=1e-6)


# --- embedding types --------------------------------------------------------------------


@pytest.mark.parametrize("d", [WIDTH, 12, 1])
def test_ubinary_is_packed_sign_bits(embedder: Embedder, d: int):
    floats = embedder.encode(TEXTS, task="separation", dimensions=d)
    packed = embedder.encode(TEXTS, task="separation", dimensions=d, embedding_type="ubinary")
    assert packed.dtype == np.uint8 and packed.shape == (len(TEXTS), math.ceil(d / 8))
    np.testing.assert_array_equal(packed, np.packbits(floats > 0, axis=1))
    bits = np.unpackbits(packed, axis=1)
    assert not bits[:, d:].any()  # padding bits are zero


@pytest.mark.parametrize("d", [WIDTH, 12])
def test_binary_is_ubinary_minus_128(embedder: Embedder, d: int):
    ubinary = embedder.encode(TEXTS, dimensions=d, embedding_type="ubinary")
    binary = embedder.encode(TEXTS, dimensions=d, embedding_type="binary")
    assert binary.dtype == np.int8 and binary.shape == ubinary.shape
    np.testing.assert_array_equal(binary.astype(np.int16), ubinary.astype(np.int16) - 128)


def test_int8_follows_documented_per_vector_calibration(embedder: Embedder, full: np.ndarray):
    """int8 = round(127 x / max|x|) (embedder_core/output.py): check its properties."""
    q = embedder.encode(TEXTS, task="text-matching", embedding_type="int8")
    assert q.dtype == np.int8 and q.shape == full.shape
    scale = np.abs(full).max(axis=1, keepdims=True)
    assert (np.abs(q).max(axis=1) == 127).all()  # each vector's own range, nothing clipped
    dequantized = q.astype(np.float64) * scale / 127
    assert np.abs(dequantized - full).max() <= (scale / 254).max() * 1.001
    assert (
        np.sign(q[np.abs(full) > scale / 127]) == np.sign(full[np.abs(full) > scale / 127])
    ).all()
    _assert_order_preserved(full, q)


def test_uint8_follows_documented_per_vector_calibration(embedder: Embedder, full: np.ndarray):
    """uint8 = round(127.5 (x / max|x| + 1)) (embedder_core/output.py)."""
    q = embedder.encode(TEXTS, task="text-matching", embedding_type="uint8")
    assert q.dtype == np.uint8 and q.shape == full.shape
    scale = np.abs(full).max(axis=1, keepdims=True)
    dequantized = (q.astype(np.float64) / 127.5 - 1) * scale
    assert np.abs(dequantized - full).max() <= (scale / 255).max() * 1.001
    assert ((q.min(axis=1) == 0) | (q.max(axis=1) == 255)).all()
    _assert_order_preserved(full, q)


def _assert_order_preserved(floats: np.ndarray, quantized: np.ndarray) -> None:
    for row_f, row_q in zip(floats, quantized.astype(np.int16)):
        order = np.argsort(row_f, kind="stable")
        assert (np.diff(row_q[order]) >= 0).all()


@pytest.mark.parametrize("kind", ["int8", "uint8"])
def test_quantized_vectors_keep_similarities(embedder: Embedder, kind: str):
    floats = embedder.encode(TEXTS, task="text-matching")
    quantized = embedder.encode(TEXTS, task="text-matching", embedding_type=kind)
    centred = quantized.astype(np.float64) - (127.5 if kind == "uint8" else 0.0)
    cosine = (unit_rows(centred) * floats).sum(axis=1)
    assert cosine.min() > 0.99


@pytest.mark.parametrize("d", [WIDTH, 5])
def test_base64_decodes_to_the_float_output(embedder: Embedder, d: int):
    floats = embedder.encode(TEXTS, task="retrieval.query", dimensions=d)
    encoded = embedder.encode(TEXTS, task="retrieval.query", dimensions=d, embedding_type="base64")
    assert isinstance(encoded, list) and all(isinstance(e, str) for e in encoded)
    decoded = np.stack([np.frombuffer(base64.b64decode(e), dtype="<f4") for e in encoded])
    np.testing.assert_array_equal(decoded, floats)


@pytest.mark.parametrize("kind", EMBEDDING_TYPES)
def test_convert_embeddings_equals_encode(embedder: Embedder, kind: str):
    floats = embedder.encode(TEXTS, task="classification", dimensions=16)
    direct = embedder.encode(TEXTS, task="classification", dimensions=16, embedding_type=kind)
    converted = convert_embeddings(floats, kind)
    if kind == "base64":
        assert converted == direct
    else:
        assert converted.dtype == direct.dtype
        np.testing.assert_array_equal(converted, direct)


@pytest.mark.parametrize("kind", EMBEDDING_TYPES)
def test_empty_input_per_type(embedder: Embedder, kind: str):
    got = embedder.encode([], dimensions=12, embedding_type=kind)
    if kind == "base64":
        assert got == []
        return
    width = math.ceil(12 / 8) if kind in ("binary", "ubinary") else 12
    assert got.shape == (0, width)
    expected_dtype = {"float": np.float32, "binary": np.int8, "ubinary": np.uint8}
    expected_dtype |= {"int8": np.int8, "uint8": np.uint8}
    assert got.dtype == expected_dtype[kind]


def test_unknown_embedding_type(embedder: Embedder):
    with pytest.raises(ValueError, match="float16"):
        embedder.encode(TEXTS, embedding_type="float16")
    with pytest.raises(ValueError, match="embedding_type"):
        convert_embeddings(np.zeros((1, 4), dtype=np.float32), "bits")
