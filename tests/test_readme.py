"""Every ```python block of README.md runs as written, with the small model of the README's
first command (all-MiniLM-L6-v2 through ``$JINA_CONNECTORS_MODEL``), offline."""

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
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# Each block in a fresh namespace, in one process (one model load for all of them).
RUNNER = """
import json, sys, traceback
for number, (line, code) in enumerate(json.loads(sys.argv[1]), start=1):
    try:
        exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__main__"})
    except BaseException:
        print(f"README block {number} (line {line}) failed:", file=sys.stderr)
        traceback.print_exc()
        sys.exit(1)
    print(f"block {number} ok", flush=True)
"""


def readme_blocks() -> list[tuple[int, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_readme_opens_with_two_one_line_bash_commands() -> None:
    """What .ci/run executes: the first two ```bash blocks, one line each."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    bash = re.findall(r"^```bash\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert len(bash) >= 2 and all(block.count("\n") == 1 for block in bash[:2])
    assert "jina-connectors ingest examples/data" in bash[0] and "pytest" in bash[1]


def test_every_python_block_runs_as_written(minilm_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("qdrant_client")
    pytest.importorskip("llama_index.core")
    blocks = readme_blocks()
    assert len(blocks) >= 4
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
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert [line for line in result.stdout.splitlines() if line.startswith("block ")] == [
        f"block {n} ok" for n in range(1, len(blocks) + 1)
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples"]
