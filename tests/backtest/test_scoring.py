"""The in-use bound (by hand and by brute force) and the scored result."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.backtest.scoring import Result, aggregate, in_use_bound, score
from autoscaler.backtest.sessions import SessionPlan
from autoscaler.domain.policy import Slo
from tests.backtest.result_keys import RESULT_KEYS


def plan_of(
    sessions: list[tuple[float, float, int]],
    horizon_s: float,
    locations: tuple[str, ...] = ("us-east-1",),
) -> SessionPlan:
    sessions = sorted(sessions)
    return SessionPlan.build(
        arrival_s=[s[0] for s in sessions],
        duration_s=[s[1] for s in sessions],
        location=[s[2] for s in sessions],
        locations=locations,
        t0_epoch_s=0.0,
        horizon_s=horizon_s,
        source="hand",
    )


# [0,10), [5,15), [5,20): 1 on [0,5), 3 on [5,10), 2 on [10,15), 1 on [15,20)
TINY = [(0.0, 10.0, 0), (5.0, 10.0, 0), (5.0, 15.0, 0)]


def test_bound_matches_a_hand_computation() -> None:
    plan = plan_of(TINY, horizon_s=30.0)
    assert in_use_bound(plan, 1) * 3600 == pytest.approx(5 * 1 + 5 * 3 + 5 * 2 + 5 * 1)
    # tenancy 2: hosts of 2 → 2, 4, 2, 2 slots
    assert in_use_bound(plan, 2) * 3600 == pytest.approx(5 * 2 + 5 * 4 + 5 * 2 + 5 * 2)
    # tenancy 4: one host throughout
    assert in_use_bound(plan, 4) * 3600 == pytest.approx(20 * 4)


def test_three_concurrent_on_tenancy_two_is_four_slots() -> None:
    plan = plan_of([(0.0, 3600.0, 0)] * 3, horizon_s=3600.0)
    assert in_use_bound(plan, 2) == pytest.approx(4.0)


def test_packing_is_per_location() -> None:
    plan = plan_of([(0.0, 3600.0, 0), (0.0, 3600.0, 1)], 3600.0, ("us-east-1", "eu-central-1"))
    assert in_use_bound(plan, 2) == pytest.approx(4.0)  # one host in each, not one shared


def test_bound_is_clipped_to_the_metered_window() -> None:
    plan = plan_of(TINY, horizon_s=12.0)
    # 1 on [0,5), 3 on [5,10), 2 on [10,12)
    assert in_use_bound(plan, 1) * 3600 == pytest.approx(5 + 15 + 4)
    assert in_use_bound(plan, 1, until_s=7.0) * 3600 == pytest.approx(5 + 6)


def test_bound_equals_brute_force_on_a_random_plan() -> None:
    rng = np.random.default_rng(0)
    n = 300
    arrivals = np.sort(rng.uniform(0, 1000, n).round())
    durations = rng.integers(0, 200, n).astype(float)
    loc = rng.integers(0, 2, n)
    plan = SessionPlan.build(
        arrival_s=arrivals,
        duration_s=durations,
        location=loc,
        locations=("a", "b"),
        t0_epoch_s=0.0,
        horizon_s=1100.0,
        source="random",
    )
    # integer times: count sessions on every 1-second cell [t, t+1)
    cells = np.arange(1100)
    expected = 0.0
    for index in (0, 1):
        mine = loc == index
        a, e = arrivals[mine], arrivals[mine] + durations[mine]
        live = (a[None, :] <= cells[:, None]) & (cells[:, None] < e[None, :])
        n_live = live.sum(axis=1)
        expected += float((np.ceil(n_live / 3) * 3).sum())
    assert in_use_bound(plan, 3) * 3600 == pytest.approx(expected)


def test_bound_rejects_bad_tenancy() -> None:
    with pytest.raises(ValueError, match="tenancy"):
        in_use_bound(plan_of(TINY, 30.0), 0)


def run(**over: object) -> Result:
    args: dict[str, object] = {
        "policy": "buffer",
        "params": {"absolute": 4},
        "allocated_slot_s": 7200.0 * 3,  # 6 slot-hours
        "bound_slot_h": 4.0,
        "price_per_slot_hour": 0.5,
        "instant": 990,
        "cold": 9,
        "failed": 1,
        "waits_s": np.concatenate((np.zeros(990), np.arange(1.0, 10.0), [90.0])),
        "updates": 12,
        "wall_s": 1.5,
    }
    args.update(over)
    return score(**args)  # type: ignore[arg-type]


def test_score_fields() -> None:
    r = run()
    assert r.cost == pytest.approx(3.0)
    assert r.bound == pytest.approx(2.0)
    assert r.cost_ratio == pytest.approx(1.5)
    assert (r.instant, r.cold, r.failed) == pytest.approx((0.99, 0.009, 0.001))
    # nearest rank over 1000 sessions: p95 is the 950th smallest, p99 the 990th: both 0
    assert r.p95_wait_s == 0.0
    assert r.p99_wait_s == 0.0
    assert r.updates == 12
    assert r.meets_slo  # exactly at the default SLO: instant 99 %, failed 0.1 %
    assert list(r.to_dict()) == RESULT_KEYS


def test_idle_split_sums_to_the_overhead() -> None:
    unsplit = run()
    assert unsplit.to_dict()["idle"] is None  # the meter gave no split
    # 6 slot-hours paid against a bound of 4: 2 over it, 0.5 h kept empty, 1 h held empty
    r = run(kept_empty_slot_s=1800.0, held_empty_slot_s=3600.0)
    assert r.to_dict()["idle"] == pytest.approx({"kept": 0.125, "held": 0.25, "partial": 0.125})
    assert r.idle_kept + r.idle_held + r.idle_partial == pytest.approx(r.cost_ratio - 1)
    with pytest.raises(ValueError, match="within allocated_slot_s"):
        run(kept_empty_slot_s=20000.0, held_empty_slot_s=3600.0)
    with pytest.raises(ValueError, match="≥ 0"):
        run(kept_empty_slot_s=-1.0, held_empty_slot_s=5.0)


def test_wait_percentiles_are_nearest_rank() -> None:
    waits = np.concatenate((np.zeros(90), np.arange(1.0, 11.0)))  # 100 sessions
    r = run(instant=90, cold=10, failed=0, waits_s=waits)
    assert r.p95_wait_s == 5.0  # 95th smallest of 100
    assert r.p99_wait_s == 9.0
    assert not r.meets_slo  # 90 % instant


def test_meets_slo_boundaries() -> None:
    assert not run(instant=989, cold=9, failed=2).meets_slo  # failed 0.2 %
    lenient = Slo(instant=0.95, failed=0.01)
    waits = np.zeros(100)
    assert run(instant=95, cold=4, failed=1, waits_s=waits, slo=lenient).meets_slo
    assert not run(instant=94, cold=5, failed=1, waits_s=waits, slo=lenient).meets_slo


def test_cost_ratio_without_a_bound() -> None:
    assert run(bound_slot_h=0.0).cost_ratio == math.inf
    assert run(bound_slot_h=0.0, allocated_slot_s=0.0).cost_ratio == 1.0
    assert run(price_per_slot_hour=0.0).cost_ratio == pytest.approx(1.5)


def test_score_rejects_inconsistent_input() -> None:
    with pytest.raises(ValueError, match="one each"):
        run(waits_s=np.zeros(10))
    with pytest.raises(ValueError, match="at least one session"):
        run(instant=0, cold=0, failed=0, waits_s=[])


def test_aggregate_mean_and_spread() -> None:
    a = run(allocated_slot_s=4 * 3600.0, wall_s=1.0)
    b = run(allocated_slot_s=8 * 3600.0, wall_s=3.0)
    c = run(allocated_slot_s=6 * 3600.0, wall_s=2.0, instant=980, cold=19)
    agg = aggregate([a, b, c])
    assert agg.seeds == 3
    assert agg["cost_ratio"].mean == pytest.approx(1.5)
    assert agg["cost_ratio"].min == pytest.approx(1.0)
    assert agg["cost_ratio"].max == pytest.approx(2.0)
    assert agg["cost_ratio"].std == pytest.approx(np.std([1.0, 2.0, 1.5]))
    assert agg["wall_s"].mean == pytest.approx(2.0)
    assert not agg.meets_slo  # seed c missed
    assert agg.meets_slo_share == pytest.approx(2 / 3)
    d = agg.to_dict()
    assert d["cost"] == {
        "mean": 3.0,
        "std": pytest.approx(np.std([2, 4, 3])),
        "min": 2.0,
        "max": 4.0,
    }
    assert aggregate([a, b]).meets_slo


def test_aggregate_refuses_mixed_runs() -> None:
    with pytest.raises(ValueError, match="different runs"):
        aggregate([run(), run(policy="static-peak")])
    with pytest.raises(ValueError, match="no results"):
        aggregate([])
