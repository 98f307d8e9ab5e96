"""The synthetic diurnal trace has the shape it promises."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.backtest.synthetic import synthetic_trace


def per_day(values: np.ndarray, step_s: float) -> np.ndarray:
    n = int(86400 / step_s)
    days = values.size // n
    return values[: days * n].reshape(days, n)


def test_peak_length_and_step() -> None:
    tr = synthetic_trace(peak=400, days=7, step_s=600, seed=1)
    assert tr.values.max() == pytest.approx(400.0)
    assert tr.times.size == 7 * 144 + 1
    assert np.all(np.diff(tr.times) == 600)
    assert tr.step_s == 600
    assert tr.gaps == ()
    assert tr.values.min() > 0


@pytest.mark.parametrize("ratio", [3.0, 5.0])
def test_daily_peak_to_trough_ratio(ratio: float) -> None:
    exact = per_day(synthetic_trace(days=14, noise=0.0, trough_ratio=ratio).values, 600)
    weekdays = exact[[0, 1, 2, 3, 8, 9, 10]]  # days without a weekend ramp
    np.testing.assert_allclose(weekdays.max(1) / weekdays.min(1), ratio, rtol=1e-6)
    noisy = per_day(synthetic_trace(days=14, trough_ratio=ratio, seed=3).values, 600)
    assert np.median(noisy.max(1) / noisy.min(1)) == pytest.approx(ratio, rel=0.15)


def test_evening_peak_and_early_morning_trough() -> None:
    days = per_day(synthetic_trace(days=14, noise=0.0, peak_hour=20).values, 600)
    assert np.all(np.argmax(days, axis=1) / 6 == 20)
    assert np.all(np.argmin(days, axis=1) / 6 == 5)  # 15 h rise before the peak


def test_weekend_uplift() -> None:
    days = per_day(synthetic_trace(days=14, noise=0.0, weekend_uplift=0.2).values, 600)
    weekday = days[[1, 2, 3]].mean()  # start is a Monday: days 5, 6 are Saturday, Sunday
    weekend = days[[5, 6]].mean()
    assert weekend / weekday == pytest.approx(1.2, rel=0.03)


def test_seeded_noise() -> None:
    a = synthetic_trace(days=3, seed=5)
    b = synthetic_trace(days=3, seed=5)
    c = synthetic_trace(days=3, seed=6)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, c.values)
    smooth = synthetic_trace(days=3, noise=0.0)
    log_dev = np.log(a.values / a.values.max()) - np.log(smooth.values / smooth.values.max())
    assert 0.01 < log_dev.std() < 0.1


def test_fine_steps_over_a_month() -> None:
    tr = synthetic_trace(days=30, step_s=60, seed=2)
    assert tr.times.size == 30 * 1440 + 1
    assert np.all(np.isfinite(tr.values))
    ratio = np.abs(np.diff(np.log(tr.values)))
    assert ratio.max() < 0.05  # no jumps minute to minute


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="trough_ratio"):
        synthetic_trace(trough_ratio=0.5)
    with pytest.raises(ValueError, match="noise"):
        synthetic_trace(noise=-1)
