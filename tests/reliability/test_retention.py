"""The daemon's database stays bounded: the controller prunes the history store to its
retention once an hour, from the tick that finds it due, and a failing prune never fails a
tick."""

from __future__ import annotations

import pytest

from autoscaler.store import HistoryStore
from tests.reliability.conftest import REGION, World, open_rig


def _rows(store: HistoryStore, group: str) -> int:
    return len(store.history(group, REGION, since=0.0).at)


async def test_samples_past_retention_are_pruned_hourly(world: World) -> None:
    world.start_sessions(world.group_a, 4)
    async with open_rig(world, [world.policy_file()]) as rig:
        rig.store.retention_s = 600.0
        await rig.tick(world, 1.0)  # prunes at once (nothing old yet)
        await rig.tick(world, 1800.0)
        assert _rows(rig.store, world.group_a) == 2  # not due again for an hour
        await rig.tick(world, 1800.0)
        assert _rows(rig.store, world.group_a) == 1  # due: only the newest is in retention


async def test_a_failing_prune_does_not_fail_the_tick(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_rig(world, [world.policy_file()]) as rig:

        def broken(now: float) -> int:
            raise OSError("disk full")

        monkeypatch.setattr(rig.store, "prune", broken)
        report = await rig.tick(world, 1.0)
    assert report.ok
