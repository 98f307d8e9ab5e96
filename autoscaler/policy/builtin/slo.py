"""The recommended policy: buy the idle buffer the SLO needs, hour by hour, and nothing more.

Why this shape: GameLift Streams (current model) keeps ``TargetIdle`` slots free by itself and
refills the buffer whenever a session takes a slot; a refill takes the provisioning delay W. So
the buffer only has to absorb what arrives *while it refills*, net of the slots that sessions
ending meanwhile hand back. That count is random (Poisson arrivals at a forecast rate that is
itself uncertain, Poisson departures), and its distribution gives the smallest buffer that meets
the SLO, at the hour's arrival rate rather than the day's peak. Capacity that sits idle costs
the same as capacity in use, so the always-on floor stays low, except ahead of a forecast ramp:
there it is raised to the forecast concurrency at ``now + L + prewarm`` so the ramp's hosts are
provisioned before players arrive.
Maximum is a guard above the forecast, never a target, and never below what the buffer needs.

From the per-session SLO to the buffer: of the N sessions arriving in a refill window, the
``(N − B)⁺`` beyond the buffer find no idle slot, so the instant share is
``1 − E[(N − B)⁺] / E[arrivals]``. The buffer is the smallest B for which that miss share is
at most ``missBudgetShare × (1 − slo.instant)``. The model ignores the slots of ended sessions,
which the service keeps for 5 minutes before releasing emptied hosts, so the real miss share is
below the modelled one on all but steep ramps; forecast error, delay tails and decision latency
push the other way. Half the budget is the code's default; the shipped file spends all of it.
With ``quantile`` set, B is instead that plain quantile of the window's net arrivals (0.995
is a conservative choice: a window quantile bounds misses per window, not per session). The
reason string reports both.

Legacy groups have no autonomous refill: always-on must carry the forecast plus a buffer for a
whole lead time L (decision interval + provisioning), and on-demand is the burst headroom.

Refinements, each off in the code's defaults (which stay the conservative pre-tuning ones, so
existing policy files keep their decisions) and on in the shipped ``policies/default.yaml``,
where they were tuned against hindsight-tuned baselines on real traces (``bench/
quality_tuning.py``) and checked on held-out series, seeds and windows:

- ``missBudgetSkew``: the SLO counts sessions over the whole trace, so the day's miss budget is
  spent where a slot of buffer averts the most misses (busy hours get a smaller share, quiet
  ones a larger), at the same arrival-weighted share of the day (``budget_skew``).
- ``partialHostCredit``: the service provisions whole hosts for in-use + TargetIdle, so the
  partly used host's free slots are idle capacity already; the buffer is sized with them
  instead of being rounded up to whole hosts on top of them (``host_buffer_for_miss_share``;
  a legacy group's always-on is its idle capacity, so there the free slots at the decision are
  known exactly: always-on is rounded up to whole hosts from demand + the buffer in slots).
- ``maxDispersion``: with little history the forecaster's arrival-rate doubt (±50 %) would buy
  buffer at busy locations for doubt rather than for Poisson noise.
- ``legacyMissBudgetShare``: a legacy miss while raised always-on hosts provision waits with
  the 75 s always-on timeout, so on Windows it becomes a failure (ten times scarcer budget).
- ``releaseDelaySeconds`` and ``legacyDepartureCredit``: the slot of a session that ends
  during a refill window is idle capacity only while the service still holds its emptied host
  (5 minutes), so where the window is longer (Windows, 7 min) the departure credit is scaled
  by delay / window; legacy groups, whose always-on hosts a departure frees for good until the
  next decision lowers always-on, take their own credit (the shipped file trusts it fully).
- ``legacyFailureShare`` and ``legacyRefillFactor``: a legacy session that misses while
  raised always-on hosts provision waits with the 75 s always-on timeout, so the miss share is
  capped at ``slo.failed / P(the awaited host needs > 75 s more)`` (binding on Windows, where
  nearly every such miss fails); and the buffer's window is one interval plus the mean
  provisioning delay, since the buffer is sized for the share of sessions that miss, not for
  the tail delay.
- ``rateFloorSeconds``: the buffer is never sized for a lower arrival rate than a one-sigma
  lower bound of what arrived lately: a profile learnt from a day or two can forecast a dip
  that does not come (``observed_arrival_rate``).
- ``feedbackWindowSeconds``: the miss budget is scaled by how the sampled late starts and
  placement failures of the last window compare with the SLO's budget (``measured_misses``,
  ``feedback_factor``): the model above is cautious on the benchmark's service, and the real
  service may refill slower than it assumes.
- ``refillFactor``: a refill window of a multiple of the provisioning median rather than its
  p95. At the mean (1.06) it measured too lean on real traces (Windows at peak 40); the shipped
  policy uses 1.3, which stopped the over-buying at Windows peak 400 the p95 caused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autoscaler.domain.classes import round_down_to_tenancy, round_up_to_tenancy
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    FloatArray,
    LocationHistory,
    Recommendation,
)
from autoscaler.forecast import Forecast, NetArrivals, SeasonalForecaster
from autoscaler.policy.plugin import PROVISIONING_P95_FACTOR, PolicyContext

_EPSILON = 1e-9
_UPPER_Q = 0.99  # concurrency quantile that Maximum must stay above
_DAY_GRID_S = tuple(900.0 * k for k in range(1, 97))  # the next day, every 15 min
_DAY_GRID = np.array(_DAY_GRID_S)  # built once (a np.array of 96 floats costs ~5 µs)
_SKEW_CLAMP = 4.0  # the day-budget skew never moves the hour's share by more than this factor
_MAX_MISS = 0.5  # a miss-share target above this is no longer a buffer
_FEEDBACK_MIN_FACTOR = 0.25  # the feedback's default floor on the miss budget's factor
_Z95 = 1.6449  # standard normal 95th percentile
# A session waiting for always-on capacity fails after this (gameliftstreams.md).
ALWAYS_ON_PLACEMENT_TIMEOUT_S = 75.0


def budget_skew(rate_now: float, day_rates: FloatArray, skew: float) -> float:
    """Factor on the hour's miss share that spreads the day's miss budget by cost.

    A slot of buffer averts more misses where arrivals are frequent, so the cheapest split of a
    fixed share of the day's sessions gives busy hours a smaller miss share and quiet hours a
    larger one. For a Poisson buffer the optimum is close to a share ∝ λ^(−1/2); with ``skew``
    α the share is scaled by ``λ_now^(−α) · Σλ / Σλ^(1−α)`` over the day's forecast rates,
    which keeps the arrival-weighted share of the day unchanged. Clamped to [1/4, 4]; 1 when
    there is nothing to spread (α 0, no forecast rate)."""
    if skew <= 0.0 or rate_now <= 0.0:
        return 1.0
    rates = np.maximum(np.asarray(day_rates, dtype=np.float64), 0.0)
    total = float(rates.sum())
    if total <= 0.0:
        return 1.0
    weighted = float(np.power(rates[rates > 0.0], 1.0 - skew).sum())
    factor = math.pow(rate_now, -skew) * total / weighted
    return min(max(factor, 1.0 / _SKEW_CLAMP), _SKEW_CLAMP)


class SloParams(BaseModel):
    """``params`` of an ``slo`` policy file (camelCase in YAML)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    quantile: float | None = Field(
        default=None,
        gt=0.5,
        lt=1.0,
        description="Size the buffer at this quantile of net arrivals per refill window; "
        "None: derive it from the policy's SLO through the expected per-session miss share.",
    )
    miss_budget_share: float = Field(
        default=0.5,
        gt=0.0,
        le=4.0,
        alias="missBudgetShare",
        description="Share of the SLO's miss budget (1 − instant) the buffer's model may "
        "spend. The model counts every arrival of a refill window against a buffer that was "
        "full at its start, while the service also keeps the slots of ended sessions for 5 "
        "minutes, so on smooth demand the real miss share is a fraction of the modelled one; "
        "above 1 trusts that (the shipped value is validated on real traces).",
    )
    legacy_miss_budget_share: float | None = Field(
        default=None,
        gt=0.0,
        le=4.0,
        alias="legacyMissBudgetShare",
        description="missBudgetShare for legacy groups; None: the same. A legacy session "
        "that finds no idle slot while raised always-on hosts are still provisioning waits "
        "with the 75 s always-on placement timeout, so where provisioning is slower than that "
        "(Windows) its misses become failures, which the SLO allows ten times fewer of.",
    )
    min_idle: int = Field(
        default=1,
        ge=0,
        alias="minIdle",
        description="Smallest target-idle buffer, slots (rounded up to the tenancy).",
    )
    always_on_floor: int = Field(
        default=0,
        ge=0,
        alias="alwaysOnFloor",
        description="Always-on capacity when no ramp is forecast, slots.",
    )
    prewarm_seconds: float = Field(
        default=600.0,
        ge=0.0,
        alias="prewarmSeconds",
        description="How far beyond the lead time a forecast rise raises the floor, seconds.",
    )
    maximum_margin: float = Field(
        default=0.5,
        ge=0.0,
        alias="maximumMargin",
        description="Maximum ≥ (1 + this) × the 99 % forecast concurrency (and the buffer "
        "above today's demand plus this share of it).",
    )
    maximum_slack: float | None = Field(
        default=None,
        gt=0.0,
        le=2.0,
        alias="maximumSlack",
        description="Hysteresis on Maximum: keep the current Maximum while it is between what "
        "is needed and (1 + this) × that, else move to the middle of that band; None: follow "
        "the need every tick (an UpdateStreamGroup whenever it moves).",
    )
    lead_time_seconds: float | None = Field(
        default=None,
        gt=0.0,
        alias="leadTimeSeconds",
        description="Decision → usable capacity, seconds; None: the stream class's "
        "provisioning p95 plus one interval.",
    )
    refill_seconds: float | None = Field(
        default=None,
        gt=0.0,
        alias="refillSeconds",
        description="Time the service takes to refill one idle slot, seconds; None: lead "
        "time minus one interval (the provisioning p95).",
    )
    departure_credit: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        alias="departureCredit",
        description="Share of the expected departures during a refill counted as refilling "
        "the buffer (0: ignore departures, 1: trust them fully).",
    )
    legacy_departure_credit: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        alias="legacyDepartureCredit",
        description="departureCredit for legacy groups; None: the same.",
    )
    legacy_refill_factor: float | None = Field(
        default=None,
        gt=0.0,
        alias="legacyRefillFactor",
        description="Legacy groups: the buffer's window is one interval plus this × the "
        "provisioning median (1.06: its mean), instead of the whole lead time (interval + "
        "provisioning p95); None: the lead time (or refillFactor when that is set).",
    )
    legacy_failure_share: float | None = Field(
        default=None,
        gt=0.0,
        alias="legacyFailureShare",
        description="Legacy groups: a session that misses while raised always-on hosts "
        "provision waits with the 75 s always-on timeout and fails if they take longer, so "
        "the miss share is also capped at this × slo.failed / P(the awaited host needs more "
        "than 75 s more), that host having been asked for half an interval earlier (the "
        "class's log-normal delay; ≈ 0.99 on Windows, ≈ 0.06 on Linux). None: no cap.",
    )
    release_delay_seconds: float | None = Field(
        default=None,
        gt=0.0,
        alias="releaseDelaySeconds",
        description="The service keeps an emptied host this long before releasing it (5 min). "
        "Set, a departure counts only if its slot is still held when the refill window ends: "
        "the credit is scaled by min(1, this / window), which matters where provisioning is "
        "slower than the delay (Windows). None: no scaling.",
    )
    refill_factor: float | None = Field(
        default=None,
        gt=0.0,
        alias="refillFactor",
        description="Refill window = this × the provisioning median (1.06: the log-normal "
        "mean, what a Poisson stream of refills has in flight on average); None: the "
        "provisioning p95. Ignored when refillSeconds is set.",
    )
    max_dispersion: float | None = Field(
        default=None,
        ge=0.0,
        alias="maxDispersion",
        description="Cap on the forecast's arrival-rate over-dispersion φ (relative variance "
        "of the rate). With little history the forecaster assumes ±50 % (φ 0.25), which at a "
        "busy location sizes the buffer for the rate's doubt rather than for Poisson noise; "
        "None: no cap.",
    )
    partial_host_credit: bool = Field(
        default=False,
        alias="partialHostCredit",
        description="With hosts of several slots, count the free slots of partly used hosts "
        "(on average (tenancy − 1) / 2 beyond the target; legacy groups: exactly those of the "
        "partly used host at the decision) when sizing the buffer, instead of rounding the "
        "buffer itself up to whole hosts on top of them.",
    )
    rate_floor_seconds: float | None = Field(
        default=None,
        gt=0.0,
        alias="rateFloorSeconds",
        description="Never size the buffer for fewer arrivals than arrived over this many "
        "recent seconds (the observed rate floors the forecast one): a seasonal profile "
        "learnt from one or two days can forecast a fall that does not come, and a buffer cut "
        "for it fails the players arriving meanwhile; a real fall lowers the floor within "
        "this window. None: the forecast alone.",
    )
    feedback_window_seconds: float | None = Field(
        default=None,
        gt=0.0,
        alias="feedbackWindowSeconds",
        description="Close the loop on the measured service: over this many recent seconds, "
        "the share of sessions that did not start at once (late starts and placement "
        "failures, as sampled) is compared with feedbackTarget × the SLO's miss budget, and "
        "the budget the buffer is sized for is scaled by (target / measured)^feedbackGain, "
        "within [feedbackMinFactor, feedbackMaxFactor]. The measurement starts from a prior "
        "at the target worth a few misses, so thin evidence moves little, and it loosens "
        "only once the measured rows account for 90 % of the window (misses come in "
        "bursts); it tightens at once. Legacy "
        "groups' failure cap is scaled the same way by measured failures. None: open loop.",
    )
    feedback_target: float = Field(
        default=0.8,
        gt=0.0,
        le=1.0,
        alias="feedbackTarget",
        description="Share of the SLO's miss (and failure) budget the feedback aims the "
        "measured misses at; the rest is margin for what a window cannot see coming.",
    )
    feedback_integral_target: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        alias="feedbackIntegralTarget",
        description="Share of the SLO's miss budget the integral loop (feedbackIntegralDays) "
        "aims the measured misses at, and against which the stateless factor then tightens "
        "on a bad day; a legacy group's failure cap keeps feedbackTarget. Several pooled "
        "days measure the share far more precisely than one, so the integral can aim closer "
        "to the SLO than the day-long loop, which alone acts until two recorded days have "
        "completed. None: feedbackTarget.",
    )
    feedback_gain: float = Field(
        default=0.5,
        gt=0.0,
        le=4.0,
        alias="feedbackGain",
        description="Exponent of the feedback factor. The loop is stateless (the factor is "
        "recomputed from the history each tick), so it settles where factor = (target / "
        "measured)^gain, short of the target; and the buffer's miss share responds weakly to "
        "its budget (a Poisson tail). A gain above 1 settles closer to the target; below 1 "
        "moves in smaller steps. With feedbackIntegralDays the stateless factor only "
        "tightens.",
    )
    feedback_integral_days: int | None = Field(
        default=None,
        ge=1,
        le=14,
        alias="feedbackIntegralDays",
        description="Make the loop integral, so the measured misses settle on the target "
        "instead of short of it: the completed UTC days of the last this many that were "
        "measured and had the miss budget in force recorded for 90 % of each, pooled, give "
        "the budget that would have met the target over them (the budget in force, "
        "time-weighted geometric mean, × target / their measured share), and the buffer is "
        "sized for it (within [feedbackMinFactor, feedbackMaxFactor] × the open-loop "
        "budget), times the stateless factor where that tightens; a legacy group's failure "
        "cap likewise from measured failures. The budget "
        "in force (what sized the buffer, whichever of the budget and the cap bound) is what "
        "the controller recorded with the history, so restarts and policy edits keep it. "
        "Until two recorded days have completed (a new deployment, dry runs, a standby "
        "taking over): the stateless loop alone. None: stateless only.",
    )
    feedback_max_factor: float = Field(
        default=2.0,
        ge=1.0,
        le=8.0,
        alias="feedbackMaxFactor",
        description="The feedback never spends more than this × the open-loop miss budget.",
    )
    feedback_min_factor: float = Field(
        default=_FEEDBACK_MIN_FACTOR,
        ge=1.0 / 64.0,
        le=1.0,
        alias="feedbackMinFactor",
        description="The feedback never cuts the open-loop miss budget below this × it. A "
        "service much slower than the model (a buffer that must last 1.5× longer refills) "
        "needs the budget cut further than ×1/4.",
    )
    forecast_refresh_seconds: float | None = Field(
        default=None,
        gt=0.0,
        le=3600.0,
        alias="forecastRefreshSeconds",
        description="Forecast a location's demand once per this many seconds (aligned to "
        "the clock) and reuse it at the decisions in between, while its history still holds "
        "the newest sample the forecast saw; demand now, the observed arrival-rate floor "
        "and the feedback stay fresh at every decision. The forecaster works on 5-minute "
        "buckets, so 300 repeats the forecast within the bucket it has, at a fifth of its "
        "cost per decision. None: forecast at every decision.",
    )
    miss_budget_skew: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        alias="missBudgetSkew",
        description="Spread the miss budget over the next day instead of spending the same "
        "share every hour: the share allowed now is scaled by (λ̄ / λ)^skew, normalised so the "
        "day's arrival-weighted share is unchanged (0: the same share every hour; 0.5 is close "
        "to the cost-optimal split of a Poisson buffer).",
    )


def provisioning_exceeds(seconds: float, p95_s: float) -> float:
    """P(provisioning delay > ``seconds``) for the log-normal delay whose p95 is ``p95_s``
    (median = p95 / PROVISIONING_P95_FACTOR, the benchmark's shape); at least 1e-3 so a
    cap divided by it stays finite."""
    sigma = math.log(PROVISIONING_P95_FACTOR) / _Z95
    median = p95_s / PROVISIONING_P95_FACTOR
    z = math.log(seconds / median) / sigma
    return max(1e-3, 0.5 * math.erfc(z / math.sqrt(2.0)))


def host_buffer_for_miss_share(
    net: NetArrivals, miss_share: float, tenancy: int, *, hint: int | None = None
) -> int:
    """Smallest target-idle T (a multiple of ``tenancy``) whose expected miss share is at most
    ``miss_share`` once the service's own rounding is counted.

    The service provisions whole hosts for ``in_use + T`` slots, so the idle slots it keeps are
    T plus the free slots of the partly used host, ``f = −in_use mod tenancy``. Sessions come
    and go between decisions, so f is taken as uniform on ``0 … tenancy − 1`` (fullest-host
    packing leaves one partly used host) and the shortfall is averaged over it. Rounding a
    buffer sized without this up to a whole host pays those free slots twice.

    ``hint`` (the whole-slot ``buffer_for_miss_share``, which the answer is close to) only
    moves where the scan starts: the averaged shortfall falls as T grows, so when it is still
    above the target one host below the start, every smaller T is too, and the answer is the
    one a scan from 0 finds (else the scan starts from 0)."""
    if net.mean_arrivals <= 0.0:
        return 0
    target = miss_share * net.mean_arrivals
    top = net.offset + int(net.pmf.shape[0])
    n_units = top // tenancy + 2
    block = max(1, 16 // tenancy)  # units per vectorised pass; the answer is usually in the first
    start = 0
    if hint is not None and hint >= 3 * tenancy:
        unit = min(hint // tenancy - 2, n_units - 1)  # a host or two below the hint, ≥ 1
        # One pass holds the host below the start (to confirm it misses) and the few hosts
        # after it where the answer lies (the work grows with the buffers scanned).
        near = min(block, 4)
        lo = (unit - 1) * tenancy
        first_pass: list[float] = net.shortfalls(np.arange(lo, lo + (near + 1) * tenancy)).tolist()
        if sum(first_pass[:tenancy]) / tenancy > target:
            for i in range(tenancy, len(first_pass), tenancy):
                if sum(first_pass[i : i + tenancy]) / tenancy <= target:
                    return lo + i
            start = min(unit + near, n_units)
    for first in range(start, n_units, block):
        last = min(first + block, n_units)
        short = net.shortfalls(np.arange(first * tenancy, last * tenancy)).tolist()
        for i in range(0, len(short), tenancy):
            if sum(short[i : i + tenancy]) / tenancy <= target:
                return first * tenancy + i
    return round_up_to_tenancy(max(top, 0), tenancy)


def sticky_maximum(needed: int, current: int, slack: float, tenancy: int) -> int:
    """Maximum with hysteresis: keep ``current`` while it lies in [needed, needed × (1 +
    slack)]; otherwise move to needed × (1 + slack / 2), the middle of that band.

    Why: Maximum is a ceiling against runaway cost, never what is bought, and the value it is
    derived from (a forecast quantile, today's demand) moves a little every tick; following
    it exactly would send an UpdateStreamGroup for nothing most minutes (against a 5 per
    second account quota shared by every group)."""
    if needed <= current <= math.floor(needed * (1.0 + slack) + _EPSILON):
        return current
    return round_up_to_tenancy(math.ceil(needed * (1.0 + slack / 2.0) - _EPSILON), tenancy)


def _row_seconds(at: FloatArray, lo: int, hi: int) -> FloatArray:
    """Seconds each row of ``at[lo:hi]`` accounts for: its arrivals cover the time since the
    row before it (0 for the history's first row, whose start is unknown)."""
    if lo > 0:
        return np.diff(at[lo - 1 : hi])
    return np.concatenate(([0.0], np.diff(at[:hi])))


def observed_arrival_rate(history: LocationHistory, now: float, window_s: float) -> float:
    """A one-sigma lower bound on the arrival rate (per second) over the complete samples of
    the last ``window_s`` (each sample's arrivals cover the time since the sample before it):
    ``(A − √A) / T`` for A arrivals in T seconds; 0 when there is none.

    Why a lower bound: the rate floors a forecast, and the largest of an estimate and a noisy
    count is biased upwards by the noise (at 1 arrival a minute, 15 minutes hold 15 ± 4); the
    bound binds only where the forecast is clearly below what is arriving. Incomplete samples
    carry no arrivals (their flows read as 0), so their time is left out rather than counted
    as a quiet spell."""
    at = history.at
    lo = max(int(at.searchsorted(now - window_s, side="right")), 1)
    hi = int(at.searchsorted(now, side="right"))
    if hi <= lo:
        return 0.0
    ok = history.complete[lo:hi]
    if ok.all():  # the usual case: the intervals telescope to one difference
        span = float(at[hi - 1] - at[lo - 1])
        arrivals = float(history.arrivals[lo:hi].sum())
    else:
        span = float(_row_seconds(at, lo, hi)[ok].sum())
        arrivals = float(history.arrivals[lo:hi][ok].sum())
    if span <= 0.0:
        return 0.0
    return max(arrivals - math.sqrt(arrivals), 0.0) / span


def measured_misses(
    history: LocationHistory, now: float, window_s: float
) -> tuple[float, float, float, float] | None:
    """(late starts, placement failures, arrivals, seconds covered) summed over the complete
    rows of the last ``window_s`` whose late starts were measured (covered: the time those
    rows account for, plus the time since the newest row); None when no row was.

    Rows without a measurement (NaN: the listing failed, rows stored before the controller
    counted late starts, CloudWatch backfill) are left out whole, arrivals included, so an
    unmeasured stretch never reads as sessions that all started at once."""
    late = history.late_starts
    if late is None:
        return None
    at = history.at
    lo = int(at.searchsorted(now - window_s, side="right"))
    hi = int(at.searchsorted(now, side="right"))
    if hi <= lo:
        return None
    rows = late[lo:hi]
    complete = history.complete[lo:hi]
    late_sum = float(rows.sum())
    if math.isfinite(late_sum) and complete.all():
        # Every row measured and complete (a running controller's usual day): plain sums,
        # a few µs instead of ~80 for the masked ones over a day of 1-minute rows.
        failures = float(history.placement_failures[lo:hi].sum())
        arrivals = float(history.arrivals[lo:hi].sum())
        if math.isfinite(failures) and math.isfinite(arrivals):
            return late_sum, failures, arrivals, now - float(at[lo - 1 if lo > 0 else lo])
    ok = complete & np.isfinite(rows)
    if not ok.any():
        return None
    # Covered: the time the measured rows account for, so a day with two measured hours
    # never reads as a measured day.
    return (
        float(rows[ok].sum()),
        float(np.nan_to_num(history.placement_failures[lo:hi][ok]).sum()),
        float(np.nan_to_num(history.arrivals[lo:hi][ok]).sum()),
        float(_row_seconds(at, lo, hi)[ok].sum()) + (now - float(at[hi - 1])),
    )


_FEEDBACK_PRIOR_MISSES = 5.0  # the prior at the target weighs as much as this many misses
_FEEDBACK_FULL_COVER = 0.9  # share of the window measured before the feedback may loosen
_DAY_S = 86_400.0
# Day estimates the integral needs before it takes over from the stateless loop. One day's
# estimate extrapolates from one day's misses (a single ramp's burst, or none) at the factor
# farthest from the equilibrium: measured on the full-width bench's 2-day windows, trusting
# it decided 15 fewer cases cheapest and missed the SLO once (Windows p400: the buffer held
# the first day's x8 while the second day's misses came), where the stateless loop tightens
# as they come.
_INTEGRAL_MIN_DAYS = 2


def feedback_factor(
    misses: float,
    arrivals: float,
    target: float,
    gain: float,
    top: float,
    *,
    bottom: float = _FEEDBACK_MIN_FACTOR,
) -> float:
    """Factor on a miss budget from ``misses`` of ``arrivals`` measured against a ``target``
    share: ``(target / m̂)^gain`` within [``bottom``, ``top``], where m̂ = (misses + k) /
    (arrivals + k / target) is the measured share shrunk toward the target by a prior worth
    k = 5 misses.

    Why the prior: at 1 % misses a quiet location sees a miss every few hours, and a raw share
    of 0 over a short spell would loosen the buffer to the cap on no evidence; with the prior,
    a day of 1,400 arrivals without a miss at a 0.8 % target loosens by ×1.8 (gain 0.5)."""
    if target <= 0.0:
        return 1.0
    factor = math.pow(target / _shrunk_share(misses, arrivals, target), gain)
    return min(max(factor, bottom), top)


def _shrunk_share(misses: float, arrivals: float, target: float) -> float:
    """m̂: the measured miss share shrunk toward ``target`` by a prior worth k = 5 misses."""
    return (misses + _FEEDBACK_PRIOR_MISSES) / (arrivals + _FEEDBACK_PRIOR_MISSES / target)


@dataclass(frozen=True, slots=True)
class DayMeasure:
    """One measured UTC day of a location: the recorded budget's time-weighted log sum over
    the seconds it covers, and the misses and arrivals of those seconds."""

    log_budget_s: float  # Σ seconds × log(budget in force)
    covered_s: float
    misses: float
    arrivals: float


def day_measure(
    history: LocationHistory, day_end: float, *, failures_only: bool
) -> DayMeasure | None:
    """The UTC day ending at ``day_end`` as the integral reads it (misses: late starts and
    failures, or failures alone), or None unless the rows with a measurement and a recorded
    budget account for 90 % of the day."""
    recorded = history.miss_budget
    late = history.late_starts
    if recorded is None or late is None:
        return None
    at = history.at
    start = day_end - _DAY_S
    lo = int(at.searchsorted(start, side="right"))
    hi = int(at.searchsorted(day_end, side="right"))
    if hi <= lo:
        return None
    seconds = _row_seconds(at, lo, hi)
    seconds[0] = min(float(seconds[0]), float(at[lo]) - start)  # the day's share only
    budgets = recorded[lo:hi]
    ok = history.complete[lo:hi] & np.isfinite(late[lo:hi]) & (budgets > 0.0)
    weights = seconds[ok]
    covered = float(weights.sum())
    if covered < _FEEDBACK_FULL_COVER * _DAY_S:
        return None
    misses = float(np.nan_to_num(history.placement_failures[lo:hi][ok]).sum())
    if not failures_only:
        misses += float(late[lo:hi][ok].sum())
    arrivals = float(np.nan_to_num(history.arrivals[lo:hi][ok]).sum())
    return DayMeasure(float(np.dot(weights, np.log(budgets[ok]))), covered, misses, arrivals)


def budget_estimate(days: Sequence[DayMeasure], target: float) -> float | None:
    """The miss budget that would have met ``target`` over ``days`` together: (time-weighted
    geometric mean of the recorded budget in force) × target / m̂, m̂ their pooled measured
    share shrunk toward the target by the prior of ``feedback_factor``.

    Why from the recorded days alone: the estimate needs no earlier estimate to be right, so
    the loop is integral (the days' misses accumulate) yet cannot drift as old days leave
    the window, which a recursion from a fixed starting factor does. Why the budget and not
    the factor on it: the factor is relative to parameters (the SLO, the budget share) that
    an edited policy changes; the budget the buffer was sized for is not. Why pooled, not one
    estimate a day averaged: at a quiet location a day has a handful of misses, and a prior
    worth five of them shrank each day's estimate most of the way back to the budget in
    force, so the loop crept (28 days at peak 40 still loosening, 99.64 % instant for a
    99.2 % aim); pooled, the prior weighs once against a week of evidence."""
    if not days or target <= 0.0:
        return None
    covered = sum(d.covered_s for d in days)
    in_force = math.exp(sum(d.log_budget_s for d in days) / covered)
    misses = sum(d.misses for d in days)
    arrivals = sum(d.arrivals for d in days)
    return in_force * target / _shrunk_share(misses, arrivals, target)


def _key_float(value: float) -> float:
    """``value`` as a dict key part: NaN (never equal to itself) as -1."""
    found = float(value)
    return -1.0 if math.isnan(found) else found


def demand_now(ctx: PolicyContext) -> int:
    """Uncensored demand this tick: sessions holding or waiting for a slot, plus failures."""
    s = ctx.sample
    return max(0, s.in_use) + max(0, s.waiting) + max(0, s.placement_failures)


@dataclass(frozen=True, slots=True)
class _KeptForecast:
    """A forecast kept for reuse within its refresh period, with the newest history row it
    saw (time, in use, arrivals) to tell that a later history continues the same one."""

    forecast: Forecast
    period: tuple[object, ...]
    row: tuple[float, float, float] | None

    @staticmethod
    def of(fc: Forecast, period: tuple[object, ...], history: LocationHistory) -> _KeptForecast:
        n = len(history)
        row = None
        if n:
            row = (
                float(history.at[n - 1]),
                float(history.in_use[n - 1]),
                float(history.arrivals[n - 1]),
            )
        return _KeptForecast(fc, period, row)

    def still_in(self, history: LocationHistory) -> bool:
        if self.row is None:
            return len(history) == 0
        at, in_use, arrivals = self.row
        i = int(history.at.searchsorted(at))
        return (
            i < len(history)
            and float(history.at[i]) == at
            and _same(float(history.in_use[i]), in_use)
            and _same(float(history.arrivals[i]), arrivals)
        )


def _same(a: float, b: float) -> bool:
    """Equal, NaN equal to NaN (an unmeasured row is the same row)."""
    return a == b or (math.isnan(a) and math.isnan(b))


class SloPolicy:
    """Plugin ``slo``: target-idle sized from the SLO and the forecast arrival rate."""

    name: str = "slo"
    Params: ClassVar[type[BaseModel]] = SloParams

    def __init__(self) -> None:
        self._forecaster = SeasonalForecaster()
        # (group ARN, location) → {the completed days' span, target, bounds: the integral}:
        # the completed days' rows do not change, so the integral is computed once a day
        # instead of once a tick; keyed on the span's rows (a backfill changes them) and a
        # few of its recorded budgets (another run's days with the same times, through a
        # shared plugin, differ there). Only the thread planning that location's group
        # touches its dict (one plan per group at a time).
        self._span_answers: dict[
            tuple[str, str], dict[tuple[float, ...], tuple[float, int] | None]
        ] = {}
        # (group ARN, location) → the forecast of the current refresh period (one entry per
        # location, replaced each period; touched only by the thread planning that group).
        self._recent_forecasts: dict[tuple[str, str], _KeptForecast] = {}

    def _forecast(
        self, params: SloParams, ctx: PolicyContext, horizons_s: tuple[float, float, float]
    ) -> Forecast:
        """The forecast at ``horizons_s`` from now: computed afresh, or with
        ``forecastRefreshSeconds`` the one made earlier in the same refresh period for the
        same horizons, if the history it was made from is still the start of this one (its
        newest row is here, unchanged: another run or a restart does not reuse it)."""
        history = ctx.history
        refresh = params.forecast_refresh_seconds
        skewed = params.miss_budget_skew > 0.0
        if refresh is None:
            return self._compute_forecast(history, ctx.now, horizons_s, skewed=skewed)
        key = (ctx.group.arn, ctx.location)
        period = (math.floor(ctx.now / refresh), refresh, horizons_s, skewed)
        kept = self._recent_forecasts.get(key)
        if kept is not None and kept.period == period and kept.still_in(history):
            return kept.forecast
        fc = self._compute_forecast(history, ctx.now, horizons_s, skewed=skewed)
        self._recent_forecasts[key] = _KeptForecast.of(fc, period, history)
        return fc

    def _compute_forecast(
        self,
        history: LocationHistory,
        now: float,
        horizons_s: tuple[float, float, float],
        *,
        skewed: bool,
    ) -> Forecast:
        return self._forecaster.forecast(
            history,
            now,
            horizons_s,
            quantiles=(_UPPER_Q,),
            # the day's rates only feed the budget skew: no peaks or quantiles out to a day
            rate_horizons_s=_DAY_GRID if skewed else (),
        )

    def _integral(
        self,
        params: SloParams,
        ctx: PolicyContext,
        target: float,
        nominal: float,
        *,
        failures_only: bool,
    ) -> tuple[float, int] | None:
        """(the budget estimate of the last ``feedbackIntegralDays`` measured days pooled,
        as a factor on the ``nominal`` (open-loop) budget within the factor's bounds; how
        many days were measured), or None while fewer than ``_INTEGRAL_MIN_DAYS`` were."""
        days = params.feedback_integral_days
        recorded = ctx.history.miss_budget
        if days is None or recorded is None or nominal <= 0.0:
            return None
        last_end = math.floor(ctx.now / _DAY_S) * _DAY_S
        history = ctx.history
        at = history.at
        lo = int(at.searchsorted(last_end - days * _DAY_S, side="right"))
        hi = int(at.searchsorted(last_end, side="right"))
        sampled = (
            (
                float(at[lo]),
                float(at[hi - 1]),
                _key_float(recorded[lo]),
                _key_float(recorded[(lo + hi) // 2]),
                _key_float(recorded[hi - 1]),
            )
            if hi > lo
            else ()
        )
        span: tuple[float, ...] = (
            last_end,
            hi - lo,
            *sampled,
            target,
            nominal,
            float(failures_only),
            params.feedback_min_factor,
            params.feedback_max_factor,
        )
        spans = self._span_answers.setdefault((ctx.group.arn, ctx.location), {})
        if span in spans:
            return spans[span]
        measured = [
            day
            for back in range(days)
            if (day := day_measure(history, last_end - back * _DAY_S, failures_only=failures_only))
            is not None
        ]
        result = None
        found = budget_estimate(measured, target) if len(measured) >= _INTEGRAL_MIN_DAYS else None
        if found is not None:
            factor = found / nominal
            bounded = min(max(factor, params.feedback_min_factor), params.feedback_max_factor)
            result = bounded, len(measured)
        for stale in [k for k in spans if k[0] != last_end]:  # the previous days' answers
            del spans[stale]
        spans[span] = result
        return result

    def _feedback(
        self, params: SloParams, ctx: PolicyContext, nominal: float, nominal_cap: float | None
    ) -> tuple[float, float, str]:
        """(factor on the miss budget, factor on a legacy failure cap, reason note) of the
        policy's feedback; (1, 1, "") without one or without a measurement. ``nominal`` and
        ``nominal_cap``: the open-loop budget and failure cap (None: no cap), as recorded
        budgets are (before the hour's spread), which the integral's estimates divide."""
        window_s = params.feedback_window_seconds
        measured = None if window_s is None else measured_misses(ctx.history, ctx.now, window_s)
        if measured is None and params.feedback_integral_days is None:
            return 1.0, 1.0, ""
        bottom, top = params.feedback_min_factor, params.feedback_max_factor
        notes: list[str] = []

        def factor(share: float, nominal: float, *, failures_only: bool) -> float:
            target = params.feedback_target * share
            aim = params.feedback_integral_target
            integral_target = target if failures_only or aim is None else aim * share
            integral = self._integral(
                params, ctx, integral_target, nominal, failures_only=failures_only
            )
            if integral is not None:
                # a bad day is one worse than what the integral aims at
                target = integral_target
            stateless: float | None = None
            if measured is not None and window_s is not None:
                late, failed, arrived, covered = measured
                stateless = feedback_factor(
                    failed if failures_only else late + failed,
                    arrived,
                    target,
                    params.feedback_gain,
                    top,
                    bottom=bottom,
                )
                # Misses come in bursts (a morning ramp): part of a day without one is no
                # evidence for the whole day, so only a fully measured window may loosen.
                if covered < _FEEDBACK_FULL_COVER * window_s:
                    stateless = min(stateless, 1.0)
            if integral is None:
                return 1.0 if stateless is None else stateless
            found, days = integral
            if not failures_only:
                notes.append(f", integral ×{found:.2f} over {days} d")
            if stateless is not None:
                found *= min(stateless, 1.0)  # the integral loosens; a bad day tightens
            return min(max(found, bottom), top)

        loop = factor(1.0 - ctx.slo.instant, nominal, failures_only=False)
        loop_fail = (
            1.0 if nominal_cap is None else factor(ctx.slo.failed, nominal_cap, failures_only=True)
        )
        if measured is None and not notes:  # nothing measured, no recorded days: open loop
            return loop, loop_fail, ""
        note = f", feedback ×{loop:.2f}"
        if measured is not None:
            late, failed, arrived, covered = measured
            note += (
                f" (measured {late + failed:.0f} of {arrived:.0f} not instant, {failed:.0f}"
                f" failed, over {covered / 3600:.1f} h"
            )
            note += f"{notes[0]})" if notes else ")"
        elif notes:
            note += f" ({notes[0][2:]})"
        return loop, loop_fail, note

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        if not isinstance(params, SloParams):
            raise TypeError(f"expected SloParams, got {type(params).__name__}")
        t = ctx.tenancy
        lead = params.lead_time_seconds or ctx.lead_time_s
        legacy = ctx.capacity_model is CapacityModel.LEGACY
        p95 = max(lead - ctx.interval_s, 0.25 * lead)  # provisioning at a high quantile
        if params.refill_seconds is not None:
            refill = params.refill_seconds
        elif params.refill_factor is not None:
            refill = params.refill_factor * p95 / PROVISIONING_P95_FACTOR
        else:
            refill = p95
        # Legacy: nothing refills between decisions; the buffer must last until the next
        # decision's hosts are ready (a whole lead time unless the refill is modelled).
        if legacy and params.legacy_refill_factor is not None:
            window = ctx.interval_s + params.legacy_refill_factor * p95 / PROVISIONING_P95_FACTOR
        elif legacy:
            window = lead if params.refill_factor is None else ctx.interval_s + refill
        else:
            window = refill
        ahead = lead + params.prewarm_seconds
        fc = self._forecast(params, ctx, (0.0, lead + window, ahead))
        demand = demand_now(ctx)
        rate = float(fc.arrival_rate_peak[1])  # peak mean rate until the buffer's window ends
        floor_note = ""
        if params.rate_floor_seconds is not None:
            observed = observed_arrival_rate(ctx.history, ctx.now, params.rate_floor_seconds)
            if observed > rate:
                floor_note = f", floored at the observed ≥ {observed * 60:.2f}/min"
                rate = observed
        phi = float(fc.arrival_dispersion[1])
        if params.max_dispersion is not None:
            phi = min(phi, params.max_dispersion)
        in_use_now = max(0, ctx.sample.in_use)
        credit = params.departure_credit
        if legacy and params.legacy_departure_credit is not None:
            credit = params.legacy_departure_credit
        if params.release_delay_seconds is not None:
            credit *= min(1.0, params.release_delay_seconds / window)
        departures = credit * in_use_now * window / fc.mean_duration_s
        net = NetArrivals.of(rate * window, phi, departures)
        skew = budget_skew(rate, fc.arrival_rate_at, params.miss_budget_skew)
        share = params.miss_budget_share
        if legacy and params.legacy_miss_budget_share is not None:
            share = params.legacy_miss_budget_share
        failure_share = params.legacy_failure_share if legacy else None
        nominal = (1.0 - ctx.slo.instant) * share
        nominal_cap: float | None = None
        if failure_share is not None:
            # The host a miss waits for was asked for at the last decision, on average half
            # an interval ago: it fails if that host needs longer than the timeout from now.
            p_fail = provisioning_exceeds(ALWAYS_ON_PLACEMENT_TIMEOUT_S + ctx.interval_s / 2, p95)
            nominal_cap = failure_share * ctx.slo.failed / p_fail
        loop, loop_fail, loop_note = self._feedback(params, ctx, nominal, nominal_cap)
        miss = min(nominal * skew * loop, _MAX_MISS)
        if nominal_cap is not None:
            miss = min(miss, nominal_cap * skew * loop_fail)
        if params.quantile is not None:
            raw_buffer = max(net.quantile(params.quantile), 0)
            rule = f"quantile {params.quantile:g} of net arrivals"
        else:
            raw_buffer = net.buffer_for_miss_share(miss)
            rule = f"≤ {miss:.2%} of arrivals missing"
            if params.miss_budget_skew > 0.0:
                rule += f" (day-budget skew ×{skew:.2f})"
            rule += loop_note
        buffer = round_up_to_tenancy(max(raw_buffer, params.min_idle), t)
        if params.partial_host_credit and params.quantile is None and t > 1:
            if legacy:
                # Always-on is the idle capacity, and its free slots at the decision are
                # known (always-on − demand, whole hosts): the buffer is the idle slots the
                # window needs, and rounding always-on up to whole hosts adds only what the
                # partly used host lacks (not an average over it, as under TargetIdle).
                credited, counted = raw_buffer, f"the partly used {t}-slot host's free slots"
            else:
                credited = host_buffer_for_miss_share(net, miss, t, hint=raw_buffer)
                counted = f"{t}-slot hosts' free slots"
            buffer = max(credited, round_up_to_tenancy(params.min_idle, t))
            rule += f", {counted} counted"
        peak = float(fc.in_use_peak_mean[2])
        upper = float(fc.in_use_peak_quantiles[0, 2])
        cap = round_down_to_tenancy(ctx.bounds.max_capacity, t)
        headroom = max(t, math.ceil(params.maximum_margin * demand - _EPSILON))

        # A rise the buffer cannot absorb, measured from the forecast level (not from this
        # tick's noisy count), is provisioned ahead through the floor.
        prewarm = peak > max(demand, float(fc.in_use_mean[0])) + buffer
        floor = round_up_to_tenancy(params.always_on_floor, t)
        if legacy:
            always_on = round_up_to_tenancy(max(demand + buffer, math.ceil(peak - _EPSILON)), t)
            always_on = max(always_on, floor)
        elif prewarm:
            always_on = max(round_up_to_tenancy(math.ceil(peak - _EPSILON), t), floor)
        else:
            always_on = floor
        maximum = round_up_to_tenancy(
            max(
                math.ceil(upper * (1.0 + params.maximum_margin) - _EPSILON),
                demand + buffer + headroom,
                always_on + (0 if legacy else buffer),
            ),
            t,
        )
        if params.maximum_slack is not None:
            maximum = sticky_maximum(maximum, ctx.sample.setting.ceiling, params.maximum_slack, t)
        maximum = min(maximum, cap)
        always_on = min(always_on, maximum)
        why = (
            f"slo: λ {rate * 60:.2f}/min (peak forecast to +{lead + window:.0f}s{floor_note},"
            f" φ {phi:.2f}),"
            f" refill window {window:.0f}s (lead time {lead:.0f}s), departures freeing"
            f" {departures:.1f} → buffer {raw_buffer} for {rule}"
            f" (window quantile {net.cdf_at(raw_buffer):.4f}); demand now {demand},"
            f" forecast in-use {peak:.1f} (p99 {upper:.1f}) by +{ahead:.0f}s [{fc.method}]"
        )
        if legacy:
            setting = CapacitySetting(always_on=always_on, on_demand=maximum - always_on)
            why += "; legacy: always-on carries demand + buffer, on-demand the burst headroom"
        else:
            setting = CapacitySetting(
                always_on=always_on, target_idle=min(buffer, maximum), maximum=maximum
            )
            why += "; pre-warm floor for the forecast rise" if prewarm else ""
        looped = (
            params.feedback_window_seconds is not None or params.feedback_integral_days is not None
        )
        return Recommendation(
            setting=setting,
            reason=f"{why}; {setting.describe()} (tenancy {t})",
            forecast_in_use=float(fc.in_use_mean[1]),
            forecast_arrivals_per_s=rate,
            # What the buffer was sized for, before the hour's spread: the integral learns
            # from it (whichever of the budget and the legacy cap bound). None where no
            # miss share sized it (a quantile buffer).
            miss_budget=miss / skew if looped and params.quantile is None else None,
        )
