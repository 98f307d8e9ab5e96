"""Seasonal demand forecast of one location, from its stored history, in one vectorised pass.

Why this shape of model: player demand is a daily (and weekly) wave whose *level* moves
(launches, events, a slow decline, a maintenance dip), observed every tick with Poisson noise,
gaps and outages. So the forecast is a recency-weighted seasonal profile (5-minute buckets of
the day, blended with the same bucket of the week once two weeks exist) scaled by how the last
hour compares with that profile (the level ratio), which relaxes back towards the profile at
long horizons. With less than ~2 days of history the profile is blended with (and, with less
than half a day, replaced by) the recent level plus a damped trend, so it works from the first
hour and improves as history grows.

What it learns from is *uncensored* demand: observed sessions are demand clipped by capacity,
so concurrency is ``in_use + waiting`` plus the sessions that failed placement during the last
mean session duration (each one would have held a slot that long), and arrivals count every
session created (the sampling stage counts failed ones as arrivals already, so they are not
added twice). Incomplete rows, NaN and non-finite times are ignored; a bucket that reads zero
where the profile expects several sessions is an outage and is left out of the profile (but not
out of the level: zero *now* is what it is).

Quantiles come from the empirical distribution of this model's own in-sample errors at each
lead (seasonally adjusted persistence residuals over the last three days, scaled by √mean), with
a noise floor from the physics of a queue (concurrency moves by arrivals and departures), so a
short or smooth history never yields a falsely certain forecast. For arrivals the forecast is a
rate plus an over-dispersion φ (the relative variance of the rate itself, estimated by the method
of moments), which ``autoscaler.forecast.counts`` turns into count quantiles.

Speed: one call touches each history row a handful of times (searchsorted, masks, bincount)
and everything else runs on the bucket grid (≈ 4k buckets for 14 days), so it costs on the order
of a hundred microseconds at 20k rows (see ``bench/forecast_bench.py``). What depends only on
the memoised past and the horizons (the forecast grid, its error quantiles, decay factors, the
profiles at every whole bucket) is computed once per past and reused, by the very same numpy
expressions, so a call differs from recomputing in time only. It is pure: same inputs, same
forecast, no state between calls other than those memos.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from autoscaler.domain.models import FloatArray, LocationHistory

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
_STD_NORMAL = NormalDist()
_N_LAGS = 8  # error tables at leads of 1, 2, 4, … 128 buckets
_MEMO_ENTRIES = 32  # horizon tables kept per memoised past
# Grids up to this many points (the usual few horizons a bucket or more apart: ~7) get the
# forecast's tail (quantiles, peaks, arrivals) in plain floats: a numpy call costs more than
# its dozen elements; longer grids keep the vectorised tail.
_SMALL_GRID = 48

_Profiles = tuple[FloatArray, FloatArray | None, FloatArray, FloatArray | None, FloatArray | None]


@dataclass(frozen=True, slots=True)
class ForecastConfig:
    """Tuning of the seasonal forecaster; the defaults suit 1-minute ticks and player demand."""

    bucket_s: float = 300.0  # grid step; must divide a day
    window_s: float = 14 * DAY_S  # history used (older rows are ignored)
    day_half_life_days: float = 4.0  # weight of a day in the profile halves every this many days
    recent_s: float = 3600.0  # the level ratio compares this much recent data with the profile
    ratio_prior_slots: float = 2.0  # shrinks the ratio towards 1 when the profile is tiny
    ratio_relax_s: float = 12 * 3600.0  # the ratio relaxes towards 1 with this time constant
    trend_damping_s: float = 3600.0  # the fallback trend's effect saturates after this long
    profile_full_days: float = 2.0  # history span from which the profile gets full weight
    # span from which the weekly profile is blended in: most weekdays seen twice (the
    # window the seasonal part reads is one refresh short of the 14-day history, see
    # _window_start)
    weekly_min_days: float = 13.0
    weekly_weight: float = 0.5
    # The seasonal part (profiles, error tables) is recomputed from rows before the last
    # multiple of this (a few ms a time); the level ratio reads the last hour on every call.
    seasonal_refresh_s: float = 3 * 3600.0
    outage_expected_min: float = 3.0  # a zero bucket where the profile expects ≥ this is an outage
    residual_days: float = 3.0  # in-sample residuals are taken from this many recent days
    max_row_gap_s: float = (
        900.0  # a row covering more than this is a gap (its arrivals are dropped)
    )
    default_mean_duration_s: float = 2400.0  # session mean duration before departures say more
    min_residuals: int = 24  # fewer in-sample residuals than this: use the noise floor only


@dataclass(frozen=True, slots=True)
class Forecast:
    """Demand forecast at ``now + horizons_s``.

    ``*_quantiles`` have shape ``(len(quantiles), len(horizons_s))``. ``in_use_peak_*`` is the
    maximum over ``[now, now + h]`` (what pre-warming must cover). ``arrivals_expected`` is the
    expected number of arrivals in ``[now, now + h]``; ``arrival_dispersion`` the relative
    variance φ of the arrival rate at that lead (0 = pure Poisson). ``arrival_rate_at`` is the
    mean arrival rate at the extra ``rate_horizons_s`` a caller asked for (empty if none).
    """

    now: float
    horizons_s: FloatArray
    quantiles: tuple[float, ...]
    in_use_mean: FloatArray
    in_use_quantiles: npt.NDArray[np.float64]
    in_use_peak_mean: FloatArray
    in_use_peak_quantiles: npt.NDArray[np.float64]
    arrival_rate_mean: FloatArray  # per second, at now + h
    arrival_rate_peak: FloatArray  # per second, max of the mean rate over [now, now + h]
    arrivals_expected: FloatArray
    arrival_dispersion: FloatArray
    level: float  # uncensored concurrency now (recent buckets)
    level_ratio: float  # recent demand / seasonal profile (1 = as usual)
    profile_weight: float  # 0 = level + trend only, 1 = seasonal profile only
    mean_duration_s: float  # sessions' mean duration (Little's law on the history)
    history_s: float  # span of usable history
    method: str  # short description for reason strings
    # arrival_rate_mean at now + rate_horizons_s (see ``SeasonalForecaster.forecast``)
    arrival_rate_at: FloatArray = field(default_factory=lambda: np.zeros(0))

    def quantile_index(self, q: float) -> int:
        """Index of quantile ``q`` in ``quantiles`` (ValueError if it was not asked for)."""
        for i, x in enumerate(self.quantiles):
            if abs(x - q) < 1e-12:
                return i
        raise ValueError(f"quantile {q} was not forecast (have {self.quantiles})")


def _rolling_sum(x: FloatArray, w: int) -> FloatArray:
    """Sum of ``x[b-w+1 .. b]`` for every b (shorter windows at the start)."""
    c = np.cumsum(x)
    out = c.copy()
    out[w:] -= c[:-w]
    return out


def _interp_circular(profile: npt.NDArray[np.float64], pos: FloatArray) -> npt.NDArray[np.float64]:
    """Linear interpolation of circular profiles (rows of ``profile``) at fractional bucket
    positions; where one neighbour is missing the other is used, NaN only where both are."""
    n = profile.shape[-1]
    i = np.floor(pos)
    frac = pos - i
    j = i.astype(np.int64) % n
    a = profile[..., j]
    b = profile[..., (j + 1) % n]
    out = np.where(np.isnan(a), b, np.where(np.isnan(b), a, a + (b - a) * frac))
    return np.asarray(out, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class _Interp:
    """``_interp_circular`` of one profile without NaN, as a lookup: rows of ``table`` are the
    profile's rows ``a`` and then their steps to the next bucket ``b − a`` (the very values
    the plain interpolation computes), so a call is one gather and ``a + (b − a)·frac``."""

    table: npt.NDArray[np.float64]  # (2 · rows, buckets)
    rows: int

    @staticmethod
    def of(profile: npt.NDArray[np.float64]) -> _Interp | None:
        """None when the profile has a NaN (the plain interpolation handles those)."""
        if bool(np.isnan(profile).any()):
            return None
        step = np.roll(profile, -1, axis=-1) - profile
        return _Interp(np.concatenate((profile, step)), profile.shape[0])

    def at(self, pos: FloatArray) -> npt.NDArray[np.float64]:
        i = np.floor(pos)
        frac = pos - i
        # 'wrap' takes index j mod buckets, as the plain interpolation's ``% n`` does
        ab = self.table.take(i.astype(np.int64), axis=-1, mode="wrap")
        k = self.rows
        return np.asarray(ab[:k] + ab[k:] * frac, dtype=np.float64)


def _np_sum(xs: Sequence[float]) -> float:
    """``float(np.sum(xs))`` bit for bit, in plain Python, for the dozen values of the last
    hour (a numpy call costs more than the sum): numpy adds up to 128 contiguous values with
    eight interleaved accumulators (fewer than 8: one, from 0), see ``pairwise_sum``."""
    n = len(xs)
    if n < 8:
        res = 0.0
        for x in xs:
            res += x
        return res
    if n > 128:
        return float(np.sum(np.asarray(xs, dtype=np.float64)))
    r0, r1, r2, r3, r4, r5, r6, r7 = xs[:8]
    i = 8
    end = n - n % 8
    while i < end:
        r0 += xs[i]
        r1 += xs[i + 1]
        r2 += xs[i + 2]
        r3 += xs[i + 3]
        r4 += xs[i + 4]
        r5 += xs[i + 5]
        r6 += xs[i + 6]
        r7 += xs[i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for k in range(end, n):
        res += xs[k]
    return res


def _small_tail(g: _Grid, m_c: list[float], m_a: list[float]) -> npt.NDArray[np.float64] | None:
    """The forecast's tail on a small grid in plain floats, bit for bit what the numpy tail
    computes, or None where it might not be (a NaN or an infinity: then the numpy tail runs).

    Why it is exact: each element goes through the same IEEE operations in the same order
    (cumsum is sequential in numpy too). The means are ``np.maximum(·, 0.0)`` outputs, so
    they hold no −0.0 (numpy returns the +0.0) and, being finite, no NaN; the quantiles are
    too; so a running maximum is the plain ``max`` of the prefix (numpy's NaN and signed-zero
    rules never apply). Rows of the result (flattened): concurrency, arrival rate, each
    concurrency quantile at the horizons; the same rows' running maxima at the horizons; the
    expected arrivals at the horizons."""
    if not math.isfinite(sum(m_c) + sum(m_a)):  # all ≥ 0: an inf or a NaN shows in the sum
        return None
    gi = g.gi_l
    sq = [math.sqrt(x + 1.0) for x in m_c]
    rows = [m_c, m_a]
    for zr in g.zq_l:
        q = [x + z * s for x, z, s in zip(m_c, zr, sq, strict=True)]
        rows.append([x if x > 0.0 else 0.0 for x in q])  # x finite: np.maximum(x, 0.0)
    flat = [r[i] for r in rows for i in gi]
    flat += [max(r[: i + 1]) for r in rows for i in gi]
    # cumsum of the trapezoids from 0.0 (its first sum is the first term itself, as numpy's)
    cum = [0.0]
    if len(m_a) > 1:
        d = g.d_l
        acc = 0.5 * (m_a[1] + m_a[0]) * d[0]
        cum.append(acc)
        for k in range(2, len(m_a)):
            acc += 0.5 * (m_a[k] + m_a[k - 1]) * d[k - 1]
            cum.append(acc)
    flat += [cum[i] for i in gi]
    return np.array(flat, dtype=np.float64).reshape(2 * len(rows) + 1, len(gi))


def _positions(g: _Grid, now: float, t0: float, bs: float, week_off: int) -> FloatArray:
    """Fractional bucket-of-week positions of ``now + leads``: ``(now + leads − t0) / bs −
    0.5 + week_off``, in place (the same operations, in this order, on every path)."""
    pos_f = now + g.leads
    pos_f -= t0
    pos_f /= bs
    pos_f -= 0.5
    pos_f += week_off
    return pos_f


def _max0(x: float) -> float:
    """``np.maximum(x, 0.0)`` of one float: NaN stays NaN, −0.0 and negatives become +0.0."""
    return x if x > 0.0 or math.isnan(x) else 0.0


def _blend_small(
    g: _Grid,
    interp: _Interp,
    *,
    now: float,
    t0: float,
    bs: float,
    week_off: int,
    level: float,
    trend_s: float,
    rate_level: float,
    r_c: float,
    r_a: float,
    pw: float,
) -> tuple[list[float], list[float], FloatArray]:
    """The seasonal blend of a small grid: concurrency on the grid's leads in plain floats,
    the arrival rate on every lead (grid and rate-only horizons) in numpy; bit for bit the
    two-row numpy blend (the same IEEE operations on the same values, element by element),
    without computing concurrency at the rate-only horizons. Returns the concurrency and the
    rate on the grid (as floats) and the rate at the rate-only horizons."""
    n_g = g.n_g
    pos_f = _positions(g, now, t0, bs, week_off)
    i = np.floor(pos_f)
    frac = pos_f - i
    # the gather ``_Interp.at`` does: rows a (conc, rate), then their steps (conc, rate)
    ab = interp.table.take(i.astype(np.int64), axis=-1, mode="wrap")
    k = interp.rows
    seas_a = ab[k + 1] * frac
    seas_a += ab[1]
    seas_a *= 1 + (r_a - 1.0) * g.relax
    m_a = np.where(np.isfinite(seas_a), pw * seas_a + (1 - pw) * rate_level, rate_level)
    m_a = np.maximum(m_a, 0.0)
    rc1 = r_c - 1.0
    wl = 1 - pw
    m_c: list[float] = []
    for a, st, f, tr, rl in zip(
        ab[0, :n_g].tolist(),
        ab[k, :n_g].tolist(),
        frac[:n_g].tolist(),
        g.trend_l,
        g.relax_l,
        strict=True,
    ):
        base = _max0(level + trend_s * tr)
        s = (a + st * f) * (1 + rc1 * rl)
        m_c.append(_max0(pw * s + wl * base) if math.isfinite(s) else base)
    return m_c, m_a[:n_g].tolist(), m_a[n_g:]


def _profile(key: npt.NDArray[np.int64], num: FloatArray, den: FloatArray, size: int) -> FloatArray:
    """Weighted profile ``Σnum / Σden`` per key, smoothed over 3 neighbouring buckets
    (circular; smoothing the sums keeps gaps from leaving NaN holes); NaN where no data."""
    n = np.bincount(key, weights=num, minlength=size)
    d = np.bincount(key, weights=den, minlength=size)
    n = n + np.roll(n, 1) + np.roll(n, -1)
    d = d + np.roll(d, 1) + np.roll(d, -1)
    with np.errstate(invalid="ignore", divide="ignore"):
        prof = np.where(d > 0, n / np.where(d > 0, d, 1.0), np.nan)
    return np.asarray(prof, dtype=np.float64)


def _week_profile(
    daily: FloatArray,
    weekly: FloatArray | None,
    day_factor: FloatArray | None,
    week_off: int,
    ww: float,
) -> FloatArray:
    """One profile per bucket of the week (index = bucket + ``week_off``): the daily profile
    times its weekday's level factor, blended with the weekly one where that is known."""
    per_day = daily.shape[0]
    p = np.arange(7 * per_day, dtype=np.int64)
    out = daily[(p - week_off) % per_day]
    if day_factor is not None:
        out = out * day_factor[p // per_day]
    if weekly is not None:
        out = np.where(np.isfinite(weekly), (1 - ww) * out + ww * weekly, out)
    return np.asarray(out, dtype=np.float64)


def _profile_weight(days: float, cfg: ForecastConfig) -> float:
    """0 under half a day of history, 1 from ``profile_full_days``, linear between."""
    return float(min(max((days - 0.5) / (cfg.profile_full_days - 0.5), 0.0), 1.0))


@dataclass(frozen=True, slots=True)
class _Buckets:
    """Sums of one run of buckets (``cnt`` usable rows, ``csum`` their concurrency, ``a_sum``
    arrivals over ``t_sum`` seconds of rate-usable rows)."""

    cnt: FloatArray
    csum: FloatArray
    csq: FloatArray  # sum of squared concurrency (within-bucket spread)
    a_sum: FloatArray
    t_sum: FloatArray

    @property
    def conc(self) -> FloatArray:
        out = np.full(self.cnt.shape, np.nan)
        np.divide(self.csum, self.cnt, out=out, where=self.cnt > 0)
        return out


def _rows_dt(h: LocationHistory, i0: int, i1: int) -> FloatArray:
    """Seconds each row covers (since the previous row; NaN for the very first)."""
    at = h.at[i0:i1]
    dt = np.empty_like(at)
    if at.shape[0]:
        dt[0] = at[0] - h.at[i0 - 1] if i0 > 0 else np.nan
        dt[1:] = at[1:] - at[:-1]
    return dt


def _mean_duration(h: LocationHistory, i0: int, i1: int, cfg: ForecastConfig) -> float:
    """Sessions' mean duration by Little's law (in-use slot-seconds / departures from a slot).

    A placement timeout ends a session that never held a slot: the sampler counts it among
    the departures, Little's law must not (it would shorten the estimate just when capacity
    is short, and with it shrink the buffer)."""
    dt = _rows_dt(h, i0, i1)
    fails = h.placement_failures[i0:i1]
    dep = h.departures[i0:i1] - np.fmax(fails, 0.0)  # fmax: NaN (not measured) reads as 0
    use = h.in_use[i0:i1]
    ok = h.complete[i0:i1] & np.isfinite(dep) & np.isfinite(use) & (dt > 0)
    ok &= dt <= cfg.max_row_gap_s
    n_dep = float(np.where(ok, dep, 0.0).sum())
    busy = float(np.where(ok, use * dt, 0.0).sum())
    if n_dep >= 10 and busy > 0:
        return min(max(busy / n_dep, 300.0), 4 * 3600.0)
    return cfg.default_mean_duration_s


def _bucketize(
    h: LocationHistory,
    *,
    i0: int,
    i1: int,
    t0: float,
    b_lo: int,
    n: int,
    mean_dur: float,
    cfg: ForecastConfig,
) -> _Buckets:
    """Uncensored sums of rows ``i0:i1`` into buckets ``b_lo .. b_lo + n - 1`` (rows outside
    are read only for the failures' look-back). Sorted rows → cumulative sums, no bincount."""
    at = h.at[i0:i1]
    in_use = h.in_use[i0:i1]
    ok = h.complete[i0:i1] & np.isfinite(at) & np.isfinite(in_use)
    # fmax reads NaN and negatives as 0 (as where(waiting > 0, waiting, 0) would; a −0 it may
    # keep instead of +0 changes no sum below, each starts from +0)
    conc = np.maximum(in_use, 0.0) + np.fmax(h.waiting[i0:i1], 0.0)
    fail = h.placement_failures[i0:i1]
    failed = fail > 0
    # (no failure at all, the usual case: one test, not two)
    if failed.any() and (lost := ok & failed).any():
        # Lost concurrency: failures of the last mean duration each held a slot that long.
        cs_f = np.where(lost, fail, 0.0).cumsum()
        j = at.searchsorted(at - mean_dur, side="right")
        conc = conc + cs_f - np.where(j > 0, cs_f[np.maximum(j - 1, 0)], 0.0)
    if i0 > 0:
        at_1 = h.at[i0 - 1 : i1]
        dt = at_1[1:] - at_1[:-1]  # what _rows_dt computes, in one subtraction
    else:
        dt = _rows_dt(h, i0, i1)
    rate_ok = ok & np.isfinite(h.arrivals[i0:i1]) & (dt > 0) & (dt <= cfg.max_row_gap_s)
    bs = cfg.bucket_s
    if n <= _SMALL_GRID:
        # the last hour's dozen edges as floats: the same operations as on the arange below
        # (b_lo + k is an exact integer either way), without four numpy calls
        edges = at.searchsorted([t0 + (b_lo + k) * bs for k in range(n + 1)])
    else:
        edges = at.searchsorted(t0 + (b_lo + np.arange(n + 1, dtype=np.float64)) * bs)
    # Masked values copied into zeros: what np.where(mask, x, 0.0) gives, in fewer calls.
    cols = np.zeros((5, at.shape[0] + 1))
    cols[0, 1:] = ok
    np.copyto(cols[1, 1:], conc, where=ok)
    np.multiply(cols[1, 1:], cols[1, 1:], out=cols[2, 1:])
    np.copyto(cols[3, 1:], h.arrivals[i0:i1], where=rate_ok)
    np.copyto(cols[4, 1:], dt, where=rate_ok)
    cols.cumsum(axis=1, out=cols)
    at_edges = cols.take(edges, axis=1)
    sums = at_edges[:, 1:] - at_edges[:, :-1]
    return _Buckets(cnt=sums[0], csum=sums[1], csq=sums[2], a_sum=sums[3], t_sum=sums[4])


@dataclass(frozen=True, slots=True)
class _Past:
    """What the forecaster derives from rows before a refresh boundary ``cut`` (a multiple of
    ``seasonal_refresh_s``): the seasonal profiles and the error tables. It changes once a
    refresh, so it is memoised (see ``SeasonalForecaster``); everything about the last hour is
    recomputed on every call."""

    t0: float  # day-aligned origin of the bucket grid
    week_off: int  # bucket-of-week of bucket 0
    # Row 0 concurrency, row 1 arrival rate (per s), by bucket of the week (see
    # ``_week_profile``); None: no usable rows yet.
    profile: npt.NDArray[np.float64] | None
    weekly: bool  # the weekly profile is blended in
    first_valid_at: float | None
    mean_dur: float
    lag_s: FloatArray  # leads of the error tables, starting at 0
    z_at_lag: npt.NDArray[np.float64]  # (quantiles, leads) standardised error quantiles
    phi_at_lag: FloatArray  # arrival-rate over-dispersion by lead
    outage_buckets: int
    # Filled by ``forecast`` on first use: the profiles at every whole bucket, and the tables
    # that depend only on this past and the horizons (keyed by the horizons' bytes).
    memo: dict[object, object] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class _Grid:
    """What a forecast call needs that depends only on the horizons and a ``_Past``: the
    forecast grid and everything on it that does not involve ``now`` or the last hour."""

    grid: FloatArray  # leads 0, bs, 2 bs, … past the longest horizon, plus the horizons
    gi: npt.NDArray[np.intp]  # index of each horizon in ``grid``
    d_grid: FloatArray  # np.diff(grid)
    # The means are evaluated at ``grid`` followed by the rate-only horizons; the rest of a
    # call (peaks, arrivals, quantiles) uses the first ``n_g`` (the grid's) only.
    leads: FloatArray  # grid, then the rate-only horizons
    n_g: int
    trend: FloatArray  # 1 − exp(−leads / trend_damping_s)
    relax: FloatArray  # exp(−leads / ratio_relax_s)
    zq: npt.NDArray[np.float64]  # (quantiles, grid) standardised error quantiles
    dispersion: FloatArray  # φ at each horizon
    # The same as plain floats, for the small-grid tail (``_small_tail``; read-only)
    gi_l: tuple[int, ...]
    d_l: tuple[float, ...]
    zq_l: tuple[tuple[float, ...], ...]
    trend_l: tuple[float, ...]  # trend and relax on the grid's leads (the first n_g)
    relax_l: tuple[float, ...]


class SeasonalForecaster:
    """Forecasts one location's demand; one instance serves every location.

    Results depend only on the arguments. The part derived from rows older than the last
    refresh boundary (profiles, error tables; ``ForecastConfig.seasonal_refresh_s``, 3 hours:
    recomputing costs a few ms, and a 4-day half-life profile barely moves in 3 hours while
    the level ratio follows the last hour on every call) is memoised in a small LRU keyed by
    that boundary, the quantiles
    and a fingerprint of those rows (count, first and last time, strided sums of three
    columns); stored history is append-only, so a hit returns exactly what recomputing would.
    ``cache_size=0`` disables it (the tests compare both).
    """

    def __init__(self, config: ForecastConfig | None = None, *, cache_size: int = 512) -> None:
        self.config = config or ForecastConfig()
        per_day = DAY_S / self.config.bucket_s
        if abs(per_day - round(per_day)) > 1e-9 or 3600.0 % self.config.bucket_s:
            raise ValueError("bucket_s must divide an hour")
        refresh = self.config.seasonal_refresh_s
        if refresh <= 0.0 or refresh % 3600.0 or DAY_S % refresh:
            raise ValueError("seasonal_refresh_s must be whole hours dividing a day")
        self._cache: OrderedDict[tuple[object, ...], _Past] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._trend_memo: dict[tuple[int, ...], tuple[list[float], float]] = {}

    # --- the part refreshed every few hours ----------------------------------------------------
    def _window_start(self, cut: float) -> float:
        """Oldest row the seasonal part uses. One refresh period short of the window: the
        caller's history slides by one row per tick, so only the rows it holds for the whole
        period after ``cut`` keep the memo valid (otherwise, once the history is full, every
        tick would recompute the seasonal profile)."""
        return cut - self.config.window_s + self.config.seasonal_refresh_s

    def _past(self, h: LocationHistory, cut: float, qs: tuple[float, ...]) -> _Past:
        i_lo, i_cut = h.at.searchsorted((self._window_start(cut), cut)).tolist()
        key: tuple[object, ...] = (cut, qs, i_cut - i_lo)
        if i_cut > i_lo:
            # Exact bytes of strided rows: NaN-safe and cheap (a few hundred values).
            stride = slice(i_lo, i_cut, 53)
            key += (
                float(h.at[i_lo]),
                float(h.at[i_cut - 1]),
                h.in_use[stride].tobytes(),
                h.arrivals[stride].tobytes(),
                h.complete[stride].tobytes(),
            )
        if self._cache_size:
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit
        past = self._compute_past(h, cut, qs, i_lo, i_cut)
        if self._cache_size:
            with self._lock:
                self._cache[key] = past
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return past

    def _compute_past(
        self, h: LocationHistory, cut: float, qs: tuple[float, ...], i_lo: int, i_cut: int
    ) -> _Past:
        cfg = self.config
        bs = cfg.bucket_s
        per_day = round(DAY_S / bs)
        per_week = 7 * per_day
        lo = self._window_start(cut)
        t0 = math.floor(lo / DAY_S) * DAY_S
        week_off = int(((t0 // DAY_S) % 7) * per_day)
        nb = round((cut - t0) / bs)
        lag_s = np.concatenate(([0.0], bs * 2.0 ** np.arange(_N_LAGS)))
        z_norm = np.array([_STD_NORMAL.inv_cdf(q) for q in qs])
        mean_dur = _mean_duration(h, i_lo, i_cut, cfg)
        # Little history: the full Poisson width, no credit for persistence; rate ±50 % (1 sd).
        z_default = np.outer(z_norm, np.maximum(1.0, np.sqrt(lag_s / mean_dur)))
        z_default[:, 0] = 0.0
        phi_default = np.full(lag_s.shape, 0.25)
        empty = _Past(t0, week_off, None, False, None, mean_dur, lag_s, z_default, phi_default, 0)
        if i_cut <= i_lo:
            return empty
        i_start = int(np.searchsorted(h.at, t0 - mean_dur, side="left"))
        bk = _bucketize(h, i0=i_start, i1=i_cut, t0=t0, b_lo=0, n=nb, mean_dur=mean_dur, cfg=cfg)
        c_b = bk.conc
        valid = np.isfinite(c_b)
        if not valid.any():
            return empty
        first_valid_at = t0 + float(np.argmax(valid)) * bs
        b_all = np.arange(nb, dtype=np.int64)
        tod = b_all % per_day
        tow = (b_all + week_off) % per_week
        w_b = np.power(0.5, (nb - 1 - b_all) * (bs / DAY_S) / cfg.day_half_life_days)
        use_week = (cut - first_valid_at) / DAY_S >= cfg.weekly_min_days
        c0 = np.where(valid, c_b, 0.0)

        def build(mask: npt.NDArray[np.bool_]) -> _Profiles:
            wc = np.where(mask, w_b, 0.0)
            wt = wc * bk.t_sum
            pd_c = _profile(tod, wc * c0, wc, per_day)
            pd_a = _profile(tod, wc * bk.a_sum, wt, per_day)
            if not use_week:
                return pd_c, None, pd_a, None, None
            cov = np.bincount(tow, weights=mask.astype(np.float64), minlength=per_week)
            cov = cov + np.roll(cov, 1) + np.roll(cov, -1)
            pw_c = np.where(cov >= 2, _profile(tow, wc * c0, wc, per_week), np.nan)
            pw_a = np.where(cov >= 2, _profile(tow, wc * bk.a_sum, wt, per_week), np.nan)
            # Day-of-week level factors: each weekday's demand over the daily profile's.
            dday = tow // per_day
            p_day = pd_c[tod]
            known = mask & np.isfinite(p_day)
            num = np.bincount(dday, weights=np.where(known, wc * c0, 0.0), minlength=7)
            den = np.bincount(dday, weights=np.where(known, wc * p_day, 0.0), minlength=7)
            n_day = np.bincount(dday, weights=known.astype(np.float64), minlength=7)
            factor = np.where(
                (n_day >= 1.5 * per_day) & (den > 0), num / np.maximum(den, 1e-9), 1.0
            )
            return pd_c, pw_c, pd_a, pw_a, factor

        centre = b_all.astype(np.float64)
        prof = build(valid)
        ww = cfg.weekly_weight
        p_c = _interp_circular(
            _week_profile(prof[0], prof[1], prof[4], week_off, ww), centre + week_off
        )
        outage = valid & (c_b == 0) & (p_c >= cfg.outage_expected_min)
        n_out = int(outage.sum())
        if n_out:
            prof = build(valid & ~outage)
            p_c = _interp_circular(
                _week_profile(prof[0], prof[1], prof[4], week_off, ww), centre + week_off
            )
        week_a = _week_profile(prof[2], prof[3], prof[4], week_off, ww)
        p_a = _interp_circular(week_a, centre + week_off)

        # Rolling ratio and level series: what the model would have said at each bucket.
        wr = max(1, round(cfg.recent_s / bs))
        prior = cfg.ratio_prior_slots
        both = valid & np.isfinite(p_c)
        ratio_c = (_rolling_sum(np.where(both, c_b, 0.0), wr) + prior) / (
            _rolling_sum(np.where(both, p_c, 0.0), wr) + prior
        )
        roll_n = _rolling_sum(valid.astype(np.float64), wr)
        level_roll = _rolling_sum(c0, wr) / np.maximum(roll_n, 1.0)
        a_both = (bk.t_sum > 0) & np.isfinite(p_a)
        ratio_a = (_rolling_sum(np.where(a_both, bk.a_sum, 0.0), wr) + 1.0) / (
            _rolling_sum(np.where(a_both, p_a * bk.t_sum, 0.0), wr) + 1.0
        )
        rate_roll = _rolling_sum(bk.a_sum, wr) / np.maximum(_rolling_sum(bk.t_sum, wr), 1.0)
        pw = _profile_weight((cut - first_valid_at) / DAY_S, cfg)

        z_at = z_default.copy()
        phi_at = phi_default.copy()
        bb = np.arange(max(wr, nb - round(cfg.residual_days * per_day)), nb, dtype=np.int64)
        # Rows scatter around their bucket's mean; a forecast is of one instant, so that spread
        # (relative to a Poisson one) widens every quantile. ~0 for smooth, persistent demand.
        n_in = bk.cnt[bb]
        multi = n_in >= 2
        within = (bk.csq[bb] - bk.csum[bb] ** 2 / np.maximum(n_in, 1.0)) / np.maximum(n_in - 1, 1.0)
        scale = float((c0[bb] + 1.0)[multi].sum())
        v_within = max(float(within[multi].sum()) / scale, 0.0) if scale > 0 else 0.0
        for li in range(1, lag_s.shape[0]):
            k = round(lag_s[li] / bs)
            sel = bb - k >= 0
            b1 = bb[sel]
            s1 = b1 - k
            f = pw * ratio_c[s1] * p_c[b1] + (1 - pw) * level_roll[s1]
            fa = pw * ratio_a[s1] * p_a[b1] + (1 - pw) * rate_roll[s1]
            if pw == 0.0:
                f, fa = level_roll[s1], rate_roll[s1]
            good = valid[b1] & np.isfinite(f) & (roll_n[s1] > 0)
            if int(good.sum()) >= cfg.min_residuals:
                fg = f[good]
                z = (c_b[b1][good] - fg) / np.sqrt(fg + 1.0)
                emp = np.quantile(z, qs)
                emp = np.sign(emp) * np.sqrt(emp * emp + z_norm * z_norm * v_within)
                # Floor: over a lead h a share 1 − exp(−h/D) of the sessions turns over.
                floor = z_norm * math.sqrt(1.0 - math.exp(-lag_s[li] / mean_dur))
                z_at[:, li] = np.where(z_norm >= 0, np.maximum(emp, floor), np.minimum(emp, floor))
            ga = (bk.t_sum[b1] > 0) & np.isfinite(fa)
            if int(ga.sum()) >= cfg.min_residuals:
                expct = fa[ga] * bk.t_sum[b1][ga]
                n = bk.a_sum[b1][ga]
                den = float((expct * expct).sum())
                if den > 0:
                    phi = float(((n - expct) ** 2 - expct).sum()) / den
                    phi_at[li] = min(max(phi, 0.0), 4.0)
        return _Past(
            t0=t0,
            week_off=week_off,
            profile=np.vstack((_week_profile(prof[0], prof[1], prof[4], week_off, ww), week_a)),
            weekly=prof[1] is not None,
            first_valid_at=first_valid_at,
            mean_dur=mean_dur,
            lag_s=lag_s,
            z_at_lag=z_at,
            phi_at_lag=phi_at,
            outage_buckets=n_out,
        )

    # --- every call -------------------------------------------------------------------------
    def forecast(
        self,
        history: LocationHistory,
        now: float,
        horizons_s: Sequence[float] | FloatArray,
        quantiles: Sequence[float] = (0.5, 0.9, 0.99),
        *,
        rate_horizons_s: Sequence[float] | FloatArray = (),
    ) -> Forecast:
        """The forecast at ``now + horizons_s``; with ``rate_horizons_s``, also the mean
        arrival rate at ``now + rate_horizons_s`` (``Forecast.arrival_rate_at``), bit for bit
        what ``arrival_rate_mean`` would hold had they been among the horizons, without
        stretching the grid of peaks, arrivals and quantiles out to them (a day of 15-minute
        rates for a budget costs ~100 points instead of ~300 on every row)."""
        cfg = self.config
        bs = cfg.bucket_s
        hz = np.maximum(np.asarray(horizons_s, dtype=np.float64), 0.0)
        rh = np.maximum(np.asarray(rate_horizons_s, dtype=np.float64), 0.0)
        qs = tuple(float(q) for q in quantiles)
        if any(not 0.0 < q < 1.0 for q in qs):
            raise ValueError("quantiles must be in (0, 1)")
        refresh = cfg.seasonal_refresh_s
        cut = math.floor(now / refresh) * refresh
        past = self._past(history, cut, qs)
        t0 = past.t0
        wr = max(1, round(cfg.recent_s / bs))

        # The last hour, bucketed from its rows (the current bucket is partial).
        cur = math.floor((now - t0) / bs)
        b_lo = max(cur - wr + 1, 0)
        n_r = cur - b_lo + 1
        i_s = int(history.at.searchsorted(t0 + b_lo * bs - past.mean_dur, side="left"))
        i_e = int(history.at.searchsorted(now, side="right"))
        bk = _bucketize(
            history, i0=i_s, i1=i_e, t0=t0, b_lo=b_lo, n=n_r, mean_dur=past.mean_dur, cfg=cfg
        )
        # ``bk.conc`` as floats: the same IEEE division for a dozen buckets, without the numpy
        # calls (NaN where no usable row)
        c_list = [
            s / n if n > 0 else math.nan
            for s, n in zip(bk.csum.tolist(), bk.cnt.tolist(), strict=True)
        ]
        first_valid_at = past.first_valid_at
        if first_valid_at is None:
            first = next((i for i, c in enumerate(c_list) if math.isfinite(c)), None)
            if first is not None:
                first_valid_at = t0 + (b_lo + float(first)) * bs
        history_s = max(now - first_valid_at, 0.0) if first_valid_at is not None else 0.0
        pw = _profile_weight(history_s / DAY_S, cfg) if past.profile is not None else 0.0

        # A dozen values: plain Python is faster than numpy calls here (sums as numpy's).
        idx = tuple(i for i, y in enumerate(c_list) if not math.isnan(y))
        ys = [c_list[i] for i in idx]
        level = sum(ys[-3:]) / len(ys[-3:]) if ys else 0.0
        slope = 0.0
        if len(ys) >= 4:
            dxs, sxx = self._trend_xs(idx, bs)
            ym = sum(ys) / len(ys)
            slope = sum([dx * (y - ym) for dx, y in zip(dxs, ys, strict=True)]) / sxx
        t_list = bk.t_sum.tolist()
        a_list = bk.a_sum.tolist()
        t_tot = _np_sum(t_list)
        # Arrival rate over the recent window. Where less of it was observed than its
        # complete buckets (a fresh start, a gap), the unobserved time is filled with the
        # steady-state rate level / mean duration (Little's law) instead of reading 0 or a
        # minute's noise as the rate; with the window observed, this is plain A / T.
        observed_s = (wr - 1) * bs
        if t_tot >= observed_s:
            rate_level = _np_sum(a_list) / t_tot if t_tot > 0 else 0.0
        else:
            rate_level = (_np_sum(a_list) + level / past.mean_dur * (observed_s - t_tot)) / (
                observed_s
            )

        g = self._grid(past, hz, rh, len(qs))
        n_g = g.n_g
        r_c = r_a = 1.0
        interp: _Interp | None = None
        blend = pw > 0.0 and past.profile is not None
        if blend:
            at_buckets, interp = self._bucket_table(past)
            n_p = at_buckets.shape[-1]
            s0 = (b_lo + past.week_off) % n_p
            if s0 + n_r <= n_p:
                p_c, p_a = at_buckets[:, s0 : s0 + n_r].tolist()
            else:
                idx = (b_lo + past.week_off + np.arange(n_r)) % n_p
                p_c, p_a = at_buckets.take(idx, axis=1).tolist()
            both = [
                (c, p)
                for c, p in zip(c_list, p_c, strict=True)
                if math.isfinite(c) and math.isfinite(p)
            ]
            prior = cfg.ratio_prior_slots
            r_c = (_np_sum([c for c, _ in both]) + prior) / (_np_sum([p for _, p in both]) + prior)
            a_ok = [
                (a, p, t)
                for a, p, t in zip(a_list, p_a, t_list, strict=True)
                if t > 0 and math.isfinite(p)
            ]
            r_a = (_np_sum([a for a, _, _ in a_ok]) + 1.0) / (
                _np_sum([p * t for _, p, t in a_ok]) + 1.0
            )
        out: npt.NDArray[np.float64] | None = None
        if blend and interp is not None and n_g <= _SMALL_GRID:
            m_c, m_a, rate_at = _blend_small(
                g,
                interp,
                now=now,
                t0=t0,
                bs=bs,
                week_off=past.week_off,
                level=level,
                trend_s=slope * cfg.trend_damping_s,
                rate_level=rate_level,
                r_c=r_c,
                r_a=r_a,
                pw=pw,
            )
            out = _small_tail(g, m_c, m_a)
            if out is None:  # a NaN or an infinity: the numpy tail below
                m = np.array([m_c, m_a], dtype=np.float64)
        else:
            # Row 0 concurrency, row 1 arrival rate: one numpy call for both.
            m = np.empty((2, g.leads.shape[0]))
            m[0] = np.maximum(level + slope * cfg.trend_damping_s * g.trend, 0.0)
            m[1] = rate_level
            if blend:
                assert past.profile is not None
                pos_f = _positions(g, now, t0, bs, past.week_off)
                r_1 = np.array([[r_c - 1.0], [r_a - 1.0]])
                seas = _interp_circular(past.profile, pos_f) if interp is None else interp.at(pos_f)
                seas *= 1 + r_1 * g.relax
                m = np.where(np.isfinite(seas), pw * seas + (1 - pw) * m, m)
            m = np.maximum(m, 0.0)
            rate_at = m[1, n_g:]
            m = m[:, :n_g]
            out = _small_tail(g, *m.tolist()) if n_g <= _SMALL_GRID else None
        if out is not None:
            n_r = 2 + len(qs)
            at_h, peak_h, arrivals = out[:n_r], out[n_r:-1], out[-1]
        else:
            m_c = m[0]
            q_c = np.maximum(m_c + g.zq * np.sqrt(m_c + 1.0), 0.0)
            gi = g.gi
            m_a = m[1]
            cum_a = np.empty(n_g)
            cum_a[0] = 0.0
            (0.5 * (m_a[1:] + m_a[:-1]) * g.d_grid).cumsum(out=cum_a[1:])
            # Rows: concurrency, arrival rate, concurrency quantiles; at the horizons, and
            # their running maxima (the peaks) at the horizons.
            rows = np.concatenate((m, q_c))
            at_h = rows.take(gi, axis=1)
            peak_h = np.maximum.accumulate(rows, axis=1).take(gi, axis=1)
            arrivals = cum_a[gi]
        if pw > 0.0:
            week = ", weekly" if past.weekly else ""
            method = f"seasonal×level (profile weight {pw:.2f}, level ratio {r_c:.2f}{week})"
        else:
            method = "recent level + trend (under half a day of history)"
        return Forecast(
            now=now,
            horizons_s=hz,
            quantiles=qs,
            in_use_mean=at_h[0],
            in_use_quantiles=at_h[2:],
            in_use_peak_mean=peak_h[0],
            in_use_peak_quantiles=peak_h[2:],
            arrival_rate_mean=at_h[1],
            arrival_rate_peak=peak_h[1],
            arrivals_expected=arrivals,
            arrival_dispersion=g.dispersion.copy(),
            level=level,
            level_ratio=r_c,
            profile_weight=pw,
            mean_duration_s=past.mean_dur,
            history_s=history_s,
            method=method,
            arrival_rate_at=rate_at,
        )

    def _trend_xs(self, idx: tuple[int, ...], bs: float) -> tuple[list[float], float]:
        """The recent trend's centred times ``x − x̄`` and ``Σ(x − x̄)²`` for the valid buckets
        ``idx`` (memoised: almost always the same dozen)."""
        hit = self._trend_memo.get(idx)
        if hit is None:
            xs = [i * bs for i in idx]
            xm = sum(xs) / len(xs)
            hit = ([x - xm for x in xs], sum([(x - xm) ** 2 for x in xs]))
            if len(self._trend_memo) >= 64:
                self._trend_memo.clear()
            self._trend_memo[idx] = hit
        return hit

    @staticmethod
    def _bucket_table(past: _Past) -> tuple[npt.NDArray[np.float64], _Interp | None]:
        """The past's profiles interpolated at every whole bucket, and their interpolation
        table (None if they have a NaN); computed once per past."""
        hit = past.memo.get("buckets")
        if isinstance(hit, tuple):
            return hit
        assert past.profile is not None
        n_p = past.profile.shape[-1]
        at_buckets = _interp_circular(past.profile, np.arange(n_p, dtype=np.float64))
        table = (at_buckets, _Interp.of(past.profile))
        past.memo["buckets"] = table
        return table

    def _grid(self, past: _Past, hz: FloatArray, rh: FloatArray, n_q: int) -> _Grid:
        """The horizon tables of ``past`` (computed once per past and horizons)."""
        key = (hz.tobytes(), rh.tobytes(), n_q)
        hit = past.memo.get(key)
        if isinstance(hit, _Grid):
            return hit
        cfg = self.config
        bs = cfg.bucket_s
        h_max = float(hz.max()) if hz.size else 0.0
        grid = np.sort(np.concatenate((np.arange(0.0, h_max + bs, bs), hz)))
        leads = np.concatenate((grid, rh))
        gi = np.searchsorted(grid, hz)
        d_grid = np.diff(grid)
        zq = np.vstack([np.interp(grid, past.lag_s, past.z_at_lag[i]) for i in range(n_q)])
        trend = 1 - np.exp(-leads / cfg.trend_damping_s)
        relax = np.exp(-leads / cfg.ratio_relax_s)
        g = _Grid(
            grid=grid,
            gi=gi,
            d_grid=d_grid,
            leads=leads,
            n_g=grid.shape[0],
            trend=trend,
            relax=relax,
            zq=zq,
            dispersion=np.interp(hz, past.lag_s, past.phi_at_lag),
            gi_l=tuple(gi.tolist()),
            d_l=tuple(d_grid.tolist()),
            zq_l=tuple(tuple(row) for row in zq.tolist()),
            trend_l=tuple(trend[: grid.shape[0]].tolist()),
            relax_l=tuple(relax[: grid.shape[0]].tolist()),
        )
        if len(past.memo) >= _MEMO_ENTRIES:  # horizons that change every call: stay bounded
            past.memo.clear()
        past.memo[key] = g
        return g


def forecast_location(
    history: LocationHistory,
    now: float,
    horizons_s: Sequence[float] | FloatArray,
    quantiles: Sequence[float] = (0.5, 0.9, 0.99),
    config: ForecastConfig | None = None,
) -> Forecast:
    """Forecast a location's demand at ``now + horizons_s`` (see ``SeasonalForecaster``)."""
    return SeasonalForecaster(config).forecast(history, now, horizons_s, quantiles)
