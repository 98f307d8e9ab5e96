"""History from CloudWatch: moto's CloudWatch over HTTP holds put_metric_data fixtures, the
backfill reads them with GetMetricData, and the store ends up with the rows."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import AioSession

from autoscaler.aws.cloudwatch import (
    MAX_POINTS,
    MAX_QUERIES,
    CloudWatchCapacity,
    batches,
    open_cloudwatch,
    segments,
)
from autoscaler.domain.errors import ServiceError
from autoscaler.runtime import _backfill_if_empty, backfill_history, build_controller
from autoscaler.settings import Settings, load_settings
from autoscaler.store import HistoryStore
from tests.ha.conftest import REGION, Group, Moto, buffer_policy

DAY = 86400.0


def active(minute: int) -> float:
    return float(10 + minute % 7)


def idle(minute: int) -> float:
    return float(minute % 3)


async def put_capacity(
    url: str, group_id: str, location: str, end: float, minutes: int, scale: float = 1.0
) -> None:
    """One ActiveCapacity and one IdleCapacity point per minute for ``minutes`` before end."""
    data: list[dict[str, Any]] = []
    dims = [{"Name": "StreamGroupId", "Value": group_id}, {"Name": "Location", "Value": location}]
    for m in range(minutes):
        at = datetime.fromtimestamp(end - (minutes - m) * 60, tz=UTC)
        data.append(
            {
                "MetricName": "ActiveCapacity",
                "Dimensions": dims,
                "Timestamp": at,
                "Value": active(m) * scale,
            }
        )
        data.append(
            {
                "MetricName": "IdleCapacity",
                "Dimensions": dims,
                "Timestamp": at,
                "Value": idle(m) * scale,
            }
        )
    session = AioSession()
    async with session.create_client("cloudwatch", region_name=REGION, endpoint_url=url) as c:
        for i in range(0, len(data), 500):
            await c.put_metric_data(Namespace="AWS/GameLiftStreams", MetricData=data[i : i + 500])


def minute_floor(t: float) -> float:
    return math.floor(t / 60) * 60


def settings_for(tmp: Path, moto_url: str, **overrides: Any) -> Settings:
    overrides.setdefault("policy_paths", [tmp])
    return load_settings(
        None,
        env_file=None,
        aws_region=REGION,
        state_dir=tmp / "state",
        cloudwatch_endpoint_url=moto_url,
        **overrides,
    )


def test_batches_respect_both_getmetricdata_limits() -> None:
    targets = [(f"sg-{i}", "us-west-2") for i in range(600)]
    small = batches(targets, points_per_query=60)
    assert [len(b) for b in small] == [250, 250, 100]  # 500 queries per call
    two_weeks = batches(targets[:5], points_per_query=14 * 1440 + 1)
    assert all(2 * len(b) * (14 * 1440 + 1) <= MAX_POINTS for b in two_weeks)
    assert sum(len(b) for b in two_weeks) == 5
    assert len(two_weeks) == 3
    assert all(2 * len(b) <= MAX_QUERIES for b in small)


async def test_backfill_fills_the_store_from_cloudwatch(moto: Moto, tmp_path: Path) -> None:
    end = minute_floor(datetime.now(tz=UTC).timestamp())
    targets = [("sg-a", "us-west-2"), ("sg-a", "eu-central-1"), ("sg-b", "us-west-2")]
    for n, (gid, loc) in enumerate(targets):
        await put_capacity(moto.url, gid, loc, end, minutes=120, scale=n + 1)
    settings = settings_for(tmp_path, moto.url)
    store = HistoryStore(":memory:", retention_s=30 * DAY)
    try:
        added = await backfill_history(
            settings, store, [*targets, ("sg-none", "us-west-2")], now=end, window_s=DAY / 6
        )
        assert added == 3 * 120
        assert store.locations() == sorted(targets)
        for n, (gid, loc) in enumerate(targets):
            h = store.history(gid, loc, since=end - DAY)
            assert len(h.at) == 120
            assert h.at[0] == end - 120 * 60
            assert h.at[-1] == end - 60
            scale = n + 1
            for m in (0, 1, 2, 50, 119):
                assert h.in_use[m] == pytest.approx((active(m) - idle(m)) * scale)
                assert h.allocated[m] == pytest.approx(active(m) * scale)
                assert h.idle[m] == pytest.approx(idle(m) * scale)
            assert bool(store.history_frame(gid, loc, since=end - DAY)["backfilled"].all())
    finally:
        store.close()


async def test_history_is_per_minute_windowed_and_batched(moto: Moto) -> None:
    end = minute_floor(datetime.now(tz=UTC).timestamp())
    targets = [(f"sg-{i}", "us-west-2") for i in range(5)]
    for i, (gid, loc) in enumerate(targets):
        await put_capacity(moto.url, gid, loc, end, minutes=40, scale=i + 1)
    # 31 points per query, 2 queries per target: room for 2 targets per call → 3 calls
    async with open_cloudwatch(REGION, endpoint_url=moto.url, max_points=2 * 2 * 31) as cw:
        assert len(batches(targets, 31, cw.max_points)) == 3
        got = await cw.history(targets, end - 30 * 60, end)
    assert sorted(got) == targets
    for i, target in enumerate(targets):
        rows = got[target]
        assert [r.at for r in rows] == [end - (30 - k) * 60 for k in range(30)]
        assert rows[0].allocated == active(10) * (i + 1)  # minute 10 of 40 is 30 min back


async def test_daemon_start_backfills_only_an_empty_store(
    moto: Moto, group: Group, tmp_path: Path
) -> None:
    end = minute_floor(group.clock.now())
    await put_capacity(moto.url, group.group_id, REGION, end, minutes=60)
    (tmp_path / "policy.yaml").write_text(buffer_policy(group.group_id))
    settings = settings_for(
        tmp_path,
        moto.url,
        aws_endpoint_url=group.url,
        policy_paths=[tmp_path / "policy.yaml"],
        backfill_window_s=DAY,
        aws_max_attempts=1,
    )
    async with build_controller(settings, clock=group.clock) as built:
        await _backfill_if_empty(settings, built, group.clock)
        h = built.store.history(group.group_id, REGION, since=end - DAY)
        assert len(h.at) == 60
        assert h.in_use[0] == active(0) - idle(0)
        # the first tick plans with an hour of history already there
        report = await built.controller.tick()
        assert report.groups[0].decision is not None
    # a restart with a store that has history does not import again
    await put_capacity(moto.url, group.group_id, REGION, end - 3600, minutes=60)
    async with build_controller(settings, clock=group.clock) as built:
        await _backfill_if_empty(settings, built, group.clock)
        assert len(built.store.history(group.group_id, REGION, since=end - DAY).at) == 61


async def test_backfill_against_a_stand_in_needs_its_own_cloudwatch(
    group: Group, tmp_path: Path
) -> None:
    (tmp_path / "policy.yaml").write_text(buffer_policy(group.group_id))
    settings = load_settings(
        None,
        env_file=None,
        aws_region=REGION,
        state_dir=tmp_path / "state",
        aws_endpoint_url=group.url,
        policy_paths=[tmp_path / "policy.yaml"],
    )
    async with build_controller(settings, clock=group.clock) as built:
        await _backfill_if_empty(settings, built, group.clock)  # no call to real AWS
        assert built.store.locations() == []


def test_a_long_window_is_read_at_the_periods_cloudwatch_keeps() -> None:
    """One-minute points exist for 15 days, five-minute ones for 63: asked at 60 s, older
    data comes back empty, so a 30-day window is read in two segments."""
    now = 1_767_225_600.0
    (only,) = segments(now - 3 * DAY, now, now)
    assert only == (now - 3 * DAY, now, 60)
    old, recent = segments(now - 30 * DAY, now, now)
    assert (old[0], old[2], recent[1], recent[2]) == (now - 30 * DAY, 300, now, 60)
    assert old[1] == recent[0]
    assert now - recent[0] < 15 * DAY
    assert recent[0] % 300 == 0
    assert [p for _, _, p in segments(now - 100 * DAY, now, now)] == [3600, 300, 60]


async def test_a_query_that_failed_is_an_error_not_history() -> None:
    answers = [
        {
            "MetricDataResults": [
                {"Id": "a0", "StatusCode": "Complete", "Timestamps": [], "Values": []},
                {
                    "Id": "i0",
                    "StatusCode": "InternalError",
                    "Timestamps": [],
                    "Values": [],
                    "Messages": [{"Code": "InternalError", "Value": "try again"}],
                },
            ]
        }
    ]

    class Client:
        async def get_metric_data(self, **params: Any) -> dict[str, Any]:
            return answers.pop(0)

    with pytest.raises(ServiceError, match="query i0 ended InternalError: try again"):
        await CloudWatchCapacity(Client()).history([("sg-1", "us-east-1")], 0.0, 3600.0)


async def test_partial_data_is_fine_while_there_are_pages_left() -> None:
    at = datetime.fromtimestamp(600.0, tz=UTC)
    answers = [
        {
            "MetricDataResults": [
                {"Id": "a0", "StatusCode": "PartialData", "Timestamps": [at], "Values": [5.0]},
                {"Id": "i0", "StatusCode": "PartialData", "Timestamps": [at], "Values": [2.0]},
            ],
            "NextToken": "more",
        },
        {
            "MetricDataResults": [
                {"Id": "a0", "StatusCode": "Complete", "Timestamps": [], "Values": []},
                {"Id": "i0", "StatusCode": "Complete", "Timestamps": [], "Values": []},
            ]
        },
    ]

    class Client:
        async def get_metric_data(self, **params: Any) -> dict[str, Any]:
            return answers.pop(0)

    rows = await CloudWatchCapacity(Client()).history([("sg-1", "us-east-1")], 0.0, 3600.0)
    assert [(r.at, r.in_use) for r in rows[("sg-1", "us-east-1")]] == [(600.0, 3.0)]
