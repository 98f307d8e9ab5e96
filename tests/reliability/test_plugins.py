"""A policy plugin that raises, answers nonsense or hangs costs its own group one plan: the group
holds its capacity, the report says why, the fallback applies after the threshold, and the
other group (another policy, a sane plugin) scales as usual, through the real HTTP path."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from autoscaler.domain.models import CapacitySetting, Recommendation
from autoscaler.policy.plugin import PluginRegistry, PolicyContext
from tests.reliability.conftest import REGION, World, group_report, open_rig

FALLBACK = """
fallback: {failureThreshold: 2, behavior: static, alwaysOn: 6, maximum: 40}
"""


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class _Bad:
    """Answers ``answer(ctx)``; ``name`` is what reports quote."""

    name: str
    answer: Any
    Params: ClassVar[type[BaseModel]] = _NoParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        result: Recommendation = self.answer(ctx)
        return result


def _raise(ctx: PolicyContext) -> Recommendation:
    raise ZeroDivisionError("plugin bug")


def _setting(always_on: float) -> Any:
    return lambda ctx: Recommendation(
        setting=CapacitySetting(always_on=always_on, target_idle=0, maximum=40),  # type: ignore[arg-type]
        reason="nonsense",
    )


def _exit(ctx: PolicyContext) -> Recommendation:
    raise SystemExit(3)


def _registry(plugin: _Bad) -> PluginRegistry:
    registry = PluginRegistry()
    registry.register(plugin.name, plugin)
    return registry


async def _run_bad_plugin(world: World, plugin: _Bad, ticks: int, **options: Any) -> list[Any]:
    bad = world.policy_file(
        name="bad", groups=(world.group_a,), plugin=plugin.name, params="{}", extra=FALLBACK
    )
    good = world.policy_file(name="good", groups=(world.group_b,))
    world.start_sessions(world.group_a, 10)
    world.start_sessions(world.group_b, 10)
    reports = []
    async with open_rig(world, [bad, good], registry=_registry(plugin), **options) as rig:
        for _ in range(ticks):
            reports.append(await rig.tick(world))
    return reports


@pytest.mark.parametrize(
    ("name", "answer", "why"),
    [
        ("raiser", _raise, "raised ZeroDivisionError: plugin bug"),
        ("negative", _setting(-4), "always_on is negative"),
        ("nan", _setting(math.nan), "always_on is nan"),
        ("huge", _setting(10**9), "more than 10× the location's maximum bound"),
        ("wrong-type", lambda ctx: {"always_on": 4}, "returned dict, not a Recommendation"),
        ("exits", _exit, "SystemExit raised: 3"),
    ],
)
async def test_broken_plugin_holds_its_group_only(
    world: World, name: str, answer: Any, why: str
) -> None:
    reports = await _run_bad_plugin(world, _Bad(name, answer), ticks=3)
    first = group_report(reports[0], world.group_a)
    assert first.decision is not None
    held = {d.location: d for d in first.decision.locations}
    assert held[REGION].decided == held[REGION].current  # hold on the first failure
    problems = " ".join(d.reason for d in first.decision.locations)
    assert why in problems, problems
    # after failureThreshold (2) failed ticks in a row the static fallback raises always-on
    last = group_report(reports[-1], world.group_a)
    assert any(v.guard == "fallback" for v in last.decision.vetoes)
    assert world.location(world.group_a).always_on == 6
    # the other group scaled for its 10 sessions at 50 % utilisation
    assert world.location(world.group_b).always_on >= 20


async def test_hanging_plugin_times_out_without_blocking_the_loop(world: World) -> None:
    release = threading.Event()
    calls: list[float] = []

    def hang(ctx: PolicyContext) -> Recommendation:
        calls.append(time.monotonic())
        release.wait(30)  # a stuck plugin (time.sleep / an endless loop in real life)
        raise TimeoutError("released by the test")

    plugin = _Bad("hangs", hang)
    bad = world.policy_file(
        name="bad", groups=(world.group_a,), plugin=plugin.name, params="{}", extra=FALLBACK
    )
    good = world.policy_file(name="good", groups=(world.group_b,))
    world.start_sessions(world.group_b, 10)
    try:
        async with open_rig(
            world, [bad, good], registry=_registry(plugin), plugin_timeout_s=0.3
        ) as rig:
            started = time.monotonic()
            first = await rig.tick(world)
            assert time.monotonic() - started < 3.0  # bounded by the deadline, not the plugin
            a = group_report(first, world.group_a)
            reasons = " ".join(d.reason for d in a.decision.locations)
            assert "no decision within the 0.3 s deadline" in reasons
            assert all(d.decided == d.current for d in a.decision.locations)
            # the still-running call is not repeated: one leaked thread per group at most
            second = await rig.tick(world)
            a = group_report(second, world.group_a)
            reasons = " ".join(d.reason for d in a.decision.locations)
            assert "still running" in reasons
            assert len(calls) == 1  # stuck in the first location: asked once in two ticks
            third = await rig.tick(world)
            assert world.location(world.group_a).always_on == 6  # fallback after 2 failures
            assert any(
                v.guard == "fallback" for v in group_report(third, world.group_a).decision.vetoes
            )
            assert world.location(world.group_b).always_on >= 20  # never blocked
            # once the stuck call returns, the plugin is asked again
            release.set()
            deadline = time.monotonic() + 5
            while not all(t.name != f"plan-{world.group_a}" for t in threading.enumerate()):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            await rig.tick(world)
            assert len(calls) == 4
    finally:
        release.set()
