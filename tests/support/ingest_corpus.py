"""Small documents with known answers, and helpers to read back everything a sink stored.

Used by the ingestion, Qdrant, Milvus, CLI and crash tests (and by ``ingest_worker.py``).
Each document is a few short sentences on one topic, so with a small ``chunk_size`` every
document yields several chunks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

CORPUS_V1: list[dict[str, Any]] = [
    {
        "id": "bread",
        "text": (
            "To bake bread, mix flour, water, salt and yeast into a dough. "
            "Knead the dough for ten minutes until it is smooth. "
            "Let the dough rise for two hours in a warm place. "
            "Bake the loaf at a high temperature until the crust is brown."
        ),
        "metadata": {"topic": "food", "year": 2020, "rating": 4.5, "verified": True},
    },
    {
        "id": "volcano",
        "text": (
            "A volcano is an opening in the crust of a planet. "
            "Molten rock called magma rises from deep below the surface. "
            "When magma erupts it is called lava, and it can flow for many kilometres. "
            "Volcanic ash can ground aircraft and cool the climate for years."
        ),
        "metadata": {"topic": "science", "year": 2021, "rating": 3.0, "verified": False},
    },
    {
        "id": "chess",
        "text": (
            "Chess is a board game for two players. "
            "Each player starts with sixteen pieces on a board of sixty-four squares. "
            "The knight moves in an L shape and can jump over other pieces. "
            "The game ends when a king is checkmated."
        ),
        "metadata": {"topic": "games", "year": 2021, "rating": 5.0, "verified": True},
    },
    {
        "id": "whales",
        "text": (
            "Whales are marine mammals that breathe air through a blowhole. "
            "The blue whale is the largest animal known to have ever lived. "
            "Humpback whales sing long, complex songs that travel far underwater. "
            "Many whales migrate thousands of kilometres between feeding and breeding grounds."
        ),
        "metadata": {"topic": "science", "year": 2022, "rating": 4.0, "verified": True},
    },
    {
        "id": "tea",
        "text": (
            "Tea is made by pouring hot water over cured leaves of the tea plant. "
            "Green tea is steamed or pan-fired soon after picking. "
            "Black tea is fully oxidised, which gives it a darker colour and stronger taste. "
            "Steep black tea for three to five minutes."
        ),
        "metadata": {"topic": "food", "year": 2023, "rating": 4.5, "verified": False},
    },
]

# The second version: "volcano" changed, "chess" shrunk to one sentence, "tea" got new
# metadata only, "comets" is new; "bread" and "whales" are unchanged.
CORPUS_V2: list[dict[str, Any]] = [
    CORPUS_V1[0],
    {
        "id": "volcano",
        "text": (
            "Volcanoes form where tectonic plates meet or over hot spots in the mantle. "
            "Iceland sits on the Mid-Atlantic Ridge and has dozens of active volcanoes. "
            "A caldera forms when a volcano collapses after a large eruption."
        ),
        "metadata": {"topic": "science", "year": 2024, "rating": 3.5, "verified": True},
    },
    {
        "id": "chess",
        "text": "Chess is a board game for two players.",
        "metadata": CORPUS_V1[2]["metadata"],
    },
    CORPUS_V1[3],
    {**CORPUS_V1[4], "metadata": {"topic": "drinks", "year": 2023, "rating": 4.5}},
    {
        "id": "comets",
        "text": (
            "Comets are icy bodies that release gas and dust near the Sun. "
            "Their tails always point away from the Sun because of the solar wind. "
            "Halley's comet returns to the inner solar system about every 76 years."
        ),
        "metadata": {"topic": "science", "year": 2024, "rating": 4.0, "verified": True},
    },
]


@dataclass(frozen=True)
class StoredPoint:
    payload: dict[str, Any]
    vector: np.ndarray


def dump_qdrant(client: Any, collection: str) -> dict[str, StoredPoint]:
    """Every point of a Qdrant collection, with payload and vector."""
    points: dict[str, StoredPoint] = {}
    offset = None
    while True:
        batch, offset = client.scroll(
            collection, limit=256, offset=offset, with_payload=True, with_vectors=True
        )
        for point in batch:
            points[str(point.id)] = StoredPoint(dict(point.payload), np.asarray(point.vector))
        if offset is None:
            return points


def dump_milvus(client: Any, collection: str) -> dict[str, StoredPoint]:
    """Every row of a Milvus collection (payload fields and vector)."""
    client.load_collection(collection)
    # Milvus Lite 2.5.1 fails to return vectors of a reopened, empty collection.
    if not client.query(collection, filter="", output_fields=["count(*)"])[0]["count(*)"]:
        return {}
    rows = client.query(collection, filter="", output_fields=["*"], limit=16_384)
    points: dict[str, StoredPoint] = {}
    for row in rows:
        row = dict(row)
        vector = row.pop("vector")
        if isinstance(vector, list) and vector and isinstance(vector[0], bytes):
            vector = vector[0]  # pymilvus returns binary vectors as [bytes]
        if isinstance(vector, (bytes, bytearray)):
            array = np.frombuffer(bytes(vector), dtype=np.uint8)
        else:
            array = np.asarray(vector, dtype=np.float32)
        points[str(row.pop("id"))] = StoredPoint(row, array)
    return points


def assert_same_points(
    actual: Mapping[str, StoredPoint], expected: Mapping[str, StoredPoint], atol: float = 1e-5
) -> None:
    """Same ids, equal payloads and vectors equal within ``atol``."""
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    assert not missing and not extra, f"missing {missing}, unexpected {extra}"
    for point_id, want in expected.items():
        got = actual[point_id]
        assert got.payload == want.payload, point_id
        assert got.vector.shape == want.vector.shape, point_id
        np.testing.assert_allclose(got.vector, want.vector, atol=atol, err_msg=point_id)


# Settings of the crash tests (small batches, so a run makes many separate writes).
CRASH_SETTINGS: dict[str, Any] = {
    "chunk_size": 32,
    "batch_size": 2,
    "write_batch_size": 3,
    "max_pending_batches": 1,
    "show_progress": False,
}


def dump_pinecone(server: Any, index: str, namespace: str = "") -> dict[str, StoredPoint]:
    """Every record of a namespace of the local Pinecone server, with the payload nested back
    as the pipeline wrote it (``metadata.<key>`` under ``metadata``; Pinecone returns every
    number as a float, integral ones are read back as ints)."""

    def number(value: Any) -> Any:
        return int(value) if isinstance(value, float) and value.is_integer() else value

    points: dict[str, StoredPoint] = {}
    for point_id, (values, metadata) in server.records(index, namespace).items():
        payload: dict[str, Any] = {"metadata": {}}
        for key, value in metadata.items():
            if key.startswith("metadata."):
                payload["metadata"][key.removeprefix("metadata.")] = number(value)
            else:
                payload[key] = number(value)
        points[point_id] = StoredPoint(payload, np.asarray(values, dtype=np.float32))
    return points


class EmbedderWrapper:
    """A real embedder with some of its waiting calls (``embed_documents``...) replaced by a
    subclass. The non-waiting ``submit*`` forms are hidden, so that the pipeline goes
    through the replacements rather than around them."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        if name.startswith("submit"):
            raise AttributeError(name)
        return getattr(self.inner, name)
