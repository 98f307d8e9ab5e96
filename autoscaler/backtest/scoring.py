"""Score a backtest run against the physical limit, independently of the simulator.

Why independent: if the bound came out of the same service model that meters the run, a bug
in the model would move cost and bound together and hide itself in a flattering ratio. Here
the bound is computed from the session plan alone, with plain array arithmetic.

The in-use bound: in every location, a running session holds one slot on a ready host of that
location, hosts have ``tenancy`` slots and capacity is allocated in whole hosts. So at every
instant a location with n sessions in progress has at least ceil(n / tenancy) hosts, i.e.
ceil(n / tenancy) × tenancy slots, allocated, and the service bills allocated slots per
second. Integrated over the run, that is the least any controller can pay for serving every
session the moment it arrives: no policy, however clairvoyant, can beat it (``cost_ratio``
≥ 1). It assumes every session starts on arrival; a run that fails sessions (or delays them
past the end of the window) can come in under it, which the SLO check exposes.

Percentiles of the start wait are nearest-rank ("99 % of sessions waited at most p99"), taken
over every session: the instant ones count with a wait of 0 s, the failed ones with the time
they waited before failing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from autoscaler.backtest.sessions import SessionPlan
from autoscaler.domain.policy import Slo


def in_use_bound(plan: SessionPlan, tenancy: int, *, until_s: float | None = None) -> float:
    """Slot-hours the plan's sessions occupy with tenancy packing, over [0, ``until_s``]
    (default ``plan.horizon_s``: use the same window the run's allocation is metered over)."""
    if tenancy < 1:
        raise ValueError(f"tenancy must be ≥ 1, got {tenancy}")
    end_window = plan.horizon_s if until_s is None else float(until_s)
    start = np.maximum(plan.arrival_s, 0.0)
    end = np.minimum(plan.arrival_s + plan.duration_s, end_window)
    live = end > start
    total = 0.0
    for index in range(len(plan.locations)):
        mine = live & (plan.location == index)
        if not mine.any():
            continue
        times = np.concatenate((start[mine], end[mine]))
        steps = np.concatenate((np.ones(int(mine.sum())), -np.ones(int(mine.sum()))))
        order = np.argsort(times, kind="stable")
        t = times[order]
        n = np.maximum(np.cumsum(steps[order]), 0.0)  # sessions in progress on [t_i, t_i+1)
        slots = np.ceil(n[:-1] / tenancy) * tenancy
        total += float(np.dot(slots, np.diff(t)))
    return total / 3600.0


@dataclass(frozen=True, slots=True)
class Result:
    """One run's score; fractions are 0-1, money in the price's currency (USD by default)."""

    policy: str
    params: Mapping[str, Any]
    cost: float  # allocated slot-hours × price
    bound: float  # in-use bound slot-hours × price
    cost_ratio: float  # cost / bound, on slot-hours (inf if the bound is 0 and slots were paid)
    instant: float
    cold: float
    failed: float
    p95_wait_s: float
    p99_wait_s: float
    updates: int
    meets_slo: bool
    wall_s: float
    # Where the overhead (cost_ratio − 1) went, as fractions of the bound that sum to it (NaN
    # when the run's meter did not split it): empty hosts the targets kept (the buffer and
    # floors a policy asks for), surplus empty hosts the service held until their release
    # delay ran out, and the rest: free slots on partly used hosts beyond the bound's perfect
    # packing (less the slot-time of sessions that started late or failed).
    idle_kept: float = math.nan
    idle_held: float = math.nan
    idle_partial: float = math.nan
    decisions: int = 0  # controller ticks (0: a static run)
    # Of those, the ticks on which the policy failed (a plugin error held a location, or a
    # fallback answered in its place), and the first such failure.
    fallback_decisions: int = 0
    fallback_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of a result (field order as documented)."""
        return {
            "policy": self.policy,
            "params": dict(self.params),
            "cost": self.cost,
            "bound": self.bound,
            "cost_ratio": self.cost_ratio,
            "instant": self.instant,
            "cold": self.cold,
            "failed": self.failed,
            "p95_wait_s": self.p95_wait_s,
            "p99_wait_s": self.p99_wait_s,
            "updates": self.updates,
            "meets_slo": self.meets_slo,
            "wall_s": self.wall_s,
            "idle": idle_split(self.idle_kept, self.idle_held, self.idle_partial),
            "decisions": self.decisions,
            "fallback_decisions": self.fallback_decisions,
            "fallback_reason": self.fallback_reason,
        }


def idle_split(kept: float, held: float, partial: float) -> dict[str, float] | None:
    """The JSON form of a result's idle split (None when it was not metered)."""
    if not all(math.isfinite(x) for x in (kept, held, partial)):
        return None
    return {"kept": kept, "held": held, "partial": partial}


def idle_split_text(split: Mapping[str, float] | None) -> str:
    """An idle split as tables show it: kept / held / partial in per cent of the bound."""
    if split is None:
        return "-"
    return " / ".join(f"{split[k] * 100:.1f}" for k in ("kept", "held", "partial"))


def _nearest_rank(sorted_waits: np.ndarray[Any, np.dtype[np.float64]], q: float) -> float:
    rank = max(1, math.ceil(q * sorted_waits.size))
    return float(sorted_waits[rank - 1])


def score(
    *,
    policy: str,
    params: Mapping[str, Any],
    allocated_slot_s: float,
    bound_slot_h: float,
    price_per_slot_hour: float,
    instant: int,
    cold: int,
    failed: int,
    waits_s: ArrayLike,
    updates: int,
    wall_s: float,
    slo: Slo | None = None,
    kept_empty_slot_s: float | None = None,
    held_empty_slot_s: float | None = None,
    decisions: int = 0,
    fallback_decisions: int = 0,
    fallback_reason: str | None = None,
) -> Result:
    """Score one run. ``waits_s`` has one entry per session (instant ones 0 s), so its length
    must be ``instant + cold + failed``; ``bound_slot_h`` comes from :func:`in_use_bound`.
    ``kept_empty_slot_s`` and ``held_empty_slot_s`` (the meter's split of the empty hosts'
    slot-seconds, part of ``allocated_slot_s``) give the result its idle split."""
    total = instant + cold + failed
    waits = np.sort(np.asarray(waits_s, dtype=np.float64))
    if min(instant, cold, failed, updates) < 0 or total == 0:
        raise ValueError(f"need counts ≥ 0 and at least one session: {instant}, {cold}, {failed}")
    if waits.shape != (total,):
        raise ValueError(f"waits_s has {waits.size} entries for {total} sessions (one each)")
    if allocated_slot_s < 0 or bound_slot_h < 0 or price_per_slot_hour < 0:
        raise ValueError("allocated_slot_s, bound_slot_h and price_per_slot_hour must be ≥ 0")
    chosen = slo or Slo()
    cost = allocated_slot_s / 3600.0 * price_per_slot_hour
    bound = bound_slot_h * price_per_slot_hour
    # On slot-hours, so a zero price still gives a meaningful ratio.
    paid_h = allocated_slot_s / 3600.0
    nothing = math.inf if paid_h > 0 else 1.0
    ratio = paid_h / bound_slot_h if bound_slot_h > 0 else nothing
    share_instant, share_failed = instant / total, failed / total
    kept = held = partial = math.nan
    if kept_empty_slot_s is not None and held_empty_slot_s is not None and bound_slot_h > 0:
        empty_slot_s = kept_empty_slot_s + held_empty_slot_s
        if min(kept_empty_slot_s, held_empty_slot_s) < 0 or empty_slot_s > allocated_slot_s * (
            1 + 1e-9
        ):
            raise ValueError(
                f"empty-host slot-seconds ({kept_empty_slot_s} kept + {held_empty_slot_s} "
                f"held) must be ≥ 0 and within allocated_slot_s ({allocated_slot_s})"
            )
        kept = kept_empty_slot_s / 3600.0 / bound_slot_h
        held = held_empty_slot_s / 3600.0 / bound_slot_h
        partial = ratio - 1.0 - kept - held
    return Result(
        policy=policy,
        params=dict(params),
        cost=cost,
        bound=bound,
        cost_ratio=ratio,
        instant=share_instant,
        cold=cold / total,
        failed=share_failed,
        p95_wait_s=_nearest_rank(waits, 0.95),
        p99_wait_s=_nearest_rank(waits, 0.99),
        updates=updates,
        meets_slo=share_instant >= chosen.instant and share_failed <= chosen.failed,
        wall_s=wall_s,
        idle_kept=kept,
        idle_held=held,
        idle_partial=partial,
        decisions=decisions,
        fallback_decisions=fallback_decisions,
        fallback_reason=fallback_reason,
    )


_NUMERIC = (
    "cost",
    "bound",
    "cost_ratio",
    "instant",
    "cold",
    "failed",
    "p95_wait_s",
    "p99_wait_s",
    "updates",
    "wall_s",
    "idle_kept",
    "idle_held",
    "idle_partial",
    "decisions",
    "fallback_decisions",
)


@dataclass(frozen=True, slots=True)
class Spread:
    mean: float
    std: float  # population standard deviation over the seeds
    min: float
    max: float


@dataclass(frozen=True, slots=True)
class Aggregate:
    """A policy's results over several seeds: mean and spread of every numeric field.

    ``meets_slo`` holds only if every seed met it (a policy that misses on one seed in three
    misses); ``meets_slo_share`` says how many did."""

    policy: str
    params: Mapping[str, Any]
    seeds: int
    fields: Mapping[str, Spread] = field(default_factory=dict)
    meets_slo: bool = False
    meets_slo_share: float = 0.0
    fallback_reason: str | None = None  # the first seed's first policy failure, if any

    def __getitem__(self, name: str) -> Spread:
        return self.fields[name]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"policy": self.policy, "params": dict(self.params)}
        for name in _NUMERIC:
            s = self.fields[name]
            out[name] = {"mean": s.mean, "std": s.std, "min": s.min, "max": s.max}
        out["meets_slo"] = self.meets_slo
        out["meets_slo_share"] = self.meets_slo_share
        out["seeds"] = self.seeds
        out["fallback_reason"] = self.fallback_reason
        return out


def aggregate(results: Sequence[Result]) -> Aggregate:
    """Mean and spread over seeds of one policy with one parameter set."""
    if not results:
        raise ValueError("no results to aggregate")
    first = results[0]
    for r in results[1:]:
        if r.policy != first.policy or dict(r.params) != dict(first.params):
            raise ValueError(
                f"results of different runs: {first.policy} {dict(first.params)} vs "
                f"{r.policy} {dict(r.params)}"
            )
    spreads = {}
    for name in _NUMERIC:
        x = np.array([float(getattr(r, name)) for r in results])
        finite = bool(np.all(np.isfinite(x)))
        spreads[name] = Spread(
            mean=float(x.mean()),
            std=float(x.std()) if finite else math.nan,
            min=float(x.min()),
            max=float(x.max()),
        )
    met = sum(r.meets_slo for r in results)
    return Aggregate(
        policy=first.policy,
        params=dict(first.params),
        seeds=len(results),
        fields=spreads,
        meets_slo=met == len(results),
        meets_slo_share=met / len(results),
        fallback_reason=next((r.fallback_reason for r in results if r.fallback_reason), None),
    )
