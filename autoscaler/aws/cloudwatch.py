"""Capacity history from CloudWatch, for a replica that starts with an empty store.

Why: the forecasters need days of per-minute demand; a new replica (or a standby on a fresh
disk) would otherwise plan blind for that long. GameLift Streams publishes, per minute and per
``StreamGroupId`` + ``Location`` in ``AWS/GameLiftStreams``, ``ActiveCapacity`` (provisioned:
streaming + idle) and ``IdleCapacity``; their difference is the slots in use.

One ``GetMetricData`` call carries up to 500 queries and returns at most 100,800 data points,
so the (group, location) pairs are batched to stay under both, and each batch follows
``NextToken`` until the service has returned everything. A failure raises ``ServiceError``
(the caller decides to start cold rather than half-filled), and so does a query the service
answers as failed (``StatusCode`` InternalError or Forbidden, or PartialData with nothing
more to page through): its points would be stored as complete history.

CloudWatch keeps one-minute points for 15 days, five-minute ones for 63 days, then hourly
ones, and returns no data at all for a finer period than an age keeps: a window reaching
further back is read in segments, each at the finest period its age allows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from autoscaler.aws.gameliftstreams import to_service_error
from autoscaler.domain.errors import ServiceError
from autoscaler.store import BackfillRow

NAMESPACE = "AWS/GameLiftStreams"
ACTIVE = "ActiveCapacity"
IDLE = "IdleCapacity"
PERIOD_S = 60
# (age, period): points younger than ``age`` exist at ``period`` (CloudWatch's retention);
# an hour's margin keeps a segment's oldest points clear of the boundary.
RESOLUTIONS = ((15 * 86400 - 3600, 60), (63 * 86400 - 3600, 300), (455 * 86400 - 3600, 3600))
MAX_QUERIES = 500  # per GetMetricData call
MAX_POINTS = 100_800  # per GetMetricData call

Target = tuple[str, str]  # (stream group id, location)


def batches(
    targets: Sequence[Target], points_per_query: int, max_points: int = MAX_POINTS
) -> list[list[Target]]:
    """Split targets so each call has ≤ MAX_QUERIES queries and ≤ ``max_points`` points
    (two queries per target)."""
    per_call = max(1, min(MAX_QUERIES // 2, max_points // max(1, 2 * points_per_query)))
    return [list(targets[i : i + per_call]) for i in range(0, len(targets), per_call)]


def segments(start: float, end: float, now: float) -> list[tuple[float, float, int]]:
    """``[start, end)`` as ``(from, to, period)`` pieces, oldest first, each at the finest
    period CloudWatch keeps at its age (``RESOLUTIONS``; older than the last: left out)."""
    out: list[tuple[float, float, int]] = []
    upper = end
    for age, period in RESOLUTIONS:
        lower = max(start, float(int(now - age) // period * period))
        if lower < upper:
            out.append((lower, upper, period))
            upper = lower
        if upper <= start:
            break
    return out[::-1]


def _query(qid: str, metric: str, target: Target, period: int) -> dict[str, Any]:
    group_id, location = target
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": NAMESPACE,
                "MetricName": metric,
                "Dimensions": [
                    {"Name": "StreamGroupId", "Value": group_id},
                    {"Name": "Location", "Value": location},
                ],
            },
            "Period": period,
            "Stat": "Average",
        },
        "ReturnData": True,
    }


@dataclass(frozen=True, slots=True)
class CloudWatchCapacity:
    """Reads capacity history through an aiobotocore ``cloudwatch`` client.

    ``max_points`` per call is the service's limit; smaller values only make more calls."""

    client: Any
    max_points: int = MAX_POINTS

    async def history(
        self, targets: Sequence[Target], start: float, end: float, *, now: float | None = None
    ) -> dict[Target, list[BackfillRow]]:
        """Rows in [start, end) for every target that has data, oldest first: per minute
        over the last 15 days before ``now`` (default ``end``), coarser before (``segments``).
        Periods where only one of the two metrics has a value are dropped."""
        out: dict[Target, list[BackfillRow]] = {}
        unique = list(dict.fromkeys(targets))
        for first, upper, period in segments(start, end, end if now is None else now):
            lower = float(int(first) // period * period)
            points = max(1, int((upper - lower) // period) + 1)
            for batch in batches(unique, points, self.max_points):
                queries = []
                for i, target in enumerate(batch):
                    queries.append(_query(f"a{i}", ACTIVE, target, period))
                    queries.append(_query(f"i{i}", IDLE, target, period))
                values = await self._fetch(queries, lower, upper)
                for i, target in enumerate(batch):
                    active, idle = values.get(f"a{i}", {}), values.get(f"i{i}", {})
                    out.setdefault(target, []).extend(
                        BackfillRow(
                            at=at,
                            in_use=max(0.0, active[at] - idle[at]),
                            allocated=active[at],
                            idle=idle[at],
                        )
                        for at in sorted(active.keys() & idle.keys())
                    )
        return {target: rows for target, rows in out.items() if rows}

    async def _fetch(
        self, queries: list[dict[str, Any]], start: float, end: float
    ) -> dict[str, dict[float, float]]:
        """Every page of one GetMetricData request: query id → {epoch s: value}."""
        values: dict[str, dict[float, float]] = defaultdict(dict)
        params: dict[str, Any] = {
            "MetricDataQueries": queries,
            "StartTime": datetime.fromtimestamp(start, tz=UTC),
            "EndTime": datetime.fromtimestamp(end, tz=UTC),
            "ScanBy": "TimestampAscending",
        }
        while True:
            try:
                response = await self.client.get_metric_data(**params)
            except Exception as exc:
                raise to_service_error("GetMetricData", exc) from exc
            token = response.get("NextToken")
            for result in response.get("MetricDataResults") or ():
                status = result.get("StatusCode") or "Complete"
                if status in ("InternalError", "Forbidden") or (status != "Complete" and not token):
                    said = "; ".join(
                        str(m.get("Value") or m.get("Code") or "")
                        for m in result.get("Messages") or ()
                    )
                    raise ServiceError(
                        f"GetMetricData: query {result.get('Id')} ended {status}"
                        + (f": {said}" if said else "")
                    )
                series = values[str(result["Id"])]
                for ts, value in zip(
                    result.get("Timestamps") or (), result.get("Values") or (), strict=True
                ):
                    series[float(ts.timestamp())] = float(value)
            if not token:
                return values
            params["NextToken"] = token


@asynccontextmanager
async def open_cloudwatch(
    region: str,
    *,
    endpoint_url: str | None = None,
    profile: str | None = None,
    max_attempts: int = 3,
    max_points: int = MAX_POINTS,
) -> AsyncIterator[CloudWatchCapacity]:
    session = AioSession(profile=profile)
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": max_attempts},
        connect_timeout=5.0,
        read_timeout=30.0,
    )
    async with session.create_client(
        "cloudwatch", region_name=region, endpoint_url=endpoint_url, config=config
    ) as client:
        yield CloudWatchCapacity(client, max_points)
