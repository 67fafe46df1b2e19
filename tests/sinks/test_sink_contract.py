"""The sink contract (``sink_contract.py``) on Qdrant local mode, Milvus Lite and Pinecone (the
real ``pinecone`` SDK against the local REST server of ``pinecone_server.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ingest_corpus import StoredPoint, dump_milvus, dump_pinecone, dump_qdrant
from sink_contract import CrashStore, SinkContractTests, SinkFactory, minilm  # noqa: F401

from jina_connectors.sinks import VectorSink

API_KEY = "test-key"


class TestQdrantSink(SinkContractTests):
    db = "qdrant"

    @pytest.fixture
    def make_sink(self) -> Iterator[SinkFactory]:
        pytest.importorskip("qdrant_client")
        from qdrant_client import QdrantClient

        from jina_connectors.sinks.qdrant import QdrantSink

        client = QdrantClient(location=":memory:")
        sinks: list[VectorSink] = []

        def make(collection: str = "docs", **options: Any) -> VectorSink:
            sinks.append(QdrantSink(collection, client=client, **options))
            return sinks[-1]

        yield make
        for sink in sinks:
            sink.close()
        client.close()

    @pytest.fixture
    def crash_store(self, tmp_path: Path) -> CrashStore:
        from jina_connectors.sinks.qdrant import QdrantSink

        return CrashStore(
            location=lambda n: (str(tmp_path / f"qdrant-{n}"), "docs"),
            open=lambda location, collection: QdrantSink(collection, location=location),
        )

    def dump(self, sink: Any) -> dict[str, StoredPoint]:
        if not sink.client.collection_exists(sink.collection):
            return {}
        return dump_qdrant(sink.client, sink.collection)

    def create_foreign_collection(
        self, sink: Any, *, size: int, metric: str, payload: dict[str, Any] | None
    ) -> None:
        from qdrant_client import models

        distance = {"cosine": models.Distance.COSINE, "euclidean": models.Distance.EUCLID}
        sink.client.create_collection(
            sink.collection,
            vectors_config=models.VectorParams(size=size, distance=distance[metric]),
        )
        if payload is not None:
            point = models.PointStruct(id=1, vector=[0.5] * size, payload=payload)
            sink.client.upsert(sink.collection, [point])

    def native_filter_year_from(self, year: int) -> Any:
        from qdrant_client import models

        condition = models.FieldCondition(key="metadata.year", range=models.Range(gte=year))
        return models.Filter(must=[condition])


class TestMilvusSink(SinkContractTests):
    db = "milvus"

    @pytest.fixture
    def make_sink(self, tmp_path: Path) -> Iterator[SinkFactory]:
        pytest.importorskip("milvus_lite")
        from jina_connectors.sinks.milvus import MilvusSink

        owner = MilvusSink("docs", location=tmp_path / "milvus.db")  # owns the Lite server
        sinks: list[VectorSink] = []

        def make(collection: str = "docs", **options: Any) -> VectorSink:
            sinks.append(MilvusSink(collection, client=owner.client, **options))
            return sinks[-1]

        yield make
        for sink in sinks:
            sink.close()
        owner.close()

    @pytest.fixture
    def crash_store(self, tmp_path: Path) -> CrashStore:
        pytest.importorskip("milvus_lite")
        from jina_connectors.sinks.milvus import MilvusSink

        return CrashStore(
            location=lambda n: (str(tmp_path / f"milvus-{n}.db"), "docs"),
            open=lambda location, collection: MilvusSink(collection, location=location),
        )

    def dump(self, sink: Any) -> dict[str, StoredPoint]:
        if not sink.client.has_collection(sink.collection):
            return {}
        return dump_milvus(sink.client, sink.collection)

    def create_foreign_collection(
        self, sink: Any, *, size: int, metric: str, payload: dict[str, Any] | None
    ) -> None:
        from pymilvus import DataType, MilvusClient

        client, name = sink.client, sink.collection
        if payload is not None:  # what other tools create: Milvus' quick-setup schema
            client.create_collection(name, dimension=size, metric_type=metric_name(metric))
            client.insert(name, [{"id": 1, "vector": [0.5] * size, **payload}])
            return
        # jina-connectors' own schema, with another metric.
        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=size)
        for key in ("text", "doc_id", "content_hash", "model", "task", "embedding_type"):
            schema.add_field(key, DataType.VARCHAR, max_length=1024)
        for key in ("chunk_index", "chunk_count", "start", "end", "dimensions"):
            schema.add_field(key, DataType.INT64)
        schema.add_field("metadata", DataType.JSON)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="AUTOINDEX", metric_type=metric_name(metric))
        client.create_collection(name, schema=schema, index_params=index)

    def native_filter_year_from(self, year: int) -> Any:
        return f'metadata["year"] >= {year}'


def metric_name(metric: str) -> str:
    return {"cosine": "COSINE", "euclidean": "L2"}[metric]


class TestPineconeSink(SinkContractTests):
    db = "pinecone"

    @pytest.fixture
    def server(self) -> Iterator[Any]:
        pytest.importorskip("pinecone")
        from pinecone_server import running_server

        with running_server(API_KEY) as running:
            yield running

    @pytest.fixture
    def make_sink(self, server: Any) -> Iterator[SinkFactory]:
        from jina_connectors.sinks.pinecone import PineconeSink

        self.server = server
        sinks: list[VectorSink] = []

        def make(collection: str = "docs", **options: Any) -> VectorSink:
            sinks.append(PineconeSink(collection, location=server.url, api_key=API_KEY, **options))
            return sinks[-1]

        yield make
        for sink in sinks:
            sink.close()

    @pytest.fixture
    def crash_store(self, server: Any) -> CrashStore:
        from jina_connectors.sinks.pinecone import PineconeSink

        self.server = server
        return CrashStore(
            location=lambda n: (server.url, f"crash-{n}"),
            open=lambda url, collection: PineconeSink(collection, location=url, api_key=API_KEY),
            env={"PINECONE_API_KEY": API_KEY},
        )

    def dump(self, sink: Any) -> dict[str, StoredPoint]:
        try:
            return dump_pinecone(self.server, sink.collection, sink.namespace)
        except KeyError:  # no such index
            return {}

    def create_foreign_collection(
        self, sink: Any, *, size: int, metric: str, payload: dict[str, Any] | None
    ) -> None:
        from pinecone import Pinecone

        client = Pinecone(api_key=API_KEY, host=self.server.url)
        dense = {"type": "dense_vector", "dimension": size, "metric": metric}
        try:
            client.indexes.create(
                name=sink.collection,
                schema={"fields": {"_values": dense}},
                deployment={"deployment_type": "managed", "cloud": "aws", "region": "us-east-1"},
            )
            if payload is not None:
                index = client.index(name=sink.collection)
                index.upsert(vectors=[("foreign-1", [0.5] * size, payload)])
                index.close()
        finally:
            client.close()

    def native_filter_year_from(self, year: int) -> Any:
        return {"metadata.year": {"$gte": year}}
