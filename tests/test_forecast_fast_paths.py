"""The forecast package's fast paths give exactly what the plain computations gave.

Why bit for bit and not approximately: the backtest's regression test compares decisions, and a
buffer or a floor sits on a threshold often enough that a last-bit difference in a pmf, a
shortfall or a forecast flips one. So each memo or vectorised path is compared here, with
``tobytes`` equality, against the implementation it replaced (kept below as the reference).
"""

from __future__ import annotations

import functools
import math
from dataclasses import fields, replace

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.domain.classes import round_up_to_tenancy
from autoscaler.domain.models import FloatArray, LocationHistory
from autoscaler.forecast import Forecast, NetArrivals, SeasonalForecaster, arrivals_pmf, seasonal
from autoscaler.forecast.seasonal import (
    ForecastConfig,
    _bucketize,
    _Buckets,
    _Grid,
    _Interp,
    _interp_circular,
    _np_sum,
    _rows_dt,
    _small_tail,
)
from autoscaler.forecast.synthetic import Diurnal, history
from autoscaler.policy.builtin.slo import host_buffer_for_miss_share

# ----------------------------------------------------------------------------- references


def ref_log_factorials(k_max: int) -> FloatArray:
    out = np.zeros(k_max + 1)
    if k_max:
        out[1:] = np.cumsum(np.log(np.arange(1, k_max + 1, dtype=np.float64)))
    return out


def ref_arrivals_pmf(mean: float, dispersion: float) -> FloatArray:
    """``arrivals_pmf`` before its memo (recomputes everything on every call)."""
    mean = max(float(mean), 0.0)
    if mean == 0.0:
        return np.ones(1)
    var = mean + max(dispersion, 0.0) * mean * mean
    k_max = int(mean + 12.0 * math.sqrt(var) + 20)
    k = np.arange(k_max + 1, dtype=np.float64)
    lf = ref_log_factorials(k_max)
    if dispersion <= 1e-9:
        logp = k * math.log(mean) - mean - lf
    else:
        r = 1.0 / dispersion
        lg = np.concatenate(([0.0], np.cumsum(np.log(k[:-1] + r))))
        logp = lg - lf + r * math.log(r / (r + mean)) + k * math.log(mean / (r + mean))
    p = np.exp(logp - logp.max())
    return np.asarray(p / p.sum(), dtype=np.float64)


def ref_net(mean_arrivals: float, dispersion: float, mean_departures: float) -> FloatArray:
    pd = ref_arrivals_pmf(mean_departures, 0.0)
    return np.asarray(np.convolve(ref_arrivals_pmf(mean_arrivals, dispersion), pd[::-1]))


def ref_shortfall(net: NetArrivals, buffer: int) -> float:
    values = np.arange(net.pmf.shape[0], dtype=np.float64) + net.offset
    return float((np.maximum(values - buffer, 0.0) * net.pmf).sum())


def ref_host_buffer(net: NetArrivals, miss_share: float, tenancy: int) -> int:
    """``slo.host_buffer_for_miss_share`` as it was: one ``shortfall`` call per buffer."""
    if net.mean_arrivals <= 0.0:
        return 0
    target = miss_share * net.mean_arrivals
    top = net.offset + net.pmf.shape[0]
    for units in range(top // tenancy + 2):
        t_idle = units * tenancy
        short = sum(ref_shortfall(net, t_idle + f) for f in range(tenancy)) / tenancy
        if short <= target:
            return t_idle
    return round_up_to_tenancy(max(top, 0), tenancy)


def same(a: FloatArray, b: FloatArray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def bits(x: float) -> bytes:
    return np.float64(x).tobytes()


means = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=400.0, allow_nan=False, allow_subnormal=False),
    st.integers(min_value=0, max_value=60).map(float),
)
dispersions = st.one_of(
    st.sampled_from([0.0, 1e-10, 0.05, 0.25, 1.0]),
    st.floats(min_value=0.0, max_value=4.0, allow_subnormal=False),
)

# ----------------------------------------------------------------------------- counts


@settings(max_examples=150, deadline=None)
@given(mean=st.one_of(means, st.floats(min_value=0.0, max_value=1e-300)), dispersion=dispersions)
def test_arrivals_pmf_is_the_reference_bit_for_bit(mean: float, dispersion: float) -> None:
    try:
        expect = ref_arrivals_pmf(mean, dispersion)
    except ValueError:  # a subnormal mean: log(0), then as now
        with pytest.raises(ValueError, match="math domain error"):
            arrivals_pmf(mean, dispersion)
        return
    first = arrivals_pmf(mean, dispersion)
    assert same(first, expect)
    first[:] = -1.0  # callers own what they get: the memo is not theirs to change
    assert same(arrivals_pmf(mean, dispersion), expect)
    assert same(arrivals_pmf(np.float64(mean), np.float64(dispersion)), expect)


def test_arrivals_pmf_shares_supports_across_sizes() -> None:
    # Growing, shrinking and repeated supports with one dispersion: the shared log k! and
    # rising-factorial tables must not leak one size's values into another's.
    for mean in [5.0, 50.0, 5.0, 0.5, 300.0, 50.0, 49.999, 1e-6]:
        for phi in (0.0, 0.3):
            assert same(arrivals_pmf(mean, phi), ref_arrivals_pmf(mean, phi))


@settings(max_examples=120, deadline=None)
@given(a=means, phi=dispersions, d=means)
def test_net_arrivals_and_shortfalls_are_the_reference(a: float, phi: float, d: float) -> None:
    net = NetArrivals.of(a, phi, d)
    assert same(net.pmf, ref_net(a, phi, d))
    assert net.offset == -(ref_arrivals_pmf(d, 0.0).shape[0] - 1)
    top = net.offset + net.pmf.shape[0]
    buffers = np.arange(net.offset - 2, top + 3)
    fast = net.shortfalls(buffers)
    assert fast.shape == buffers.shape
    for b, x in zip(buffers.tolist(), fast.tolist(), strict=True):
        slow = ref_shortfall(net, b)
        assert bits(net.shortfall(b)) == bits(slow)
        assert bits(x) == bits(slow), b
    as_range = net.shortfalls(range(3, 9)).tolist()
    assert [bits(x) for x in as_range] == [bits(net.shortfall(b)) for b in range(3, 9)]
    assert net.shortfalls([]).shape == (0,)


def test_shortfalls_of_a_point_mass() -> None:
    net = NetArrivals.of(0.0, 0.0, 0.0)  # N = 0 surely
    assert net.shortfalls(np.array([-3, 0, 2])).tolist() == [3.0, 0.0, 0.0]


@settings(max_examples=120, deadline=None)
@given(
    a=st.floats(min_value=0.0, max_value=150.0, allow_subnormal=False),
    phi=dispersions,
    d=st.floats(min_value=0.0, max_value=80.0, allow_subnormal=False),
    miss=st.sampled_from([1e-4, 0.001, 0.005, 0.01, 0.05, 0.2, 0.5]),
    tenancy=st.integers(min_value=1, max_value=8),
)
def test_host_buffer_is_the_one_call_per_buffer_scan(
    a: float, phi: float, d: float, miss: float, tenancy: int
) -> None:
    net = NetArrivals.of(a, phi, d)
    expect = ref_host_buffer(net, miss, tenancy)
    assert host_buffer_for_miss_share(net, miss, tenancy) == expect
    # A hint only moves the scan's start: right, too high, too low, past the support.
    raw = net.buffer_for_miss_share(miss)
    top = net.offset + net.pmf.shape[0]
    for hint in {raw, raw + 1, raw + 3 * tenancy, 2 * raw, raw // 3, 3 * tenancy, top, top + 50}:
        assert host_buffer_for_miss_share(net, miss, tenancy, hint=hint) == expect, hint


def ref_buffer_for_miss_share(net: NetArrivals, miss_share: float) -> int:
    """``NetArrivals.buffer_for_miss_share`` as it was: the B ≥ 0 mask and flatnonzero."""
    if net.mean_arrivals <= 0.0:
        return 0
    values = net.values
    tail_p = np.cumsum(net.pmf[::-1])[::-1]
    tail_vp = np.cumsum((values * net.pmf)[::-1])[::-1]
    b = values - 1.0
    short = tail_vp - b * tail_p
    ok = np.flatnonzero((short <= miss_share * net.mean_arrivals) & (b >= 0))
    if ok.size == 0:
        return int(values[-1])
    return int(b[ok[0]])


@settings(max_examples=200, deadline=None)
@given(
    a=st.floats(min_value=0.0, max_value=150.0, allow_subnormal=False),
    phi=dispersions,
    d=st.floats(min_value=0.0, max_value=80.0, allow_subnormal=False),
    miss=st.sampled_from([-1.0, 0.0, 1e-4, 0.001, 0.01, 0.2, 0.5, 5.0]),
)
def test_buffer_for_miss_share_is_the_masked_search(
    a: float, phi: float, d: float, miss: float
) -> None:
    net = NetArrivals.of(a, phi, d)
    assert net.buffer_for_miss_share(miss) == ref_buffer_for_miss_share(net, miss)


@pytest.mark.parametrize("offset", [-3, 0, 2])
def test_buffer_for_miss_share_on_a_support_starting_anywhere(offset: int) -> None:
    # Built directly (NetArrivals.of always starts at or below 0).
    net = NetArrivals(pmf=np.array([0.1, 0.2, 0.4, 0.2, 0.1]), offset=offset, mean_arrivals=3.0)
    for miss in (-1.0, 0.0, 0.01, 0.05, 0.2, 1.0, 10.0):
        assert net.buffer_for_miss_share(miss) == ref_buffer_for_miss_share(net, miss), miss


@pytest.mark.parametrize("tenancy", [1, 2, 4])
def test_host_buffer_falls_back_to_the_top_of_the_support(tenancy: int) -> None:
    # A miss share no buffer meets within the support (0 allowed, the support has mass).
    net = NetArrivals.of(30.0, 0.2, 5.0)
    top = net.offset + net.pmf.shape[0]
    got = host_buffer_for_miss_share(net, -1.0, tenancy)
    assert got == ref_host_buffer(net, -1.0, tenancy) == round_up_to_tenancy(top, tenancy)
    for hint in (10, top, top + 40):
        assert host_buffer_for_miss_share(net, -1.0, tenancy, hint=hint) == got


def ref_bucketize(
    h: LocationHistory, i0: int, i1: int, t0: float, b_lo: int, n: int, mean_dur: float
) -> _Buckets:
    """``seasonal._bucketize`` as it was: np.where for every masked column, failures'
    cumulative sum always, ``_rows_dt``, one take per edge side."""
    cfg = ForecastConfig()
    at = h.at[i0:i1]
    in_use = h.in_use[i0:i1]
    ok = h.complete[i0:i1] & np.isfinite(at) & np.isfinite(in_use)
    waiting = h.waiting[i0:i1]
    conc = np.maximum(in_use, 0.0) + np.where(waiting > 0, waiting, 0.0)
    fail = h.placement_failures[i0:i1]
    cs_f = np.cumsum(np.where(ok & (fail > 0), fail, 0.0))
    if cs_f.shape[0] and cs_f[-1] > 0:
        j = np.searchsorted(at, at - mean_dur, side="right")
        conc = conc + cs_f - np.where(j > 0, cs_f[np.maximum(j - 1, 0)], 0.0)
    dt = _rows_dt(h, i0, i1)
    arr = h.arrivals[i0:i1]
    rate_ok = ok & np.isfinite(arr) & (dt > 0) & (dt <= cfg.max_row_gap_s)
    edges = np.searchsorted(at, t0 + (b_lo + np.arange(n + 1, dtype=np.float64)) * cfg.bucket_s)
    conc_ok = np.where(ok, conc, 0.0)
    cols = np.empty((5, at.shape[0] + 1))
    cols[:, 0] = 0.0
    cols[0, 1:] = ok
    cols[1, 1:] = conc_ok
    cols[2, 1:] = conc_ok * conc_ok
    cols[3, 1:] = np.where(rate_ok, arr, 0.0)
    cols[4, 1:] = np.where(rate_ok, dt, 0.0)
    np.cumsum(cols, axis=1, out=cols)
    sums = cols.take(edges[1:], axis=1) - cols.take(edges[:-1], axis=1)
    return _Buckets(cnt=sums[0], csum=sums[1], csq=sums[2], a_sum=sums[3], t_sum=sums[4])


# ----------------------------------------------------------------------------- seasonal


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    rows=st.integers(min_value=0, max_value=200),
    dirt=st.sampled_from([0.0, 0.05, 0.3]),
    fails=st.booleans(),
)
def test_bucketize_is_the_plain_computation(seed: int, rows: int, dirt: float, fails: bool) -> None:
    """Gaps, NaN, −0, negative and missing values, failures or none, from row 0 or later."""
    rng = np.random.default_rng(seed)
    step = rng.choice([60.0, 60.0, 60.0, 1200.0, 0.0], rows)  # a long gap, a repeated time
    at = 1_700_000_000.0 + np.cumsum(step)

    def col(scale: float) -> FloatArray:
        x = np.round(rng.gamma(2.0, scale, rows))
        odd = rng.random(rows) < dirt
        x[odd] = rng.choice([np.nan, -0.0, -3.0, np.inf], int(odd.sum()))
        return x

    fail = col(1.0) if fails else np.zeros(rows)
    h = LocationHistory(
        at=at,
        in_use=col(50.0),
        waiting=col(2.0),
        arrivals=col(3.0),
        placement_failures=fail,
        departures=col(3.0),
        allocated=col(60.0),
        idle=col(5.0),
        complete=rng.random(rows) >= dirt,
    )
    i0 = int(rng.integers(0, max(rows // 3, 1)))
    t0 = math.floor(1_700_000_000.0 / 86400.0) * 86400.0
    b_lo = int((1_700_000_000.0 - t0) // 300.0) + int(rng.integers(0, 5))
    n = int(rng.integers(1, 40))
    with np.errstate(invalid="ignore"):  # inf − inf in the sums, as before
        got = _bucketize(
            h, i0=i0, i1=rows, t0=t0, b_lo=b_lo, n=n, mean_dur=600.0, cfg=ForecastConfig()
        )
        ref = ref_bucketize(h, i0, rows, t0, b_lo, n, 600.0)
    for name in ("cnt", "csum", "csq", "a_sum", "t_sum"):
        assert same(getattr(got, name), getattr(ref, name)), name


finite = st.floats(min_value=-1e6, max_value=1e6, allow_subnormal=False)


@settings(max_examples=300, deadline=None)
@given(
    xs=st.one_of(
        st.lists(finite, max_size=140),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=20),
        st.lists(st.sampled_from([0.0, -0.0, 1.0, 1e16, -1e16, 0.1]), max_size=40),
    )
)
def test_np_sum_is_numpy_sum(xs: list[float]) -> None:
    with np.errstate(over="ignore", invalid="ignore"):  # huge values overflow, as in Python
        expect = float(np.sum(np.asarray(xs, dtype=np.float64)))
    got = _np_sum(xs)
    assert bits(got) == bits(expect) or (math.isnan(got) and math.isnan(expect))


def test_np_sum_every_length_of_the_eight_accumulator_path() -> None:
    rng = np.random.default_rng(7)
    for n in range(130):
        for _ in range(20):
            x = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 8, n)
            assert bits(_np_sum(x.tolist())) == bits(float(x.sum())), n


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    n=st.sampled_from([1, 2, 7, 288, 2016]),
    rows=st.sampled_from([1, 2]),
)
def test_interp_table_is_the_plain_interpolation(seed: int, n: int, rows: int) -> None:
    rng = np.random.default_rng(seed)
    profile = rng.gamma(2.0, 40.0, (rows, n))
    interp = _Interp.of(profile)
    assert interp is not None
    # Negative (a position just before bucket 0), whole, fractional and wrapped positions.
    pos = np.concatenate(
        (
            [-0.5, -0.25, 0.0, n - 0.5, float(n), 2.0 * n + 0.75],
            rng.uniform(-0.5, 3.0 * n, 300),
            np.arange(0.0, 2.0 * n, 0.5) - 0.5,
        )
    )
    assert same(interp.at(pos), _interp_circular(profile, pos))


def test_interp_table_refuses_profiles_with_gaps() -> None:
    profile = np.array([[1.0, np.nan, 3.0], [1.0, 2.0, 3.0]])
    assert _Interp.of(profile) is None
    # Infinities are no gap: the plain interpolation does the same arithmetic on them.
    inf = np.array([[1.0, np.inf, 3.0, 0.5]])
    table = _Interp.of(inf)
    assert table is not None
    pos = np.array([0.0, 0.5, 1.0, 1.5, 2.25, 3.5, -0.5])
    with np.errstate(invalid="ignore"):
        assert same(table.at(pos), _interp_circular(inf, pos))


@pytest.mark.parametrize("days", [0.3, 1.0, 3.0, 15.0])
def test_rate_horizons_are_the_rates_of_horizons_on_the_grid(days: float) -> None:
    """``rate_horizons_s`` gives what ``arrival_rate_mean`` gives at those horizons, bit for
    bit, and leaves the forecast at the other horizons as it was (shorter grid)."""
    start = 1_700_006_400.0
    h = history(Diurnal(peak=200.0), start, start + days * 86400.0, seed=4)
    hz = np.array([0.0, 276.0, 876.0])
    day = 900.0 * np.arange(1, 97, dtype=np.float64)
    for k, now in enumerate(start + days * 86400.0 - np.array([60.0, 1830.0, 7260.0])):
        fc = SeasonalForecaster(cache_size=k)  # with and without the memo
        full = fc.forecast(h, float(now), np.concatenate((hz, day)), quantiles=(0.5, 0.99))
        split = fc.forecast(h, float(now), hz, quantiles=(0.5, 0.99), rate_horizons_s=day)
        plain = fc.forecast(h, float(now), hz, quantiles=(0.5, 0.99))
        assert same(split.arrival_rate_at, full.arrival_rate_mean[3:])
        assert plain.arrival_rate_at.shape == (0,)
        for name in (
            "in_use_mean",
            "in_use_quantiles",
            "in_use_peak_mean",
            "in_use_peak_quantiles",
            "arrival_rate_mean",
            "arrival_rate_peak",
            "arrivals_expected",
            "arrival_dispersion",
        ):
            got = getattr(split, name)
            assert same(got, getattr(plain, name)), name
            assert same(got, np.ascontiguousarray(getattr(full, name)[..., :3])), name


# ------------------------------------------------------------ the small-grid forecast tail


def ref_tail(g: _Grid, m: npt.NDArray[np.float64]) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The numpy tail of ``SeasonalForecaster.forecast`` before the small-grid path: rows at
    the horizons, their running maxima at the horizons, expected arrivals at the horizons."""
    n_g = g.n_g
    m_c = m[0]
    q_c = np.maximum(m_c + g.zq * np.sqrt(m_c + 1.0), 0.0)
    m_a = m[1]
    cum_a = np.empty(n_g)
    cum_a[0] = 0.0
    (0.5 * (m_a[1:] + m_a[:-1]) * g.d_grid).cumsum(out=cum_a[1:])
    rows = np.concatenate((m, q_c))
    return (
        rows.take(g.gi, axis=1),
        np.maximum.accumulate(rows, axis=1).take(g.gi, axis=1),
        cum_a[g.gi],
    )


def small_grid(hz: FloatArray, n_q: int, seed: int) -> _Grid:
    """The forecaster's own ``_Grid`` for ``hz`` over a past with random error tables."""
    rng = np.random.default_rng(seed)
    fc = SeasonalForecaster()
    start = 1_700_006_400.0
    h = history(Diurnal(peak=50.0), start, start + 86400.0, seed=seed)
    qs = tuple(sorted(rng.uniform(0.05, 0.995, n_q).tolist()))
    past = fc._past(h, start + 86400.0 - 3 * 3600.0, qs)
    past = replace(past, z_at_lag=rng.normal(0.0, 2.0, past.z_at_lag.shape), memo={})
    return fc._grid(past, hz, np.zeros(0), n_q)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n_h=st.integers(0, 6),
    n_q=st.integers(1, 3),
    kind=st.sampled_from(["smooth", "zeros", "tiny", "huge", "mixed"]),
)
def test_small_tail_is_the_numpy_tail(seed: int, n_h: int, n_q: int, kind: str) -> None:
    rng = np.random.default_rng(seed)
    hz = np.maximum(rng.uniform(-100.0, 4000.0, n_h), 0.0)
    if n_h and rng.random() < 0.3:
        hz[0] = 300.0 * rng.integers(0, 5)  # a horizon on the grid itself
    g = small_grid(hz, n_q, seed)
    shape = (2, g.n_g)
    if kind == "smooth":
        m = rng.uniform(0.0, 500.0, shape)
    elif kind == "zeros":
        m = np.where(rng.random(shape) < 0.5, 0.0, rng.uniform(0, 3, shape))
    elif kind == "tiny":
        m = rng.uniform(0.0, 1e-300, shape)
    elif kind == "huge":
        m = rng.uniform(0.0, 1e300, shape)
    else:
        m = rng.choice([0.0, 1.0, 2.5, 1e-9, 7e5], shape)
    m = np.maximum(m, 0.0)  # what the forecast hands the tail
    out = _small_tail(g, *m.tolist())
    assert out is not None
    at_h, peak_h, arrivals = ref_tail(g, m)
    n_r = 2 + n_q
    assert same(out[:n_r], at_h)
    assert same(out[n_r:-1], peak_h)
    assert same(out[-1], arrivals)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_small_tail_declines_non_finite_means(bad: float) -> None:
    """NaN and ∞ (where numpy's max rules and inf − inf would matter) go to the numpy tail."""
    g = small_grid(np.array([0.0, 276.0, 768.0]), 1, 3)
    m = np.ones((2, g.n_g))
    m[1, 2] = bad
    assert _small_tail(g, *m.tolist()) is None


FIELDS = [f.name for f in fields(Forecast)]


@pytest.mark.parametrize("days", [0.05, 0.3, 1.0, 3.0, 15.0])
def test_forecast_with_the_small_tail_is_the_numpy_forecast(
    days: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whole forecasts, every field bit for bit, with the small-grid tail and with the numpy
    tail forced (``_SMALL_GRID`` 0), over horizons, quantiles and rate horizons as callers
    ask them (slo's, a predictive one's), at many instants."""
    start = 1_700_006_400.0
    h = history(Diurnal(peak=120.0), start, start + days * 86400.0, seed=int(days * 10))
    cases: list[tuple[tuple[float, ...], tuple[float, ...], FloatArray | tuple[float, ...]]] = [
        ((0.0, 276.0, 768.0), (0.99,), 900.0 * np.arange(1, 97, dtype=np.float64)),
        ((0.0, 276.0, 768.0), (0.99,), ()),
        ((0.0, 60.0, 600.0, 1800.0, 3600.0), (0.5, 0.9, 0.99), ()),
        ((), (0.5,), ()),
    ]
    ends = start + days * 86400.0 - np.linspace(0.0, min(days, 1.0) * 86400.0 * 0.9, 12)
    fast = SeasonalForecaster()
    for now in ends.tolist():
        for hz, qs, rh in cases:
            got = fast.forecast(h, now, hz, qs, rate_horizons_s=rh)
            with monkeypatch.context() as mp:
                mp.setattr(seasonal, "_SMALL_GRID", 0)
                want = SeasonalForecaster().forecast(h, now, hz, qs, rate_horizons_s=rh)
            for name in FIELDS:
                a, b = getattr(got, name), getattr(want, name)
                if isinstance(a, np.ndarray):
                    assert same(a, b), name
                else:
                    assert bits(a) == bits(b) if isinstance(a, float) else a == b, name


# ------------------------------------------------------------ the small-grid seasonal blend


def ref_blend(
    g: _Grid,
    profile: npt.NDArray[np.float64],
    now: float,
    t0: float,
    week_off: int,
    level: float,
    slope_s: float,
    rate_level: float,
    r_c: float,
    r_a: float,
    pw: float,
) -> tuple[npt.NDArray[np.float64], FloatArray]:
    """The two-row numpy blend ``forecast`` ran before the small-grid blend: concurrency and
    rate on every lead (grid and rate-only), then the grid's part and the rate-only rates."""
    m = np.empty((2, g.leads.shape[0]))
    m[0] = np.maximum(level + slope_s * g.trend, 0.0)
    m[1] = rate_level
    pos_f = now + g.leads
    pos_f -= t0
    pos_f /= 300.0
    pos_f -= 0.5
    pos_f += week_off
    with np.errstate(invalid="ignore"):
        interp = _Interp.of(profile)
    assert interp is not None
    seas = interp.at(pos_f)
    seas *= 1 + np.array([[r_c - 1.0], [r_a - 1.0]]) * g.relax
    m = np.where(np.isfinite(seas), pw * seas + (1 - pw) * m, m)
    m = np.maximum(m, 0.0)
    return m[:, : g.n_g], m[1, g.n_g :]


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 100_000),
    n_h=st.integers(0, 5),
    with_rates=st.booleans(),
    kind=st.sampled_from(["plain", "zeros", "inf", "negative", "nan_level"]),
)
def test_small_blend_is_the_two_row_blend(seed: int, n_h: int, with_rates: bool, kind: str) -> None:
    """``_blend_small`` (concurrency in floats on the grid only) against the two-row numpy
    blend, bit for bit, on random profiles (with zeros, infinities, negative levels), ratios,
    weights, instants and horizons."""
    rng = np.random.default_rng(seed)
    hz = np.maximum(rng.uniform(-100.0, 4000.0, n_h), 0.0)
    rh = 900.0 * np.arange(1, 97, dtype=np.float64) if with_rates else np.zeros(0)
    g = SeasonalForecaster()._grid(_a_past(), hz, rh, 1)
    n_p = int(rng.choice([288, 2016]))
    profile = rng.gamma(2.0, 40.0, (2, n_p))
    profile[1] *= 1e-3
    level, slope_s, rate_level = rng.uniform(0.0, 300.0), rng.normal(0.0, 50.0), rng.uniform(0, 1)
    if kind == "zeros":
        profile[rng.random((2, n_p)) < 0.5] = 0.0
        level = 0.0
    elif kind == "inf":
        profile[rng.integers(0, 2), rng.integers(0, n_p, 5)] = np.inf
    elif kind == "negative":
        level, slope_s = -rng.uniform(0.0, 50.0), -abs(slope_s)
        profile -= 60.0
    elif kind == "nan_level":
        level = math.nan
    with np.errstate(invalid="ignore"):
        interp = _Interp.of(profile)
    assert interp is not None
    now = 1_767_225_600.0 + rng.uniform(0.0, 30.0 * 86400.0)
    t0 = 1_767_225_600.0 - 86400.0 * float(rng.integers(0, 3))
    week_off = int(rng.integers(0, n_p))
    r_c, r_a = rng.uniform(0.2, 3.0, 2).tolist()
    pw = float(rng.choice([1.0, rng.uniform(0.0, 1.0)]))
    args = (now, t0, week_off, level, slope_s, rate_level, r_c, r_a, pw)
    with np.errstate(invalid="ignore"):
        want, want_rates = ref_blend(g, profile, *args)
        m_c, m_a, rates = seasonal._blend_small(
            g, interp, now=now, t0=t0, bs=300.0, week_off=week_off, level=level,
            trend_s=slope_s, rate_level=rate_level, r_c=r_c, r_a=r_a, pw=pw,
        )  # fmt: skip
    assert same(np.array([m_c, m_a], dtype=np.float64), want)
    assert same(rates, want_rates)


@functools.cache
def _a_past() -> seasonal._Past:
    """A day's past (any serves: the blend reads only the grid's leads, trend and relax)."""
    start = 1_700_006_400.0
    h = history(Diurnal(peak=50.0), start, start + 86400.0, seed=1)
    return replace(SeasonalForecaster()._past(h, start + 86400.0 - 3 * 3600.0, (0.9,)), memo={})


@pytest.mark.parametrize("x", [-0.0, 0.0, -1.0, 1e-300, -np.inf, np.inf, np.nan, 5.5])
def test_max0_is_numpy_maximum_with_zero(x: float) -> None:
    for n in (1, 3, 17, 100):  # numpy's scalar and vector loops
        assert bits(seasonal._max0(x)) == np.maximum(np.full(n, x), 0.0)[-1].tobytes()


@pytest.mark.parametrize("n", [1, 12, 47, 48, 49, 60, 300])
@pytest.mark.parametrize("fails", [False, True])
def test_bucketize_edges_either_side_of_the_small_grid(n: int, fails: bool) -> None:
    """Bucket edges as floats (n ≤ ``_SMALL_GRID``) and on an arange (longer runs), with and
    without failures to look back on: the plain computation, bit for bit."""
    rng = np.random.default_rng(n)
    rows = 400
    at = 1_700_000_000.0 + np.cumsum(rng.choice([60.0, 60.0, 37.5, 1200.0], rows))
    fail = np.round(rng.gamma(0.5, 1.0, rows)) if fails else np.zeros(rows)
    h = LocationHistory(
        at, rng.gamma(2.0, 50.0, rows), np.round(rng.gamma(1.0, 1.0, rows)),
        np.round(rng.gamma(2.0, 3.0, rows)), fail, np.round(rng.gamma(2.0, 3.0, rows)),
        np.full(rows, 60.0), np.full(rows, 5.0), rng.random(rows) > 0.05,
    )  # fmt: skip
    t0 = math.floor(1_700_000_000.0 / 86400.0) * 86400.0
    b_lo = int((1_700_000_000.0 - t0) // 300.0) + 3
    got = _bucketize(h, i0=5, i1=rows, t0=t0, b_lo=b_lo, n=n, mean_dur=600.0, cfg=ForecastConfig())
    ref = ref_bucketize(h, 5, rows, t0, b_lo, n, 600.0)
    for name in ("cnt", "csum", "csq", "a_sum", "t_sum"):
        assert same(getattr(got, name), getattr(ref, name)), name
