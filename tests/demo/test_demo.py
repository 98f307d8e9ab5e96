"""``autoscaler demo`` end to end at a high time scale: real emulator, real load generator,
real daemon. Checks that players were served, that the daemon changed capacity, and that the
summary agrees with the emulator's own usage endpoint."""

from __future__ import annotations

import importlib.util
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import autoscaler.cli as cli
import autoscaler.demo as demo_module
import autoscaler.logs as logs
from autoscaler.demo import DemoOptions, run_demo

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_demo_serves_players_and_the_summary_matches_the_emulator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart = tmp_path / "demo.png"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # what the demo leaves behind
    options = DemoOptions(
        hours=1.5,
        time_scale=720.0,
        peak=20,
        policy=ROOT / "policies" / "default.yaml",
        chart=chart,
        live=False,
    )
    with (tmp_path / "out.txt").open("w") as out:
        summary = await run_demo(options, console=Console(file=out, width=150))
    assert "chart:" in (tmp_path / "out.txt").read_text()

    assert summary["daemon_exit"] == 0
    assert summary["sessions_started"] > 20
    assert summary["ticks"] >= 30  # 90 simulated minutes at one tick a minute (some coalesced)
    assert summary["applied_changes"] >= 1
    calls = summary["calls"]["operations"]
    assert calls["UpdateStreamGroup"]["accepted"] >= 1
    start = calls["StartStreamSession"]
    assert start["accepted"] - start["errors"] == summary["sessions_started"]

    usage = summary["usage"]["groups"]
    by_label = summary["group_ids"]
    for row in summary["rows"]:
        group = usage[row["group_id"]]
        locations = group["locations"].values()
        cost = sum(loc["cost_usd"] for loc in locations)
        instant = sum(loc["sessions"]["instant"] for loc in locations)
        total = sum(sum(loc["sessions"].values()) for loc in locations)
        assert math.isclose(row["cost"], cost, rel_tol=1e-9)
        assert math.isclose(row["instant"], instant / total, rel_tol=1e-9)
        assert row["sessions"] == total
    managed = next(r for r in summary["rows"] if r["group_id"] == by_label["autoscaler"])
    assert managed["failed"] <= 0.01
    assert chart.exists()
    assert chart.stat().st_size > 10_000
    assert list(scratch.iterdir()) == []  # the controller's state went with the demo


def test_demo_refuses_bad_input_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--no-live", "--hours", "inf", "--time-scale", "nan", "--peak", "0"]
    assert cli.main([*args, "--stream-class", "gen9"]) == 2
    err = capsys.readouterr().err
    for needle in (
        "--hours must be a number > 0, got inf",
        "--time-scale must be a number > 0, got nan",
        "--peak must be at least 1 session, got 0",
        "--stream-class: unknown stream class 'gen9' (known: gen4n_high,",
    ):
        assert needle in err
    assert "Traceback" not in err
    assert cli.main(["demo", "--no-live", "--chart", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path} is a folder; give a file name such as" in err


def test_demo_runs_the_shipped_policy_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It looked for ``policies/default.yaml`` relative to the working folder: anywhere but
    the repository root, ``autoscaler demo`` failed."""
    seen: list[DemoOptions] = []

    async def record(options: DemoOptions) -> dict[str, object]:
        seen.append(options)
        return {"daemon_exit": 0}

    monkeypatch.setattr(demo_module, "run_demo", record)
    # the command sets the process's log level (ERROR): not for the tests that run after this
    monkeypatch.setattr(logs, "configure_logging", lambda *_args: None)
    monkeypatch.chdir(tmp_path)  # no policies/ here
    assert cli.main(["demo", "--no-live", "--hours", "1"]) == 0
    (options,) = seen
    assert options.policy.is_file()
    assert options.policy == ROOT / "policies" / "default.yaml"


def _without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "matplotlib" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_without_matplotlib_a_chart_asked_for_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _without_matplotlib(monkeypatch)
    assert cli.main(["demo", "--no-live", "--chart", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "--chart" in err
    assert "drawing a chart needs matplotlib: pip install 'autoscaler[plot]'" in err


@pytest.mark.timeout(120)
async def test_without_matplotlib_the_demo_runs_and_says_the_chart_was_not_drawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_matplotlib(monkeypatch)
    options = DemoOptions(hours=0.5, time_scale=1800.0, peak=6, live=False)
    with (tmp_path / "out.txt").open("w") as out:
        summary = await run_demo(options, console=Console(file=out, width=150))
    assert summary["daemon_exit"] == 0
    assert summary["chart"] is None
    shown = (tmp_path / "out.txt").read_text()
    assert "chart: not drawn (matplotlib is not installed: pip install 'autoscaler[plot]')" in shown
