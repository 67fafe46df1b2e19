"""LlamaIndex: :class:`JinaRerank`, a node postprocessor on a local (or served) reranker.

A drop-in for ``llama_index.postprocessor.jinaai_rerank.JinaRerank``: same ``top_n`` and
``model``, same events (``ReRankStartEvent``/``ReRankEndEvent`` on the instrumentation
dispatcher, a ``RERANKING`` callback event), new ``NodeWithScore`` objects scored by the
reranker, best first.
"""

from __future__ import annotations

from typing import Any

from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from .rerankers import DEFAULT_RERANKER, load_reranker

__all__ = ["JinaRerank"]

dispatcher = get_dispatcher(__name__)


class JinaRerank(BaseNodePostprocessor):
    """Rerank retrieved nodes with jina-reranker-v2/v3 run by ``embedder_core``.

    Args:
        top_n: nodes to keep, best first.
        model: reranker folder, Hub id, hosted name (``jina-reranker-v3``,
            ``jina-reranker-v2-base-multilingual``) or server URL.
        device, dtype: as for ``embedder_core.get_reranker``.
    """

    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored

    top_n: int = Field(default=2, ge=1, description="Number of nodes to return.")
    model: str = Field(default=DEFAULT_RERANKER, description="The reranker.")
    device: str | None = Field(default=None, description="cpu, cuda, cuda:1.")
    dtype: str | None = Field(default=None, description="float32, bfloat16 [per device].")
    _reranker: Any = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._reranker = load_reranker(self.model, device=self.device, dtype=self.dtype)

    @classmethod
    def class_name(cls) -> str:
        return "JinaRerank"

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model
            )
        )
        if query_bundle is None:
            raise ValueError("Missing query bundle in extra info.")
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        texts = [node.node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            results = self._reranker.rerank(
                query_bundle.query_str, texts, top_n=self.top_n, return_documents=False
            )
            new_nodes = [
                NodeWithScore(node=nodes[r.index].node, score=r.relevance_score) for r in results
            ]
            event.on_end(payload={EventPayload.NODES: new_nodes})
        dispatcher.event(ReRankEndEvent(nodes=new_nodes))
        return new_nodes
