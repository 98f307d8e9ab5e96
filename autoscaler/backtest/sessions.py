"""Turn a concurrency series into stream sessions, exactly as ``shared/docs/benchmark.md`` says.

Why it is built this way: a backtest scores a controller on *sessions* (who started at once,
who waited), but real traces give only concurrent-player counts. The conversion must keep the
trace's shape (expected concurrency follows C(t)), must not invent demand the trace does not
show, must be reproducible (fixed seed → identical sessions) and must be fast (30 days at peak
400 ≈ 270k sessions, well under a second), hence numpy throughout and no per-session Python.

The steps, for each hole-free piece of the chosen window:

1. scale: C ← C / max(C) × ``peak``, the max taken over the simulation grid of the whole window
   (all pieces), so the run's largest expected concurrency is exactly ``peak``;
2. interpolate onto the grid t0 + k·``step_s``: ``linear`` (default) or ``pchip`` (monotone
   cubic). Both are shape-preserving: between two samples the value stays between them, so no
   overshoot, no spike. Spacings up to ``max_interp_gap_s`` (default 3 h) are interpolated;
   longer holes split the trace into pieces that are planned independently (each with its own
   warm start): bridging a long hole with a line would invent demand, and restarting from zero
   after it would invent a burst of arrivals;
3. durations: log-normal with mean 40 min and sigma 0.9 (mu = ln(mean) − sigma²/2), capped at
   12 h. The rate formula below uses the mean of the *capped* distribution (the cap removes a
   negligible 0.06 % of the mean at the defaults: 39.975 min);
4. arrivals: non-homogeneous Poisson with λ(t) = max(0, C′(t) + C(t)/mean), so that expected
   concurrency follows C(t) (exactly for exponential durations; this log-normal has a
   coefficient of variation ≈ 1.1, close enough that hourly averages track C within a few %).
   C is piecewise linear between grid points, so λ is linear in each step and its positive part
   integrates exactly; each step draws a Poisson count and places the arrivals uniformly inside
   the step (an approximation of the linear density that is invisible at 60 s steps);
5. warm start: the run begins in steady state, not empty. Poisson(C(t0)) sessions are in
   progress at t0 (arrival 0); their remaining durations follow the equilibrium residual law of
   the duration distribution (a length-biased duration times a uniform fraction), which is what
   an observer arriving at a random instant sees in an M/G/∞ system. ``warm_start`` counts them
   and they come first in the arrays.

Times in a plan are seconds since the piece's start (``t0_epoch_s``), so the runner's virtual
clock starts at 0; ``t0_epoch_s`` keeps wall-clock alignment (hour of day, weekday) for
seasonal policies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from autoscaler.domain.errors import ConfigError

if TYPE_CHECKING:  # traces imports this module at run time (session logs become plans)
    from autoscaler.backtest.traces import ConcurrencyTrace

DEFAULT_LOCATION = "us-east-1"
Interpolation = Literal["linear", "pchip"]


def _phi(z: float) -> float:
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


@dataclass(frozen=True, slots=True)
class DurationModel:
    """Log-normal session durations with the given *uncapped* mean, capped at ``cap_s``."""

    mean_s: float = 40 * 60.0
    sigma: float = 0.9
    cap_s: float = 12 * 3600.0

    def __post_init__(self) -> None:
        if not (self.mean_s > 0 and self.sigma > 0 and self.cap_s > 0):
            raise ValueError(f"durations need mean_s, sigma, cap_s > 0, got {self}")

    @property
    def mu(self) -> float:
        return math.log(self.mean_s) - self.sigma**2 / 2.0

    @property
    def capped_mean_s(self) -> float:
        """E[min(X, cap)] for X log-normal(mu, sigma)."""
        lc, s = math.log(self.cap_s), self.sigma
        below = self.mean_s * _phi((lc - self.mu - s * s) / s)
        return below + self.cap_s * (1.0 - _phi((lc - self.mu) / s))

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        return np.minimum(rng.lognormal(self.mu, self.sigma, n), self.cap_s)

    def sample_residual(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        """Remaining durations of sessions in progress at a random instant (steady state)."""
        s, lc = self.sigma, math.log(self.cap_s)
        # Length-biased capped law: an atom at the cap, else log-normal(mu + s², s) below it.
        p_cap = self.cap_s * (1.0 - _phi((lc - self.mu) / s)) / self.capped_mean_s
        at_cap = rng.random(n) < p_cap
        full = rng.lognormal(self.mu + s * s, s, n)
        over = full >= self.cap_s
        while over.any():  # truncation below the cap (rare: a few draws in a million)
            full[over] = rng.lognormal(self.mu + s * s, s, int(over.sum()))
            over = full >= self.cap_s
        full[at_cap] = self.cap_s
        return full * rng.random(n)


def _f64(a: ArrayLike) -> NDArray[np.float64]:
    out = np.ascontiguousarray(a, dtype=np.float64)
    out.flags.writeable = False
    return out


def _i32(a: ArrayLike) -> NDArray[np.int32]:
    out = np.ascontiguousarray(a, dtype=np.int32)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, slots=True, eq=False)
class SessionPlan:
    """The sessions of one run, as read-only numpy arrays sorted by arrival.

    ``arrival_s`` seconds since ``t0_epoch_s``; ``duration_s`` how long each holds its slot once
    placed; ``location`` an index into ``locations``. ``warm_start`` sessions (the first ones,
    arrival 0) were already in progress at t0. ``target`` is the scaled expected concurrency at
    ``k × step_s`` (empty for a session log, where ``step_s`` is 0). ``horizon_s`` is the end
    of the demand window (for a session log, the end of its last session).
    """

    arrival_s: NDArray[np.float64]
    duration_s: NDArray[np.float64]
    location: NDArray[np.int32]
    locations: tuple[str, ...]
    t0_epoch_s: float
    horizon_s: float
    source: str
    seed: int | None = None
    warm_start: int = 0
    peak: float | None = None
    step_s: float = 0.0
    target: NDArray[np.float64] = field(default_factory=lambda: _f64([]))

    @classmethod
    def build(
        cls,
        *,
        arrival_s: ArrayLike,
        duration_s: ArrayLike,
        location: ArrayLike,
        locations: tuple[str, ...],
        t0_epoch_s: float,
        horizon_s: float,
        source: str,
        seed: int | None = None,
        warm_start: int = 0,
        peak: float | None = None,
        step_s: float = 0.0,
        target: ArrayLike = (),
    ) -> SessionPlan:
        """Validate and freeze the arrays (sorted arrivals, equal lengths, valid indices)."""
        arr = _f64(arrival_s)
        dur = _f64(duration_s)
        loc = _i32(location)
        if not (arr.shape == dur.shape == loc.shape) or arr.ndim != 1:
            raise ValueError(f"array shapes differ: {arr.shape}, {dur.shape}, {loc.shape}")
        if arr.size and np.any(np.diff(arr) < 0):
            raise ValueError("arrival_s must be sorted ascending")
        if dur.size and (np.any(dur < 0) or not np.all(np.isfinite(dur))):
            raise ValueError("duration_s must be finite and ≥ 0")
        if loc.size and (loc.min() < 0 or loc.max() >= len(locations)):
            raise ValueError(f"location indices must be in [0, {len(locations)})")
        return cls(
            arrival_s=arr,
            duration_s=dur,
            location=loc,
            locations=locations,
            t0_epoch_s=float(t0_epoch_s),
            horizon_s=float(horizon_s),
            source=source,
            seed=seed,
            warm_start=int(warm_start),
            peak=peak,
            step_s=float(step_s),
            target=_f64(target),
        )

    @property
    def size(self) -> int:
        return int(self.arrival_s.size)

    def first_days(self, days: float) -> SessionPlan:
        """The sessions arriving in the first ``days`` (the window then ends there, or at the
        end of the last session if that is sooner); the rest of the plan as it is."""
        end_s = days * 86400.0
        n = int(self.arrival_s.searchsorted(end_s, side="left"))
        return SessionPlan.build(
            arrival_s=self.arrival_s[:n],
            duration_s=self.duration_s[:n],
            location=self.location[:n],
            locations=self.locations,
            t0_epoch_s=self.t0_epoch_s,
            horizon_s=min(self.horizon_s, end_s),
            source=self.source,
            seed=self.seed,
            warm_start=min(self.warm_start, n),
            peak=self.peak,
            step_s=self.step_s,
            target=self.target[: int(end_s // self.step_s) + 1] if self.step_s else self.target,
        )

    def peak_in_progress(self) -> int:
        """Most sessions in progress at once, over every location, if each started on arrival."""
        return most_in_progress(self.arrival_s, self.duration_s)


def most_in_progress(arrival_s: NDArray[np.float64], duration_s: NDArray[np.float64]) -> int:
    """Most of these sessions in progress at once, if each started on arrival (0 for none)."""
    if arrival_s.size == 0:
        return 0
    starts = np.sort(arrival_s)
    ends = np.sort(arrival_s + duration_s)
    # in progress just after each arrival: arrivals so far − ends at or before it
    live = np.arange(1, starts.size + 1) - np.searchsorted(ends, starts, side="right")
    return int(live.max())


def pchip(
    x: NDArray[np.float64], y: NDArray[np.float64], xq: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Monotone piecewise-cubic Hermite interpolation (Fritsch-Carlson, as scipy's
    ``PchipInterpolator``): never leaves the range of the two neighbouring samples."""
    n = len(x)
    if n < 3:
        return np.interp(xq, x, y)
    h = np.diff(x)
    delta = np.diff(y) / h
    d = np.zeros(n)
    w1 = 2 * h[1:] + h[:-1]
    w2 = h[1:] + 2 * h[:-1]
    same = delta[:-1] * delta[1:] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        harm = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    d[1:-1] = np.where(same, harm, 0.0)

    def edge(h0: float, h1: float, m0: float, m1: float) -> float:
        e = ((2 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
        if np.sign(e) != np.sign(m0):
            return 0.0
        if np.sign(m0) != np.sign(m1) and abs(e) > 3 * abs(m0):
            return 3 * m0
        return float(e)

    d[0] = edge(h[0], h[1], delta[0], delta[1])
    d[-1] = edge(h[-1], h[-2], delta[-1], delta[-2])
    k = np.clip(np.searchsorted(x, xq, side="right") - 1, 0, n - 2)
    hk = h[k]
    t = (xq - x[k]) / hk
    t2, t3 = t * t, t * t * t
    out = (
        (2 * t3 - 3 * t2 + 1) * y[k]
        + (t3 - 2 * t2 + t) * hk * d[k]
        + (-2 * t3 + 3 * t2) * y[k + 1]
        + (t3 - t2) * hk * d[k + 1]
    )
    # Exact in theory; the clip removes floating-point excursions of an ulp or two.
    lo, hi = np.minimum(y[k], y[k + 1]), np.maximum(y[k], y[k + 1])
    return np.asarray(np.clip(out, lo, hi), dtype=np.float64)


def _positive_integral(
    a: NDArray[np.float64], b: NDArray[np.float64], dt: float
) -> NDArray[np.float64]:
    """∫ max(0, λ) over a step where λ goes linearly from ``a`` to ``b``."""
    both = (a >= 0) & (b >= 0)
    pos = np.maximum(a, b)
    neg = np.minimum(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        tri = np.where(pos > 0, 0.5 * dt * pos * pos / (pos - neg), 0.0)
    return np.where(both, 0.5 * dt * (a + b), np.where(pos > 0, tri, 0.0))


@dataclass(frozen=True, slots=True)
class _Piece:
    t0: float  # epoch seconds of grid point 0
    grid: NDArray[np.float64]  # unscaled C at t0 + k·step


def _pieces(
    trace: ConcurrencyTrace,
    *,
    step_s: float,
    w0: float,
    w1: float,
    max_interp_gap_s: float,
    min_segment_s: float,
    method: Interpolation,
) -> list[_Piece]:
    t, v = np.asarray(trace.times), np.asarray(trace.values)
    cuts = np.flatnonzero(np.diff(t) > max_interp_gap_s)
    starts = np.concatenate(([0], cuts + 1))
    ends = np.concatenate((cuts, [len(t) - 1]))
    out = []
    for a, b in zip(starts, ends, strict=True):
        lo, hi = max(t[a], w0), min(t[b], w1)
        if hi - lo < max(min_segment_s, step_s):
            continue
        k = math.floor((hi - lo) / step_s + 1e-9)
        q = lo + step_s * np.arange(k + 1)
        xs, ys = t[a : b + 1], v[a : b + 1]
        grid = pchip(xs, ys, q) if method == "pchip" else np.interp(q, xs, ys)
        out.append(_Piece(t0=float(lo), grid=np.maximum(grid, 0.0)))
    return out


def _weights(locations: Mapping[str, float] | None) -> tuple[tuple[str, ...], NDArray[np.float64]]:
    if locations is None:
        return (DEFAULT_LOCATION,), np.ones(1)
    names = tuple(locations)
    w = np.array([locations[n] for n in names], dtype=np.float64)
    if not names or np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"location weights must be ≥ 0 with a positive sum, got {dict(locations)}")
    return names, w / w.sum()


def _draw(
    piece: _Piece,
    scale: float,
    *,
    step_s: float,
    durations: DurationModel,
    names: tuple[str, ...],
    weights: NDArray[np.float64],
    rng: np.random.Generator,
    source: str,
    seed: int | None,
    peak: float,
) -> SessionPlan:
    c = piece.grid * scale
    m = durations.capped_mean_s
    slope = np.diff(c) / step_s
    mass = _positive_integral(slope + c[:-1] / m, slope + c[1:] / m, step_s)
    n_warm = int(rng.poisson(c[0]))
    warm = durations.sample_residual(rng, n_warm)
    counts = rng.poisson(mass)
    n_new = int(counts.sum())
    starts = np.repeat(step_s * np.arange(len(counts), dtype=np.float64), counts)
    arrivals = np.sort(starts + rng.uniform(0.0, step_s, n_new))
    fresh = durations.sample(rng, n_new)
    n = n_warm + n_new
    loc = (
        np.zeros(n, dtype=np.int32)
        if len(names) == 1
        else rng.choice(len(names), size=n, p=weights).astype(np.int32)
    )
    return SessionPlan.build(
        arrival_s=np.concatenate((np.zeros(n_warm), arrivals)),
        duration_s=np.concatenate((warm, fresh)),
        location=loc,
        locations=names,
        t0_epoch_s=piece.t0,
        horizon_s=step_s * (len(c) - 1),
        source=source,
        seed=seed,
        warm_start=n_warm,
        peak=peak,
        step_s=step_s,
        target=c,
    )


def _window(
    trace: ConcurrencyTrace, days: float | None, start_offset_s: float
) -> tuple[float, float]:
    if start_offset_s < 0 or (days is not None and days <= 0):
        raise ValueError(f"need start_offset_s ≥ 0 and days > 0, got {start_offset_s}, {days}")
    w0 = trace.start + start_offset_s
    w1 = trace.end if days is None else min(trace.end, w0 + days * 86400.0)
    if w0 >= trace.end:
        raise ConfigError(
            trace.name,
            [
                f"series {trace.series!r}: start offset {start_offset_s:.0f} s is past the end "
                f"of the trace ({trace.duration_s:.0f} s long)"
            ],
        )
    return w0, w1


def plan_segments(
    trace: ConcurrencyTrace,
    *,
    peak: float | None,
    seed: int,
    step_s: float = 60.0,
    days: float | None = None,
    start_offset_s: float = 0.0,
    max_interp_gap_s: float = 3 * 3600.0,
    min_segment_s: float = 3600.0,
    method: Interpolation = "linear",
    durations: DurationModel | None = None,
    locations: Mapping[str, float] | None = None,
) -> list[SessionPlan]:
    """One plan per hole-free piece of the window [start + offset, + days] (pieces shorter
    than ``min_segment_s`` are dropped). ``locations`` maps names to demand weights (each
    session goes to one location at random, so each location gets a Poisson process following
    its share of C); default one location, ``DEFAULT_LOCATION``. Same seed → same plans.
    ``peak`` None replays the series at its own scale (the window's peak, as recorded)."""
    if (peak is not None and peak <= 0) or step_s <= 0 or max_interp_gap_s <= 0:
        raise ValueError(f"need peak, step_s, max_interp_gap_s > 0: {peak}, {step_s}")
    model = durations or DurationModel()
    names, weights = _weights(locations)
    w0, w1 = _window(trace, days, start_offset_s)
    pieces = _pieces(
        trace,
        step_s=step_s,
        w0=w0,
        w1=w1,
        max_interp_gap_s=max_interp_gap_s,
        min_segment_s=min_segment_s,
        method=method,
    )
    src = f"{trace.name}:{trace.series}"
    if not pieces:
        raise ConfigError(
            src,
            [
                f"series {trace.series!r}: no stretch of at least {min_segment_s / 3600:g} h "
                f"without a hole longer than {max_interp_gap_s / 3600:g} h in the window"
            ],
        )
    top = max(float(p.grid.max()) for p in pieces)
    if top <= 0:
        raise ConfigError(src, [f"series {trace.series!r} is zero everywhere in the window"])
    rng = np.random.default_rng(seed)
    scaled_to = top if peak is None else peak
    return [
        _draw(
            p,
            scaled_to / top,
            step_s=step_s,
            durations=model,
            names=names,
            weights=weights,
            rng=rng,
            source=src,
            seed=seed,
            peak=scaled_to,
        )
        for p in pieces
    ]


def plan_sessions(
    trace: ConcurrencyTrace,
    *,
    peak: float | None,
    seed: int,
    step_s: float = 60.0,
    days: float | None = None,
    start_offset_s: float = 0.0,
    max_interp_gap_s: float = 3 * 3600.0,
    method: Interpolation = "linear",
    durations: DurationModel | None = None,
    locations: Mapping[str, float] | None = None,
) -> SessionPlan:
    """The sessions of a window with no long hole (see :func:`plan_segments` for the rest).

    A hole longer than ``max_interp_gap_s`` inside the window is a ``ConfigError`` naming it:
    pick a hole-free window (``traces.longest_stretch``) or plan the pieces separately."""
    w0, w1 = _window(trace, days, start_offset_s)
    t = np.asarray(trace.times)
    i = np.flatnonzero(np.diff(t) > max_interp_gap_s)
    holes = [(float(t[k]), float(t[k + 1])) for k in i if t[k + 1] > w0 and t[k] < w1]
    if holes:
        shown = ", ".join(f"{a:.0f}..{b:.0f} ({(b - a) / 3600:.1f} h)" for a, b in holes[:5])
        raise ConfigError(
            f"{trace.name}:{trace.series}",
            [
                f"series {trace.series!r}: {len(holes)} hole(s) longer than "
                f"{max_interp_gap_s / 3600:g} h in the window (epoch s: {shown}); use "
                "longest_stretch() or plan_segments()"
            ],
        )
    (plan,) = plan_segments(
        trace,
        peak=peak,
        seed=seed,
        step_s=step_s,
        days=days,
        start_offset_s=start_offset_s,
        max_interp_gap_s=max_interp_gap_s,
        min_segment_s=step_s,
        method=method,
        durations=durations,
        locations=locations,
    )
    return plan


def occupancy(plan: SessionPlan, times_s: ArrayLike) -> NDArray[np.int64]:
    """Sessions in progress at each of ``times_s`` (arrival ≤ t < arrival + duration), if every
    session started on arrival: what the plan asks of capacity."""
    q = np.asarray(times_s, dtype=np.float64)
    started = np.searchsorted(plan.arrival_s, q, side="right")
    ends = np.sort(plan.arrival_s + plan.duration_s)
    ended = np.searchsorted(ends, q, side="right")
    return np.asarray(started - ended, dtype=np.int64)
