"""A ``PolicyContext`` for one location, for the plugin tests (shared, not a fixture: tests
call it with the history and load they need)."""

from __future__ import annotations

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupState,
    LocationBounds,
    LocationHistory,
    LocationSample,
)
from autoscaler.domain.policy import Slo
from autoscaler.policy.plugin import PolicyContext, lead_time_s


def make_ctx(
    hist: LocationHistory,
    now: float,
    *,
    in_use: int,
    tenancy: int = 1,
    model: CapacityModel = CapacityModel.CURRENT,
    stream_class: str = "gen4n_ultra",
    bounds: LocationBounds | None = None,
    waiting: int = 0,
) -> PolicyContext:
    setting = (
        CapacitySetting(always_on=0, on_demand=10)
        if model is CapacityModel.LEGACY
        else CapacitySetting(0, 2, 100)
    )
    group = GroupState(
        group_id="sg-1",
        arn="arn:aws:gameliftstreams:us-east-2:123456789012:streamgroup/sg-1",
        status="ACTIVE",
        stream_class=stream_class,
        tenancy=tenancy,
        capacity_model=model,
        locations=(),
        primary_location="us-east-2",
    )
    sample = LocationSample(
        group_id="sg-1",
        location="us-east-2",
        at=now,
        status="ACTIVE",
        setting=setting,
        allocated=in_use + 2,
        idle=2,
        in_use=in_use,
        waiting=waiting,
        oldest_waiting_s=0.0,
        arrivals=0,
        placement_failures=0,
        departures=0,
    )
    return PolicyContext(
        now=now,
        group=group,
        location="us-east-2",
        sample=sample,
        history=hist,
        bounds=bounds or LocationBounds(0, 10_000),
        tenancy=tenancy,
        capacity_model=model,
        slo=Slo(),
        price_per_slot_hour=0.5,
        interval_s=60.0,
        lead_time_s=lead_time_s(stream_class, 60.0),
    )
