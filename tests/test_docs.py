"""Every ```python block of README.md and of the documentation site's pages (docs/**/*.md)
runs as written, with the small model of the README's first command (all-MiniLM-L6-v2
through ``$JINA_CONNECTORS_MODEL``), offline.

A block that needs a running service says so in the comment line before it:
``<!-- snippet: server -->`` (an embedding server of that model; the block's
``http://127.0.0.1:8080``, ``jina-connectors serve``'s default address, is where it listens)
or ``<!-- snippet: ray -->`` (a local Ray in the process, which the block's ``connect()``
joins). Blocks that cannot run here (GPU-only, a cluster) are written as ``text``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO_ROOT

ROOT = REPO_ROOT
BLOCK = re.compile(
    r"(?:^<!-- snippet: (?P<needs>[\w-]+) -->\n)?^```python\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
NEEDS = ("server", "ray")
# Fences the runner would not see: tildes, other names of Python, directives.
OTHER_PYTHON_FENCE = r"^(?:~~~.*|```\s*\{?(?:py|python3|ipython|pycon|code-block)\b.*)$"
SERVED_AT = "http://127.0.0.1:8080"
# One process for every page (one model load, and the suite's time: a process per page cost
# about 15 s of CPU each), each block in a fresh namespace. A service starts when a block
# first needs it; Ray stops after the last block that needs it.
RUNNER = """
import json, logging, sys, traceback

blocks = json.loads(sys.argv[1])
last_ray_block = max((n for n, block in enumerate(blocks) if block[2] == "ray"), default=-1)


def serve():
    import socket, threading, time

    import uvicorn

    from embedder_core import get_embedder
    from jina_connectors.server import create_app

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(get_embedder()), log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return "http://127.0.0.1:%d" % listener.getsockname()[1]


def ray_started():
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


url = None
for number, (page, line, needs, code) in enumerate(blocks):
    try:
        if needs == "server":
            url = url or serve()
            code = code.replace(SERVED_AT, url)
        elif needs == "ray" and not ray_started():
            import ray

            ray.init(address="local", num_cpus=2, include_dashboard=False,
                     logging_level=logging.WARNING)
        exec(compile(code, f"{page}:{line}", "exec"), {"__name__": "__main__"})
        if number == last_ray_block and ray_started():
            sys.modules["ray"].shutdown()
    except BaseException:
        print(f"{page}:{line} failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
    print(f"{page}:{line} ok", flush=True)
""".replace("SERVED_AT", repr(SERVED_AT))


def pages() -> list[Path]:
    """README.md and every page of the site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def name(page: Path) -> str:
    """The page's path in the repository, as error messages name it."""
    return page.relative_to(ROOT).as_posix()


def python_blocks(page: Path) -> list[tuple[int, str, str]]:
    """(line of the code, service needed or "", code) of each ```python block."""
    text = page.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start("code")) + 1, m.group("needs") or "", m.group("code"))
        for m in BLOCK.finditer(text)
    ]


PAGES_WITH_BLOCKS = [name(page) for page in pages() if python_blocks(page)]


def test_the_readme_opens_with_two_one_line_bash_commands() -> None:
    """What .ci/run executes: the first two ```bash blocks, one line each."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    bash = re.findall(r"^```bash\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert len(bash) >= 2 and all(block.count("\n") == 1 for block in bash[:2])
    assert "jina-connectors ingest examples/data" in bash[0] and "pytest" in bash[1]


def test_every_python_block_is_found_and_every_need_is_known() -> None:
    """No Python escapes the runner: no other spelling of a Python fence, and every snippet
    comment sits right before a ```python block and names a service the runner starts."""
    for page in pages():
        text = page.read_text(encoding="utf-8")
        other = re.findall(OTHER_PYTHON_FENCE, text, re.MULTILINE)
        assert other == [], f"{name(page)}: {other}"
        comments = re.findall(r"^<!-- snippet: (.*?) -->\n(.*)$", text, re.MULTILINE)
        for needs, next_line in comments:
            assert needs in NEEDS and next_line == "```python", (name(page), needs, next_line)
    assert "README.md" in PAGES_WITH_BLOCKS and len(PAGES_WITH_BLOCKS) >= 3


def test_every_python_block_runs_as_written(minilm_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("qdrant_client")
    pytest.importorskip("llama_index.core")
    blocks = [
        (name(page), line, needs, code)
        for page in pages()
        for line, needs, code in python_blocks(page)
    ]
    # A working directory of its own with the sample data, so nothing lands in the checkout.
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "data").symlink_to(ROOT / "examples" / "data")
    env = {
        **os.environ,
        "JINA_CONNECTORS_MODEL": str(minilm_dir),
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(blocks)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ran = [line for line in result.stdout.splitlines() if line.endswith(" ok")]
    assert ran == [f"{page}:{line} ok" for page, line, _, _ in blocks]  # blocks run == found
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples"]
