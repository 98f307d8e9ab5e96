"""Synthetic location histories with a known truth, for tests, benchmarks and the demo.

Demand follows a daily wave (optionally a weekly one and a level shift); every row draws
Poisson noise around it. Because the truth is known, a forecaster can be checked against it
(shape recovered, quantile coverage, adaptation after a shift) without real traces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autoscaler.domain.models import FloatArray, LocationHistory


@dataclass(frozen=True, slots=True)
class Diurnal:
    """Expected concurrency ``peak × (1 + amplitude·sin(2π(tod − phase))) / (1 + amplitude)``,
    times ``weekend`` on Saturdays and Sundays and ``shift_factor`` from ``shift_at``."""

    peak: float = 100.0
    amplitude: float = 0.6
    phase: float = 0.3  # fraction of a day
    weekend: float = 1.0
    shift_at: float | None = None
    shift_factor: float = 1.0
    mean_duration_s: float = 2400.0

    def concurrency(self, t: FloatArray) -> FloatArray:
        tod = (t % 86400.0) / 86400.0
        c = self.peak * (1 + self.amplitude * np.sin(2 * np.pi * (tod - self.phase)))
        c = c / (1 + self.amplitude)
        dow = ((t // 86400.0) + 3) % 7  # epoch day 0 was a Thursday (dow 3, Monday = 0)
        c = np.where(dow >= 5, c * self.weekend, c)
        if self.shift_at is not None:
            c = np.where(t >= self.shift_at, c * self.shift_factor, c)
        return np.asarray(c, dtype=np.float64)

    def arrival_rate(self, t: FloatArray) -> FloatArray:
        """λ = C′ + C / D (benchmark.md), per second."""
        c = self.concurrency(t)
        dc = (self.concurrency(t + 30.0) - self.concurrency(t - 30.0)) / 60.0
        return np.asarray(np.maximum(dc + c / self.mean_duration_s, 0.0), dtype=np.float64)


def history(
    truth: Diurnal, start: float, end: float, step_s: float = 60.0, seed: int = 0
) -> LocationHistory:
    """Rows every ``step_s`` in ``[start, end)``: in-use ~ Poisson(C), arrivals ~ Poisson(λ·dt),
    departures ~ Poisson(C/D·dt); allocated = in-use + 2 idle; all complete."""
    rng = np.random.default_rng(seed)
    at = np.arange(start, end, step_s, dtype=np.float64)
    c = truth.concurrency(at)
    in_use = rng.poisson(c).astype(np.float64)
    arrivals = rng.poisson(truth.arrival_rate(at) * step_s).astype(np.float64)
    departures = rng.poisson(c / truth.mean_duration_s * step_s).astype(np.float64)
    zero = np.zeros_like(at)
    return LocationHistory(
        at=at,
        in_use=in_use,
        waiting=zero,
        arrivals=arrivals,
        placement_failures=zero.copy(),
        departures=departures,
        allocated=in_use + 2.0,
        idle=zero + 2.0,
        complete=np.ones(at.shape, dtype=np.bool_),
    )
