"""JinaEmbeddingFunction as a drop-in for pymilvus' (a Milvus Lite client stores and searches
its vectors)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_corpus import CORPUS_V1

pytest.importorskip("milvus_lite")

from pymilvus import MilvusClient

from jina_connectors.adapters.pymilvus import JinaEmbeddingFunction


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> Any:
    from embedder_core import get_embedder

    return get_embedder(str(minilm_dir))


# -- JinaEmbeddingFunction -------------------------------------------------------------------


def test_embedding_function_tasks_dimensions_and_late_chunking(tiny_jina_embedder: Any) -> None:
    texts = ["The knight jumps over pieces.", "Black tea steeps for five minutes."]
    ef = JinaEmbeddingFunction(tiny_jina_embedder)
    assert ef.dim == tiny_jina_embedder.dimension
    documents = ef.encode_documents(texts)
    queries = ef.encode_queries(texts)
    assert len(documents) == 2 and documents[0].shape == (ef.dim,)
    np.testing.assert_allclose(
        np.stack(documents), tiny_jina_embedder.encode(texts, task="retrieval.passage"), atol=1e-6
    )
    np.testing.assert_allclose(
        np.stack(queries), tiny_jina_embedder.encode(texts, task="retrieval.query"), atol=1e-6
    )
    assert not np.allclose(documents[0], queries[0], atol=1e-3)  # different LoRA adapters

    matching = JinaEmbeddingFunction(tiny_jina_embedder, task="text-matching", dimensions=16)
    assert matching.dim == 16
    np.testing.assert_allclose(
        np.stack(matching(texts)),
        tiny_jina_embedder.encode(texts, task="text-matching", dimensions=16),
        atol=1e-6,
    )
    late = JinaEmbeddingFunction(tiny_jina_embedder, late_chunking=True)
    np.testing.assert_allclose(
        np.stack(late.encode_documents(texts)),
        tiny_jina_embedder.encode(texts, task="retrieval.passage", late_chunking=True),
        atol=1e-6,
    )
    assert ef.encode_documents([]) == []

    with pytest.raises(ValueError, match="unknown task 'summarize'"):
        JinaEmbeddingFunction(tiny_jina_embedder, task="summarize")
    with pytest.raises(ValueError, match="dimensions must be between 1 and"):
        JinaEmbeddingFunction(tiny_jina_embedder, dimensions=10_000)
    with pytest.raises(TypeError, match="list of strings"):
        ef.encode_queries("one string")  # type: ignore[arg-type]


def test_embedding_function_with_a_milvus_client(minilm: Any, tmp_path: Path) -> None:
    ef = JinaEmbeddingFunction(minilm)
    sentences = [doc["text"] for doc in CORPUS_V1]
    client = MilvusClient(str(tmp_path / "ef.db"))
    try:
        client.create_collection("plain", dimension=ef.dim, metric_type="COSINE")
        vectors = ef.encode_documents(sentences)
        client.insert("plain", [{"id": i, "vector": v.tolist()} for i, v in enumerate(vectors)])
        [query] = ef.encode_queries(["Which animal sings underwater?"])
        [[best, *_]] = client.search("plain", data=[query.tolist()], limit=2)
        assert sentences[best["id"]] == CORPUS_V1[3]["text"]  # whales
    finally:
        client.close()


def test_embedding_function_takes_the_hosted_call_unchanged(
    tiny_jina_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pymilvus' ``JinaEmbeddingFunction(model_name="jina-embeddings-v3", api_key=...,
    task=..., dimensions=..., late_chunking=...)`` works as written, plus ``device``; the
    hosted model name is the local ``jinaai/jina-embeddings-v3`` (here: the tiny checkpoint
    stands in for it, offline)."""
    import huggingface_hub

    import embedder_core.registry as registry
    from embedder_core import DEFAULT_MODEL, get_embedder

    requested: list[str] = []

    def hub_is_the_tiny_checkpoint(**kwargs: Any) -> str:
        requested.append(kwargs["repo_id"])
        return str(tiny_jina_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub_is_the_tiny_checkpoint)
    # The stand-in must not stay in the process-wide cache as the real jina-embeddings-v3.
    monkeypatch.setattr(registry, "_CACHE", [])
    ef = JinaEmbeddingFunction(
        model_name="jina-embeddings-v3",
        api_key=None,
        task="retrieval.passage",
        dimensions=16,
        late_chunking=True,
        device="cpu",
    )
    embedder = get_embedder(str(tiny_jina_dir), device="cpu")
    texts = ["Berlin is the capital of Germany.", "Its population is 3.8 million."]
    assert ef.model_name == DEFAULT_MODEL and ef.dim == 16
    assert requested == [DEFAULT_MODEL]
    np.testing.assert_allclose(
        np.stack(ef(texts)),
        embedder.encode(texts, task="retrieval.passage", dimensions=16, late_chunking=True),
        atol=1e-6,
    )
    # The hosted class's positional order, with an API key (ignored, never stored).
    positional = JinaEmbeddingFunction("jina-embeddings-v3", "jina_secret", "text-matching", 8)
    assert (positional.task, positional.dim, positional.late_chunking) == (
        "text-matching",
        8,
        False,
    )
    assert "jina_secret" not in repr(vars(positional))
    with pytest.raises(ValueError, match="device and dtype apply to a model name"):
        JinaEmbeddingFunction(embedder, device="cpu")
