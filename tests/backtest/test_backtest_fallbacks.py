"""A policy that never worked is not scored as if it had: a backtest counts the decisions its
fallback (or a hold) made instead, and the table says so.

Before this, a ``webhook`` policy whose service could not be reached on any tick was reported
as ``ours … meets`` with the webhook's name on the row: every figure was its fallback's.
"""

from __future__ import annotations

import logging
import socket
import textwrap
from pathlib import Path

import pytest

import autoscaler.cli as cli
from autoscaler.backtest.runner import backtest
from autoscaler.commands.backtest import fallback_note
from tests.backtest.small_world import TT_POLICY, write_trace_csv


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again: nothing listens there


def _webhook_policy(folder: Path) -> Path:
    """TT_POLICY's target tracking as the fallback of a webhook nobody answers."""
    path = folder / "webhook.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            apiVersion: autoscaler.gameliftstreams/v1
            kind: CapacityPolicy
            metadata: {{name: hook}}
            spec:
              streamGroups: {{ids: [sg-placeholder]}}
              defaults: {{maxCapacity: 10}}
              policy:
                plugin: webhook
                params:
                  url: http://127.0.0.1:{_closed_port()}/decide
                  fallback:
                    plugin: target-tracking
                    params: {{targetUtilization: 0.7, minIdle: 2}}
            """
        )
    )
    return path


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return write_trace_csv(tmp_path / "trace.csv")


def test_a_webhook_that_never_answers_is_scored_as_its_fallback_and_flagged(
    trace: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = tmp_path / "tt.yaml"
    plain.write_text(textwrap.dedent(TT_POLICY))
    hook = _webhook_policy(tmp_path)
    with caplog.at_level(logging.WARNING, logger="autoscaler.backtest.runner"):
        (fallen,) = backtest(trace, policy_file=hook, peak=10, seeds=1, baselines_to_run=())[
            "results"
        ]
    # Said at the first failure, once per run, not only in the report at the end.
    (said,) = [r.getMessage() for r in caplog.records]
    assert said.startswith("backtest ours: the policy failed at decision 1 of ")
    assert "cannot reach it" in said
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="autoscaler.backtest.runner"):
        (own,) = backtest(trace, policy_file=plain, peak=10, seeds=1, baselines_to_run=())[
            "results"
        ]
    assert caplog.records == []

    assert own["decisions"] > 0
    assert (own["fallback_decisions"], own["fallback_reason"]) == (0, None)
    assert fallen["decisions"] == own["decisions"]
    assert fallen["fallback_decisions"] == fallen["decisions"]
    assert "webhook 127.0.0.1:" in fallen["fallback_reason"]
    assert "cannot reach it" in fallen["fallback_reason"]
    # Every decision was the fallback's: the run is the fallback policy's run, to the cent.
    assert (fallen["cost"], fallen["updates"]) == (own["cost"], own["updates"])

    note = fallback_note(fallen)
    assert note is not None
    assert note.startswith("WARNING ours: the policy failed on")
    assert "(100.0%)" in note
    assert "wholly the fallback's" in note
    assert fallback_note(own) is None


def test_the_table_warns_under_a_fallen_back_row(
    trace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    if "autoscaler.commands.backtest" not in cli.COMMAND_MODULES:
        monkeypatch.setattr(
            cli, "COMMAND_MODULES", (*cli.COMMAND_MODULES, "autoscaler.commands.backtest")
        )
    hook = _webhook_policy(tmp_path)
    argv = ["backtest", "--trace", str(trace), "--policy", str(hook), "--peak", "10"]
    code = cli.main([*argv, "--seeds", "2", "--baselines", "none", "--jobs", "1"])
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert code == 0
    assert "WARNING ours: the policy failed on" in out
    assert "wholly the fallback's; first failure: at " in out
    assert "cannot reach it" in out


def test_a_partial_failure_is_called_partial() -> None:
    row = {"policy": "ours", "decisions": 200.0, "fallback_decisions": 3.5, "fallback_reason": None}
    assert fallback_note(row) == (
        "WARNING ours: the policy failed on 4 of 200 decisions (1.8%) (mean over seeds), and a"
        " fallback or a hold decided instead: the row above is partly the fallback's"
    )
    # A report written before the field existed (a cached baseline row) says nothing.
    assert fallback_note({"policy": "buffer"}) is None
