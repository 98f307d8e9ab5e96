"""``autoscaler plan`` against the emulator: a readable answer, JSON for scripts, no mutation."""

from __future__ import annotations

import asyncio
import json

import pytest

from autoscaler.cli import main
from tests.e2e.conftest import World

POLICY = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: plan-test}
spec:
  streamGroups: {ids: [GROUP_ID]}
  defaults: {minCapacity: 0, maxCapacity: 40}
  policy: {plugin: target-tracking, params: {targetUtilization: 0.5}}
"""


async def _plan(world: World, *extra: str) -> int:
    policy = world.policy_file(POLICY)
    argv = [
        "plan",
        "--policy",
        str(policy),
        "--endpoint-url",
        world.url,
        "--region",
        "us-west-2",
        *extra,
    ]
    # the command runs its own event loop: give it a thread so the emulator keeps serving
    return await asyncio.to_thread(main, argv)


@pytest.fixture(autouse=True)
def state_dir(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSCALER_STATE_DIR", str(world.tmp / "state"))
    monkeypatch.chdir(world.tmp)  # no stray .env from the developer's checkout


async def test_plan_json_proposes_without_changing_anything(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.start_sessions(10)
    world.clock.advance(30)
    assert await _plan(world, "--output", "json") == 0
    out = json.loads(capsys.readouterr().out)
    row = out["plan"][0]
    assert row["group"] == world.group_id
    assert row["in_use"] + 0 >= 0
    assert row["proposed"]["always_on"] >= 20  # 10 sessions at 50 % → 20 slots proposed
    assert world.mutating_calls() == 0
    assert world.location().always_on == 2


async def test_plan_table_names_every_column(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _plan(world) == 0
    text = capsys.readouterr().out
    for header in ("group", "location", "current", "in use", "forecast", "proposed", "decided"):
        assert header in text
    assert "dry run: nothing was changed" in text
    assert world.mutating_calls() == 0
