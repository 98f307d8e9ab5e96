"""How many sessions arrive (net of departures) while the service refills its idle buffer.

Why a distribution, not a mean: the idle buffer B is consumed by arrivals and refilled by new
hosts that take the provisioning delay W to become usable; sessions that end meanwhile free slots
at once. A session starts instantly unless ``arrivals(W) − departures(W) > B``. Arrivals are
Poisson with a rate that is itself uncertain (gamma-mixed: negative binomial with relative rate
variance φ), departures are Poisson; so the net count is their difference, computed here exactly
on an integer support (log-space pmfs, one convolution), without scipy.

The per-session SLO maps to the buffer through the expected shortfall: of the N sessions that
arrive in a window, ``(N − B)⁺`` find no idle slot, so the share that starts instantly is
``1 − E[(N − B)⁺] / E[N_arrivals]``. ``buffer_for_miss_share`` returns the smallest B meeting a
miss-share target; ``count_quantile`` is the plain window quantile for users who prefer one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from autoscaler.domain.models import FloatArray


def _log_factorials(k_max: int) -> FloatArray:
    out = np.zeros(k_max + 1)
    if k_max:
        out[1:] = np.cumsum(np.log(np.arange(1, k_max + 1, dtype=np.float64)))
    return out


def arrivals_pmf(mean: float, dispersion: float) -> FloatArray:
    """pmf of arrivals over a window: Poisson(mean), or negative binomial with variance
    ``mean + dispersion·mean²`` when ``dispersion`` > 0. Support covers ≥ 1 − 1e-12."""
    mean = max(float(mean), 0.0)
    if mean == 0.0:
        return np.ones(1)
    var = mean + max(dispersion, 0.0) * mean * mean
    k_max = int(mean + 12.0 * math.sqrt(var) + 20)
    k = np.arange(k_max + 1, dtype=np.float64)
    lf = _log_factorials(k_max)
    if dispersion <= 1e-9:
        logp = k * math.log(mean) - mean - lf
    else:
        r = 1.0 / dispersion
        # log Γ(k + r) − log Γ(r) = Σ_{j<k} log(j + r)
        lg = np.concatenate(([0.0], np.cumsum(np.log(k[:-1] + r))))
        logp = lg - lf + r * math.log(r / (r + mean)) + k * math.log(mean / (r + mean))
    p = np.exp(logp - logp.max())
    return np.asarray(p / p.sum(), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class NetArrivals:
    """Distribution of ``arrivals − departures`` over a window, on support ``offset + i``."""

    pmf: FloatArray
    offset: int  # value of pmf[0] (≤ 0)
    mean_arrivals: float

    @staticmethod
    def of(mean_arrivals: float, dispersion: float, mean_departures: float) -> NetArrivals:
        pa = arrivals_pmf(mean_arrivals, dispersion)
        pd = arrivals_pmf(mean_departures, 0.0)
        # N = A − D: convolve A's pmf with D's reversed; support starts at −len(pd)+1.
        pmf = np.convolve(pa, pd[::-1])
        return NetArrivals(
            pmf=pmf, offset=-(pd.shape[0] - 1), mean_arrivals=max(mean_arrivals, 0.0)
        )

    def quantile(self, q: float) -> int:
        """Smallest n with P(N ≤ n) ≥ q."""
        cdf = np.cumsum(self.pmf)
        i = int(np.searchsorted(cdf, q - 1e-12))
        return int(min(i, self.pmf.shape[0] - 1) + self.offset)

    def shortfall(self, buffer: int) -> float:
        """E[(N − buffer)⁺]: sessions of the window that find no idle slot."""
        values = np.arange(self.pmf.shape[0], dtype=np.float64) + self.offset
        return float((np.maximum(values - buffer, 0.0) * self.pmf).sum())

    def buffer_for_miss_share(self, miss_share: float) -> int:
        """Smallest buffer B ≥ 0 with E[(N − B)⁺] ≤ miss_share · E[arrivals]."""
        if self.mean_arrivals <= 0.0:
            return 0
        values = np.arange(self.pmf.shape[0], dtype=np.float64) + self.offset
        # E[(N − B)⁺] for every candidate B on the support, via tail sums.
        tail_p = np.cumsum(self.pmf[::-1])[::-1]  # P(N ≥ v)
        tail_vp = np.cumsum((values * self.pmf)[::-1])[::-1]  # E[N; N ≥ v]
        # For B = v − 1: E[(N − B)⁺] = E[N; N ≥ v] − B · P(N ≥ v).
        b = values - 1.0
        short = tail_vp - b * tail_p
        ok = np.flatnonzero((short <= miss_share * self.mean_arrivals) & (b >= 0))
        if ok.size == 0:
            return int(values[-1])
        return int(b[ok[0]])

    def cdf_at(self, buffer: int) -> float:
        """P(N ≤ buffer): the window quantile a buffer achieves."""
        i = buffer - self.offset
        if i < 0:
            return 0.0
        return float(self.pmf[: i + 1].sum())
