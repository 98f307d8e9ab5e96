"""What a user would run instead of our policy: the baselines of ``shared/docs/benchmark.md``.

Each baseline is tuned in hindsight on the very trace it is scored on (which flatters it), so
"ours beats the cheapest baseline that meets the SLO" is a conservative claim. This module says
*what* to run (static settings, or controller policies with their parameter grids) and holds
the one baseline that is a policy of its own (``hourly-predictive``); the runner runs them.

- ``static-peak``: no controller; AlwaysOn = the plan's own peak concurrency (hindsight),
  Maximum = the same. Nothing to tune.
- ``native-idle``: no controller; AlwaysOn 0, TargetIdle k, Maximum high (current model only).
  k = the smallest multiple of the tenancy meeting the SLO: doubling, then bisection (the
  service is monotone in k).
- ``target-tracking``: the controller with the ``target-tracking`` plugin, scale out at once,
  scale in after a 300 s window; targetUtilization over ``UTILIZATION_GRID``, then refined
  to ``UTILIZATION_STEP`` (``next_utilization``).
- ``buffer``: the controller with the ``buffer`` plugin (Agones style: AlwaysOn = in use +
  buffer) when installed; its bufferSize over ``BUFFER_GRID`` and bufferPercent over
  ``BUFFER_PERCENT_GRID``. ``buffer-idle``: the same buffer as TargetIdle (not in
  benchmark.md; current model only).
- ``hourly-predictive``: the controller with ``HourlyPredictivePolicy`` (below);
  targetUtilization as for ``target-tracking``.

Sweeps keep the cheapest candidate meeting the SLO on every seed (or, when none does, the one
with the best instant share, reported as a miss).

Why the controller for the reactive ones: target tracking and buffers react to what the
service shows every interval, with HPA-style pacing; running them through the same sample →
guard → actuate path as our policy means they pay the same lead time and read the same data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autoscaler.domain.classes import round_down_to_tenancy, round_up_to_tenancy
from autoscaler.domain.models import CapacityModel, CapacitySetting, Recommendation
from autoscaler.domain.policy import (
    Behavior,
    DirectionBehavior,
    GroupSelector,
    Policy,
    RuleType,
    ScalingRule,
    SelectPolicy,
    Slo,
)
from autoscaler.policy.plugin import PluginRegistry, PolicyContext, UnknownPluginError

AS_IS = "as-is"  # the user's own setting, replayed as given (not a tuned baseline)
STATIC_PEAK = "static-peak"
NATIVE_IDLE = "native-idle"
TARGET_TRACKING = "target-tracking"
BUFFER = "buffer"  # benchmark.md's: AlwaysOn = in use + buffer
# Not in benchmark.md: the same buffer as TargetIdle, which the service refills itself (current
# model only; in the legacy model it is ``buffer``). It was often the cheapest baseline, so it
# stays in the set: dropping it would flatter ours.
BUFFER_IDLE = "buffer-idle"
HOURLY_PREDICTIVE = "hourly-predictive"
BASELINE_IDS = (
    STATIC_PEAK,
    NATIVE_IDLE,
    TARGET_TRACKING,
    BUFFER,
    BUFFER_IDLE,
    HOURLY_PREDICTIVE,
)

UTILIZATION_GRID = (0.5, 0.6, 0.7, 0.8, 0.9)
# The grid's best is refined by bisection to this step, up to UTILIZATION_TOP: a coarse grid
# left the cheapest target (0.88, 0.95 on real traces) untried, and the baseline up to 9 %
# dearer than it is.
UTILIZATION_STEP = 0.01
UTILIZATION_TOP = 0.99
BUFFER_GRID = (2, 4, 8, 16, 32)  # absolute slots (percent buffers are tried as 5–40 %)
BUFFER_PERCENT_GRID = (5, 10, 20, 40)
SCALE_IN_WINDOW_S = 300.0
_EPSILON = 1e-9


def parse_baselines(text: str) -> tuple[str, ...]:
    """``all`` | ``none`` | a comma-separated list of ids; ValueError naming the unknown."""
    value = text.strip().lower()
    if value == "all":
        return BASELINE_IDS
    if value in ("none", ""):
        return ()
    chosen = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [b for b in chosen if b not in BASELINE_IDS]
    if unknown:
        raise ValueError(
            f"unknown baseline(s) {', '.join(unknown)} (known: {', '.join(BASELINE_IDS)}, "
            "all, none)"
        )
    return chosen


_AS_IS_FIELDS = {
    CapacityModel.CURRENT: ("alwaysOn", "targetIdle", "maximum"),
    CapacityModel.LEGACY: ("alwaysOn", "onDemand"),
}


def parse_as_is(text: str, capacity_model: CapacityModel, tenancy: int) -> CapacitySetting:
    """A capacity setting written ``alwaysOn=4,targetIdle=2,maximum=40`` (current model) or
    ``alwaysOn=4,onDemand=36`` (legacy), in slots; ValueError saying what is wrong and what
    would be valid. The service's own rules: whole hosts (multiples of ``tenancy``), 0 ≤
    alwaysOn ≤ maximum and targetIdle ≤ maximum; a field left out is 0, but for maximum."""
    allowed = _AS_IS_FIELDS[capacity_model]
    form = ",".join(f"{name}=N" for name in allowed)
    values: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, raw = part.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"{part!r} is not name=value (expected {form})")
        if name not in allowed:
            other = next(m for m in _AS_IS_FIELDS if m is not capacity_model)
            hint = (
                f" ({name} belongs to the {other.value} capacity model)"
                if name in _AS_IS_FIELDS[other]
                else ""
            )
            raise ValueError(
                f"unknown field {name!r} for the {capacity_model.value} capacity model{hint}; "
                f"expected {form}"
            )
        if name in values:
            raise ValueError(f"{name} given twice")
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"{name}={raw.strip()!r} is not a whole number of slots") from None
        if value < 0:
            raise ValueError(f"{name}={value} is negative")
        if value % tenancy:
            raise ValueError(
                f"{name}={value} is not a multiple of the stream class's tenancy ({tenancy} "
                f"slots per host); the service takes whole hosts, e.g. "
                f"{round_up_to_tenancy(value, tenancy)}"
            )
        values[name] = value
    if not values:
        raise ValueError(f"no setting given (expected {form})")
    always_on = values.get("alwaysOn", 0)
    if capacity_model is CapacityModel.LEGACY:
        return CapacitySetting(always_on=always_on, on_demand=values.get("onDemand", 0))
    if "maximum" not in values:
        raise ValueError(f"maximum is required for the current capacity model (expected {form})")
    maximum, target_idle = values["maximum"], values.get("targetIdle", 0)
    if always_on > maximum or target_idle > maximum:
        raise ValueError(
            f"maximum={maximum} is below alwaysOn={always_on} or targetIdle={target_idle}; the "
            "service needs alwaysOn <= maximum and targetIdle <= maximum"
        )
    return CapacitySetting(always_on=always_on, target_idle=target_idle, maximum=maximum)


def as_is(fleet: Fleet, setting: CapacitySetting) -> Candidate:
    """The user's own setting in every location, unchanged for the whole replay."""
    params: dict[str, Any] = {"alwaysOn": setting.always_on}
    if setting.on_demand is None:
        params |= {"targetIdle": setting.target_idle, "maximum": setting.maximum}
    else:
        params["onDemand"] = setting.on_demand
    return Candidate(AS_IS, params, static=dict.fromkeys(fleet.locations, setting))


def reactive_behavior() -> Behavior:
    """AWS target tracking / HPA defaults: scale out at once (no step limit), scale in after
    a 300 s stabilisation window, then as fast as the recommendation falls."""
    return Behavior(
        scale_up=DirectionBehavior(
            stabilization_window_s=0.0,
            rules=(ScalingRule(RuleType.PERCENT, 1000.0, 60.0),),
            select_policy=SelectPolicy.MAX,
        ),
        scale_down=DirectionBehavior(
            stabilization_window_s=SCALE_IN_WINDOW_S,
            rules=(ScalingRule(RuleType.PERCENT, 100.0, 60.0),),
            select_policy=SelectPolicy.MAX,
        ),
        tolerance=0.0,
        cooldown_s=0.0,
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    """One thing to run: a controller ``policy``, or ``static`` capacity per location."""

    baseline: str
    params: Mapping[str, Any]  # what is reported (JSON-able)
    policy: Policy | None = None
    static: Mapping[str, CapacitySetting] | None = None


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A baseline that cannot run here, and why (reported, not raised)."""

    baseline: str
    reason: str


@dataclass(frozen=True, slots=True)
class Fleet:
    """What the baselines are sized from: the plan's peaks and the group's shape."""

    locations: tuple[str, ...]
    peak: Mapping[str, int]  # most sessions in progress at once, per location (hindsight)
    maximum: Mapping[str, int]  # a "high" maximum per location
    tenancy: int
    capacity_model: CapacityModel
    slo: Slo = field(default_factory=Slo)
    prices: Mapping[str, float] = field(default_factory=dict)


def _policy(
    name: str, plugin: str, params: BaseModel, fleet: Fleet, behavior: Behavior | None = None
) -> Policy:
    return Policy(
        name=name,
        source=f"baseline {name}",
        selector=GroupSelector(),  # the runner points it at the simulated group
        plugin=plugin,
        plugin_params=params,
        behavior=behavior or reactive_behavior(),
        slo=fleet.slo,
        prices=dict(fleet.prices),
    )


def static_peak(fleet: Fleet) -> Candidate:
    """AlwaysOn at the plan's own peak: with every session on always-on capacity, nothing
    ever waits, so it never fails (and pays for the peak all day)."""
    settings: dict[str, CapacitySetting] = {}
    for name in fleet.locations:
        slots = round_up_to_tenancy(fleet.peak[name], fleet.tenancy)
        if fleet.capacity_model is CapacityModel.LEGACY:
            settings[name] = CapacitySetting(always_on=slots, on_demand=0)
        else:
            settings[name] = CapacitySetting(always_on=slots, target_idle=0, maximum=slots)
    shown = {name: s.always_on for name, s in settings.items()}  # whole hosts, as run
    return Candidate(STATIC_PEAK, {"always_on": shown}, static=settings)


def native_idle(fleet: Fleet, k: int) -> Candidate | Unavailable:
    """The service's own buffer: AlwaysOn 0, TargetIdle ``k``, Maximum high."""
    if fleet.capacity_model is CapacityModel.LEGACY:
        return Unavailable(NATIVE_IDLE, "the legacy capacity model has no TargetIdle")
    k = round_up_to_tenancy(k, fleet.tenancy)
    settings = {
        name: CapacitySetting(
            always_on=0, target_idle=k, maximum=max(fleet.maximum[name], k + fleet.tenancy)
        )
        for name in fleet.locations
    }
    return Candidate(NATIVE_IDLE, {"target_idle": k}, static=settings)


def smallest_meeting(
    meets: Callable[[int], bool], *, step: int, upper: int
) -> tuple[int | None, list[int]]:
    """The smallest multiple of ``step`` in [step, upper] for which ``meets`` holds, assuming
    it is monotone (False … False True … True): double until it holds, then bisect between
    the last miss and the first hit. Returns (value or None, every value tried in order)."""
    if step < 1 or upper < step:
        raise ValueError(f"need 1 <= step <= upper, got step={step}, upper={upper}")
    tried: list[int] = []

    def check(units: int) -> bool:
        tried.append(units * step)
        return meets(units * step)

    top = upper // step
    lo, hi = 0, 1  # in units of step: lo misses (0 = nothing tried), hi is the next try
    while not check(hi):
        if hi >= top:
            return None, tried
        lo, hi = hi, min(hi * 2, top)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if check(mid):
            hi = mid
        else:
            lo = mid
    return hi * step, tried


def next_utilization(met: Mapping[float, bool]) -> float | None:
    """The next targetUtilization to try after the grid: bisection, in ``UTILIZATION_STEP``s,
    between the highest target that met the SLO and the lowest higher one that did not (or
    just above ``UTILIZATION_TOP``); None once they are a step apart, or when none met it.

    ``met``: every target tried so far → whether it met the SLO on every seed. Assumes a
    higher target serves worse (what the grid search assumed too)."""
    steps = {round(u / UTILIZATION_STEP): ok for u, ok in met.items()}
    passing = [k for k, ok in steps.items() if ok]
    if not passing:
        return None
    lo = max(passing)
    top = round(UTILIZATION_TOP / UTILIZATION_STEP) + 1
    hi = min((k for k, ok in steps.items() if not ok and k > lo), default=top)
    if hi - lo <= 1:
        return None
    return round((lo + hi) // 2 * UTILIZATION_STEP, 10)


def target_tracking(
    fleet: Fleet, registry: PluginRegistry, grid: Sequence[float] = UTILIZATION_GRID
) -> list[Candidate] | Unavailable:
    try:
        plugin = registry.get(TARGET_TRACKING)
    except UnknownPluginError as error:
        return Unavailable(TARGET_TRACKING, str(error))
    out: list[Candidate] = []
    for u in grid:
        params = plugin.Params.model_validate({"targetUtilization": u})
        policy = _policy(f"{TARGET_TRACKING}-{u:g}", TARGET_TRACKING, params, fleet)
        out.append(Candidate(TARGET_TRACKING, {"targetUtilization": u}, policy=policy))
    return out


def buffer(
    fleet: Fleet, registry: PluginRegistry, *, which: str = BUFFER
) -> list[Candidate] | Unavailable:
    """The ``buffer`` plugin over its buffer size: absolute slots, then percent, whichever
    fields its ``Params`` has (camelCase aliases as in Agones: bufferSize, …).

    ``which``: ``BUFFER``, the buffer in AlwaysOn above demand (benchmark.md's Agones style:
    ``bufferOn: alwaysOn``), or ``BUFFER_IDLE``, the buffer as TargetIdle (current model only).
    """
    try:
        plugin = registry.get(BUFFER)
    except UnknownPluginError as error:
        return Unavailable(which, str(error))
    fields = {(f.alias or name) for name, f in plugin.Params.model_fields.items()}
    legacy = fleet.capacity_model is CapacityModel.LEGACY
    if which == BUFFER_IDLE and legacy:
        return Unavailable(
            which, "the legacy model has no TargetIdle: its buffer is always on, as `buffer`"
        )
    layer: dict[str, Any] = {}
    if not legacy:
        if "bufferOn" not in fields:
            return Unavailable(which, "the buffer plugin cannot choose where the buffer goes")
        layer = {"bufferOn": "alwaysOn" if which == BUFFER else "targetIdle"}
    grids: list[dict[str, Any]] = []
    absolute = next((n for n in ("bufferSize", "buffer", "absolute", "slots") if n in fields), None)
    percent = next((n for n in ("bufferPercent", "percent") if n in fields), None)
    if absolute is not None:
        grids.extend({absolute: b} for b in BUFFER_GRID)
    if percent is not None:
        grids.extend({percent: p} for p in BUFFER_PERCENT_GRID)
    if not grids:
        return Unavailable(
            which, f"the buffer plugin's parameters ({', '.join(sorted(fields))}) are not known"
        )
    out: list[Candidate] = []
    for raw in grids:
        params = plugin.Params.model_validate({**raw, **layer})
        label = "-".join(f"{v}" for v in raw.values())
        out.append(Candidate(which, raw, policy=_policy(f"{which}-{label}", BUFFER, params, fleet)))
    return out


def hourly_predictive(fleet: Fleet, grid: Sequence[float] = UTILIZATION_GRID) -> list[Candidate]:
    out: list[Candidate] = []
    for u in grid:
        params = HourlyPredictiveParams(target_utilization=u)
        policy = _policy(f"{HOURLY_PREDICTIVE}-{u:g}", HOURLY_PREDICTIVE, params, fleet)
        out.append(Candidate(HOURLY_PREDICTIVE, {"targetUtilization": u}, policy=policy))
    return out


# ---------------------------------------------------------------------------------------------
# The hourly-predictive baseline policy (registered into the runner's registry, not an entry
# point: it is a yardstick, not a product).


class HourlyPredictiveParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    target_utilization: float = Field(default=0.7, gt=0.0, le=1.0, alias="targetUtilization")
    days: int = Field(default=14, ge=1, le=28, description="days of history the forecast uses")


def hourly_forecast(
    at: np.ndarray[Any, np.dtype[np.float64]],
    demand: np.ndarray[Any, np.dtype[np.float64]],
    hour_start: float,
    days: int,
) -> float | None:
    """Forecast demand for the hour starting at ``hour_start``: the mean over the last
    ``days`` days of the highest demand seen in the same hour of the day (days without data
    in that hour are skipped; None if there are none)."""
    if at.size == 0:
        return None
    starts = hour_start - 86400.0 * np.arange(1, days + 1, dtype=np.float64)
    lo = np.searchsorted(at, starts, side="left")
    hi = np.searchsorted(at, starts + 3600.0, side="left")
    peaks = [float(np.nanmax(demand[a:b])) for a, b in zip(lo, hi, strict=True) if b > a]
    peaks = [p for p in peaks if math.isfinite(p)]
    return sum(peaks) / len(peaks) if peaks else None


class HourlyPredictivePolicy:
    """AWS predictive scaling style: at the start of each hour capacity is raised to the
    hour's forecast (``hourly_forecast`` / target utilisation), and it never goes below what
    target tracking wants now (the reactive part), so a forecast miss costs at most one
    reaction time. Demand is uncensored like target tracking's (in use + waiting + placement
    failures)."""

    name: str = HOURLY_PREDICTIVE
    Params: ClassVar[type[BaseModel]] = HourlyPredictiveParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        if not isinstance(params, HourlyPredictiveParams):
            raise TypeError(f"expected HourlyPredictiveParams, got {type(params).__name__}")
        s = ctx.sample
        u = params.target_utilization
        demand = max(0, s.in_use) + max(0, s.waiting) + max(0, s.placement_failures)
        reactive = math.ceil(demand / u - _EPSILON) if demand else 0
        h = ctx.history
        hour_start = math.floor(ctx.now / 3600.0) * 3600.0
        past = h.in_use + h.waiting + np.nan_to_num(h.placement_failures)
        forecast = hourly_forecast(h.at, past, hour_start, params.days)
        predicted = math.ceil(forecast / u - _EPSILON) if forecast else 0
        desired = max(reactive, predicted)
        t = ctx.tenancy
        always_on = round_up_to_tenancy(desired, t)
        cap = round_down_to_tenancy(ctx.bounds.max_capacity, t)
        maximum = max(always_on, min(round_up_to_tenancy(max(desired * 2, always_on + t), t), cap))
        if ctx.capacity_model is CapacityModel.LEGACY:
            setting = CapacitySetting(always_on=always_on, on_demand=maximum - always_on)
        else:
            setting = CapacitySetting(always_on=always_on, target_idle=0, maximum=maximum)
        shown = "none" if forecast is None else f"{forecast:.1f}"
        return Recommendation(
            setting=setting,
            reason=(
                f"hourly-predictive: forecast {shown} → {predicted}, reactive {demand} → "
                f"{reactive} at utilization {u:g}; {setting.describe()}"
            ),
            forecast_in_use=float(max(demand, forecast or 0.0)),
        )
