"""The guard rules' shortcuts give what the general computation gives.

Why: the per-location rules run every tick for every location, so they skip building new
values when nothing changes (stabilisation with no windows, ``Levels.with_`` spelled out).
A shortcut taken when it should not be would change a decision silently.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler import controller as controller_module
from autoscaler import guard
from autoscaler.backtest.runner import (
    DEFAULT_POLICY_FILE,
    backtest_registry,
    model_params,
    run_policy,
)
from autoscaler.backtest.sessions import plan_sessions
from autoscaler.backtest.synthetic import synthetic_trace
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
    LEVELS,
    AppliedRecord,
    GuardMemory,
    Levels,
    LocationInput,
    MonthSpend,
    RecommendationRecord,
    clamp_to_bounds,
    consistency,
    round_to_tenancy,
    stabilise,
    tolerance,
)
from autoscaler.planner import GroupPlan, LocationPlan, month_start
from autoscaler.policy.config import load_policy_file

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
        "sent",
    ]


# --------------------------------------------------------------------------- quiet ticks
#
# ``guard_group`` answers a quiet tick (every planned location proposes what it has) without
# running the rule chain. Whatever it answers must be what ``_guard_group_chain`` answers,
# decision and memory alike, down to their ``repr`` (dict order included) and the JSON.

LOCATIONS = ("us-east-1", "us-west-2", "eu-central-1")
GROUP = "sg-1"


def _direction(rng: random.Random) -> DirectionBehavior:
    rules = tuple(
        ScalingRule(
            rng.choice(list(RuleType)),
            float(rng.choice([0, 8, 20, 100])),
            rng.choice([15.0, 60.0, 300.0]),
        )
        for _ in range(rng.randint(0, 2))
    )
    return DirectionBehavior(
        stabilization_window_s=rng.choice([0.0, 0.0, 60.0, 300.0]),
        rules=rules,
        select_policy=rng.choice(list(SelectPolicy)),
    )


def _setting(rng: random.Random, t: int, legacy: bool, odd: bool) -> CapacitySetting:
    def n() -> int:
        v = rng.randint(0, 8) * t
        return v + rng.choice([-1, 1]) if odd and rng.random() < 0.3 else v

    if legacy:
        return CapacitySetting(n(), on_demand=n())
    ao = n()
    return CapacitySetting(ao, n(), ao + n() if rng.random() < 0.9 else n())


def _random_case(rng: random.Random) -> tuple[GroupPlan, dict[str, Any]]:
    """A group tick, biased towards quiet ones, with each reason not to be quiet now and then:
    gates, stale or incomplete data, drift, off-host or out-of-bound or inconsistent current
    values, sessions above the ceiling, caps, location changes, memory of other groups."""
    t = rng.choice([1, 2, 4, 12])
    legacy = rng.random() < 0.3
    model = CapacityModel.LEGACY if legacy else CapacityModel.CURRENT
    odd = rng.random() < 0.1
    names = LOCATIONS[: rng.randint(1, 3)]
    now = NOW + rng.choice([0.0, 0.0, 30.0])
    rare = 0.05
    states: list[LocationState] = []
    samples: list[LocationSample] = []
    plans: list[LocationPlan] = []
    memory_recs: dict[tuple[str, str], tuple[RecommendationRecord, ...]] = {}
    memory_applied: dict[tuple[str, str], tuple[AppliedRecord, ...]] = {}
    last_applied: dict[tuple[str, str], CapacitySetting] = {}
    drift_seen: dict[tuple[str, str], float] = {}
    for name in names:
        current = _setting(rng, t, legacy, odd)
        proposed = current if rng.random() < 0.85 else _setting(rng, t, legacy, odd)
        status = "ACTIVE" if rng.random() > rare else rng.choice(["ERROR", "ACTIVATING"])
        in_use = rng.randint(0, max(0, current.ceiling) + (2 * t if rng.random() < 0.1 else 0))
        waiting = rng.choice([0, 0, 1, 3])
        loc_state = LocationState(name, status, current, allocated=in_use, idle=0)
        loc_sample = LocationSample(
            group_id=GROUP,
            location=name,
            at=now,
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
            complete=rng.random() > rare,
        )
        states.append(loc_state)
        samples.append(loc_sample)
        plans.append(
            LocationPlan(
                location=name,
                status=status,
                current=current,
                proposed=proposed,
                reason="random",
                in_use=in_use,
                waiting=waiting,
                sample=loc_sample if rng.random() > rare else None,
                forecast_in_use=rng.choice([None, 1.5]),
                planned=status == "ACTIVE" and rng.random() > rare,
            )
        )
        key = (GROUP, name)
        if rng.random() < 0.7:
            memory_recs[key] = tuple(
                RecommendationRecord(now - age, Levels(*(rng.randint(0, 12) * t for _ in range(3))))
                for age in sorted(
                    rng.sample([-30.0, 0.0, 30.0, 90.0, 200.0, 700.0], 2), reverse=True
                )
            )
        if rng.random() < 0.5:
            before = Levels(*(rng.randint(0, 12) * t for _ in range(3)))
            after = Levels(*(rng.randint(0, 12) * t for _ in range(3)))
            memory_applied[key] = tuple(
                AppliedRecord(now - age, before, after)
                for age in sorted(rng.sample([10.0, 45.0, 90.0, 400.0], 2), reverse=True)
            )
        if rng.random() < 0.8:
            last_applied[key] = current if rng.random() > 0.1 else _setting(rng, t, legacy, odd)
        if rng.random() < 0.1:
            drift_seen[key] = now - rng.choice([60.0, 4000.0])
    # another group's memory, which must be carried over untouched
    other = ("sg-other", "us-east-1")
    memory_recs[other] = (RecommendationRecord(now - 10, Levels(2, 2, 4)),)
    memory_applied[other] = (AppliedRecord(now - 10, Levels(0, 0, 2), Levels(2, 2, 4)),)
    last_applied[other] = CapacitySetting(2, 2, 4)
    # a location the group no longer has: its memory goes
    if rng.random() < 0.3:
        gone = (GROUP, "ap-south-1")
        memory_recs[gone] = (RecommendationRecord(now - 10, Levels(2, 2, 4)),)
        last_applied[gone] = CapacitySetting(2, 2, 4)
    memory = GuardMemory(
        recommendations=memory_recs,
        applied=memory_applied,
        last_applied_at={GROUP: now - rng.choice([10.0, 1000.0])} if rng.random() < 0.7 else {},
        last_applied=last_applied,
        drift_seen_at=drift_seen,
        failures={GROUP: rng.choice([0, 0, 2, 5])} if rng.random() < 0.6 else {},
        month_spend=(
            {"sg-other": MonthSpend("p", month_start(now), 3.0, now - 60, 1.0)}
            if rng.random() < 0.3
            else {}
        ),
    )
    cap_h = rng.choice([None, None, None, 0.5, 50.0, 5000.0])
    cap_m = rng.choice([None] * 9 + [20000.0])
    policy = Policy(
        name="p",
        source="p.yaml",
        selector=GroupSelector(ids=(GROUP,)),
        plugin="target-tracking",
        plugin_params=None,
        default_bounds=LocationBounds(rng.choice([0, 0, 1, 4]), rng.choice([40, 100, 300])),
        location_bounds=(
            {"us-west-2": LocationBounds(rng.choice([0, 8]), rng.choice([10, 60]))}
            if rng.random() < 0.3
            else {}
        ),
        behavior=Behavior(
            scale_up=_direction(rng),
            scale_down=_direction(rng),
            tolerance=rng.choice([0.0, 0.0, 0.05, 0.3]),
            cooldown_s=rng.choice([0.0, 0.0, 120.0]),
        ),
        budget=Budget(max_cost_per_hour=cap_h, max_cost_per_month=cap_m),
        fallback=Fallback(
            failure_threshold=rng.choice([1, 3]),
            behavior=rng.choice(list(FallbackBehavior)),
            always_on=rng.choice([0, 4]),
        ),
        prices={"gen4n_high": rng.choice([0.0, 0.6571, 1.0])},
        mode=Mode.FORECAST_ONLY if rng.random() < rare else Mode.FORECAST_AND_SCALE,
        paused=rng.random() < rare,
        drift=rng.choice(list(DriftAction)),
    )
    group_status = "ACTIVE" if rng.random() > rare else "ACTIVE_WITH_ERRORS"
    state = GroupState(
        group_id=GROUP,
        arn="arn:" + GROUP,
        status=group_status,
        stream_class="gen4n_high",
        tenancy=t,
        capacity_model=model,
        locations=tuple(states),
        primary_location=names[0],
    )
    sample = GroupSample(
        at=now - (500.0 if rng.random() < rare else 0.0),
        group_id=GROUP,
        state=state,
        locations=tuple(samples),
        complete=rng.random() > rare,
    )
    changes: tuple[LocationChange, ...] = ()
    if rng.random() < rare:
        changes = (LocationChange("ap-south-1", "add", CapacitySetting(2, 2, 4), "random"),)
    plan = GroupPlan(
        group_id=GROUP,
        at=now,
        capacity_model=model,
        tenancy=t,
        stream_class="gen4n_high",
        primary_location=names[0],
        locations=tuple(plans),
        location_changes=changes,
        problems=("plugin failed",) if rng.random() < rare else (),
    )
    kwargs: dict[str, Any] = {
        "state": state,
        "sample": sample,
        "policy": policy,
        "memory": memory,
        "now": now,
        "paused": rng.random() < rare,
        "budget_spent_elsewhere_per_hour": rng.choice([0.0, 0.0, 10.0]),
    }
    return plan, kwargs


def _assert_same(plan: GroupPlan, kwargs: dict[str, Any]) -> bool:
    """guard_group's answer is the chain's, bit for bit; True when the quiet path answered."""
    memory_before = repr(kwargs["memory"])
    fast_decision, fast_memory = guard.guard_group(plan, **kwargs)
    chain_decision, chain_memory = guard._guard_group_chain(plan, **kwargs)
    assert repr(fast_decision) == repr(chain_decision)
    assert repr(fast_memory) == repr(chain_memory)
    assert fast_memory.to_json() == chain_memory.to_json()
    assert repr(kwargs["memory"]) == memory_before  # the input memory is never changed
    # the quiet path has no stabilisation to run, so no use for the tick interval
    quiet_kwargs = {k: v for k, v in kwargs.items() if k != "interval_s"}
    return guard._guard_group_quiet(plan, **quiet_kwargs) is not None


def _check_many(seeds: range) -> int:
    quiet = 0
    for seed in seeds:
        plan, kwargs = _random_case(random.Random(seed))
        quiet += _assert_same(plan, kwargs)
        # the next tick, from the memory this one left (windows and step periods in use)
        _, memory = guard._guard_group_chain(plan, **kwargs)
        later = {**kwargs, "memory": memory, "now": kwargs["now"] + 60.0}
        quiet += _assert_same(dataclasses.replace(plan, at=later["now"]), later)
    return quiet


def test_quiet_path_matches_the_chain_on_random_ticks() -> None:
    quiet = _check_many(range(2000))
    # the cases must exercise both paths, or this test could not fail
    assert 300 < quiet < 3700


@settings(max_examples=300, deadline=None)
@given(rng=st.randoms(use_true_random=False))
def test_quiet_path_matches_the_chain_property(rng: random.Random) -> None:
    _assert_same(*_random_case(rng))


def test_a_plain_quiet_tick_takes_the_quiet_path_and_records_the_recommendation() -> None:
    for seed in range(200):
        plan, kwargs = _random_case(random.Random(seed))
        if guard._guard_group_quiet(plan, **kwargs) is not None:
            break
    else:
        pytest.fail("no quiet case in 200 seeds")
    decision, memory = guard.guard_group(plan, **kwargs)
    assert decision.vetoes == ()
    assert not decision.changed_locations
    for lp in plan.locations:
        if lp.planned:
            assert memory.recommendations[(GROUP, lp.location)][-1] == RecommendationRecord(
                kwargs["now"], Levels.of(lp.current)
            )


Quiet = Callable[..., tuple[GroupDecision, GuardMemory] | None]


def _broken_variants() -> dict[str, Quiet]:
    """Quiet paths wrong on purpose: each must make the comparison above fail."""
    real = guard._guard_group_quiet

    def broken(change: Callable[[GroupPlan, dict[str, Any], Any], Any]) -> Quiet:
        # called as guard_group calls it: plan, state, sample, policy, memory, keywords
        def variant(plan: GroupPlan, *args: Any, **kw: Any) -> Any:
            names = ("state", "sample", "policy", "memory")
            full = {**dict(zip(names, args, strict=False)), **kw}
            return change(plan, full, real(plan, **full))

        return variant

    def no_recommendation(plan: GroupPlan, kw: dict[str, Any], out: Any) -> Any:
        if out is None:
            return None
        old = kw["memory"].recommendations
        return out[0], dataclasses.replace(out[1], recommendations=dict(old))

    def applied_not_pruned(plan: GroupPlan, kw: dict[str, Any], out: Any) -> Any:
        if out is None:
            return None
        return out[0], dataclasses.replace(out[1], applied=dict(kw["memory"].applied))

    def failures_kept(plan: GroupPlan, kw: dict[str, Any], out: Any) -> Any:
        if out is None:
            return None
        return out[0], dataclasses.replace(out[1], failures=dict(kw["memory"].failures))

    def too_eager(plan: GroupPlan, kw: dict[str, Any], out: Any) -> Any:
        # quiet whenever the proposals equal the current levels, whatever else holds
        if out is not None or any(
            Levels.of(lp.proposed) != Levels.of(lp.current) for lp in plan.locations
        ):
            return out
        decision, memory = guard._guard_group_chain(plan, **kw)
        kept = tuple(dataclasses.replace(d, decided=d.current) for d in decision.locations)
        return dataclasses.replace(decision, locations=kept, vetoes=()), memory

    return {
        "no_recommendation": broken(no_recommendation),
        "applied_not_pruned": broken(applied_not_pruned),
        "failures_kept": broken(failures_kept),
        "too_eager": broken(too_eager),
    }


@pytest.mark.parametrize("variant", sorted(_broken_variants()))
def test_the_comparison_catches_a_broken_quiet_path(
    variant: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(guard, "_guard_group_quiet", _broken_variants()[variant])
    with pytest.raises(AssertionError):
        _check_many(range(2000))


def _backtest_calls(policy: Policy, monkeypatch: pytest.MonkeyPatch) -> tuple[int, int]:
    """A short backtest whose every guard call is checked against the chain: (calls, quiet)."""
    seen = [0, 0]
    real = guard.guard_group  # what the controller calls (patched there below)

    def checked(plan: GroupPlan, **kwargs: Any) -> tuple[GroupDecision, GuardMemory]:
        seen[0] += 1
        seen[1] += _assert_same(plan, kwargs)
        return real(plan, **kwargs)

    monkeypatch.setattr(controller_module, "guard_group", checked)
    trace = synthetic_trace(peak=60, days=1.5, step_s=600, seed=5)
    sessions = plan_sessions(trace, peak=60, seed=5, days=0.4)
    run_policy(
        sessions,
        policy=policy,
        stream_class="gen4n_high",
        capacity_model=CapacityModel.CURRENT,
        seed=5,
        params=model_params(60.0),
        registry=backtest_registry(),
    )
    return seen[0], seen[1]


@pytest.mark.parametrize("pacing", ["shipped", "windows, tolerance, cooldown, budget"])
def test_quiet_path_matches_the_chain_in_a_backtest(
    pacing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = backtest_registry()
    policy = load_policy_file(DEFAULT_POLICY_FILE, resolve_params=registry.validate_params)
    if pacing != "shipped":
        up = dataclasses.replace(policy.behavior.scale_up, stabilization_window_s=120.0)
        down = dataclasses.replace(policy.behavior.scale_down, stabilization_window_s=300.0)
        policy = dataclasses.replace(
            policy,
            behavior=Behavior(scale_up=up, scale_down=down, tolerance=0.05, cooldown_s=120.0),
            budget=Budget(max_cost_per_hour=40.0),
        )
    calls, quiet = _backtest_calls(policy, monkeypatch)
    assert calls > 500
    assert 0.3 * calls < quiet < calls  # both paths taken on real ticks
