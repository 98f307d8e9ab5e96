"""``autoscaler backtest --jobs``: the same report from worker processes, and Ctrl-C still
returns what finished."""

from __future__ import annotations

import multiprocessing
import os
import signal
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import autoscaler.cli as cli
from autoscaler.backtest.runner import backtest
from autoscaler.backtest.synthetic import synthetic_trace

TT_POLICY = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: tt}
spec:
  streamGroups: {ids: [sg-placeholder]}
  defaults: {maxCapacity: 10}
  policy:
    plugin: target-tracking
    params: {targetUtilization: 0.7, minIdle: 2}
"""
BASELINES = ("static-peak", "native-idle", "buffer")


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    synthetic = synthetic_trace(peak=500, days=0.125, step_s=600, seed=2)
    stamps = pd.to_datetime(synthetic.times, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path_factory.mktemp("trace") / "trace.csv"
    pd.DataFrame({"timestamp": stamps, "game": synthetic.values}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "tt.yaml"
    path.write_text(textwrap.dedent(TT_POLICY))
    return path


def _without_wall_times(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "wall_s"} for row in report["results"]]


def test_jobs_give_the_same_report(trace: Path, policy: Path) -> None:
    common: dict[str, Any] = {
        "policy_file": policy,
        "peak": 12,
        "seeds": 2,
        "baselines_to_run": BASELINES,
    }
    serial = backtest(trace, "game", jobs=1, **common)
    pooled = backtest(trace, "game", jobs=2, **common)
    assert [r["policy"] for r in pooled["results"]] == ["ours", *BASELINES]
    assert _without_wall_times(pooled) == _without_wall_times(serial)
    assert pooled["spread"] == serial["spread"]
    assert pooled["summary"] == serial["summary"]
    assert pooled["runs"] == serial["runs"]
    assert "interrupted" not in pooled


def test_ctrl_c_stops_the_workers_and_keeps_what_finished(trace: Path, policy: Path) -> None:
    full_order = ["ours", *BASELINES]
    common: dict[str, Any] = {
        "policy_file": policy,
        "peak": 12,
        "seeds": 2,
        "baselines_to_run": BASELINES,
    }
    all_runs = backtest(trace, "game", jobs=1, **common)["runs"]
    seen: list[str] = []

    def progress(message: str) -> None:
        seen.append(message)
        if len(seen) == 3:  # ours' two seeds and one more run have finished
            os.kill(os.getpid(), signal.SIGINT)

    report = backtest(trace, "game", jobs=2, progress=progress, **common)
    assert report["interrupted"] is True
    kept = [r["policy"] for r in report["results"]]
    assert kept == full_order[: len(kept)]  # in order, nothing after a gap
    assert len(kept) < len(full_order)
    # The queued runs were dropped, not run to the end behind the interrupt.
    assert report["runs"] < all_runs / 2
    assert multiprocessing.active_children() == []


def test_cli_rejects_zero_jobs(
    trace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if "autoscaler.commands.backtest" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(
            cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "autoscaler.commands.backtest")
        )
    code = cli.main(["backtest", "--trace", str(trace), "--jobs", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "--jobs" in err
    assert "at least 1 job" in err
    assert "Traceback" not in err
