"""Soak and chaos: `jina-connectors serve` under mixed normal and hostile traffic.

A real server process on 127.0.0.1 (the command users run, with an API key and a small
body limit) gets, for a bounded time:

- normal clients: requests of 1 to 8 texts (random task, float or base64 answers), each
  answer kept, and checked at the end against in-process `encode` of the same texts
  (cosine);
- hostile clients: bodies over the limit (declared, and streamed without a length),
  malformed JSON, wrong types, too many inputs, strings far past the token limit (cut,
  and refused), many spans over a short document, lone surrogates, wrong keys and no key,
  unknown routes, methods and models, clients that send their body a byte at a time, and
  clients that send a request and hang up;
- a `/health` prober, and the server's RSS sampled from `/proc` throughout.

Then a last burst of normal requests is in flight when the server gets SIGTERM: it must
exit by itself (code 0, or the signal's own status, which uvicorn re-raises once it has
shut down) with no traceback in its log. The report counts every status (no 5xx before
SIGTERM), the normal requests' p50/p99, RSS at start, peak and end, rows checked and the worst
cosine; at SIGTERM, each request in flight gets its rows or the documented JSON 503.
Hostile clients go round the attacks (each from its own starting point), so a short
run still sends each kind.

`python -m benchmarks --only soak` runs it on all-MiniLM-L6-v2 for `$JINA_SOAK_SECONDS`
(default 60); `tests/test_soak.py` runs the same code for a few seconds on a tiny model.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.report import CaseResult, Figure, Target

NAME = "soak"
REPO_ROOT = Path(__file__).resolve().parents[1]
API_KEY = "soak-key"
START_TIMEOUT = 300.0
_WORD_TEXT = (
    "harbour wall budget committee engineers winter damage fishermen landing stage northern "
    "school board science teachers chemists evening classes river bridge council market "
    "railway station library museum garden hospital nurses doctors farmers harvest weather "
    "storm coast lighthouse village town city county parliament minister election vote "
    "price bread wheat coal steel factory workers union wages hours holiday children parents"
)
WORDS = tuple(_WORD_TEXT.split())


@dataclass(frozen=True)
class SoakConfig:
    model: str  # a model directory (what `serve --model` takes)
    seconds: float
    normal_clients: int = 6
    hostile_clients: int = 3
    max_request_bytes: int = 1 << 20  # small, so that oversized bodies are cheap to send
    spans: int = 10_000  # spans per many-spans request
    final_burst: int = 4  # normal requests in flight at SIGTERM
    device: str = "cpu"
    seed: int = 0


@dataclass
class SoakReport:
    config: SoakConfig
    normal_statuses: Counter[str] = field(default_factory=Counter)
    hostile_statuses: dict[str, Counter[str]] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bytes)
    health_failures: int = 0
    health_checks: int = 0
    rows_checked: int = 0
    worst_cosine: float = float("nan")
    burst_statuses: Counter[str] = field(default_factory=Counter)
    exit_code: int | None = None
    shutdown_seconds: float = float("nan")
    log_has_traceback: bool = False
    log_tail: str = ""

    @property
    def statuses(self) -> Counter[str]:
        """Every outcome of every request, normal, hostile and final."""
        total = Counter(self.normal_statuses) + self.burst_statuses
        for counter in self.hostile_statuses.values():
            total += counter
        return total

    @property
    def server_errors(self) -> int:
        """5xx answers before SIGTERM (after it, a JSON 503 is the documented answer)."""
        before = self.statuses - self.burst_statuses
        return sum(n for status, n in before.items() if status.startswith("5"))

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def clean_exit(self) -> bool:
        """Exited by itself after SIGTERM, without a traceback: code 0, or the signal's
        own status (uvicorn re-raises the signal once it has shut down)."""
        return self.exit_code in (0, -signal.SIGTERM) and not self.log_has_traceback


# --------------------------------------------------------------------------- driver
def run_soak(config: SoakConfig, log: Callable[[str], None] = print) -> SoakReport:
    """Start the server, run the traffic, SIGTERM it, check the rows; the report."""
    report = SoakReport(config)
    answers: list[tuple[list[str], str | None, np.ndarray]] = []
    with tempfile.TemporaryFile() as server_log:
        process, url = _start_server(config, server_log)
        try:
            log(f"soak: server pid {process.pid} at {url}; {config.seconds:g} s of traffic")
            asyncio.run(_traffic(config, url, process.pid, report, answers))
            started = time.monotonic()
            try:
                report.exit_code = process.wait(120)
            except subprocess.TimeoutExpired:
                report.exit_code = None
            report.shutdown_seconds = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        server_log.seek(0)
        text = server_log.read().decode(errors="replace")
        report.log_has_traceback = "Traceback" in text
        report.log_tail = text[-3000:]
    log(f"soak: server exited with {report.exit_code}; checking {len(answers)} answers")
    _check_rows(config, answers, report)
    return report


def _start_server(config: SoakConfig, server_log: Any) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    command = [sys.executable, "-m", "jina_connectors.cli", "serve", "--model", config.model]
    command += ["--port", str(port), "--device", config.device, "--api-key", API_KEY]
    command += ["--max-request-bytes", str(config.max_request_bytes), "--log-level", "warning"]
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=server_log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            server_log.seek(0)
            tail = server_log.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"the server exited with {process.returncode}: {tail}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError("the server did not become healthy in time")
        time.sleep(0.2)


async def _traffic(
    config: SoakConfig,
    url: str,
    pid: int,
    report: SoakReport,
    answers: list[tuple[list[str], str | None, np.ndarray]],
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as client:
        info = (await client.get("/v1/x/model")).json()
    tasks: list[str | None] = [None, *info["tasks"]]
    deadline = time.monotonic() + config.seconds
    stop = asyncio.Event()
    rng = random.Random(config.seed)

    async def normal(seed: int) -> None:
        local = random.Random(seed)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
            while time.monotonic() < deadline:
                await _normal_request(client, local, tasks, report, answers, report.latencies)

    async def hostile(seed: int) -> None:
        local = random.Random(seed)
        attacks = _attacks(config, url, info)
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
            turn = local.randrange(len(attacks))
            while time.monotonic() < deadline:
                name, attack = attacks[turn % len(attacks)]
                turn += 1
                try:
                    outcome = await attack(client, local)
                except httpx.TimeoutException:
                    outcome = "client timeout"
                except (httpx.TransportError, OSError) as error:
                    outcome = f"connection {type(error).__name__}"
                report.hostile_statuses.setdefault(name, Counter())[outcome] += 1
                await asyncio.sleep(local.uniform(0.0, 0.05))

    async def health() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            while not stop.is_set():
                report.health_checks += 1
                try:
                    ok = (await client.get("/health")).status_code == 200
                except httpx.HTTPError:
                    ok = False
                report.health_failures += not ok
                await asyncio.sleep(0.5)

    async def rss() -> None:
        started = time.monotonic()
        while not stop.is_set():
            value = _rss_bytes(pid)
            if value is not None:
                report.rss.append((time.monotonic() - started, value))
            await asyncio.sleep(0.25)

    watchers = [asyncio.create_task(health()), asyncio.create_task(rss())]
    clients = [normal(rng.randrange(1 << 30)) for _ in range(config.normal_clients)]
    clients += [hostile(rng.randrange(1 << 30)) for _ in range(config.hostile_clients)]
    await asyncio.gather(*clients)
    stop.set()
    await asyncio.gather(*watchers)
    value = _rss_bytes(pid)
    if value is not None:
        report.rss.append((config.seconds, value))
    await _final_burst(config, url, headers, tasks, pid, report, answers, rng)


async def _final_burst(
    config: SoakConfig,
    url: str,
    headers: dict[str, str],
    tasks: list[str | None],
    pid: int,
    report: SoakReport,
    answers: list[tuple[list[str], str | None, np.ndarray]],
    rng: random.Random,
) -> None:
    """A few normal requests in flight, then SIGTERM: each gets its rows or a JSON 503."""
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        requests = [
            asyncio.create_task(
                _normal_request(client, random.Random(rng.random()), tasks, report, answers)
            )
            for _ in range(config.final_burst)
        ]
        await asyncio.sleep(0.05)
        os.kill(pid, signal.SIGTERM)
        for outcome in await asyncio.gather(*requests, return_exceptions=True):
            label = outcome if isinstance(outcome, str) else f"connection {type(outcome).__name__}"
            report.burst_statuses[label] += 1


async def _normal_request(
    client: httpx.AsyncClient,
    rng: random.Random,
    tasks: Sequence[str | None],
    report: SoakReport,
    answers: list[tuple[list[str], str | None, np.ndarray]],
    latencies: list[float] | None = None,
) -> str:
    """One ordinary request; its answer kept for the check. Returns its status."""
    texts = [_sentence(rng) for _ in range(rng.randint(1, 8))]
    task = rng.choice(tasks)
    encoding = rng.choice(("float", "base64"))
    body: dict[str, Any] = {"input": texts, "encoding_format": encoding, "truncate": True}
    if task is not None:
        body["task"] = task
    started = time.perf_counter()
    response = await client.post("/v1/embeddings", json=body)
    status = str(response.status_code)
    if latencies is not None:
        report.normal_statuses[status] += 1
        if response.status_code == 200:
            latencies.append(time.perf_counter() - started)
    if response.status_code == 200:
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        rows = [
            np.frombuffer(base64.b64decode(item["embedding"]), "<f4")
            if encoding == "base64"
            else np.asarray(item["embedding"], np.float32)
            for item in data
        ]
        answers.append((texts, task, np.stack(rows)))
    return status


def _sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 16))) + "."


def _rss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


# -------------------------------------------------------------------------- attacks
Attack = Callable[[httpx.AsyncClient, random.Random], Awaitable[str]]


def _attacks(config: SoakConfig, url: str, info: dict[str, Any]) -> list[tuple[str, Attack]]:
    limit = config.max_request_bytes
    max_inputs = int(info.get("max_inputs", 2048))
    host, port = url.removeprefix("http://").split(":")

    async def status(response: httpx.Response) -> str:
        return str(response.status_code)

    async def oversized_declared(client: httpx.AsyncClient, rng: random.Random) -> str:
        body = b'{"input": ["' + b"x" * (limit + 10) + b'"]}'
        return await status(await client.post("/v1/embeddings", content=body, headers=_JSON))

    async def oversized_streamed(client: httpx.AsyncClient, rng: random.Random) -> str:
        async def chunks() -> Any:  # no Content-Length: counted while streaming
            yield b'{"input": ["'
            for _ in range(limit // 65536 + 2):
                yield b"y" * 65536
            yield b'"]}'

        return await status(await client.post("/v1/embeddings", content=chunks(), headers=_JSON))

    async def bad_json(client: httpx.AsyncClient, rng: random.Random) -> str:
        body = rng.choice([b'{"input": [', b"\xff\xfe", b"[]", b'{"input": "x", "input": 3'])
        return await status(await client.post("/v1/embeddings", content=body, headers=_JSON))

    async def wrong_types(client: httpx.AsyncClient, rng: random.Random) -> str:
        body = rng.choice(
            [{"input": [1, 2]}, {"input": [{"x": 1}]}, {"input": "x", "dimensions": "8"}]
        )
        return await status(await client.post("/v1/embeddings", json=body))

    async def too_many_inputs(client: httpx.AsyncClient, rng: random.Random) -> str:
        body = {"input": ["a"] * (max_inputs + 1)}
        return await status(await client.post("/v1/embeddings", json=body))

    async def huge_string(client: httpx.AsyncClient, rng: random.Random) -> str:
        text = "word " * (limit // 6)  # just under the body limit
        body = {"input": [text], "truncate": rng.random() < 0.5}
        return await status(await client.post("/v1/embeddings", json=body))

    async def many_spans(client: httpx.AsyncClient, rng: random.Random) -> str:
        document = {"text": "hello world", "spans": [[0, 5]] * config.spans}
        body = {"documents": [document], "embedding_type": "base64"}
        return await status(await client.post("/v1/x/embed-spans", json=body))

    async def lone_surrogate(client: httpx.AsyncClient, rng: random.Random) -> str:
        body = b'{"input": ["fine", "bro\\ud800ken"]}'
        return await status(await client.post("/v1/embeddings", content=body, headers=_JSON))

    async def bad_auth(client: httpx.AsyncClient, rng: random.Random) -> str:
        headers = rng.choice([{"Authorization": "Bearer wrong"}, {"Authorization": ""}])
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as anonymous:
            return await status(await anonymous.post("/v1/embeddings", json={"input": "x"}))

    async def wrong_route(client: httpx.AsyncClient, rng: random.Random) -> str:
        choice = rng.randrange(3)
        if choice == 0:
            return await status(await client.get("/v1/embeddings"))
        if choice == 1:
            return await status(await client.post("/v1/nothing", json={}))
        body = {"input": "x", "model": "text-embedding-3-small"}
        return await status(await client.post("/v1/embeddings", json=body))

    async def slow_client(client: httpx.AsyncClient, rng: random.Random) -> str:
        """A body sent a few bytes at a time for about two seconds, then abandoned."""
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            writer.write(
                b"POST /v1/embeddings HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
                b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
                b"Content-Type: application/json\r\nContent-Length: 4096\r\n\r\n"
            )
            for _ in range(20):
                writer.write(b'{"in')
                await writer.drain()
                await asyncio.sleep(0.1)
                if reader.at_eof():
                    break
            try:
                line = await asyncio.wait_for(reader.readline(), 0.05)
            except asyncio.TimeoutError:
                return "abandoned"
            return line.split()[1].decode() if line.startswith(b"HTTP/") else "closed"
        finally:
            writer.close()

    async def disconnect(client: httpx.AsyncClient, rng: random.Random) -> str:
        """A valid request of many texts, then the connection closed before the answer."""
        texts = [_sentence(rng) for _ in range(64)]
        body = json.dumps({"input": texts}).encode()
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST /v1/embeddings HTTP/1.1\r\nHost: " + host.encode() + b"\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
            b"Content-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        await writer.drain()
        await asyncio.sleep(rng.uniform(0.0, 0.05))
        writer.close()
        return "hung up"

    return [
        ("oversized body", oversized_declared),
        ("oversized stream", oversized_streamed),
        ("bad json", bad_json),
        ("wrong types", wrong_types),
        ("too many inputs", too_many_inputs),
        ("huge string", huge_string),
        ("many spans", many_spans),
        ("lone surrogate", lone_surrogate),
        ("bad auth", bad_auth),
        ("wrong route/model", wrong_route),
        ("slow client", slow_client),
        ("disconnect", disconnect),
    ]


_JSON = {"Content-Type": "application/json"}


# --------------------------------------------------------------------------- checks
def _check_rows(
    config: SoakConfig,
    answers: Sequence[tuple[list[str], str | None, np.ndarray]],
    report: SoakReport,
) -> None:
    """Every answered row against in-process ``encode`` of its text (same task)."""
    from embedder_core import Embedder

    embedder = Embedder.from_pretrained(config.model, device=config.device)
    by_task: dict[str | None, dict[str, np.ndarray]] = {}
    for texts, task, _ in answers:
        by_task.setdefault(task, {}).update(dict.fromkeys(texts))  # type: ignore[arg-type]
    for task, table in by_task.items():
        unique = list(table)
        for text, row in zip(unique, embedder.encode(unique, task=task)):
            table[text] = row
    worst = 1.0
    for texts, task, rows in answers:
        expected = np.stack([by_task[task][text] for text in texts]).astype(np.float64)
        got = rows.astype(np.float64)
        cos = (
            (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
        )
        worst = min(worst, float(cos.min()))
        report.rows_checked += len(texts)
    report.worst_cosine = worst if answers else float("nan")


# --------------------------------------------------------------------------- report
def render(report: SoakReport) -> str:
    """The soak's table."""
    mib = 1024 * 1024
    rss = [value for _, value in report.rss]
    seconds = np.asarray(report.latencies) * 1000 if report.latencies else np.asarray([np.nan])
    hostile = sum(sum(c.values()) for c in report.hostile_statuses.values())
    statuses = report.statuses
    rows = [
        ("duration", f"{report.config.seconds:g} s"),
        (
            "clients",
            f"{report.config.normal_clients} normal, {report.config.hostile_clients} hostile",
        ),
        (
            "requests",
            f"{report.requests} ({sum(report.normal_statuses.values())} normal, "
            f"{hostile} hostile, {sum(report.burst_statuses.values())} at SIGTERM)",
        ),
        ("outcomes by status", _counts(statuses)),
        ("5xx before SIGTERM", str(report.server_errors)),
        ("normal requests by status", _counts(report.normal_statuses)),
        (
            "normal p50 / p99",
            f"{np.percentile(seconds, 50):.1f} / {np.percentile(seconds, 99):.1f} ms",
        ),
        (
            "server RSS start / peak / end",
            f"{rss[0] / mib:.0f} / {max(rss) / mib:.0f} / {rss[-1] / mib:.0f} MiB"
            if rss
            else "n/a",
        ),
        ("/health failures", f"{report.health_failures} of {report.health_checks}"),
        ("rows checked", str(report.rows_checked)),
        ("worst cosine to in-process encode", f"{report.worst_cosine:.7f}"),
        ("at SIGTERM", _counts(report.burst_statuses)),
        (
            "exit",
            f"{'clean' if report.clean_exit else 'NOT CLEAN'}: code {report.exit_code} after "
            f"{report.shutdown_seconds:.1f} s; traceback in log: "
            f"{'YES' if report.log_has_traceback else 'no'}",
        ),
    ]
    rows += [
        (f"  hostile: {name}", _counts(c)) for name, c in sorted(report.hostile_statuses.items())
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name.ljust(width)}  {value}" for name, value in rows)


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{key} x{count}" for key, count in sorted(counter.items())) or "none"


def run(ctx: Any) -> CaseResult:
    """`python -m benchmarks --only soak`: MiniLM, `$JINA_SOAK_SECONDS` (default 60)."""
    from embedder_core.testing import minilm_path

    seconds = float(os.environ.get("JINA_SOAK_SECONDS", "60"))
    config = SoakConfig(str(minilm_path()), seconds, device=str(ctx.device))
    report = run_soak(config, ctx.log)
    table = render(report)
    print(table, flush=True)
    rss = [value / (1024 * 1024) for _, value in report.rss] or [float("nan")]
    latencies = np.asarray(report.latencies or [float("nan")]) * 1000
    figures = [
        Figure(NAME, "requests", report.requests),
        Figure(NAME, "5xx answers before SIGTERM", report.server_errors, None, Target("<=", 0)),
        Figure(NAME, "normal p50 ms", float(np.percentile(latencies, 50))),
        Figure(NAME, "normal p99 ms", float(np.percentile(latencies, 99))),
        Figure(NAME, "server RSS peak MiB (vs start)", max(rss), rss[0]),
        Figure(NAME, "server RSS end MiB (vs start)", rss[-1], rss[0]),
        Figure(NAME, "rows checked", report.rows_checked),
        Figure(
            NAME,
            "worst cosine to in-process encode",
            report.worst_cosine,
            None,
            Target(">=", 0.99999),
        ),
        Figure(
            NAME,
            "clean exit after SIGTERM (1: yes)",
            float(report.clean_exit),
            None,
            Target(">=", 1),
        ),
    ]
    details = {
        "table": table,
        "statuses": dict(report.statuses),
        "normal_statuses": dict(report.normal_statuses),
        "hostile_statuses": {k: dict(v) for k, v in report.hostile_statuses.items()},
        "burst_statuses": dict(report.burst_statuses),
        "rss_samples": report.rss,
        "health_failures": report.health_failures,
        "exit_code": report.exit_code,
        "log_has_traceback": report.log_has_traceback,
        "log_tail": report.log_tail[-1000:],
    }
    return CaseResult(figures=figures, details=details)


if __name__ == "__main__":  # a quick look without the suite: python -m benchmarks.soak DIR S
    model, duration = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    print(render(run_soak(SoakConfig(model, duration), lambda m: print(m, file=sys.stderr))))
