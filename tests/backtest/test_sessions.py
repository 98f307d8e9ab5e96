"""Concurrency → sessions, per benchmark.md: the shape is kept, nothing is invented."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from autoscaler.backtest.sessions import (
    DurationModel,
    SessionPlan,
    occupancy,
    pchip,
    plan_segments,
    plan_sessions,
)
from autoscaler.backtest.synthetic import synthetic_trace
from autoscaler.backtest.traces import ConcurrencyTrace
from autoscaler.domain.errors import ConfigError

H = 3600.0
T0 = 1_760_000_400.0


def trace(times: list[float] | np.ndarray, values: list[float] | np.ndarray) -> ConcurrencyTrace:
    t = np.asarray(times, dtype=np.float64)
    return ConcurrencyTrace(
        name="test",
        series="s",
        times=t,
        values=np.asarray(values, dtype=np.float64),
        step_s=float(np.median(np.diff(t))),
        gaps=(),
    )


def flat(hours: int, level: float = 100.0) -> ConcurrencyTrace:
    return trace(T0 + H * np.arange(hours + 1), np.full(hours + 1, level))


def hourly_means(plan: SessionPlan) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy (sessions in progress) and target, each averaged per hour."""
    q = np.arange(0.0, plan.horizon_s, 60.0)
    occ = occupancy(plan, q)
    tgt = np.interp(q, plan.step_s * np.arange(plan.target.size), plan.target)
    n = q.size // 60
    return occ[: n * 60].reshape(n, 60).mean(1), tgt[: n * 60].reshape(n, 60).mean(1)


def test_expected_concurrency_follows_the_trace() -> None:
    # Tolerance: every hourly mean within 10 % of the scaled trace, 3 % on average (large peak
    # so Poisson noise is small; the rest is the log-normal vs exponential approximation).
    shape = synthetic_trace(peak=1.0, days=3, step_s=H, noise=0.0, trough_ratio=5.0)
    plan = plan_sessions(shape, peak=4000, seed=11)
    occ, tgt = hourly_means(plan)
    rel = np.abs(occ - tgt) / tgt
    assert rel.max() < 0.10
    assert rel.mean() < 0.03
    assert rel[0] < 0.05  # warm start: the first hour is already at the trace's level


def test_scaling_puts_the_peak_at_peak() -> None:
    plan = plan_sessions(synthetic_trace(peak=7.0, days=2, seed=2), peak=400, seed=1)
    assert plan.target.max() == pytest.approx(400.0)
    assert plan.peak == 400


def test_durations_mean_forty_minutes_and_cap() -> None:
    model = DurationModel()
    assert model.mu == pytest.approx(math.log(2400) - 0.405)
    d = model.sample(np.random.default_rng(0), 400_000)
    assert d.mean() == pytest.approx(2400, rel=0.01)
    assert d.max() <= 12 * H
    assert model.capped_mean_s == pytest.approx(2400, rel=1e-3)
    tight = DurationModel(cap_s=H)
    c = tight.sample(np.random.default_rng(0), 400_000)
    assert c.max() == H
    assert (c == H).mean() > 0.1
    assert c.mean() == pytest.approx(tight.capped_mean_s, rel=0.01)


def test_residual_durations_follow_the_equilibrium_law() -> None:
    # Mean residual life = E[D²] / (2 E[D]); checked against an empirical capped sample.
    model = DurationModel(cap_s=2 * H)
    d = model.sample(np.random.default_rng(1), 1_000_000)
    expected = (d**2).mean() / (2 * d.mean())
    r = model.sample_residual(np.random.default_rng(2), 400_000)
    assert r.mean() == pytest.approx(expected, rel=0.02)
    assert r.max() <= 2 * H


def test_plan_durations_in_a_run() -> None:
    plan = plan_sessions(flat(48), peak=400, seed=3)
    fresh = plan.duration_s[plan.warm_start :]
    assert fresh.mean() == pytest.approx(2400, rel=0.03)
    assert fresh.max() <= 12 * H


def test_same_seed_same_sessions_other_seed_other_sessions() -> None:
    tr = synthetic_trace(days=2, seed=4)
    a = plan_sessions(tr, peak=400, seed=9, locations={"a": 1, "b": 1})
    b = plan_sessions(tr, peak=400, seed=9, locations={"a": 1, "b": 1})
    c = plan_sessions(tr, peak=400, seed=10, locations={"a": 1, "b": 1})
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    np.testing.assert_array_equal(a.duration_s, b.duration_s)
    np.testing.assert_array_equal(a.location, b.location)
    assert a.size != c.size or not np.array_equal(a.arrival_s, c.arrival_s)


def test_plan_arrays_are_sorted_and_read_only() -> None:
    plan = plan_sessions(flat(24), peak=100, seed=0)
    assert np.all(np.diff(plan.arrival_s) >= 0)
    assert plan.arrival_s[: plan.warm_start].max() == 0
    assert plan.arrival_s[plan.warm_start :].min() > 0
    assert plan.arrival_s.max() < plan.horizon_s
    with pytest.raises(ValueError, match="read-only"):
        plan.duration_s[0] = 1.0


def test_warm_start_is_the_level_at_t0() -> None:
    starts = [plan_sessions(flat(4, 300), peak=300, seed=s).warm_start for s in range(20)]
    assert np.mean(starts) == pytest.approx(300, rel=0.03)


def test_long_gap_splits_and_invents_no_spike() -> None:
    # 24 h at 100, a 10 h hole, 24 h at 100 again.
    t = np.concatenate((T0 + H * np.arange(25), T0 + 34 * H + H * np.arange(25)))
    tr = trace(t, np.full(t.size, 100.0))
    with pytest.raises(ConfigError, match=r"1 hole\(s\) longer than 3 h"):
        plan_sessions(tr, peak=100, seed=0)
    first, second = plan_segments(tr, peak=100, seed=0)
    assert (first.t0_epoch_s, first.horizon_s) == (T0, 24 * H)
    assert (second.t0_epoch_s, second.horizon_s) == (T0 + 34 * H, 24 * H)
    # The second piece starts warm: its first half hour gets the steady-state arrival rate
    # (100 / 40 min × 30 min = 75), not a burst of 100 sessions to refill an empty system.
    early = np.count_nonzero((second.arrival_s > 0) & (second.arrival_s < 1800.0))
    assert early < 110
    assert second.warm_start > 60
    occ, tgt = hourly_means(second)
    assert occ.max() < 1.25 * tgt.max()


def test_short_gap_is_interpolated_linearly() -> None:
    # 100 until 10 h, a 2 h hole, then 300: the hole becomes a ramp, not a step.
    t = np.concatenate((T0 + H * np.arange(11), T0 + 12 * H + H * np.arange(10)))
    v = np.where(t <= T0 + 10 * H, 100.0, 300.0)
    plan = plan_sessions(trace(t, v), peak=300, seed=0, step_s=600)
    k = np.arange(plan.target.size)
    mid = plan.target[(k * 600 > 10 * H) & (k * 600 < 12 * H)]
    assert np.all(np.diff(mid) > 0)
    assert mid.min() > 100
    assert mid.max() < 300


def test_days_and_start_offset_choose_the_window() -> None:
    tr = flat(72)
    plan = plan_sessions(tr, peak=50, seed=0, days=1, start_offset_s=6 * H)
    assert plan.t0_epoch_s == T0 + 6 * H
    assert plan.horizon_s == 24 * H
    assert plan.target.size == 24 * 60 + 1
    with pytest.raises(ConfigError, match="past the end"):
        plan_sessions(tr, peak=50, seed=0, start_offset_s=100 * H)


def test_locations_split_by_weight() -> None:
    plan = plan_sessions(flat(24), peak=400, seed=5, locations={"us-east-1": 3, "eu": 1})
    assert plan.locations == ("us-east-1", "eu")
    assert np.mean(plan.location == 0) == pytest.approx(0.75, abs=0.02)


def test_pchip_is_monotone_and_exact_at_samples() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    y = np.array([0.0, 0.0, 10.0, 10.0, 10.0])
    q = np.linspace(0, 4, 401)
    v = pchip(x, y, q)
    assert v.min() >= 0.0
    assert v.max() <= 10.0
    assert np.all(np.diff(v) >= -1e-12)
    np.testing.assert_allclose(pchip(x, y, x), y)
    plan = plan_sessions(flat(24), peak=10, seed=0, method="pchip")
    np.testing.assert_allclose(plan.target, 10.0)


def test_thirty_days_at_peak_400_is_fast() -> None:
    tr = synthetic_trace(days=30, step_s=600, seed=1)
    start = time.perf_counter()
    plan = plan_sessions(tr, peak=400, seed=1)
    elapsed = time.perf_counter() - start
    assert 150_000 < plan.size < 400_000
    assert elapsed < 1.0


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="peak"):
        plan_sessions(flat(4), peak=0, seed=0)
    with pytest.raises(ValueError, match="location weights"):
        plan_sessions(flat(4), peak=1, seed=0, locations={"a": -1})
    zero = trace(T0 + H * np.arange(5), np.zeros(5))
    with pytest.raises(ConfigError, match="zero everywhere"):
        plan_sessions(zero, peak=10, seed=0)
