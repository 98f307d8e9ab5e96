"""The world changing under the controller: groups and locations in every non-ACTIVE status,
expired and deleted groups, a location removed by someone else, a ConflictException between
sample and update, capacity changed by hand (drift), clock jumps, and ended sessions from days
ago. Each time: the group is reported with the reason, retried on the next tick, and the
other group is unaffected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from autoscaler.domain.models import TickReport
from autoscaler.twin.model import LocationConfigInput, ModelParams
from tests.reliability.conftest import (
    REGION,
    SECOND,
    FaultProxy,
    World,
    group_report,
    make_world,
    open_rig,
    vetoes,
)
from tests.reliability.test_faults import scale_downs_on_incomplete_data


def _no_decrease(report: TickReport, group_id: str) -> bool:
    g = group_report(report, group_id)
    if g.decision is None:
        return True
    return all(
        d.decided.always_on >= d.current.always_on and d.decided.maximum >= d.current.maximum
        for d in g.decision.locations
    )


@pytest.mark.parametrize(
    "status",
    ["ACTIVATING", "UPDATING_LOCATIONS", "ACTIVE_WITH_ERRORS", "ERROR", "DELETING", "EXPIRED"],
)
async def test_group_not_active_is_frozen_with_reason_others_proceed(
    world: World, status: str
) -> None:
    policy = world.policy_file()
    world.start_sessions(world.group_a, 10)
    world.start_sessions(world.group_b, 10)
    before = world.location(world.group_a).always_on
    world.model.force_group_status(world.group_a, status, "forcedByTest")
    async with open_rig(world, [policy]) as rig:
        report = await rig.tick(world, 1.0)
    a = group_report(report, world.group_a)
    assert a.decision is not None
    assert a.decision.frozen
    assert any(status in v for v in vetoes(report, world.group_a))
    assert a.actuation is not None
    assert a.actuation.calls == ()
    if status == "EXPIRED":
        assert not a.sample.complete
        assert any("EXPIRED" in p for p in a.sample.problems)
    else:
        assert world.location(world.group_a).always_on == before
    assert world.location(world.group_b).always_on > 2


@pytest.mark.parametrize("status", ["ACTIVATING", "ERROR", "REMOVING"])
async def test_location_not_active_is_held(world: World, status: str) -> None:
    policy = world.policy_file()
    world.start_sessions(world.group_a, 6, location=REGION)
    world.model.force_location_status(world.group_a, SECOND, status)
    async with open_rig(world, [policy]) as rig:
        report = await rig.tick(world, 1.0)
    a = group_report(report, world.group_a)
    assert a.decision is not None
    reasons = vetoes(report, world.group_a)
    # the group itself leaves ACTIVE (UPDATING_LOCATIONS / ACTIVE_WITH_ERRORS): frozen
    assert a.decision.frozen, reasons
    assert any("capacity frozen" in r for r in reasons)
    second = next(d for d in a.decision.locations if d.location == SECOND)
    assert second.decided == second.current
    assert world.location(world.group_b).always_on >= 0  # B was sampled and decided
    assert group_report(report, world.group_b).decision is not None


async def test_group_deleted_under_us_is_skipped_every_tick_without_crash(world: World) -> None:
    policy = world.policy_file()
    world.start_sessions(world.group_b, 10)
    async with open_rig(world, [policy]) as rig:
        await rig.tick(world)
        world.model.delete_stream_group(world.group_a)
        report = await rig.tick(world, 1.0)  # DELETING
        assert group_report(report, world.group_a).decision.frozen
        for _ in range(3):  # gone (60 s later)
            report = await rig.tick(world)
            a = group_report(report, world.group_a)
            assert a.decision is None
            assert a.skipped == "group not found"
            assert group_report(report, world.group_b).decision is not None
    assert world.location(world.group_b).always_on > 2


async def test_location_removed_by_someone_else(world: World) -> None:
    policy = world.policy_file()
    world.start_sessions(world.group_a, 4, location=SECOND)
    async with open_rig(world, [policy]) as rig:
        for _ in range(2):
            await rig.tick(world)
        world.model.remove_stream_group_locations(world.group_a, [SECOND])
        report = await rig.tick(world, 1.0)  # REMOVING: the group is UPDATING_LOCATIONS
        assert group_report(report, world.group_a).decision.frozen
        for _ in range(3):  # gone after 120 s: the group is ACTIVE with one location
            report = await rig.tick(world)
        a = group_report(report, world.group_a)
        assert a.decision is not None
        assert not a.decision.frozen
        assert [d.location for d in a.decision.locations] == [REGION]
        assert report.ok


async def test_conflict_between_sample_and_update_is_retried_next_tick(
    world: World, proxy: FaultProxy
) -> None:
    """The group is read ACTIVE, then someone starts a location change: UpdateStreamGroup
    gets a real ConflictException from the service model."""
    policy = world.policy_file()
    world.start_sessions(world.group_a, 10)
    world.start_sessions(world.group_b, 10)
    armed = [True]
    path = f"/streamgroups/{world.group_a}"

    def race(p: str, body: dict[str, Any]) -> dict[str, Any]:
        if p == path and armed[0] and body.get("Status") == "ACTIVE":
            armed[0] = False
            world.model.force_group_status(world.group_a, "UPDATING_LOCATIONS")
        return body

    proxy.edit = race
    async with open_rig(world, [policy], endpoint_url=proxy.url) as rig:
        report = await rig.tick(world, 1.0)
        a = group_report(report, world.group_a)
        assert a.actuation is not None
        assert not a.actuation.applied
        assert a.actuation.retry_later
        assert "ConflictException" in (a.actuation.error or "")
        assert world.location(world.group_a).always_on == 2
        assert group_report(report, world.group_b).actuation.applied  # unaffected
        assert rig.store.pending_intents() == []
        world.model.force_group_status(world.group_a, "ACTIVE")
        report = await rig.tick(world)
        assert group_report(report, world.group_a).actuation.applied
        assert world.location(world.group_a).always_on > 2


async def test_drift_respected_for_its_cooldown_or_reverted(world: World) -> None:
    respect = world.policy_file(
        name="respect",
        groups=(world.group_a,),
        extra="drift: {action: respect, cooldownSeconds: 300}",
    )
    revert = world.policy_file(
        name="revert", groups=(world.group_b,), extra="drift: {action: revert}"
    )
    world.start_sessions(world.group_a, 6)
    world.start_sessions(world.group_b, 6)
    async with open_rig(world, [respect, revert]) as rig:
        for _ in range(3):
            await rig.tick(world)
        planned_a = world.location(world.group_a).always_on
        planned_b = world.location(world.group_b).always_on
        by_hand = [LocationConfigInput(REGION, always_on=30, target_idle=0, maximum=40)]
        world.model.update_stream_group(world.group_a, locations=by_hand)
        world.model.update_stream_group(world.group_b, locations=by_hand)
        report = await rig.tick(world)
        assert any(
            "drift: capacity changed outside" in v and "respected" in v
            for v in vetoes(report, world.group_a)
        )
        assert world.location(world.group_a).always_on == 30  # respected
        assert any("reverting to the plan" in v for v in vetoes(report, world.group_b))
        assert world.location(world.group_b).always_on == planned_b  # reverted
        seen: list[str] = []
        for _ in range(6):  # past the 300 s cooldown: the controller resumes
            report = await rig.tick(world)
            seen += vetoes(report, world.group_a)
        assert any("drift cooldown over, resuming" in v for v in seen)
        assert world.location(world.group_a).always_on < 30
        assert planned_a > 2


async def test_clock_jumps_back_and_far_forward(world: World) -> None:
    policy = world.policy_file()
    world.start_sessions(world.group_a, 10)
    world.start_sessions(world.group_b, 10)
    async with open_rig(world, [policy]) as rig:
        for _ in range(3):
            await rig.tick(world)
        capacity = {g: world.location(g).always_on for g in (world.group_a, world.group_b)}
        start = world.clock.now()
        world.clock.set(start - 86400.0)  # a day back
        for _ in range(2):
            report = await rig.tick(world)
            for g in (world.group_a, world.group_b):
                assert _no_decrease(report, g)
        world.clock.set(start + 30 * 86400.0)  # a month forward: every session has ended
        report = await rig.tick(world)
        for g in (world.group_a, world.group_b):
            assert _no_decrease(report, g), vetoes(report, g)
            ls = group_report(report, g).sample.locations[0]
            assert ls.arrivals == 0  # not "every session since a month" as new demand
            assert world.location(g).always_on == capacity[g]
        # afterwards the controller follows demand (down) at its normal pace
        for _ in range(5):
            report = await rig.tick(world)
        assert world.location(world.group_b).always_on < capacity[world.group_b]


@pytest.fixture
async def old_world(tmp_path: Path) -> AsyncIterator[World]:
    async for w in make_world(tmp_path, ModelParams(ended_session_retention_s=30 * 86400.0)):
        yield w


async def test_sessions_ended_days_ago_are_not_demand(old_world: World) -> None:
    world = old_world
    world.start_sessions(world.group_b, 30, end_after_s=120.0)
    world.advance(3 * 86400.0)  # ended three days ago, still listed
    listed = world.model.list_stream_sessions(world.group_b)
    assert len(listed) == 30
    assert all(s.status in ("TERMINATED", "ERROR") for s in listed)
    policy = world.policy_file(groups=(world.group_b,))
    async with open_rig(world, [policy]) as rig:
        for _ in range(3):
            report = await rig.tick(world)
            ls = group_report(report, world.group_b).sample.locations[0]
            assert (ls.in_use, ls.waiting, ls.arrivals, ls.departures) == (0, 0, 0, 0)
            assert scale_downs_on_incomplete_data(report) == []
    assert world.location(world.group_b).always_on <= 2
