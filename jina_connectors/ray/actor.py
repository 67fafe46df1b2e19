"""The Ray Data actor: one model per actor, embedding batches of document rows through the
pipeline's own stages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import ray
import ray.data
from ray.data import ActorPoolStrategy, Dataset

from ..errors import InvalidDocumentError
from ..ingestion.documents import Document
from ..ingestion.options import (
    BadRecords,
    EmbeddingSettings,
)
from ..ingestion.stages import (
    embed_batch,
    metadata_error,
)
from ..sinks.base import VectorSink
from .rows import (
    _BAD_DOCUMENT,
    _BAD_RECORD,
    _SKIPPED,
    _Columns,
    _read_rows,
    _Rows,
)

if TYPE_CHECKING:
    from .engine import _Options


# --------------------------------------------------------------------------------------
# The actor
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _EmbedJob:
    """What every actor gets (pickled once per actor)."""

    settings: EmbeddingSettings
    columns: _Columns
    device: str
    threads: int | None
    quantization: str | None = None
    #: Opens the sink in the actor (the workers path): change detection and record checks.
    opener: Callable[[], VectorSink] | None = None
    #: Emit status rows (the ingestion stream) besides chunks.
    with_status: bool = False
    on_error: str = "skip"


class _DocumentEmbedder:
    """A Ray Data actor: one model (``get_embedder`` in the constructor) that embeds batches
    of document rows through :func:`~jina_connectors.ingestion.stages.embed_batch`.

    ``todo`` (the driver path): the ids still to embed, as the driver found them; every
    other row was counted, skipped or reported by the driver's first pass and is dropped.
    """

    def __init__(self, job: _EmbedJob, todo: Any = None) -> None:
        from embedder_core import get_embedder

        if job.threads is not None:
            import torch

            torch.set_num_threads(job.threads)
        settings = job.settings
        self._job = job
        self._embedder = get_embedder(
            settings.model, device=job.device, quantization=job.quantization
        )
        if self._embedder.model_name != settings.model:  # pragma: no cover - defensive
            raise RuntimeError(
                f"this worker loaded {self._embedder.model_name!r} for {settings.model!r}"
            )
        if self._embedder.dimension < settings.dimensions:
            raise RuntimeError(
                f"the model {settings.model!r} on this worker gives {self._embedder.dimension} "
                f"dimensions, fewer than {settings.dimensions}: is it the driver's checkpoint?"
            )
        self._sink = job.opener() if job.opener is not None else None
        if isinstance(todo, ray.ObjectRef):
            todo = ray.get(todo)
        self._todo: frozenset[str] | None = todo

    def __call__(self, table: pa.Table) -> dict[str, np.ndarray]:
        job = self._job
        rows = _Rows(job.settings, job.with_status)
        # Raised (on_error="raise"), or reported as status rows (the ingestion stream),
        # else logged here.
        policy = BadRecords(job.on_error, log=not job.with_status)
        statuses: list[tuple[str, InvalidDocumentError]] = []

        def bad(kind: str, error: InvalidDocumentError) -> None:
            policy.add(error)
            statuses.append((kind, error))

        documents: list[Document] = []
        texts: dict[str, str] = {}  # the input's metadata JSON, copied to the output
        for item in _read_rows(table, job.columns, texts):
            if self._todo is not None:  # the driver's first pass has seen every row
                if isinstance(item, Document) and item.id in self._todo:
                    documents.append(item)
                continue
            if isinstance(item, Document) and self._sink is not None:
                item = metadata_error(self._sink, item) or item
            if isinstance(item, InvalidDocumentError):
                bad(_BAD_RECORD, item)
            else:
                documents.append(item)

        def on_bad(error: InvalidDocumentError) -> None:
            bad(_BAD_DOCUMENT, error)

        # With a sink (the workers path): only changed documents, checked against its
        # limits. Without (embed_dataset, the driver path): every document given.
        result = embed_batch(self._embedder, job.settings, documents, on_bad, sink=self._sink)
        for kind, error in statuses if job.with_status else ():
            rows.add_status(kind, error.record, error.reason)
        for _ in range(result.skipped):
            rows.add_status(_SKIPPED)
        for prepared, records in result.embedded:
            rows.add_document(prepared, records, texts.get(prepared.document.id))
        return rows.batch()


def _embedded(ds: Dataset, options: _Options, job: _EmbedJob, todo: Any = None) -> Dataset:
    plan = options.resources
    kwargs: dict[str, Any] = {"job": job}
    if todo is not None:
        kwargs["todo"] = todo
    return ds.map_batches(
        _DocumentEmbedder,
        fn_constructor_kwargs=kwargs,
        compute=ActorPoolStrategy(size=plan.actors),
        num_cpus=plan.cpus,
        num_gpus=plan.gpus,
        batch_size=options.batch_size,
        batch_format="pyarrow",
    )
