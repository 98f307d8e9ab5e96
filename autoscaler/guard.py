"""Guard: the safety rules every plan passes before anything is applied.

A plan comes from a plugin, which may be wrong, late, or fed bad data; the guards make what is
applied safe regardless. Each rule is a small pure function; when it changes or blocks part of
a plan it says so with a ``Veto`` value (reports carry every one), never an exception.

Per location, capacity is handled as three *levels* so one set of rules serves both models:
``always_on``, ``target_idle`` (0 for legacy) and ``ceiling`` (``maximum``; legacy:
``always_on + on_demand``). Every rule below applies to each level independently; a legacy
``on_demand`` is derived at the end as ``ceiling − always_on``.

Order (deliberate): gates first, then *pacing* rules that may only slow a change down, then
*hard limits* that win over pacing, then the *holds* that nothing may get around.

1. **Group gates** (whole group, short-circuit): group status not ACTIVE → frozen; global
   pause or ``Policy.paused`` → frozen. Nothing is recorded while frozen but the month's
   spend (a frozen group still bills).
2. **Location gates**: a location that is not ACTIVE, or was not planned, is held; a
   hand-made change (drift, against what we last applied) is respected for
   ``drift_cooldown_s`` (``DriftAction.RESPECT``) or overridden by the plan (``REVERT``).
   A setting this replica sent without seeing it confirmed (a lost reply, a tick cancelled
   mid-write, a process killed mid-write: ``GuardMemory.sent``) is not drift when the service
   shows it: it is taken as applied.
3. **Tenancy** rounds the plan up first, so every later rule works in whole hosts.
4. **Tolerance** drops changes smaller than ``behavior.tolerance`` (relative), except an
   increase needed to cover in-use + waiting. It runs before stabilisation, as in HPA, so
   the stabilisation window remembers what was actually recommended after the noise filter.
5. **Stabilisation** (HPA): scale down only to the *highest* recommendation of the last
   ``scale_down.stabilization_window_s``, scale up only to the *lowest* of the last
   ``scale_up.stabilization_window_s``. No scale-down before half the scale-down window has
   been watched without a hole (a fresh start, or an outage longer than half the window).
6. **Step limits** (HPA rules per direction: Slots/Percent per ``period_s``, selectPolicy
   Max/Min/Disabled), against the value at the start of each period, from the memory of
   applied changes. A rule that allows any change allows at least one host (tenancy), or a
   12-slot host could never move under an 8-slot rule; Percent of 0 is taken of one host.
7. **Cooldown**: within ``behavior.cooldown_s`` of the group's last applied change, hold,
   except increases needed to cover in-use + waiting.
8. **Bounds** (``policy.bounds_for``): ``min ≤ always_on``, every level ``≤ max`` (min rounded
   up, max rounded down to the tenancy; min wins if they cross). Bounds beat pacing.
9. **Consistency**: ceiling ≥ always_on, target_idle ≤ ceiling.
10. **Budget** (``budget.max_cost_per_hour``, worst case = price × Σ ceiling, less what the
    policy's other groups already plan): cut in ``budget.cut_order``: ``target_idle`` (the
    idle buffer and the ceiling room it needs), ``maximum`` (burst room above always-on or
    in-use + idle), ``always_on`` (down to in-use); non-primary locations first; never below
    in-use or the minimum bound. A cap beats pacing. ``budget.max_cost_per_month`` caps the
    *projected month*: spent so far this calendar month (UTC) + the worst-case hourly cost of
    the plan × the hours left in the month. That is an hourly cap of (monthly cap − spent) /
    hours left, applied with the same cuts; the tighter of the two caps binds. Spent so far
    per group is the larger of the plan's ``month_spent_usd`` (the histories: allocated slots
    × price × time) and what the guard memory carried forward tick by tick (the allocation
    seen at each tick billed until the next), so it survives history windows shorter than the
    month; the policy's other groups count with their last recorded spend (carried forward at
    most ``stale_after_s``). Spend before the controller's first tick of the month that the
    histories do not reach is not known and counts as 0.
11. **Never below in use**: ceiling ≥ in-use (rounded up to the tenancy). Beats everything
    above, bounds included: lowering capacity under live sessions helps nobody.
12. **Tenancy** and consistency again (no-ops unless a rule above has a bug).
13. **Fallback** (KEDA): after ``fallback.failure_threshold`` failed ticks in a row (plugin
    errors, incomplete or stale samples), ``static`` raises levels to the fallback values
    (only up, within the maximum bound); ``hold`` adds nothing to the stale rule below.
14. **Stale/incomplete data**: the group's sample is older than ``stale_after_s`` or
    incomplete, or the location's is missing/incomplete → no field may decrease (increases
    pass). Runs last among the capacity rules so nothing above can sneak a decrease through
    (a bound or budget cut waits for fresh data).
15. **Forecast-only** (``Mode.FORECAST_ONLY``): decided = current; the veto says what would
    have been set.

Location changes (the plugin's hook and ``spec.locationLifecycle``) are guarded separately:
never remove the primary location, one with live sessions, or one ACTIVATING/REMOVING;
nothing while paused, stale, or forecast-only (removals of a failed location still pass in
ACTIVE_WITH_ERRORS); an added location's capacity is rounded to the tenancy, clamped to its
bounds, then cut (same order) to what is left of the hourly and monthly caps after the
group's existing locations: with no room at all the add is refused.

``GuardMemory`` is the little state the rules need across ticks (recommendations within the
stabilisation windows, applied changes within the step periods, the last applied time and
setting per group/location, the settings sent but not confirmed, drift and failure counters).
``guard_group`` returns a new memory and never mutates its input; the controller calls
``GuardMemory.record_sent`` before a write, ``GuardMemory.record_applied`` only after one
succeeded, ``GuardMemory.adopt`` on a standby (the leader's settings are not drift), and
persists ``to_json()``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from autoscaler.domain.classes import round_down_to_tenancy, round_up_to_tenancy
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupDecision,
    GroupSample,
    GroupState,
    LocationBounds,
    LocationChange,
    LocationDecision,
    Veto,
)
from autoscaler.domain.policy import (
    Behavior,
    DirectionBehavior,
    DriftAction,
    FallbackBehavior,
    Mode,
    Policy,
    RuleType,
    SelectPolicy,
)
from autoscaler.planner import GroupPlan, LocationPlan, month_start

MEMORY_VERSION = 1
LEVELS = ("always_on", "target_idle", "ceiling")
TICK_S = 60.0  # the controller's default tick interval (``ControllerOptions.interval_s``)
Key = tuple[str, str]  # (group id, location)


# --------------------------------------------------------------------------- levels


@dataclass(frozen=True, slots=True)
class Levels:
    """A location's capacity as three numbers the rules treat alike (see module docstring)."""

    always_on: int
    target_idle: int
    ceiling: int

    @staticmethod
    def of(setting: CapacitySetting) -> Levels:
        return Levels(setting.always_on, setting.idle_target, setting.ceiling)

    def get(self, name: str) -> int:
        value: int = getattr(self, name)
        return value

    def with_(self, name: str, value: int) -> Levels:
        # spelled out: dataclasses.replace costs several times more on this hot path
        if name == "always_on":
            return Levels(value, self.target_idle, self.ceiling)
        if name == "target_idle":
            return Levels(self.always_on, value, self.ceiling)
        if name == "ceiling":
            return Levels(self.always_on, self.target_idle, value)
        return replace(self, **{name: value})  # an unknown name raises as replace does

    def setting(self, model: CapacityModel) -> CapacitySetting:
        if model is CapacityModel.LEGACY:
            return CapacitySetting(
                always_on=self.always_on, on_demand=max(0, self.ceiling - self.always_on)
            )
        return CapacitySetting(
            always_on=self.always_on, target_idle=self.target_idle, maximum=self.ceiling
        )

    def as_list(self) -> list[int]:
        return [self.always_on, self.target_idle, self.ceiling]


def _label(name: str, model: CapacityModel) -> str:
    if name == "ceiling":
        return "always-on + on-demand" if model is CapacityModel.LEGACY else "maximum"
    return name.replace("_", "-")


# --------------------------------------------------------------------------- memory


@dataclass(frozen=True, slots=True)
class RecommendationRecord:
    at: float
    levels: Levels


@dataclass(frozen=True, slots=True)
class AppliedRecord:
    at: float
    before: Levels
    after: Levels


@dataclass(frozen=True, slots=True)
class MonthSpend:
    """A group's spend this month as of ``at``, and its allocated cost rate then (USD/h)."""

    policy: str
    month_start: float
    spent_usd: float
    at: float
    rate_per_hour: float

    def carried_to(self, now: float, month: float, max_carry_s: float | None = None) -> float:
        """USD spent in the month starting at ``month`` up to ``now``: the recorded spend if it
        is of that month, plus the rate held since ``at`` (at most ``max_carry_s``)."""
        base = self.spent_usd if self.month_start == month else 0.0
        held = max(0.0, now - max(self.at, month))
        if max_carry_s is not None:
            held = min(held, max_carry_s)
        return base + self.rate_per_hour * held / 3600.0


@dataclass(frozen=True, slots=True)
class GuardMemory:
    """What the guards remember between ticks; persisted by the controller as JSON.

    Keys are (group id, location), or the group id. Treat as immutable: every update returns
    a new memory.
    """

    recommendations: Mapping[Key, tuple[RecommendationRecord, ...]] = field(default_factory=dict)
    applied: Mapping[Key, tuple[AppliedRecord, ...]] = field(default_factory=dict)
    last_applied_at: Mapping[str, float] = field(default_factory=dict)
    last_applied: Mapping[Key, CapacitySetting] = field(default_factory=dict)
    drift_seen_at: Mapping[Key, float] = field(default_factory=dict)
    failures: Mapping[str, int] = field(default_factory=dict)  # failed ticks in a row
    month_spend: Mapping[str, MonthSpend] = field(default_factory=dict)  # by group (budget)
    # Settings sent in an update whose success this replica did not see (reply lost, tick
    # cancelled, process killed): if the service shows one, it landed, and it is not drift.
    sent: Mapping[Key, CapacitySetting] = field(default_factory=dict)

    def record_sent(self, decision: GroupDecision) -> GuardMemory:
        """The memory before ``decision``'s update is sent: its settings may land even if the
        reply never comes."""
        changed = decision.changed_locations
        if not changed:
            return self
        sent = dict(self.sent)
        for d in changed:
            sent[(decision.group_id, d.location)] = d.decided
        return replace(self, sent=sent)

    def adopt(self, group_id: str, observed: Mapping[str, CapacitySetting]) -> GuardMemory:
        """The memory of a replica that does not lead: what the service shows is the
        leader's doing, not a change outside the controller, so it becomes the last applied
        setting (and a later failover does not read the old leader's settings as drift)."""
        last = dict(self.last_applied)
        drift = dict(self.drift_seen_at)
        sent = dict(self.sent)
        for loc, setting in observed.items():
            key = (group_id, loc)
            last[key] = setting
            drift.pop(key, None)
            sent.pop(key, None)
        return replace(self, last_applied=last, drift_seen_at=drift, sent=sent)

    def record_applied(self, decision: GroupDecision, at: float) -> GuardMemory:
        """The memory after ``decision`` was successfully applied at ``at`` (call only then)."""
        g = decision.group_id
        applied = dict(self.applied)
        last = dict(self.last_applied)
        drift = dict(self.drift_seen_at)
        sent = dict(self.sent)
        for d in decision.locations:
            key = (g, d.location)
            last[key] = d.decided
            drift.pop(key, None)
            sent.pop(key, None)
            if d.changed:
                rec = AppliedRecord(at, Levels.of(d.current), Levels.of(d.decided))
                applied[key] = (*applied.get(key, ()), rec)
        stamps = dict(self.last_applied_at)
        if any(d.changed for d in decision.locations):
            stamps[g] = at
        return GuardMemory(  # every field given: cheaper than dataclasses.replace
            recommendations=self.recommendations,
            applied=applied,
            last_applied_at=stamps,
            last_applied=last,
            drift_seen_at=drift,
            failures=self.failures,
            month_spend=self.month_spend,
            sent=sent,
        )

    def to_json(self) -> str:
        def setting(s: CapacitySetting) -> dict[str, int | None]:
            return {
                "always_on": s.always_on,
                "target_idle": s.target_idle,
                "maximum": s.maximum,
                "on_demand": s.on_demand,
            }

        doc: dict[str, Any] = {
            "version": MEMORY_VERSION,
            "recommendations": [
                [g, loc, [[r.at, *r.levels.as_list()] for r in recs]]
                for (g, loc), recs in sorted(self.recommendations.items())
            ],
            "applied": [
                [g, loc, [[r.at, *r.before.as_list(), *r.after.as_list()] for r in recs]]
                for (g, loc), recs in sorted(self.applied.items())
            ],
            "last_applied_at": dict(sorted(self.last_applied_at.items())),
            "last_applied": [
                [g, loc, setting(s)] for (g, loc), s in sorted(self.last_applied.items())
            ],
            "drift_seen_at": [[g, loc, t] for (g, loc), t in sorted(self.drift_seen_at.items())],
            "sent": [[g, loc, setting(s)] for (g, loc), s in sorted(self.sent.items())],
            "failures": dict(sorted(self.failures.items())),
            "month_spend": [
                [g, m.policy, m.month_start, m.spent_usd, m.at, m.rate_per_hour]
                for g, m in sorted(self.month_spend.items())
            ],
        }
        return json.dumps(doc, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> GuardMemory:
        """Inverse of ``to_json``; raises ValueError on another version or a malformed doc."""
        try:
            doc = json.loads(text)
            if doc.get("version") != MEMORY_VERSION:
                raise ValueError(f"guard memory version {doc.get('version')!r} is not supported")

            def lv(values: list[int]) -> Levels:
                return Levels(int(values[0]), int(values[1]), int(values[2]))

            return GuardMemory(
                recommendations={
                    (g, loc): tuple(RecommendationRecord(float(r[0]), lv(r[1:4])) for r in recs)
                    for g, loc, recs in doc["recommendations"]
                },
                applied={
                    (g, loc): tuple(
                        AppliedRecord(float(r[0]), lv(r[1:4]), lv(r[4:7])) for r in recs
                    )
                    for g, loc, recs in doc["applied"]
                },
                last_applied_at={g: float(t) for g, t in doc["last_applied_at"].items()},
                last_applied={(g, loc): CapacitySetting(**s) for g, loc, s in doc["last_applied"]},
                drift_seen_at={(g, loc): float(t) for g, loc, t in doc["drift_seen_at"]},
                failures={g: int(n) for g, n in doc["failures"].items()},
                month_spend={  # absent in memories written before the monthly budget
                    str(e[0]): MonthSpend(
                        str(e[1]), float(e[2]), float(e[3]), float(e[4]), float(e[5])
                    )
                    for e in doc.get("month_spend", [])
                },
                # absent in memories written before it was kept
                sent={(g, loc): CapacitySetting(**s) for g, loc, s in doc.get("sent", [])},
            )
        except (KeyError, TypeError, IndexError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"malformed guard memory: {exc}") from exc


# --------------------------------------------------------------------------- per-location rules


@dataclass(frozen=True, slots=True)
class LocationInput:
    """What the per-location rules may look at."""

    group_id: str
    location: str
    now: float
    model: CapacityModel
    tenancy: int
    current: Levels
    in_use: int
    waiting: int
    bounds: LocationBounds
    behavior: Behavior
    recommendations: tuple[RecommendationRecord, ...] = ()  # earlier ones, oldest first
    applied: tuple[AppliedRecord, ...] = ()
    last_applied_at: float | None = None  # the group's last applied change
    interval_s: float = TICK_S  # the controller's tick interval

    def urgent(self, name: str, value: int) -> bool:
        """An increase of always-on or the ceiling while it does not cover in-use + waiting."""
        cur = self.current.get(name)
        return name in ("always_on", "ceiling") and value > cur and cur < self.in_use + self.waiting

    def veto(self, guard: str, reason: str) -> Veto:
        return Veto(guard=guard, location=self.location, reason=reason)


Outcome = tuple[Levels, tuple[Veto, ...]]
Rule = Callable[[LocationInput, Levels], Outcome]


def _changes(ctx: LocationInput, before: Levels, after: Levels) -> str:
    return ", ".join(
        f"{_label(n, ctx.model)} {before.get(n)}→{after.get(n)}"
        for n in LEVELS
        if before.get(n) != after.get(n)
    )


def round_to_tenancy(ctx: LocationInput, p: Levels) -> Outcome:
    t = ctx.tenancy
    a, i, c = p.always_on, p.target_idle, p.ceiling
    ra, ri, rc = round_up_to_tenancy(a, t), round_up_to_tenancy(i, t), round_up_to_tenancy(c, t)
    if ra == a and ri == i and rc == c:
        return p, ()
    out = Levels(ra, ri, rc)
    return out, (ctx.veto("tenancy", f"rounded up to whole hosts of {t}: {_changes(ctx, p, out)}"),)


def tolerance(ctx: LocationInput, p: Levels) -> Outcome:
    tol = ctx.behavior.tolerance
    if tol <= 0:
        return p, ()
    current = ctx.current
    values = [p.always_on, p.target_idle, p.ceiling]
    changed = False
    for k, cur in enumerate((current.always_on, current.target_idle, current.ceiling)):
        new = values[k]
        if new != cur and abs(new - cur) / max(cur, 1) < tol and not ctx.urgent(LEVELS[k], new):
            values[k] = cur
            changed = True
    if not changed:  # a dropped change restores a differing value: out != p otherwise
        return p, ()
    out = Levels(*values)
    return out, (
        ctx.veto("tolerance", f"ignored changes under {tol:.0%}: {_changes(ctx, out, p)}"),
    )


def _window(ctx: LocationInput, name: str, proposed: int, window_s: float) -> list[int]:
    cutoff = ctx.now - window_s
    return [r.levels.get(name) for r in ctx.recommendations if r.at > cutoff] + [proposed]


def _window_covered(ctx: LocationInput, window_s: float) -> bool:
    """Whether the recommendations have watched, without a hole, at least the last half of
    the window.

    A hole is a stretch between records (or from the newest one to now) longer than half the
    window and two ticks: an outage of the reads or of the controller, which recorded
    nothing. After one, the records from before it say nothing about the window, and the
    window is watched afresh, as at a start.
    """
    if window_s <= 0:
        return True
    recs = ctx.recommendations
    if not recs:
        return False
    hole = max(0.5 * window_s, 2.0 * ctx.interval_s)
    watched_since = ctx.now
    for r in reversed(recs):
        if watched_since - r.at > hole:
            break
        watched_since = r.at
        if watched_since <= ctx.now - 0.5 * window_s:
            return True
    return False


def stabilise(ctx: LocationInput, p: Levels) -> Outcome:
    up, down = ctx.behavior.scale_up, ctx.behavior.scale_down
    now = ctx.now
    if (
        up.stabilization_window_s <= 0
        and down.stabilization_window_s <= 0
        and all(r.at <= now for r in ctx.recommendations)
    ):
        # No window: each level's lowest and highest recommendation is the proposal itself
        # (the window is covered by definition), so nothing changes.
        return p, ()
    out = p
    notes: list[str] = []
    for n in LEVELS:
        cur, new = ctx.current.get(n), p.get(n)
        value = cur
        lowest = min(_window(ctx, n, new, up.stabilization_window_s))
        highest = max(_window(ctx, n, new, down.stabilization_window_s))
        if not _window_covered(ctx, down.stabilization_window_s):
            # A fresh controller has not watched long enough to know demand stayed low:
            # hold the current value until half the window has been observed.
            highest = max(highest, cur)
        value = max(value, lowest)
        value = min(value, highest)
        if value != new:
            window = down if new < value else up
            which = "highest" if new < value else "lowest"
            notes.append(
                f"{_label(n, ctx.model)} {value} not {new} ({which} recommendation of the last"
                f" {window.stabilization_window_s:g} s)"
            )
            out = out.with_(n, value)
    if not notes:
        return p, ()
    return out, (ctx.veto("stabilisation", "; ".join(notes)),)


def _rule_change(rule_type: RuleType, value: float, start: int, tenancy: int, up: bool) -> int:
    """Most slots one rule lets a level move from ``start`` in its period."""
    if rule_type is RuleType.SLOTS:
        return math.floor(value)
    base = max(start, tenancy) if up else start
    change = math.floor(base * value / 100.0)
    if value > 0 and base > 0:
        # a percentage that rounds to nothing still allows one slot (then one host, below):
        # otherwise "20 % per minute" could never lower a buffer of 4
        change = max(change, 1)
    return change


def step_limit(
    direction: DirectionBehavior,
    *,
    current: int,
    name: str,
    applied: tuple[AppliedRecord, ...],
    now: float,
    tenancy: int,
    up: bool,
) -> int | None:
    """The furthest a level may go this tick in one direction (HPA semantics), or None when
    the direction has no rules (unlimited)."""
    if direction.select_policy is SelectPolicy.DISABLED:
        return current
    if not direction.rules:
        return None
    limits: list[int] = []
    for rule in direction.rules:
        moved = 0
        for rec in applied:
            if rec.at > now - rule.period_s:
                delta = rec.after.get(name) - rec.before.get(name)
                moved += max(0, delta) if up else max(0, -delta)
        start = max(0, current - moved) if up else current + moved
        change = _rule_change(rule.type, rule.value, start, tenancy, up)
        limits.append(start + change if up else start - change)
    pick = max if (direction.select_policy is SelectPolicy.MAX) == up else min
    raw = pick(limits)
    if up:
        limit = round_down_to_tenancy(raw, tenancy)
        if raw > current and limit <= current:
            limit = current + tenancy  # any allowed change allows one host
        return max(limit, current)
    limit = round_up_to_tenancy(raw, tenancy)
    if raw < current and limit >= current:
        limit = current - tenancy
    return max(0, min(limit, current))


def step_limits(ctx: LocationInput, p: Levels) -> Outcome:
    out = p
    notes: list[str] = []
    for n in LEVELS:
        cur, new = ctx.current.get(n), p.get(n)
        if new == cur:
            continue
        up = new > cur
        limit = step_limit(
            ctx.behavior.scale_up if up else ctx.behavior.scale_down,
            current=cur,
            name=n,
            applied=ctx.applied,
            now=ctx.now,
            tenancy=ctx.tenancy,
            up=up,
        )
        if limit is None:
            continue
        value = min(new, limit) if up else max(new, limit)
        if value != new:
            verb = "scale-up" if up else "scale-down"
            notes.append(f"{_label(n, ctx.model)} {cur}→{value} not {new} ({verb} step limit)")
            out = out.with_(n, value)
    if not notes:
        return p, ()
    return out, (ctx.veto("step-limit", "; ".join(notes)),)


def cooldown(ctx: LocationInput, p: Levels) -> Outcome:
    cd = ctx.behavior.cooldown_s
    last_applied_at = ctx.last_applied_at
    if last_applied_at is None or cd <= 0 or ctx.now - last_applied_at >= cd:
        return p, ()
    out = p
    for n in LEVELS:
        if p.get(n) != ctx.current.get(n) and not ctx.urgent(n, p.get(n)):
            out = out.with_(n, ctx.current.get(n))
    if out == p:
        return p, ()
    left = cd - (ctx.now - last_applied_at)
    return out, (
        ctx.veto("cooldown", f"held {_changes(ctx, out, p)} for {left:.0f} s more of cooldown"),
    )


def effective_bounds(bounds: LocationBounds, tenancy: int) -> tuple[int, int]:
    """(min, max) in whole hosts: min rounded up, max rounded down; min wins if they cross."""
    lo = round_up_to_tenancy(bounds.min_capacity, tenancy)
    hi = round_down_to_tenancy(bounds.max_capacity, tenancy)
    return lo, max(lo, hi)


def clamp_to_bounds(ctx: LocationInput, p: Levels) -> Outcome:
    lo, hi = effective_bounds(ctx.bounds, ctx.tenancy)
    a, i, c = p.always_on, p.target_idle, p.ceiling
    ca, ci, cc = min(max(a, lo), hi), min(i, hi), min(max(c, lo), hi)
    if ca == a and ci == i and cc == c:
        return p, ()
    out = Levels(always_on=ca, target_idle=ci, ceiling=cc)
    return out, (ctx.veto("bounds", f"kept within [{lo}, {hi}]: {_changes(ctx, p, out)}"),)


def consistency(ctx: LocationInput, p: Levels) -> Outcome:
    ceiling = max(p.ceiling, p.always_on)
    idle = 0 if ctx.model is CapacityModel.LEGACY else min(p.target_idle, ceiling)
    if idle == p.target_idle and ceiling == p.ceiling:
        return p, ()
    out = Levels(p.always_on, idle, ceiling)
    return out, (ctx.veto("consistency", f"kept 0 ≤ always-on ≤ ceiling: {_changes(ctx, p, out)}"),)


def never_below_in_use(ctx: LocationInput, p: Levels) -> Outcome:
    need = round_up_to_tenancy(ctx.in_use, ctx.tenancy)
    if p.ceiling >= need:
        return p, ()
    out = p.with_("ceiling", need)
    return out, (
        ctx.veto(
            "in-use", f"{_label('ceiling', ctx.model)} {p.ceiling}→{need}: {ctx.in_use} in use"
        ),
    )


# The per-location chain, in order (steps 3–9 and 11–12 of the module docstring).
PRE_BUDGET: tuple[Rule, ...] = (round_to_tenancy, tolerance)
POST_TOLERANCE: tuple[Rule, ...] = (stabilise, step_limits, cooldown, clamp_to_bounds, consistency)
POST_BUDGET: tuple[Rule, ...] = (never_below_in_use, round_to_tenancy, consistency)


def run_chain(rules: tuple[Rule, ...], ctx: LocationInput, p: Levels) -> Outcome:
    vetoes: list[Veto] = []
    for rule in rules:
        p, v = rule(ctx, p)
        vetoes.extend(v)
    return p, tuple(vetoes)


# --------------------------------------------------------------------------- group rules


def budget_cut(
    items: list[tuple[LocationInput, Levels]],
    *,
    price_per_slot_hour: float,
    cap_per_hour: float | None,
    spent_elsewhere_per_hour: float,
    cut_order: tuple[str, ...],
    primary: str,
    cap_text: str | None = None,
) -> tuple[list[Levels], tuple[Veto, ...]]:
    """Lower levels until price × Σ ceiling fits the cap (see module docstring, step 10).

    ``cap_text`` names the cap in the vetoes (default ``$X/h``; the monthly cap passes its own
    wording with the hourly figure it comes to)."""
    levels = [p for _, p in items]
    if cap_per_hour is None or price_per_slot_hour <= 0:
        return levels, ()
    remaining = cap_per_hour - spent_elsewhere_per_hour
    planned = sum(p.ceiling for p in levels) * price_per_slot_hour
    if planned <= remaining + 1e-9:
        return levels, ()
    need = math.ceil((planned - remaining) / price_per_slot_hour - 1e-9)
    # Cut non-primary locations first (last listed first), the primary last.
    order = sorted(range(len(items)), key=lambda i: (items[i][0].location == primary, -i))
    cuts: dict[int, list[str]] = {}
    for what in cut_order:
        for i in order:
            if need <= 0:
                break
            ctx, p = items[i][0], levels[i]
            t = ctx.tenancy
            floor = _budget_floor(ctx.in_use, ctx.bounds, t)
            base = max(p.always_on, floor)
            idle_part = max(0, min(p.ceiling, base + p.target_idle) - base)
            burst = max(0, p.ceiling - base - idle_part)
            room = {"target_idle": idle_part, "maximum": burst, "always_on": p.always_on - floor}
            step = min(round_up_to_tenancy(need, t), max(0, room.get(what, 0)))
            if step <= 0:
                continue
            if what == "target_idle":
                new = Levels(p.always_on, max(0, p.target_idle - step), p.ceiling - step)
            elif what == "maximum":
                new = p.with_("ceiling", p.ceiling - step)
            else:  # always_on: the ceiling comes down with the floor it rested on
                new_ao = p.always_on - step
                drop = base - max(new_ao, floor)
                new = Levels(new_ao, p.target_idle, max(new_ao, p.ceiling - drop))
            saved = p.ceiling - new.ceiling
            need -= saved
            levels[i] = new
            label = _label("ceiling" if what == "maximum" else what, ctx.model)
            cuts.setdefault(i, []).append(f"{label} −{step}")
    vetoes = [
        Veto(
            guard="budget",
            location=items[i][0].location,
            reason=f"cut {', '.join(c)} to fit {cap_text or f'${cap_per_hour:g}/h'}",
        )
        for i, c in sorted(cuts.items())
    ]
    after = sum(p.ceiling for p in levels) * price_per_slot_hour
    summary = (
        f"planned ${planned:.2f}/h (+ ${spent_elsewhere_per_hour:.2f}/h elsewhere) over"
        f" {cap_text or f'the ${cap_per_hour:g}/h cap'}; now ${after:.2f}/h"
    )
    if need > 0:
        summary += ": cannot cut further without going below in-use or the minimum bounds"
    vetoes.insert(0, Veto(guard="budget", location=None, reason=summary))
    return levels, tuple(vetoes)


def worst_case_cost_per_hour(decision: GroupDecision, price_per_slot_hour: float) -> float:
    """What a decision may cost per hour at most, as the budget rule counts it (price × Σ
    ceiling, added locations included): the controller sums this over a policy's groups for
    ``budget_spent_elsewhere_per_hour``."""
    added = sum(
        c.setting.ceiling
        for c in decision.location_changes
        if c.action == "add" and c.setting is not None
    )
    return price_per_slot_hour * (sum(d.decided.ceiling for d in decision.locations) + added)


def budget_floor_per_hour(plan: GroupPlan, policy: Policy) -> float:
    """The least a group can cost per hour whatever the budget says: every location at the
    larger of its sessions in use and its minimum bound, in whole hosts (the budget cut stops
    there). The controller counts it for the policy's groups not yet decided in a tick, so
    the first group decided cannot take the room the later ones cannot give up."""
    price = policy.price_for(plan.stream_class)
    if price <= 0:
        return 0.0
    t = max(plan.tenancy, 1)
    return price * sum(
        _budget_floor(lp.in_use, policy.bounds_for(lp.location), t) for lp in plan.locations
    )


def _budget_floor(in_use: int, bounds: LocationBounds, tenancy: int) -> int:
    """Slots a budget cut never goes below: the sessions in use or the minimum bound, in
    whole hosts."""
    return max(round_up_to_tenancy(in_use, tenancy), effective_bounds(bounds, tenancy)[0])


def month_end(now: float) -> float:
    """Epoch seconds of the first instant of the calendar month after ``now``'s (UTC)."""
    d = datetime.fromtimestamp(now, UTC)
    year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    return datetime(year, month, 1, tzinfo=UTC).timestamp()


@dataclass(frozen=True, slots=True)
class BudgetCap:
    """The hourly cap that binds this tick, and how to name it in vetoes."""

    per_hour: float | None
    text: str | None = None  # None: the plain hourly cap


def binding_cap(
    *,
    cap_per_hour: float | None,
    cap_per_month: float | None,
    spent_this_month: float,
    now: float,
) -> BudgetCap:
    """The tighter of the hourly cap and the monthly cap turned hourly: (monthly cap − spent
    this month) / hours left in the month (at least one minute, so the last minute of the
    month still divides)."""
    if cap_per_month is None:
        return BudgetCap(cap_per_hour)
    hours_left = max((month_end(now) - now) / 3600.0, 1.0 / 60.0)
    monthly = (cap_per_month - spent_this_month) / hours_left
    if cap_per_hour is not None and cap_per_hour <= monthly:
        return BudgetCap(cap_per_hour)
    text = (
        f"${cap_per_month:g}/month (${spent_this_month:.2f} spent, {hours_left:.0f} h left:"
        f" ${monthly:.2f}/h)"
    )
    return BudgetCap(monthly, text)


def _budget_adds(
    changes: tuple[LocationChange, ...],
    *,
    cap: BudgetCap,
    policy: Policy,
    plan: GroupPlan,
    now: float,
    spent_elsewhere_per_hour: float,
) -> tuple[tuple[LocationChange, ...], tuple[Veto, ...]]:
    """Cut the capacity of added locations to what the cap leaves after everything else (they
    are cut first, in the budget's order); refuse an add left with nothing."""
    adds = [c for c in changes if c.action == "add" and c.setting is not None]
    price = policy.price_for(plan.stream_class)
    if not adds or cap.per_hour is None or price <= 0:
        return changes, ()
    items = [
        (
            LocationInput(
                group_id=plan.group_id,
                location=c.location,
                now=now,
                model=plan.capacity_model,
                tenancy=plan.tenancy,
                current=Levels(0, 0, 0),
                in_use=0,
                waiting=0,
                bounds=policy.bounds_for(c.location),
                behavior=policy.behavior,
            ),
            Levels.of(c.setting),
        )
        for c in adds
        if c.setting is not None
    ]
    levels, vetoes = budget_cut(
        items,
        price_per_slot_hour=price,
        cap_per_hour=cap.per_hour,
        spent_elsewhere_per_hour=spent_elsewhere_per_hour,
        cut_order=policy.budget.cut_order,
        primary=plan.primary_location,
        cap_text=cap.text,
    )
    if not vetoes:
        return changes, ()
    out_vetoes = list(vetoes)
    cut = {c.location: lv for c, lv in zip(adds, levels, strict=True)}
    kept: list[LocationChange] = []
    for c in changes:
        lv = cut.get(c.location) if c.action == "add" else None
        if lv is None or c.setting is None:
            kept.append(c)
        elif lv.ceiling == 0 and c.setting.ceiling > 0:
            out_vetoes.append(
                Veto(
                    "location-change",
                    c.location,
                    f"add refused: no room left under the budget cap"
                    f" ({cap.text or f'${cap.per_hour:g}/h'})",
                )
            )
        else:
            kept.append(replace(c, setting=lv.setting(plan.capacity_model)))
    return tuple(kept), tuple(out_vetoes)


def _no_decrease(current: CapacitySetting, decided: CapacitySetting) -> CapacitySetting:
    """Each field of ``decided`` raised to at least the current one (stale-data rule)."""
    if decided.on_demand is not None:
        return CapacitySetting(
            always_on=max(current.always_on, decided.always_on),
            on_demand=max(current.on_demand or 0, decided.on_demand),
        )
    return CapacitySetting(
        always_on=max(current.always_on, decided.always_on),
        target_idle=max(current.target_idle, decided.target_idle),
        maximum=max(current.maximum, decided.maximum),
    )


def fallback_levels(ctx: LocationInput, p: Levels, policy: Policy) -> Outcome:
    fb = policy.fallback
    t = ctx.tenancy
    _, hi = effective_bounds(ctx.bounds, t)
    floor = Levels(
        min(round_up_to_tenancy(fb.always_on, t), hi),
        0 if ctx.model is CapacityModel.LEGACY else min(round_up_to_tenancy(fb.target_idle, t), hi),
        min(round_up_to_tenancy(max(fb.maximum, fb.always_on), t), hi),
    )
    out = Levels(*(max(p.get(n), floor.get(n)) for n in LEVELS))
    if out == p:
        return p, ()
    return out, (ctx.veto("fallback", f"static fallback raised {_changes(ctx, p, out)}"),)


# --------------------------------------------------------------------------- location changes


def guard_location_changes(
    changes: tuple[LocationChange, ...],
    *,
    state: GroupState,
    plan: GroupPlan,
    policy: Policy,
    blocked: str | None,
    stale: bool,
) -> tuple[tuple[LocationChange, ...], tuple[Veto, ...]]:
    """Keep the safe location changes; veto the rest (primary, live sessions, status, …)."""
    kept: list[LocationChange] = []
    vetoes: list[Veto] = []
    plans = {lp.location: lp for lp in plan.locations}
    for ch in changes:

        def no(why: str, ch: LocationChange = ch) -> None:
            vetoes.append(Veto("location-change", ch.location, f"{ch.action} refused: {why}"))

        loc = state.location(ch.location)
        if blocked is not None:
            no(blocked)
        elif ch.action == "add":
            if state.status != "ACTIVE":
                no(f"group is {state.status}")
            elif loc is not None:
                no("the location is already part of the group")
            elif ch.setting is None:
                no("no capacity given (the service's defaults are never relied on)")
            else:
                t = plan.tenancy
                lo, hi = effective_bounds(policy.bounds_for(ch.location), t)
                lv = Levels.of(ch.setting)
                ao = min(max(round_up_to_tenancy(lv.always_on, t), lo), hi)
                ceiling = max(ao, min(max(round_up_to_tenancy(lv.ceiling, t), lo), hi))
                idle = min(round_up_to_tenancy(lv.target_idle, t), ceiling)
                setting = Levels(ao, idle, ceiling).setting(plan.capacity_model)
                if setting != ch.setting:
                    vetoes.append(
                        Veto(
                            "location-change",
                            ch.location,
                            f"add: capacity set to {setting.describe()} (tenancy, bounds, model)",
                        )
                    )
                kept.append(replace(ch, setting=setting))
        elif ch.action == "remove":
            lp = plans.get(ch.location)
            if state.status not in ("ACTIVE", "ACTIVE_WITH_ERRORS"):
                no(f"group is {state.status}")
            elif loc is None:
                no("the location is not part of the group")
            elif ch.location == state.primary_location:
                no("the primary location cannot be removed (only set to zero)")
            elif loc.status in ("ACTIVATING", "REMOVING"):
                no(f"location is {loc.status}")
            elif stale:
                no("data is stale or incomplete: never remove on missing data")
            elif loc.in_use > 0 or (lp is not None and (lp.in_use > 0 or lp.waiting > 0)):
                no("the location has live sessions")
            else:
                kept.append(ch)
        else:
            no(f"unknown action {ch.action!r}")
    return tuple(kept), tuple(vetoes)


# --------------------------------------------------------------------------- the group


def _prune_recs(
    recs: tuple[RecommendationRecord, ...], now: float, keep_s: float
) -> tuple[RecommendationRecord, ...]:
    return tuple(r for r in recs if now - keep_s < r.at <= now)


def _prune_applied(
    recs: tuple[AppliedRecord, ...], now: float, keep_s: float
) -> tuple[AppliedRecord, ...]:
    return tuple(r for r in recs if now - keep_s < r.at <= now)


def is_stale(sample: GroupSample, policy: Policy, now: float) -> bool:
    return (not sample.complete) or sample.state is None or now - sample.at > policy.stale_after_s


MONTH_SPEND_KEEP_S = 40 * 86400.0  # a group's spend record outlives its month, then goes


def _month_spend(
    plan: GroupPlan,
    *,
    state: GroupState,
    policy: Policy,
    memory: GuardMemory,
    now: float,
    price: float,
) -> tuple[float, dict[str, MonthSpend]]:
    """What the policy spent this month (UTC) up to ``now``, and the memory's spend records
    with this group's brought up to date (see the module docstring, step 10)."""
    g = plan.group_id
    m0 = month_start(now)
    prev = memory.month_spend.get(g)
    carried = prev.carried_to(now, m0) if prev is not None and prev.at <= now else 0.0
    # The plan's figure is for the month of its sample: a tick sampled before midnight UTC on
    # the 1st and guarded after it must not carry last month's spend into this one.
    planned = plan.month_spent_usd if month_start(plan.at) == m0 else None
    mine = max(carried, planned or 0.0)
    rate = price * sum(loc.allocated for loc in state.locations)
    records = {k: m for k, m in memory.month_spend.items() if now - m.at <= MONTH_SPEND_KEEP_S}
    records[g] = MonthSpend(policy.name, m0, mine, now, rate)
    others = sum(
        m.carried_to(now, m0, policy.stale_after_s)
        for k, m in records.items()
        if k != g and m.policy == policy.name and m.at <= now
    )
    return mine + others, records


def guard_group(
    plan: GroupPlan,
    *,
    state: GroupState,
    sample: GroupSample,
    policy: Policy,
    memory: GuardMemory,
    now: float,
    paused: bool = False,
    budget_spent_elsewhere_per_hour: float = 0.0,
    interval_s: float = TICK_S,
) -> tuple[GroupDecision, GuardMemory]:
    """Pass ``plan`` through every guard (order in the module docstring).

    ``paused`` is the global pause flag; ``budget_spent_elsewhere_per_hour`` is the worst-case
    cost the policy's other groups already planned this tick (the budget is per policy);
    ``interval_s`` the controller's tick interval (what a hole in the memory is measured by).
    Returns the decision and the new memory; ``memory`` is not changed.
    """
    # mostly positional: passing keywords costs a few tenths of a µs each, every tick
    quiet = _guard_group_quiet(
        plan,
        state,
        sample,
        policy,
        memory,
        now=now,
        paused=paused,
        budget_spent_elsewhere_per_hour=budget_spent_elsewhere_per_hour,
    )
    if quiet is not None:
        return quiet
    return _guard_group_chain(
        plan,
        state=state,
        sample=sample,
        policy=policy,
        memory=memory,
        now=now,
        paused=paused,
        budget_spent_elsewhere_per_hour=budget_spent_elsewhere_per_hour,
        interval_s=interval_s,
    )


def _guard_group_quiet(
    plan: GroupPlan,
    state: GroupState,
    sample: GroupSample,
    policy: Policy,
    memory: GuardMemory,
    *,
    now: float,
    paused: bool,
    budget_spent_elsewhere_per_hour: float,
) -> tuple[GroupDecision, GuardMemory] | None:
    """``_guard_group_chain``'s result for the common quiet tick, or None when it is not one.

    Quiet: the group is ACTIVE and not paused, its data fresh and complete, no location change
    asked, no monthly cap, not forecast-only; every location ACTIVE, without drift, and each
    planned one proposes exactly its current levels, which already sit on whole hosts, within
    bounds, consistent, at least in-use, and under the hourly cap. Then tolerance,
    stabilisation, step limits and cooldown cannot move a level (each only pulls a change back
    towards the current value, and there is none), and every other rule is checked here
    directly. The memory is what the chain records: this tick's recommendations (so the
    stabilisation windows see it), applied changes pruned to the step periods, failures reset.
    """
    if (
        state.status != "ACTIVE"
        or paused
        or policy.paused
        or plan.failed
        or plan.location_changes
        or plan.tenancy < 1
        or policy.mode is Mode.FORECAST_ONLY
        or policy.budget.max_cost_per_month is not None
        or policy.fallback.failure_threshold <= 0  # fallback would act with no failure
        or is_stale(sample, policy, now)
    ):
        return None
    g = plan.group_id
    if memory.sent and any(k[0] == g for k in memory.sent):
        return None  # an update of ours not seen confirmed: the chain settles it
    t = plan.tenancy
    legacy = plan.capacity_model is CapacityModel.LEGACY
    last_applied = memory.last_applied
    quiet: list[Levels | None] = []  # per location of the plan; None: not planned
    ceilings = 0
    for lp in plan.locations:
        s = lp.sample
        if lp.status != "ACTIVE" or s is None or not s.complete:
            return None
        if not lp.planned:
            quiet.append(None)
            continue
        cur = lp.current
        p = Levels.of(lp.proposed)
        a, i, c = p.always_on, p.target_idle, p.ceiling
        if a != cur.always_on or i != cur.idle_target or c != cur.ceiling:
            return None
        last = last_applied.get((g, lp.location))
        if last is not None and last != cur:
            return None  # drift
        if round_up_to_tenancy(a, t) != a or round_up_to_tenancy(i, t) != i:
            return None
        if round_up_to_tenancy(c, t) != c or c < round_up_to_tenancy(lp.in_use, t):
            return None
        lo, hi = effective_bounds(policy.bounds_for(lp.location), t)
        if not (lo <= a <= hi and i <= hi and lo <= c <= hi):
            return None
        if c < a or (i != 0 if legacy else i > c):  # consistency
            return None
        quiet.append(p)
        ceilings += c
    cap = policy.budget.max_cost_per_hour
    if cap is not None:
        price = policy.price_for(plan.stream_class)
        # budget_cut's own test, same arithmetic (written so that a NaN takes the chain too)
        if price > 0 and not ceilings * price <= cap - budget_spent_elsewhere_per_hour + 1e-9:
            return None

    keep_recs, keep_applied = _keep_for(policy.behavior)
    recs = dict(memory.recommendations)
    applied = dict(memory.applied)
    here: set[Key] = set()
    model = plan.capacity_model
    current_model = model is CapacityModel.CURRENT
    out: list[LocationDecision] = []
    for lp, lv in zip(plan.locations, quiet, strict=True):
        key = (g, lp.location)
        here.add(key)
        if key in applied:
            applied[key] = _prune_applied(applied[key], now, keep_applied)
        decided = lp.current  # what the chain leaves a location it does not plan
        if lv is not None:
            pruned = _prune_recs(recs.get(key, ()), now, 2 * keep_recs)
            recs[key] = (*pruned, RecommendationRecord(now, lv))
            prop = lp.proposed
            if current_model and prop.on_demand is None and prop.maximum >= lv.always_on:
                # lv.setting(model) would hold these very field objects (max keeps the first
                # of equals): the proposal itself is that setting
                decided = prop
            else:
                decided = lv.setting(model)
        out.append(
            LocationDecision(
                location=lp.location,
                current=lp.current,
                proposed=lp.proposed,
                decided=decided,
                in_use=lp.in_use,
                reason=lp.reason,
                forecast_in_use=lp.forecast_in_use,
            )
        )
    failures = dict(memory.failures)
    failures[g] = 0
    new_memory = GuardMemory(
        recommendations={k: r for k, r in recs.items() if r and (k[0] != g or k in here)},
        applied={k: r for k, r in applied.items() if r and (k[0] != g or k in here)},
        last_applied_at=memory.last_applied_at,
        last_applied={k: s for k, s in last_applied.items() if k[0] != g or k in here},
        drift_seen_at={k: t for k, t in memory.drift_seen_at.items() if k[0] != g or k in here},
        failures=failures,
        month_spend=dict(memory.month_spend),
        sent=memory.sent,  # none of this group's (checked above)
    )
    decision = GroupDecision(group_id=g, at=now, capacity_model=model, locations=tuple(out))
    return decision, new_memory


def _keep_for(behavior: Behavior) -> tuple[float, float]:
    """How long recommendations (the longer stabilisation window) and applied changes (the
    longest step-rule period) are kept; both guard paths prune memory with these."""
    up, down = behavior.scale_up, behavior.scale_down
    return (
        max(up.stabilization_window_s, down.stabilization_window_s),
        max((r.period_s for d in (up, down) for r in d.rules), default=0.0),
    )


def _guard_group_chain(
    plan: GroupPlan,
    *,
    state: GroupState,
    sample: GroupSample,
    policy: Policy,
    memory: GuardMemory,
    now: float,
    paused: bool = False,
    budget_spent_elsewhere_per_hour: float = 0.0,
    interval_s: float = TICK_S,
) -> tuple[GroupDecision, GuardMemory]:
    """Every rule in order, for any tick: the reference ``_guard_group_quiet`` must match."""
    g = plan.group_id
    model = plan.capacity_model
    behavior = policy.behavior

    def decide_all(
        decided: Mapping[str, CapacitySetting],
        vetoes: list[Veto],
        frozen: bool,
        changes: tuple[LocationChange, ...] = (),
    ) -> GroupDecision:
        return GroupDecision(
            group_id=g,
            at=now,
            capacity_model=model,
            locations=tuple(
                LocationDecision(
                    location=lp.location,
                    current=lp.current,
                    proposed=lp.proposed,
                    decided=decided.get(lp.location, lp.current),
                    in_use=lp.in_use,
                    reason=lp.reason,
                    forecast_in_use=lp.forecast_in_use,
                )
                for lp in plan.locations
            ),
            location_changes=changes,
            vetoes=tuple(vetoes),
            frozen=frozen,
        )

    # 1. group gates
    gate: Veto | None = None
    if state.status != "ACTIVE":
        why = f" ({state.status_reason})" if state.status_reason else ""
        gate = Veto("status", None, f"group is {state.status}{why}: capacity frozen")
    elif paused or policy.paused:
        which = "globally" if paused else f"by policy {policy.name!r}"
        gate = Veto("pause", None, f"paused {which}: capacity frozen")
    if gate is not None:
        # The documented way out of ACTIVE_WITH_ERRORS is removing the failed location, so
        # removals still pass their own guard then (adds are refused: the group is not ACTIVE).
        way_out = state.status == "ACTIVE_WITH_ERRORS" and gate.guard == "status"
        changes, cv = guard_location_changes(
            plan.location_changes,
            state=state,
            plan=plan,
            policy=policy,
            blocked=None if way_out else gate.reason,
            stale=is_stale(sample, policy, now),
        )
        frozen_memory = memory
        if policy.budget.max_cost_per_month is not None:
            # A frozen group still bills: its month's spend is kept up to date, or the
            # policy's other groups would stop counting it once its record went stale.
            _, records = _month_spend(
                plan,
                state=state,
                policy=policy,
                memory=memory,
                now=now,
                price=policy.price_for(plan.stream_class),
            )
            frozen_memory = replace(memory, month_spend=records)
        return decide_all({}, [gate, *cv], frozen=True, changes=changes), frozen_memory

    stale_group = is_stale(sample, policy, now)
    failed = (
        plan.failed
        or stale_group
        or any(lp.sample is not None and not lp.sample.complete for lp in plan.locations)
    )
    failures = dict(memory.failures)
    failures[g] = failures.get(g, 0) + 1 if failed else 0
    fallback_active = failures[g] >= policy.fallback.failure_threshold

    keep_recs, keep_applied = _keep_for(behavior)
    recs = dict(memory.recommendations)
    applied = dict(memory.applied)
    last_applied = dict(memory.last_applied)
    drift_seen = dict(memory.drift_seen_at)
    sent = dict(memory.sent)
    vetoes: list[Veto] = []
    if stale_group:
        age = now - sample.at
        vetoes.append(
            Veto(
                "stale",
                None,
                f"data {age:.0f} s old or incomplete"
                f" (stale after {policy.stale_after_s:g} s): no decreases",
            )
        )
    if fallback_active:
        vetoes.append(
            Veto(
                "fallback",
                None,
                f"{failures[g]} failed ticks in a row: fallback {policy.fallback.behavior.value}",
            )
        )

    # 2–9. per-location gates and the chain up to the budget
    chained: list[tuple[LocationInput, Levels, LocationPlan]] = []
    for lp in plan.locations:
        key = (g, lp.location)
        if key in applied:
            applied[key] = _prune_applied(applied[key], now, keep_applied)
        ctx = LocationInput(
            group_id=g,
            location=lp.location,
            now=now,
            model=model,
            tenancy=plan.tenancy,
            current=Levels.of(lp.current),
            in_use=lp.in_use,
            waiting=lp.waiting,
            bounds=policy.bounds_for(lp.location),
            behavior=behavior,
            # kept for twice the window: the oldest record tells whether the window has been
            # watched long enough to allow a scale-down (see _window_covered)
            recommendations=_prune_recs(recs.get(key, ()), now, 2 * keep_recs),
            applied=applied.get(key, ()),
            last_applied_at=memory.last_applied_at.get(g),
            interval_s=interval_s,
        )
        if lp.status != "ACTIVE":
            vetoes.append(ctx.veto("status", f"location is {lp.status}: held"))
            continue
        if not lp.planned:
            continue
        last = last_applied.get(key)
        if last is not None and last != lp.current and sent.get(key) == lp.current:
            # an update of ours whose reply we never saw: it landed, it is not drift
            last_applied[key] = last = lp.current
            drift_seen.pop(key, None)
        sent.pop(key, None)  # seen the state after it: landed (above) or not
        if last is not None and last != lp.current:
            what = (
                f"capacity changed outside the controller ({last.describe()} → "
                f"{lp.current.describe()})"
            )
            if policy.drift is DriftAction.RESPECT:
                seen = drift_seen.setdefault(key, now)
                if now - seen < policy.drift_cooldown_s:
                    left = policy.drift_cooldown_s - (now - seen)
                    vetoes.append(ctx.veto("drift", f"{what}: respected for {left:.0f} s more"))
                    continue
                vetoes.append(ctx.veto("drift", f"{what}: drift cooldown over, resuming"))
                last_applied[key] = lp.current
                drift_seen.pop(key, None)
            else:
                vetoes.append(ctx.veto("drift", f"{what}: reverting to the plan"))
        p, v = run_chain(PRE_BUDGET, ctx, Levels.of(lp.proposed))
        vetoes.extend(v)
        recs[key] = (*ctx.recommendations, RecommendationRecord(now, p))
        p, v = run_chain(POST_TOLERANCE, ctx, p)
        vetoes.extend(v)
        chained.append((ctx, p, lp))

    # 10. budget (hourly, and the monthly cap turned hourly)
    price = policy.price_for(plan.stream_class)
    month_spend = dict(memory.month_spend)
    spent_month = 0.0
    if policy.budget.max_cost_per_month is not None:
        spent_month, month_spend = _month_spend(
            plan, state=state, policy=policy, memory=memory, now=now, price=price
        )
    cap = binding_cap(
        cap_per_hour=policy.budget.max_cost_per_hour,
        cap_per_month=policy.budget.max_cost_per_month,
        spent_this_month=spent_month,
        now=now,
    )
    levels, v = budget_cut(
        [(ctx, p) for ctx, p, _ in chained],
        price_per_slot_hour=price,
        cap_per_hour=cap.per_hour,
        spent_elsewhere_per_hour=budget_spent_elsewhere_per_hour,
        cut_order=policy.budget.cut_order,
        primary=plan.primary_location,
        cap_text=cap.text,
    )
    vetoes.extend(v)

    # 11–15. in use, tenancy, fallback, stale, forecast-only
    decided: dict[str, CapacitySetting] = {}
    for (ctx, _, lp), budgeted in zip(chained, levels, strict=True):
        p, v = run_chain(POST_BUDGET, ctx, budgeted)
        vetoes.extend(v)
        if fallback_active and policy.fallback.behavior is FallbackBehavior.STATIC:
            p, v = fallback_levels(ctx, p, policy)
            vetoes.extend(v)
        setting = p.setting(model)
        if stale_group or lp.sample is None or not lp.sample.complete:
            held = _no_decrease(lp.current, setting)
            if held != setting:
                vetoes.append(
                    ctx.veto(
                        "stale",
                        f"no decrease on stale or incomplete data:"
                        f" kept {held.describe()} not {setting.describe()}",
                    )
                )
            setting = held
        decided[lp.location] = setting

    blocked = None
    if policy.mode is Mode.FORECAST_ONLY:
        currents = {lp.location: lp.current for lp in plan.locations}
        would = "; ".join(
            f"{loc}: {s.describe()}" for loc, s in decided.items() if s != currents[loc]
        )
        vetoes.append(
            Veto(
                "forecast-only",
                None,
                "ForecastOnly mode: nothing applied" + (f"; would set {would}" if would else ""),
            )
        )
        decided = {}
        blocked = "ForecastOnly mode"
    changes, cv = guard_location_changes(
        plan.location_changes,
        state=state,
        plan=plan,
        policy=policy,
        blocked=blocked,
        stale=stale_group,
    )
    vetoes.extend(cv)
    decided_ceilings = sum(decided.get(lp.location, lp.current).ceiling for lp in plan.locations)
    changes, cv = _budget_adds(
        changes,
        cap=cap,
        policy=policy,
        plan=plan,
        now=now,
        spent_elsewhere_per_hour=budget_spent_elsewhere_per_hour + price * decided_ceilings,
    )
    vetoes.extend(cv)

    # Forget locations the group no longer has (other groups' entries are kept as they are).
    here = {(g, lp.location) for lp in plan.locations}
    new_memory = GuardMemory(  # every field given: cheaper than dataclasses.replace
        recommendations={k: r for k, r in recs.items() if r and (k[0] != g or k in here)},
        applied={k: r for k, r in applied.items() if r and (k[0] != g or k in here)},
        last_applied_at=memory.last_applied_at,
        last_applied={k: s for k, s in last_applied.items() if k[0] != g or k in here},
        drift_seen_at={k: t for k, t in drift_seen.items() if k[0] != g or k in here},
        failures=failures,
        month_spend=month_spend,
        sent={k: s for k, s in sent.items() if k[0] != g or k in here},
    )
    return decide_all(decided, vetoes, frozen=False, changes=changes), new_memory
