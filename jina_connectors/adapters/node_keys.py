"""The source document of each serialized LlamaIndex node row, without importing LlamaIndex.

``llama-index-ingestion-ray`` moves nodes between Ray steps as rows whose ``data`` column is
the node's JSON (``node.to_json()``). Reading the source document's id from that JSON keeps
LlamaIndex (seconds to import) out of the Ray tasks that add the grouping key.
"""

from __future__ import annotations

import json

import pyarrow as pa


def with_document_key(table: pa.Table, *, source_key: str, column: str) -> pa.Table:
    """``table`` plus ``column``: ``"document\\x1f<id>"`` for a node with a source document
    (the relationship ``source_key``, LlamaIndex's ``NodeRelationship.SOURCE``), else
    ``"node\\x1f<node id>"`` (a node of its own, embedded alone either way)."""
    keys = []
    for data in table.column("data").to_pylist():
        node = json.loads(data)
        source = (node.get("relationships") or {}).get(source_key)
        if isinstance(source, dict) and source.get("node_id") is not None:
            keys.append(f"document\x1f{source['node_id']}")
        else:
            keys.append(f"node\x1f{node.get('id_')}")
    return table.append_column(column, pa.array(keys, pa.string()))
