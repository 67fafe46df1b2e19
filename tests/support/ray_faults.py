"""Fault injection for the Ray tests: a worker setup hook that makes one Ray actor die.

The Ray test module starts Ray with ``worker_process_setup_hook="ray_faults.install"`` and
``$JINA_CONNECTORS_TEST_FAULTS`` naming a folder. Every worker process then wraps
``jina_connectors.ingestion.stages.embed_records``; while the folder holds a file ``exit-at``
containing ``N``, the process that makes its N-th call to it claims the file (renames it
to ``exit-at.fired``, so exactly one process fires, once) and exits at once with
``os._exit``: an actor dying mid-run, as a crash or a lost node kills one. Without the file
the wrapper only counts. The library under test is unchanged.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

FAULTS_ENV = "JINA_CONNECTORS_TEST_FAULTS"
TRIGGER = "exit-at"
FIRED = "exit-at.fired"


def install() -> None:
    folder = os.environ.get(FAULTS_ENV)
    if not folder:
        return
    from jina_connectors.ingestion import stages

    original = stages.embed_records
    calls = 0

    def embed_records(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        trigger = Path(folder) / TRIGGER
        try:
            at = int(trigger.read_text())
        except (FileNotFoundError, ValueError):
            at = 0
        if at and calls >= at:
            try:
                trigger.rename(Path(folder) / FIRED)  # atomic: one process wins
            except FileNotFoundError:
                pass
            else:
                os._exit(1)
        return original(*args, **kwargs)

    stages.embed_records = embed_records
