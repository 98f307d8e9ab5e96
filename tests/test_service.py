"""The tick loop and the HTTP endpoints, with a fake tick (no AWS involved)."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as real
import logging
import time

import aiohttp
import apscheduler.executors.base as executors
import apscheduler.schedulers.base as base
import apscheduler.triggers.interval as interval
import pytest

from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import (
    Actuation,
    CapacityModel,
    CapacitySetting,
    GroupDecision,
    GroupReport,
    GroupSample,
    GroupState,
    LocationDecision,
    LocationSample,
    TickReport,
)
from autoscaler.metrics import MetricsSink
from autoscaler.service import Health, TickLoop, build_http_app, start_http


def _report(ok: bool = True) -> TickReport:
    current = CapacitySetting(2, 0, 10)
    decided = CapacitySetting(4, 2, 10)
    decision = GroupDecision(
        group_id="sg-1",
        at=100.0,
        capacity_model=CapacityModel.CURRENT,
        locations=(LocationDecision("us-west-2", current, decided, decided, 3, "demand 3"),),
    )
    sample = GroupSample(at=100.0, group_id="sg-1", state=None, locations=(), complete=ok)
    actuation = Actuation(
        group_id="sg-1",
        applied=True,
        dry_run=False,
        calls=("UpdateStreamGroup",),
        succeeded=("UpdateStreamGroup",),
    )
    group = GroupReport("sg-1", 100.0, sample, decision, actuation)
    return TickReport(at=100.0, duration_s=0.01, groups=(group,), ok=ok)


async def test_run_once_updates_health_metrics_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    health = Health(started_at=0.0, interval_s=60.0)
    metrics = MetricsSink()

    async def tick() -> TickReport:
        return _report()

    loop = TickLoop(tick, interval_s=60.0, timeout_s=5.0, metrics=metrics, health=health)
    with caplog.at_level(logging.INFO, logger="autoscaler.service"):
        report = await loop.run_once()
    assert report is not None
    assert health.ticks == 1
    assert health.last_ok_at is not None
    text = metrics.render().decode()
    assert 'autoscaler_capacity_updates_total{group_id="sg-1"} 1.0' in text
    messages = [r.getMessage() for r in caplog.records]
    assert "capacity change applied" in messages
    assert "tick" in messages
    change = next(r for r in caplog.records if r.getMessage() == "capacity change applied")
    assert change.__dict__["to"] == "always-on 4, target-idle 2, max 10"


async def test_ticks_never_overlap_and_a_slow_tick_times_out() -> None:
    health = Health(started_at=0.0, interval_s=0.05)
    running = 0
    most = 0

    async def slow() -> TickReport:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await asyncio.sleep(10)
        finally:
            running -= 1
        return _report()

    loop = TickLoop(slow, interval_s=0.05, timeout_s=0.2, metrics=MetricsSink(), health=health)
    results = await asyncio.gather(*(loop.run_once() for _ in range(5)))
    assert results == [None] * 5
    assert most == 1
    assert health.last_error is not None
    assert "exceeded" in health.last_error


async def test_scheduler_runs_ticks_and_stops_cleanly() -> None:
    health = Health(started_at=0.0, interval_s=0.05)
    count = 0

    async def tick() -> TickReport:
        nonlocal count
        count += 1
        return _report()

    loop = TickLoop(tick, interval_s=0.05, timeout_s=1.0, metrics=MetricsSink(), health=health)
    loop.start()
    await asyncio.sleep(0.4)
    await loop.stop(grace_s=1.0)
    seen = count
    assert seen >= 3
    await asyncio.sleep(0.2)
    assert count == seen  # nothing runs after stop


async def test_http_endpoints_report_health_and_readiness() -> None:
    health = Health(started_at=0.0, interval_s=60.0)
    metrics = MetricsSink()
    runner, port = await start_http(build_http_app(metrics, health), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 503  # no successful tick yet
                assert (await r.json())["reason"] == "no successful tick yet"
            metrics.observe(_report(), ended_at=1.0)
            health.last_ok_at = time.time()
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 200
            health.leader = False
            async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                assert r.status == 503
                assert "not the leader" in (await r.json())["reason"]
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert "autoscaler_ticks_total" in await r.text()
    finally:
        await runner.cleanup()


async def test_a_port_in_use_is_a_clear_error() -> None:
    health = Health(started_at=0.0, interval_s=60.0)
    first, port = await start_http(build_http_app(MetricsSink(), health), "127.0.0.1", 0)
    try:
        with pytest.raises(ConfigError) as caught:
            await start_http(build_http_app(MetricsSink(), health), "127.0.0.1", port)
        assert "AUTOSCALER_HTTP_PORT" in caught.value.source
        (problem,) = caught.value.problems
        assert problem.startswith(f"cannot listen on 127.0.0.1:{port}: ")
        assert "address already in use" in problem
    finally:
        await first.cleanup()


async def test_expiring_group_is_warned_once_a_day(caplog: pytest.LogCaptureFixture) -> None:
    state = GroupState(
        group_id="sg-1",
        arn="arn:aws:gameliftstreams:us-west-2:123456789012:streamgroup/sg-1",
        status="ACTIVE",
        stream_class="gen4n_high",
        tenancy=2,
        capacity_model=CapacityModel.CURRENT,
        locations=(),
        primary_location="us-west-2",
        expires_at=100.0 + 3 * 86400,
    )
    at = [100.0]

    async def tick() -> TickReport:
        sample = GroupSample(at=at[0], group_id="sg-1", state=state, locations=(), complete=True)
        return TickReport(
            at=at[0], duration_s=0.0, groups=(GroupReport("sg-1", at[0], sample, None, None),)
        )

    loop = TickLoop(
        tick, interval_s=60.0, timeout_s=1.0, metrics=MetricsSink(), health=Health(0.0, 60.0)
    )
    with caplog.at_level(logging.WARNING, logger="autoscaler.service"):
        for step in (0.0, 60.0, 120.0, 86400.0):
            at[0] = 100.0 + step
            await loop.run_once()
    warnings = [r for r in caplog.records if r.getMessage() == "stream group expires soon"]
    assert len(warnings) == 2
    assert warnings[0].__dict__["expires_in_days"] == 3.0


class _Control:
    def __init__(self) -> None:
        self.all = False
        self.groups: set[str] = set()

    def is_paused(self, group_id: str | None = None) -> bool:
        return self.all or group_id in self.groups

    def pause_state(self) -> dict[str, object]:
        return {"all": self.all, "groups": sorted(self.groups)}

    def set_paused(self, paused: bool, group_id: str | None = None) -> None:
        if group_id is None:
            self.all = paused
        elif paused:
            self.groups.add(group_id)
        else:
            self.groups.discard(group_id)


async def test_pause_endpoints_need_the_token() -> None:
    control = _Control()
    app = build_http_app(
        MetricsSink(), Health(0.0, 60.0), control=control, token="s3cret-token-value"
    )
    runner, port = await start_http(app, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{port}"
    good = {"Authorization": "Bearer s3cret-token-value"}
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/pause") as r:
                assert r.status == 401
            async with http.post(f"{base}/pause", headers={"Authorization": "Bearer no"}) as r:
                assert r.status == 401
            assert not control.all
            async with http.post(f"{base}/pause?group=sg-1", headers=good) as r:
                assert r.status == 200
                assert await r.json() == {"all": False, "groups": ["sg-1"]}
            async with http.post(f"{base}/pause", headers=good) as r:
                assert (await r.json())["all"] is True
            async with http.post(f"{base}/resume", headers=good) as r:
                assert (await r.json())["all"] is False
            async with http.get(f"{base}/pause") as r:
                assert await r.json() == {"all": False, "groups": ["sg-1"]}
    finally:
        await runner.cleanup()


async def test_pause_endpoints_are_disabled_without_a_token() -> None:
    control = _Control()
    runner, port = await start_http(
        build_http_app(MetricsSink(), Health(0.0, 60.0), control=control), "127.0.0.1", 0
    )
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{port}/pause") as r,
        ):
            assert r.status == 404
        assert not control.all
    finally:
        await runner.cleanup()


async def test_metrics_say_whether_this_replica_leads() -> None:
    health = Health(started_at=0.0, interval_s=60.0)
    runner, port = await start_http(build_http_app(MetricsSink(), health), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert "autoscaler_leader 1.0" in await r.text()
            health.leader = False
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert "autoscaler_leader 0.0" in await r.text()
    finally:
        await runner.cleanup()


def test_late_starts_and_requests_are_counted_so_the_instant_share_can_be_graphed() -> None:
    sample_at = GroupSample(
        at=100.0,
        group_id="sg-1",
        state=None,
        locations=(
            LocationSample(
                group_id="sg-1",
                location="us-west-2",
                at=100.0,
                status="ACTIVE",
                setting=CapacitySetting(2, 0, 10),
                allocated=6,
                idle=1,
                in_use=5,
                waiting=0,
                oldest_waiting_s=0.0,
                arrivals=40,
                placement_failures=1,
                departures=3,
                late_starts=2,
            ),
        ),
        complete=True,
    )
    report = _report()
    group = dataclasses.replace(report.groups[0], sample=sample_at)
    metrics = MetricsSink()
    metrics.observe(dataclasses.replace(report, groups=(group,)), ended_at=1.0)
    metrics.observe(dataclasses.replace(report, groups=(group,)), ended_at=2.0)
    text = metrics.render().decode()
    labels = '{group_id="sg-1",location="us-west-2"}'
    assert f"autoscaler_late_starts_total{labels} 4.0" in text
    assert f"autoscaler_session_requests_total{labels} 80.0" in text
    assert f"autoscaler_placement_failures_total{labels} 2.0" in text


def test_ticks_on_which_the_policy_failed_are_counted() -> None:
    report = _report()
    fell_back = dataclasses.replace(
        report.groups[0], policy_problems=("at us-west-2: webhook h failed: HTTP 503",)
    )
    metrics = MetricsSink()
    metrics.observe(report, ended_at=1.0)  # the policy answered: nothing counted
    metrics.observe(dataclasses.replace(report, groups=(fell_back,)), ended_at=2.0)
    metrics.observe(dataclasses.replace(report, groups=(fell_back,)), ended_at=3.0)
    assert 'autoscaler_policy_failures_total{group_id="sg-1"} 2.0' in metrics.render().decode()


async def test_a_wall_clock_stepped_back_does_not_stall_the_ticks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """apscheduler 3 schedules in wall-clock time: a step back (NTP, a restored VM snapshot)
    used to stop the ticks until the clock caught up (an hour for an hour). The watchdog, on
    the monotonic clock, restarts the schedule."""
    step = {"back": real.timedelta(0)}

    class SteppedClock(real.datetime):
        @classmethod
        def now(cls, tz: real.tzinfo | None = None) -> SteppedClock:  # type: ignore[override]
            return super().now(tz) - step["back"]

    for module in (base, interval, executors):  # every place apscheduler reads the wall clock
        monkeypatch.setattr(module, "datetime", SteppedClock)
    count = 0

    async def tick() -> TickReport:
        nonlocal count
        count += 1
        return TickReport(at=0.0, duration_s=0.0, groups=(), calls={}, ok=True)

    health = Health(started_at=0.0, interval_s=0.1)
    loop = TickLoop(tick, interval_s=0.1, timeout_s=1.0, metrics=MetricsSink(), health=health)
    loop.start()
    try:
        await asyncio.sleep(0.35)
        assert count >= 2
        step["back"] = real.timedelta(hours=1)  # the wall clock steps back an hour
        await asyncio.sleep(0.5)
        before = count
        with caplog.at_level(logging.WARNING, logger="autoscaler.service"):
            await asyncio.sleep(0.6)
        assert count > before  # ticking again, an hour early by the wall clock
        assert loop.restarts >= 1
        assert any("stalled" in r.getMessage() for r in caplog.records)
    finally:
        await loop.stop(grace_s=1.0)
