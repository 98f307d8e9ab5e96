"""plan_group: the plugin is asked per ACTIVE location and can never crash the tick."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupSample,
    GroupState,
    LocationBounds,
    LocationChange,
    LocationHistory,
    LocationSample,
    LocationState,
    Recommendation,
)
from autoscaler.domain.policy import GroupSelector, Policy
from autoscaler.planner import check_recommendation, plan_group
from autoscaler.policy.builtin.target_tracking import TargetTrackingParams, TargetTrackingPolicy
from autoscaler.policy.plugin import GroupContext, PolicyContext

NOW = 10_000.0


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class _Scripted:
    """A plugin answering whatever the test scripts; it records the contexts it was given."""

    answer: Any
    name: str = "scripted"
    Params: ClassVar[type[BaseModel]] = _NoParams
    seen: list[PolicyContext] = field(default_factory=list)

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        self.seen.append(ctx)
        if isinstance(self.answer, Exception):
            raise self.answer
        result: Recommendation = self.answer
        return result


@dataclass
class _Lifecycle(_Scripted):
    changes: Any = ()

    def decide_locations(self, params: BaseModel, ctx: GroupContext) -> tuple[LocationChange, ...]:
        if isinstance(self.changes, Exception):
            raise self.changes
        result: tuple[LocationChange, ...] = self.changes
        return result


CURRENT = CapacitySetting(always_on=4, target_idle=2, maximum=8)
LEGACY = CapacitySetting(always_on=4, on_demand=4)


def _group(
    statuses: dict[str, str] | None = None,
    model: CapacityModel = CapacityModel.CURRENT,
) -> tuple[GroupState, GroupSample]:
    statuses = statuses or {"us-east-1": "ACTIVE"}
    setting = LEGACY if model is CapacityModel.LEGACY else CURRENT
    locs = tuple(
        LocationState(name, status, setting, allocated=5, idle=2)
        for name, status in statuses.items()
    )
    state = GroupState(
        group_id="sg-1",
        arn="arn:sg-1",
        status="ACTIVE",
        stream_class="gen4n_high",
        tenancy=2,
        capacity_model=model,
        locations=locs,
        primary_location=next(iter(statuses)),
    )
    samples = tuple(
        LocationSample(
            group_id="sg-1",
            location=name,
            at=NOW,
            status=status,
            setting=setting,
            allocated=5,
            idle=2,
            in_use=3,
            waiting=1,
            oldest_waiting_s=5.0,
            arrivals=2,
            placement_failures=0,
            departures=1,
        )
        for name, status in statuses.items()
    )
    return state, GroupSample(
        at=NOW, group_id="sg-1", state=state, locations=samples, complete=True
    )


POLICY = Policy(
    name="p",
    source="p.yaml",
    selector=GroupSelector(ids=("sg-1",)),
    plugin="scripted",
    plugin_params=_NoParams(),
    location_bounds={"eu-west-1": LocationBounds(0, 10)},
)


def _plan(plugin: _Scripted, **group: Any) -> Any:
    state, sample = _group(**group)
    return plan_group(
        state=state,
        sample=sample,
        histories={},
        policy=POLICY,
        plugin=plugin,
        params=_NoParams(),
        now=NOW,
        interval_s=60.0,
    )


def test_a_good_answer_is_proposed_with_its_reason() -> None:
    wanted = CapacitySetting(always_on=6, target_idle=2, maximum=12)
    plan = _plan(_Scripted(Recommendation(wanted, "because", forecast_in_use=5.5)))
    (loc,) = plan.locations
    assert loc.proposed == wanted
    assert loc.current == CURRENT
    assert loc.reason == "because"
    assert loc.forecast_in_use == 5.5
    assert loc.in_use == 3
    assert loc.waiting == 1
    assert loc.planned
    assert loc.plugin_error is None
    assert not plan.failed


def test_context_carries_the_data_a_plugin_needs() -> None:
    plugin = _Scripted(Recommendation(CURRENT, "same"))
    _plan(plugin)
    (ctx,) = plugin.seen
    assert ctx.now == NOW
    assert ctx.location == "us-east-1"
    assert ctx.tenancy == 2
    assert ctx.capacity_model is CapacityModel.CURRENT
    assert len(ctx.history) == 0
    assert ctx.lead_time_s == pytest.approx(60 * 1.8 + 60)
    assert ctx.price_per_slot_hour == pytest.approx(0.6571)
    assert ctx.current == CURRENT


def test_only_active_locations_are_asked() -> None:
    plugin = _Scripted(Recommendation(CapacitySetting(10, 0, 10), "more"))
    plan = _plan(plugin, statuses={"us-east-1": "ACTIVE", "eu-west-1": "ACTIVATING"})
    assert [c.location for c in plugin.seen] == ["us-east-1"]
    active, activating = plan.locations
    assert active.proposed == CapacitySetting(10, 0, 10)
    assert activating.proposed == activating.current
    assert not activating.planned
    assert "ACTIVATING" in activating.reason


def test_a_location_without_a_sample_is_held() -> None:
    state, _ = _group()
    plugin = _Scripted(Recommendation(CapacitySetting(10, 0, 10), "more"))
    empty = GroupSample(at=NOW, group_id="sg-1", state=state, locations=(), complete=False)
    plan = plan_group(
        state=state,
        sample=empty,
        histories={},
        policy=POLICY,
        plugin=plugin,
        params=_NoParams(),
        now=NOW,
        interval_s=60.0,
        lead_time=30.0,
    )
    assert plugin.seen == []
    assert plan.locations[0].proposed == CURRENT
    assert "no sample" in plan.locations[0].reason


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (RuntimeError("boom"), "raised RuntimeError: boom"),
        (Recommendation(CapacitySetting(-2, 0, 4), "x"), "always_on is negative"),
        (Recommendation(CapacitySetting(math.nan, 0, 4), "x"), "always_on is nan"),  # type: ignore[arg-type]
        (Recommendation(CapacitySetting(2, 0, math.inf), "x"), "maximum is inf"),  # type: ignore[arg-type]
        (Recommendation(CapacitySetting(2, 0, 10_000_001), "x"), "more than 10×"),
        (Recommendation(CapacitySetting(2, on_demand=2), "x"), "on_demand is set"),
        (Recommendation(CapacitySetting("2", 0, 4), "x"), "not a number"),  # type: ignore[arg-type]
        ("four please", "returned str"),
        (None, "returned NoneType"),
    ],
)
def test_plugin_failures_and_nonsense_become_hold(answer: Any, why: str) -> None:
    plan = _plan(_Scripted(answer))
    (loc,) = plan.locations
    assert loc.proposed == CURRENT
    assert loc.plugin_error is not None
    assert why in loc.plugin_error
    assert "holding current capacity" in loc.reason
    assert plan.failed
    assert why in plan.problems[0]
    assert plan.policy_problems == plan.problems


def test_a_fallback_answer_is_planned_but_listed_as_a_policy_problem() -> None:
    wanted = CapacitySetting(always_on=6, target_idle=2, maximum=12)
    answer = Recommendation(wanted, "fallback answered", fallback="webhook h failed: HTTP 503")
    plan = _plan(_Scripted(answer))
    (loc,) = plan.locations
    assert loc.proposed == wanted
    assert loc.fallback == "webhook h failed: HTTP 503"
    assert not plan.failed  # a usable plan: the guards' failure count does not move
    assert plan.policy_problems == (f"at {loc.location}: webhook h failed: HTTP 503",)
    # Third-party code may put anything there: only text is kept, and not too much of it.
    assert _plan(_Scripted(Recommendation(wanted, "x", fallback=3))).policy_problems == ()  # type: ignore[arg-type]
    (long,) = _plan(_Scripted(Recommendation(wanted, "x", fallback="y" * 900))).policy_problems
    assert len(long) < 520


def test_huge_is_relative_to_the_locations_bound() -> None:
    plugin = _Scripted(Recommendation(CapacitySetting(2, 0, 101), "x"))
    plan = _plan(plugin, statuses={"us-east-1": "ACTIVE", "eu-west-1": "ACTIVE"})
    us, eu = plan.locations
    assert us.plugin_error is None  # default bound 1 000 000
    assert eu.plugin_error is not None
    assert "more than 10×" in eu.plugin_error


def test_legacy_group_needs_a_legacy_answer() -> None:
    bad = _plan(_Scripted(Recommendation(CURRENT, "x")), model=CapacityModel.LEGACY)
    assert bad.locations[0].plugin_error is not None
    assert "on_demand is None" in bad.locations[0].plugin_error
    mixed = _plan(
        _Scripted(Recommendation(CapacitySetting(2, 2, 0, on_demand=2), "x")),
        model=CapacityModel.LEGACY,
    )
    assert mixed.locations[0].plugin_error is not None
    good = _plan(
        _Scripted(Recommendation(CapacitySetting(6, on_demand=2), "x")),
        model=CapacityModel.LEGACY,
    )
    assert good.locations[0].proposed == CapacitySetting(6, on_demand=2)


def test_fractions_are_rounded_up_to_whole_slots() -> None:
    answer = Recommendation(CapacitySetting(2.2, 0, 5.0), "x")  # type: ignore[arg-type]
    (loc,) = _plan(_Scripted(answer)).locations
    assert loc.proposed == CapacitySetting(3, 0, 5)
    assert isinstance(loc.proposed.always_on, int)


def test_location_changes_come_from_the_hook() -> None:
    add = LocationChange("eu-west-1", "add", CapacitySetting(2, 0, 2), "demand there")
    plan = _plan(_Lifecycle(Recommendation(CURRENT, "x"), changes=(add,)))
    assert plan.location_changes == (add,)
    assert not plan.failed


@pytest.mark.parametrize("changes", [ValueError("nope"), ("add eu-west-1",)])
def test_a_broken_hook_changes_nothing(changes: Any) -> None:
    plan = _plan(_Lifecycle(Recommendation(CURRENT, "x"), changes=changes))
    assert plan.location_changes == ()
    assert plan.failed
    assert plan.locations[0].plugin_error is None  # capacity planning was unaffected


def test_with_the_real_target_tracking_plugin() -> None:
    state, sample = _group()
    plan = plan_group(
        state=state,
        sample=sample,
        histories={"us-east-1": LocationHistory.empty()},
        policy=POLICY,
        plugin=TargetTrackingPolicy(),
        params=TargetTrackingParams(),
        now=NOW,
        interval_s=60.0,
    )
    (loc,) = plan.locations
    # demand 3 + 1 waiting = 4 / 0.7 → 6 slots (tenancy 2), maximum 12.
    assert loc.proposed == CapacitySetting(always_on=6, target_idle=0, maximum=12)
    assert loc.plugin_error is None


@pytest.mark.parametrize(
    ("given", "kept"),
    [(2.5, 2.5), (1, 1.0), (0.0, None), (-1.0, None), (math.nan, None), (math.inf, None)],
)
def test_a_miss_budget_passes_the_check_only_when_usable(given: float, kept: float | None) -> None:
    # The controller records them and the policy averages their logs: only a finite,
    # positive factor is worth keeping; anything else is "no factor", not an error.
    rec = Recommendation(
        setting=CapacitySetting(always_on=0, target_idle=2, maximum=10),
        reason="test",
        miss_budget=given,
    )
    checked = check_recommendation(rec, CapacityModel.CURRENT, LocationBounds(0, 100), 1)
    assert isinstance(checked, Recommendation)
    assert checked.miss_budget == kept
