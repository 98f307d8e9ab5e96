"""Faults on the wire: throttling storms, 5xx, timeouts, a page failing midway, ticks slower than
the interval. The real controller talks HTTP to the emulator (directly, or through the fault
proxy when only one group or one page must fail); the invariant checked everywhere is that a
group whose data is incomplete is never scaled down, and that the other group is unaffected."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

import pytest

from autoscaler.domain.models import TickReport
from autoscaler.metrics import MetricsSink
from autoscaler.service import Health, TickLoop
from tests.reliability.conftest import (
    FaultProxy,
    World,
    group_report,
    open_rig,
    sessions_path,
)


def scale_downs_on_incomplete_data(report: TickReport) -> list[str]:
    """Every location decided below its current capacity while its group's data was
    incomplete (must always be empty)."""
    bad: list[str] = []
    for g in report.groups:
        if g.decision is None or g.sample.complete:
            continue
        for d in g.decision.locations:
            cur, dec = d.current, d.decided
            if (
                dec.always_on < cur.always_on
                or dec.target_idle < cur.target_idle
                or dec.maximum < cur.maximum
            ):
                bad.append(f"{g.group_id}/{d.location}: {cur} -> {dec}")
    return bad


async def _raise_both(world: World, rig: object) -> tuple[int, int]:
    """Ten sessions on each group, ticks until both scaled up; returns their always-on."""
    world.start_sessions(world.group_a, 10)
    world.start_sessions(world.group_b, 10)
    for _ in range(3):
        await rig.tick(world)  # type: ignore[attr-defined]
    return world.location(world.group_a).always_on, world.location(world.group_b).always_on


async def test_throttling_one_group_holds_it_while_the_other_scales(
    world: World, proxy: FaultProxy
) -> None:
    policy = world.policy_file()
    a_sessions = world.start_sessions(world.group_a, 10)
    world.start_sessions(world.group_b, 10)
    async with open_rig(world, [policy], endpoint_url=proxy.url, max_attempts=2) as rig:
        for _ in range(3):
            await rig.tick(world)
        high_a = world.location(world.group_a).always_on
        high_b = world.location(world.group_b).always_on
        assert high_a >= 20
        # demand leaves group A, arrives at group B; A's session listings are throttled
        world.terminate(world.group_a, a_sessions)
        world.start_sessions(world.group_b, 10)
        throttled = sessions_path(world.group_a)
        proxy.fault = lambda m, path, q: "ThrottlingException" if path == throttled else None
        for _ in range(5):  # well past the 120 s stabilisation window
            started = time.monotonic()
            report = await rig.tick(world)
            assert time.monotonic() - started < 10.0  # bounded: 2 attempts, capped backoff
            assert scale_downs_on_incomplete_data(report) == []
            a = group_report(report, world.group_a)
            assert not a.sample.complete
            assert any("ThrottlingException" in p for p in a.sample.problems)
            assert any(v.guard == "stale" for v in a.decision.vetoes)
            assert group_report(report, world.group_b).sample.complete
            assert not report.ok
        assert world.location(world.group_a).always_on == high_a  # held
        assert world.location(world.group_b).always_on > high_b  # proceeded
        # each throttled listing was retried once by botocore (2 attempts per call)
        listings_a = [p for p, _ in proxy.seen if p == throttled]
        assert len(listings_a) == 3 + 5 * 2
        # once the storm passes, A follows demand down again
        proxy.fault = None
        for _ in range(4):
            await rig.tick(world)
        assert world.location(world.group_a).always_on < high_a


@pytest.mark.slow
async def test_per_operation_quota_storm_adaptive_retries(world: World) -> None:
    """AWS-like quotas plus a tight ListStreamSessions quota (one call per simulated minute
    for two groups): each tick one listing is throttled; adaptive retries back off, ticks stay
    bounded, and no group is ever scaled down on the throttled tick."""
    policy = world.policy_file()
    async with open_rig(world, [policy], retry_mode="adaptive", max_attempts=2) as rig:
        await _raise_both(world, rig)
        world.emulator.set_faults(
            {"aws_rate_limits": True, "rate_limits": {"ListStreamSessions": 1 / 60}}
        )
        for sid in world.model.list_stream_sessions(world.group_a):
            if sid.status not in ("TERMINATED", "ERROR"):
                world.model.terminate_stream_session(world.group_a, sid.session_id)
        incomplete = 0
        for _ in range(4):
            started = time.monotonic()
            report = await rig.tick(world)
            assert time.monotonic() - started < 8.0
            assert scale_downs_on_incomplete_data(report) == []
            incomplete += sum(1 for g in report.groups if not g.sample.complete)
        assert incomplete >= 4  # the quota really bit, every tick
        stats = world.emulator.calls.to_json()["operations"]["ListStreamSessions"]
        assert stats["throttled"] >= 8  # each throttled listing was retried
    world.emulator.set_faults({"aws_rate_limits": False, "rate_limits": {}})


async def test_5xx_on_reads_skips_or_holds_and_on_writes_retries_next_tick(world: World) -> None:
    policy = world.policy_file()
    async with open_rig(world, [policy]) as rig:
        world.emulator.set_faults({"error_probability": {"GetStreamGroup": 1.0}})
        report = await rig.tick(world)
        for g in report.groups:
            assert g.decision is None
            assert g.skipped is not None
            assert "InternalServerException" in g.skipped
        world.emulator.set_faults({"error_probability": {"GetStreamGroup": 0.0}})
        # writes fail: the decision is reported with retry_later and journaled as failed
        world.start_sessions(world.group_b, 10)
        world.emulator.set_faults({"error_probability": {"UpdateStreamGroup": 1.0}})
        report = await rig.tick(world)
        b = group_report(report, world.group_b)
        assert b.actuation is not None
        assert not b.actuation.applied
        assert b.actuation.retry_later
        assert "InternalServerException" in (b.actuation.error or "")
        assert world.location(world.group_b).always_on == 2
        assert rig.store.pending_intents() == []  # every intent has an outcome
        failed = rig.store.last_applied(world.group_b)
        assert failed is None  # nothing was recorded as applied
        # the next tick, with the fault gone, applies it
        world.emulator.set_faults({"error_probability": {"UpdateStreamGroup": 0.0}})
        await rig.tick(world)
        assert world.location(world.group_b).always_on > 2


async def test_read_timeout_makes_the_sample_incomplete(world: World) -> None:
    policy = world.policy_file()
    async with open_rig(world, [policy], read_timeout_s=0.3) as rig:
        high_a, _ = await _raise_both(world, rig)
        for s in world.model.list_stream_sessions(world.group_a):
            if s.status not in ("TERMINATED", "ERROR"):
                world.model.terminate_stream_session(world.group_a, s.session_id)
        world.emulator.set_faults({"latency_s": {"ListStreamSessions": 0.6}})
        for _ in range(3):
            report = await rig.tick(world)
            assert scale_downs_on_incomplete_data(report) == []
            for g in report.groups:
                assert not g.sample.complete
                assert any("Timeout" in p for p in g.sample.problems), g.sample.problems
        assert world.location(world.group_a).always_on == high_a
    world.emulator.set_faults({"latency_s": {"ListStreamSessions": 0.0}})


async def test_write_timeout_is_retried_once_on_the_next_tick(world: World) -> None:
    """The update times out (the emulator, like a load balancer, drops the request when the
    client hangs up): the controller reports a retryable failure, the journal closes the
    intent, the next tick re-reads the group and sends it again, and once it landed nothing
    is sent any more."""
    policy = world.policy_file(groups=(world.group_b,))
    async with open_rig(world, [policy], read_timeout_s=0.3) as rig:
        world.start_sessions(world.group_b, 10)
        world.emulator.set_faults({"latency_s": {"UpdateStreamGroup": 0.6}})
        report = await rig.tick(world)
        b = group_report(report, world.group_b)
        assert b.actuation is not None
        assert b.actuation.retry_later
        assert "Timeout" in (b.actuation.error or "")
        assert rig.store.pending_intents() == []
        await asyncio.sleep(0.5)  # the emulator gives up on the request it was sent
        assert world.location(world.group_b).always_on == 2
        world.emulator.set_faults({"latency_s": {"UpdateStreamGroup": 0.0}})
        await rig.tick(world)
        applied = world.location(world.group_b).always_on
        assert applied > 2
        sent = world.calls("UpdateStreamGroup")
        assert sent == 2
        await rig.tick(world, 1.0)
        assert world.calls("UpdateStreamGroup") == sent  # nothing sent twice
        assert world.location(world.group_b).always_on == applied


async def test_a_failed_later_page_never_yields_partial_counts(
    world: World, proxy: FaultProxy
) -> None:
    """150 sessions on a 40-slot group: two pages. The second page fails: the sample is
    incomplete, waiting is not a partial count, in-use falls back to the service's own."""
    policy = world.policy_file(groups=(world.group_b,))
    world.start_sessions(world.group_b, 150)
    path = sessions_path(world.group_b)

    def second_page(method: str, p: str, query: Mapping[str, str]) -> str | None:
        return "InternalServerException" if p == path and "NextToken" in query else None

    async with open_rig(world, [policy], endpoint_url=proxy.url) as rig:
        whole = await rig.tick(world, 1.0)
        ls = group_report(whole, world.group_b).sample.locations[0]
        assert ls.complete
        assert ls.in_use + ls.waiting == 150
        proxy.fault = second_page
        report = await rig.tick(world, 1.0)
        sample = group_report(report, world.group_b).sample
        pages = [q for p, q in proxy.seen if p == path]
        assert len(pages) >= 4  # page 1 and 2 of each tick: the failure came midway
        assert not sample.complete
        assert any("InternalServerException" in p for p in sample.problems)
        ls = sample.locations[0]
        assert not ls.complete
        assert ls.waiting == 0  # not the 50-odd waiting sessions of page 1
        assert ls.arrivals == 0
        location = world.location(world.group_b)
        assert ls.in_use == location.allocated - location.idle
        assert scale_downs_on_incomplete_data(report) == []


async def test_slow_ticks_never_overlap(world: World) -> None:
    """Ticks take ~0.5 s on a 0.1 s schedule: the loop runs one at a time, skips the rest,
    and a tick over its timeout is cancelled without piling up."""
    policy = world.policy_file()
    world.emulator.set_faults({"latency_s": {"GetStreamGroup": 0.25}})
    in_flight = 0
    most = 0
    async with open_rig(world, [policy]) as rig:

        async def tick() -> TickReport:
            nonlocal in_flight, most
            in_flight += 1
            most = max(most, in_flight)
            try:
                world.advance(1.0)
                return await rig.controller.tick()
            finally:
                in_flight -= 1

        health = Health(started_at=0.0, interval_s=0.1)
        loop = TickLoop(tick, interval_s=0.1, timeout_s=5.0, metrics=MetricsSink(), health=health)
        loop.start()
        await asyncio.sleep(1.6)
        await loop.stop(5.0)
        assert most == 1
        assert 2 <= health.ticks <= 6  # ~0.5 s each (two groups read in parallel)
        # now a timeout shorter than a tick: every tick is cancelled, none piles up
        in_flight = most = 0
        health = Health(started_at=0.0, interval_s=0.1)
        loop = TickLoop(tick, interval_s=0.1, timeout_s=0.1, metrics=MetricsSink(), health=health)
        loop.start()
        await asyncio.sleep(0.8)
        await loop.stop(1.0)
        assert most == 1
        assert health.ticks == 0
        assert health.last_error is not None
        assert "exceeded" in health.last_error
    world.emulator.set_faults({"latency_s": {"GetStreamGroup": 0.0}})
