"""Cold CLI commands, each in a fresh process as a user runs them, as ratios to
``python -c "import torch"`` measured in the same run.

- ``search`` on a small store (the README's sample corpus, MiniLM; and the same corpus
  embedded by a tiny checkpoint in the jina-embeddings-v3 format, which runs this
  project's own model code instead of transformers'), and
- an unchanged re-ingest of that corpus (MiniLM),

now and "before": the same commands in a process that first does what the CLI did before
the cold-command changes (import ``torch.nn.attention.varlen``, which loads
``torch._dynamo``, as importing the jina-v3 model code did; and, for the re-ingest, load the
model, as every ingest did before it looked the documents up). So the two are measured on
the same machine, in the same minute. The ratio column is now / before.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.context import Context
from benchmarks.report import CaseResult, Figure, Target

NAME = "cli"
REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "examples" / "data"
QUERY = "What are the four freedoms?"
# What the CLI paid before the cold-command changes, replayed in the same process.
BEFORE_IMPORT = "import torch.nn.attention.varlen\n"
BEFORE_LOAD = "from embedder_core import get_embedder\nget_embedder(None)\n"


def _main_call(args: list[str]) -> str:
    return f"from jina_connectors.cli import main\nraise SystemExit(main({args!r}))\n"


def run(ctx: Context) -> CaseResult:
    from embedder_core.testing import minilm_path, write_tiny_jina_checkpoint

    tiny = write_tiny_jina_checkpoint(ctx.cache_dir / "cli-tiny-jina-v3")
    search = _main_call(["search", QUERY, "-k", "3"])
    search_v3 = _main_call(["search", QUERY, "-k", "3", "-c", "v3"])
    reingest = _main_call(["ingest", str(DATA), "--no-progress"])
    commands = {
        "import torch": "import torch\n",
        "search": search,
        "search before": BEFORE_IMPORT + search,
        "search v3": search_v3,
        "search v3 before": BEFORE_IMPORT + search_v3,
        "re-ingest": reingest,
        "re-ingest before": BEFORE_IMPORT + BEFORE_LOAD + reingest,
    }
    timings: dict[str, list[float]] = {name: [] for name in commands}
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "JINA_CONNECTORS_HOME": home,
            "JINA_CONNECTORS_MODEL": str(minilm_path()),
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        }
        _python(_main_call(["ingest", str(DATA), "--no-progress"]), env, home)
        v3 = ["ingest", str(DATA), "-c", "v3", "--model", str(tiny), "--no-progress"]
        _python(_main_call(v3), env, home)
        # Alternated, so that machine noise hits every command alike; each one's best kept.
        for _ in range(2 * ctx.sizes.repeats - 1):  # quick: 1 round, full: 3
            for name, code in commands.items():
                timings[name].append(_python(code, env, home))
    best = {name: min(seconds) for name, seconds in timings.items()}
    torch_s = best["import torch"]
    return CaseResult(
        figures=[
            Figure(
                NAME,
                "search, small store (x import torch; vs before)",
                best["search"] / torch_s,
                best["search before"] / torch_s,
                Target("<=", 1.0),
                "ratio",
            ),
            Figure(
                NAME,
                "search, jina-v3 format (x import torch; vs before)",
                best["search v3"] / torch_s,
                best["search v3 before"] / torch_s,
                Target("<=", 1.0),
                "ratio",
            ),
            Figure(
                NAME,
                "unchanged re-ingest (x import torch; vs before)",
                best["re-ingest"] / torch_s,
                best["re-ingest before"] / torch_s,
                Target("<=", 0.5),
                "ratio",
            ),
        ],
        details={"seconds": timings, "best_seconds": best, "corpus": str(DATA)},
    )


def _python(code: str, env: dict[str, str], cwd: str) -> float:
    """Wall seconds of ``python -c code`` in a fresh process (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=cwd, check=True, capture_output=True, timeout=600
    )
    return time.perf_counter() - started
