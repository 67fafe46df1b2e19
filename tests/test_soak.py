"""The soak and chaos run (`python -m benchmarks --only soak`), short: a real server process
on 127.0.0.1 under normal and hostile traffic for a few seconds answers no 5xx, keeps
/health up, serves rows equal to in-process `encode`, and exits cleanly on SIGTERM."""

from __future__ import annotations

from pathlib import Path

import pytest
from paths import REPO_ROOT


@pytest.fixture(autouse=True)
def _importable_benchmarks(monkeypatch: pytest.MonkeyPatch) -> None:
    # `benchmarks/` sits at the repository root and is not an installed package.
    monkeypatch.syspath_prepend(str(REPO_ROOT))


def test_short_soak_holds(tiny_jina_dir: Path) -> None:
    from benchmarks.soak import SoakConfig, render, run_soak

    config = SoakConfig(
        str(tiny_jina_dir),
        seconds=4.0,
        normal_clients=3,
        hostile_clients=3,
        max_request_bytes=256 * 1024,
        spans=2000,
    )
    report = run_soak(config, log=lambda message: None)
    table = render(report)
    assert report.server_errors == 0, table
    assert set(report.normal_statuses) == {"200"}, table
    assert report.rows_checked >= 20 and report.worst_cosine >= 0.99999, table
    assert report.health_checks >= 4 and report.health_failures == 0, table
    hostile = sum(sum(counts.values()) for counts in report.hostile_statuses.values())
    assert hostile >= 6 and len(report.hostile_statuses) >= 6, table
    for name, counts in report.hostile_statuses.items():
        assert not any(outcome.startswith("5") for outcome in counts), (name, table)
    assert set(report.burst_statuses) <= {"200", "503"}, table
    assert report.clean_exit, (table, report.log_tail)
    assert len(report.rss) >= 4 and all(value > 0 for _, value in report.rss)
    for line in ("requests", "5xx before SIGTERM", "normal p50 / p99", "RSS start / peak / end"):
        assert line in table


def test_soak_runs_only_when_named() -> None:
    from benchmarks.__main__ import _parse
    from benchmarks.cases import BENCHMARKS, OPT_IN

    assert "soak" in OPT_IN and "soak" not in BENCHMARKS  # `python -m benchmarks` skips it
    assert _parse(["--only", "soak"]).only == ["soak"]
