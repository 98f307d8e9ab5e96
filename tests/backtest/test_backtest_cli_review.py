"""`autoscaler backtest` as a user runs it: what a user-level review (session 16) found.

Each test failed before its fix: a `--plot` path that replaced a device or a symbolic link,
a plot failure that threw the finished report away, a ForecastOnly policy scored as one that
never acts, a policy pinned to the legacy model run against current-model baselines, a peak
no machine can simulate ending in a traceback, option errors reported one at a time,
static-peak's parameters shown before rounding to whole hosts, "no baseline met the SLO"
when none ran, and a session log's long silence priced without a word.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

import autoscaler.cli as cli
from autoscaler.backtest.runner import backtest
from autoscaler.domain.errors import ConfigError
from autoscaler.outfiles import check_destination, write_atomically
from tests.backtest.small_world import TT_POLICY, write_trace_csv

LEGACY_POLICY = TT_POLICY.replace("spec:\n", "spec:\n  capacityModel: legacy\n")


def _cli(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    if "autoscaler.commands.backtest" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(
            cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "autoscaler.commands.backtest")
        )
    return cli.main(argv)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return write_trace_csv(tmp_path / "trace.csv")


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "tt.yaml"
    path.write_text(textwrap.dedent(TT_POLICY))
    return path


# --- output files ---------------------------------------------------------------------------


def test_a_device_or_pipe_is_not_an_output_file(tmp_path: Path) -> None:
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    with pytest.raises(ConfigError, match="not a regular file"):
        check_destination(pipe, "--plot")
    with pytest.raises(ConfigError, match="not a regular file"):
        check_destination("/dev/null", "--plot")


def test_a_symbolic_link_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    target = tmp_path / "real.png"
    target.write_bytes(b"old")
    link = tmp_path / "link.png"
    link.symlink_to(target)
    write_atomically(link, "--plot", lambda sink: sink.write(b"new"))
    assert link.is_symlink()
    assert target.read_bytes() == b"new"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_a_folder_that_takes_no_files_is_refused_before_the_work() -> None:
    # Root passes every permission check; /proc still takes no new file.
    with pytest.raises(ConfigError, match="cannot write to the folder /proc"):
        check_destination("/proc/run.png", "--plot")


def test_a_picture_named_for_another_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"written as PNG; name it …\.png"):
        check_destination(tmp_path / "run.svg", "--plot", suffix=".png")
    assert check_destination(tmp_path / "RUN.PNG", "--plot", suffix=".png").name == "RUN.PNG"


def test_a_plot_that_fails_late_keeps_the_report(
    trace: Path,
    policy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import autoscaler.backtest.plot as plot  # noqa: PLC0415

    def disk_full(*_args: Any, **_kwargs: Any) -> None:
        raise ConfigError("--plot", [f"cannot write {tmp_path / 'run.png'}: No space left"])

    monkeypatch.setattr(plot, "plot_timeline", disk_full)
    argv = ["backtest", "--trace", str(trace), "--policy", str(policy), "--peak", "10"]
    argv += ["--seeds", "1", "--baselines", "none", "--jobs", "1", "--output", "json"]
    code = _cli(monkeypatch, [*argv, "--plot", str(tmp_path / "run.png")])
    out, err = capsys.readouterr()
    assert code == 2
    assert '"policy": "ours"' in out  # the report came out whole
    assert "the picture was not written" in err
    assert "No space left" in err


# --- what is scored -------------------------------------------------------------------------


def test_a_forecast_only_policy_is_scored_as_if_it_acted(trace: Path, policy: Path) -> None:
    shadow = policy.with_name("shadow.yaml")
    shadow.write_text(policy.read_text().replace("spec:\n", "spec:\n  mode: ForecastOnly\n"))
    acting = backtest(trace, policy_file=policy, peak=10, seeds=1, baselines_to_run=())
    scored = backtest(trace, policy_file=shadow, peak=10, seeds=1, baselines_to_run=())
    (a,), (s,) = acting["results"], scored["results"]
    assert s["updates"] > 0
    assert (s["cost"], s["updates"], s["instant"]) == (a["cost"], a["updates"], a["instant"])


def test_a_policy_pinned_to_a_capacity_model_sets_the_run_or_is_refused(
    trace: Path, tmp_path: Path
) -> None:
    legacy = tmp_path / "legacy.yaml"
    legacy.write_text(textwrap.dedent(LEGACY_POLICY))
    report = backtest(trace, policy_file=legacy, peak=10, seeds=1, baselines_to_run=())
    assert report["capacity_model"] == "legacy"
    with pytest.raises(ConfigError) as caught:
        backtest(trace, policy_file=legacy, capacity_model="current", peak=10, seeds=1)
    (problem,) = caught.value.problems
    assert "pins capacityModel: legacy" in problem
    assert "give --capacity-model legacy" in problem


# --- options --------------------------------------------------------------------------------


def test_a_peak_no_machine_can_simulate_is_refused(trace: Path, policy: Path) -> None:
    with pytest.raises(ConfigError, match=r"--peak: at most 20000 sessions"):
        backtest(trace, policy_file=policy, peak=1e9, seeds=1)


def test_every_bad_option_is_listed_at_once(
    trace: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad_policy = tmp_path / "bad.yaml"
    bad_policy.write_text("apiVersion: autoscaler.gameliftstreams/v1\nkind: Nope\n")
    argv = ["backtest", "--trace", str(trace), "--policy", str(bad_policy), "--peak", "0"]
    argv += ["--stream-class", "gen9", "--baselines", "foo", "--days", "0", "--seeds", "0"]
    assert _cli(monkeypatch, argv) == 2
    err = capsys.readouterr().err
    for needle in ("--peak:", "--stream-class:", "--baselines:", "--days:", "--seeds:", "kind"):
        assert needle in err
    assert "Traceback" not in err


# --- what the report says -------------------------------------------------------------------


def test_static_peak_shows_the_whole_hosts_it_ran(trace: Path, policy: Path) -> None:
    report = backtest(trace, policy_file=policy, peak=7, seeds=1, baselines_to_run=["static-peak"])
    row = next(r for r in report["results"] if r["policy"] == "static-peak")
    # 9 sessions at once at this scale: 10 slots, five hosts of two
    assert row["params"]["always_on"] == {"us-east-1": 10}
    assert all(v % 2 == 0 for v in row["params"]["always_on"].values())  # gen4n_high: 2 slots


def test_no_baselines_run_is_not_no_baseline_met(
    trace: Path,
    policy: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["backtest", "--trace", str(trace), "--policy", str(policy), "--peak", "10"]
    assert _cli(monkeypatch, [*argv, "--seeds", "1", "--baselines", "none", "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "no baseline ran" in out
    assert "met the SLO" not in out


def test_a_long_silence_in_a_session_log_is_noted(tmp_path: Path, policy: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(
        "arrival,duration_s\n2025-01-01T00:00:00Z,600\n2025-01-01T00:10:00Z,600\n"
        "2025-01-03T00:00:00Z,600\n2025-01-03T00:05:00Z,600\n"
    )
    report = backtest(log, policy_file=policy, seeds=1, baselines_to_run=())
    note = report["window"]["note"]
    assert "no arrival for 2.0 days from 2025-01-01T00:10:00+00:00" in note
    short = tmp_path / "short.csv"
    short.write_text("arrival,duration_s\n2025-01-01T00:00:00Z,600\n2025-01-01T05:00:00Z,60\n")
    assert "note" not in backtest(short, policy_file=policy, seeds=1, baselines_to_run=())["window"]
