"""Query embedding for a collection: the collection's model, task ``retrieval.query``, its
dimensions and vector type."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..errors import CollectionMismatchError
from .records import QUERY_TASK, CollectionSpec

if TYPE_CHECKING:
    import numpy as np

    from embedder_core import Embedder


def resolve_embedder(model: str | os.PathLike[str] | Embedder | None) -> Embedder:
    """An :class:`embedder_core.Embedder`: given, or the shared one for a model id or path
    (None: the default model; the hosted name ``jina-embeddings-v3`` is its Hub id)."""
    if model is None or isinstance(model, (str, os.PathLike)):
        from ..shared_models import load_embedder

        return load_embedder(None if model is None else os.fspath(model))
    return model


def embed_query(
    query: str, spec: CollectionSpec, model: str | Embedder | None = None
) -> np.ndarray:
    """One query vector for a collection built as ``spec``: task ``retrieval.query`` at the
    collection's dimensions and type, with the collection's model unless ``model`` is given.
    Float32 ``(dimensions,)``, or uint8 packed bits for ``ubinary``."""
    import numpy as np

    if not isinstance(query, str) or not query.strip():
        raise ValueError("the query must be a non-empty string")
    embedder = resolve_embedder(spec.model if model is None else model)
    if embedder.dimension < spec.dimensions:
        raise CollectionMismatchError(
            f"model {embedder.model_name!r} gives {embedder.dimension}-dimensional vectors, but "
            f"the collection holds {spec.dimensions}-dimensional vectors of {spec.model!r}"
        )
    vectors = embedder.encode(
        [query],
        task=QUERY_TASK,
        dimensions=spec.dimensions,
        embedding_type=spec.embedding_type,
    )
    return np.asarray(vectors)[0]
