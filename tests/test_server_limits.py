"""The server's limits, for real (a ``jina-connectors serve`` child process, or uvicorn in a
thread, on loopback): memory per request bounded by the body limit, the span caps, the
admission budget and the tokenizer pool; what is past them is a 413 or 429 in JSON while
``/health`` stays 200."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_support import ServerProcess

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
    """Limits scaled down (48 KiB bodies, a 384 KiB admission budget) to keep this fast on
    a busy 2-core machine; the slow test below runs the defaults."""
    growth, statuses, health = run_maximal_load(
        minilm_dir,
        tmp_path,
        max_bytes=48 * 1024,
        max_admitted=384 * 1024,
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
