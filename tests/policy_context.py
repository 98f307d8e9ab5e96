"""The one ``PolicyContext`` builder of the plugin tests (shared, not a fixture: tests call it
with the history and load they need). Each plugin's test file keeps its own defaults in a
short wrapper; the group, sample and context are built here only, so a new field of theirs
is filled in one place."""

from __future__ import annotations

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupState,
    LocationBounds,
    LocationHistory,
    LocationSample,
    LocationState,
)
from autoscaler.domain.policy import Slo
from autoscaler.policy.plugin import PolicyContext, lead_time_s


def by_model(
    model: CapacityModel, *, current: CapacitySetting, legacy: CapacitySetting
) -> CapacitySetting:
    """The setting a location has under ``model`` (the two models take different fields)."""
    return legacy if model is CapacityModel.LEGACY else current


def make_ctx(
    hist: LocationHistory | None,
    now: float,
    *,
    in_use: int,
    tenancy: int = 1,
    model: CapacityModel = CapacityModel.CURRENT,
    stream_class: str = "gen4n_ultra",
    bounds: LocationBounds | None = None,
    waiting: int = 0,
    setting: CapacitySetting | None = None,
    idle: int = 2,
    location: str = "us-east-2",
    primary_location: str | None = None,
    group_locations: tuple[LocationState, ...] = (),
    oldest_waiting_s: float = 0.0,
    arrivals: int = 0,
    placement_failures: int = 0,
    departures: int = 0,
    complete: bool = True,
    price_per_slot_hour: float = 0.5,
    lead_time: float | None = None,
) -> PolicyContext:
    """One location of group ``sg-1`` at ``now``: ``in_use + idle`` slots allocated, the
    current setting ``setting`` (by default one per ``model``), no history when ``hist`` is
    None, and the stream class's own lead time unless ``lead_time`` is given."""
    if setting is None:
        setting = by_model(
            model,
            current=CapacitySetting(0, 2, 100),
            legacy=CapacitySetting(always_on=0, on_demand=10),
        )
    primary = location if primary_location is None else primary_location
    group = GroupState(
        group_id="sg-1",
        arn=f"arn:aws:gameliftstreams:{primary}:123456789012:streamgroup/sg-1",
        status="ACTIVE",
        stream_class=stream_class,
        tenancy=tenancy,
        capacity_model=model,
        locations=group_locations,
        primary_location=primary,
    )
    sample = LocationSample(
        group_id="sg-1",
        location=location,
        at=now,
        status="ACTIVE",
        setting=setting,
        allocated=in_use + idle,
        idle=idle,
        in_use=in_use,
        waiting=waiting,
        oldest_waiting_s=oldest_waiting_s,
        arrivals=arrivals,
        placement_failures=placement_failures,
        departures=departures,
        complete=complete,
    )
    return PolicyContext(
        now=now,
        group=group,
        location=location,
        sample=sample,
        history=LocationHistory.empty() if hist is None else hist,
        bounds=bounds or LocationBounds(0, 10_000),
        tenancy=tenancy,
        capacity_model=model,
        slo=Slo(),
        price_per_slot_hour=price_per_slot_hour,
        interval_s=60.0,
        lead_time_s=lead_time_s(stream_class, 60.0) if lead_time is None else lead_time,
    )
