"""``autoscaler backtest --jobs``: the same report from worker processes, and Ctrl-C still
returns what finished."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import autoscaler.cli as cli
from autoscaler.backtest import baselines, parallel
from autoscaler.backtest.runner import (
    Backtest,
    backtest,
    backtest_registry,
    load_plans,
    model_params,
)
from autoscaler.domain.models import CapacityModel
from autoscaler.domain.policy import Slo
from autoscaler.policy.config import load_policy_file
from autoscaler.policy.plugin import UnknownPluginError
from tests.backtest.small_world import TT_POLICY, write_trace_csv

BASELINES = ("static-peak", "native-idle", "buffer")


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trace_csv(tmp_path_factory.mktemp("trace") / "trace.csv")


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("policy") / "tt.yaml"
    path.write_text(textwrap.dedent(TT_POLICY))
    return path


@pytest.fixture(autouse=True)
def python_sigint() -> Any:
    """Ctrl-C as Python handles it by default, whatever this process inherited. A shell without
    job control starts a background command (``make test &``, a CI runner's step, ``nohup``)
    with SIGINT ignored, Python keeps an ignored SIGINT ignored, and so would the CLI these
    tests start: neither would ever see the interrupt they test. (No test leaves it changed:
    a full run checked the disposition after every test; only its start-up state was off.)"""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


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
    finished_seeds: Counter[str] = Counter()
    first_done: list[str] = []

    def interrupt_once_a_policy_is_done(message: str) -> None:
        policy = message.split(" ", 1)[0]
        finished_seeds[policy] += 1
        if finished_seeds[policy] == 2 and not first_done:  # both seeds of one candidate
            first_done.append(policy)
            os.kill(os.getpid(), signal.SIGINT)

    report = backtest(trace, "game", jobs=2, progress=interrupt_once_a_policy_is_done, **common)
    assert report["interrupted"] is True
    kept = [r["policy"] for r in report["results"]]
    if first_done[0] in ("ours", "static-peak"):  # one candidate: done means reported
        assert first_done[0] in kept
    assert kept == [p for p in full_order if p in kept]  # in the usual order
    assert len(kept) < len(full_order)
    # The queued runs were dropped, not run to the end behind the interrupt.
    assert report["runs"] < all_runs
    assert multiprocessing.active_children() == []


def test_a_stopped_pool_ends_a_running_run_and_refuses_new_ones(trace: Path, policy: Path) -> None:
    bt = _backtest_of(trace, policy)
    candidate = baselines.Candidate("ours", {}, policy=load_policy_file(policy))
    stop = multiprocessing.get_context("spawn").Event()
    previous = {signum: signal.getsignal(signum) for signum in parallel.STOP_SIGNALS}
    try:
        parallel._start_worker(parallel.RunSetup.of(bt), stop)  # this process as the worker
        assert parallel._run(candidate, 0, "ours").policy == "ours"
        stop.set()
        with pytest.raises(parallel.RunStoppedError):  # checked at the run's first day
            parallel._run(candidate, 0, "ours")
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        parallel._worker = None
    pool = parallel.RunPool(bt, jobs=1)
    pool.stop()
    with pytest.raises(parallel.RunStoppedError):
        pool.submit(candidate, 0, "ours")


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
def test_ctrl_c_to_the_whole_process_group_prints_no_traceback(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the workers too, at any moment (here: while they start or
    run); only the parent acts on it, and the CLI exits 130 with what finished."""
    long_trace = write_trace_csv(tmp_path / "day.csv", days=1.2)
    command = [sys.executable, "-m", "autoscaler", "backtest", "--trace", str(long_trace)]
    command += ["--peak", "40", "--seeds", "2", "--jobs", "2", "--output", "json"]
    for delay_s in (0.0, 5.0):  # as soon as the workers exist (still importing); mid-run
        with _cli_run(command) as cli_run:
            deadline = time.monotonic() + 60
            while len(_children(cli_run.pid)) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)  # the resource tracker and two workers
            time.sleep(delay_s)
            os.killpg(cli_run.pid, signal.SIGINT)
            out, err = cli_run.communicate(timeout=50)
        assert cli_run.returncode == 130, err
        assert "Traceback" not in err
        assert "KeyboardInterrupt" not in err
        assert json.loads(out)["interrupted"] is True


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize(
    ("jobs", "sent_to"), [(1, "command"), (2, "command"), (2, "group"), (2, "group-at-start")]
)
def test_sigterm_to_the_cli_reports_what_finished(tmp_path: Path, jobs: int, sent_to: str) -> None:
    """``kill`` or a stopped container send SIGTERM to the command alone; GNU ``timeout``
    (without ``--foreground``) and systemd's control-group kill send it to the workers too,
    mid-run or while they still start. Either way it stops as Ctrl-C does, prints what
    finished as JSON and exits 130, leaving no worker behind.

    At start: as soon as the workers exist, before they have read their start-up data. A
    worker killed then used to hang the parent for ever, writing that data into a pipe whose
    read end it still held (CPython gh-118981); the workers now start with SIGTERM blocked."""
    long_trace = write_trace_csv(tmp_path / "day.csv", days=1.2)
    command = [sys.executable, "-m", "autoscaler", "backtest", "--trace", str(long_trace)]
    command += ["--peak", "40", "--seeds", "2", "--jobs", str(jobs), "--output", "json"]
    with _cli_run(command) as cli_run:
        deadline = time.monotonic() + 60
        if sent_to == "group-at-start":
            while len(_workers(cli_run.pid)) < jobs:
                assert time.monotonic() < deadline, "the workers never started"
                time.sleep(0.01)
        else:
            while not _catches_sigterm(cli_run.pid) or len(
                [w for w in _workers(cli_run.pid) if _ignores_sigint(w)]
            ) < (jobs if jobs > 1 else 0):
                assert time.monotonic() < deadline, "the runs never started"
                time.sleep(0.02)
            if sent_to == "command":
                time.sleep(2.0)  # mid-run (the whole backtest takes tens of seconds)
        workers = _workers(cli_run.pid)
        assert cli_run.poll() is None, "finished before it could be stopped"
        if sent_to == "command":
            cli_run.send_signal(signal.SIGTERM)
        else:
            os.killpg(cli_run.pid, signal.SIGTERM)
        out, err = cli_run.communicate(timeout=50)
    assert cli_run.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: results above are the runs that finished" in err
    assert json.loads(out)["interrupted"] is True
    time.sleep(0.5)
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "a worker outlived it"


@contextlib.contextmanager
def _cli_run(command: list[str]) -> Iterator[subprocess.Popen[str]]:
    """``command`` started in its own process group (as a terminal's job); a failing test
    leaves nothing of it behind."""
    cli_run = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        yield cli_run
    finally:
        if cli_run.poll() is None:
            os.killpg(cli_run.pid, signal.SIGKILL)
            cli_run.wait()


def _catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` has a handler for SIGTERM installed."""
    return _in_signal_mask(pid, "SigCgt", signal.SIGTERM)


def _ignores_sigint(pid: int) -> bool:
    """Whether ``pid`` ignores SIGINT: a backtest worker does once its start-up data is read
    and its initializer runs."""
    return _in_signal_mask(pid, "SigIgn", signal.SIGINT)


def _in_signal_mask(pid: int, mask: str, signum: int) -> bool:
    """Whether ``signum`` is in ``pid``'s ``mask`` (SigCgt, SigIgn, …) in /proc (False once
    the process is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    bits = next(line.split()[1] for line in status.splitlines() if line.startswith(f"{mask}:"))
    return bool(int(bits, 16) >> (signum - 1) & 1)


def _workers(pid: int) -> list[int]:
    """The backtest worker processes among ``pid``'s children (not the resource tracker,
    which multiprocessing ends on its own once its parent is gone)."""
    found = []
    for child in _children(pid):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue  # it ended meanwhile
    return found


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` (started by any of its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return found


def test_usable_cores_follow_a_container_quota(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")
    assert parallel.usable_cores(cpu_max) == min(2, len(os.sched_getaffinity(0)))
    cpu_max.write_text("max 100000\n")
    assert parallel.usable_cores(cpu_max) == len(os.sched_getaffinity(0))
    assert parallel.usable_cores(tmp_path / "absent") == len(os.sched_getaffinity(0))


def test_a_workers_plugin_error_reaches_the_parent_intact() -> None:
    error = UnknownPluginError("nope", ["slo", "buffer"], detail="ImportError: x")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.name, copy.known, copy.detail, str(copy)) == (
        error.name,
        error.known,
        error.detail,
        str(error),
    )


def _backtest_of(trace: Path, policy: Path) -> Backtest:
    plans, _ = load_plans(trace, "game", peak=12, days=0.05, seeds=[1])
    return Backtest(
        plans=plans,
        seeds=[1],
        stream_class="gen4n_high",
        capacity_model=CapacityModel.CURRENT,
        slo=Slo(),
        price=1.0,
        registry=backtest_registry(),
        params=model_params(60.0),
    )


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
