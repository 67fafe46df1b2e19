"""Running a server app for real in tests: uvicorn on 127.0.0.1, a free port, a thread."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from paths import REPO_ROOT


@contextlib.contextmanager
def serve_app(app: Any, *, timeout: float = 30.0, **options: Any) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a background thread; yields its base URL.

    A real server: real sockets, uvicorn's HTTP protocol, the app's lifespan. On exit the
    server shuts down gracefully (accepted requests finish) and the thread is joined.
    ``options``: more ``uvicorn.Config`` arguments (``http=``, timeouts, limits).
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        access_log=False,
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the test server failed to start")
        if time.monotonic() > deadline:
            raise TimeoutError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)


def free_port() -> int:
    """A TCP port nothing listens on now (for a server started in another process)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServerProcess:
    """``jina-connectors serve`` in a child process on a free loopback port; its stderr goes
    to a file (a pipe could fill and block the server)."""

    def __init__(self, args: list[str], log_file: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_file = log_file
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        command = [sys.executable, "-m", "jina_connectors.cli", "serve", *args]
        command += ["--port", str(self.port)]
        self._log = log_file.open("w")
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": path, **(env or {})},
            stderr=self._log,
            stdout=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError("the server exited:\n" + self.log())
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not become ready:\n" + self.log())
            time.sleep(0.05)

    def status(self) -> dict[str, int]:
        """The child's /proc status figures, in bytes: VmRSS (now) and VmHWM (peak)."""
        figures = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                figures[name] = int(value.split()[0]) * 1024
        return figures

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_file.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._log.close()
