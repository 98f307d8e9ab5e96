"""Location lifecycle end to end: the real controller over HTTP against the emulator on a
manual clock (content replication: 600 s ACTIVATING, the service model's default).

The world's clock is set to 2026-01-01 00:10 or 00:15 UTC; the policy's window runs
00:30-00:40 UTC every day. The add lead is 600 s activation + 168 s capacity lead
(gen4n_high, 60 s ticks).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tests.e2e.conftest import REGION, BuildFn, World

EXTRA = "us-east-1"
WINDOW_START = datetime(2026, 1, 1, 0, 30, tzinfo=UTC).timestamp()
WINDOW_END = WINDOW_START + 600

POLICY = f"""
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {{name: lifecycle}}
spec:
  streamGroups: {{ids: [GROUP_ID]}}
  defaults: {{minCapacity: 0, maxCapacity: 40}}
  policy:
    plugin: target-tracking
    params: {{targetUtilization: 0.5}}
  locationLifecycle:
    removeAfterIdleSeconds: 1800
    candidates:
      - location: {EXTRA}
        capacity: {{alwaysOn: 2, maximum: 10}}
        addWhen:
          schedules: [{{cron: "30 0 * * *", timeZone: UTC, durationSeconds: 600}}]
      - location: {REGION}          # the primary: listed, idle, never removed
        capacity: {{maximum: 10}}
"""


def _locations(world: World) -> dict[str, Any]:
    view = world.emulator.model.get_stream_group(world.group_id)
    return {loc.name: loc for loc in view.locations}


def _calls(world: World, op: str) -> int:
    calls = world.emulator.calls.to_json()
    entry = calls.get("operations", calls).get(op)
    if isinstance(entry, dict):
        return int(entry.get("accepted", 0)) + int(entry.get("rejected", 0))
    return int(entry or 0)


async def _tick_until(built: Any, world: World, until: float, step: float = 60.0) -> list[Any]:
    """Tick every ``step`` seconds (on whole steps) until the clock reaches ``until``."""
    reports = []
    while world.clock.now() < until:
        world.clock.advance(step - world.clock.now() % step)
        world.emulator.model.advance()
        reports.append(await built.controller.tick())
    return reports


def _changes(reports: list[Any]) -> list[tuple[float, str, str]]:
    return [
        (r.at, c.action, c.location)
        for r in reports
        for g in r.groups
        if g.decision is not None and g.actuation is not None and g.actuation.applied
        for c in g.decision.location_changes
    ]


async def test_window_adds_the_location_in_time_and_idle_removes_it(
    world: World, controller_for: BuildFn
) -> None:
    async with controller_for(world.policy_file(POLICY)) as built:
        world.clock.set(WINDOW_START - 1200)  # skip the quiet start (fewer HTTP round trips)
        reports = await _tick_until(built, world, WINDOW_START - 840)
        assert EXTRA not in _locations(world)  # too early: nothing asked yet
        reports += await _tick_until(built, world, WINDOW_START)
        ((added_at, action, where),) = _changes(reports)
        assert (action, where) == ("add", EXTRA)
        assert WINDOW_START - 768 <= added_at <= WINDOW_START - 600
        extra = _locations(world)[EXTRA]
        assert extra.status == "ACTIVE"  # ready when the window opens
        assert (extra.always_on, extra.maximum) == (2, 10)

        # Idle since it was added (00:18): not removed inside the window, nor before 1800 s.
        # Every tick is made: a hole of more than three intervals is a stretch nobody watched,
        # which never counts as idle.
        reports = await _tick_until(built, world, added_at + 1800 - 300)
        assert _changes(reports) == []
        assert world.clock.now() > WINDOW_END  # ticked past the window, still idle < 1800 s
        assert _locations(world)[EXTRA].status == "ACTIVE"
        reports = await _tick_until(built, world, added_at + 1800 + 300)
        ((removed_at, action, where),) = _changes(reports)
        assert (action, where) == ("remove", EXTRA)
        assert removed_at >= WINDOW_END
    assert REGION in _locations(world)  # the primary was never touched
    assert _calls(world, "RemoveStreamGroupLocations") == 1


async def test_location_with_a_live_session_is_never_removed(
    world: World, controller_for: BuildFn
) -> None:
    async with controller_for(world.policy_file(POLICY)) as built:
        world.clock.set(WINDOW_START - 900)
        await _tick_until(built, world, WINDOW_START)
        assert _locations(world)[EXTRA].status == "ACTIVE"
        world.emulator.model.start_stream_session(
            world.group_id, application_identifier=world.app_id, locations=[EXTRA]
        )
        # Two idle times past the window, every tick made (holes would not count as idle).
        reports = await _tick_until(built, world, WINDOW_END + 2 * 1800)
        assert [c for c in _changes(reports) if c[1] == "remove"] == []
        assert EXTRA in _locations(world)
        last = reports[-1].groups[0]
        assert last.sample.complete
        assert {ls.location: ls.in_use for ls in last.sample.locations}[EXTRA] == 1
    assert _calls(world, "RemoveStreamGroupLocations") == 0
