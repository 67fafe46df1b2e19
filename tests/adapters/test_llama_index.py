"""LlamaIndex adapter: JinaEmbedding and JinaLateChunking with real models and real stores.

MiniLM (real weights) carries meaning for retrieval; the tiny jina-format checkpoint (task
LoRA adapters, 128-token limit) checks task selection and windowed late chunking.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from adapter_support import QUESTIONS, load_corpus, run_counting_ticks
from paths import REPO_ROOT

pytest.importorskip("llama_index.core")

from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter, TokenTextSplitter
from llama_index.core.schema import BaseNode, MetadataMode, TextNode

from embedder_core import Embedder, get_embedder
from jina_connectors.adapters.llama_index import JinaEmbedding, JinaLateChunking
from jina_connectors.adapters.source_groups import SourceChunk, layout_source

# Real text with single spaces only: a rebuilt source equals the original exactly.
SENTENCES = (
    "The committee met on Monday to review the harbour project. "
    "Engineers reported that the new sea wall had passed its first winter without damage. "
    "The budget, however, had grown by a third since the plans were approved. "
    "Local fishermen asked for a second landing stage on the northern side. "
    "The mayor promised a decision before the summer season begins. "
    "Meanwhile the school board discussed the shortage of science teachers. "
    "Two retired chemists offered to teach evening classes for free. "
    "Parents welcomed the offer but asked about insurance and supervision. "
)


def _vectors(nodes: list[BaseNode]) -> dict[str, np.ndarray]:
    return {node.node_id: np.asarray(node.embedding) for node in nodes}


def _split(text: str, doc_id: str, chunk_size: int = 40, chunk_overlap: int = 20) -> list[BaseNode]:
    splitter = SentenceSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    return splitter.get_nodes_from_documents([Document(text=text, id_=doc_id)])


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> str:
    return str(minilm_dir)


@pytest.fixture(scope="module")
def tiny(tiny_jina_dir: Path) -> str:
    return str(tiny_jina_dir)


@pytest.fixture(scope="module")
def corpus_nodes(shared_data_dir: Path, minilm: str) -> list[BaseNode]:
    """The real corpus, split with overlap and late-chunked with MiniLM."""
    documents = [Document(text=d.text, id_=d.doc_id) for d in load_corpus(shared_data_dir)]
    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=96, chunk_overlap=24),
            JinaLateChunking(model=minilm),
        ]
    )
    return pipeline.run(documents=documents)


@pytest.fixture
def jina_settings(monkeypatch: pytest.MonkeyPatch, minilm: str) -> JinaEmbedding:
    """``Settings.embed_model = JinaEmbedding(...)``, as users write it; restored afterwards."""
    monkeypatch.setattr(Settings, "_embed_model", None)
    Settings.embed_model = JinaEmbedding(minilm)
    assert isinstance(Settings.embed_model, JinaEmbedding)
    return Settings.embed_model


def _assert_answers(index: VectorStoreIndex) -> None:
    retriever = index.as_retriever(similarity_top_k=1)
    for question in QUESTIONS:
        top = retriever.retrieve(question.text)[0]
        assert question.answer_phrase in top.node.get_content(), question.text


# ------------------------------------------------------------------ JinaEmbedding


def test_queries_and_texts_use_their_own_tasks(tiny: str, tiny_jina_embedder: Embedder) -> None:
    model = JinaEmbedding(tiny)
    query, text = "who may seek asylum?", "Everyone has the right to seek asylum."
    expected_query = tiny_jina_embedder.encode(query, task="retrieval.query")[0]
    expected_text = tiny_jina_embedder.encode(text, task="retrieval.passage")[0]
    np.testing.assert_allclose(model.get_query_embedding(query), expected_query, atol=1e-6)
    np.testing.assert_allclose(model.get_text_embedding(text), expected_text, atol=1e-6)
    batch = model.get_text_embedding_batch([text, query])
    np.testing.assert_allclose(batch[0], expected_text, atol=1e-6)
    # The adapters really differ, so the checks above can tell the tasks apart.
    other = tiny_jina_embedder.encode(query, task="retrieval.passage")[0]
    assert not np.allclose(expected_query, other, atol=1e-3)


def test_hosted_single_task_parameter(tiny: str, tiny_jina_embedder: Embedder) -> None:
    # The hosted integration's one `task` for both sides: a retrieval task keeps the pair.
    hosted_style = JinaEmbedding(tiny, task="retrieval.passage", api_key="ignored")
    assert (hosted_style.query_task, hosted_style.text_task) == (
        "retrieval.query",
        "retrieval.passage",
    )
    symmetric = JinaEmbedding(tiny, task="text-matching")
    expected = tiny_jina_embedder.encode("a b c", task="text-matching")[0]
    np.testing.assert_allclose(symmetric.get_query_embedding("a b c"), expected, atol=1e-6)
    np.testing.assert_allclose(symmetric.get_text_embedding("a b c"), expected, atol=1e-6)
    with pytest.raises(ValueError, match="either task"):
        JinaEmbedding(tiny, task="text-matching", query_task="retrieval.query")
    with pytest.raises(ValueError, match="JinaLateChunking"):
        JinaEmbedding(tiny, late_chunking=True)


def test_async_matches_sync_and_keeps_the_event_loop_free(minilm: str) -> None:
    model = JinaEmbedding(minilm, embed_batch_size=16)
    texts = [f"{sentence} ({i})" for i, sentence in enumerate(SENTENCES.split(". ") * 8)]

    async def embed_both() -> tuple[list[list[float]], list[float]]:
        embedded = await model.aget_text_embedding_batch(texts)
        return embedded, await model.aget_query_embedding("harbour sea wall")

    (embedded, query), ticks_during = run_counting_ticks(embed_both())
    np.testing.assert_allclose(embedded, model.get_text_embedding_batch(texts), atol=1e-6)
    np.testing.assert_allclose(query, model.get_query_embedding("harbour sea wall"), atol=1e-6)
    # A blocking implementation would let the ticker run at most a few times in between.
    assert ticks_during >= 5


def test_serializes_like_other_llama_index_embeddings(tiny: str) -> None:
    model = JinaEmbedding(tiny, dimensions=16, embed_batch_size=7, api_key="secret-key")
    data = model.to_dict()
    assert data["class_name"] == JinaEmbedding.class_name() == "JinaLocalEmbedding"
    assert "secret-key" not in str(data)
    assert (data["model"], data["dimensions"], data["embed_batch_size"]) == (tiny, 16, 7)
    restored = JinaEmbedding.from_dict(data)
    assert restored.to_dict() == data
    np.testing.assert_array_equal(
        restored.get_query_embedding("harbour"), model.get_query_embedding("harbour")
    )
    assert len(restored.get_query_embedding("harbour")) == 16
    assert JinaEmbedding.from_json(model.to_json()).to_dict() == data


def test_instances_share_one_model(tiny: str) -> None:
    first, second = JinaEmbedding(tiny), JinaEmbedding(tiny, dimensions=8)
    chunker = JinaLateChunking(model=tiny)
    assert first._embedder is second._embedder is chunker._embedder is get_embedder(tiny)


def test_binary_encodings_are_sign_bits(tiny: str) -> None:
    floats = JinaEmbedding(tiny)
    bits = JinaEmbedding(tiny, encoding_queries="ubinary", encoding_documents="binary")
    for method in ("get_query_embedding", "get_text_embedding"):
        expected = (np.asarray(getattr(floats, method)("sea wall")) > 0).astype(float)
        np.testing.assert_array_equal(getattr(bits, method)("sea wall"), expected)


def test_bad_input_gets_the_cores_errors(tiny: str) -> None:
    model = JinaEmbedding(tiny)
    with pytest.raises(TypeError, match="input 1"):
        model.get_text_embedding_batch(["fine", 42])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        model.get_query_embedding(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown task 'retrieval\.answer'.*retrieval\.query"):
        JinaEmbedding(tiny, query_task="retrieval.answer")
    with pytest.raises(ValueError, match="unknown task"):
        JinaLateChunking(model=tiny, text_task="summary")
    with pytest.raises(ValueError, match="dimensions must be between 1 and 32"):
        JinaEmbedding(tiny, dimensions=1024)
    with pytest.raises(ValueError, match="dimensions"):
        JinaLateChunking(model=tiny, dimensions=0)
    with pytest.raises(ValueError, match=r"dimension\s+Extra inputs are not permitted"):
        JinaEmbedding(tiny, dimension=16)  # misspelt: an error, not silently ignored


# -------------------------------------------------------------- source layout


def test_layout_rebuilds_the_source_from_overlapping_chunks_in_any_order() -> None:
    rng = random.Random(7)
    text = SENTENCES
    for _ in range(300):
        spans, position = [], 0
        while position < len(text):
            start = max(0, position - rng.randint(0, 15))
            end = min(len(text), max(position + 1, start + rng.randint(5, 60)))
            spans.append((start, end))
            position = end
        spans = [(a, b) for a, b in spans if text[a:b].strip()]
        rng.shuffle(spans)
        chunks = [SourceChunk("doc", str(k), text[a:b], a) for k, (a, b) in enumerate(spans)]
        layout = layout_source(chunks)
        for chunk, (a, b) in zip(chunks, layout.spans, strict=True):
            assert layout.text[a:b] == chunk.text
        covered = sorted(spans)
        if all(b2 >= a1 for (_, a1), (b2, _) in itertools.pairwise(covered)):
            # Whole text covered (chunks overlap or touch): rebuilt exactly, nothing repeated.
            assert layout.text == text


def test_layout_gaps_order_fallback_and_conflicts() -> None:
    gap = layout_source([SourceChunk("d", "b", "Next.", 20), SourceChunk("d", "a", "Hello.", 0)])
    assert (gap.text, gap.spans) == ("Hello. Next.", [(7, 12), (0, 6)])
    no_offsets = layout_source(
        [SourceChunk("d", "b", "world", None, 1), SourceChunk("d", "a", "hello", 0, 0)]
    )
    assert (no_offsets.text, no_offsets.spans) == ("hello world", [(6, 11), (0, 5)])
    with pytest.raises(ValueError, match="disagree at character 6"):
        layout_source([SourceChunk("d", "a", "hello world", 0), SourceChunk("d", "b", "wxrld", 6)])
    with pytest.raises(ValueError, match="empty or whitespace"):
        layout_source([SourceChunk("d", "a", "  ", 0)])


# ------------------------------------------------------------- JinaLateChunking


def test_late_chunking_pools_each_node_over_its_span_of_the_source(minilm: str) -> None:
    nodes = _split(SENTENCES, "harbour")
    assert len(nodes) >= 4
    spans = [(n.start_char_idx, n.end_char_idx) for n in nodes]
    assert any(b > a2 for (_, b), (a2, _) in itertools.pairwise(spans)), "no overlap"
    JinaLateChunking(model=minilm)(nodes)
    # Overlapping nodes were pooled over the original text, encoded once: no text repeated.
    expected = get_embedder(minilm).embed_spans([(SENTENCES, spans)])[0]
    np.testing.assert_allclose([n.embedding for n in nodes], expected, atol=1e-6)
    # ...which is not what embedding each node on its own gives.
    alone = JinaEmbedding(minilm).get_text_embedding_batch([n.text for n in nodes])
    for late, own in zip(expected, alone, strict=True):
        assert float(np.dot(late, own)) < 0.999


def test_late_chunking_does_not_depend_on_node_order_or_other_documents(minilm: str) -> None:
    second_text = SENTENCES.replace("harbour", "airport").replace("sea wall", "runway")
    harbour, airport = _split(SENTENCES, "harbour"), _split(second_text, "airport")
    chunker = JinaLateChunking(model=minilm)
    reference = _vectors(list(chunker([n.model_copy() for n in harbour + airport])))
    rng = random.Random(3)
    for _ in range(3):
        shuffled = [n.model_copy() for n in harbour + airport]
        rng.shuffle(shuffled)
        result = _vectors(list(chunker(shuffled)))
        for node_id, vector in reference.items():
            np.testing.assert_array_equal(result[node_id], vector)
    # A document's nodes never join another document's text.
    alone = _vectors(list(chunker([n.model_copy() for n in harbour])))
    for node_id, vector in alone.items():
        np.testing.assert_allclose(reference[node_id], vector, atol=1e-5)


def test_nodes_without_a_source_are_embedded_on_their_own(minilm: str) -> None:
    lone = TextNode(text="Two retired chemists offered to teach.", metadata={"town": "Leith"})
    nodes = [*_split(SENTENCES, "harbour"), lone]
    JinaLateChunking(model=minilm)(nodes)
    expected = JinaEmbedding(minilm).get_text_embedding(lone.get_content(MetadataMode.EMBED))
    np.testing.assert_allclose(lone.embedding, expected, atol=1e-6)


def test_nodes_without_offsets_follow_their_relationships(minilm: str) -> None:
    nodes = _split(SENTENCES, "harbour", chunk_overlap=0)
    assert nodes[1].prev_node is not None and nodes[1].prev_node.node_id == nodes[0].node_id
    for node in nodes:
        node.start_char_idx = node.end_char_idx = None
    chunker = JinaLateChunking(model=minilm)
    shuffled = [n.model_copy() for n in nodes]
    random.Random(5).shuffle(shuffled)
    result = _vectors(list(chunker(shuffled)))
    # Joined in PREVIOUS/NEXT order, one space apart, whatever order they arrived in.
    joined, spans = "", []
    for node in nodes:
        joined += " " if joined else ""
        spans.append((len(joined), len(joined) + len(node.text)))
        joined += node.text
    expected = get_embedder(minilm).embed_spans([(joined, spans)])[0]
    np.testing.assert_allclose([result[n.node_id] for n in nodes], expected, atol=1e-6)


def test_long_documents_use_windowed_late_chunking(tiny: str) -> None:
    # Far past the tiny checkpoint's 128 tokens; numbered so that no chunk's text repeats.
    sentences = [s for s in SENTENCES.split(". ") if s.strip()] * 6
    text = " ".join(f"Item {k}: {sentence}." for k, sentence in enumerate(sentences))
    embedder = get_embedder(tiny)
    assert embedder.count_tokens(text)[0] > 3 * embedder.max_tokens
    nodes = TokenTextSplitter(chunk_size=40, chunk_overlap=10).get_nodes_from_documents(
        [Document(text=text, id_="long")]
    )
    JinaLateChunking(model=tiny, dimensions=16)(nodes)
    spans = [(n.start_char_idx, n.end_char_idx) for n in nodes]
    expected = embedder.embed_spans([(text, spans)], dimensions=16)[0]
    np.testing.assert_allclose([n.embedding for n in nodes], expected, atol=1e-6)
    assert np.isfinite(expected).all() and expected.shape == (len(nodes), 16)


def test_ingestion_pipeline_async_run(minilm: str) -> None:
    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=24, chunk_overlap=8),
            JinaLateChunking(model=minilm),
        ]
    )
    documents = [Document(text=SENTENCES, id_="harbour")]
    sync_nodes = _vectors(list(pipeline.run(documents=documents)))
    async_nodes = _vectors(list(asyncio.run(pipeline.arun(documents=documents))))
    assert sync_nodes.keys() == async_nodes.keys()
    for node_id, vector in sync_nodes.items():
        np.testing.assert_array_equal(async_nodes[node_id], vector)


# ------------------------------------------------------------------- vector stores


def test_vector_store_index_on_qdrant_answers_questions(
    corpus_nodes: list[BaseNode], jina_settings: JinaEmbedding
) -> None:
    qdrant_client = pytest.importorskip("qdrant_client")
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    store = QdrantVectorStore(client=qdrant_client.QdrantClient(":memory:"), collection_name="udhr")
    index = VectorStoreIndex(
        [node.model_copy() for node in corpus_nodes],
        storage_context=StorageContext.from_defaults(vector_store=store),
    )
    assert index._embed_model is jina_settings  # queries go through Settings.embed_model
    _assert_answers(index)


def test_vector_store_index_on_milvus_lite_answers_questions(
    corpus_nodes: list[BaseNode], jina_settings: JinaEmbedding, tmp_path: Path
) -> None:
    pytest.importorskip("pymilvus")
    from llama_index.vector_stores.milvus import MilvusVectorStore

    store = MilvusVectorStore(
        uri=str(tmp_path / "llama.db"), dim=384, overwrite=True, use_async_client=False
    )
    index = VectorStoreIndex(
        [node.model_copy() for node in corpus_nodes],
        storage_context=StorageContext.from_defaults(vector_store=store),
    )
    _assert_answers(index)


def test_vector_store_index_transformations(minilm: str, jina_settings: JinaEmbedding) -> None:
    splitter = SentenceSplitter(chunk_size=40, chunk_overlap=20)
    index = VectorStoreIndex.from_documents(
        [Document(text=SENTENCES, id_="harbour")],
        transformations=[splitter, JinaLateChunking(model=minilm)],
    )
    expected = JinaLateChunking(model=minilm)(_split(SENTENCES, "harbour"))
    stored = index.vector_store.to_dict()["embedding_dict"]
    by_span = {
        (node.start_char_idx, node.end_char_idx): stored[node.node_id]
        for node in index.docstore.docs.values()
    }
    assert len(by_span) == len(expected)
    for node in expected:
        np.testing.assert_array_equal(
            by_span[node.start_char_idx, node.end_char_idx], node.embedding
        )
    top = index.as_retriever(similarity_top_k=1).retrieve("Who offered to teach evening classes?")
    assert "retired chemists" in top[0].node.get_content()


def test_dimensions_that_do_not_fit_the_store_write_nothing(
    minilm: str, jina_settings: JinaEmbedding
) -> None:
    qdrant_client = pytest.importorskip("qdrant_client")
    from llama_index.vector_stores.qdrant import QdrantVectorStore

    client = qdrant_client.QdrantClient(":memory:")
    store = QdrantVectorStore(client=client, collection_name="fit")
    index = VectorStoreIndex(
        JinaLateChunking(model=minilm)(_split(SENTENCES, "harbour")),
        storage_context=StorageContext.from_defaults(vector_store=store),
    )
    stored = client.count("fit").count
    narrow = JinaLateChunking(model=minilm, dimensions=64)(_split(SENTENCES, "other"))
    with pytest.raises(ValueError, match="expected dim: 384, got 64"):
        index.insert_nodes(list(narrow))
    assert client.count("fit").count == stored


def test_example_runs_end_to_end_and_again_without_duplicates(
    minilm: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    example = REPO_ROOT / "examples" / "llama_index_qdrant.py"
    monkeypatch.setattr(Settings, "_embed_model", None)  # the example sets Settings.embed_model
    question = "Which freedoms should people everywhere in the world have?"
    argv = [str(example), "--model", minilm, "--limit", "4", "--storage-dir", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [*argv, question])
    runpy.run_path(str(example), run_name="__main__")
    first = capsys.readouterr().out
    assert "4 addresses" in first
    assert "roosevelt_1941.txt" in first.split(question)[1].splitlines()[1]
    runpy.run_path(str(example), run_name="__main__")
    second = capsys.readouterr().out
    assert "4 addresses, 0 new late-chunked nodes" in second
    assert second.split(question)[1] == first.split(question)[1]
