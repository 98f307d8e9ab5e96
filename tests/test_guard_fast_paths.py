"""The guard rules' shortcuts give what the general computation gives.

Why: the per-location rules run every tick for every location, so they skip building new
values when nothing changes (stabilisation with no windows, ``Levels.with_`` spelled out).
A shortcut taken when it should not be would change a decision silently.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.domain.models import CapacityModel, LocationBounds
from autoscaler.domain.policy import Behavior, DirectionBehavior
from autoscaler.guard import (
    LEVELS,
    GuardMemory,
    Levels,
    LocationInput,
    RecommendationRecord,
    clamp_to_bounds,
    consistency,
    round_to_tenancy,
    stabilise,
    tolerance,
)

NOW = 100_000.0
NO_WINDOW = DirectionBehavior(stabilization_window_s=0.0, rules=())
counts = st.integers(-2, 40)
levels = st.builds(Levels, counts, counts, counts)


def _ctx(
    current: Levels, recs: tuple[RecommendationRecord, ...] = (), **kw: object
) -> LocationInput:
    base: dict[str, object] = {
        "group_id": "sg-1",
        "location": "us-east-1",
        "now": NOW,
        "model": CapacityModel.CURRENT,
        "tenancy": 2,
        "current": current,
        "in_use": 3,
        "waiting": 1,
        "bounds": LocationBounds(2, 30),
        "behavior": Behavior(scale_up=NO_WINDOW, scale_down=NO_WINDOW, tolerance=0.1),
        "recommendations": recs,
    }
    base.update(kw)
    return LocationInput(**base)  # type: ignore[arg-type]


@given(p=levels, value=counts)
def test_with_equals_dataclasses_replace(p: Levels, value: int) -> None:
    for name in LEVELS:
        assert p.with_(name, value) == dataclasses.replace(p, **{name: value})
    with pytest.raises(TypeError):
        p.with_("maximum", value)


def test_zero_windows_keep_the_proposal() -> None:
    recs = (RecommendationRecord(NOW - 30, Levels(40, 40, 40)),)
    p = Levels(4, 2, 8)
    assert stabilise(_ctx(Levels(10, 0, 10), recs), p) == (p, ())


def test_zero_windows_still_see_a_record_from_the_future() -> None:
    # The general rule reads records with at > now - window: one stamped after now (a clock
    # that went back) still counts, so the shortcut must not be taken.
    recs = (RecommendationRecord(NOW + 30, Levels(40, 0, 40)),)
    out, vetoes = stabilise(_ctx(Levels(10, 0, 10), recs), Levels(4, 0, 8))
    assert out == Levels(10, 0, 10)  # held at the current value, not lowered to 4 and 8
    assert [v.guard for v in vetoes] == ["stabilisation"]


@given(current=levels, p=levels, legacy=st.booleans())
def test_rules_return_the_same_object_when_nothing_changes(
    current: Levels, p: Levels, legacy: bool
) -> None:
    model = CapacityModel.LEGACY if legacy else CapacityModel.CURRENT
    ctx = _ctx(current, model=model)
    for rule in (round_to_tenancy, tolerance, clamp_to_bounds, consistency):
        out, vetoes = rule(ctx, p)
        assert (out is p) == (not vetoes)
        assert (out == p) == (not vetoes)


def test_memory_fields_are_all_carried_by_the_direct_constructions() -> None:
    # guard_group and GuardMemory.record_applied build the new memory field by field (faster
    # than dataclasses.replace): a new field must be added there too, or it would be reset.
    assert [f.name for f in dataclasses.fields(GuardMemory)] == [
        "recommendations",
        "applied",
        "last_applied_at",
        "last_applied",
        "drift_seen_at",
        "failures",
        "month_spend",
    ]
