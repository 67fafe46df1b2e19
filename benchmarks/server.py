"""The embedding server under load: `jina-connectors serve` vs in-process `encode`, and vs
infinity-emb serving the same model when it is installed.

all-MiniLM-L6-v2 (real weights and tokenizer) embeds speech paragraphs. In process, the
paragraphs go to `Embedder.encode` in one call. Served, the same paragraphs are split into
requests of `TEXTS_PER_REQUEST` and posted by 1, 8 and 64 concurrent clients (httpx, one
connection each, base64 float32 answers); throughput is tokens / wall time. Meanwhile a
prober sends a single short query at a time; its latency under each load and on an idle
server is compared with `encode` of that query in process.

Each server runs in its own process, as deployed; the clients run in this one, on the same
cores, so every served figure also pays for its clients. In-process `encode` runs in a fresh
process too. All three get `OMP_WAIT_POLICY=PASSIVE` (what `serve` sets by default). Both
servers run at once and their runs alternate (each load level `repeats` times, the fastest
kept; idle probes interleaved), so both see the same machine noise; in-process `encode` is
measured before and after them, the best kept. infinity-emb is found as the
`infinity_emb` executable on PATH or at `$INFINITY_EMB` (it pins its own dependencies:
install it in a separate virtualenv); without it its rows are skipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.context import SEED, Context
from benchmarks.measure import min_row_cosine
from benchmarks.report import CaseResult, Figure, Target
from benchmarks.workloads import speech_paragraphs

NAME = "server"
CLIENTS = (1, 8, 64)
TEXTS_PER_REQUEST = 4
QUERY = "What did the president say about the price of bread?"
SERVED_NAME = "minilm"
REPO_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT = 300.0


def run(ctx: Context) -> CaseResult:
    from embedder_core.testing import minilm_path

    model_dir = minilm_path()
    paragraphs = speech_paragraphs(ctx.speeches(), ctx.sizes.server_paragraphs, seed=SEED)
    probes = ctx.sizes.server_probes

    # In process: the same texts in one call, and the query alone, in a fresh process with
    # the servers' environment (one OpenMP wait policy for all three ways); once before and
    # once after the servers, best kept, since the machine's load drifts.
    ctx.log("in-process encode")
    device = str(ctx.device)
    measured = [_in_process(model_dir, device, paragraphs, probes, ctx.sizes.repeats)]
    tokens = measured[0]["tokens"]
    reference = measured[0]["rows"]

    # Both servers run at once and their runs alternate, so that both see the same noise.
    # Ours refuses over-long inputs unless asked to cut them, as the hosted APIs do;
    # infinity-emb and in-process encode cut them.
    servers: dict[str, tuple[Any, dict[str, Any]]] = {
        "ours": (_ours(model_dir, device), {"truncate": True})
    }
    infinity_executable = _infinity_executable()
    infinity_note = "infinity_emb not found (PATH or $INFINITY_EMB): skipped"
    if infinity_executable is not None and ctx.device.type in ("cpu", "cuda"):
        servers["infinity"] = (_infinity(infinity_executable, model_dir, ctx.device.type), {})
        infinity_note = f"measured ({infinity_executable})"
    with ExitStack() as stack:
        urls: dict[str, tuple[str, dict[str, Any]]] = {}
        for name, (server, extra) in servers.items():
            ctx.log(f"starting {name}")
            try:
                urls[name] = (stack.enter_context(server), extra)
            except (OSError, TimeoutError, httpx.HTTPError) as error:
                if name == "ours":
                    raise
                infinity_note = f"infinity_emb failed: {type(error).__name__}: {error}"
                ctx.log(infinity_note)
        results = _measure(urls, paragraphs, tokens, probes, ctx)
    ours, infinity = results["ours"], results.get("infinity")
    measured.append(_in_process(model_dir, device, paragraphs, probes, ctx.sizes.repeats))
    in_process_seconds = [seconds for run in measured for seconds in run["seconds"]]
    in_process_rate = tokens / min(in_process_seconds)
    in_process_query_ms = min(1000 * float(np.median(run["query_seconds"])) for run in measured)

    figures = []
    for clients in CLIENTS:
        figures.append(
            Figure(
                NAME,
                f"tokens/s, {clients} client{'s' if clients > 1 else ''} (vs in-process encode)",
                ours["loads"][clients]["tokens_per_s"],
                in_process_rate,
                Target(">=", 0.9) if clients == max(CLIENTS) else None,
                "ratio",
            )
        )
    figures.append(
        Figure(
            NAME,
            "idle query p50 ms (vs in-process; target in-process + 5 ms)",
            ours["idle"]["p50_ms"],
            in_process_query_ms,
            Target("<=", in_process_query_ms + 5.0),
        )
    )
    figures.append(Figure(NAME, "idle query p99 ms", ours["idle"]["p99_ms"]))
    busiest = ours["loads"][max(CLIENTS)]
    figures.append(Figure(NAME, f"query p50 ms under {max(CLIENTS)} clients", busiest["p50_ms"]))
    figures.append(Figure(NAME, f"query p99 ms under {max(CLIENTS)} clients", busiest["p99_ms"]))
    cosine = min(min_row_cosine(ours["loads"][c]["rows"], reference) for c in CLIENTS)
    figures.append(
        Figure(NAME, "min cosine to in-process encode", cosine, None, Target(">=", 0.99999))
    )
    if infinity is not None:
        for clients in CLIENTS:
            figures.append(
                Figure(
                    NAME,
                    f"tokens/s, {clients} client{'s' if clients > 1 else ''} (vs infinity-emb)",
                    ours["loads"][clients]["tokens_per_s"],
                    infinity["loads"][clients]["tokens_per_s"],
                    Target(">=", 1.0) if clients == max(CLIENTS) else None,
                    "ratio",
                )
            )
        figures.append(
            Figure(
                NAME,
                "idle query p50 ms (vs infinity-emb)",
                ours["idle"]["p50_ms"],
                infinity["idle"]["p50_ms"],
            )
        )
        figures.append(
            Figure(
                NAME,
                f"query p99 ms under {max(CLIENTS)} clients (vs infinity-emb)",
                busiest["p99_ms"],
                infinity["loads"][max(CLIENTS)]["p99_ms"],
            )
        )
    return CaseResult(
        figures=figures,
        details={
            "model": "all-MiniLM-L6-v2",
            "paragraphs": len(paragraphs),
            "texts_per_request": TEXTS_PER_REQUEST,
            "tokens": tokens,
            "in_process_seconds": in_process_seconds,
            "in_process_tokens_per_s": in_process_rate,
            "in_process_query_ms_p50": in_process_query_ms,
            "environment": {"OMP_WAIT_POLICY": _SERVER_ENV["OMP_WAIT_POLICY"]},
            "load_runs_per_level": ctx.sizes.repeats,
            "ours": _summary(ours),
            "infinity": _summary(infinity) if infinity is not None else None,
            "infinity_note": infinity_note,
        },
    )


# --------------------------------------------------------------------------- load
def _measure(
    servers: dict[str, tuple[str, dict[str, Any]]],
    paragraphs: Sequence[str],
    tokens: int,
    probes: int,
    ctx: Context,
) -> dict[str, dict[str, Any]]:
    """Per server (name -> (URL, fields added to every request body)): idle query latency,
    then each load level with a prober beside it; the servers' runs alternate."""
    requests = [
        list(paragraphs[i : i + TEXTS_PER_REQUEST])
        for i in range(0, len(paragraphs), TEXTS_PER_REQUEST)
    ]
    results: dict[str, dict[str, Any]] = {name: {"loads": {}} for name in servers}
    idle: dict[str, list[float]] = {name: [] for name in servers}
    for url, extra in servers.values():  # warm-up: connections, first batches
        asyncio.run(_idle(url, extra, 3))
        asyncio.run(_load(url, extra, requests[: max(CLIENTS)], max(CLIENTS)))
    for _ in range(probes):
        for name, (url, extra) in servers.items():
            idle[name] += asyncio.run(_idle(url, extra, 1))
    for name in servers:
        results[name]["idle"] = _percentiles(idle[name])
    for clients in CLIENTS:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
        for _ in range(ctx.sizes.repeats):
            for name, (url, extra) in servers.items():
                runs[name].append(asyncio.run(_load(url, extra, requests, clients)))
        for name in servers:
            load = min(runs[name], key=lambda run: run["seconds"])  # noise only slows runs
            load["tokens_per_s"] = tokens / load["seconds"]
            load["all_seconds"] = [run["seconds"] for run in runs[name]]
            results[name]["loads"][clients] = load
            ctx.log(
                f"  {name}, {clients} clients: {load['tokens_per_s']:.0f} tokens/s, query "
                f"p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms"
            )
    return results


def _body(texts: Sequence[str], extra: dict[str, Any]) -> dict[str, Any]:
    return {"model": SERVED_NAME, "input": list(texts), "encoding_format": "base64", **extra}


def _decode(answer: dict[str, Any]) -> np.ndarray:
    data = sorted(answer["data"], key=lambda item: item["index"])
    return np.stack([np.frombuffer(base64.b64decode(item["embedding"]), "<f4") for item in data])


async def _post(
    client: httpx.AsyncClient, texts: Sequence[str], extra: dict[str, Any]
) -> np.ndarray:
    response = await client.post("/v1/embeddings", json=_body(texts, extra))
    response.raise_for_status()
    return _decode(response.json())


def _percentiles(seconds: Sequence[float]) -> dict[str, float]:
    if not seconds:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "samples": 0}
    values = 1000 * np.asarray(seconds)
    return {
        "p50_ms": float(np.percentile(values, 50)),
        "p99_ms": float(np.percentile(values, 99)),
        "samples": len(values),
    }


async def _idle(url: str, extra: dict[str, Any], probes: int) -> list[float]:
    """Seconds of ``probes`` single queries, one at a time, after one to connect."""
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await _post(client, [QUERY], extra)
        seconds = []
        for _ in range(probes):
            started = time.perf_counter()
            await _post(client, [QUERY], extra)
            seconds.append(time.perf_counter() - started)
    return seconds


async def _load(
    url: str, extra: dict[str, Any], requests: Sequence[list[str]], clients: int
) -> dict[str, Any]:
    """Post every request with ``clients`` concurrent clients; a prober on its own
    connection sends the query, one at a time, until the load is done."""
    rows: list[np.ndarray | None] = [None] * len(requests)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(requests)):
        queue.put_nowait(index)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    done = asyncio.Event()
    probe_seconds: list[float] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            index = queue.get_nowait()
            rows[index] = await _post(client, requests[index], extra)

    async def prober() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as client:
            while not done.is_set():
                started = time.perf_counter()
                await _post(client, [QUERY], extra)
                if not done.is_set():
                    probe_seconds.append(time.perf_counter() - started)
                await asyncio.sleep(0.005)

    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        probe = asyncio.create_task(prober())
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(clients)))
        seconds = time.perf_counter() - started
        done.set()
        await probe
    return {
        "clients": clients,
        "seconds": seconds,
        "rows": np.concatenate([r for r in rows if r is not None]),
        **_percentiles(probe_seconds),
    }


def _summary(measured: dict[str, Any]) -> dict[str, Any]:
    return {
        "idle": measured["idle"],
        "loads": {
            str(clients): {k: v for k, v in load.items() if k != "rows"}
            for clients, load in measured["loads"].items()
        },
    }


# ----------------------------------------------------------------------- in process
# Every way runs with this environment: the wait policy `jina-connectors serve` sets by
# default, given to infinity-emb and to in-process encode too, so that OpenMP threads that
# spin between operations (which cost a server's event loop its cores) are not what is
# compared.
_SERVER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def _in_process(
    model_dir: Path, device: str, paragraphs: Sequence[str], probes: int, repeats: int
) -> dict[str, Any]:
    """``encode`` of all paragraphs in one call (best of ``repeats``) and of the query alone
    (``probes`` times), in a fresh process; also the rows and the token count."""
    with tempfile.TemporaryDirectory() as scratch:
        job = Path(scratch) / "job.json"
        rows = Path(scratch) / "rows.npy"
        job.write_text(
            json.dumps(
                {
                    "model": str(model_dir),
                    "device": device,
                    "paragraphs": list(paragraphs),
                    "probes": probes,
                    "repeats": repeats,
                    "rows": str(rows),
                }
            )
        )
        code = (
            "import sys; from benchmarks.server import in_process_job; in_process_job(sys.argv[1])"
        )
        env = {**os.environ, **_SERVER_ENV, "PYTHONPATH": _python_path()}
        run = subprocess.run(
            [sys.executable, "-c", code, str(job)],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if run.returncode != 0:
            raise RuntimeError(f"in-process measurement failed: {run.stderr[-2000:]}")
        result: dict[str, Any] = json.loads(job.read_text())["result"]
        result["rows"] = np.load(rows)
    return result


def in_process_job(path: str) -> None:
    """The in-process measurement (run by ``_in_process`` in a fresh process)."""
    from embedder_core import Embedder

    job_file = Path(path)
    job = json.loads(job_file.read_text())
    paragraphs, probes = job["paragraphs"], job["probes"]
    embedder = Embedder.from_pretrained(job["model"], device=job["device"])
    counts = embedder.count_tokens(paragraphs)
    embedder.encode(paragraphs[:32])  # warm-up
    np.save(job["rows"], embedder.encode(paragraphs))
    seconds = []
    for _ in range(job["repeats"]):
        started = time.perf_counter()
        embedder.encode(paragraphs)
        seconds.append(time.perf_counter() - started)
    query_seconds = []
    for _ in range(probes):
        started = time.perf_counter()
        embedder.encode(QUERY)
        query_seconds.append(time.perf_counter() - started)
    job["result"] = {
        "tokens": sum(min(count, embedder.max_tokens) for count in counts),
        "seconds": seconds,
        "query_seconds": query_seconds,
    }
    job_file.write_text(json.dumps(job))


def _python_path() -> str:
    return os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))


# ------------------------------------------------------------------------ servers
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def _process(command: list[str], port: int, env: dict[str, str], health: str) -> Iterator[str]:
    """Run a server process until it answers ``health``; yields its URL, then stops it."""
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-2000:]
                    raise OSError(f"{command[0]} exited with {process.returncode}: {tail}")
                try:
                    if httpx.get(url + health, timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{command[0]} did not become healthy in time")
                time.sleep(0.2)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _ours(model_dir: Path, device: str) -> Any:
    port = _free_port()
    command = [sys.executable, "-m", "jina_connectors.cli", "serve", "--model", str(model_dir)]
    command += ["--port", str(port), "--device", device, "--served-model-name", SERVED_NAME]
    command += ["--log-level", "warning"]
    env = {**os.environ, **_SERVER_ENV, "PYTHONPATH": _python_path()}
    return _process(command, port, env, "/health")


def _infinity_executable() -> str | None:
    candidate = os.environ.get("INFINITY_EMB") or shutil.which("infinity_emb")
    return candidate if candidate and os.access(candidate, os.X_OK) else None


def _infinity(executable: str, model_dir: Path, device: str) -> Any:
    port = _free_port()
    command = [executable, "v2", "--model-id", str(model_dir), "--served-model-name", SERVED_NAME]
    command += ["--port", str(port), "--host", "127.0.0.1", "--url-prefix", "/v1"]
    command += ["--engine", "torch", "--device", device, "--log-level", "warning"]
    # Its own environment: none of this process's Python settings.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(_SERVER_ENV, HF_HUB_OFFLINE="1")
    return _process(command, port, env, "/health")  # not under --url-prefix
