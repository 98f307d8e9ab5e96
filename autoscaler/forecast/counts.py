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
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from autoscaler.domain.models import FloatArray

# Memo sizes: a policy asks for a handful of supports, dispersions and departure means per
# hour, so these stay small and hit on most calls (a backtest asks once a simulated minute).
_SUPPORT_MEMO = 512
_PMF_MEMO = 1024


def _readonly(a: FloatArray) -> FloatArray:
    a.flags.writeable = False
    return a


@lru_cache(maxsize=_SUPPORT_MEMO)
def _support(k_max: int) -> tuple[FloatArray, FloatArray]:
    """``k = 0 … k_max`` and ``log k!`` on it (read-only: shared by every caller)."""
    k = np.arange(k_max + 1, dtype=np.float64)
    lf = np.zeros(k_max + 1)
    if k_max:
        lf[1:] = np.cumsum(np.log(np.arange(1, k_max + 1, dtype=np.float64)))
    return _readonly(k), _readonly(lf)


@lru_cache(maxsize=_SUPPORT_MEMO)
def _log_rising(dispersion: float, k_max: int) -> FloatArray:
    """``log Γ(k + r) − log Γ(r) = Σ_{j<k} log(j + r)`` for ``r = 1/dispersion``, k ≤ k_max."""
    k, _ = _support(k_max)
    r = 1.0 / dispersion
    return _readonly(np.concatenate(([0.0], np.cumsum(np.log(k[:-1] + r)))))


@lru_cache(maxsize=_SUPPORT_MEMO)
def _values(n: int, offset: int) -> FloatArray:
    """``offset + i`` for ``i < n`` (read-only: shared by every NetArrivals of that support)."""
    return _readonly(np.arange(n, dtype=np.float64) + offset)


@lru_cache(maxsize=_PMF_MEMO)
def _pmf(mean: float, dispersion: float) -> FloatArray:
    """``arrivals_pmf`` memoised by its exact arguments (read-only)."""
    if mean == 0.0:
        return _readonly(np.ones(1))
    var = mean + max(dispersion, 0.0) * mean * mean
    k_max = int(mean + 12.0 * math.sqrt(var) + 20)
    k, lf = _support(k_max)
    # The same operations in the same order as ``exp(logp − max) / sum``, written in place
    # (one array instead of five temporaries; the values are the same bits).
    if dispersion <= 1e-9:
        logp = k * math.log(mean)
        logp -= mean
        logp -= lf
    else:
        r = 1.0 / dispersion
        lg = _log_rising(dispersion, k_max)
        logp = lg - lf
        logp += r * math.log(r / (r + mean))
        logp += k * math.log(mean / (r + mean))
    logp -= logp.max()
    np.exp(logp, out=logp)
    logp /= logp.sum()
    return _readonly(logp)


def arrivals_pmf(mean: float, dispersion: float) -> FloatArray:
    """pmf of arrivals over a window: Poisson(mean), or negative binomial with variance
    ``mean + dispersion·mean²`` when ``dispersion`` > 0. Support covers ≥ 1 − 1e-12.

    Memoised by the exact arguments (no rounding: a hit is the array recomputing gives), with
    the support, ``log k!`` and the rising factorial shared between calls; a copy is returned
    so callers may write to it."""
    return _pmf(max(float(mean), 0.0), float(dispersion)).copy()


@dataclass(frozen=True, slots=True)
class NetArrivals:
    """Distribution of ``arrivals − departures`` over a window, on support ``offset + i``."""

    pmf: FloatArray
    offset: int  # value of pmf[0] (≤ 0)
    mean_arrivals: float
    # offset + i for every i of the support (the shortfalls' common term; read-only, shared)
    values: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", _values(int(self.pmf.shape[0]), int(self.offset)))

    @staticmethod
    def of(mean_arrivals: float, dispersion: float, mean_departures: float) -> NetArrivals:
        pa = _pmf(max(float(mean_arrivals), 0.0), float(dispersion))
        pd = _pmf(max(float(mean_departures), 0.0), 0.0)
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
        return float((np.maximum(self.values - buffer, 0.0) * self.pmf).sum())

    def shortfalls(self, buffers: Sequence[int] | npt.NDArray[np.int64]) -> FloatArray:
        """``shortfall(b)`` for every b of ``buffers`` (a range, a list, an int array) in one
        pass, each bit for bit what ``shortfall`` returns: the same terms, each row summed in
        the same order. For callers that scan many buffers (``slo``'s host-rounded buffer)."""
        b = np.asarray(buffers, dtype=np.float64).reshape(-1, 1)
        terms = np.maximum(self.values - b, 0.0)
        terms *= self.pmf
        return np.asarray(terms.sum(axis=1), dtype=np.float64)

    def buffer_for_miss_share(self, miss_share: float) -> int:
        """Smallest buffer B ≥ 0 with E[(N − B)⁺] ≤ miss_share · E[arrivals]."""
        if self.mean_arrivals <= 0.0:
            return 0
        values = self.values
        # E[(N − B)⁺] for every candidate B on the support, via tail sums.
        tail_p = self.pmf[::-1].cumsum()[::-1]  # P(N ≥ v)
        tail_vp = (values * self.pmf)[::-1].cumsum()[::-1]  # E[N; N ≥ v]
        # For B = v − 1: E[(N − B)⁺] = E[N; N ≥ v] − B · P(N ≥ v).
        b = values - 1.0
        short = tail_vp - b * tail_p
        # B ≥ 0 from index 1 − offset on (values are offset + i); first B meeting the share
        i0 = max(1 - self.offset, 0)
        ok = short[i0:] <= miss_share * self.mean_arrivals
        first = int(ok.argmax()) if ok.shape[0] else 0
        if ok.shape[0] == 0 or not ok[first]:
            return int(values[-1])
        return int(b[i0 + first])

    def cdf_at(self, buffer: int) -> float:
        """P(N ≤ buffer): the window quantile a buffer achieves."""
        i = buffer - self.offset
        if i < 0:
            return 0.0
        return float(self.pmf[: i + 1].sum())
