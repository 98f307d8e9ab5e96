"""The Prometheus sink: a location the group no longer has leaves the export."""

from __future__ import annotations

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
    LocationState,
    TickReport,
)
from autoscaler.metrics import MetricsSink

SETTING = CapacitySetting(always_on=2, target_idle=2, maximum=10)


def _report(at: float, *locations: str, read: bool = True) -> TickReport:
    state = GroupState(
        group_id="sg-1",
        arn="arn:sg-1",
        status="ACTIVE",
        stream_class="gen4n_high",
        tenancy=2,
        capacity_model=CapacityModel.CURRENT,
        locations=tuple(
            LocationState(n, "ACTIVE", SETTING, allocated=4, idle=2) for n in locations
        ),
        primary_location=locations[0],
    )
    samples = tuple(
        LocationSample(
            group_id="sg-1",
            location=n,
            at=at,
            status="ACTIVE",
            setting=SETTING,
            allocated=4,
            idle=2,
            in_use=2,
            waiting=0,
            oldest_waiting_s=0.0,
            arrivals=1,
            placement_failures=0,
            departures=0,
        )
        for n in locations
    )
    sample = GroupSample(at, "sg-1", state if read else None, samples, complete=read)
    decision = GroupDecision(
        group_id="sg-1",
        at=at,
        capacity_model=CapacityModel.CURRENT,
        locations=tuple(
            LocationDecision(n, SETTING, SETTING, SETTING, 2, "hold", 2.0) for n in locations
        ),
    )
    actuation = Actuation("sg-1", applied=False, dry_run=False)
    return TickReport(
        at=at,
        duration_s=0.01,
        groups=(GroupReport("sg-1", at, sample, decision, actuation),),
        ok=True,
    )


def _series(sink: MetricsSink, location: str) -> list[str]:
    return [
        line
        for line in sink.render().decode().splitlines()
        if not line.startswith("#") and f'location="{location}"' in line
    ]


def test_a_removed_location_leaves_the_gauges_and_keeps_its_counters() -> None:
    sink = MetricsSink()
    sink.observe(_report(60.0, "us-west-2", "us-east-1"), ended_at=60.0)
    assert any(
        line.startswith("autoscaler_capacity_setting{") for line in _series(sink, "us-east-1")
    )
    # A tick whose group could not be read says nothing of its locations: all kept.
    sink.observe(_report(120.0, "us-west-2", read=False), ended_at=120.0)
    assert any(
        line.startswith("autoscaler_sessions_in_use{") for line in _series(sink, "us-east-1")
    )
    sink.observe(_report(180.0, "us-west-2"), ended_at=180.0)
    left = _series(sink, "us-east-1")
    # Gauges describe the present: gone. Counters are history (rate() needs them): kept.
    assert left
    assert all("_total{" in line or "_created{" in line for line in left), left
    assert any(
        line.startswith("autoscaler_sessions_in_use{") for line in _series(sink, "us-west-2")
    )
