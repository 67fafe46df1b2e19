"""The server's limits, for real (a ``jina-connectors serve`` child process, or uvicorn in a
thread, on loopback): memory per request bounded by the body limit, the span caps, the
admission budget and the tokenizer pool; what is past them is a 413 or 429 in JSON while
``/health`` stays 200."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_support import ServerProcess, serve_app

from embedder_core import Embedder
from jina_connectors.server import create_app
from jina_connectors.server.http import guarded_h11_protocol

WORDS = tuple(
    "the river carries light over stones while children count the boats and a dog "  # noqa: SIM905
    "sleeps near the warm wall of an old house in the quiet town by the sea".split()
)
MiB = 1024 * 1024


def words(rng: random.Random, characters: int) -> str:
    parts: list[str] = []
    size = 0
    while size < characters:
        word = rng.choice(WORDS)
        parts.append(word)
        size += len(word) + 1
    return " ".join(parts)[:characters].strip() + "."


def maximal_bodies(max_bytes: int, max_inputs: int, max_spans: int) -> dict[str, bytes]:
    """One request of each kind, as large as the limits allow (just under the body limit)."""
    rng = random.Random(19)
    room = max_bytes - 200
    document = words(rng, 4 * max_spans + 10)
    spans = [[4 * i, 4 * i + 3] for i in range(max_spans)]
    bodies = {
        "largest string, truncated": {"input": [words(rng, room)], "truncate": True},
        "largest string, over the token limit": {"input": [words(rng, room)]},
        "most inputs": {
            "input": [words(rng, room // max_inputs - 6) for _ in range(max_inputs)],
            "truncate": True,
        },
        "most spans": {"documents": [{"text": document, "spans": spans}]},
        "past the body limit": {"input": [words(rng, max_bytes)], "truncate": True},
    }
    encoded = {name: json.dumps(body).encode() for name, body in bodies.items()}
    for name, body in encoded.items():
        assert (len(body) > max_bytes) == (name == "past the body limit"), (name, len(body))
    return encoded


ROUTES = {"most spans": "/v1/x/embed-spans"}
EXPECTED = {  # statuses each kind may get: its answer, or 429 past the admission budget
    "largest string, truncated": {200, 429},
    "largest string, over the token limit": {400, 429},
    "most inputs": {200, 429},
    "most spans": {200, 429},
    "past the body limit": {413},
}


@contextlib.contextmanager
def health_polled(url: str) -> Iterator[list[int | str]]:
    """Polls ``/health`` every 50 ms (a new connection each time) while the block runs."""
    statuses: list[int | str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            try:
                statuses.append(httpx.get(url + "/health", timeout=10).status_code)
            except httpx.HTTPError as error:
                statuses.append(type(error).__name__)
            time.sleep(0.05)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        thread.join(15)


def flood(url: str, route: str, body: bytes, count: int) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=count)
        headers = {"Content-Type": "application/json"}
        async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
            return await asyncio.gather(
                *(client.post(route, content=body, headers=headers) for _ in range(count))
            )

    return asyncio.run(run())


def run_maximal_load(
    minilm_dir: Path,
    tmp_path: Path,
    *,
    max_bytes: int,
    max_admitted: int,
    max_inputs: int,
    max_spans: int,
) -> tuple[int, dict[str, Counter[int]], list[int | str]]:
    """20 concurrent maximal requests of each kind against a MiniLM server; the server's
    peak resident memory above what it holds once loaded and warmed up, the statuses, and
    those of ``/health`` meanwhile."""
    options = ["--model", str(minilm_dir), "--device", "cpu", "--log-level", "warning"]
    options += ["--max-request-bytes", str(max_bytes), "--max-admitted-bytes", str(max_admitted)]
    options += ["--max-inputs", str(max_inputs), "--max-spans", str(max_spans)]
    server = ServerProcess(options, tmp_path / "server.log")
    try:
        server.wait_ready()
        bodies = maximal_bodies(max_bytes, max_inputs, max_spans)
        for name, body in bodies.items():  # warm up: one of each, alone
            [response] = flood(server.url, ROUTES.get(name, "/v1/embeddings"), body, 1)
            assert response.status_code == min(EXPECTED[name]), (name, response.text[:300])
        loaded = server.status()["VmRSS"]
        statuses: dict[str, Counter[int]] = {}
        with health_polled(server.url) as health:
            load_all(server, bodies, statuses)
        peak = server.status()["VmHWM"]
        assert "Traceback" not in server.log()
    finally:
        server.stop()
    return peak - loaded, statuses, health


def load_all(
    server: ServerProcess, bodies: dict[str, bytes], statuses: dict[str, Counter[int]]
) -> None:
    for name, body in bodies.items():
        responses = flood(server.url, ROUTES.get(name, "/v1/embeddings"), body, 20)
        statuses[name] = Counter(response.status_code for response in responses)
        for response in responses:
            assert response.headers["content-type"] == "application/json", response.text
            if response.status_code == 429:
                assert response.json()["error"]["code"] == "queue_full"
                assert int(response.headers["Retry-After"]) >= 1
        assert set(statuses[name]) <= EXPECTED[name], (name, statuses[name])


def check_health(polled: list[int | str]) -> None:
    assert len(polled) >= 10 and set(polled) == {200}, Counter(polled)


def test_20_concurrent_maximal_requests_of_each_kind_stay_in_bounds(
    minilm_dir: Path, tmp_path: Path
) -> None:
    """Limits scaled down (32 KiB bodies, a 256 KiB admission budget) to keep this fast on
    a busy 2-core machine; the slow test below runs the defaults."""
    growth, statuses, health = run_maximal_load(
        minilm_dir,
        tmp_path,
        max_bytes=32 * 1024,
        max_admitted=256 * 1024,
        max_inputs=256,
        max_spans=1024,
    )
    print("peak RSS over the loaded server:", growth / MiB, "MiB;", statuses)
    assert growth < 150 * MiB  # measured: 9 MiB
    for name in ("largest string, truncated", "most inputs", "most spans"):
        assert statuses[name][200] >= 1, statuses
    # The budget holds a few requests' worth: the others of a burst are told to retry.
    assert sum(counts[429] for counts in statuses.values()) >= 20, statuses
    check_health(health)


@pytest.mark.slow
def test_20_concurrent_maximal_requests_at_the_default_limits(
    minilm_dir: Path, tmp_path: Path
) -> None:
    growth, statuses, health = run_maximal_load(
        minilm_dir,
        tmp_path,
        max_bytes=2 * MiB,
        max_admitted=32 * MiB,
        max_inputs=2048,
        max_spans=8192,
    )
    print("peak RSS over the loaded server:", growth / MiB, "MiB;", statuses)
    assert growth < 1536 * MiB  # the documented bound: model + 1.5 GiB
    check_health(health)


# ------------------------------------------------------------- in-process servers
@pytest.fixture(scope="module")
def limited_server(tiny_jina_embedder: Embedder) -> Iterator[str]:
    app = create_app(tiny_jina_embedder, max_spans=6, max_inputs=4)
    with serve_app(app) as url:
        yield url


SPAN_ERRORS = [
    # (documents, code, a fragment of the message, param)
    (
        [{"text": "hello world", "spans": [[3, 3]]}],
        "invalid_span",
        "documents[0]: span 0 [3, 3] is empty, reversed or outside",
        None,
    ),
    (
        [{"text": "hello world", "spans": [[0, 5], [5, 2]]}],
        "invalid_span",
        "documents[0]: span 1 [5, 2] is empty",
        "documents[0].spans[1]",
    ),
    (
        [{"text": "a", "spans": [[0, 1]]}, {"text": "hello world", "spans": [[0, 12]]}],
        "invalid_span",
        "documents[1]: span 0 [0, 12] is empty, reversed or outside the text; a span is "
        "[start, end] with 0 <= start < end <= 11",
        "documents[1].spans[0]",
    ),
    ([{"text": "hello", "spans": [[-1, 2]]}], "invalid_span", "documents[0]: span 0 [-1, 2]", None),
    (
        [{"text": "hello", "spans": [[0, 1, 2]]}],
        "invalid_span",
        "documents[0]: span 0 [0, 1, 2]",
        None,
    ),
    (
        [{"text": "hi there", "spans": [[0, 1]] * 9}],
        "too_many_spans",
        "documents[0] has 9 spans over a text of 8 characters",
        "documents[0].spans",
    ),
    (
        [{"text": "hello world", "spans": [[0, 5]] * 4}] * 2,
        "too_many_spans",
        "more than 6 spans, this server's limit per request",
        "documents",
    ),
]


@pytest.mark.parametrize(("documents", "code", "fragment", "param"), SPAN_ERRORS)
def test_bad_spans_are_a_400_naming_the_span(
    limited_server: str, documents: list[Any], code: str, fragment: str, param: str | None
) -> None:
    response = httpx.post(
        limited_server + "/v1/x/embed-spans", json={"documents": documents}, timeout=30
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == code and fragment in error["message"], error
    if param is not None:
        assert error["param"] == param


def test_lone_surrogates_are_a_400_naming_the_input(limited_server: str) -> None:
    # JSON allows "\ud800"; Python decodes it to a str no tokenizer (or UTF-8) accepts.
    cases = [
        ("/v1/embeddings", b'{"input": ["fine", "bad \\ud800 text"]}', "input[1]", 4),
        ("/v1/x/count-tokens", b'{"input": "\\udfff"}', "input[0]", 0),
        (
            "/v1/x/embed-spans",
            b'{"documents": [{"text": "ab\\ud83d", "spans": [[0, 1]]}]}',
            "documents[0].text",
            2,
        ),
    ]
    for route, body, where, position in cases:
        response = httpx.post(
            limited_server + route,
            content=body,
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid_text" and error["param"] == where
        assert f"{where} has a lone UTF-16 surrogate" in error["message"]
        assert f"at character {position}" in error["message"]
    # A proper pair (one character) is fine.
    ok = httpx.post(
        limited_server + "/v1/embeddings",
        content=b'{"input": "smile \\ud83d\\ude00"}',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert ok.status_code == 200, ok.text


def test_the_model_routes_advertise_the_limits(
    limited_server: str, tiny_jina_embedder: Embedder
) -> None:
    expected = {
        "max_input_tokens": tiny_jina_embedder.max_tokens,
        "max_inputs": 4,
        "max_spans": 6,
        "max_request_bytes": 2 * MiB,
        "max_body_bytes": 2 * MiB,
        "max_admitted_bytes": 32 * MiB,
        "max_queued_tokens": None,
    }
    [entry] = httpx.get(limited_server + "/v1/models").json()["data"]
    info = httpx.get(limited_server + "/v1/x/model").json()
    for answer in (entry, info):
        assert {name: answer[name] for name in expected} == expected


def test_bodies_far_past_the_limit_get_their_413_not_a_reset(
    tiny_jina_dir: Path, tmp_path: Path
) -> None:
    """20 concurrent 4 MiB bodies against the 2 MiB default (a server process, as deployed):
    each client sends its whole body before it reads the answer. (Answering at once and
    closing the socket with the body unread reset every one of these connections.)"""
    server = ServerProcess(["--model", str(tiny_jina_dir), "--device", "cpu"], tmp_path / "log")
    body = b'{"input": ["' + b"word " * (4 * MiB // 5) + b'"]}'

    def streamed() -> Iterator[bytes]:  # no Content-Length: counted while it arrives
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    try:
        server.wait_ready()
        statuses = Counter(r.status_code for r in flood(server.url, "/v1/embeddings", body, 20))
        streamed_answer = httpx.post(
            server.url + "/v1/embeddings",
            content=streamed(),
            headers={"Content-Type": "application/json"},
            timeout=60,
        )
    finally:
        server.stop()
    assert statuses == {413: 20}
    assert streamed_answer.status_code == 413
    assert streamed_answer.json()["error"]["code"] == "request_too_large"


# ------------------------------------------------------------ connection hygiene
@pytest.fixture(scope="module")
def guarded_server(tiny_jina_embedder: Embedder) -> Iterator[str]:
    """The connection limits ``serve`` sets, with short timeouts."""
    app = create_app(tiny_jina_embedder, body_timeout=0.5)
    with serve_app(
        app,
        http=guarded_h11_protocol(header_timeout=0.5),
        timeout_keep_alive=1,
        h11_max_incomplete_event_size=16 * 1024,
    ) as url:
        yield url


def connect(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (a reset is a failure)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def json_answer(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), raw[:300]
    return int(head.split()[1]), json.loads(body)


def test_an_idle_connection_is_closed_after_the_header_timeout(guarded_server: str) -> None:
    with connect(guarded_server) as sock:
        started = time.monotonic()
        assert read_all(sock) == b""  # closed, nothing to answer
        assert time.monotonic() - started < 5


def test_slow_headers_get_a_json_408(guarded_server: str) -> None:
    with connect(guarded_server) as sock:
        sock.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\n")  # and then nothing
        started = time.monotonic()
        status, answer = json_answer(read_all(sock))
        assert time.monotonic() - started < 5
    assert status == 408 and answer["error"]["code"] == "request_timeout"


def test_a_slow_body_gets_a_json_408(guarded_server: str) -> None:
    with connect(guarded_server) as sock:
        sock.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"input": '
        )
        started = time.monotonic()
        status, answer = json_answer(read_all(sock))
        assert time.monotonic() - started < 5
    assert status == 408 and "did not arrive within 0.5 s" in answer["error"]["message"]


def test_an_idle_keep_alive_connection_is_closed(guarded_server: str) -> None:
    with connect(guarded_server) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        started = time.monotonic()
        answer = read_all(sock)  # the answer, then the close once idle
        assert answer.startswith(b"HTTP/1.1 200") and time.monotonic() - started < 5


def test_a_1_mb_header_gets_a_json_431_not_a_reset(guarded_server: str) -> None:
    response = httpx.get(guarded_server + "/health", headers={"X-Big": "a" * 2**20}, timeout=30)
    assert response.status_code == 431
    assert response.json()["error"]["code"] == "headers_too_large"
    assert "over 16384 bytes" in response.json()["detail"]
    assert httpx.get(guarded_server + "/health", timeout=30).status_code == 200


# ---------------------------------------------------------------------- shutdown
def test_sigterm_answers_what_runs_past_the_drain_deadline_with_json_503(
    tiny_jina_dir: Path, tmp_path: Path
) -> None:
    options = ["--model", str(tiny_jina_dir), "--device", "cpu", "--max-batch-tokens", "64"]
    options += ["--drain-seconds", "2", "--body-timeout", "60", "--max-inputs", "4096"]
    server = ServerProcess(options, tmp_path / "server.log")
    rng = random.Random(4)
    # One sequence per forward: each request takes thousands of forwards, past the deadline.
    bodies = [{"input": [words(rng, 180) for _ in range(4096)]} for _ in range(3)]
    results: list[Any] = [None] * len(bodies)

    def post(i: int) -> None:
        try:
            results[i] = httpx.post(server.url + "/v1/embeddings", json=bodies[i], timeout=120)
        except httpx.HTTPError as error:
            results[i] = error

    try:
        server.wait_ready()
        threads = [threading.Thread(target=post, args=(i,)) for i in range(len(bodies))]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 60
        while "jina_connectors_queued_requests 3.0" not in httpx.get(server.url + "/metrics").text:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        slow = connect(server.url)  # a body that never completes
        slow.sendall(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: localhost\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"input": '
        )
        time.sleep(0.3)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        slow_status, slow_answer = json_answer(read_all(slow))
        for thread in threads:
            thread.join(60)
        server.process.wait(30)
        stopped = time.monotonic() - started
    finally:
        server.stop()
    log = server.log()
    assert stopped < 2 + 5, log[-3000:]
    assert slow_status == 503 and slow_answer["error"]["code"] == "shutting_down"
    for response in results:
        assert isinstance(response, httpx.Response), (response, log[-3000:])
        assert response.status_code == 503, response.text[:300]
        assert response.headers["content-type"] == "application/json"
        assert response.json()["error"]["code"] == "shutting_down"
        assert "drain deadline 2 s" in response.json()["detail"]
    assert log.count("dropped POST /v1/embeddings") == len(bodies) + 1, log[-3000:]
    assert "CancelledError" not in log and "Traceback" not in log, log[-3000:]


# ------------------------------------------------------------------ tokenization
class GatedTokenizer:
    """The real fast tokenizer; records what it is given, and holds any batch with the word
    BLOCKER until released (so the one tokenizer thread is busy for as long as the test
    needs)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.seen: list[str] = []
        self.busy = threading.Event()
        self.release = threading.Event()

    def encode_batch(self, texts: list[str], **options: Any) -> Any:
        self.seen.extend(texts)
        if any("BLOCKER" in text for text in texts):
            self.busy.set()
            self.release.wait(30)
        return self.tokenizer.encode_batch(texts, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


def test_a_departed_clients_request_is_dropped_before_it_is_tokenized(
    tiny_jina_dir: Path,
) -> None:
    embedder = Embedder.from_pretrained(str(tiny_jina_dir), device="cpu")
    gated = GatedTokenizer(embedder._tokenizer._tokenizer)
    embedder._tokenizer._tokenizer = gated
    app = create_app(embedder, tokenize_workers=1)
    rng = random.Random(5)
    long_text = words(rng, 6000)  # past what is tokenized on the event loop
    with serve_app(app) as url:
        first: list[httpx.Response] = []
        blocker = threading.Thread(
            target=lambda: first.append(
                httpx.post(
                    url + "/v1/embeddings",
                    json={"input": "BLOCKER " + long_text, "truncate": True},
                    timeout=60,
                )
            )
        )
        blocker.start()
        assert gated.busy.wait(30)  # the only tokenizer thread is busy
        body = json.dumps({"input": "LEAVER " + long_text, "truncate": True}).encode()
        with connect(url) as leaving:
            leaving.sendall(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.5)  # parsed and waiting for the tokenizer thread
        # The client is gone; then the tokenizer thread frees up.
        deadline = time.monotonic() + 30
        while (
            "jina_connectors_cancelled_requests_total 1.0" not in httpx.get(url + "/metrics").text
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        gated.release.set()
        blocker.join(60)
        metrics = httpx.get(url + "/metrics").text
    assert first and first[0].status_code == 200
    assert not any("LEAVER" in text for text in gated.seen)
    assert 'jina_connectors_requests_total{route="/v1/embeddings",status="499"} 1.0' in metrics


def test_serve_refuses_a_budget_smaller_than_one_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jina_connectors.cli import main

    args = ["serve", "--model", str(tmp_path), "--port", "0"]
    assert main([*args, "--max-request-bytes", "2000", "--max-admitted-bytes", "1000"]) == 1
    assert "--max-admitted-bytes (1000) must be at least --max-request-bytes (2000)" in (
        capsys.readouterr().err
    )


# ------------------------------------------------------------------ memory over time
def test_serve_bounds_the_cpu_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    from jina_connectors.server import limit_cpu_caches

    monkeypatch.delenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", raising=False)
    limit_cpu_caches()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "0"
    monkeypatch.setenv("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "512")  # the operator's choice
    limit_cpu_caches()
    assert os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] == "512"


@pytest.mark.slow
def test_resident_memory_stays_flat_over_rounds_of_load(minilm_dir: Path, tmp_path: Path) -> None:
    """Rounds of 16 clients against a MiniLM server: after the first round, the resident
    size stays within a few MiB (with oneDNN's default cache it grew ~40 MiB a round)."""
    options = ["--model", str(minilm_dir), "--device", "cpu", "--log-level", "warning"]
    server = ServerProcess(options, tmp_path / "server.log")
    rng = random.Random(8)

    async def round_of_load(seconds: float) -> None:
        stop = time.monotonic() + seconds

        async def client(client_rng: random.Random) -> None:
            async with httpx.AsyncClient(base_url=server.url, timeout=120) as http:
                while time.monotonic() < stop:
                    count = client_rng.randint(1, 8)
                    texts = [words(client_rng, client_rng.randint(20, 600)) for _ in range(count)]
                    response = await http.post("/v1/embeddings", json={"input": texts})
                    assert response.status_code == 200, response.text

        await asyncio.gather(*(client(random.Random(rng.random())) for _ in range(16)))

    try:
        server.wait_ready()
        resident = []
        for _ in range(4):
            asyncio.run(round_of_load(15))
            resident.append(server.status()["VmRSS"])
    finally:
        server.stop()
    assert max(resident[1:]) - resident[0] < 48 * MiB, [r // MiB for r in resident]
