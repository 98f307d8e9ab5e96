"""Guards: each rule on plain data, then hypothesis properties over random plans."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.domain.classes import round_down_to_tenancy, round_up_to_tenancy
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupDecision,
    GroupSample,
    GroupState,
    LocationBounds,
    LocationChange,
    LocationSample,
    LocationState,
)
from autoscaler.domain.policy import (
    Behavior,
    Budget,
    DirectionBehavior,
    DriftAction,
    Fallback,
    FallbackBehavior,
    GroupSelector,
    Mode,
    Policy,
    RuleType,
    ScalingRule,
    SelectPolicy,
)
from autoscaler.guard import (
    AppliedRecord,
    GuardMemory,
    Levels,
    MonthSpend,
    RecommendationRecord,
    guard_group,
    month_end,
    worst_case_cost_per_hour,
)
from autoscaler.planner import GroupPlan, LocationPlan, month_start

NOW = 100_000.0
G = "sg-1"
PRIMARY = "us-east-1"
UNLIMITED = DirectionBehavior(stabilization_window_s=0.0, rules=())
FREE = Behavior(scale_up=UNLIMITED, scale_down=UNLIMITED)


def _policy(**kw: Any) -> Policy:
    base: dict[str, Any] = {
        "name": "p",
        "source": "p.yaml",
        "selector": GroupSelector(ids=(G,)),
        "plugin": "target-tracking",
        "plugin_params": None,
        "behavior": FREE,
        "prices": {"gen4n_high": 1.0},
    }
    base.update(kw)
    return Policy(**base)


def _loc(
    name: str,
    current: CapacitySetting,
    proposed: CapacitySetting,
    *,
    in_use: int = 0,
    waiting: int = 0,
    status: str = "ACTIVE",
    complete: bool = True,
) -> tuple[LocationState, LocationSample, LocationPlan]:
    state = LocationState(name, status, current, allocated=in_use, idle=0)
    sample = LocationSample(
        group_id=G,
        location=name,
        at=NOW,
        status=status,
        setting=current,
        allocated=in_use,
        idle=0,
        in_use=in_use,
        waiting=waiting,
        oldest_waiting_s=0.0,
        arrivals=0,
        placement_failures=0,
        departures=0,
        complete=complete,
    )
    plan = LocationPlan(
        location=name,
        status=status,
        current=current,
        proposed=proposed,
        reason="test plan",
        in_use=in_use,
        waiting=waiting,
        sample=sample,
        planned=status == "ACTIVE",
    )
    return state, sample, plan


def _run(
    locs: list[tuple[LocationState, LocationSample, LocationPlan]],
    *,
    policy: Policy | None = None,
    memory: GuardMemory | None = None,
    tenancy: int = 1,
    status: str = "ACTIVE",
    sample_at: float = NOW,
    complete: bool = True,
    paused: bool = False,
    changes: tuple[LocationChange, ...] = (),
    elsewhere: float = 0.0,
    now: float = NOW,
) -> tuple[GroupDecision, GuardMemory]:
    model = (
        CapacityModel.LEGACY if locs[0][0].setting.on_demand is not None else CapacityModel.CURRENT
    )
    state = GroupState(
        group_id=G,
        arn="arn:" + G,
        status=status,
        stream_class="gen4n_high",
        tenancy=tenancy,
        capacity_model=model,
        locations=tuple(s for s, _, _ in locs),
        primary_location=PRIMARY,
    )
    sample = GroupSample(
        at=sample_at,
        group_id=G,
        state=state,
        locations=tuple(s for _, s, _ in locs),
        complete=complete,
    )
    plan = GroupPlan(
        group_id=G,
        at=now,
        capacity_model=model,
        tenancy=tenancy,
        stream_class="gen4n_high",
        primary_location=PRIMARY,
        locations=tuple(p for _, _, p in locs),
        location_changes=changes,
    )
    return guard_group(
        plan,
        state=state,
        sample=sample,
        policy=policy or _policy(),
        memory=memory or GuardMemory(),
        now=now,
        paused=paused,
        budget_spent_elsewhere_per_hour=elsewhere,
    )


def _one(
    current: CapacitySetting, proposed: CapacitySetting, **kw: Any
) -> tuple[CapacitySetting, GroupDecision, GuardMemory]:
    loc_kw = {k: kw.pop(k) for k in ("in_use", "waiting", "complete") if k in kw}
    decision, memory = _run([_loc(PRIMARY, current, proposed, **loc_kw)], **kw)
    return decision.locations[0].decided, decision, memory


def _guards(decision: GroupDecision) -> set[str]:
    return {v.guard for v in decision.vetoes}


C = CapacitySetting


# --------------------------------------------------------------------------- gates


@pytest.mark.parametrize("status", ["ACTIVATING", "UPDATING_LOCATIONS", "ERROR", "EXPIRED"])
def test_group_not_active_is_frozen(status: str) -> None:
    decided, decision, memory = _one(C(4, 0, 8), C(10, 2, 20), status=status)
    assert decided == C(4, 0, 8)
    assert decision.frozen
    assert "status" in _guards(decision)
    assert memory == GuardMemory()


def test_location_not_active_is_held() -> None:
    decision, _ = _run(
        [
            _loc(PRIMARY, C(4, 0, 8), C(10, 0, 20)),
            _loc("eu-west-1", C(2, 0, 4), C(2, 0, 4), status="ACTIVATING"),
        ]
    )
    us, eu = decision.locations
    assert us.decided == C(10, 0, 20)
    assert eu.decided == C(2, 0, 4)
    assert any(v.guard == "status" and v.location == "eu-west-1" for v in decision.vetoes)


@pytest.mark.parametrize(("flag", "policy_paused"), [(True, False), (False, True)])
def test_pause_freezes(flag: bool, policy_paused: bool) -> None:
    decided, decision, _ = _one(
        C(4, 0, 8), C(10, 0, 20), paused=flag, policy=_policy(paused=policy_paused)
    )
    assert decided == C(4, 0, 8)
    assert decision.frozen
    assert "pause" in _guards(decision)


def test_forecast_only_records_but_changes_nothing() -> None:
    decided, decision, memory = _one(
        C(4, 0, 8), C(10, 0, 20), policy=_policy(mode=Mode.FORECAST_ONLY)
    )
    assert decided == C(4, 0, 8)
    assert decision.locations[0].proposed == C(10, 0, 20)
    (veto,) = [v for v in decision.vetoes if v.guard == "forecast-only"]
    assert "would set us-east-1: always-on 10, target-idle 0, max 20" in veto.reason
    assert memory.recommendations[(G, PRIMARY)][-1].levels == Levels(10, 0, 20)


# --------------------------------------------------------------------------- stale data


def test_stale_sample_never_decreases_but_may_increase() -> None:
    decided, decision, _ = _one(C(10, 4, 20), C(14, 0, 12), sample_at=NOW - 181)
    assert decided == C(14, 4, 20)
    assert "stale" in _guards(decision)
    assert not decision.frozen


def test_incomplete_location_sample_never_decreases() -> None:
    decided, _, _ = _one(C(10, 4, 20), C(2, 0, 4), complete=False)
    assert decided == C(10, 4, 20)


def test_incomplete_group_sample_never_decreases_legacy_on_demand() -> None:
    decided, _, _ = _one(C(4, on_demand=8), C(12, on_demand=0), complete=False)
    assert decided == C(12, on_demand=8)


def test_fresh_data_may_decrease() -> None:
    decided, _, _ = _one(C(10, 4, 20), C(2, 0, 4))
    assert decided == C(2, 0, 4)


# --------------------------------------------------------------------------- hard limits


def test_bounds_clamp_with_tenancy() -> None:
    policy = _policy(default_bounds=LocationBounds(min_capacity=3, max_capacity=13))
    decided, decision, _ = _one(C(4, 0, 8), C(0, 20, 30), policy=policy, tenancy=2)
    # min 3 → 4, max 13 → 12 (whole hosts of 2).
    assert decided == C(4, 12, 12)
    assert "bounds" in _guards(decision)


def test_per_location_bounds() -> None:
    policy = _policy(location_bounds={"eu-west-1": LocationBounds(0, 4)})
    decision, _ = _run(
        [_loc(PRIMARY, C(4, 0, 8), C(10, 0, 10)), _loc("eu-west-1", C(2, 0, 4), C(10, 0, 10))],
        policy=policy,
    )
    assert [d.decided for d in decision.locations] == [C(10, 0, 10), C(4, 0, 4)]


def test_never_below_in_use() -> None:
    decided, decision, _ = _one(C(8, 0, 8), C(0, 0, 2), in_use=5, tenancy=2)
    assert decided.ceiling == 6
    assert decided == C(0, 0, 6)
    assert "in-use" in _guards(decision)


def test_in_use_beats_the_maximum_bound() -> None:
    policy = _policy(default_bounds=LocationBounds(0, 4))
    decided, _, _ = _one(C(8, 0, 8), C(0, 0, 2), in_use=7, policy=policy)
    assert decided.ceiling == 7


def test_tenancy_rounds_up() -> None:
    decided, decision, _ = _one(C(12, 0, 12), C(13, 1, 25), tenancy=12)
    assert decided == C(24, 12, 36)
    assert "tenancy" in _guards(decision)


def test_consistency_of_the_current_model() -> None:
    decided, decision, _ = _one(C(4, 0, 8), C(10, 20, 6))
    assert decided == C(10, 10, 10)
    assert "consistency" in _guards(decision)


def test_legacy_on_demand_is_never_negative() -> None:
    decided, _, _ = _one(C(4, on_demand=4), C(10, on_demand=0))
    assert decided == C(10, on_demand=0)


# --------------------------------------------------------------------------- pacing


def _behavior(
    up: DirectionBehavior = UNLIMITED, down: DirectionBehavior = UNLIMITED, **kw: Any
) -> Behavior:
    return Behavior(scale_up=up, scale_down=down, **kw)


def _rules(
    *rules: tuple[RuleType, float, float],
    select: SelectPolicy = SelectPolicy.MAX,
    window: float = 0.0,
) -> DirectionBehavior:
    return DirectionBehavior(window, tuple(ScalingRule(t, v, p) for t, v, p in rules), select)


def test_default_behavior_scales_down_twenty_percent_per_minute() -> None:
    # Low recommendations observed for more than half the 300 s window: scale down, paced.
    recs = tuple(RecommendationRecord(NOW - ago, Levels(0, 0, 0)) for ago in (200, 140, 80, 20))
    memory = GuardMemory(recommendations={(G, PRIMARY): recs})
    decided, decision, _ = _one(
        C(20, 0, 40), C(0, 0, 0), policy=_policy(behavior=Behavior()), memory=memory
    )
    assert decided == C(16, 0, 32)
    assert "step-limit" in _guards(decision)


def test_fresh_controller_does_not_scale_down_before_half_the_window() -> None:
    decided, decision, _ = _one(C(20, 0, 40), C(0, 0, 0), policy=_policy(behavior=Behavior()))
    assert decided == C(20, 0, 40)
    assert "stabilisation" in _guards(decision)


@pytest.mark.parametrize(
    ("outage_s", "scales_down"),
    [(0, True), (120, True), (150, True), (240, False), (500, False), (900, False)],
)
def test_an_outage_is_watched_afresh(outage_s: float, scales_down: bool) -> None:
    """Records every 60 s until ``outage_s`` ago, then none (the reads failed, or the
    controller was down): with a 300 s window, a hole longer than half the window means the
    window was not watched, and nothing scales down until half of it has been again. Before,
    an outage of one to two windows let the first tick after it scale down at once: the
    oldest record was old enough, though none fell inside the window."""
    last = NOW - max(outage_s, 60)
    recs = tuple(RecommendationRecord(last - 60 * k, Levels(0, 0, 0)) for k in range(20, -1, -1))
    memory = GuardMemory(recommendations={(G, PRIMARY): recs})
    decided, decision, _ = _one(
        C(20, 0, 40), C(0, 0, 0), policy=_policy(behavior=Behavior()), memory=memory
    )
    if scales_down:
        assert decided == C(16, 0, 32)
    else:
        assert decided == C(20, 0, 40)
        assert "stabilisation" in _guards(decision)


def test_scale_up_select_max_and_min() -> None:
    up = _rules((RuleType.PERCENT, 100, 60), (RuleType.SLOTS, 4, 60))
    decided, _, _ = _one(C(10, 0, 10), C(50, 0, 50), policy=_policy(behavior=_behavior(up)))
    assert decided == C(20, 0, 20)
    up_min = replace(up, select_policy=SelectPolicy.MIN)
    decided, _, _ = _one(C(10, 0, 10), C(50, 0, 50), policy=_policy(behavior=_behavior(up_min)))
    assert decided == C(14, 0, 14)


def test_disabled_direction_does_not_move() -> None:
    down = _rules(select=SelectPolicy.DISABLED)
    decided, _, _ = _one(C(10, 0, 10), C(2, 0, 2), policy=_policy(behavior=_behavior(down=down)))
    assert decided == C(10, 0, 10)
    decided, _, _ = _one(C(10, 0, 10), C(12, 0, 12), policy=_policy(behavior=_behavior(down=down)))
    assert decided == C(12, 0, 12)


def test_step_limit_counts_changes_applied_earlier_in_the_period() -> None:
    up = _rules((RuleType.SLOTS, 8, 60))
    earlier = AppliedRecord(NOW - 30, Levels(4, 0, 4), Levels(10, 0, 10))
    memory = GuardMemory(applied={(G, PRIMARY): (earlier,)})
    decided, _, _ = _one(
        C(10, 0, 10), C(30, 0, 30), policy=_policy(behavior=_behavior(up)), memory=memory
    )
    assert decided == C(12, 0, 12)  # period start 4 + 8
    old = replace(earlier, at=NOW - 61)
    decided, _, _ = _one(
        C(10, 0, 10),
        C(30, 0, 30),
        policy=_policy(behavior=_behavior(up)),
        memory=GuardMemory(applied={(G, PRIMARY): (old,)}),
    )
    assert decided == C(18, 0, 18)


def test_a_rule_smaller_than_a_host_still_allows_one_host() -> None:
    up = _rules((RuleType.SLOTS, 8, 60))
    down = _rules((RuleType.PERCENT, 20, 60))
    behavior = _behavior(up, down)
    decided, _, _ = _one(C(12, 0, 12), C(48, 0, 48), policy=_policy(behavior=behavior), tenancy=12)
    assert decided == C(24, 0, 24)
    decided, _, _ = _one(C(24, 0, 24), C(0, 0, 0), policy=_policy(behavior=behavior), tenancy=12)
    assert decided == C(12, 0, 12)


def test_scale_down_stabilisation_keeps_the_highest_recent_recommendation() -> None:
    down = _rules(window=300.0)
    recs = (
        RecommendationRecord(NOW - 400, Levels(30, 0, 30)),  # outside the window
        RecommendationRecord(NOW - 160, Levels(16, 0, 20)),
        RecommendationRecord(NOW - 60, Levels(12, 0, 14)),
    )
    memory = GuardMemory(recommendations={(G, PRIMARY): recs})
    decided, decision, new_memory = _one(
        C(20, 0, 24), C(4, 0, 8), policy=_policy(behavior=_behavior(down=down)), memory=memory
    )
    assert decided == C(16, 0, 20)
    assert "stabilisation" in _guards(decision)
    kept = new_memory.recommendations[(G, PRIMARY)]
    # kept for twice the window (coverage), used within the window only
    assert [r.at for r in kept] == [NOW - 400, NOW - 160, NOW - 60, NOW]


def test_scale_up_stabilisation_keeps_the_lowest_recent_recommendation() -> None:
    up = _rules(window=120.0)
    memory = GuardMemory(
        recommendations={(G, PRIMARY): (RecommendationRecord(NOW - 60, Levels(6, 0, 6)),)}
    )
    decided, _, _ = _one(
        C(4, 0, 4), C(20, 0, 20), policy=_policy(behavior=_behavior(up)), memory=memory
    )
    assert decided == C(6, 0, 6)


def test_tolerance_ignores_small_changes_but_not_urgent_ones() -> None:
    policy = _policy(behavior=_behavior(tolerance=0.2))
    decided, decision, _ = _one(C(10, 0, 10), C(11, 0, 11), policy=policy)
    assert decided == C(10, 0, 10)
    assert "tolerance" in _guards(decision)
    decided, _, _ = _one(C(10, 0, 10), C(11, 0, 11), policy=policy, in_use=9, waiting=2)
    assert decided == C(11, 0, 11)
    decided, _, _ = _one(C(10, 0, 10), C(15, 0, 15), policy=policy)
    assert decided == C(15, 0, 15)


def test_cooldown_holds_except_urgent_increases() -> None:
    policy = _policy(behavior=_behavior(cooldown_s=120.0))
    memory = GuardMemory(last_applied_at={G: NOW - 30})
    decided, decision, _ = _one(C(10, 0, 20), C(6, 0, 12), policy=policy, memory=memory)
    assert decided == C(10, 0, 20)
    assert "cooldown" in _guards(decision)
    decided, _, _ = _one(
        C(10, 0, 20), C(24, 0, 30), policy=policy, memory=memory, in_use=12, waiting=10
    )
    assert decided == C(24, 0, 30)  # 22 sessions need more than the ceiling of 20
    decided, _, _ = _one(C(10, 0, 20), C(24, 0, 30), policy=policy, memory=memory, in_use=12)
    assert decided == C(24, 0, 24)  # always-on was urgent, the ceiling only follows it
    later = GuardMemory(last_applied_at={G: NOW - 121})
    decided, _, _ = _one(C(10, 0, 20), C(6, 0, 12), policy=policy, memory=later)
    assert decided == C(6, 0, 12)


# --------------------------------------------------------------------------- budget


def test_budget_cuts_idle_then_maximum_then_always_on() -> None:
    # price 1 $/slot-hour; plan: always-on 10, idle 4, maximum 20 → $20/h worst case.
    proposal = C(10, 4, 20)
    cases = [
        (20.0, C(10, 4, 20)),  # fits
        (17.0, C(10, 1, 17)),  # idle buffer first (14 = 10 + 4 idle, 6 burst)
        (12.0, C(10, 0, 12)),  # idle gone, then burst
        (8.0, C(8, 0, 8)),  # then always-on
        (1.0, C(5, 0, 5)),  # never below the 5 sessions in use
    ]
    for cap, expected in cases:
        policy = _policy(budget=Budget(max_cost_per_hour=cap))
        decided, decision, _ = _one(C(10, 4, 20), proposal, policy=policy, in_use=5)
        assert decided == expected, cap
        if cap < 20:
            assert any("cut" in v.reason for v in decision.vetoes if v.guard == "budget")
    policy = _policy(budget=Budget(max_cost_per_hour=1.0))
    _, decision, _ = _one(C(10, 4, 20), proposal, policy=policy, in_use=5)
    assert any("cannot cut further" in v.reason for v in decision.vetoes)


def test_budget_cuts_other_locations_before_the_primary_and_counts_elsewhere() -> None:
    policy = _policy(budget=Budget(max_cost_per_hour=30.0))
    decision, _ = _run(
        [_loc(PRIMARY, C(10, 0, 10), C(10, 0, 20)), _loc("eu-west-1", C(4, 0, 4), C(4, 0, 10))],
        policy=policy,
        elsewhere=10.0,
    )
    us, eu = (d.decided for d in decision.locations)
    # $30 planned + $10 elsewhere: 10 slots over the $30 cap.
    assert eu == C(4, 0, 4)  # all 6 slots of burst cut here first
    assert us == C(10, 0, 16)  # then 4 more at the primary
    assert {v.location for v in decision.vetoes if v.guard == "budget"} == {
        None,
        PRIMARY,
        "eu-west-1",
    }


def test_budget_honours_a_custom_cut_order() -> None:
    policy = _policy(
        budget=Budget(max_cost_per_hour=16.0, cut_order=("maximum", "target_idle", "always_on"))
    )
    decided, _, _ = _one(C(10, 4, 20), C(10, 4, 20), policy=policy)
    assert decided == C(10, 4, 16)  # 4 of the 6 burst slots go; the idle buffer stays


# --------------------------------------------------------------------------- drift, fallback


def test_drift_is_respected_for_the_cooldown_then_resumed() -> None:
    policy = _policy(drift_cooldown_s=600.0)
    memory = GuardMemory(last_applied={(G, PRIMARY): C(4, 0, 8)})
    decided, decision, memory = _one(C(6, 0, 8), C(2, 0, 4), policy=policy, memory=memory)
    assert decided == C(6, 0, 8)
    assert "drift" in _guards(decision)
    assert memory.drift_seen_at[(G, PRIMARY)] == NOW
    decided, _, memory = _one(
        C(6, 0, 8), C(2, 0, 4), policy=policy, memory=memory, now=NOW + 601, sample_at=NOW + 601
    )
    assert decided == C(2, 0, 4)
    assert memory.last_applied[(G, PRIMARY)] == C(6, 0, 8)
    assert (G, PRIMARY) not in memory.drift_seen_at


def test_drift_revert_follows_the_plan() -> None:
    policy = _policy(drift=DriftAction.REVERT)
    memory = GuardMemory(last_applied={(G, PRIMARY): C(4, 0, 8)})
    decided, decision, _ = _one(C(6, 0, 8), C(4, 0, 8), policy=policy, memory=memory)
    assert decided == C(4, 0, 8)
    assert "drift" in _guards(decision)


def test_static_fallback_after_repeated_failures() -> None:
    fallback = Fallback(
        failure_threshold=2, behavior=FallbackBehavior.STATIC, always_on=6, maximum=10
    )
    policy = _policy(fallback=fallback)
    memory = GuardMemory()
    decided = C(0, 0, 0)
    for _ in range(2):
        decided, decision, memory = _one(
            C(4, 0, 8), C(4, 0, 8), policy=policy, memory=memory, complete=False
        )
    assert memory.failures[G] == 2
    assert decided == C(6, 0, 10)
    assert "fallback" in _guards(decision)
    _, _, memory = _one(C(4, 0, 8), C(4, 0, 8), policy=policy, memory=memory)
    assert memory.failures[G] == 0


# --------------------------------------------------------------------------- location changes


def test_location_changes_are_guarded() -> None:
    changes = (
        LocationChange(PRIMARY, "remove", None, "quiet"),
        LocationChange("eu-west-1", "remove", None, "quiet"),
        LocationChange("ap-1", "remove", None, "quiet"),
        LocationChange("us-west-2", "remove", None, "quiet"),
        LocationChange("sa-1", "add", C(3, 1, 5), "demand"),
        LocationChange("sa-2", "add", None, "demand"),
        LocationChange("eu-west-1", "add", C(2, 0, 2), "again"),
        LocationChange("x", "rename", None, "?"),
    )
    decision, _ = _run(
        [
            _loc(PRIMARY, C(2, 0, 2), C(2, 0, 2)),
            _loc("eu-west-1", C(2, 0, 2), C(2, 0, 2), in_use=1),
            _loc("us-west-2", C(2, 0, 2), C(2, 0, 2)),
        ],
        changes=changes,
        tenancy=2,
    )
    kept = {(c.location, c.action): c for c in decision.location_changes}
    assert set(kept) == {("us-west-2", "remove"), ("sa-1", "add")}
    assert kept[("sa-1", "add")].setting == C(4, 2, 6)
    refused = [v.reason for v in decision.vetoes if v.guard == "location-change"]
    assert any("primary" in r for r in refused)
    assert any("live sessions" in r for r in refused)
    assert any("not part of the group" in r for r in refused)
    assert any("no capacity given" in r for r in refused)
    assert any("already part" in r for r in refused)
    assert any("unknown action" in r for r in refused)


def test_no_location_changes_when_paused_or_forecast_only() -> None:
    change = (LocationChange("us-west-2", "remove", None, "quiet"),)
    locs = [_loc(PRIMARY, C(2, 0, 2), C(2, 0, 2)), _loc("us-west-2", C(2, 0, 2), C(2, 0, 2))]
    decision, _ = _run(locs, changes=change, paused=True)
    assert decision.location_changes == ()
    decision, _ = _run(locs, changes=change, policy=_policy(mode=Mode.FORECAST_ONLY))
    assert decision.location_changes == ()
    decision, _ = _run(locs, changes=change, complete=False)
    assert decision.location_changes == ()


# --------------------------------------------------------------------------- memory


def test_memory_round_trips_and_is_not_mutated() -> None:
    memory = GuardMemory(
        recommendations={(G, PRIMARY): (RecommendationRecord(NOW - 10, Levels(4, 0, 8)),)},
        applied={(G, PRIMARY): (AppliedRecord(NOW - 20, Levels(2, 0, 4), Levels(4, 0, 8)),)},
        last_applied_at={G: NOW - 20},
        last_applied={(G, PRIMARY): C(4, 0, 8), (G, "eu"): C(2, on_demand=2)},
        drift_seen_at={(G, "eu"): NOW - 5},
        failures={G: 1},
    )
    snapshot = memory.to_json()
    assert GuardMemory.from_json(snapshot) == memory
    _one(C(4, 0, 8), C(20, 0, 40), memory=memory, policy=_policy(behavior=Behavior()))
    assert memory.to_json() == snapshot


def test_memory_rejects_other_versions_and_garbage() -> None:
    with pytest.raises(ValueError, match="version"):
        GuardMemory.from_json('{"version": 99}')
    with pytest.raises(ValueError, match="malformed"):
        GuardMemory.from_json('{"version": 1}')
    with pytest.raises(ValueError, match="malformed"):
        GuardMemory.from_json("not json")


def test_record_applied_feeds_step_limits_and_cooldown() -> None:
    policy = _policy(behavior=_behavior(_rules((RuleType.SLOTS, 4, 60)), cooldown_s=0.0))
    decided, decision, memory = _one(C(4, 0, 4), C(20, 0, 20), policy=policy)
    assert decided == C(8, 0, 8)
    memory = memory.record_applied(decision, NOW)
    assert memory.last_applied_at[G] == NOW
    assert memory.last_applied[(G, PRIMARY)] == C(8, 0, 8)
    decided, _, _ = _one(
        C(8, 0, 8), C(20, 0, 20), policy=policy, memory=memory, now=NOW + 30, sample_at=NOW + 30
    )
    assert decided == C(8, 0, 8)  # 4 slots already used in this 60 s period
    unchanged = memory.record_applied(replace(decision, locations=()), NOW + 5)
    assert unchanged.last_applied_at[G] == NOW


# --------------------------------------------------------------------------- properties

TENANCIES = st.sampled_from([1, 2, 4, 12])
FAST = settings(max_examples=50, deadline=None)


@st.composite
def _direction(draw: st.DrawFn) -> DirectionBehavior:
    rules = draw(
        st.lists(
            st.builds(
                ScalingRule,
                st.sampled_from(list(RuleType)),
                st.integers(0, 200).map(float),
                st.sampled_from([15.0, 60.0, 300.0]),
            ),
            max_size=3,
        )
    )
    return DirectionBehavior(
        stabilization_window_s=draw(st.sampled_from([0.0, 60.0, 300.0])),
        rules=tuple(rules),
        select_policy=draw(st.sampled_from(list(SelectPolicy))),
    )


@st.composite
def _case(draw: st.DrawFn, legacy: bool | None = None) -> dict[str, Any]:
    """A random location: current setting (whole hosts, consistent), a random proposal,
    sessions in use within the current ceiling, bounds, behaviour, budget and memory."""
    t = draw(TENANCIES)
    is_legacy = draw(st.booleans()) if legacy is None else legacy
    hosts = st.integers(0, 20)
    ao = draw(hosts) * t
    if is_legacy:
        current = C(ao, on_demand=draw(hosts) * t)
        proposed = C(draw(st.integers(0, 300)), on_demand=draw(st.integers(0, 300)))
    else:
        maximum = ao + draw(hosts) * t
        current = C(ao, min(draw(hosts) * t, maximum), maximum)
        proposed = C(*(draw(st.integers(0, 300)) for _ in range(3)))
    lo = draw(st.integers(0, 60))
    hi = lo + draw(st.integers(0, 300))
    behavior = Behavior(
        scale_up=draw(_direction()),
        scale_down=draw(_direction()),
        tolerance=draw(st.sampled_from([0.0, 0.1, 0.3])),
        cooldown_s=draw(st.sampled_from([0.0, 120.0])),
    )
    cap = draw(st.none() | st.integers(0, 200).map(float))
    recs = tuple(
        RecommendationRecord(NOW - age, Levels(*(draw(hosts) * t for _ in range(3))))
        for age in draw(st.lists(st.sampled_from([30.0, 90.0, 200.0]), max_size=3, unique=True))
    )
    memory = GuardMemory(
        recommendations={(G, PRIMARY): recs},
        last_applied_at={G: NOW - draw(st.sampled_from([10.0, 1000.0]))},
    )
    return {
        "tenancy": t,
        "current": current,
        "proposed": proposed,
        "in_use": draw(st.integers(0, current.ceiling)),
        "waiting": draw(st.integers(0, 5)),
        "policy": _policy(
            default_bounds=LocationBounds(lo, hi),
            behavior=behavior,
            budget=Budget(max_cost_per_hour=cap),
        ),
        "memory": memory,
    }


def _go(case: dict[str, Any], **kw: Any) -> tuple[CapacitySetting, GroupDecision]:
    decided, decision, _ = _one(
        case["current"],
        case["proposed"],
        tenancy=case["tenancy"],
        in_use=case["in_use"],
        waiting=case["waiting"],
        policy=kw.pop("policy", case["policy"]),
        memory=case["memory"],
        **kw,
    )
    return decided, decision


def _fields(s: CapacitySetting) -> list[int]:
    if s.on_demand is not None:
        return [s.always_on, s.on_demand]
    return [s.always_on, s.target_idle, s.maximum]


@FAST
@given(_case())
def test_every_value_is_whole_hosts_and_consistent(case: dict[str, Any]) -> None:
    decided, _ = _go(case)
    t = case["tenancy"]
    assert all(v >= 0 and v % t == 0 for v in _fields(decided))
    assert decided.model is case["current"].model
    if decided.on_demand is None:
        assert decided.always_on <= decided.maximum
        assert decided.target_idle <= decided.maximum


@FAST
@given(_case())
def test_property_never_below_in_use(case: dict[str, Any]) -> None:
    decided, _ = _go(case)
    assert decided.ceiling >= case["in_use"]


@FAST
@given(_case())
def test_decided_within_bounds(case: dict[str, Any]) -> None:
    """Within bounds, with two documented exceptions: never below in use beats the maximum,
    and the minimum bound yields only to it too."""
    decided, _ = _go(case)
    bounds = case["policy"].default_bounds
    t = case["tenancy"]
    lo = round_up_to_tenancy(bounds.min_capacity, t)
    hi = max(lo, round_down_to_tenancy(bounds.max_capacity, t))
    need = round_up_to_tenancy(case["in_use"], t)
    assert lo <= decided.always_on <= hi
    assert decided.ceiling <= max(hi, need)
    assert decided.idle_target <= hi


@FAST
@given(_case(), st.integers(1, 4))
def test_slot_step_limits_are_respected(case: dict[str, Any], hosts: int) -> None:
    """Wide bounds, no budget, sessions within the current capacity: no level moves more than
    the single Slots rule allows per period."""
    t = case["tenancy"]
    step = hosts * t
    rule = DirectionBehavior(0.0, (ScalingRule(RuleType.SLOTS, float(step), 60.0),))
    policy = _policy(behavior=Behavior(scale_up=rule, scale_down=rule))
    decided, _ = _go(case, policy=policy)
    current = case["current"]
    for name in ("always_on", "target_idle", "ceiling"):
        before, after = Levels.of(current).get(name), Levels.of(decided).get(name)
        assert abs(after - before) <= step, name


@FAST
@given(_case(), st.sampled_from(["old", "incomplete-group", "incomplete-location"]))
def test_stale_or_incomplete_data_never_decreases_any_field(case: dict[str, Any], how: str) -> None:
    variants: dict[str, dict[str, Any]] = {
        "old": {"sample_at": NOW - 1000},
        "incomplete-group": {"complete": False},
    }
    kw = variants.get(how, {})
    if how == "incomplete-location":
        decided, _, _ = _one(
            case["current"],
            case["proposed"],
            tenancy=case["tenancy"],
            in_use=case["in_use"],
            policy=case["policy"],
            memory=case["memory"],
            complete=False,
        )
    else:
        decided, _ = _go(case, **kw)
    assert all(d >= c for d, c in zip(_fields(decided), _fields(case["current"]), strict=True))


@FAST
@given(
    _case(),
    st.sampled_from(["ACTIVATING", "UPDATING_LOCATIONS", "ACTIVE_WITH_ERRORS", "ERROR", "pause"]),
)
def test_frozen_groups_are_unchanged(case: dict[str, Any], why: str) -> None:
    kw: dict[str, Any] = {"paused": True} if why == "pause" else {"status": why}
    decided, decision = _go(case, **kw)
    assert decided == case["current"]
    assert decision.frozen
    assert decision.vetoes


@FAST
@given(_case())
def test_forecast_only_never_changes(case: dict[str, Any]) -> None:
    policy = replace(case["policy"], mode=Mode.FORECAST_ONLY)
    decided, decision = _go(case, policy=policy)
    assert decided == case["current"]
    assert not decision.changed_locations
    assert any(v.guard == "forecast-only" for v in decision.vetoes)


@FAST
@given(_case())
def test_guard_is_deterministic_and_leaves_memory_alone(case: dict[str, Any]) -> None:
    before = case["memory"].to_json()
    first = _go(case)
    second = _go(case)
    assert first == second
    assert case["memory"].to_json() == before


def test_active_with_errors_may_only_remove_a_location() -> None:
    changes = (
        LocationChange("eu-west-1", "remove", None, "failed location"),
        LocationChange("sa-1", "add", C(2, 0, 2), "demand"),
    )
    decision, _ = _run(
        [
            _loc(PRIMARY, C(2, 0, 2), C(8, 0, 8)),
            _loc("eu-west-1", C(2, 0, 2), C(2, 0, 2), status="ERROR"),
        ],
        changes=changes,
        status="ACTIVE_WITH_ERRORS",
    )
    assert decision.frozen
    assert decision.locations[0].decided == C(2, 0, 2)
    assert [(c.location, c.action) for c in decision.location_changes] == [("eu-west-1", "remove")]
    assert any(v.location == "sa-1" and "ACTIVE_WITH_ERRORS" in v.reason for v in decision.vetoes)


def test_memory_forgets_removed_locations_but_not_other_groups() -> None:
    rec = (RecommendationRecord(NOW - 10, Levels(2, 0, 2)),)
    memory = GuardMemory(
        recommendations={(G, "gone-1"): rec, ("sg-other", "gone-1"): rec},
        last_applied={(G, "gone-1"): C(2, 0, 2)},
    )
    _, _, new = _one(C(2, 0, 2), C(2, 0, 2), memory=memory, policy=_policy(behavior=Behavior()))
    assert set(new.recommendations) == {("sg-other", "gone-1"), (G, PRIMARY)}
    assert new.last_applied == {}


def test_worst_case_cost_matches_what_the_budget_counts() -> None:
    decision, _ = _run(
        [_loc(PRIMARY, C(10, 0, 10), C(10, 2, 20)), _loc("eu-west-1", C(4, 0, 4), C(4, 0, 10))],
        policy=_policy(budget=Budget(max_cost_per_hour=30.0)),
    )
    assert worst_case_cost_per_hour(decision, 1.0) == 30.0
    assert worst_case_cost_per_hour(decision, 0.5) == 15.0


# --------------------------------------------------------------------------- monthly budget


def _month_hours(now: float = NOW) -> float:
    return (month_end(now) - now) / 3600.0


def _spend(spent: float, *, at: float = NOW, rate: float = 0.0, policy: str = "p") -> MonthSpend:
    return MonthSpend(policy, month_start(at), spent, at, rate)


def test_monthly_cap_binds_on_the_projected_month() -> None:
    """Projected = spent this month + worst-case $/h × hours left; cuts as the hourly cap."""
    hours = _month_hours()
    memory = GuardMemory(month_spend={G: _spend(100.0)})
    proposal = C(10, 4, 20)  # $20/h worst case at $1/slot-hour, 5 in use
    fits = _policy(budget=Budget(max_cost_per_month=100.0 + 20.0 * hours + 0.01))
    decided, decision, _ = _one(C(10, 4, 20), proposal, policy=fits, memory=memory, in_use=5)
    assert decided == proposal
    assert "budget" not in _guards(decision)
    tight = _policy(budget=Budget(max_cost_per_month=100.0 + 19.9 * hours))
    decided, decision, _ = _one(C(10, 4, 20), proposal, policy=tight, memory=memory, in_use=5)
    assert decided == C(10, 3, 19)  # the idle buffer goes first, as for the hourly cap
    reasons = [v.reason for v in decision.vetoes if v.guard == "budget"]
    assert any("/month ($100.00 spent" in r and "$19.90/h" in r for r in reasons), reasons
    # without the spend so far the same cap would have fitted: the spend counts
    decided, _, _ = _one(C(10, 4, 20), proposal, policy=tight, in_use=5)
    assert decided == proposal


def test_the_tighter_of_hourly_and_monthly_caps_binds() -> None:
    hours = _month_hours()
    both = Budget(max_cost_per_hour=12.0, max_cost_per_month=17.0 * hours)
    decided, decision, _ = _one(C(10, 4, 20), C(10, 4, 20), policy=_policy(budget=both), in_use=5)
    assert decided == C(10, 0, 12)
    assert all("/month" not in v.reason for v in decision.vetoes)
    both = Budget(max_cost_per_hour=19.0, max_cost_per_month=12.0 * hours)
    decided, decision, _ = _one(C(10, 4, 20), C(10, 4, 20), policy=_policy(budget=both), in_use=5)
    assert decided == C(10, 0, 12)
    assert any("/month" in v.reason for v in decision.vetoes)


def test_overspent_month_cuts_to_in_use_never_below() -> None:
    policy = _policy(budget=Budget(max_cost_per_month=50.0))
    memory = GuardMemory(month_spend={G: _spend(80.0)})
    decided, decision, _ = _one(C(10, 4, 20), C(10, 4, 20), policy=policy, memory=memory, in_use=5)
    assert decided == C(5, 0, 5)
    assert any("cannot cut further" in v.reason for v in decision.vetoes)


def test_month_spend_is_carried_forward_and_counts_other_groups_of_the_policy() -> None:
    policy = _policy(budget=Budget(max_cost_per_month=1e6))
    # tick 1: nothing known; the allocation seen (5 slots × $1) is the rate from now on
    _, _, memory = _one(C(10, 0, 10), C(10, 0, 10), policy=policy, in_use=5)
    assert memory.month_spend[G].spent_usd == 0.0
    assert memory.month_spend[G].rate_per_hour == 5.0
    # tick 2, an hour later: 5 slot-hours spent
    later = NOW + 3600
    _, _, memory = _one(
        C(10, 0, 10),
        C(10, 0, 10),
        policy=policy,
        memory=memory,
        in_use=5,
        now=later,
        sample_at=later,
    )
    assert memory.month_spend[G].spent_usd == 5.0
    # another group of the policy spent $300 (carried at most stale_after_s), another
    # policy's group $10 000: only the first counts against this policy's cap
    memory = replace(
        memory,
        month_spend={
            **memory.month_spend,
            "sg-2": _spend(300.0, at=later - 60, rate=60.0),
            "sg-3": _spend(10_000.0, at=later, policy="other"),
        },
    )
    hours = _month_hours(later)
    cap = 5.0 + 300.0 + 1.0 + 12.0 * hours  # + $1: sg-2's rate for its 60 s
    policy = _policy(budget=Budget(max_cost_per_month=cap + 0.01))
    decided, _, memory = _one(
        C(10, 4, 20),
        C(10, 4, 20),
        policy=policy,
        memory=memory,
        in_use=5,
        now=later,
        sample_at=later,
    )
    assert decided == C(10, 0, 12)
    assert set(memory.month_spend) == {G, "sg-2", "sg-3"}


def test_month_spend_starts_again_each_month() -> None:
    policy = _policy(budget=Budget(max_cost_per_month=1e6))
    start = month_start(NOW)
    # a record of last month: only the rate since this month's start counts
    last_month = GuardMemory(month_spend={G: _spend(999.0, at=start - 3600, rate=2.0)})
    last_month = replace(
        last_month,
        month_spend={G: replace(last_month.month_spend[G], month_start=start - 31 * 86400)},
    )
    _, _, memory = _one(C(10, 0, 10), C(10, 0, 10), policy=policy, memory=last_month)
    assert memory.month_spend[G].month_start == start
    assert abs(memory.month_spend[G].spent_usd - 2.0 * (NOW - start) / 3600) < 1e-9


def _guard_with_history_spend(spent: float | None, memory: GuardMemory, cap: float) -> Any:
    state, sample, plan = _loc(PRIMARY, C(10, 4, 20), C(10, 4, 20), in_use=5)
    group = GroupState(
        G, "arn:" + G, "ACTIVE", "gen4n_high", 1, CapacityModel.CURRENT, (state,), PRIMARY
    )
    return guard_group(
        GroupPlan(
            G, NOW, CapacityModel.CURRENT, 1, "gen4n_high", PRIMARY, (plan,), month_spent_usd=spent
        ),
        state=group,
        sample=GroupSample(NOW, G, group, (sample,), complete=True),
        policy=_policy(budget=Budget(max_cost_per_month=cap)),
        memory=memory,
        now=NOW,
    )


def test_history_spend_and_memory_spend_the_larger_counts() -> None:
    hours = _month_hours()
    cap = 100.0 + 19.9 * hours
    for spent, memory in (
        (100.0, GuardMemory()),  # from the plan's histories only
        (40.0, GuardMemory(month_spend={G: _spend(100.0)})),  # memory knows more
        (100.0, GuardMemory(month_spend={G: _spend(40.0)})),  # history knows more
    ):
        decision, new = _guard_with_history_spend(spent, memory, cap)
        assert decision.locations[0].decided == C(10, 3, 19)
        assert new.month_spend[G].spent_usd == 100.0
    decision, _ = _guard_with_history_spend(None, GuardMemory(), cap)
    assert decision.locations[0].decided == C(10, 4, 20)


def test_a_tick_sampled_before_midnight_on_the_1st_does_not_carry_last_month() -> None:
    """The plan's spend is for its sample's month; the guard runs a few seconds later. Before,
    a tick that straddled 00:00 UTC on the 1st stored last month's spend as this month's,
    and carried it all month."""
    first = month_end(NOW)
    sampled, guarded = first - 3.0, first + 4.0
    state, sample, plan = _loc(PRIMARY, C(10, 0, 10), C(10, 0, 10), in_use=5)
    group = GroupState(
        G, "arn:" + G, "ACTIVE", "gen4n_high", 1, CapacityModel.CURRENT, (state,), PRIMARY
    )
    last_month = 13_440.0
    _, memory = guard_group(
        GroupPlan(
            G,
            sampled,
            CapacityModel.CURRENT,
            1,
            "gen4n_high",
            PRIMARY,
            (plan,),
            month_spent_usd=last_month,
        ),
        state=group,
        sample=GroupSample(sampled, G, group, (sample,), complete=True),
        policy=_policy(budget=Budget(max_cost_per_month=1e6)),
        memory=GuardMemory(),
        now=guarded,
    )
    record = memory.month_spend[G]
    assert record.month_start == first
    assert record.spent_usd == 0.0


def test_a_frozen_group_keeps_its_month_spend_up_to_date() -> None:
    """A paused (or not ACTIVE) group still bills: its record is brought forward, so the
    policy's other groups keep counting it after ``stale_after_s``."""
    policy = _policy(budget=Budget(max_cost_per_month=1e6))
    start = month_start(NOW)
    memory = GuardMemory(month_spend={G: _spend(0.0, at=start, rate=100.0)})
    _, decision, new = _one(
        C(100, 0, 100), C(100, 0, 100), policy=policy, memory=memory, in_use=100, paused=True
    )
    assert decision.frozen
    record = new.month_spend[G]
    assert record.at == NOW
    assert abs(record.spent_usd - 100.0 * (NOW - start) / 3600) < 1e-6


def test_month_spend_survives_the_memory_json() -> None:
    memory = GuardMemory(month_spend={G: _spend(12.5, rate=3.0)})
    assert GuardMemory.from_json(memory.to_json()) == memory
    old = json.loads(memory.to_json())
    del old["month_spend"]  # written before the monthly budget existed
    assert GuardMemory.from_json(json.dumps(old)).month_spend == {}


def test_added_location_gets_what_the_budget_leaves_or_is_refused() -> None:
    add = LocationChange("eu-west-1", "add", C(0, 2, 10), "lifecycle")
    decision, _ = _run(
        [_loc(PRIMARY, C(10, 0, 10), C(10, 0, 10))],
        policy=_policy(budget=Budget(max_cost_per_hour=12.0)),
        changes=(add,),
    )
    ((change),) = decision.location_changes
    assert change.setting == C(0, 0, 2)  # $2/h left: the idle buffer, then burst, cut
    assert worst_case_cost_per_hour(decision, 1.0) == 12.0
    decision, _ = _run(
        [_loc(PRIMARY, C(10, 0, 10), C(10, 0, 10))],
        policy=_policy(budget=Budget(max_cost_per_hour=10.0)),
        changes=(add,),
    )
    assert decision.location_changes == ()
    assert any(
        v.location == "eu-west-1" and "add refused: no room" in v.reason for v in decision.vetoes
    )
    decision, _ = _run(
        [_loc(PRIMARY, C(10, 0, 10), C(10, 0, 10))],
        policy=_policy(budget=Budget(max_cost_per_hour=100.0)),
        changes=(add,),
    )
    assert [c.setting for c in decision.location_changes] == [C(0, 2, 10)]


def test_a_percentage_scale_down_lowers_a_small_value_by_one_host() -> None:
    down = _rules((RuleType.PERCENT, 20.0, 60.0), window=0.0)
    decided, _, _ = _one(C(4, 4, 8), C(0, 2, 8), policy=_policy(behavior=_behavior(down=down)))
    assert decided.target_idle == 3  # 20 % of 4 rounds to 0: one host (tenancy 1) allowed
    assert decided.always_on == 3


def test_a_window_of_one_interval_still_scales_down() -> None:
    down = _rules(window=60.0)
    recs = (RecommendationRecord(NOW - 60, Levels(4, 0, 8)),)
    memory = GuardMemory(recommendations={(G, PRIMARY): recs})
    decided, _, _ = _one(
        C(10, 0, 20), C(4, 0, 8), policy=_policy(behavior=_behavior(down=down)), memory=memory
    )
    assert decided == C(4, 0, 8)
