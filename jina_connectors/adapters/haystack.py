"""Haystack adapter: the local jina-embeddings-v3 as Haystack 3.x embedder components.

Names and parameters follow the hosted ``jina-haystack`` integration, so a pipeline switches by
changing its imports::

    # from haystack_integrations.components.embedders.jina import JinaTextEmbedder
    from jina_connectors.adapters.haystack import JinaTextEmbedder

- ``JinaTextEmbedder``: embeds a query (task ``retrieval.query``).
- ``JinaDocumentEmbedder``: embeds Documents (task ``retrieval.passage``).
- ``JinaLateChunkingDocumentEmbedder``: late-chunks the chunks a splitter made, per source
  document; whole Documents are split and late-chunked.

All are components with ``warm_up()`` (loads the model, validates ``task``/``dimensions``;
``run`` calls it if needed), ``to_dict``/``from_dict`` (pipeline YAML) and ``run_async`` (runs
in a worker thread). They return new Documents and never change their inputs; ``meta`` reports
``{"model": ..., "usage": {"prompt_tokens": n, "total_tokens": n}}`` like the hosted API.

Importing this module allowlists it for Haystack's pipeline deserialization; a process that
loads such YAML before importing it needs ``allowed_modules=["jina_connectors.adapters.haystack"]``.

Accepted for drop-in compatibility and ignored: ``api_key`` (nothing is sent anywhere; never
serialized). Models come from ``embedder_core.get_embedder``: components with the same
``model``, ``device`` and ``dtype`` share one loaded model.
"""

from __future__ import annotations

import asyncio
from copy import deepcopy
from dataclasses import replace
from typing import Any, Literal

import numpy as np
from haystack import Document, component, default_from_dict, default_to_dict
from haystack.core.serialization import allow_deserialization_module
from tqdm.auto import tqdm

from embedder_core import EmbedderProtocol, Reranker

from ..shared_models import DEFAULT_RERANKER, check_options, load_embedder, load_reranker
from .source_groups import SourceChunk, late_chunk

__all__ = [
    "JinaDocumentEmbedder",
    "JinaLateChunkingDocumentEmbedder",
    "JinaRanker",
    "JinaTextEmbedder",
]

Chunker = Literal["sentences", "tokens"]

# Haystack loads pipeline YAML only from allowlisted modules. These components are safe to
# build from YAML (they only read safetensors weights, never run checkpoint code), so once
# this module is imported, pipelines that use them load without extra flags.
allow_deserialization_module(__name__)


class _Serialized:
    """``to_dict``/``from_dict`` (pipeline YAML) from the arguments a component was built with."""

    def _init_parameters(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        """Serialize to a dictionary (pipeline YAML)."""
        return default_to_dict(self, **self._init_parameters())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        """Deserialize from a dictionary made by ``to_dict`` (also under the old module path
        of a pipeline saved before the adapters moved)."""
        if _OLD_NAMES.get(data.get("type", "")) is cls:
            data = {**data, "type": f"{cls.__module__}.{cls.__name__}"}
        return default_from_dict(cls, data)


class _LocalModel(_Serialized):
    """What the three components share: model options, loading, serialization, usage meta."""

    model: str | None
    device: str | None
    dtype: str | None
    task: str | None
    dimensions: int | None
    normalized: bool

    def _set_model_options(
        self,
        model: str | None,
        device: str | None,
        dtype: str | None,
        task: str | None,
        dimensions: int | None,
        normalized: bool,
    ) -> None:
        self.model = model
        self.device = device
        self.dtype = dtype
        self.task = task
        self.dimensions = dimensions
        self.normalized = normalized
        self._embedder: EmbedderProtocol | None = None

    def warm_up(self) -> None:
        """Load the shared model and check ``task`` and ``dimensions`` against it."""
        if self._embedder is None:
            embedder = load_embedder(self.model, device=self.device, dtype=self.dtype)
            check_options(embedder, tasks=(self.task,), dimensions=self.dimensions)
            self._embedder = embedder

    @property
    def embedder(self) -> EmbedderProtocol:
        self.warm_up()
        assert self._embedder is not None
        return self._embedder

    def _model_parameters(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "task": self.task,
            "dimensions": self.dimensions,
            "normalized": self.normalized,
        }

    def _init_parameters(self) -> dict[str, Any]:
        return self._model_parameters()

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.embedder.encode(
            texts, task=self.task, dimensions=self.dimensions, normalized=self.normalized
        )

    def _usage_meta(self, texts: list[str]) -> dict[str, Any]:
        tokens = sum(self.embedder.count_tokens(texts, task=self.task)) if texts else 0
        return {
            "model": self.embedder.model_name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _check_documents(documents: Any, name: str) -> None:
    if not isinstance(documents, list) or not all(isinstance(d, Document) for d in documents):
        raise TypeError(
            f"{name} expects a list of Documents as input. To embed a string, use JinaTextEmbedder."
        )


def _is_chunk(doc: Document) -> bool:
    return doc.meta.get("source_id") is not None


def _late_chunk_split_documents(
    component: _LocalModel, chunks: list[Document], progress_bar: bool
) -> tuple[np.ndarray, list[str]]:
    """Late-chunk Documents a splitter made (``source_id``), per source; rows in input order.

    Each source's text is rebuilt from its chunks laid at ``split_idx_start``; with an offset
    missing, chunks are joined in ``split_id`` order (see ``source_groups.layout_source``).
    """
    source_chunks = [
        SourceChunk(
            source_id=str(doc.meta["source_id"]),
            chunk_id=doc.id,
            text=doc.content,  # type: ignore[arg-type]  # None is reported by source_groups
            start=doc.meta.get("split_idx_start"),
            order=split_id if isinstance(split_id := doc.meta.get("split_id"), int) else i,
        )
        for i, doc in enumerate(chunks)
    ]
    result = late_chunk(
        component.embedder,
        source_chunks,
        task=component.task,
        dimensions=component.dimensions,
        normalized=component.normalized,
        show_progress=progress_bar,
    )
    return result.embeddings, result.source_texts


@component
class JinaTextEmbedder(_LocalModel):
    """Embeds a string, by default as a retrieval query.

    :param model: local model directory or Hub id; None means ``$JINA_CONNECTORS_MODEL``, else
        ``jinaai/jina-embeddings-v3`` (the hosted name ``"jina-embeddings-v3"`` works too).
    :param device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; None picks CUDA when available.
    :param dtype: ``"float32"``, ``"bfloat16"``, ``"float16"``; None: float32 on CPU.
    :param prefix: added before the text.
    :param suffix: added after the text.
    :param task: ``retrieval.query`` by default; None uses the model without a task adapter.
    :param dimensions: Matryoshka width (first values, re-normalized); None: full width.
    :param normalized: L2-normalize the embedding.
    :param late_chunking: accepted for compatibility; a single text has nothing to join.
    :param api_key: accepted for compatibility and ignored.
    """

    def __init__(
        self,
        api_key: Any = None,
        model: str | None = None,
        prefix: str = "",
        suffix: str = "",
        task: str | None = "retrieval.query",
        dimensions: int | None = None,
        late_chunking: bool | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        normalized: bool = True,
    ) -> None:
        self._set_model_options(model, device, dtype, task, dimensions, normalized)
        self.prefix = prefix
        self.suffix = suffix

    def _init_parameters(self) -> dict[str, Any]:
        return {**self._model_parameters(), "prefix": self.prefix, "suffix": self.suffix}

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    def run(self, text: str) -> dict[str, Any]:
        """Embed ``text``; returns ``embedding`` and ``meta`` (model, token usage)."""
        if not isinstance(text, str):
            raise TypeError(
                f"JinaTextEmbedder expects a string as input, got {type(text).__name__}. "
                "To embed a list of Documents, use JinaDocumentEmbedder."
            )
        text_to_embed = self.prefix + text + self.suffix
        row = self._encode([text_to_embed])[0]
        return {"embedding": row.tolist(), "meta": self._usage_meta([text_to_embed])}

    @component.output_types(embedding=list[float], meta=dict[str, Any])
    async def run_async(self, text: str) -> dict[str, Any]:
        """``run`` in a worker thread, so the event loop stays free."""
        return await asyncio.to_thread(self.run, text)


@component
class JinaDocumentEmbedder(_LocalModel):
    """Embeds Documents, by default as retrieval passages; returns new Documents.

    :param model: as for ``JinaTextEmbedder``; so are ``device``, ``dtype``, ``dimensions``
        and ``normalized``.
    :param prefix: added before each text.
    :param suffix: added after each text.
    :param batch_size: Documents per call to the model (the core batches by tokens within it).
    :param progress_bar: show a progress bar over the batches.
    :param meta_fields_to_embed: meta fields embedded with the content, before it.
    :param embedding_separator: joins the meta fields and the content.
    :param task: ``retrieval.passage`` by default; None uses the model without a task adapter.
    :param late_chunking: True late-chunks split Documents (those with ``source_id`` meta, as
        ``DocumentSplitter`` makes) per source document, exactly as
        ``JinaLateChunkingDocumentEmbedder`` does; other Documents are embedded on their own.
        Unlike the hosted API it never joins Documents of different sources. It cannot be
        combined with ``prefix``, ``suffix`` or ``meta_fields_to_embed``.
    :param api_key: accepted for compatibility and ignored.
    """

    def __init__(
        self,
        api_key: Any = None,
        model: str | None = None,
        prefix: str = "",
        suffix: str = "",
        batch_size: int = 32,
        progress_bar: bool = True,
        meta_fields_to_embed: list[str] | None = None,
        embedding_separator: str = "\n",
        task: str | None = "retrieval.passage",
        dimensions: int | None = None,
        late_chunking: bool | None = None,
        *,
        device: str | None = None,
        dtype: str | None = None,
        normalized: bool = True,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if late_chunking and (prefix or suffix or meta_fields_to_embed):
            raise ValueError(
                "late_chunking embeds each chunk within its source document's text, so "
                "prefix, suffix and meta_fields_to_embed cannot apply; leave them unset"
            )
        self._set_model_options(model, device, dtype, task, dimensions, normalized)
        self.prefix = prefix
        self.suffix = suffix
        self.batch_size = batch_size
        self.progress_bar = progress_bar
        self.meta_fields_to_embed = list(meta_fields_to_embed or [])
        self.embedding_separator = embedding_separator
        self.late_chunking = bool(late_chunking)

    def _init_parameters(self) -> dict[str, Any]:
        return {
            **self._model_parameters(),
            "prefix": self.prefix,
            "suffix": self.suffix,
            "batch_size": self.batch_size,
            "progress_bar": self.progress_bar,
            "meta_fields_to_embed": self.meta_fields_to_embed,
            "embedding_separator": self.embedding_separator,
            "late_chunking": self.late_chunking,
        }

    def _text_to_embed(self, doc: Document) -> str:
        meta_values = [
            str(doc.meta[key]) for key in self.meta_fields_to_embed if doc.meta.get(key) is not None
        ]
        content = self.embedding_separator.join([*meta_values, doc.content or ""])
        return self.prefix + content + self.suffix

    def _embed_each(self, texts: list[str]) -> list[np.ndarray]:
        starts = range(0, len(texts), self.batch_size)
        batches = [
            self._encode(texts[i : i + self.batch_size])
            for i in tqdm(starts, disable=not self.progress_bar, desc="Calculating embeddings")
        ]
        return [row for batch in batches for row in batch]

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """Embed ``documents``; returns new ``documents`` (same order) and ``meta``."""
        _check_documents(documents, "JinaDocumentEmbedder")
        chunk_rows: np.ndarray | None = None
        if self.late_chunking:
            chunks = [i for i, doc in enumerate(documents) if _is_chunk(doc)]
            chunk_rows, counted = _late_chunk_split_documents(
                self, [documents[i] for i in chunks], self.progress_bar
            )
        else:
            chunks, counted = [], []
        chunk_set = set(chunks)
        alone = [i for i in range(len(documents)) if i not in chunk_set]
        alone_texts = [self._text_to_embed(documents[i]) for i in alone]
        alone_rows = self._embed_each(alone_texts)
        rows: dict[int, np.ndarray] = dict(zip(alone, alone_rows, strict=True))
        if chunk_rows is not None:
            rows.update(zip(chunks, chunk_rows, strict=True))
        embedded = [replace(doc, embedding=rows[i].tolist()) for i, doc in enumerate(documents)]
        return {"documents": embedded, "meta": self._usage_meta([*counted, *alone_texts])}

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    async def run_async(self, documents: list[Document]) -> dict[str, Any]:
        """``run`` in a worker thread, so the event loop stays free."""
        return await asyncio.to_thread(self.run, documents)


@component
class JinaLateChunkingDocumentEmbedder(_LocalModel):
    """Late chunking in Haystack: every chunk embedded in the context of its whole document.

    Chunks from ``DocumentSplitter`` (or any splitter that sets ``source_id``,
    ``split_idx_start`` and ``split_id``) are grouped per ``source_id``. Each source's text is
    rebuilt from its chunks laid at ``split_idx_start`` (overlapping chunks from
    ``split_overlap`` share their text, never repeated; a gap becomes one space), encoded once
    (in windows past the model's token limit) and each chunk is pooled over its own span.
    Chunks of different sources are never joined. If a source's chunk lacks
    ``split_idx_start``, that source's chunks are joined in ``split_id`` order instead.

    Documents without ``source_id`` are whole documents: each is split with the core's
    ``chunker`` (``"sentences"`` or ``"tokens"``, at most ``chunk_size`` tokens per chunk) and
    replaced in the output by its chunks, which carry the same meta as ``DocumentSplitter``
    gives (``source_id``, ``split_id``, ``split_idx_start``, ``page_number``).

    :param model: as for ``JinaTextEmbedder``; so are ``device``, ``dtype``, ``dimensions``
        and ``normalized``.
    :param task: ``retrieval.passage`` by default; None uses the model without a task adapter.
    :param chunker: how whole Documents are split: ``"sentences"`` or ``"tokens"``.
    :param chunk_size: maximum tokens per chunk when splitting whole Documents.
    :param progress_bar: show the model's progress over the documents' tokens.
    """

    def __init__(
        self,
        model: str | None = None,
        task: str | None = "retrieval.passage",
        dimensions: int | None = None,
        chunker: Chunker = "sentences",
        chunk_size: int = 256,
        progress_bar: bool = True,
        *,
        device: str | None = None,
        dtype: str | None = None,
        normalized: bool = True,
    ) -> None:
        if chunker not in ("sentences", "tokens"):
            raise ValueError(f"chunker must be 'sentences' or 'tokens', got {chunker!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
            raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
        self._set_model_options(model, device, dtype, task, dimensions, normalized)
        self.chunker: Chunker = chunker
        self.chunk_size = chunk_size
        self.progress_bar = progress_bar

    def _init_parameters(self) -> dict[str, Any]:
        return {
            **self._model_parameters(),
            "chunker": self.chunker,
            "chunk_size": self.chunk_size,
            "progress_bar": self.progress_bar,
        }

    def _split_whole(self, documents: list[Document]) -> list[list[Document]]:
        texts = [doc.content for doc in documents]
        per_document = self.embedder.embed_documents(
            texts,  # type: ignore[arg-type]  # None content is reported by the core
            task=self.task,
            chunker=self.chunker,
            chunk_size=self.chunk_size,
            dimensions=self.dimensions,
            normalized=self.normalized,
            show_progress=self.progress_bar,
        )
        split: list[list[Document]] = []
        for doc, chunks in zip(documents, per_document, strict=True):
            content: str = doc.content  # type: ignore[assignment]
            split.append(
                [
                    Document(
                        content=chunk.text,
                        meta={
                            **deepcopy(doc.meta),
                            "source_id": doc.id,
                            "page_number": 1 + content.count("\f", 0, chunk.start),
                            "split_id": k,
                            "split_idx_start": chunk.start,
                        },
                        embedding=chunk.embedding.tolist(),
                    )
                    for k, chunk in enumerate(chunks)
                ]
            )
        return split

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    def run(self, documents: list[Document]) -> dict[str, Any]:
        """Embed ``documents``; split Documents keep their place, whole ones become chunks."""
        _check_documents(documents, "JinaLateChunkingDocumentEmbedder")
        chunks = [i for i, doc in enumerate(documents) if _is_chunk(doc)]
        whole = [i for i, doc in enumerate(documents) if not _is_chunk(doc)]
        chunk_rows, sources = _late_chunk_split_documents(
            self, [documents[i] for i in chunks], self.progress_bar
        )
        whole_chunks = self._split_whole([documents[i] for i in whole])
        out: dict[int, list[Document]] = {
            i: [replace(documents[i], embedding=row.tolist())]
            for i, row in zip(chunks, chunk_rows, strict=True)
        }
        out.update(zip(whole, whole_chunks, strict=True))
        embedded = [doc for i in range(len(documents)) for doc in out[i]]
        counted = [*sources, *(documents[i].content for i in whole)]
        return {"documents": embedded, "meta": self._usage_meta(counted)}  # type: ignore[arg-type]

    @component.output_types(documents=list[Document], meta=dict[str, Any])
    async def run_async(self, documents: list[Document]) -> dict[str, Any]:
        """``run`` in a worker thread, so the event loop stays free."""
        return await asyncio.to_thread(self.run, documents)


# --------------------------------------------------------------------------------------
# Reranking
# --------------------------------------------------------------------------------------


@component
class JinaRanker(_Serialized):
    """Rank documents by relevance to a query with jina-reranker-v2/v3.

    Args:
        model: reranker folder, Hub id, hosted name or server URL.
        top_k: documents to return (None: all).
        score_threshold: drop documents scoring below it (None: keep all).
        device, dtype: as for ``embedder_core.get_reranker``.
    """

    def __init__(
        self,
        model: str = DEFAULT_RERANKER,
        top_k: int | None = None,
        score_threshold: float | None = None,
        device: str | None = None,
        dtype: str | None = None,
    ) -> None:
        _check_top_k(top_k)
        self.model = model
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.device = device
        self.dtype = dtype
        self._reranker: Reranker | None = None

    def warm_up(self) -> None:
        """Load the reranker (shared with every instance of the same model and options)."""
        if self._reranker is None:
            self._reranker = load_reranker(self.model, device=self.device, dtype=self.dtype)

    def _init_parameters(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "top_k": self.top_k,
            "score_threshold": self.score_threshold,
            "device": self.device,
            "dtype": self.dtype,
        }

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        documents: list[Document],
        top_k: int | None = None,
        score_threshold: float | None = None,
    ) -> dict[str, list[Document]]:
        """``documents`` sorted by the reranker's score for ``query`` (copies with
        ``score`` set), cut to ``top_k`` and to scores >= ``score_threshold``."""
        top_k = self.top_k if top_k is None else top_k
        _check_top_k(top_k)
        threshold = self.score_threshold if score_threshold is None else score_threshold
        if not documents:
            return {"documents": []}
        self.warm_up()
        assert self._reranker is not None
        texts = [document.content or "" for document in documents]
        results = self._reranker.rerank(query, texts, top_n=top_k, return_documents=False)
        ranked = [replace(documents[r.index], score=r.relevance_score) for r in results]
        if threshold is not None:
            ranked = [document for document in ranked if (document.score or 0.0) >= threshold]
        return {"documents": ranked}


def _check_top_k(top_k: int | None) -> None:
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or None, got {top_k!r}")


# Pipelines saved before the adapters moved name these components by their old modules.
_OLD_NAMES = {
    **{
        f"jina_connectors.haystack.{cls.__name__}": cls
        for cls in (JinaTextEmbedder, JinaDocumentEmbedder, JinaLateChunkingDocumentEmbedder)
    },
    "jina_connectors.rerankers_haystack.JinaRanker": JinaRanker,
}
for _old_name, _cls in _OLD_NAMES.items():
    allow_deserialization_module(_old_name.rsplit(".", 1)[0])
    component.registry.setdefault(_old_name, _cls)
