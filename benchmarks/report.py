"""Figures, targets, the printed table and results.json."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch


@dataclass(frozen=True)
class Target:
    """A bound on one figure, e.g. `>= 3` on a throughput ratio."""

    op: Literal[">=", "<="]
    bound: float

    def met(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


@dataclass(frozen=True)
class Figure:
    """One row of the table. `ratio` is ours / baseline whenever a baseline is given.

    The target applies to `ratio` when `target_on` is "ratio", else to `ours`.
    """

    benchmark: str
    metric: str
    ours: float
    baseline: float | None = None
    target: Target | None = None
    target_on: Literal["ours", "ratio"] = "ours"

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.ours / self.baseline

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        value = self.ratio if self.target_on == "ratio" else self.ours
        return None if value is None else self.target.met(value)

    def as_json(self) -> dict[str, Any]:
        row = asdict(self)
        row["target"] = None if self.target is None else str(self.target)
        row["ratio"] = self.ratio
        row["met"] = self.met
        return row


@dataclass
class CaseResult:
    """What one benchmark returns: its table rows and its raw measurements."""

    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 1:
        return f"{value:.3g}" if magnitude < 100 else f"{value:.0f}"
    if magnitude > 0.999:  # cosines: show how close to 1
        return f"{value:.6f}"
    return f"{value:.3g}"


def render_table(figures: Sequence[Figure]) -> str:
    header = ("benchmark", "metric", "ours", "baseline", "ratio", "target", "met?")
    rows = [header]
    for figure in figures:
        target = "" if figure.target is None else f"{figure.target_on} {figure.target}"
        met = {None: "", True: "yes", False: "NO"}[figure.met]
        ratio = "" if figure.ratio is None else f"{figure.ratio:.3g}x"
        rows.append(
            (
                figure.benchmark,
                figure.metric,
                _number(figure.ours),
                _number(figure.baseline),
                ratio,
                target,
                met,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            cell.ljust(width) if column < 2 or column >= 5 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def machine_info(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    info: dict[str, Any] = {
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "thread_env": {
            name: os.environ[name]
            for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
            if name in os.environ
        },
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "git_commit": _git_commit(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    return result.stdout.strip() or None


def write_results(
    path: Path,
    meta: dict[str, Any],
    figures: Sequence[Figure],
    details: dict[str, Any],
    errors: dict[str, str],
) -> None:
    document = {
        "meta": meta,
        "figures": [figure.as_json() for figure in figures],
        "details": details,
        "errors": errors,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
