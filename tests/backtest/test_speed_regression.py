"""Making the backtest fast must not change a single decision.

Why this test: the backtest's speed work (the in-process adapter's cached session summaries,
the history store's in-memory column cache, the forecaster's horizon tables memoised per hour,
the sampler's one-pass counting, the planner's cheaper location-hook test, the controller's
guard memory written every N ticks) replaces how things are computed, never what. So two
fixed-seed runs recorded *before* that work are replayed here and must come out identical: the
bill to the last bit, every session outcome, and the exact sequence of UpdateStreamGroup calls
(virtual time and every value), compared as a SHA-256 of its ``repr``.

- ``slo``: the shipped recommended policy's settings (inlined, so editing
  ``policies/default.yaml`` does not move this test), 2 days at peak 100: forecaster, guards,
  stabilisation and pre-warm on a diurnal wave with history growing past a day.
- ``tight``: target tracking at utilisation 1.0 with no idle buffer, 1 day at peak 100: many
  sessions wait and some fail, so the sampler's waiting/failure/departure windows are compared
  too.

If a change is *meant* to change decisions (a new policy rule, a model fix), re-record the
expected values: ``EXPECTED`` is what ``_run`` returns, printed by
``python -m tests.backtest.test_speed_regression``.
"""

from __future__ import annotations

import hashlib
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from autoscaler.backtest.runner import backtest_registry, model_params, run_policy
from autoscaler.backtest.sessions import plan_sessions
from autoscaler.backtest.synthetic import synthetic_trace
from autoscaler.controller import Controller
from autoscaler.domain.models import CapacityModel, CapacitySetting, GroupState
from autoscaler.policy.config import load_policy_file
from autoscaler.store import HistoryStore
from autoscaler.twin.inprocess import InProcessGameLiftStreams

SLO_POLICY = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: speed-regression}
spec:
  streamGroups: {ids: [sg-placeholder]}
  defaults: {minCapacity: 0, maxCapacity: 100}
  policy:
    plugin: slo
    params: {missBudgetShare: 0.5, minIdle: 1, alwaysOnFloor: 0, prewarmSeconds: 600,
             maximumMargin: 0.5}
  slo: {instant: 0.99, failed: 0.001}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      selectPolicy: Max
      policies:
        - {type: Percent, value: 100, periodSeconds: 60}
        - {type: Slots, value: 8, periodSeconds: 60}
    scaleDown:
      stabilizationWindowSeconds: 300
      policies:
        - {type: Percent, value: 20, periodSeconds: 60}
    tolerance: 0.05
    cooldownSeconds: 0
  prices: {gen4n_high: 0.6571}
  fallback: {failureThreshold: 3, behavior: hold}
  staleAfterSeconds: 180
  drift: {action: respect, cooldownSeconds: 1800}
  historyWindowSeconds: 1209600
"""
TIGHT_POLICY = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: tight}
spec:
  streamGroups: {ids: [sg-placeholder]}
  defaults: {maxCapacity: 200}
  policy:
    plugin: target-tracking
    params: {targetUtilization: 1.0, minIdle: 0}
"""
CASES = {"slo": (SLO_POLICY, 2.0), "tight": (TIGHT_POLICY, 1.0)}

# Recorded before the speed work (commit 8afd6e0's pipeline); ``slo`` re-recorded after the guard
# fix that lets a percentage scale-down rule lower a small value by one host (it could not),
# and again when runs began at the policy's first decision and the forecaster's arrival rate
# got its steady-state prior for an unobserved recent window (both change the first ticks);
# and again when the forecaster's seasonal part was refreshed every 3 hours instead of every
# hour (a third of the recomputes; same quality on bench.quality_tuning --set every);
# and again when the service model stopped releasing ready hosts below the target while
# hosts for an earlier, higher one were still provisioning (same updates, +0.14 % billed).
EXPECTED: dict[str, dict[str, Any]] = {
    "slo": {
        "sessions": 4015,
        "decisions": 2881,
        "updates": 364,
        "instant": 3958,
        "cold": 1,
        "failed": 0,
        "refused": 0,
        "skipped": 0,
        "allocated_slot_s": "10826176.988074303",
        "waits_s_sum": "8.303802490234375",
        "update_calls_sha256": "c21181abdc553d223ae7d1a3b8ab1fec0104192d99fab2770c9d03aee28919af",
    },
    "tight": {
        "sessions": 2067,
        "decisions": 1441,
        "updates": 496,
        "instant": 1757,
        "cold": 249,
        "failed": 5,
        "refused": 0,
        "skipped": 0,
        "allocated_slot_s": "5217222.686930656",
        "waits_s_sum": "8110.597230434418",
        "update_calls_sha256": "bc5cc070a654777118ebb6674c3674a77a14d5d06e2313a3f7f8993c5c3d2ec5",
    },
}


def _run(case: str, tmp: Path) -> dict[str, Any]:
    text, days = CASES[case]
    path = tmp / f"{case}.yaml"
    path.write_text(textwrap.dedent(text))
    registry = backtest_registry()
    policy = load_policy_file(path, resolve_params=registry.validate_params)
    trace = synthetic_trace(peak=100, days=3, step_s=600, seed=11)
    plan = plan_sessions(trace, peak=100, seed=11, days=days)
    calls: list[tuple[float, list[tuple[str, int, int | None, int | None, int | None]]]] = []

    def record(
        controller: Controller, adapter: InProcessGameLiftStreams, store: HistoryStore
    ) -> None:
        update = adapter.update_stream_group
        clock = controller._clock  # the run's virtual clock

        async def recorded(group_id: str, settings: Mapping[str, CapacitySetting]) -> GroupState:
            calls.append(
                (
                    clock.now(),
                    sorted(
                        (k, v.always_on, v.target_idle, v.maximum, v.on_demand)
                        for k, v in settings.items()
                    ),
                )
            )
            return await update(group_id, settings)

        adapter.update_stream_group = recorded  # type: ignore[method-assign]

    out = run_policy(
        plan,
        policy=policy,
        stream_class="gen4n_high",
        capacity_model=CapacityModel.CURRENT,
        seed=3,
        params=model_params(60.0),
        registry=registry,
        instrument=record,
    )
    assert len(calls) == out.updates
    return {
        "sessions": plan.size,
        "decisions": out.decisions,
        "updates": out.updates,
        "instant": out.instant,
        "cold": out.cold,
        "failed": out.failed,
        "refused": out.refused,
        "skipped": out.skipped_ticks,
        "allocated_slot_s": repr(out.allocated_slot_s),
        "waits_s_sum": repr(float(out.waits_s.sum())),
        "update_calls_sha256": hashlib.sha256(repr(calls).encode()).hexdigest(),
    }


@pytest.mark.parametrize("case", sorted(CASES))
def test_backtest_results_are_unchanged(case: str, tmp_path: Path) -> None:
    assert _run(case, tmp_path) == EXPECTED[case]


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(json.dumps({c: _run(c, Path(d)) for c in sorted(CASES)}, indent=4))
