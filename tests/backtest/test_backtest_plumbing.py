"""The backtest's plumbing shortcuts: what they skip is never read, and the daemon keeps it.

- A backtest's controller writes guard memory every 60 ticks only, not also on every applied
  change (its in-memory store is never reopened); the daemon's default still writes on both.
- A store in memory skips the journal's ``synchronous=FULL`` switch (there is no disk); a
  store on a file still makes every intent and outcome durable before returning.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from autoscaler.backtest.runner import backtest_registry, model_params, run_policy
from autoscaler.backtest.sessions import plan_sessions
from autoscaler.backtest.synthetic import synthetic_trace
from autoscaler.controller import MEMORY_KEY, Controller, ControllerOptions
from autoscaler.domain.models import CapacityModel
from autoscaler.policy.config import load_policy_file
from autoscaler.store import HistoryStore, Outcome
from autoscaler.twin.inprocess import InProcessGameLiftStreams

POLICY = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: tt}
spec:
  streamGroups: {ids: [sg-placeholder]}
  policy:
    plugin: target-tracking
    params: {targetUtilization: 0.7, minIdle: 2}
"""


def test_daemon_default_still_writes_memory_on_applied_changes() -> None:
    options = ControllerOptions()
    assert options.persist_memory_on_apply
    assert options.persist_memory_every == 1


def test_backtest_writes_guard_memory_hourly_only(tmp_path: Path) -> None:
    path = tmp_path / "tt.yaml"
    path.write_text(textwrap.dedent(POLICY))
    registry = backtest_registry()
    policy = load_policy_file(path, resolve_params=registry.validate_params)
    trace = synthetic_trace(peak=60, days=0.5, step_s=600, seed=2)
    plan = plan_sessions(trace, peak=60, seed=2, days=150 / 1440)
    written: list[int] = []

    def hook(
        controller: Controller, adapter: InProcessGameLiftStreams, store: HistoryStore
    ) -> None:
        put = store.put_state

        def put_state(key: str, value: str) -> None:
            if key == MEMORY_KEY:
                written.append(controller._ticks)  # the tick being finished
            put(key, value)

        store.put_state = put_state  # type: ignore[method-assign]

    out = run_policy(
        plan,
        policy=policy,
        stream_class="gen4n_high",
        capacity_model=CapacityModel.CURRENT,
        seed=2,
        params=model_params(60.0),
        registry=registry,
        instrument=hook,
    )
    assert out.decisions == 151
    assert out.updates > 3  # changes were applied between the hourly writes
    assert written == [60, 120]


def _statements(store: HistoryStore) -> list[str]:
    seen: list[str] = []
    store._db.set_trace_callback(seen.append)  # the SQL sent
    store.record_intent("sg-1", 1.0, "d1", "{}")
    store.record_outcome("d1", Outcome.APPLIED)
    return seen


def test_journal_syncs_on_a_file_and_not_in_memory(tmp_path: Path) -> None:
    with HistoryStore(tmp_path / "h.db", retention_s=3600) as on_disk:
        sent = _statements(on_disk)
        assert sent.count("PRAGMA synchronous = FULL") == 2
        assert sent.count("PRAGMA synchronous = NORMAL") == 2
        assert on_disk.outcome("d1") == (Outcome.APPLIED, "")
    with HistoryStore(":memory:", retention_s=3600) as in_memory:
        sent = _statements(in_memory)
        assert not [s for s in sent if "synchronous" in s]
        assert in_memory.outcome("d1") == (Outcome.APPLIED, "")
