"""Plan: ask the policy plugin what each location of a group should have.

One plain function over plain data (``plan_group``). It builds a ``PolicyContext`` per ACTIVE
location, calls the plugin, and checks the answer. A plugin is third-party code: an exception
or a nonsense answer (wrong type, wrong capacity model, negative, NaN, infinite, or absurdly
large numbers) must never crash the tick, so it becomes "hold the current capacity" with the
reason recorded, and the problem is listed in the plan so the controller can count failures in
a row (the policy's ``fallback``). Locations that are not ACTIVE, or that have no sample this
tick, are held without asking the plugin.

When the policy has a ``location_lifecycle`` block, the lifecycle planner
(``autoscaler.lifecycle``) proposes adding and removing locations too, whatever the plugin;
its changes come first (a plugin's change for a location the lifecycle also changes this tick
is dropped). When the policy has a monthly budget, the plan carries what the group spent this
calendar month as far as its histories show (``month_spent_usd``) for the guards.

The plan is only a proposal: nothing here enforces bounds, steps, budgets or tenancy. That is
the guards' job (``autoscaler.guard``), which every plan passes before anything is applied.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel

from autoscaler.domain.classes import stream_class_info
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupSample,
    GroupState,
    LocationBounds,
    LocationChange,
    LocationHistory,
    LocationSample,
    LocationState,
    Recommendation,
)
from autoscaler.domain.policy import Policy
from autoscaler.lifecycle import plan_locations
from autoscaler.policy.plugin import (
    GroupContext,
    PolicyContext,
    PolicyPlugin,
    lead_time_s,
    location_changes,
)

# An answer above this many times the location's maximum bound is a bug, not a plan.
HUGE_FACTOR = 10
# A location's history read as watched may have holes of up to this many tick intervals.
WATCHED_TICKS = 3


@dataclass(frozen=True, slots=True)
class LocationPlan:
    """The plugin's proposal for one location (before the guards)."""

    location: str
    status: str  # the location's status when planned
    current: CapacitySetting
    proposed: CapacitySetting
    reason: str
    in_use: int  # slots held by sessions (the larger of the session count and allocated−idle)
    waiting: int  # sessions waiting for a slot (ACTIVATING)
    sample: LocationSample | None  # None: no sample for this location this tick
    forecast_in_use: float | None = None
    planned: bool = True  # False: the plugin was not asked (not ACTIVE, or no sample)
    plugin_error: str | None = None  # the plugin raised or answered nonsense: holding
    # The recommendation's miss budget (see Recommendation), recorded while in force.
    miss_budget: float | None = None
    fallback: str | None = None  # a fallback answered in the plugin's place: why


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """Proposals for every location of one group, plus proposed location changes."""

    group_id: str
    at: float
    capacity_model: CapacityModel
    tenancy: int
    stream_class: str
    primary_location: str
    locations: tuple[LocationPlan, ...]
    location_changes: tuple[LocationChange, ...] = ()
    problems: tuple[str, ...] = ()  # plugin failures and nonsense answers, for reports/fallback
    # USD the group's current locations cost since the start of this calendar month (UTC), as
    # far back as their histories reach; None: not computed (no monthly budget).
    month_spent_usd: float | None = None

    @property
    def failed(self) -> bool:
        return bool(self.problems)

    @property
    def policy_problems(self) -> tuple[str, ...]:
        """The plugin's failures (held) and the fallbacks that answered for it (not counted
        as failures by the guards: a fallback's answer is a usable plan)."""
        fallbacks = tuple(
            f"at {lp.location}: {lp.fallback}" for lp in self.locations if lp.fallback is not None
        )
        return self.problems + fallbacks if fallbacks else self.problems


def month_start(now: float) -> float:
    """Epoch seconds of the first instant of ``now``'s calendar month (UTC)."""
    d = datetime.fromtimestamp(now, UTC)
    return datetime(d.year, d.month, 1, tzinfo=UTC).timestamp()


def spent_usd(
    history: LocationHistory, price_per_slot_hour: float, since: float, until: float
) -> float:
    """Cost of the allocated slots in ``(since, until]``: each row's ``allocated`` is billed
    until the next row (a gap is billed as if the allocation held: the service bills whether or
    not we watch); the last row up to ``until``. NaN counts as 0."""
    at = history.at
    if at.shape[0] == 0:
        return 0.0
    alloc = np.nan_to_num(history.allocated, nan=0.0)
    # Rows whose billing interval [at[i], next) overlaps (since, until].
    ends = np.append(at[1:], max(until, float(at[-1])))
    lo = np.clip(at, since, until)
    hi = np.clip(ends, since, until)
    seconds = np.maximum(hi - lo, 0.0)
    return float(np.dot(alloc, seconds)) * price_per_slot_hour / 3600.0


def _as_count(value: object, field: str, limit: int) -> int | str:
    """A capacity number as a non-negative int, or why it is nonsense."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{field} is not a number ({value!r})"
    if not math.isfinite(value):
        return f"{field} is {value}"
    if value < 0:
        return f"{field} is negative ({value})"
    if value > limit:
        return f"{field} {value} is more than {HUGE_FACTOR}× the location's maximum bound"
    return math.ceil(value)


def check_recommendation(
    rec: object, model: CapacityModel, bounds: LocationBounds, tenancy: int
) -> Recommendation | str:
    """The recommendation with whole, non-negative numbers of the right model, or the reason it
    cannot be used. Fractions are rounded up (the guards round to the tenancy later)."""
    if not isinstance(rec, Recommendation):
        return f"returned {type(rec).__name__}, not a Recommendation"
    s: object = rec.setting  # typed, but a plugin is third-party code
    if not isinstance(s, CapacitySetting):
        return f"setting is {type(s).__name__}, not a CapacitySetting"
    limit = max(bounds.max_capacity, tenancy, 1) * HUGE_FACTOR
    if model is CapacityModel.LEGACY:
        if s.on_demand is None:
            return "the group uses the legacy model (always-on + on-demand) but on_demand is None"
        if s.target_idle or s.maximum:
            return "legacy on-demand cannot be combined with target-idle or maximum"
        fields = {"always_on": s.always_on, "on_demand": s.on_demand}
    else:
        if s.on_demand is not None:
            return "the group uses the current model (target-idle, maximum) but on_demand is set"
        fields = {"always_on": s.always_on, "target_idle": s.target_idle, "maximum": s.maximum}
    counts: dict[str, int] = {}
    for name, value in fields.items():
        checked = _as_count(value, name, limit)
        if isinstance(checked, str):
            return checked
        counts[name] = checked
    if model is CapacityModel.LEGACY:
        setting = CapacitySetting(always_on=counts["always_on"], on_demand=counts["on_demand"])
    else:
        setting = CapacitySetting(
            always_on=counts["always_on"],
            target_idle=counts["target_idle"],
            maximum=counts["maximum"],
        )
    return Recommendation(
        setting=setting,
        reason=str(rec.reason),
        forecast_in_use=_finite(rec.forecast_in_use),
        forecast_arrivals_per_s=rec.forecast_arrivals_per_s,
        miss_budget=_positive(rec.miss_budget),
        fallback=_short_text(rec.fallback),
    )


def _short_text(value: object) -> str | None:
    """A plugin's free-text note, if it is text (third-party code may set anything)."""
    if not isinstance(value, str):
        return None
    return value if len(value) <= 500 else value[:499] + "…"


def _finite(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _positive(value: object) -> float | None:
    """A miss budget worth recording: finite and positive (its log is averaged)."""
    found = _finite(value)
    return found if found is not None and found > 0.0 else None


def _hold(
    loc: LocationState,
    ls: LocationSample | None,
    in_use: int,
    reason: str,
    error: str | None = None,
) -> LocationPlan:
    """Propose the current capacity (the plugin was not asked, or its answer was unusable)."""
    return LocationPlan(
        location=loc.name,
        status=loc.status,
        current=loc.setting,
        proposed=loc.setting,
        reason=reason,
        in_use=in_use,
        waiting=ls.waiting if ls is not None else 0,
        sample=ls,
        planned=error is not None,
        plugin_error=error,
    )


def hold_plan(state: GroupState, sample: GroupSample, error: str) -> GroupPlan:
    """A plan that holds every location of ``state``, with ``error`` as the plugin failure of
    the planned ones (the controller's answer to a plugin that did not return in time)."""
    tenancy = state.tenancy if state.tenancy >= 1 else stream_class_info(state.stream_class).tenancy
    samples = {s.location: s for s in sample.locations}
    plans: list[LocationPlan] = []
    for loc in state.locations:
        ls = samples.get(loc.name)
        in_use = max(loc.in_use, ls.in_use if ls is not None else 0)
        if ls is None:
            plans.append(_hold(loc, ls, in_use, "no sample for this location this tick: holding"))
        elif loc.status != "ACTIVE":
            plans.append(_hold(loc, ls, in_use, f"location is {loc.status}: not planned, holding"))
        else:
            plans.append(_hold(loc, ls, in_use, f"{error}; holding current capacity", error=error))
    return GroupPlan(
        group_id=state.group_id,
        at=sample.at,
        capacity_model=state.capacity_model,
        tenancy=tenancy,
        stream_class=state.stream_class,
        primary_location=state.primary_location,
        locations=tuple(plans),
        problems=(error,),
    )


def plan_group(
    *,
    state: GroupState,
    sample: GroupSample,
    histories: Mapping[str, LocationHistory],
    policy: Policy,
    plugin: PolicyPlugin,
    params: BaseModel,
    now: float,
    interval_s: float,
    lead_time: float | None = None,
) -> GroupPlan:
    """Ask ``plugin`` for every ACTIVE location of ``state`` and check each answer.

    ``state`` is the group as read this tick (the controller skips planning when
    GetStreamGroup failed); ``histories`` maps location → stored history (missing: empty),
    also of locations the group no longer has (they count in the month's spend and the
    lifecycle's group forecast).
    ``lead_time`` defaults to ``lead_time_s(stream class, interval_s)``. Never raises because
    of the plugin.
    """
    tenancy = state.tenancy if state.tenancy >= 1 else stream_class_info(state.stream_class).tenancy
    model = state.capacity_model
    lead = lead_time if lead_time is not None else lead_time_s(state.stream_class, interval_s)
    price = policy.price_for(state.stream_class)
    samples = {s.location: s for s in sample.locations}
    plans: list[LocationPlan] = []
    contexts: list[PolicyContext] = []
    problems: list[str] = []
    for loc in state.locations:
        ls = samples.get(loc.name)
        in_use = max(loc.in_use, ls.in_use if ls is not None else 0)

        if ls is None:
            plans.append(_hold(loc, ls, in_use, "no sample for this location this tick: holding"))
            continue
        bounds = policy.bounds_for(loc.name)
        # An empty history only when one is missing (building it costs two arrays and an
        # object per location and tick; the controller always passes one).
        history = histories.get(loc.name)
        ctx = PolicyContext(
            now=now,
            group=state,
            location=loc.name,
            sample=ls,
            history=history if history is not None else LocationHistory.empty(),
            bounds=bounds,
            tenancy=tenancy,
            capacity_model=model,
            slo=policy.slo,
            price_per_slot_hour=price,
            interval_s=interval_s,
            lead_time_s=lead,
        )
        contexts.append(ctx)
        if loc.status != "ACTIVE":
            plans.append(_hold(loc, ls, in_use, f"location is {loc.status}: not planned, holding"))
            continue
        checked: Recommendation | str
        try:
            checked = check_recommendation(plugin.decide(params, ctx), model, bounds, tenancy)
        except Exception as exc:  # a plugin bug must cost one plan, not the tick
            checked = f"raised {type(exc).__name__}: {exc}"
        if isinstance(checked, str):
            error = f"policy {plugin.name!r} at {loc.name}: {checked}"
            problems.append(error)
            plans.append(_hold(loc, ls, in_use, f"{error}; holding current capacity", error=error))
            continue
        plans.append(
            LocationPlan(
                location=loc.name,
                status=loc.status,
                current=loc.setting,
                proposed=checked.setting,
                reason=checked.reason,
                in_use=in_use,
                waiting=ls.waiting,
                sample=ls,
                forecast_in_use=checked.forecast_in_use,
                miss_budget=checked.miss_budget,
                fallback=checked.fallback,
            )
        )
    changes: tuple[LocationChange, ...] = ()
    try:
        # Most plugins have no location hook: the attribute test skips the Protocol
        # isinstance (tens of µs) with the same answer; location_changes decides otherwise.
        raw_changes: tuple[LocationChange, ...] = ()
        if getattr(plugin, "decide_locations", None) is not None:
            raw_changes = location_changes(
                plugin, params, GroupContext(now, state, tuple(contexts))
            )
        bad = [c for c in raw_changes if not isinstance(c, LocationChange)]
        if bad:
            problems.append(f"policy {plugin.name!r}: decide_locations returned {bad[0]!r}")
        else:
            changes = raw_changes
    except Exception as exc:  # same rule as decide()
        problems.append(
            f"policy {plugin.name!r}: decide_locations raised {type(exc).__name__}: {exc}"
        )
    if policy.location_lifecycle is not None:
        try:
            lifecycle = plan_locations(
                state=state,
                samples=samples,
                histories=histories,
                lifecycle=policy.location_lifecycle,
                now=now,
                lead_time_s=lead,
                # a tick or two may be missed (a slow tick, a restart); a longer hole is a
                # stretch nobody watched
                max_gap_s=WATCHED_TICKS * interval_s,
            )
        except Exception as exc:  # a bug here must cost the changes, not the capacity plan
            problems.append(f"location lifecycle raised {type(exc).__name__}: {exc}")
        else:
            managed = {c.location for c in lifecycle}
            changes = (*lifecycle, *(c for c in changes if c.location not in managed))
    month_spent: float | None = None
    if policy.budget.max_cost_per_month is not None:
        start = month_start(now)
        # Every location with a history counts, a removed one too: it billed until then.
        month_spent = sum(spent_usd(h, price, start, now) for h in histories.values())
    return GroupPlan(
        group_id=state.group_id,
        at=now,
        capacity_model=model,
        tenancy=tenancy,
        stream_class=state.stream_class,
        primary_location=state.primary_location,
        locations=tuple(plans),
        location_changes=changes,
        problems=tuple(problems),
        month_spent_usd=month_spent,
    )
