"""Haystack adapter: the three components in real pipelines over Qdrant and Milvus Lite.

MiniLM (real weights) carries meaning for retrieval; the tiny jina-format checkpoint (task
LoRA adapters) checks task selection.
"""

from __future__ import annotations

import random
import runpy
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from adapter_support import QUESTIONS, load_corpus, run_counting_ticks
from paths import REPO_ROOT

pytest.importorskip("haystack")

from haystack import Document, Pipeline
from haystack.components.preprocessors import DocumentSplitter
from haystack.components.writers import DocumentWriter
from haystack.core.errors import PipelineRuntimeError
from haystack.document_stores.types import DuplicatePolicy
from haystack.utils import Secret

from embedder_core import Embedder, ModelNotFoundError, get_embedder
from jina_connectors.adapters.haystack import (
    JinaDocumentEmbedder,
    JinaLateChunkingDocumentEmbedder,
    JinaTextEmbedder,
)

TEXT = (
    "The committee met on Monday to review the harbour project. "
    "Engineers reported that the new sea wall had passed its first winter without damage. "
    "The budget, however, had grown by a third since the plans were approved. "
    "Local fishermen asked for a second landing stage on the northern side. "
    "Meanwhile the school board discussed the shortage of science teachers. "
    "Two retired chemists offered to teach evening classes for free."
)


def _chunks(text: str, split_length: int = 12, split_overlap: int = 4) -> list[Document]:
    splitter = DocumentSplitter(
        split_by="word", split_length=split_length, split_overlap=split_overlap
    )
    return splitter.run([Document(content=text)])["documents"]


def _spans(chunks: list[Document]) -> list[tuple[int, int]]:
    return [(c.meta["split_idx_start"], c.meta["split_idx_start"] + len(c.content)) for c in chunks]


@pytest.fixture(scope="module")
def minilm(minilm_dir: Path) -> str:
    return str(minilm_dir)


@pytest.fixture(scope="module")
def tiny(tiny_jina_dir: Path) -> str:
    return str(tiny_jina_dir)


def _indexing_pipeline(
    model: str, *writers: DocumentWriter, dimensions: int | None = None
) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component(
        "splitter", DocumentSplitter(split_by="word", split_length=60, split_overlap=15)
    )
    pipeline.add_component(
        "embedder", JinaLateChunkingDocumentEmbedder(model=model, dimensions=dimensions)
    )
    pipeline.connect("splitter", "embedder")
    for k, writer in enumerate(writers):
        pipeline.add_component(f"writer{k}", writer)
        pipeline.connect("embedder", f"writer{k}")
    return pipeline


def _overwriting(store: Any) -> DocumentWriter:
    return DocumentWriter(store, policy=DuplicatePolicy.OVERWRITE)


def _query_pipeline(model: str, retriever: Any) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("text_embedder", JinaTextEmbedder(model=model))
    pipeline.add_component("retriever", retriever)
    pipeline.connect("text_embedder.embedding", "retriever.query_embedding")
    return pipeline


def _qdrant_store(embedding_dim: int = 384) -> Any:
    qdrant = pytest.importorskip("haystack_integrations.document_stores.qdrant")
    return qdrant.QdrantDocumentStore(
        ":memory:", embedding_dim=embedding_dim, recreate_index=True, progress_bar=False
    )


@pytest.fixture(scope="module")
def indexed(
    shared_data_dir: Path, minilm: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The real corpus indexed by one pipeline into Qdrant (in memory) and Milvus Lite."""
    milvus = pytest.importorskip("milvus_haystack")
    qdrant_store = _qdrant_store()
    milvus_uri = str(tmp_path_factory.mktemp("milvus") / "haystack.db")
    milvus_store = milvus.MilvusDocumentStore(connection_args={"uri": milvus_uri}, drop_old=True)
    documents = [Document(content=d.text, id=d.doc_id) for d in load_corpus(shared_data_dir)]
    # milvus-haystack 0.0.18 supports only DuplicatePolicy.NONE.
    writers = (_overwriting(qdrant_store), DocumentWriter(milvus_store))
    result = _indexing_pipeline(minilm, *writers).run(
        {"splitter": {"documents": documents}},
        include_outputs_from={"embedder"},
    )
    return {
        "qdrant": qdrant_store,
        "milvus": milvus_store,
        "documents": documents,
        "result": result,
    }


def _assert_answers(pipeline: Pipeline) -> None:
    for question in QUESTIONS:
        found = pipeline.run({"text_embedder": {"text": question.text}})["retriever"]["documents"]
        assert question.answer_phrase in found[0].content, question.text


# -------------------------------------------------------------------- tasks and meta


def test_query_and_documents_use_their_own_tasks(tiny: str, tiny_jina_embedder: Embedder) -> None:
    query, passage = "who may seek asylum?", "Everyone has the right to seek asylum."
    embedded_query = JinaTextEmbedder(model=tiny).run(query)["embedding"]
    embedded_docs = JinaDocumentEmbedder(model=tiny, progress_bar=False).run(
        [Document(content=passage)]
    )["documents"]
    expected_query = tiny_jina_embedder.encode(query, task="retrieval.query")[0]
    expected_passage = tiny_jina_embedder.encode(passage, task="retrieval.passage")[0]
    np.testing.assert_allclose(embedded_query, expected_query, atol=1e-6)
    np.testing.assert_allclose(embedded_docs[0].embedding, expected_passage, atol=1e-6)
    other = tiny_jina_embedder.encode(query, task="retrieval.passage")[0]
    assert not np.allclose(expected_query, other, atol=1e-3)  # the tasks really differ
    late = JinaLateChunkingDocumentEmbedder(model=tiny).run(_chunks(TEXT))["documents"]
    spans = _spans(late)
    expected_late = tiny_jina_embedder.embed_spans([(TEXT, spans)], task="retrieval.passage")[0]
    np.testing.assert_allclose([d.embedding for d in late], expected_late, atol=1e-6)


def test_meta_reports_model_and_token_usage(minilm: str) -> None:
    embedder = get_embedder(minilm)
    text_result = JinaTextEmbedder(model=minilm, prefix="Q: ").run("harbour budget")
    tokens = embedder.count_tokens("Q: harbour budget", task="retrieval.query")[0]
    assert text_result["meta"] == {
        "model": minilm,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
    documents = [Document(content=t) for t in TEXT.split(". ")]
    doc_result = JinaDocumentEmbedder(model=minilm, progress_bar=False).run(documents)
    counted = sum(embedder.count_tokens([d.content for d in documents], task="retrieval.passage"))
    assert doc_result["meta"]["usage"]["prompt_tokens"] == counted
    late_result = JinaLateChunkingDocumentEmbedder(model=minilm).run(_chunks(TEXT))
    # Overlapping chunks are counted once: the rebuilt source is the original text.
    source_tokens = embedder.count_tokens(TEXT, task="retrieval.passage")[0]
    assert late_result["meta"]["usage"]["total_tokens"] == source_tokens


def test_document_embedder_returns_new_documents(minilm: str) -> None:
    documents = [
        Document(content=t, meta={"title": f"Part {k}"}) for k, t in enumerate(TEXT.split(". "))
    ]
    component = JinaDocumentEmbedder(
        model=minilm,
        prefix=">> ",
        meta_fields_to_embed=["title"],
        embedding_separator=" | ",
        batch_size=2,
        progress_bar=False,
    )
    embedded = component.run(documents)["documents"]
    assert all(d.embedding is None for d in documents)  # inputs untouched
    assert [d.id for d in embedded] == [d.id for d in documents]
    assert [d.meta for d in embedded] == [d.meta for d in documents]
    texts = [f">> {d.meta['title']} | {d.content}" for d in documents]
    expected = get_embedder(minilm).encode(texts, task="retrieval.passage")
    np.testing.assert_allclose([d.embedding for d in embedded], expected, atol=1e-5)


# ------------------------------------------------------------------ late chunking


def test_late_chunking_pools_overlapping_chunks_over_the_original_text(minilm: str) -> None:
    chunks = _chunks(TEXT)
    assert any(c.meta["_split_overlap"] for c in chunks), "the splitter made no overlap"
    late = JinaLateChunkingDocumentEmbedder(model=minilm).run(chunks)["documents"]
    # The source is encoded once; each chunk is pooled over its own span: no text repeated.
    expected = get_embedder(minilm).embed_spans([(TEXT, _spans(chunks))])[0]
    np.testing.assert_allclose([d.embedding for d in late], expected, atol=1e-6)
    assert [d.id for d in late] == [c.id for c in chunks]
    alone = JinaDocumentEmbedder(model=minilm, progress_bar=False).run(chunks)["documents"]
    for late_doc, own_doc in zip(late, alone, strict=True):
        assert float(np.dot(late_doc.embedding, own_doc.embedding)) < 0.999


def test_late_chunking_groups_per_source_in_any_order(minilm: str) -> None:
    other_text = TEXT.replace("harbour", "airport").replace("sea wall", "runway")
    chunks = _chunks(TEXT) + _chunks(other_text)
    component = JinaLateChunkingDocumentEmbedder(model=minilm)
    reference = {d.id: d.embedding for d in component.run(chunks)["documents"]}
    rng = random.Random(11)
    for _ in range(3):
        shuffled = list(chunks)
        rng.shuffle(shuffled)
        result = component.run(shuffled)["documents"]
        assert [d.id for d in result] == [d.id for d in shuffled]
        for doc in result:
            np.testing.assert_array_equal(doc.embedding, reference[doc.id])
    # The same chunks embedded without the other source: a source never joins another.
    alone = component.run(_chunks(TEXT))["documents"]
    for doc in alone:
        np.testing.assert_allclose(doc.embedding, reference[doc.id], atol=1e-5)


def test_document_embedder_late_chunking_flag(minilm: str) -> None:
    loose = Document(content="A note that belongs to no source document.")
    chunks = _chunks(TEXT)
    flagged = JinaDocumentEmbedder(model=minilm, late_chunking=True, progress_bar=False)
    result = flagged.run([*chunks, loose])["documents"]
    late = JinaLateChunkingDocumentEmbedder(model=minilm).run(chunks)["documents"]
    for got, want in zip(result, late, strict=False):
        np.testing.assert_array_equal(got.embedding, want.embedding)
    expected_loose = get_embedder(minilm).encode(loose.content, task="retrieval.passage")[0]
    np.testing.assert_allclose(result[-1].embedding, expected_loose, atol=1e-6)
    with pytest.raises(ValueError, match="late_chunking"):
        JinaDocumentEmbedder(model=minilm, late_chunking=True, meta_fields_to_embed=["title"])


def test_whole_documents_are_split_and_late_chunked(minilm: str) -> None:
    chunks = _chunks(TEXT)
    whole = Document(content=TEXT.replace("harbour", "airport"), meta={"lang": "en"})
    component = JinaLateChunkingDocumentEmbedder(model=minilm, chunker="sentences", chunk_size=24)
    result = component.run([chunks[0], whole, *chunks[1:]])["documents"]
    assert result[0].id == chunks[0].id
    assert [d.id for d in result[-(len(chunks) - 1) :]] == [c.id for c in chunks[1:]]
    split = result[1 : len(result) - len(chunks) + 1]
    expected = get_embedder(minilm).embed_documents([whole.content], chunk_size=24)[0]
    assert len(split) == len(expected) >= 2
    for k, (doc, chunk) in enumerate(zip(split, expected, strict=True)):
        start = doc.meta["split_idx_start"]
        assert doc.content == whole.content[start : start + len(doc.content)] == chunk.text
        assert doc.meta["source_id"] == whole.id and doc.meta["split_id"] == k
        assert doc.meta["lang"] == "en" and doc.meta["page_number"] == 1
        np.testing.assert_allclose(doc.embedding, chunk.embedding, atol=1e-6)


# ------------------------------------------------------------------------ pipelines


def test_pipeline_into_qdrant_answers_questions(indexed: dict[str, Any], minilm: str) -> None:
    from haystack_integrations.components.retrievers.qdrant import QdrantEmbeddingRetriever

    store = indexed["qdrant"]
    embedded = indexed["result"]["embedder"]["documents"]
    assert (
        store.count_documents()
        == len(embedded)
        == indexed["result"]["writer0"]["documents_written"]
    )
    _assert_answers(_query_pipeline(minilm, QdrantEmbeddingRetriever(store, top_k=1)))


def test_pipeline_into_milvus_lite_answers_questions(indexed: dict[str, Any], minilm: str) -> None:
    from milvus_haystack import MilvusEmbeddingRetriever

    store = indexed["milvus"]
    assert store.count_documents() == indexed["result"]["writer1"]["documents_written"] > 0
    _assert_answers(_query_pipeline(minilm, MilvusEmbeddingRetriever(store, top_k=1)))


def test_indexing_again_duplicates_nothing(indexed: dict[str, Any], minilm: str) -> None:
    store = indexed["qdrant"]
    before = store.count_documents()
    # Chunk ids derive from content and meta, so the same input overwrites the same points.
    _indexing_pipeline(minilm, _overwriting(store)).run(
        {"splitter": {"documents": indexed["documents"][:1]}}
    )
    assert store.count_documents() == before


def test_pipeline_yaml_round_trip(minilm: str) -> None:
    store = _qdrant_store()
    indexing = _indexing_pipeline(minilm, _overwriting(store), dimensions=384)
    from haystack_integrations.components.retrievers.qdrant import QdrantEmbeddingRetriever

    query = _query_pipeline(minilm, QdrantEmbeddingRetriever(store, top_k=1))
    for pipeline in (indexing, query):
        original, restored = pipeline.to_dict(), Pipeline.loads(pipeline.dumps()).to_dict()
        assert restored["components"] == original["components"]
        assert sorted(map(str, restored["connections"])) == sorted(
            map(str, original["connections"])
        )
    loaded_embedder = Pipeline.loads(query.dumps()).get_component("text_embedder")
    assert isinstance(loaded_embedder, JinaTextEmbedder)
    np.testing.assert_array_equal(
        loaded_embedder.run("sea wall")["embedding"],
        query.get_component("text_embedder").run("sea wall")["embedding"],
    )
    # Hosted-style arguments: api_key is accepted, ignored and never serialized.
    hosted = JinaDocumentEmbedder(
        Secret.from_token("jina_secret"), minilm, task="retrieval.passage"
    )
    assert "api_key" not in hosted.to_dict()["init_parameters"]
    assert "jina_secret" not in _single(hosted).dumps()


def test_yaml_saved_under_the_old_module_paths_still_loads(minilm: str) -> None:
    """Pipelines saved before the adapters moved to ``jina_connectors.adapters`` name
    ``jina_connectors.haystack`` / ``jina_connectors.rerankers_haystack``: they load as the
    same components, with the same options, and save under the new path."""
    from jina_connectors.adapters.haystack import JinaRanker

    saved = _single(JinaDocumentEmbedder(model=minilm, dimensions=64, prefix="p: ")).to_dict()
    component = saved["components"]["component"]
    component["type"] = "jina_connectors.haystack.JinaDocumentEmbedder"
    ranker = {"type": "jina_connectors.rerankers_haystack.JinaRanker"}
    ranker["init_parameters"] = {"model": "some-reranker", "top_k": 3}
    saved["components"]["ranker"] = ranker
    loaded = Pipeline.from_dict(
        saved, allowed_modules=["jina_connectors.haystack", "jina_connectors.rerankers_haystack"]
    )
    embedder, reranker = loaded.get_component("component"), loaded.get_component("ranker")
    assert isinstance(embedder, JinaDocumentEmbedder) and isinstance(reranker, JinaRanker)
    assert (embedder.model, embedder.dimensions, embedder.prefix) == (minilm, 64, "p: ")
    assert (reranker.model, reranker.top_k) == ("some-reranker", 3)
    types = {c["type"] for c in loaded.to_dict()["components"].values()}
    assert types == {
        "jina_connectors.adapters.haystack.JinaDocumentEmbedder",
        "jina_connectors.adapters.haystack.JinaRanker",
    }


def _single(component: Any) -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("component", component)
    return pipeline


def test_run_async_matches_run_without_blocking(minilm: str) -> None:
    text_embedder = JinaTextEmbedder(model=minilm)
    late = JinaLateChunkingDocumentEmbedder(model=minilm)
    documents = JinaDocumentEmbedder(model=minilm, progress_bar=False)
    chunks = _chunks(TEXT * 3)

    async def run_all() -> list[dict[str, Any]]:
        return [
            await text_embedder.run_async("sea wall"),
            await late.run_async(chunks),
            await documents.run_async(chunks),
        ]

    (text_out, late_out, doc_out), ticks_during = run_counting_ticks(run_all())
    assert ticks_during >= 5  # the event loop kept running while the model worked
    assert text_out["embedding"] == text_embedder.run("sea wall")["embedding"]
    for result, component in ((late_out, late), (doc_out, documents)):
        expected = component.run(chunks)["documents"]
        for got, want in zip(result["documents"], expected, strict=True):
            np.testing.assert_array_equal(got.embedding, want.embedding)


# ------------------------------------------------------------------------ bad input


def test_bad_input_gets_clear_errors_through_the_pipeline(minilm: str) -> None:
    with pytest.raises(PipelineRuntimeError) as failure:
        _single(JinaTextEmbedder(model=minilm)).run({"component": {"text": 42}})
    assert isinstance(failure.value.__cause__, TypeError)
    assert "expects a string" in str(failure.value.__cause__)
    with pytest.raises(ValueError, match="input 1 is empty"):
        JinaDocumentEmbedder(model=minilm).run([Document(content="ok"), Document(content=None)])
    with pytest.raises(TypeError, match="list of Documents"):
        JinaLateChunkingDocumentEmbedder(model=minilm).run(["not a document"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"unknown task 'retrieval\.answer'"):
        _single(JinaTextEmbedder(model=minilm, task="retrieval.answer")).run(
            {"component": {"text": "x"}}
        )
    with pytest.raises(ValueError, match="dimensions must be between 1 and 384"):
        JinaLateChunkingDocumentEmbedder(model=minilm, dimensions=1024).warm_up()
    with pytest.raises(ValueError, match="chunker"):
        JinaLateChunkingDocumentEmbedder(model=minilm, chunker="paragraphs")  # type: ignore[arg-type]
    chunks = _chunks(TEXT)
    chunks[1].meta["split_idx_start"] += 3  # offsets no longer match the text
    with pytest.raises(ValueError, match="disagree"):
        JinaLateChunkingDocumentEmbedder(model=minilm).run(chunks)


def test_hosted_model_name_means_the_hub_model() -> None:
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("jinaai/jina-embeddings-v3", "config.json"), str):
        pytest.skip("jina-embeddings-v3 is in the local Hugging Face cache")
    # "jina-embeddings-v3", the hosted API's name, is looked up as jinaai/jina-embeddings-v3.
    with pytest.raises(ModelNotFoundError, match="'jinaai/jina-embeddings-v3' is not in the"):
        JinaTextEmbedder(model="jina-embeddings-v3").warm_up()


def test_dimensions_that_do_not_fit_the_store_write_nothing(minilm: str) -> None:
    store = _qdrant_store(embedding_dim=384)
    pipeline = _indexing_pipeline(minilm, _overwriting(store), dimensions=64)
    with pytest.raises(PipelineRuntimeError, match="expected dim: 384, got 64"):
        pipeline.run({"splitter": {"documents": [Document(content=TEXT)]}})
    assert store.count_documents() == 0


def test_example_runs_end_to_end_and_again_without_duplicates(
    minilm: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    pytest.importorskip("milvus_haystack")
    import warnings

    example = REPO_ROOT / "examples" / "haystack_milvus.py"
    question = "Which freedoms should people everywhere in the world have?"
    argv = [str(example), "--model", minilm, "--limit", "4", "--milvus-uri", str(tmp_path / "m.db")]
    monkeypatch.setattr(sys, "argv", [*argv, question])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runpy.run_path(str(example), run_name="__main__")
    first = capsys.readouterr().out
    # No noise: before, one "unsupported types: ['_split_overlap']" line per chunk and a
    # "Mutating attribute" warning per write and per search.
    assert "_split_overlap" not in caplog.text
    assert not [w for w in caught if "Mutating attribute" in str(w.message)]
    assert "4 addresses (" in first
    assert "roosevelt_1941.txt" in first.split(question)[1].splitlines()[1]
    runpy.run_path(str(example), run_name="__main__")
    second = capsys.readouterr().out
    assert "addresses (" not in second  # all four were indexed already: nothing re-embedded
    assert second.split(question)[1] == first.split(question)[1]
    chunk_counts = [line for line in (first + second).splitlines() if " chunks in " in line]
    assert len(chunk_counts) == 2 and chunk_counts[0] == chunk_counts[1]
