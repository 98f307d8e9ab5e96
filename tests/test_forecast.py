"""The seasonal forecaster and the net-arrivals distribution, against synthetic truth."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from autoscaler.domain.models import LocationHistory
from autoscaler.forecast import NetArrivals, SeasonalForecaster, arrivals_pmf, forecast_location
from autoscaler.forecast.synthetic import Diurnal, history

DAY = 86400.0
START = 1_700_006_400.0  # a UTC midnight (2023-11-15, a Wednesday)


def _truth_at(truth: Diurnal, t: float) -> float:
    return float(truth.concurrency(np.array([t]))[0])


def test_recovers_the_daily_shape() -> None:
    truth = Diurnal(peak=200.0)
    h = history(truth, START, START + 7 * DAY, seed=1)
    now = START + 7 * DAY - 60.0
    hz = np.arange(0.0, DAY, 3600.0)
    fc = forecast_location(h, now, hz)
    expect = truth.concurrency(now + hz)
    err = np.abs(fc.in_use_mean - expect) / expect
    assert err.max() < 0.08, err
    assert fc.profile_weight == 1.0
    assert "seasonal" in fc.method
    # Arrival rate follows λ = C′ + C/D within noise.
    lam = truth.arrival_rate(now + hz)
    assert np.abs(fc.arrival_rate_mean - lam).max() / lam.max() < 0.15
    assert fc.mean_duration_s == pytest.approx(2400.0, rel=0.05)


def test_quantile_coverage_is_close_to_nominal_on_poisson_noise() -> None:
    truth = Diurnal(peak=60.0)
    h = history(truth, START, START + 10 * DAY, seed=2)
    fcr = SeasonalForecaster()
    rng = np.random.default_rng(3)
    nows = START + 8 * DAY + rng.uniform(0, 1.9 * DAY, 150)
    nows = np.sort(np.floor(nows / 60.0) * 60.0)
    lead = 600.0
    hits = {0.5: 0, 0.9: 0}
    for now in nows:
        fc = fcr.forecast(h, float(now), [lead], quantiles=(0.5, 0.9))
        actual = h.in_use[int(np.searchsorted(h.at, now + lead))]
        hits[0.5] += int(actual <= fc.in_use_quantiles[0, 0])
        hits[0.9] += int(actual <= fc.in_use_quantiles[1, 0])
    # Integer counts: P(X ≤ median) exceeds 0.5 by the mass at the median.
    assert 0.38 <= hits[0.5] / len(nows) <= 0.72
    assert 0.83 <= hits[0.9] / len(nows) <= 0.97


def test_empty_and_tiny_histories_give_sane_values() -> None:
    hz = [0.0, 300.0, 3600.0]
    fc = forecast_location(LocationHistory.empty(), START, hz)
    assert np.all(fc.in_use_mean == 0.0)
    assert np.all(fc.arrival_rate_mean == 0.0)
    assert fc.history_s == 0.0
    assert fc.profile_weight == 0.0

    truth = Diurnal(peak=50.0)
    h = history(truth, START, START + 600.0, seed=4)  # ten minutes
    fc = forecast_location(h, START + 599.0, hz)
    assert "level" in fc.method
    level = float(h.in_use.mean())
    assert np.all(np.abs(fc.in_use_mean - level) < 0.5 * level + 5)
    assert np.all(fc.in_use_quantiles[-1] >= fc.in_use_mean)
    assert np.all(np.isfinite(fc.in_use_quantiles))


def test_gaps_nan_and_incomplete_rows_do_not_crash_or_poison() -> None:
    truth = Diurnal(peak=100.0)
    h = history(truth, START, START + 5 * DAY, seed=5)
    keep = ~((h.at > START + 2 * DAY) & (h.at < START + 2.5 * DAY))  # 12 h hole
    in_use = h.in_use.copy()
    in_use[::17] = np.nan
    complete = h.complete.copy()
    complete[::13] = False
    in_use[::13] = 0.0  # incomplete rows read as zero must be ignored
    arrivals = h.arrivals.copy()
    arrivals[::19] = np.nan
    h2 = LocationHistory(
        at=h.at[keep],
        in_use=in_use[keep],
        waiting=np.full(int(keep.sum()), np.nan),
        arrivals=arrivals[keep],
        placement_failures=h.placement_failures[keep],
        departures=h.departures[keep],
        allocated=h.allocated[keep],
        idle=h.idle[keep],
        complete=complete[keep],
    )
    now = START + 5 * DAY - 60.0
    fc = forecast_location(h2, now, [0.0, 600.0, 3 * 3600.0])
    expect = truth.concurrency(now + fc.horizons_s)
    assert np.all(np.isfinite(fc.in_use_mean))
    assert np.all(np.abs(fc.in_use_mean - expect) / expect < 0.12)
    assert np.all(np.isfinite(fc.arrival_rate_mean))


def test_level_shift_is_adopted_within_hours() -> None:
    shift = START + 7 * DAY + 10 * 3600.0
    truth = Diurnal(peak=100.0, shift_at=shift, shift_factor=2.0)
    h = history(truth, START, shift + 3 * 3600.0, seed=6)
    now = shift + 3 * 3600.0 - 60.0
    fc = forecast_location(h, now, [600.0, 3600.0])
    expect = truth.concurrency(now + fc.horizons_s)
    assert np.all(np.abs(fc.in_use_mean - expect) / expect < 0.15), (fc.in_use_mean, expect)
    assert fc.level_ratio > 1.7


def test_an_outage_of_zeros_is_left_out_of_the_profile() -> None:
    truth = Diurnal(peak=100.0)
    h = history(truth, START, START + 6 * DAY, seed=7)
    out = (h.at >= START + 4 * DAY + 10 * 3600.0) & (h.at < START + 4 * DAY + 16 * 3600.0)
    zeroed = replace(
        h, in_use=np.where(out, 0.0, h.in_use), arrivals=np.where(out, 0.0, h.arrivals)
    )
    now = START + 5 * DAY + 9 * 3600.0
    hz = np.array([3600.0, 3 * 3600.0, 5 * 3600.0])  # inside the hours of yesterday's outage
    with_outage = forecast_location(zeroed, now, hz)
    clean = forecast_location(h, now, hz)
    assert np.all(np.abs(with_outage.in_use_mean - clean.in_use_mean) / clean.in_use_mean < 0.05)


def test_weekly_profile_lifts_weekends() -> None:
    truth = Diurnal(peak=100.0, weekend=1.6)
    start = START - 3 * 86400.0  # a Sunday midnight
    h = history(truth, start, start + 20 * DAY, seed=8)  # ends on a Saturday midnight
    now = start + 20 * DAY - 60.0
    fc = forecast_location(h, now, [6 * 3600.0])
    assert "weekly" in fc.method
    expect = _truth_at(truth, now + 6 * 3600.0)
    assert abs(fc.in_use_mean[0] - expect) / expect < 0.15


def test_uncensoring_counts_waiting_and_failed_sessions() -> None:
    truth = Diurnal(peak=40.0)
    h = history(truth, START, START + 3 * 3600.0, seed=9)
    now = START + 3 * 3600.0 - 60.0
    base = forecast_location(h, now, [300.0])
    n = len(h)
    short = replace(
        h,
        waiting=np.full(n, 3.0),
        placement_failures=np.where(np.arange(n) % 10 == 0, 1.0, 0.0),
    )
    more = forecast_location(short, now, [300.0])
    # 3 waiting + ~4 failures over the 40-minute mean duration held a slot each.
    assert more.in_use_mean[0] - base.in_use_mean[0] == pytest.approx(7.0, abs=1.5)


def test_the_hourly_memo_changes_nothing() -> None:
    truth = Diurnal(peak=80.0)
    h = history(truth, START, START + 4 * DAY, seed=10)
    cached = SeasonalForecaster()
    plain = SeasonalForecaster(cache_size=0)
    for now in START + 3 * DAY + np.array([0.0, 60.0, 3599.0, 3600.0, 7260.0]):
        a = cached.forecast(h, float(now), [0.0, 600.0, 7200.0])
        b = plain.forecast(h, float(now), [0.0, 600.0, 7200.0])
        np.testing.assert_array_equal(a.in_use_quantiles, b.in_use_quantiles)
        np.testing.assert_array_equal(a.arrivals_expected, b.arrivals_expected)
    # A different location with the same hour is not confused with the first.
    other = history(Diurnal(peak=20.0), START, START + 4 * DAY, seed=11)
    now = float(START + 3 * DAY + 7260.0)
    assert cached.forecast(other, now, [600.0]).in_use_mean[0] < 40.0


def test_peak_is_the_running_maximum() -> None:
    truth = Diurnal(peak=100.0)
    h = history(truth, START, START + 4 * DAY, seed=12)
    now = START + 4 * DAY + 0.2 * DAY  # rising towards the afternoon peak
    hz = np.arange(0.0, 12 * 3600.0, 1800.0)
    fc = forecast_location(h, now, hz)
    assert np.all(np.diff(fc.in_use_peak_mean) >= 0)
    assert np.all(fc.in_use_peak_mean >= fc.in_use_mean - 1e-9)
    assert np.all(np.diff(fc.arrivals_expected) >= 0)


def test_rejects_bad_quantiles() -> None:
    with pytest.raises(ValueError, match="quantiles"):
        forecast_location(LocationHistory.empty(), START, [0.0], quantiles=(1.0,))


def test_poisson_quantile_and_pmf() -> None:
    p = arrivals_pmf(10.0, 0.0)
    assert p.sum() == pytest.approx(1.0)
    assert float((np.arange(p.size) * p).sum()) == pytest.approx(10.0, rel=1e-6)
    assert NetArrivals.of(10.0, 0.0, 0.0).quantile(0.99) == 18  # Poisson(10) p99
    nb = arrivals_pmf(10.0, 0.5)
    var = float((np.arange(nb.size) ** 2 * nb).sum()) - 100.0
    assert var == pytest.approx(10.0 + 0.5 * 100.0, rel=1e-3)


def test_buffer_grows_with_rate_and_shrinks_with_departures() -> None:
    small = NetArrivals.of(2.0, 0.0, 0.0).buffer_for_miss_share(0.005)
    big = NetArrivals.of(20.0, 0.0, 0.0).buffer_for_miss_share(0.005)
    credited = NetArrivals.of(20.0, 0.0, 15.0).buffer_for_miss_share(0.005)
    assert 0 < small < big
    assert credited < big
    assert NetArrivals.of(0.0, 0.0, 5.0).buffer_for_miss_share(0.005) == 0
    net = NetArrivals.of(20.0, 0.1, 5.0)
    b = net.buffer_for_miss_share(0.005)
    assert net.shortfall(b) <= 0.005 * 20.0
    assert net.shortfall(b - 1) > 0.005 * 20.0


def test_placement_timeouts_do_not_shorten_the_mean_duration() -> None:
    """Little's law counts sessions leaving a slot; a placement timeout never held one. The
    sampler counts it among the departures: before, 5 timeouts a minute in a shortage read
    as sessions lasting a third as long (and a smaller refill credit, a smaller buffer)."""
    from autoscaler.forecast.seasonal import ForecastConfig, _mean_duration  # noqa: PLC0415

    n = 120
    at = np.arange(n, dtype=np.float64) * 60.0
    ones = np.ones(n)
    in_use = 40.0 * ones  # 40 slots busy, one session leaving a minute: 40 min each
    left = 1.0 * ones
    fails = 5.0 * ones

    def estimate(placement_failures: np.ndarray, departures: np.ndarray) -> float:
        h = LocationHistory(
            at,
            in_use,
            0 * ones,
            left,
            placement_failures,
            departures,
            in_use,
            0 * ones,
            np.ones(n, dtype=np.bool_),
        )
        return _mean_duration(h, 1, n, ForecastConfig())

    assert estimate(0 * ones, left) == pytest.approx(2400.0)
    assert estimate(fails, left + fails) == pytest.approx(2400.0)  # the timeouts left out
    not_measured = np.full(n, np.nan)
    assert estimate(not_measured, left) == pytest.approx(2400.0)
