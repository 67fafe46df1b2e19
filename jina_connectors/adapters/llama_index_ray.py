"""``JinaLateChunking`` as a step of ``llama-index-ingestion-ray``'s ``RayIngestionPipeline``.

``RayJinaLateChunking(**options)`` is the ``RayTransformComponent`` of
:class:`~jina_connectors.adapters.llama_index.JinaLateChunking` (the same options), with one
difference that keeps its vectors those of the plain ``IngestionPipeline``: it hands every
actor call the nodes of whole documents. A plain ``RayTransformComponent(JinaLateChunking)``
cuts the node stream into batches of rows wherever they fall, so a document whose nodes
land in two batches is rebuilt from half its text in each, and its vectors change. Here the
nodes are grouped by source document (``ref_doc_id``) before they reach the actors.

Each actor loads the model once (in ``JinaLateChunking``'s constructor); ``actors``,
``gpus_per_actor`` and ``cpus_per_actor`` size the pool as for
:func:`jina_connectors.ray.embed_dataset` (:func:`~jina_connectors.ray.plan_actors`).
"""

from __future__ import annotations

import functools
from typing import Any

try:
    from llama_index.core.schema import NodeRelationship
    from llama_index.ingestion.ray import RayTransformComponent
    from llama_index.ingestion.ray.transform import TransformActor
    from ray.data import ActorPoolStrategy, Dataset, TaskPoolStrategy
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "jina_connectors.adapters.llama_index_ray needs llama-index-ingestion-ray: "
        "pip install 'jina-connectors[ray,llama-index]' llama-index-ingestion-ray"
    ) from error

from ..ray import TASK_CPUS, actor_resources, check_actor_options
from .llama_index import JinaLateChunking
from .node_keys import with_document_key

__all__ = ["RayJinaLateChunking"]

# The grouping column added before the shuffle (the actors' output drops it).
_DOCUMENT_KEY = "__jina_connectors_document__"


class _LateChunkingActor(TransformActor):
    """``TransformActor`` that sets the torch threads of its share of the cores first."""

    def __init__(
        self, transform_class: type, transform_kwargs: dict[str, Any], threads: int | None
    ) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        super().__init__(transform_class, transform_kwargs)


class RayJinaLateChunking(RayTransformComponent):
    """``JinaLateChunking`` for ``RayIngestionPipeline(transformations=[...])``, one model per
    actor, every document's nodes in one call.

    Args: the options of ``JinaLateChunking`` (``model``, ``device``, ``dtype``,
    ``text_task``, ``dimensions``, ``normalized``; the names are checked now and ``model``
    is resolved here, by ``embedder_core.canonical_model_id``: ``$JINA_CONNECTORS_MODEL``
    and relative paths are this process's; the model is loaded in the actors), and
    ``actors``, ``gpus_per_actor``, ``cpus_per_actor`` (the actor pool; with GPUs,
    ``device`` defaults to ``"cuda"``).
    """

    actors: int | None = None
    gpus_per_actor: float | None = None
    cpus_per_actor: float | None = None

    def __init__(
        self,
        *,
        actors: int | None = None,
        gpus_per_actor: float | None = None,
        cpus_per_actor: float | None = None,
        **late_chunking_options: Any,
    ) -> None:
        check_actor_options(actors, gpus_per_actor, cpus_per_actor)
        unknown = sorted(set(late_chunking_options) - set(JinaLateChunking.model_fields))
        if unknown:
            raise TypeError(
                f"unknown JinaLateChunking option(s) {', '.join(unknown)}; valid: "
                f"{', '.join(sorted(JinaLateChunking.model_fields))}"
            )
        from embedder_core import canonical_model_id

        # Resolved here: a worker has neither this process's $JINA_CONNECTORS_MODEL nor
        # its working directory.
        options = dict(late_chunking_options)
        options["model"] = canonical_model_id(options.get("model"))
        super().__init__(
            transform_class=JinaLateChunking,
            transform_kwargs=options,
            map_batches_kwargs={},
        )
        self.actors = actors
        self.gpus_per_actor = gpus_per_actor
        self.cpus_per_actor = cpus_per_actor

    def __call__(self, dataset: Dataset, **kwargs: Any) -> Dataset:
        plan = actor_resources(self.actors, self.gpus_per_actor, self.cpus_per_actor)
        options = dict(self.transform_kwargs)
        if plan.device == "cuda":
            options.setdefault("device", "cuda")
        key = functools.partial(
            with_document_key, source_key=NodeRelationship.SOURCE.value, column=_DOCUMENT_KEY
        )
        keyed = dataset.map_batches(
            key,
            batch_format="pyarrow",
            num_cpus=TASK_CPUS,
            compute=TaskPoolStrategy(size=2 * plan.actors),  # few processes to start
        )
        # A few partitions per actor: each is one actor task (one call per document in it);
        # Ray's default (200) would make hundreds of tiny tasks for a small pool.
        partitions = 2 * plan.actors
        return keyed.groupby(_DOCUMENT_KEY, num_partitions=partitions).map_groups(
            _LateChunkingActor,
            fn_constructor_kwargs={
                "transform_class": self.transform_class,
                "transform_kwargs": options,
                "threads": plan.threads,
            },
            fn_kwargs=kwargs,
            compute=ActorPoolStrategy(size=plan.actors),
            batch_format="pyarrow",
            num_cpus=plan.cpus,
            num_gpus=plan.gpus,
        )
