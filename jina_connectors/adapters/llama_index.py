"""LlamaIndex adapter: the local jina-embeddings-v3 as an embedding model and a transformation.

- ``JinaEmbedding``: a ``BaseEmbedding`` for ``Settings.embed_model``, ``VectorStoreIndex`` and
  ingestion pipelines. Queries are embedded with ``query_task`` (``retrieval.query``) and
  documents with ``text_task`` (``retrieval.passage``), automatically.
- ``JinaLateChunking``: a ``TransformComponent`` that late-chunks the nodes of any node parser
  per source document and sets ``node.embedding``.

Switching from the hosted integration is one import line::

    # from llama_index.embeddings.jinaai import JinaEmbedding
    from jina_connectors.adapters.llama_index import JinaEmbedding

Both classes get their model from ``embedder_core.get_embedder``: instances with the same
``model``, ``device`` and ``dtype`` share one loaded model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import ConfigDict, Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import (
    BaseNode,
    MetadataMode,
    NodeWithScore,
    QueryBundle,
    TransformComponent,
)

from embedder_core import EmbedderProtocol
from embedder_core.output import convert_embeddings

from ..shared_models import DEFAULT_RERANKER, check_options, load_embedder, load_reranker
from .source_groups import SourceChunk, late_chunk

__all__ = ["JinaEmbedding", "JinaLateChunking", "JinaRerank"]

RETRIEVAL_TASKS = ("retrieval.query", "retrieval.passage")
Encoding = Literal["float", "ubinary", "binary"]


def _split_tasks(
    task: str | None, query_task: str | None, text_task: str | None
) -> tuple[str, str]:
    """(query task, text task) from the hosted integration's single ``task`` or our two."""
    if task is None:
        return query_task or RETRIEVAL_TASKS[0], text_task or RETRIEVAL_TASKS[1]
    if query_task is not None or text_task is not None:
        raise ValueError("give either task (one task for both sides) or query_task/text_task")
    # Retrieval is asymmetric: one retrieval task names the pair, each side gets its own.
    return RETRIEVAL_TASKS if task in RETRIEVAL_TASKS else (task, task)


class JinaEmbedding(BaseEmbedding):
    """Local jina-embeddings-v3 (or any model ``embedder_core`` loads) for LlamaIndex.

    Args:
        model: local model directory or Hub id; None means ``$JINA_CONNECTORS_MODEL``, else
            ``jinaai/jina-embeddings-v3``. The hosted name ``"jina-embeddings-v3"`` works too.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None picks CUDA when available.
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``; None: float32 on CPU.
        query_task: task for queries (``get_query_embedding``), default ``retrieval.query``.
        text_task: task for documents and nodes, default ``retrieval.passage``.
        task: the hosted integration's single task. ``retrieval.query`` or
            ``retrieval.passage`` keeps the retrieval pair above (queries and documents still
            get their own task); any other task (``text-matching``...) is used for both sides.
            Give either ``task`` or ``query_task``/``text_task``.
        dimensions: Matryoshka width (first ``dimensions`` values, re-normalized); None: full.
        normalized: L2-normalize the embeddings.
        embed_batch_size: texts per call to the model (the core batches by tokens within it).
        show_progress: show a progress bar for every batch embedding, not only when asked.
        encoding_queries: ``"float"``, or ``"ubinary"``/``"binary"`` for the sign bits as 0/1
            values (one per dimension), as the hosted integration returns.
        encoding_documents: the same, for documents.

    Accepted for drop-in compatibility with ``llama-index-embeddings-jinaai``: ``api_key`` is
    ignored (nothing is sent anywhere) and never stored. ``late_chunking=True`` raises: a batch
    of texts does not say which document each text belongs to, so joining them would mix
    documents; use the ``JinaLateChunking`` transformation, which groups nodes per document.
    """

    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored

    model: str | None = Field(default=None, description="Model directory or Hub id.")
    device: str | None = Field(default=None, description="Torch device; None: CUDA if present.")
    dtype: str | None = Field(default=None, description="Torch dtype; None: per device.")
    query_task: str = Field(default=RETRIEVAL_TASKS[0], description="Task for queries.")
    text_task: str = Field(default=RETRIEVAL_TASKS[1], description="Task for documents.")
    dimensions: int | None = Field(default=None, description="Matryoshka width; None: full.")
    normalized: bool = Field(default=True, description="L2-normalize the embeddings.")
    show_progress: bool = Field(default=False, description="Always show batch progress.")
    encoding_queries: Encoding = Field(default="float", description="Output of queries.")
    encoding_documents: Encoding = Field(default="float", description="Output of documents.")

    _embedder: EmbedderProtocol = PrivateAttr()

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        query_task: str | None = None,
        text_task: str | None = None,
        task: str | None = None,
        dimensions: int | None = None,
        normalized: bool = True,
        embed_batch_size: int = 32,
        show_progress: bool = False,
        encoding_queries: Encoding = "float",
        encoding_documents: Encoding = "float",
        late_chunking: bool | None = None,
        api_key: str | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        if late_chunking:
            raise ValueError(
                "JinaEmbedding cannot late-chunk: a batch of texts does not say which document "
                "each belongs to. Add JinaLateChunking() to the transformations instead."
            )
        query_task, text_task = _split_tasks(task, query_task, text_task)
        # Pydantic checks every option before the model loads.
        super().__init__(
            model=model,
            device=device,
            dtype=dtype,
            query_task=query_task,
            text_task=text_task,
            dimensions=dimensions,
            normalized=normalized,
            embed_batch_size=embed_batch_size,
            show_progress=show_progress,
            encoding_queries=encoding_queries,
            encoding_documents=encoding_documents,
            callback_manager=callback_manager,
            **kwargs,
        )
        embedder = load_embedder(model, device=device, dtype=dtype)
        check_options(embedder, tasks=(self.query_task, self.text_task), dimensions=dimensions)
        self.model_name = embedder.model_name  # informational, as in other embeddings
        self._embedder = embedder

    @classmethod
    def class_name(cls) -> str:
        return "JinaLocalEmbedding"

    def _embed(self, texts: list[str], task: str, encoding: Encoding) -> list[Embedding]:
        rows = self._embedder.encode(
            texts, task=task, dimensions=self.dimensions, normalized=self.normalized
        )
        if encoding != "float":
            bits = convert_embeddings(rows, "ubinary")
            rows = np.unpackbits(bits, axis=1, count=rows.shape[1])
        return rows.astype(np.float64).tolist()

    def _get_query_embedding(self, query: str) -> Embedding:
        return self._embed([query], self.query_task, self.encoding_queries)[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._embed([text], self.text_task, self.encoding_documents)[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self._embed(texts, self.text_task, self.encoding_documents)

    # The model runs in a worker thread, so the event loop stays free while it computes.
    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await asyncio.to_thread(self._get_query_embedding, query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        return super().get_text_embedding_batch(
            texts, show_progress=show_progress or self.show_progress, **kwargs
        )

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        return await super().aget_text_embedding_batch(
            texts, show_progress=show_progress or self.show_progress, **kwargs
        )


def _chain_positions(nodes: Sequence[BaseNode]) -> list[int]:
    """Document order of one document's nodes from their PREVIOUS/NEXT links.

    Chains are followed from nodes whose previous node is not in the group; nodes no chain
    reaches (no links, a cycle) come after, in input order.
    """
    index = {node.node_id: i for i, node in enumerate(nodes)}
    next_of: dict[int, int] = {}
    for i, node in enumerate(nodes):
        link = node.next_node
        if link is not None and link.node_id in index:
            next_of[i] = index[link.node_id]
    has_previous = set(next_of.values())
    positions = [-1] * len(nodes)
    position = 0
    for head in range(len(nodes)):
        if head in has_previous:
            continue
        i: int | None = head
        while i is not None and positions[i] < 0:
            positions[i] = position
            position += 1
            i = next_of.get(i)
    for i in range(len(nodes)):
        if positions[i] < 0:
            positions[i] = position
            position += 1
    return positions


def _source_offset(node: BaseNode, text: str) -> int | None:
    """The node's start in its source text, if its recorded span still matches its text."""
    start = getattr(node, "start_char_idx", None)
    end = getattr(node, "end_char_idx", None)
    if start is None or end is None or end - start != len(text):
        return None  # no offsets, or the text changed after splitting
    return start


class JinaLateChunking(TransformComponent):
    """Late chunking for ``IngestionPipeline`` and ``VectorStoreIndex(transformations=...)``.

    Put it after any node parser. Nodes are grouped by ``ref_doc_id``; each document's text is
    rebuilt from its own nodes laid at their ``start_char_idx`` and encoded once (in windows
    past the model's token limit), and every node is pooled over its own character span, so
    it carries the context of its whole document. Overlapping nodes (``chunk_overlap``) share
    their text rather than repeating it; a gap between nodes becomes one space. Different
    documents are never joined. The node's raw text is used (no metadata).

    If some node of a document has no offsets (or its text no longer matches them), that
    document's nodes are joined in document order instead, following their PREVIOUS/NEXT
    relationships; overlapping text then appears once per node.

    Nodes without a source document are embedded on their own, as ``JinaEmbedding`` embeds a
    text (metadata included per ``MetadataMode.EMBED``). Every node's ``embedding`` is set;
    the result does not depend on the order of the input nodes.

    Args: ``model``, ``device``, ``dtype``, ``dimensions``, ``normalized`` as for
    ``JinaEmbedding`` (give the same ``model`` and ``dimensions`` to both), and ``text_task``,
    the task for documents (default ``retrieval.passage``).
    """

    model_config = ConfigDict(extra="forbid")  # a misspelt option is an error, not ignored

    model: str | None = Field(default=None, description="Model directory or Hub id.")
    device: str | None = Field(default=None, description="Torch device; None: CUDA if present.")
    dtype: str | None = Field(default=None, description="Torch dtype; None: per device.")
    text_task: str = Field(default=RETRIEVAL_TASKS[1], description="Task for documents.")
    dimensions: int | None = Field(default=None, description="Matryoshka width; None: full.")
    normalized: bool = Field(default=True, description="L2-normalize the embeddings.")

    _embedder: EmbedderProtocol = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        self._embedder = load_embedder(self.model, device=self.device, dtype=self.dtype)
        check_options(self._embedder, tasks=(self.text_task,), dimensions=self.dimensions)

    @classmethod
    def class_name(cls) -> str:
        return "JinaLateChunking"

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Set ``node.embedding`` on every node; returns the same nodes.

        ``show_progress=True`` (as ``IngestionPipeline.run`` passes it) shows the model's
        progress over the documents' tokens.
        """
        groups: dict[str, list[int]] = {}
        lone: list[int] = []
        for i, node in enumerate(nodes):
            source = node.ref_doc_id
            if source is None:
                lone.append(i)
            else:
                groups.setdefault(source, []).append(i)
        chunks: list[SourceChunk] = []
        chunk_nodes: list[int] = []
        for source, members in groups.items():
            group = [nodes[i] for i in members]
            for node, position in zip(group, _chain_positions(group), strict=True):
                text = node.get_content(metadata_mode=MetadataMode.NONE)
                offset = _source_offset(node, text)
                chunks.append(SourceChunk(source, node.node_id, text, offset, position))
            chunk_nodes += members
        rows = late_chunk(
            self._embedder,
            chunks,
            task=self.text_task,
            dimensions=self.dimensions,
            normalized=self.normalized,
            show_progress=bool(kwargs.get("show_progress", False)),
        ).embeddings
        texts = [nodes[i].get_content(metadata_mode=MetadataMode.EMBED) for i in lone]
        lone_rows = self._embedder.encode(
            texts, task=self.text_task, dimensions=self.dimensions, normalized=self.normalized
        )
        # Only now, with every embedding computed, are the nodes changed.
        for i, row in zip([*chunk_nodes, *lone], [*rows, *lone_rows], strict=True):
            nodes[i].embedding = row.astype(np.float64).tolist()
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        # Off the event loop: the model runs in a worker thread.
        return await asyncio.to_thread(self.__call__, nodes, **kwargs)


# --------------------------------------------------------------------------------------
# Reranking
# --------------------------------------------------------------------------------------

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
