"""The project's own synthetic demand: a diurnal week shaped like a typical online game.

Why: the demo and the tests must run without the real traces (they are not shipped with the
project), yet on demand that has what makes capacity planning hard: a slow afternoon rise to an
evening peak, a fast fall after midnight to a night trough several times lower, busier
weekends, and noise no forecast can predict. The shape follows what the real traces show
(``shared/traces/README.md``: typical daily max/min ratios 2-5, steep titles up to 14, peaks in
the evening).

Model, per time t (hours of the UTC day h):

- day curve: trough at ``peak_hour - rise_h``; a half-cosine rise over ``rise_h`` hours to
  the peak, then a half-cosine fall over the remaining ``24 - rise_h`` hours back to the trough
  (smooth, no kink); level = 1/``trough_ratio`` + (1 - 1/``trough_ratio``) × curve;
- week: × (1 + ``weekend_uplift``) on Saturday and Sunday, ramped linearly over the 6 hours
  around each midnight that starts or ends the weekend (no step);
- noise: × exp(AR(1) log-noise), standard deviation ``noise``, correlation time ~1 h;
- scaled so that the maximum equals ``peak`` exactly.

The daily max/min ratio is ``trough_ratio`` up to the noise (the week factor multiplies peak
and trough alike, except on the ramp days).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from autoscaler.backtest.traces import ConcurrencyTrace

_MONDAY = "2025-01-06T00:00:00Z"  # a Monday, so day 5 and 6 are the weekend


def _day_curve(h: NDArray[np.float64], peak_hour: float, rise_h: float) -> NDArray[np.float64]:
    since_trough = np.mod(h - (peak_hour - rise_h), 24.0)
    rising = since_trough < rise_h
    up = 0.5 * (1.0 - np.cos(np.pi * since_trough / rise_h))
    down = 0.5 * (1.0 + np.cos(np.pi * (since_trough - rise_h) / (24.0 - rise_h)))
    return np.where(rising, up, down)


def _week_factor(t_s: NDArray[np.float64], uplift: float) -> NDArray[np.float64]:
    d = np.mod(t_s / 86400.0 + 3.0, 7.0)  # days since Monday 00:00 UTC (1970-01-01: Thursday)
    # Signed distance (days) to the nearest weekend boundary, positive inside [5, 7).
    inside = d >= 5.0
    sd = np.where(inside, np.minimum(d - 5.0, 7.0 - d), -np.minimum(5.0 - d, d))
    ramp = 0.25  # days: 6 h centred on the midnight
    return 1.0 + uplift * np.clip(0.5 + sd / ramp, 0.0, 1.0)


def synthetic_trace(
    *,
    peak: float = 400.0,
    days: float = 14.0,
    step_s: float = 600.0,
    seed: int = 0,
    trough_ratio: float = 5.0,
    peak_hour: float = 20.0,
    rise_h: float = 15.0,
    weekend_uplift: float = 0.2,
    noise: float = 0.04,
    start: str = _MONDAY,
) -> ConcurrencyTrace:
    """A ``days``-long concurrency series sampled every ``step_s`` s from ``start`` (UTC)."""
    if peak <= 0 or days <= 0 or step_s <= 0 or trough_ratio < 1 or not 0 < rise_h < 24:
        raise ValueError("need peak, days, step_s > 0, trough_ratio ≥ 1 and 0 < rise_h < 24")
    if noise < 0 or weekend_uplift <= -1:
        raise ValueError("need noise ≥ 0 and weekend_uplift > -1")
    t0 = (pd.Timestamp(start) - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    n = math.floor(days * 86400.0 / step_s + 1e-9) + 1
    t = t0 + step_s * np.arange(n, dtype=np.float64)
    hours = np.mod(t / 3600.0, 24.0)
    low = 1.0 / trough_ratio
    level = low + (1.0 - low) * _day_curve(hours, peak_hour, rise_h)
    level = level * _week_factor(t, weekend_uplift)
    if noise > 0:
        rng = np.random.default_rng(seed)
        rho = math.exp(-step_s / 3600.0)
        shocks = rng.normal(0.0, noise * math.sqrt(1.0 - rho * rho), n)
        shocks[0] = rng.normal(0.0, noise)
        level = level * np.exp(_ar1(shocks, step_s / 3600.0))
    values = level / level.max() * peak
    times = np.ascontiguousarray(t)
    times.flags.writeable = False
    values.flags.writeable = False
    return ConcurrencyTrace(
        name="synthetic",
        series=f"diurnal-{trough_ratio:g}x",
        times=times,
        values=values,
        step_s=float(step_s),
        gaps=(),
    )


def _ar1(shocks: NDArray[np.float64], steps_per_tau: float) -> NDArray[np.float64]:
    """x_k = rho x_(k-1) + e_k with rho = exp(-steps_per_tau), vectorised block by block:
    inside a block x = rho^m (carry + cumsum(e / rho^m)); blocks are short enough that
    rho^m never underflows."""
    rho = math.exp(-steps_per_tau)
    block = max(1, math.floor(200.0 / steps_per_tau))
    powers = rho ** np.arange(1, block + 1, dtype=np.float64)
    out = np.empty_like(shocks)
    carry = 0.0
    for i in range(0, len(shocks), block):
        s = shocks[i : i + block]
        p = powers[: len(s)]
        seg = p * (carry + np.cumsum(s / p))
        out[i : i + block] = seg
        carry = float(seg[-1])
    return out
