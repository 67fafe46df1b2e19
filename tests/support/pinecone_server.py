"""A small local stand-in for Pinecone's REST API, for driving the real ``pinecone`` SDK in tests.

It serves the control-plane and data-plane endpoints the Pinecone sink uses, with the JSON
shapes of the 2026-07 API version that ``pinecone`` 10.x speaks, on one ``ThreadingHTTPServer``
bound to 127.0.0.1. Each index's data plane lives under its own path prefix
(``/data/<index name>``); ``describe`` returns that URL as the index ``host``, so
``pc.index(name=...)`` reaches it exactly as it reaches a real index host.

Faithful where our code depends on it: Pinecone's operation limits are enforced with
Pinecone-like error JSON and status codes (upsert > 1000 records → 400, request > 2 MB → 413,
metadata > 40 KB per record → 400, wrong dimension → 400, fetch/delete > 1000 ids → 400), so a
test that passes proves the caller's batching stays within them. Every request is logged
(``requests``), and transient failures (429/503 with ``Retry-After: 0``) can be injected
(``fail_next``) to exercise retries. Not a Pinecone: no eventual consistency, no sparse
vectors, no pods, no integrated embedding, exact (brute-force) search.

Endpoints:
    GET    /indexes                          list indexes
    POST   /indexes                          create a dense index (``schema.fields._values``)
    GET    /indexes/{name}                   describe
    DELETE /indexes/{name}                   delete
    POST   /data/{name}/vectors/upsert       upsert (namespaces)
    POST   /data/{name}/query                query by vector; filter, include_* flags
    GET    /data/{name}/vectors/fetch        fetch by ids
    GET    /data/{name}/vectors/list         list ids (prefix, limit <= 100, pagination)
    POST   /data/{name}/vectors/delete       delete by ids, deleteAll or filter
    POST   /data/{name}/describe_index_stats per-namespace counts
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

MAX_UPSERT_RECORDS = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_METADATA_BYTES = 40 * 1024
MAX_IDS_PER_REQUEST = 1000
MAX_LIST_LIMIT = 100
MAX_TOP_K = 10_000
MAX_DIMENSION = 20_000
DENSE_FIELD = "_values"
DEFAULT_NAMESPACE_LABEL = "__default__"  # how describe_index_stats names the "" namespace
METRICS = ("cosine", "dotproduct", "euclidean")

# gRPC status codes, which Pinecone's data plane puts in its error bodies.
_INVALID_ARGUMENT = 3
_NOT_FOUND = 5
_RESOURCE_EXHAUSTED = 8
_UNAVAILABLE = 14


class ApiFailure(Exception):
    """An error response: HTTP status plus the JSON body Pinecone would send."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = int(status)
        self.body = body
        self.headers: dict[str, str] = {}


def _control_error(status: HTTPStatus, code: str, message: str) -> ApiFailure:
    return ApiFailure(status, {"error": {"code": code, "message": message}, "status": int(status)})


def _data_error(status: HTTPStatus, code: int, message: str) -> ApiFailure:
    return ApiFailure(status, {"code": code, "message": message, "details": []})


def _invalid(message: str) -> ApiFailure:
    return _data_error(HTTPStatus.BAD_REQUEST, _INVALID_ARGUMENT, message)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (after any injected failure was decided)."""

    method: str
    path: str
    index: str | None
    status: int
    body_bytes: int
    record_count: int  # vectors in an upsert, ids in fetch/delete, else 0
    namespace: str | None
    body: Any  # parsed JSON body (or the query parameters of a GET)


@dataclass
class _Record:
    values: np.ndarray
    metadata: dict[str, Any] | None


@dataclass
class _Index:
    name: str
    dimension: int
    metric: str
    cloud: str
    region: str
    deletion_protection: str
    tags: dict[str, str] | None
    namespaces: dict[str, dict[str, _Record]] = field(default_factory=dict)
    described: bool = False  # the create response says "Initializing"; later describes "Ready"


@dataclass
class _Failure:
    remaining: int
    status: int
    path_suffix: str


class PineconeTestServer:
    """The server, its state and its request log. Use as a context manager or start/stop."""

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.requests: list[RecordedRequest] = []
        #: Metadata bytes allowed per record. Lower it to play a service that measures
        #: metadata differently from the client (which then sends records it refuses).
        self.max_metadata_bytes = MAX_METADATA_BYTES
        self._indexes: dict[str, _Index] = {}
        self._failures: list[_Failure] = []
        self._lock = threading.RLock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def index_host(self, name: str) -> str:
        return f"{self.url}/data/{name}"

    def start(self) -> PineconeTestServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> PineconeTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- test controls --------------------------------------------------------------------

    def fail_next(self, count: int, *, status: int = 503, path_suffix: str = "") -> None:
        """Answer the next ``count`` requests whose path ends with ``path_suffix`` with
        ``status``: 429 or 5xx as a throttled or briefly unavailable service would (with
        ``Retry-After: 0``), or a 4xx as a permanent rejection."""
        with self._lock:
            self._failures.append(_Failure(count, status, path_suffix))

    def requests_to(self, path_suffix: str, *, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r
                for r in self.requests
                if r.path.endswith(path_suffix) and (method is None or r.method == method)
            ]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def records(self, index: str, namespace: str = "") -> dict[str, tuple[list[float], dict]]:
        """Snapshot of one namespace: id → (values, metadata)."""
        with self._lock:
            stored = self._indexes[index].namespaces.get(namespace, {})
            return {i: (r.values.tolist(), dict(r.metadata or {})) for i, r in stored.items()}

    # -- dispatch -------------------------------------------------------------------------

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], raw: bytes, headers: Any
    ) -> tuple[int, Any, dict[str, str]]:
        index_name = None
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts and parts[0] == "data" and len(parts) >= 2:
            index_name = parts[1]
        status, payload, extra_headers, body, count, namespace = 500, None, {}, None, 0, None
        try:
            if headers.get("Api-Key") != self.api_key:
                raise _control_error(HTTPStatus.UNAUTHORIZED, "UNAUTHENTICATED", "Invalid API Key")
            if not headers.get("X-Pinecone-Api-Version"):
                raise _control_error(
                    HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", "Missing X-Pinecone-Api-Version"
                )
            if method == "GET":
                body = {k: v if len(v) > 1 or k == "ids" else v[0] for k, v in query.items()}
            elif raw:
                try:
                    body = json.loads(raw)
                except ValueError as exc:
                    raise _invalid(f"Malformed JSON body: {exc}") from exc
            if isinstance(body, dict):
                ns = body.get("namespace")
                namespace = ns if isinstance(ns, str) else (None if ns is None else str(ns))
            self._maybe_fail(path)
            with self._lock:
                status, payload, count = self._route(method, parts, body, len(raw))
        except ApiFailure as failure:
            status, payload, extra_headers = failure.status, failure.body, failure.headers
        if isinstance(body, dict) and isinstance(body.get("vectors"), list):
            # Keep the log small: an upsert is recorded by its ids, not its values.
            body = {
                "namespace": body.get("namespace"),
                "ids": [v.get("id") for v in body["vectors"] if isinstance(v, dict)],
            }
        with self._lock:
            self.requests.append(
                RecordedRequest(method, path, index_name, status, len(raw), count, namespace, body)
            )
        return status, payload, extra_headers

    def _maybe_fail(self, path: str) -> None:
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and path.endswith(failure.path_suffix):
                    failure.remaining -= 1
                    raise _injected_failure(HTTPStatus(failure.status))

    def _route(self, method: str, parts: list[str], body: Any, size: int) -> tuple[int, Any, int]:
        if parts[:1] == ["indexes"]:
            if len(parts) == 1 and method == "GET":
                return 200, {"indexes": [self._index_json(i) for i in self._indexes.values()]}, 0
            if len(parts) == 1 and method == "POST":
                return 201, self._create_index(body), 0
            if len(parts) == 2:
                index = self._get_index(parts[1], control=True)
                if method == "GET":
                    index.described = True
                    return 200, self._index_json(index), 0
                if method == "DELETE":
                    if index.deletion_protection == "enabled":
                        raise _control_error(
                            HTTPStatus.FORBIDDEN,
                            "FORBIDDEN",
                            f"Deletion protection is enabled for index {index.name!r}",
                        )
                    del self._indexes[index.name]
                    return 202, None, 0
        if parts[:1] == ["data"] and len(parts) >= 3:
            index = self._get_index(parts[1], control=False)
            op = "/".join(parts[2:])
            if not isinstance(body, dict) and body is not None:
                raise _invalid("Request body must be a JSON object")
            body = body or {}
            if (method, op) == ("POST", "vectors/upsert"):
                return 200, *self._upsert(index, body, size)
            if (method, op) == ("POST", "query"):
                return 200, self._query(index, body), 0
            if (method, op) == ("GET", "vectors/fetch"):
                return 200, *self._fetch(index, body)
            if (method, op) == ("GET", "vectors/list"):
                return 200, self._list(index, body), 0
            if (method, op) == ("POST", "vectors/delete"):
                return 200, *self._delete(index, body)
            if (method, op) == ("POST", "describe_index_stats"):
                return 200, self._stats(index, body), 0
        raise _control_error(
            HTTPStatus.NOT_FOUND, "NOT_FOUND", f"No route for {method} /{'/'.join(parts)}"
        )

    # -- control plane --------------------------------------------------------------------

    def _get_index(self, name: str, *, control: bool) -> _Index:
        index = self._indexes.get(name)
        if index is None:
            if control:
                raise _control_error(
                    HTTPStatus.NOT_FOUND, "NOT_FOUND", f"Resource {name} not found"
                )
            raise _data_error(HTTPStatus.NOT_FOUND, _NOT_FOUND, f"Index {name} not found")
        return index

    def _index_json(self, index: _Index) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": index.name,
            "host": self.index_host(index.name),
            "status": {
                "ready": index.described,
                "state": "Ready" if index.described else "Initializing",
            },
            "schema": {
                "fields": {
                    DENSE_FIELD: {
                        "type": "dense_vector",
                        "dimension": index.dimension,
                        "metric": index.metric,
                    }
                }
            },
            "deployment": {
                "deployment_type": "managed",
                "cloud": index.cloud,
                "region": index.region,
            },
            "deletion_protection": index.deletion_protection,
        }
        if index.tags:
            out["tags"] = index.tags
        return out

    def _create_index(self, body: Any) -> dict[str, Any]:
        def bad(message: str) -> ApiFailure:
            return _control_error(HTTPStatus.BAD_REQUEST, "INVALID_ARGUMENT", message)

        if not isinstance(body, dict):
            raise bad("Request body must be a JSON object")
        name = body.get("name")
        if not isinstance(name, str) or not name or len(name) > 45:
            raise bad("Index name must be 1-45 characters")
        if not all(c.islower() or c.isdigit() or c == "-" for c in name) or not name.isascii():
            raise bad("Index name must consist of lowercase alphanumeric characters or '-'")
        if name in self._indexes:
            raise _control_error(
                HTTPStatus.CONFLICT, "ALREADY_EXISTS", f"Resource {name} already exists"
            )
        fields = (body.get("schema") or {}).get("fields")
        if not isinstance(fields, dict) or set(fields) != {DENSE_FIELD}:
            raise bad(
                f"This test server only creates dense vector indexes (schema field {DENSE_FIELD!r})"
            )
        dense = fields[DENSE_FIELD]
        dimension, metric = dense.get("dimension"), dense.get("metric", "cosine")
        if dense.get("type") != "dense_vector":
            raise bad("Field '_values' must have type 'dense_vector'")
        if (
            not isinstance(dimension, int)
            or isinstance(dimension, bool)
            or not 1 <= dimension <= MAX_DIMENSION
        ):
            raise bad(f"Dimension must be an integer in [1, {MAX_DIMENSION}], got {dimension!r}")
        if metric not in METRICS:
            raise bad(f"Metric must be one of {list(METRICS)}, got {metric!r}")
        deployment = body.get("deployment") or {
            "deployment_type": "managed",
            "cloud": "aws",
            "region": "us-east-1",
        }
        if deployment.get("deployment_type") != "managed":
            raise bad("This test server only creates managed (serverless) indexes")
        index = _Index(
            name=name,
            dimension=dimension,
            metric=metric,
            cloud=deployment.get("cloud", "aws"),
            region=deployment.get("region", "us-east-1"),
            deletion_protection=body.get("deletion_protection", "disabled"),
            tags=body.get("tags"),
        )
        self._indexes[name] = index
        return self._index_json(index)

    # -- data plane -----------------------------------------------------------------------

    def _upsert(self, index: _Index, body: dict[str, Any], size: int) -> tuple[dict[str, Any], int]:
        if size > MAX_REQUEST_BYTES:
            raise _data_error(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                _RESOURCE_EXHAUSTED,
                f"Request size {size} bytes exceeds the maximum supported size of "
                f"{MAX_REQUEST_BYTES} bytes",
            )
        vectors = body.get("vectors")
        if not isinstance(vectors, list) or not vectors:
            raise _invalid("vectors must be a non-empty list")
        if len(vectors) > MAX_UPSERT_RECORDS:
            raise _invalid(
                f"Batch size {len(vectors)} exceeds the maximum of {MAX_UPSERT_RECORDS} "
                "vectors per upsert request"
            )
        staged: dict[str, _Record] = {}
        for position, vector in enumerate(vectors):
            if (
                not isinstance(vector, dict)
                or not isinstance(vector.get("id"), str)
                or not vector["id"]
            ):
                raise _invalid(f"vectors[{position}]: id must be a non-empty string")
            values = _dense_values(vector.get("values"), index.dimension, f"vectors[{position}]")
            metadata = vector.get("metadata")
            if metadata is not None:
                _check_metadata(metadata, vector["id"], self.max_metadata_bytes)
            staged[vector["id"]] = _Record(values, _stored_metadata(metadata))
        namespace = _namespace(body)
        index.namespaces.setdefault(namespace, {}).update(staged)
        return {"upsertedCount": len(vectors)}, len(vectors)

    def _query(self, index: _Index, body: dict[str, Any]) -> dict[str, Any]:
        top_k = body.get("topK")
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
            raise _invalid(f"topK must be an integer in [1, {MAX_TOP_K}], got {top_k!r}")
        namespace = _namespace(body)
        stored = index.namespaces.get(namespace, {})
        if body.get("vector") is None:
            raise _invalid("This test server queries by vector only")
        query = _dense_values(body["vector"], index.dimension, "vector")
        flt = body.get("filter")
        if flt is not None:
            _validate_filter(flt)
        candidates = [
            (i, r) for i, r in stored.items() if flt is None or _matches(r.metadata or {}, flt)
        ]
        matches: list[dict[str, Any]] = []
        if candidates:
            ids = [i for i, _ in candidates]
            matrix = np.stack([r.values for _, r in candidates]).astype(np.float64)
            scores = _scores(matrix, query.astype(np.float64), index.metric)
            # Euclidean is a distance (smaller is nearer); the other two are similarities.
            order = np.argsort(scores if index.metric == "euclidean" else -scores, kind="stable")
            for j in order[:top_k]:
                record = candidates[j][1]
                match: dict[str, Any] = {"id": ids[j], "score": float(scores[j])}
                match["values"] = record.values.tolist() if body.get("includeValues") else []
                if body.get("includeMetadata") and record.metadata is not None:
                    match["metadata"] = record.metadata
                matches.append(match)
        return {
            "matches": matches,
            "namespace": namespace,
            "usage": {"readUnits": 1 + len(matches) // 10},
        }

    def _fetch(self, index: _Index, params: dict[str, Any]) -> tuple[dict[str, Any], int]:
        ids = params.get("ids") or []
        if isinstance(ids, str):
            ids = [ids]
        if not ids:
            raise _invalid("ids must be a non-empty list")
        if len(ids) > MAX_IDS_PER_REQUEST:
            raise _invalid(f"Too many ids: {len(ids)} > {MAX_IDS_PER_REQUEST} per fetch request")
        namespace = _namespace(params)
        stored = index.namespaces.get(namespace, {})
        vectors = {}
        for i in ids:
            if i in stored:
                entry: dict[str, Any] = {"id": i, "values": stored[i].values.tolist()}
                if stored[i].metadata is not None:
                    entry["metadata"] = stored[i].metadata
                vectors[i] = entry
        return {"vectors": vectors, "namespace": namespace, "usage": {"readUnits": 1}}, len(ids)

    def _list(self, index: _Index, params: dict[str, Any]) -> dict[str, Any]:
        """One page of ids in id order; the pagination token is the last id of the page."""
        prefix = _single(params.get("prefix")) or ""
        limit = int(_single(params.get("limit")) or MAX_LIST_LIMIT)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise _invalid(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        after = _single(params.get("paginationToken"))
        namespace = _namespace(params)
        ids = sorted(i for i in index.namespaces.get(namespace, {}) if i.startswith(prefix))
        if after is not None:
            ids = [i for i in ids if i > after]
        page = ids[:limit]
        out: dict[str, Any] = {
            "vectors": [{"id": i} for i in page],
            "namespace": namespace,
            "usage": {"readUnits": 1},
        }
        if len(ids) > limit:
            out["pagination"] = {"next": page[-1]}
        return out

    def _delete(self, index: _Index, body: dict[str, Any]) -> tuple[dict[str, Any], int]:
        namespace = _namespace(body)
        stored = index.namespaces.get(namespace, {})
        ids, delete_all, flt = body.get("ids"), body.get("deleteAll"), body.get("filter")
        if sum(x is not None and x is not False for x in (ids, delete_all, flt)) != 1:
            raise _invalid("Exactly one of ids, deleteAll or filter must be provided")
        if ids is not None:
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise _invalid("ids must be a list of strings")
            if len(ids) > MAX_IDS_PER_REQUEST:
                raise _invalid(
                    f"Too many ids: {len(ids)} > {MAX_IDS_PER_REQUEST} per delete request"
                )
            for i in ids:
                stored.pop(i, None)
            return {}, len(ids)
        if delete_all:
            index.namespaces.pop(namespace, None)
            return {}, 0
        if not isinstance(flt, dict) or not flt:
            raise _invalid("filter must be a non-empty object")
        _validate_filter(flt)
        doomed = [i for i, r in stored.items() if _matches(r.metadata or {}, flt)]
        for i in doomed:
            del stored[i]
        return {}, len(doomed)

    def _stats(self, index: _Index, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("filter"):
            raise _invalid("describe_index_stats does not support a filter on serverless indexes")
        namespaces = {
            (ns or DEFAULT_NAMESPACE_LABEL): {"vectorCount": len(records)}
            for ns, records in index.namespaces.items()
            if records
        }
        return {
            "namespaces": namespaces,
            "dimension": index.dimension,
            "indexFullness": 0.0,
            "totalVectorCount": sum(n["vectorCount"] for n in namespaces.values()),
            "metric": index.metric,
            "vectorType": "dense",
        }


def _injected_failure(status: HTTPStatus) -> ApiFailure:
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        code, message = _RESOURCE_EXHAUSTED, "Request rate limit exceeded"
    elif status >= 500:
        code, message = _UNAVAILABLE, "Service briefly unavailable"
    else:
        code, message = _INVALID_ARGUMENT, "Request rejected"
    error = _data_error(status, code, f"{message} (injected by the test server)")
    if status == HTTPStatus.TOO_MANY_REQUESTS or status >= 500:
        error.headers["Retry-After"] = "0"  # keeps the SDK's own retries instant in tests
    return error


def _single(value: Any) -> Any:
    """A query parameter given once (parsed query strings hold lists)."""
    return value[0] if isinstance(value, list) and value else value


def _namespace(body: Mapping[str, Any]) -> str:
    namespace = body.get("namespace") or ""
    if not isinstance(namespace, str):
        raise _invalid("namespace must be a string")
    return namespace


def _dense_values(values: Any, dimension: int, where: str) -> np.ndarray:
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise _invalid(f"{where}: values must be a list of numbers")
    if len(values) != dimension:
        raise _invalid(
            f"Vector dimension {len(values)} does not match the dimension of the index {dimension}"
        )
    array = np.asarray(values, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise _invalid(f"{where}: values must be finite")
    if not np.any(array):
        raise _invalid(f"{where}: dense vectors must contain at least one non-zero value")
    return array


def _check_metadata(metadata: Any, record_id: str, limit: int = MAX_METADATA_BYTES) -> None:
    if not isinstance(metadata, dict):
        raise _invalid(f"Metadata of vector {record_id} must be an object")
    for key, value in metadata.items():
        ok = (
            isinstance(value, (str, bool))
            or (isinstance(value, (int, float)) and math.isfinite(value))
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        )
        if not ok:
            raise _invalid(
                f"Metadata value for field {key!r} of vector {record_id} must be a string, "
                "number, boolean or list of strings"
            )
    size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
    if size > limit:
        raise _invalid(
            f"Metadata size is {size} bytes, which exceeds the limit of {limit} bytes per vector"
        )


def _stored_metadata(metadata: dict[str, Any] | None) -> dict[str, Any] | None:
    # Pinecone keeps every number as a 64-bit float, and returns it as one (3 -> 3.0).
    if metadata is None:
        return None
    return {
        k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v
        for k, v in metadata.items()
    }


def _scores(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    if metric == "dotproduct":
        return matrix @ query
    if metric == "euclidean":
        return ((matrix - query) ** 2).sum(axis=1)  # Pinecone reports the squared distance
    norms = np.linalg.norm(matrix, axis=1) * np.linalg.norm(query)
    return (matrix @ query) / norms


_COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")


def _validate_filter(flt: Any) -> None:
    if not isinstance(flt, dict):
        raise _invalid("filter must be an object")
    for key, condition in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(condition, list) or not condition:
                raise _invalid(f"{key} requires a non-empty array")
            for sub in condition:
                _validate_filter(sub)
        elif key.startswith("$"):
            raise _invalid(f"Unsupported top-level filter operator {key}")
        elif isinstance(condition, dict):
            for op, operand in condition.items():
                if op not in _COMPARISONS:
                    raise _invalid(f"Unsupported filter operator {op} for field {key!r}")
                if op in ("$in", "$nin") and not isinstance(operand, list):
                    raise _invalid(f"{op} requires an array, field {key!r}")
                if op in ("$gt", "$gte", "$lt", "$lte") and (
                    not isinstance(operand, (int, float)) or isinstance(operand, bool)
                ):
                    raise _invalid(f"{op} requires a number, field {key!r}")


def _matches(metadata: Mapping[str, Any], flt: Mapping[str, Any]) -> bool:
    """Pinecone's filter semantics: keys are ANDed; a bare value means ``$eq``; on a list field
    ``$eq``/``$in`` match when any element does and ``$ne``/``$nin`` when none does."""
    for key, condition in flt.items():
        if key == "$and":
            if not all(_matches(metadata, sub) for sub in condition):
                return False
        elif key == "$or":
            if not any(_matches(metadata, sub) for sub in condition):
                return False
        else:
            ops = condition if isinstance(condition, dict) else {"$eq": condition}
            if not all(
                _compare(key in metadata, metadata.get(key), op, v) for op, v in ops.items()
            ):
                return False
    return True


def _compare(present: bool, value: Any, op: str, operand: Any) -> bool:
    if op == "$exists":
        return present == bool(operand)
    elements = value if isinstance(value, list) else [value]
    if op == "$eq":
        return present and any(_equal(e, operand) for e in elements)
    if op == "$ne":
        return not (present and any(_equal(e, operand) for e in elements))
    if op == "$in":
        return present and any(_equal(e, o) for e in elements for o in operand)
    if op == "$nin":
        return not (present and any(_equal(e, o) for e in elements for o in operand))
    if not present or isinstance(value, (bool, str, list)):
        return False
    return {
        "$gt": value > operand,
        "$gte": value >= operand,
        "$lt": value < operand,
        "$lte": value <= operand,
    }[op]


def _equal(a: Any, b: Any) -> bool:
    # Numbers are 64-bit floats in Pinecone; a bool is not a number.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def _make_handler(server: PineconeTestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's pooled httpx client expects
        # One send per response, without Nagle: headers and body in separate small segments
        # would each wait for a delayed ACK (~40 ms a request).
        wbufsize = 1 << 16
        disable_nagle_algorithm = True

        def _serve(self, method: str) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, payload, extra = server.handle(
                method, split.path, parse_qs(split.query), raw, self.headers
            )
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_DELETE(self) -> None:
            self._serve("DELETE")

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    return Handler


@contextmanager
def running_server(api_key: str = "test-key") -> Iterator[PineconeTestServer]:
    """Start a server on a free port for the duration of the ``with`` block."""
    with PineconeTestServer(api_key) as server:
        yield server
