"""The controller end to end against the HTTP emulator on a manual clock.

Each test drives real sessions into the emulator, advances simulated time, runs real ticks
(aiobotocore over HTTP → sampling → SQLite → plugin → guards → UpdateStreamGroup) and checks
what the emulator ends up with.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import cast

import numpy as np

from autoscaler.ha import LeaderElector, LeaseBackend, LeaseTiming
from autoscaler.runtime import build_controller
from tests.e2e.conftest import BuildFn, World

TARGET_TRACKING = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: e2e}
spec:
  streamGroups: {ids: [GROUP_ID]}
  defaults: {minCapacity: 0, maxCapacity: 40}
  policy:
    plugin: target-tracking
    params: {targetUtilization: 0.5}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 600
      policies: [{type: Percent, value: 100, periodSeconds: 60}]
"""


async def _tick(built: object, world: World, seconds: float = 60.0) -> object:
    world.clock.advance(seconds)
    world.emulator.model.advance()
    return await built.controller.tick()  # type: ignore[attr-defined]


async def test_demand_rise_raises_capacity_within_lead_time(
    world: World, controller_for: BuildFn
) -> None:
    policy = world.policy_file(TARGET_TRACKING)
    async with controller_for(policy) as built:
        world.start_sessions(10)
        # lead time for a Linux class: ~60 s × 1.8 + one 60 s interval ≈ 170 s → 3 ticks
        for _ in range(3):
            report = await _tick(built, world)
        location = world.location()
        assert location.always_on >= 20, report  # 10 sessions at 50 % target
        assert location.always_on % 2 == 0  # gen4n_high tenancy 2
        assert location.allocated >= 20 or location.requested >= 20


async def test_demand_fall_waits_for_stabilisation_window(
    world: World, controller_for: BuildFn
) -> None:
    policy = world.policy_file(TARGET_TRACKING)
    async with controller_for(policy) as built:
        sessions = world.start_sessions(10)
        for _ in range(3):
            await _tick(built, world)
        high = world.location().always_on
        assert high >= 20
        world.terminate(sessions)
        # within the 600 s window: no scale-down
        for _ in range(5):
            await _tick(built, world)
            assert world.location().always_on == high
        # after the window: capacity falls
        for _ in range(8):
            await _tick(built, world)
        assert world.location().always_on < high


async def test_dry_run_and_plan_make_no_mutating_call(
    world: World, controller_for: BuildFn
) -> None:
    policy = world.policy_file(TARGET_TRACKING)
    world.start_sessions(10)
    async with controller_for(policy, dry_run=True) as built:
        assert not hasattr(built.controller._actuator._writer, "update_stream_group")
        for _ in range(4):
            report = await _tick(built, world)
    decision = report.groups[0].decision  # type: ignore[attr-defined]
    assert decision is not None
    assert decision.locations[0].decided.always_on >= 10  # it would scale up...
    assert world.mutating_calls() == 0  # ...but sent nothing
    assert world.location().always_on == 2


async def test_group_not_active_is_skipped_with_reason(
    world: World, controller_for: BuildFn
) -> None:
    policy = world.policy_file(TARGET_TRACKING)
    world.emulator.model.force_group_status(world.group_id, "ERROR", "internalError")
    async with controller_for(policy) as built:
        report = await _tick(built, world)
    group = report.groups[0]  # type: ignore[attr-defined]
    assert group.decision is not None
    assert group.decision.frozen
    assert any("ERROR" in v.reason for v in group.decision.vetoes)
    assert world.mutating_calls() == 0


async def test_throttled_sample_never_scales_down(world: World, controller_for: BuildFn) -> None:
    policy = world.policy_file(TARGET_TRACKING)
    async with controller_for(policy) as built:
        sessions = world.start_sessions(10)
        for _ in range(3):
            await _tick(built, world)
        high = world.location().always_on
        world.terminate(sessions)
        world.emulator.set_faults({"throttle_probability": {"ListStreamSessions": 1.0}})
        for _ in range(20):  # far past the stabilisation window
            report = await _tick(built, world)
            assert world.location().always_on == high
        group = report.groups[0]  # type: ignore[attr-defined]
        assert not group.sample.complete
        assert any("ThrottlingException" in p for p in group.sample.problems)


async def test_restart_keeps_history_and_does_not_repeat_a_change(
    world: World, controller_for: BuildFn, tmp_path: Path
) -> None:
    policy = world.policy_file(TARGET_TRACKING)
    world.start_sessions(10)
    async with controller_for(policy) as built:
        for _ in range(3):
            await _tick(built, world)
        rows_before = len(built.store.history(world.group_id, "us-west-2", since=0))
    updates_before = world.mutating_calls()
    assert updates_before >= 1
    async with controller_for(policy) as built:
        history = built.store.history(world.group_id, "us-west-2", since=0)
        assert len(history) == rows_before  # history survived the restart
        await _tick(built, world)
        assert len(built.store.history(world.group_id, "us-west-2", since=0)) == rows_before + 1
    assert world.mutating_calls() == updates_before  # nothing re-applied


async def test_paused_group_holds_capacity_and_pause_survives_restart(
    world: World, controller_for: BuildFn
) -> None:
    policy = world.policy_file(TARGET_TRACKING)
    world.start_sessions(10)
    async with controller_for(policy) as built:
        built.controller.set_paused(True, world.group_id)
        for _ in range(3):
            report = await _tick(built, world)
        decision = report.groups[0].decision  # type: ignore[attr-defined]
        assert decision.frozen
        assert any(v.guard == "pause" for v in decision.vetoes)
    assert world.mutating_calls() == 0
    async with controller_for(policy) as built:
        assert built.controller.is_paused(world.group_id)  # persisted in the store
        built.controller.set_paused(False, world.group_id)
        for _ in range(2):
            await _tick(built, world)
    assert world.location().always_on >= 10


SLO_FEEDBACK = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: e2e}
spec:
  streamGroups: {ids: [GROUP_ID]}
  defaults: {minCapacity: 0, maxCapacity: 40}
  policy:
    plugin: slo
    params: {feedbackWindowSeconds: 86400, feedbackIntegralDays: 7}
"""


async def test_the_miss_budget_in_force_is_recorded_with_the_next_sample(
    world: World, controller_for: BuildFn
) -> None:
    # The slo policy's integral loop learns from the budget that produced the misses it
    # measures, so the controller stores the budget of each live decision with the next
    # sample, and nothing where no decision of the policy acted (dry run, pause, restart).
    policy = world.policy_file(SLO_FEEDBACK)
    world.start_sessions(4)
    nominal = 0.5 * 0.01  # missBudgetShare × (1 − slo.instant), the code's defaults

    def factors(built: object) -> list[float]:
        h = built.store.history(world.group_id, "us-west-2", since=0)  # type: ignore[attr-defined]
        assert h.miss_budget is not None
        return [float(b) / nominal for b in h.miss_budget]

    async with controller_for(policy) as built:
        for _ in range(3):
            report = await _tick(built, world)
        decided = report.groups[0].decision  # type: ignore[attr-defined]
        assert "feedback ×" in decided.locations[0].reason
        first = factors(built)
        assert math.isnan(first[0])  # nothing decided before the first sample
        assert all(0.0 < f <= 1.0 + 1e-9 for f in first[1:]), first  # part-day: ≤ ×1
        built.controller.set_paused(True, world.group_id)
        await _tick(built, world)  # decides frozen: no budget acts
        built.controller.set_paused(False, world.group_id)
        await _tick(built, world)
        assert math.isnan(factors(built)[-1])
    async with controller_for(policy, dry_run=True) as built:
        await _tick(built, world)
        await _tick(built, world)
        assert math.isnan(factors(built)[-1])  # a dry run's budget never acted
    async with controller_for(policy) as built:
        await _tick(built, world)  # the restart's first sample: nothing known in force
        await _tick(built, world)
        after = factors(built)
        assert math.isnan(after[-2])
        assert 0.0 < after[-1] <= 1.0 + 1e-9


class _NoLease:
    """A lease backend nobody asks: an elector that never ran holds no lease."""


async def test_a_standby_records_no_budget(
    world: World, controller_for: BuildFn, tmp_path: Path
) -> None:
    # The budget in force is the leader's; a standby's own (from its own history) need not
    # equal it, and a loop that learnt from it would carry the error through a fail-over.
    # Beside a leader, the standby sees the capacity it would have set, so most of its ticks
    # want no change (no write refused): those must not record either.
    policy = world.policy_file(SLO_FEEDBACK)
    world.start_sessions(6)
    standby = LeaderElector(
        cast(LeaseBackend, _NoLease()),
        holder="standby",
        timing=LeaseTiming(duration_s=10.0, renew_every_s=3.0),
    )
    own_store = world.settings(policy).model_copy(update={"state_dir": tmp_path / "standby"})
    quiet = 0
    async with (
        controller_for(policy) as leader,
        build_controller(own_store, clock=world.clock, interval_s=60.0, elector=standby) as built,
    ):
        for _ in range(6):
            await _tick(leader, world)
            report = await built.controller.tick()
            actuation = report.groups[0].actuation
            quiet += actuation is not None and actuation.error is None
        h = built.store.history(world.group_id, "us-west-2", since=0)
        assert len(h) == 6
        assert h.miss_budget is not None
        assert np.isnan(h.miss_budget).all()
        led = leader.store.history(world.group_id, "us-west-2", since=0)  # type: ignore[attr-defined]
        assert led.miss_budget is not None
        assert np.isfinite(led.miss_budget[1:]).all()
    assert quiet >= 3  # the ticks this test is about
