"""Scale-out on Ray Data (see :mod:`.engine`); this package re-exports its public names."""

from .engine import (
    CHUNK_COLUMNS,
    TASK_CPUS,
    ActorResources,
    RayIngestReport,
    RayOptions,
    actor_resources,
    check_actor_options,
    connect,
    embed_dataset,
    ingest_dataset,
    ingest_documents,
    plan_actors,
)

__all__ = [
    "CHUNK_COLUMNS",
    "TASK_CPUS",
    "ActorResources",
    "RayIngestReport",
    "RayOptions",
    "actor_resources",
    "check_actor_options",
    "connect",
    "embed_dataset",
    "ingest_dataset",
    "ingest_documents",
    "plan_actors",
]
