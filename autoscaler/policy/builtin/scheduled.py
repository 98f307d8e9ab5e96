"""Scheduled capacity: known events and recurring windows set floors, ceilings or exact values.

Why: the best forecast cannot know about a launch on Friday at 17:00, a tournament, or a
maintenance night. Operators can, and they think in local time. This plugin (KEDA's cron
scaler and Agones' schedules, for GameLift Streams) lets them write that down: recurring
``windows`` (a cron expression for each start, in an IANA time zone, plus a duration) and
one-off ``events`` (ISO 8601 start and end with offsets), each setting for the listed
locations (or all):

- floors: ``minAlwaysOn``, ``minTargetIdle``, ``minMaximum`` (at least this many slots);
- ceilings: ``maxAlwaysOn``, ``maxTargetIdle``, ``maxMaximum`` (at most);
- overrides: ``alwaysOn``, ``targetIdle``, ``maximum`` (exactly).

Outside (and under) the windows an inner ``base`` policy decides (``{plugin, params}``,
default: hold the current capacity); the windows then bend its answer.

Precedence, per capacity field, enforced in ``resolve``:

1. One-off events beat cron windows: when an active event constrains a field (any kind), the
   cron windows' constraints on that field are ignored.
2. Overrides beat floors and ceilings; among overlapping overrides the largest value wins
   (when in doubt, players over cost).
3. Among overlapping floors the highest wins; among ceilings the lowest. A floor beats a
   ceiling it contradicts (value = max(floor, min(base, ceiling))).
4. Maximum is never below always-on, and target-idle never above maximum (raise maximum with
   ``minMaximum`` when a window needs a large idle buffer). Nothing exceeds the location's
   maximum bound.

Pre-warm: a floor is applied ``prewarmSeconds`` before its window starts (default: the
context's lead time, decision → usable capacity) so the capacity is ready *at* the start;
ceilings and overrides apply from the start exactly (an override that lowers capacity must
not cut it early). Floors end with their window.

Time: cron expressions are evaluated in the window's time zone on the wall clock with
zoneinfo, so ``0 9 * * *`` in Europe/Berlin starts at 09:00 local all year. Across a
transition no window is lost or doubled: a start in the skipped spring-forward hour happens
one hour later on the wall clock (02:30 → 03:30), a start in the repeated fall-back hour
happens once (the first time), and a window ends at its cron time plus its duration on the
wall clock, or its duration after its start if that is later (``latest_cron_window``): a
22:00 window of 8 hours ends at 06:00 local on the long autumn night too. Legacy groups have
no idle target: a target-idle floor or override raises always-on to demand plus that many
slots.
"""

from __future__ import annotations

import dataclasses
import zoneinfo
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from autoscaler.domain.classes import round_down_to_tenancy, round_up_to_tenancy
from autoscaler.domain.models import CapacityModel, CapacitySetting, Recommendation
from autoscaler.policy.builtin.chain import (
    CompositeParams,
    CompositePlugin,
    PolicyRef,
    as_model,
    cap_to_bounds,
    hold,
    run_policy,
)
from autoscaler.policy.plugin import PolicyContext, UnknownPluginError
from autoscaler.schedule import check_cron, check_time_zone, latest_cron_window

FIELDS = ("always_on", "target_idle", "maximum")
_YAML = {"always_on": "alwaysOn", "target_idle": "targetIdle", "maximum": "maximum"}
Slots = int | None


class Limits(BaseModel):
    """What a window or an event sets while it is active (slots; rounded to the tenancy:
    floors and overrides up, ceilings down)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str | None = Field(default=None, description="Shown in reasons and reports.")
    locations: list[str] = Field(
        default_factory=list, description="Locations it applies to; empty: all."
    )
    min_always_on: Slots = Field(default=None, ge=0, alias="minAlwaysOn")
    min_target_idle: Slots = Field(default=None, ge=0, alias="minTargetIdle")
    min_maximum: Slots = Field(default=None, ge=0, alias="minMaximum")
    max_always_on: Slots = Field(default=None, ge=0, alias="maxAlwaysOn")
    max_target_idle: Slots = Field(default=None, ge=0, alias="maxTargetIdle")
    max_maximum: Slots = Field(default=None, ge=0, alias="maxMaximum")
    always_on: Slots = Field(default=None, ge=0, alias="alwaysOn")
    target_idle: Slots = Field(default=None, ge=0, alias="targetIdle")
    maximum: Slots = Field(default=None, ge=0, alias="maximum")
    prewarm_seconds: float | None = Field(
        default=None,
        ge=0.0,
        alias="prewarmSeconds",
        description="Floors start this long before the start, seconds; None: the plugin's.",
    )

    def floor(self, f: str) -> int | None:
        value: int | None = getattr(self, f"min_{f}")
        return value

    def ceiling(self, f: str) -> int | None:
        value: int | None = getattr(self, f"max_{f}")
        return value

    def override(self, f: str) -> int | None:
        value: int | None = getattr(self, f)
        return value

    @property
    def has_floor(self) -> bool:
        return any(self.floor(f) is not None for f in FIELDS)

    @property
    def has_other(self) -> bool:
        return any(self.ceiling(f) is not None or self.override(f) is not None for f in FIELDS)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if not (self.has_floor or self.has_other):
            raise ValueError(
                "sets nothing: give a floor (minAlwaysOn, minTargetIdle, minMaximum), a ceiling "
                "(maxAlwaysOn, maxTargetIdle, maxMaximum) or an exact value (alwaysOn, "
                "targetIdle, maximum)"
            )
        for f in FIELDS:
            y = _YAML[f]
            low, high, exact = self.floor(f), self.ceiling(f), self.override(f)
            if exact is not None and (low is not None or high is not None):
                raise ValueError(
                    f"{y} (exact) cannot be combined with min/max{y[0].upper()}{y[1:]}"
                )
            if low is not None and high is not None and low > high:
                raise ValueError(
                    f"min{y[0].upper()}{y[1:]} {low} > max{y[0].upper()}{y[1:]} {high}"
                )
        return self


class CronWindow(Limits):
    """A recurring window: starts at each ``cron`` time in ``timeZone``, lasts
    ``durationSeconds``."""

    cron: str = Field(description="5-field cron expression of each start.")
    duration_seconds: float = Field(gt=0.0, alias="durationSeconds", description="Seconds.")
    time_zone: str | None = Field(
        default=None, alias="timeZone", description="IANA zone; None: the plugin's timeZone."
    )

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return check_cron(v)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        return None if v is None else check_time_zone(v)


class Event(Limits):
    """A one-off event from ``start`` to ``end`` (ISO 8601 with an offset, e.g.
    2026-03-14T17:00:00+01:00)."""

    start: AwareDatetime
    end: AwareDatetime

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end <= self.start:
            raise ValueError(
                f"end {self.end.isoformat()} is not after start {self.start.isoformat()}"
            )
        return self


class ScheduledParams(CompositeParams):
    """``params`` of a ``scheduled`` policy file (camelCase in YAML)."""

    time_zone: str = Field(
        default="UTC", alias="timeZone", description="IANA zone of windows without their own."
    )
    prewarm_seconds: float | None = Field(
        default=None,
        ge=0.0,
        alias="prewarmSeconds",
        description="Floors start this long before their window, seconds; None: lead time.",
    )
    windows: list[CronWindow] = Field(
        default_factory=list,
        description="Recurring windows: {cron, durationSeconds, timeZone?} plus limits: "
        "floors (minAlwaysOn, minTargetIdle, minMaximum), ceilings (maxAlwaysOn, "
        "maxTargetIdle, maxMaximum) or exact values (alwaysOn, targetIdle, maximum).",
    )
    events: list[Event] = Field(
        default_factory=list,
        description="One-off events: {start, end} (ISO 8601 with an offset) plus the same "
        "limits as windows; an active event beats the windows on the fields it constrains.",
    )
    base: PolicyRef | None = Field(
        default=None, description="Inner policy {plugin, params}; None: hold current capacity."
    )

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, v: str) -> str:
        return check_time_zone(v)

    @model_validator(mode="after")
    def _something(self) -> Self:
        if not self.windows and not self.events:
            raise ValueError("give at least one entry in windows or events")
        return self


@dataclass(frozen=True, slots=True)
class Active:
    """One window or event in force at the evaluated time."""

    label: str
    limits: Limits
    event: bool
    floors_only: bool  # inside the pre-warm lead, before the start: only floors apply


def active_limits(params: ScheduledParams, location: str, t: float, lead_s: float) -> list[Active]:
    """The windows and events in force at ``t`` for ``location`` (floors ``prewarm`` early)."""
    out: list[Active] = []
    for i, w in enumerate(params.windows):
        if w.locations and location not in w.locations:
            continue
        tz = zoneinfo.ZoneInfo(w.time_zone or params.time_zone)
        p = _prewarm(w, params, lead_s) if w.has_floor else 0.0
        window = latest_cron_window(w.cron, tz, w.duration_seconds, t + p)
        if window is None or t >= window[1]:
            continue
        label = w.name or f"windows[{i}] ({w.cron} {tz.key})"
        started = t >= window[0] or (
            (prev := latest_cron_window(w.cron, tz, w.duration_seconds, t)) is not None
            and t < prev[1]
        )
        out.append(Active(label, w, event=False, floors_only=not started))
    for i, e in enumerate(params.events):
        if e.locations and location not in e.locations:
            continue
        start, end = e.start.timestamp(), e.end.timestamp()
        p = _prewarm(e, params, lead_s) if e.has_floor else 0.0
        if start - p <= t < end:
            label = e.name or f"events[{i}] ({e.start.isoformat()})"
            out.append(Active(label, e, event=True, floors_only=t < start))
    return out


def _prewarm(limits: Limits, params: ScheduledParams, lead_s: float) -> float:
    if limits.prewarm_seconds is not None:
        return limits.prewarm_seconds
    return params.prewarm_seconds if params.prewarm_seconds is not None else lead_s


def resolve(
    base: CapacitySetting, active: Iterable[Active], tenancy: int
) -> tuple[dict[str, int], list[str]]:
    """The three fields (always_on, target_idle, maximum) after the precedence rules, and a
    note per field that a window changed."""
    values = {"always_on": base.always_on, "target_idle": base.idle_target, "maximum": base.ceiling}
    notes: list[str] = []
    items = list(active)
    for f in FIELDS:
        y = _YAML[f]

        def constrains(a: Active, f: str = f) -> bool:
            lim = a.limits
            if a.floors_only:
                return lim.floor(f) is not None
            return any(v is not None for v in (lim.floor(f), lim.ceiling(f), lim.override(f)))

        relevant = [a for a in items if constrains(a)]
        if any(a.event for a in relevant):
            relevant = [a for a in relevant if a.event]  # events beat cron windows
        if not relevant:
            continue
        exact = [(a.limits.override(f), a) for a in relevant if not a.floors_only]
        exact = [(v, a) for v, a in exact if v is not None]
        if exact:
            v, a = max(exact, key=lambda va: va[0] or 0)
            values[f] = round_up_to_tenancy(v or 0, tenancy)
            notes.append(f"{y} = {values[f]} ({a.label})")
            continue
        value = values[f]
        ceilings = [(a.limits.ceiling(f), a) for a in relevant if not a.floors_only]
        ceilings = [(v, a) for v, a in ceilings if v is not None]
        if ceilings:
            v, a = min(ceilings, key=lambda va: va[0] or 0)
            cap = round_down_to_tenancy(v or 0, tenancy)
            if value > cap:
                notes.append(f"{y} ≤ {cap} ({a.label})")
                value = cap
        floors = [(a.limits.floor(f), a) for a in relevant]
        floors = [(v, a) for v, a in floors if v is not None]
        if floors:
            v, a = max(floors, key=lambda va: va[0] or 0)
            low = round_up_to_tenancy(v or 0, tenancy)
            if value < low:
                early = " (pre-warm)" if a.floors_only else ""
                notes.append(f"{y} ≥ {low} ({a.label}{early})")
                value = low
        values[f] = value
    values["maximum"] = max(values["maximum"], values["always_on"])
    values["target_idle"] = min(values["target_idle"], values["maximum"])
    return values, notes


class ScheduledPolicy(CompositePlugin):
    """Plugin ``scheduled``: cron windows and one-off events bend a base policy's answer."""

    name: str = "scheduled"
    Params: ClassVar[type[BaseModel]] = ScheduledParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        if not isinstance(params, ScheduledParams):
            raise TypeError(f"expected ScheduledParams, got {type(params).__name__}")
        base = self._base(params, ctx)
        active = active_limits(params, ctx.location, ctx.now, ctx.lead_time_s)
        values, notes = resolve(base.setting, active, ctx.tenancy)
        t = ctx.tenancy
        if ctx.capacity_model is CapacityModel.LEGACY:
            always_on = values["always_on"]
            idle_set = any(
                a.limits.floor("target_idle") is not None
                or (not a.floors_only and a.limits.override("target_idle") is not None)
                for a in active
            )
            if idle_set and values["target_idle"] > 0:
                s = ctx.sample
                demand = max(0, s.in_use) + max(0, s.waiting)
                always_on = max(always_on, round_up_to_tenancy(demand + values["target_idle"], t))
                notes.append(f"legacy: always-on ≥ demand {demand} + target-idle")
            ceiling = max(values["maximum"], always_on)
            setting = CapacitySetting(always_on=always_on, on_demand=ceiling - always_on)
        else:
            setting = CapacitySetting(
                always_on=values["always_on"],
                target_idle=values["target_idle"],
                maximum=values["maximum"],
            )
        capped = cap_to_bounds(setting, ctx)
        if capped != setting:
            notes.append(f"capped at the location's maximum bound {ctx.bounds.max_capacity}")
        names = ", ".join(a.label for a in active) if active else "no window or event active"
        changed = "; ".join(notes) if notes else "no change to the base"
        return dataclasses.replace(
            base,
            setting=capped,
            reason=f"scheduled: {names}: {changed}; base: {base.reason}",
        )

    def _base(self, params: ScheduledParams, ctx: PolicyContext) -> Recommendation:
        if params.base is None:
            return hold(ctx, "no base policy")
        try:
            plugin = self.registry.get(params.base.plugin)
        except UnknownPluginError as error:
            return hold(ctx, str(error), fallback=f"base: {error}")
        answer = run_policy(plugin, params.base.params, ctx)
        if isinstance(answer, str):
            why = f"base failed ({answer})"
            return hold(ctx, why, fallback=why)
        return dataclasses.replace(answer, setting=as_model(answer.setting, ctx))
