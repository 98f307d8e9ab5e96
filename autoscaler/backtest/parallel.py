"""A backtest's runs on several cores (``autoscaler backtest --jobs N``).

Why processes: a run is CPU-bound Python (the controller's tick, the service model) that holds
the GIL, so threads would take turns on one core. Each run is independent and deterministic
(plan, seed, candidate), so running it in another process gives the same result; a backtest of
3 seeds × ~25 baseline candidates has plenty of runs to share out.

Why each worker gets the plans once (``RunSetup``, at start-up) and a run is only (candidate,
seed index, label): a month of sessions is tens of MB, and sending it with each of ~80 runs
would cost more than some runs.

Why ``spawn``: the parent has threads (the drivers in ``runner._run_all_pooled``, rich's
refresh thread), and forking a process that has threads can leave a lock held in the child.
The usual ``spawn`` rule follows: a script that calls ``backtest(jobs=2)`` needs its
``if __name__ == "__main__":`` guard (the CLI has it).

Ctrl-C and SIGTERM: the terminal sends SIGINT to every process of the group, and GNU
``timeout`` or systemd's control-group kill send SIGTERM to all of them; only the parent acts
on either. A worker ignores both, and is started with both blocked (``block_stop_signals`` in
the threads that start workers), so one arriving while it still imports is held until the
worker ignores it. For SIGINT that only spares a traceback; for SIGTERM it prevents a hang: a
worker killed before it has read its start-up data leaves the parent blocked for ever writing
that data (tens of MB, more than a pipe holds) into a pipe whose read end the parent itself
still holds until the write ends (CPython gh-118981, fixed after 3.11). ``RunPool.stop`` drops
queued runs and sets an event that a running run checks at each simulated day, so a stopped
backtest returns in a second or two. A worker whose parent dies (``kill``, an out-of-memory
kill) exits too: it would otherwise wait on its queue for ever.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autoscaler.backtest import baselines
from autoscaler.backtest.scoring import Result
from autoscaler.backtest.sessions import SessionPlan
from autoscaler.domain.models import CapacityModel
from autoscaler.domain.policy import Slo
from autoscaler.twin.model import ModelParams

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

    from autoscaler.backtest.runner import Backtest


def usable_cores(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process may use: its affinity mask, lowered to a container's CPU quota
    (cgroup v2 ``cpu.max``; a 2-CPU container on a 64-core host gets 2, not 64 workers)."""
    if hasattr(os, "sched_getaffinity"):
        cores = max(1, len(os.sched_getaffinity(0)))
    else:  # pragma: no cover - macOS and Windows
        cores = max(1, os.cpu_count() or 1)
    try:
        quota, period = cgroup_cpu_max.read_text(encoding="ascii").split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota here: the affinity mask is the limit
    return cores


STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})  # the parent's alone to act on


def block_stop_signals() -> None:
    """Block SIGINT and SIGTERM in this thread, so that worker processes it starts inherit
    them blocked (until ``_start_worker`` ignores them)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


class RunStoppedError(Exception):
    """A run ended early because its backtest was stopped (Ctrl-C)."""


@dataclass(frozen=True, slots=True)
class RunSetup:
    """What every run of one backtest shares; sent to each worker once."""

    plans: tuple[SessionPlan, ...]
    seeds: tuple[int, ...]
    stream_class: str
    capacity_model: CapacityModel
    slo: Slo
    price: float
    interval_s: float
    params: ModelParams | None

    @classmethod
    def of(cls, bt: Backtest) -> RunSetup:
        return cls(
            plans=tuple(bt.plans),
            seeds=tuple(bt.seeds),
            stream_class=bt.stream_class,
            capacity_model=bt.capacity_model,
            slo=bt.slo,
            price=bt.price,
            interval_s=bt.interval_s,
            params=bt.params,
        )

    def backtest(self) -> Backtest:
        """The backtest these runs belong to, as a worker holds it (the built-in registry)."""
        from autoscaler.backtest.runner import Backtest, backtest_registry  # noqa: PLC0415

        return Backtest(
            plans=list(self.plans),
            seeds=list(self.seeds),
            stream_class=self.stream_class,
            capacity_model=self.capacity_model,
            slo=self.slo,
            price=self.price,
            registry=backtest_registry(),
            interval_s=self.interval_s,
            params=self.params,
        )


@dataclass(slots=True)
class _Worker:
    backtest: Backtest
    stop: Event


_worker: _Worker | None = None  # this worker process's backtest (set by _start_worker)


def _start_worker(setup: RunSetup, stop: Event) -> None:
    # Ctrl-C, and a SIGTERM to the process group, reach every worker; only the parent acts on
    # them. The worker started with both blocked (``block_stop_signals``) and has read its
    # start-up data by now: one that came meanwhile is dropped once ignored.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(
            target=_exit_with, args=(parent.sentinel,), name="parent-watch", daemon=True
        ).start()
    global _worker  # noqa: PLW0603 - one backtest per worker process, set once at start
    _worker = _Worker(setup.backtest(), stop)


def _exit_with(parent_sentinel: int) -> None:
    """Exit this worker once its parent has gone (the sentinel becomes ready)."""
    multiprocessing.connection.wait([parent_sentinel])
    os._exit(1)


def _run(candidate: baselines.Candidate, index: int, label: str) -> Result:
    worker = _worker
    if worker is None:  # pragma: no cover - the pool always starts its workers first
        raise RuntimeError("backtest worker used before it was started")
    stop = worker.stop

    def check(_fraction: float) -> None:
        if stop.is_set():
            raise RunStoppedError(f"{label} stopped")

    return worker.backtest.run_one(index, candidate, label, progress=check)


class RunPool:
    """``jobs`` worker processes running ``bt``'s runs (see the module's docstring)."""

    def __init__(self, bt: Backtest, *, jobs: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self._executor = ProcessPoolExecutor(
            max_workers=jobs,
            mp_context=context,
            initializer=_start_worker,
            initargs=(RunSetup.of(bt), self._stop),
        )

    def submit(self, candidate: baselines.Candidate, index: int, label: str) -> Future[Result]:
        """Run ``candidate`` on seed ``index``'s plan in a worker; its scored result.
        Refused (``RunStoppedError``) once the pool is stopped."""
        try:
            if not self._stop.is_set():
                return self._executor.submit(_run, candidate, index, label)
        except RuntimeError:  # shut down between the check and the submit
            if not self._stop.is_set():
                raise
        raise RunStoppedError(f"{label}: the backtest was stopped")

    def stop(self) -> None:
        """Refuse new runs, drop the queued ones, end the running ones at their next
        simulated day, and wait for the workers to exit."""
        self._stop.set()
        self._executor.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Wait for the runs handed over and let the workers exit."""
        self._executor.shutdown(wait=True)
