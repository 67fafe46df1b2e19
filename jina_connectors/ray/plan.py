"""The actor pool: how many actors, with which resources (:func:`plan_actors`), and the
cluster (:func:`connect`)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Literal

import ray
import ray.data

from ..ingestion.options import RayOptions

logger = logging.getLogger("jina_connectors.ray")

#: Ray CPUs of each hashing task (the driver path's first pass) and each write task. They
#: wait on the database more than they compute; a fraction lets them run beside the actors.
TASK_CPUS = 0.25
#: Write tasks at a time, per actor: enough to keep up with embedding when a write takes as
#: long as embedding a batch, and few worker processes to start on a small machine.
WRITES_PER_ACTOR = 2
#: Ray CPUs an actor pool leaves to the read tasks (Ray Data reads with 1 CPU per task).
READ_RESERVE_CPUS = 1.0


# --------------------------------------------------------------------------------------
# Resources
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ActorResources:
    """The actor pool: ``actors`` actors, each reserving ``cpus`` Ray CPUs and ``gpus`` GPUs
    (None: no GPU), running the model on ``device`` with ``threads`` torch threads (None:
    as Ray sets them, one per reserved CPU)."""

    actors: int
    cpus: float
    gpus: float | None
    threads: int | None
    device: Literal["cpu", "cuda"]


def plan_actors(
    *,
    actors: int | None,
    gpus_per_actor: float | None,
    cpus_per_actor: float | None,
    cluster_cpus: float,
    cluster_gpus: float,
    nodes: int,
) -> ActorResources:
    """The actor pool for a cluster of ``nodes`` nodes with these CPUs and GPUs.

    - GPU actors (``gpus_per_actor`` set): ``actors`` defaults to as many as the GPUs hold
      (``floor(cluster_gpus / gpus_per_actor)``), each with 1 CPU for tokenization unless
      ``cpus_per_actor`` says otherwise. A fraction below 1 puts several actors (several
      models) on one GPU.
    - CPU actors: ``actors`` defaults to one per node (one model using all of a node's cores
      beats several sharing them). Each reserves ``(cluster_cpus - 1) / actors`` CPUs, so
      that one read task (1 CPU) always fits beside the pool, and runs torch with
      ``floor(cluster_cpus / actors)`` threads: the model gets its share of the cores while
      the read and write tasks, which mostly wait, borrow them. On 2 cores: one actor
      reserving 1 CPU and computing on 2 threads. A given ``cpus_per_actor`` is reserved as
      is, with ``ceil(cpus_per_actor)`` threads.

    A pool larger than the cluster is not an error (an autoscaling cluster grows to fit it)
    but is logged: on a fixed cluster the missing actors never start.
    """
    check_actor_options(actors, gpus_per_actor, cpus_per_actor)
    if gpus_per_actor is not None:
        if actors is None:
            actors = int(cluster_gpus // gpus_per_actor)
            if actors < 1:
                raise ValueError(
                    f"the Ray cluster has {cluster_gpus:g} GPUs: no actor fits with "
                    f"gpus_per_actor={gpus_per_actor:g}"
                )
        cpus = 1.0 if cpus_per_actor is None else float(cpus_per_actor)
        plan = ActorResources(actors, cpus, float(gpus_per_actor), None, "cuda")
        if actors * gpus_per_actor > cluster_gpus + 1e-9:
            logger.warning(
                "%d actors at %g GPUs each need %g GPUs; the Ray cluster has %g",
                actors,
                gpus_per_actor,
                actors * gpus_per_actor,
                cluster_gpus,
            )
        return plan
    if actors is None:
        actors = max(1, nodes)
    if cpus_per_actor is None:
        reserve = min(READ_RESERVE_CPUS, cluster_cpus / 2)
        # Ray resolves fractions to 1/10000; two decimals keep the plan readable.
        cpus = max(0.01, math.floor(100 * (cluster_cpus - reserve) / actors) / 100)
        threads = max(1, int(cluster_cpus // actors))
    else:
        cpus = float(cpus_per_actor)
        threads = max(1, math.ceil(cpus_per_actor))
    if actors * cpus > cluster_cpus + 1e-9:
        logger.warning(
            "%d actors at %g CPUs each need %g CPUs; the Ray cluster has %g",
            actors,
            cpus,
            actors * cpus,
            cluster_cpus,
        )
    return ActorResources(actors, cpus, None, threads, "cpu")


def check_actor_options(
    actors: int | None, gpus_per_actor: float | None, cpus_per_actor: float | None
) -> None:
    """Raise :class:`~jina_connectors.errors.OptionError` (a ``ValueError``) for an actor
    pool option that is not a positive number (or None), before any Ray work."""
    RayOptions(actors, gpus_per_actor, cpus_per_actor)


def actor_resources(
    actors: int | None = None,
    gpus_per_actor: float | None = None,
    cpus_per_actor: float | None = None,
) -> ActorResources:
    """:func:`plan_actors` for the Ray cluster this process is connected to (connecting as
    :func:`connect` does when it is not)."""
    check_actor_options(actors, gpus_per_actor, cpus_per_actor)
    connect()
    resources = ray.cluster_resources()
    nodes = sum(
        1 for node in ray.nodes() if node.get("Alive") and node["Resources"].get("CPU", 0) > 0
    )
    return plan_actors(
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        cpus_per_actor=cpus_per_actor,
        cluster_cpus=float(resources.get("CPU", 0.0)),
        cluster_gpus=float(resources.get("GPU", 0.0)),
        nodes=nodes,
    )


def connect(address: str | None = None, **init_options: Any) -> None:
    """Join the Ray cluster at ``address`` (the one ``ray start --head`` prints, or
    ``ray://...`` for Ray Client), or, with None, the one Ray finds by itself
    (``$RAY_ADDRESS``, a cluster started on this machine with ``ray start``), else start a
    local Ray. Does nothing when this process is already connected. ``init_options`` go to
    ``ray.init`` (``num_cpus=2`` for a local Ray on a small machine)."""
    if ray.is_initialized():
        return
    ray.init(address=address, **init_options)
