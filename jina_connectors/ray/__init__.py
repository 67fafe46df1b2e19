"""Scale-out on Ray Data: embed and ingest a ``ray.data.Dataset`` of documents with a pool of
actors, one model each, keeping every guarantee of :func:`jina_connectors.ingest`.

- :func:`embed_dataset`: a Dataset of documents in, a Dataset of embedded chunks out.
- :func:`ingest_dataset`: a Dataset of documents into a sink, with the same ids, content
  hashes, completeness rule, stale-chunk deletion and bad-record handling as ``ingest``;
  :func:`ingest_documents` does the same for what ``ingest`` reads (texts, records, files).
- :func:`connect`: join a Ray cluster, or start a local Ray.

The actors run the pipeline's own stages (:func:`~jina_connectors.ingestion.stages.embed_batch`:
hashing, change detection, embedding with bad-record isolation, the sink's record checks);
writes go through :func:`~jina_connectors.ingestion.writer.write_job`. This module only moves rows
between Ray and those stages.

Documents stay whole: a row is a document, and a batch is whole rows, so late chunking sees
every document entirely in one actor call (never split across two actors' batches).

Where the writes happen (``RayIngestReport.write_path`` says which ran, and why):

- ``"workers"``: a database with a server (a Qdrant URL, a Milvus server URI, Pinecone). Each
  actor opens the sink (:meth:`~jina_connectors.sink.VectorSink.remote_opener`), checks
  which of its documents are already stored complete with the same hash, and embeds only
  the others; Ray ``Datasink`` write tasks write the chunks.
- ``"driver"``: an embedded database (a Qdrant folder or ``:memory:``, a Milvus Lite file, or
  a sink given a client object), which only the process that opened it may use. A first
  pass of Ray tasks hashes every document; the driver looks the hashes up in the database
  and hands the actors the ids still to embed (so unchanged documents are not embedded
  here either); the driver then streams the actors' output (``iter_batches``) through the
  pipeline's :class:`~jina_connectors.ingestion.writer.BackgroundWriter`. The input dataset is read
  twice; ``ds.materialize()`` it first if reading it is expensive.

Resources (see :func:`plan_actors`): actors reserve fractional CPUs, so that the read tasks and
the write tasks (:data:`TASK_CPUS` each) always find room next to them (on 2 cores, two
actors at 1 CPU each would leave the read tasks none, and the pipeline would stall).

The code is in rooms: :mod:`.plan` (the actor pool), :mod:`.rows` (the Arrow-row codec),
:mod:`.actor` (the actor), :mod:`.writes` (the two write paths) and :mod:`.engine` (the public
functions); this package re-exports their public names.
"""

from __future__ import annotations

try:
    import ray
    import ray.data  # noqa: F401
except ImportError as error:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "jina_connectors.ray needs Ray Data: pip install 'jina-connectors[ray]'"
    ) from error

from ..ingestion.options import RayOptions
from .engine import embed_dataset, ingest_dataset, ingest_documents
from .plan import (
    TASK_CPUS,
    ActorResources,
    actor_resources,
    check_actor_options,
    connect,
    plan_actors,
)
from .rows import CHUNK_COLUMNS
from .writes import RayIngestReport

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
