"""The public faces of ``jina_connectors``, ``jina_connectors.sinks`` and
``jina_connectors.adapters``: pinned, importable without a framework, and the names and module
paths that left them still work for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import jina_connectors
import jina_connectors.adapters
import jina_connectors.sinks

FACE = {
    # what a script writes: ingest and reembed, and the documents they read
    "ingest",
    "reembed",
    "IngestOptions",
    "IngestReport",
    "IngestInterrupted",
    "Document",
    "iter_documents",
    # the sinks and what searching them takes and gives
    "VectorSink",
    "QdrantSink",
    "MilvusSink",
    "PineconeSink",
    "CollectionSpec",
    "Hit",
    "SearchFilter",
    # the errors
    "CollectionMismatchError",
    "CollectionNotFoundError",
    "EmptyDocumentError",
    "IdSchemeError",
    "InvalidDocumentError",
    "MissingApiKeyError",
    "OptionError",
    "SourcePathError",
    "StoreLockedError",
    "StoreNotFoundError",
    "TextsNotStoredError",
    # the adapters' entry points
    "JinaEmbedding",
    "JinaLateChunking",
    "JinaRerank",
    "RayJinaLateChunking",
    "JinaTextEmbedder",
    "JinaDocumentEmbedder",
    "JinaLateChunkingDocumentEmbedder",
    "JinaRanker",
    "JinaEmbeddingFunction",
    "JinaRerankFunction",
}

SINK_AUTHORS_FACE = {
    "DEFAULT_COLLECTION",
    "PASSAGE_TASK",
    "QUERY_TASK",
    "ChunkRecord",
    "ChunkState",
    "CollectionInfo",
    "CollectionLayout",
    "CollectionSpec",
    "Hit",
    "SearchFilter",
    "SinkEmbeddingType",
    "StoredChunk",
    "VectorSink",
    "QdrantSink",
    "MilvusSink",
    "PineconeSink",
    "check_layout",
    "check_recorded_spec",
    "chunk_id",
    "embed_query",
    "filter_items",
    "open_sink",
    "with_retries",
}

ADAPTERS_FACE = {
    "JinaEmbedding",
    "JinaLateChunking",
    "JinaRerank",
    "RayJinaLateChunking",
    "JinaTextEmbedder",
    "JinaDocumentEmbedder",
    "JinaLateChunkingDocumentEmbedder",
    "JinaRanker",
    "JinaEmbeddingFunction",
    "JinaRerankFunction",
}

#: Names that left the top-level face -> their home.
LEFT_THE_FACE = {
    "ChunkRecord": "jina_connectors.sinks",
    "ChunkState": "jina_connectors.sinks",
    "CollectionInfo": "jina_connectors.sinks",
    "chunk_id": "jina_connectors.sinks",
    "EmbeddingSettings": "jina_connectors.ingestion.options",
    "RemoteReranker": "jina_connectors.server.rerank_client",
}

#: Old module paths of the sinks and adapters -> (a name in them, its new home).
MOVED_MODULES = {
    "jina_connectors.sink": ("VectorSink", "jina_connectors.sinks.base"),
    "jina_connectors.qdrant": ("QdrantSink", "jina_connectors.sinks.qdrant"),
    "jina_connectors.milvus": ("MilvusSink", "jina_connectors.sinks.milvus"),
    "jina_connectors.pinecone": ("PineconeSink", "jina_connectors.sinks.pinecone"),
    "jina_connectors.store": ("default_qdrant_path", "jina_connectors.sinks.store"),
    "jina_connectors.haystack": ("JinaTextEmbedder", "jina_connectors.adapters.haystack"),
    "jina_connectors.llama_index": ("JinaEmbedding", "jina_connectors.adapters.llama_index"),
    "jina_connectors._grouping": ("late_chunk", "jina_connectors.adapters.source_groups"),
    "jina_connectors._node_keys": ("with_document_key", "jina_connectors.adapters.node_keys"),
    "jina_connectors.rerankers": ("JinaRerankFunction", "jina_connectors.adapters.pymilvus"),
    "jina_connectors.rerankers_haystack": ("JinaRanker", "jina_connectors.adapters.haystack"),
    "jina_connectors.rerankers_llama_index": (
        "JinaRerank",
        "jina_connectors.adapters.llama_index",
    ),
}


def test_the_faces_are_pinned() -> None:
    assert set(jina_connectors.__all__) == FACE
    assert set(jina_connectors.sinks.__all__) == SINK_AUTHORS_FACE
    assert set(jina_connectors.adapters.__all__) == ADAPTERS_FACE
    for module in (jina_connectors, jina_connectors.sinks, jina_connectors.adapters):
        assert len(module.__all__) == len(set(module.__all__))


@pytest.mark.parametrize("module", [jina_connectors, jina_connectors.sinks])
def test_every_name_of_a_face_resolves_without_a_warning(module: object) -> None:
    pytest.importorskip("haystack")
    pytest.importorskip("llama_index.core")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        for name in module.__all__:  # type: ignore[attr-defined]
            if name == "RayJinaLateChunking":
                continue  # needs llama-index-ingestion-ray and Ray: the Ray tests cover it
            assert getattr(module, name) is not None, name


def test_the_ingest_module_face_is_what_a_script_needs_and_internals_warn() -> None:
    """``jina_connectors.ingest`` re-exported 64 names, internals included; now the script's
    names (a subset of the package face, plus the types of ``ingest``'s arguments)."""
    face = importlib.import_module("jina_connectors.ingest")
    assert set(face.__all__) - FACE == {"DocumentSource", "Chunker"}
    assert len(face.__all__) == 20
    with pytest.warns(DeprecationWarning, match="import it from jina_connectors.ingestion.stages"):
        embed_isolating = face.embed_isolating
    assert (
        embed_isolating
        is importlib.import_module("jina_connectors.ingestion.stages").embed_isolating
    )


def test_ingest_and_reembed_are_the_functions_even_after_their_modules_import() -> None:
    importlib.import_module("jina_connectors.ingest")
    importlib.import_module("jina_connectors.reembed")
    assert callable(jina_connectors.ingest) and jina_connectors.ingest.__name__ == "ingest"
    assert callable(jina_connectors.reembed) and jina_connectors.reembed.__name__ == "reembed"


def test_importing_the_package_imports_no_model_database_or_framework() -> None:
    heavy = [
        "torch",
        "transformers",
        "qdrant_client",
        "pymilvus",
        "pinecone",
        "haystack",
        "llama_index",
        "ray",
        "fastapi",
        "uvicorn",
    ]
    code = (
        "import sys, jina_connectors, jina_connectors.sinks, jina_connectors.adapters, "
        "jina_connectors.sinks.open; "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(LEFT_THE_FACE))
def test_a_name_that_left_the_face_still_imports_with_a_warning(name: str) -> None:
    home = importlib.import_module(LEFT_THE_FACE[name])
    with pytest.warns(DeprecationWarning, match=f"import it from {LEFT_THE_FACE[name]}"):
        value = getattr(jina_connectors, name)
    assert value is getattr(home, name)
    assert name not in jina_connectors.__all__


def test_internals_are_not_on_the_face() -> None:
    for name in ("embed_isolating", "with_retries", "check_layout", "resolve_settings"):
        assert name not in jina_connectors.__all__
        assert not hasattr(jina_connectors, name)


@pytest.mark.parametrize("old", sorted(MOVED_MODULES))
def test_an_old_module_path_warns_and_gives_the_same_objects(old: str) -> None:
    name, new = MOVED_MODULES[old]
    if "haystack" in old:
        pytest.importorskip("haystack")
    if "llama_index" in old:
        pytest.importorskip("llama_index.core")
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} moved to"):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)


def test_the_old_milvus_module_keeps_the_embedding_function() -> None:
    from jina_connectors.adapters.pymilvus import JinaEmbeddingFunction
    from jina_connectors.sinks.milvus import MAX_TEXT_BYTES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("jina_connectors.milvus")
    assert old.JinaEmbeddingFunction is JinaEmbeddingFunction
    assert old.MAX_TEXT_BYTES == MAX_TEXT_BYTES
