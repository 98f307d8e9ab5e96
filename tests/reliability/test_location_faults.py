"""Location adds and removals when the service misbehaves, against the emulator: a location in
ERROR (the group ACTIVE_WITH_ERRORS, frozen), a plan that lands only in part, and the removed
location's history (its demand and spend still count).

Found by a review: before, a location in ERROR froze the whole group for good (the guards
kept its removal, but a frozen decision sent nothing, and the lifecycle waited an hour of
idleness, or forever while a window ran); a throttled UpdateStreamGroup beside an accepted
AddStreamGroupLocations was recorded as applied and read back as drift for 30 minutes.
"""

from __future__ import annotations

from autoscaler.store import Outcome
from tests.reliability.conftest import (
    REGION,
    SECOND,
    FaultProxy,
    World,
    group_report,
    open_rig,
    vetoes,
)

CANDIDATE = """
locationLifecycle:
  removeAfterIdleSeconds: 3600
  candidates:
    - location: us-east-1
      capacity: {alwaysOn: 0, targetIdle: 0, maximum: 4}
"""

ALL_DAY = (
    '      addWhen: {schedules: [{cron: "0 0 * * *", timeZone: UTC, durationSeconds: 86400}]}\n'
)

# A candidate added for the whole day: the first tick adds it.
EU_ALL_DAY = (
    "locationLifecycle:\n"
    "  candidates:\n"
    "    - location: eu-central-1\n"
    "      capacity: {alwaysOn: 2, targetIdle: 0, maximum: 4}\n" + ALL_DAY
)


async def test_a_location_in_error_is_removed_at_once_and_the_group_thaws(world: World) -> None:
    path = world.policy_file(groups=(world.group_a,), extra=CANDIDATE)
    world.start_sessions(world.group_a, 3)  # at the primary: it keeps serving
    async with open_rig(world, [path]) as rig:
        await rig.tick(world)
        world.model.force_location_status(world.group_a, SECOND, "ERROR")
        assert world.model.get_stream_group(world.group_a).status == "ACTIVE_WITH_ERRORS"
        report = await rig.tick(world)
        a = group_report(report, world.group_a)
        assert a.decision.frozen  # capacity is held while the group has errors...
        assert [(c.location, c.action) for c in a.decision.location_changes] == [(SECOND, "remove")]
        assert "in ERROR" in a.decision.location_changes[0].reason
        # ...but the way out is sent, journaled like any write, at the first tick
        assert a.actuation.calls == a.actuation.succeeded == ("RemoveStreamGroupLocations",)
        assert world.calls("RemoveStreamGroupLocations") == 1
        for _ in range(15):
            report = await rig.tick(world)
        view = world.model.get_stream_group(world.group_a)
        assert view.status == "ACTIVE"
        assert [loc.name for loc in view.locations] == [REGION]
        assert not group_report(report, world.group_a).decision.frozen
        # The removed location's history still reaches the planner (its spend this month,
        # the demand it served)...
        sample = group_report(report, world.group_a).sample
        assert [ls.location for ls in sample.locations] == [REGION]
        policy = rig.controller._policies[0]
        assert set(rig.controller._histories(sample, policy)) == {REGION, SECOND}
    async with open_rig(world, [path]) as again:  # ...also after a restart on the same store
        report = await again.tick(world)
        sample = group_report(report, world.group_a).sample
        policy = again.controller._policies[0]
        assert set(again.controller._histories(sample, policy)) == {REGION, SECOND}


async def test_a_location_in_error_is_removed_even_while_its_window_runs_then_added_back(
    world: World,
) -> None:
    path = world.policy_file(groups=(world.group_a,), extra=CANDIDATE + ALL_DAY)
    async with open_rig(world, [path]) as rig:
        await rig.tick(world)
        world.model.force_location_status(world.group_a, SECOND, "ERROR")
        report = await rig.tick(world)
        change = group_report(report, world.group_a).decision.location_changes[0]
        assert (change.action, change.location) == ("remove", SECOND)
        assert "added again once the group is ACTIVE (window" in change.reason
        for _ in range(20):
            report = await rig.tick(world)
        # remove, then add again: the service's documented remedy for a failed location
        assert world.calls("RemoveStreamGroupLocations") == 1
        assert world.calls("AddStreamGroupLocations") == 1
        assert SECOND in [loc.name for loc in world.model.get_stream_group(world.group_a).locations]


async def test_a_location_in_error_with_sessions_is_not_removed(world: World) -> None:
    path = world.policy_file(groups=(world.group_a,), extra=CANDIDATE)
    world.start_sessions(world.group_a, 2, location=SECOND)
    async with open_rig(world, [path]) as rig:
        for _ in range(3):
            await rig.tick(world)
        second = world.location(world.group_a, SECOND)
        assert second.allocated - second.idle == 2  # the sessions hold slots there
        world.model.force_location_status(world.group_a, SECOND, "ERROR")
        for _ in range(3):
            report = await rig.tick(world)
        assert world.calls("RemoveStreamGroupLocations") == 0
        assert group_report(report, world.group_a).decision.frozen


async def test_a_plan_that_lands_in_part_is_recorded_in_part(world: World) -> None:
    path = world.policy_file(groups=(world.group_a,), extra=EU_ALL_DAY)
    world.start_sessions(world.group_a, 20)
    proxy = FaultProxy(world.emulator)
    await proxy.start()
    throttled: list[bool] = []

    def fault(method: str, path: str, query: object) -> str | None:
        # The first capacity update of group A is throttled; its location add goes through.
        if method == "PATCH" and path == f"/streamgroups/{world.group_a}" and not throttled:
            throttled.append(True)
            return "ThrottlingException"
        return None

    proxy.fault = fault
    try:
        async with open_rig(world, [path], endpoint_url=proxy.url) as rig:
            report = await rig.tick(world)
            a = group_report(report, world.group_a)
            assert throttled
            assert a.actuation.succeeded == ("AddStreamGroupLocations",)
            assert a.actuation.error is not None
            assert "UpdateStreamGroup" in a.actuation.error
            journal = rig.store._db.execute("SELECT status, detail FROM outcomes").fetchall()
            assert journal == [
                (Outcome.FAILED.value, journal[0][1]),
            ]
            assert journal[0][1].startswith("partly applied (AddStreamGroupLocations went")
            # The primary kept its old setting: nothing to read back as drift later.
            seen = []
            for _ in range(20):
                report = await rig.tick(world)
                seen += vetoes(report, world.group_a)
            assert not [v for v in seen if "outside the controller" in v], seen
    finally:
        await proxy.stop()


async def test_an_add_whose_reply_was_lost_is_recorded_as_landed(world: World) -> None:
    """The add lands, its reply is lost (a 500 after the service acted), the SDK's retry is
    refused: the location is there as asked, so the tick records it applied, not failed (which
    the next tick would have read as a location someone else added)."""
    path = world.policy_file(groups=(world.group_a,), extra=EU_ALL_DAY)
    world.emulator.set_faults({"lost_reply_probability": {"AddStreamGroupLocations": 1.0}})
    async with open_rig(world, [path], max_attempts=3) as rig:  # the SDK's default retries
        report = await rig.tick(world)
        a = group_report(report, world.group_a)
        assert "AddStreamGroupLocations" in a.actuation.succeeded
        assert a.actuation.error is None
        assert world.calls("AddStreamGroupLocations") == 2  # the lost reply, the refused retry
        assert world.emulator.calls["AddStreamGroupLocations"].lost_replies == 1
        journal = rig.store._db.execute("SELECT status FROM outcomes").fetchall()
        assert {status for (status,) in journal} == {Outcome.APPLIED.value}
        for _ in range(5):
            report = await rig.tick(world)
        assert world.calls("AddStreamGroupLocations") == 2  # not added again
        added = world.location(world.group_a, "eu-central-1")
        assert (added.always_on, added.maximum) == (2, 4)
