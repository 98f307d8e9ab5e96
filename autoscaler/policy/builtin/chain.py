"""Composite policies: ``chain`` (the first policy that answers wins) and ``max`` (the largest
answer per field wins), plus what every composite plugin shares.

Why composites: one policy rarely fits a whole week. A launch wants a fixed floor, quiet
nights want the SLO buffer, and a forecasting policy that has stopped matching reality
(a new game, an outage in the history) should give way to plain reactive scaling instead of
confidently planning the wrong thing. Agones' ``Chain`` policy is the model: an ordered list
of policies, each with an optional schedule, the first one that applies answers.

Rules, enforced in ``decide``:

- ``chain`` asks its ``policies`` in order. An entry whose ``when`` does not hold now is not
  asked. An entry *answers* unless it raises, returns nonsense (the planner's
  ``check_recommendation``), or its recent forecast error is above ``maxForecastError``. The
  first entry that answers wins. When none answers, the reactive ``fallback`` (target tracking
  with the given params) does, and the reason says why each entry was passed over.
- ``max`` asks every entry whose ``when`` holds and takes the largest value per field
  (always-on, target-idle, maximum; or always-on and on-demand). An entry that fails (raises,
  nonsense, forecast error too high) is replaced by the reactive fallback's answer, so the
  result never drops below reactive scaling because a member broke. No entry active: reactive.

Forecast error: the recent accuracy of an entry is measured by replaying it on the history
alone. For each of the last ``errorPoints`` rows at time t, the entry decides with the history
cut at ``t − h`` (h = the context's lead time: ``forecast_in_use`` is a forecast at the lead
time) and its ``forecast_in_use`` is compared with the in-use count observed at t. The error
is ``Σ|forecast − observed| / Σ max(observed, 1)`` (a weighted MAPE that an idle night cannot
blow up). Fewer than 3 usable points, or an entry that gives no forecast, count as "unknown":
the entry is trusted. A plugin whose ``decide`` is not a pure function of the context (the
``webhook`` plugin) sets ``replayable = False`` and is never replayed.

Inner policies are referenced as ``{plugin, params}`` (``PolicyRef``); their params are
validated by the inner plugin's own ``Params`` through the plugin registry while the
composite's params are validated, so an error in a policy file names the full path (e.g.
``spec.policy.params.policies[1].params.targetUtilization``). The registry is the installed
one (entry points) unless the plugin was built with ``for_registry`` (tests, embedding).

This module also holds the schedule primitives (IANA time zones, cron windows evaluated in
local wall-clock time) that ``chain``'s ``when`` and the ``scheduled`` plugin share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

import numpy as np
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from autoscaler.domain.classes import round_down_to_tenancy, round_up_to_tenancy
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    LocationHistory,
    LocationSample,
    Recommendation,
)
from autoscaler.planner import check_recommendation
from autoscaler.policy.builtin.target_tracking import TargetTrackingParams, TargetTrackingPolicy
from autoscaler.policy.plugin import (
    PluginRegistry,
    PolicyContext,
    PolicyPlugin,
    UnknownPluginError,
    default_registry,
)
from autoscaler.schedule import check_cron, check_time_zone, latest_cron_window

# Key of the plugin registry in pydantic's validation context.
REGISTRY_CONTEXT_KEY = "autoscaler.policy.registry"
# Attribute a plugin sets to False when its decide() must not be replayed on history.
REPLAYABLE_ATTR = "replayable"
_MIN_ERROR_POINTS = 3


class When(BaseModel):
    """When a chain entry is asked: between ``start`` and ``end`` and/or inside a cron window
    (``cron`` starts it in ``timeZone``'s wall-clock time, it lasts ``durationSeconds``).
    Every condition given must hold."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    start: AwareDatetime | None = Field(default=None, description="ISO 8601 with an offset.")
    end: AwareDatetime | None = Field(default=None, description="ISO 8601 with an offset.")
    cron: str | None = Field(default=None, description="Start of each window (5-field cron).")
    duration_seconds: float | None = Field(
        default=None, gt=0.0, alias="durationSeconds", description="Window length, seconds."
    )
    time_zone: str = Field(
        default="UTC", alias="timeZone", description="IANA zone the cron is read in."
    )

    @field_validator("time_zone")
    @classmethod
    def _check_zone(cls, v: str) -> str:
        return check_time_zone(v)

    @field_validator("cron")
    @classmethod
    def _check_cron(cls, v: str | None) -> str | None:
        return None if v is None else check_cron(v)

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if (self.cron is None) != (self.duration_seconds is None):
            raise ValueError("cron and durationSeconds go together: give both or neither")
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def holds(self, t: float) -> bool:
        if self.start is not None and t < self.start.timestamp():
            return False
        if self.end is not None and t >= self.end.timestamp():
            return False
        if self.cron is not None and self.duration_seconds is not None:
            tz = zoneinfo.ZoneInfo(self.time_zone)
            window = latest_cron_window(self.cron, tz, self.duration_seconds, t)
            return window is not None and t < window[1]
        return True


# ---------------------------------------------------------------------------------------------
# Inner policies, validated through the registry.


def _registry(info: ValidationInfo) -> PluginRegistry:
    context = info.context
    if isinstance(context, Mapping):
        registry = context.get(REGISTRY_CONTEXT_KEY)
        if isinstance(registry, PluginRegistry):
            return registry
    return default_registry()


class PolicyRef(BaseModel):
    """An inner policy: a plugin name and that plugin's params (validated by its ``Params``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plugin: str = Field(min_length=1, description="Installed policy plugin name.")
    params: Any = Field(
        default_factory=dict, validate_default=True, description="The plugin's own params."
    )

    @field_validator("plugin")
    @classmethod
    def _known(cls, v: str, info: ValidationInfo) -> str:
        try:
            _registry(info).get(v)
        except UnknownPluginError as error:  # also PluginLoadError
            raise ValueError(str(error)) from None
        return v

    @field_validator("params")
    @classmethod
    def _inner(cls, v: Any, info: ValidationInfo) -> Any:
        name = info.data.get("plugin")
        if name is None:
            return v  # the plugin name failed: that error is reported
        params_cls = _registry(info).get(name).Params
        if isinstance(v, params_cls):
            return v
        if not isinstance(v, Mapping):
            raise ValueError(f"params must be a mapping of {name!r}'s parameters")
        return params_cls.model_validate(dict(v), context=info.context)


class CompositeParams(BaseModel):
    """Base of params holding ``PolicyRef``s: a subclass bound to a registry (``registry``)
    validates the inner policies against it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    registry: ClassVar[PluginRegistry | None] = None

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> Self:
        if cls.registry is not None:
            context = dict(kwargs.pop("context", None) or {})
            context.setdefault(REGISTRY_CONTEXT_KEY, cls.registry)
            kwargs["context"] = context
        return super().model_validate(obj, **kwargs)


_P = TypeVar("_P", bound=CompositeParams)


def bind_params(params_cls: type[_P], registry: PluginRegistry) -> type[_P]:
    """A subclass of ``params_cls`` whose inner policies are validated with ``registry``."""
    bound: type[_P] = type(
        params_cls.__name__,
        (params_cls,),
        {"registry": registry, "__module__": params_cls.__module__},
    )
    return bound


class CompositePlugin:
    """Shared plumbing: the registry inner policies come from (default: the installed one)."""

    name: str = ""
    Params: ClassVar[type[BaseModel]] = CompositeParams

    def __init__(self, registry: PluginRegistry | None = None) -> None:
        self._registry = registry

    @classmethod
    def for_registry(cls, registry: PluginRegistry) -> Self:
        """This plugin with inner policies resolved and validated through ``registry``."""
        params = cls.Params
        if not issubclass(params, CompositeParams):
            raise TypeError(f"{cls.__name__}.Params is not a CompositeParams")
        bound: type[Self] = type(cls.__name__, (cls,), {"Params": bind_params(params, registry)})
        return bound(registry)

    @property
    def registry(self) -> PluginRegistry:
        return self._registry if self._registry is not None else default_registry()

    def plugin(self, name: str) -> PolicyPlugin:
        return self.registry.get(name)


def as_model(setting: CapacitySetting, ctx: PolicyContext) -> CapacitySetting:
    """``setting`` expressed in the context's capacity model, rounded up to the tenancy."""
    t = ctx.tenancy
    always_on = round_up_to_tenancy(setting.always_on, t)
    idle = round_up_to_tenancy(setting.idle_target, t)
    ceiling = max(round_up_to_tenancy(setting.ceiling, t), always_on)
    if ctx.capacity_model is CapacityModel.LEGACY:
        return CapacitySetting(always_on=always_on, on_demand=ceiling - always_on)
    return CapacitySetting(always_on=always_on, target_idle=idle, maximum=ceiling)


def hold(ctx: PolicyContext, why: str, *, fallback: str | None = None) -> Recommendation:
    """Keep the current capacity (in the context's model); ``fallback``: the hold stands in
    for a policy that failed, and why (``Recommendation.fallback``)."""
    setting = as_model(ctx.current, ctx)
    return Recommendation(
        setting=setting, reason=f"{why}; holding {setting.describe()}", fallback=fallback
    )


def run_policy(plugin: PolicyPlugin, params: BaseModel, ctx: PolicyContext) -> Recommendation | str:
    """The inner policy's checked answer, rounded to the tenancy, or why it is unusable."""
    try:
        raw = plugin.decide(params, ctx)
        checked = check_recommendation(raw, ctx.capacity_model, ctx.bounds, ctx.tenancy)
    except Exception as exc:  # an inner plugin's bug costs its answer, not the composite's
        return f"{plugin.name} raised {type(exc).__name__}: {exc}"
    if isinstance(checked, str):
        return f"{plugin.name}: {checked}"
    return dataclasses.replace(checked, setting=as_model(checked.setting, ctx))


# ---------------------------------------------------------------------------------------------
# Recent forecast error by replay.


def _count(value: float) -> int:
    return int(value) if math.isfinite(value) and value > 0 else 0


def _history_upto(h: LocationHistory, stop: int) -> LocationHistory:
    return LocationHistory(
        at=h.at[:stop],
        in_use=h.in_use[:stop],
        waiting=h.waiting[:stop],
        arrivals=h.arrivals[:stop],
        placement_failures=h.placement_failures[:stop],
        departures=h.departures[:stop],
        allocated=h.allocated[:stop],
        idle=h.idle[:stop],
        complete=h.complete[:stop],
        late_starts=None if h.late_starts is None else h.late_starts[:stop],
        miss_budget=None if h.miss_budget is None else h.miss_budget[:stop],
    )


def _sample_at(h: LocationHistory, i: int, ctx: PolicyContext) -> LocationSample:
    return LocationSample(
        group_id=ctx.sample.group_id,
        location=ctx.location,
        at=float(h.at[i]),
        status=ctx.sample.status,
        setting=ctx.sample.setting,
        allocated=_count(float(h.allocated[i])),
        idle=_count(float(h.idle[i])),
        in_use=_count(float(h.in_use[i])),
        waiting=_count(float(h.waiting[i])),
        oldest_waiting_s=0.0,
        arrivals=_count(float(h.arrivals[i])),
        placement_failures=_count(float(h.placement_failures[i])),
        departures=_count(float(h.departures[i])),
        complete=bool(h.complete[i]),
        late_starts=None
        if h.late_starts is None or not math.isfinite(h.late_starts[i])
        else _count(float(h.late_starts[i])),
    )


def forecast_error(
    plugin: PolicyPlugin, params: BaseModel, ctx: PolicyContext, points: int
) -> tuple[float, int] | None:
    """(weighted MAPE, points used) of ``plugin``'s ``forecast_in_use`` over the last
    ``points`` history rows, replayed at ``t − lead time``; None when unknown."""
    if points <= 0 or not getattr(plugin, REPLAYABLE_ATTR, True):
        return None
    h = ctx.history
    n = len(h)
    if n == 0 or any(len(col) != n for col in (h.in_use, h.allocated, h.idle, h.complete)):
        return None
    finite = np.isfinite(h.at)
    if not finite.all() or np.any(np.diff(h.at) < 0):
        return None  # unordered or broken time column: no replay
    horizon = max(ctx.lead_time_s, ctx.interval_s)
    errors = 0.0
    scale = 0.0
    used = 0
    for j in range(max(0, n - points), n):
        observed = float(h.in_use[j])
        if not math.isfinite(observed):
            continue
        k = int(np.searchsorted(h.at, h.at[j] - horizon, side="right")) - 1
        if k < 0:
            continue
        past = dataclasses.replace(
            ctx, now=float(h.at[k]), sample=_sample_at(h, k, ctx), history=_history_upto(h, k + 1)
        )
        forecast: float | None = None
        with contextlib.suppress(Exception):  # a failed replay says nothing about accuracy
            forecast = plugin.decide(params, past).forecast_in_use
        if forecast is None or not math.isfinite(forecast):
            continue
        errors += abs(forecast - observed)
        scale += max(observed, 1.0)
        used += 1
    if used < _MIN_ERROR_POINTS:
        return None
    return errors / scale, used


# ---------------------------------------------------------------------------------------------
# chain and max.


class ChainEntry(PolicyRef):
    """One policy of a chain or max: ``{plugin, params, when?}``."""

    when: When | None = Field(default=None, description="Ask this policy only while it holds.")


class ComposeParams(CompositeParams):
    """``params`` of ``chain`` and ``max`` (camelCase in YAML)."""

    policies: list[ChainEntry] = Field(min_length=1, description="Inner policies, in order.")
    fallback: TargetTrackingParams = Field(
        default_factory=TargetTrackingParams,
        description="Params of the reactive (target-tracking) fallback.",
    )
    max_forecast_error: float | None = Field(
        default=0.5,
        gt=0.0,
        alias="maxForecastError",
        description="Largest recent forecast error (weighted MAPE, 0.5 = 50 %) an entry may "
        "have and still answer; None: never check.",
    )
    error_points: int = Field(
        default=12,
        ge=0,
        le=200,
        alias="errorPoints",
        description="History rows the forecast error is measured on (0: never check).",
    )


class ChainParams(ComposeParams):
    """``params`` of a ``chain`` policy file."""


class MaxParams(ComposeParams):
    """``params`` of a ``max`` policy file."""


@dataclass(frozen=True, slots=True)
class _PassedOver:
    """Why an entry's answer does not count; ``failed``: it broke (unknown plugin, raised,
    nonsense), as opposed to answering too inaccurately (the composite working as designed)."""

    why: str
    failed: bool


def _answer(
    registry: PluginRegistry, entry: ChainEntry, params: ComposeParams, ctx: PolicyContext
) -> Recommendation | _PassedOver:
    """The entry's answer, or why it does not count (error, nonsense, inaccurate)."""
    try:
        plugin = registry.get(entry.plugin)
    except UnknownPluginError as error:
        return _PassedOver(str(error), failed=True)
    answer = run_policy(plugin, entry.params, ctx)
    if isinstance(answer, str):
        return _PassedOver(answer, failed=True)
    if params.max_forecast_error is None:
        return answer
    measured = forecast_error(plugin, entry.params, ctx, params.error_points)
    if measured is not None and measured[0] > params.max_forecast_error:
        return _PassedOver(
            f"{plugin.name}: recent forecast error {measured[0]:.0%} over {measured[1]} points"
            f" > maxForecastError {params.max_forecast_error:.0%}",
            failed=False,
        )
    return answer


def _reactive(params: ComposeParams, ctx: PolicyContext) -> Recommendation:
    rec = TargetTrackingPolicy().decide(params.fallback, ctx)
    return dataclasses.replace(rec, setting=as_model(rec.setting, ctx))


def _label(index: int, entry: ChainEntry) -> str:
    return f"policies[{index}] {entry.plugin}"


class ChainPolicy(CompositePlugin):
    """Plugin ``chain``: the first inner policy that answers wins; reactive when none does."""

    name: str = "chain"
    Params: ClassVar[type[BaseModel]] = ChainParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        if not isinstance(params, ChainParams):
            raise TypeError(f"expected ChainParams, got {type(params).__name__}")
        passed: list[str] = []
        broken: list[str] = []  # entries that failed (not those merely off-schedule or inaccurate)
        for i, entry in enumerate(params.policies):
            if entry.when is not None and not entry.when.holds(ctx.now):
                passed.append(f"{_label(i, entry)}: not scheduled now")
                continue
            answer = _answer(self.registry, entry, params, ctx)
            if isinstance(answer, _PassedOver):
                passed.append(f"{_label(i, entry)} passed over: {answer.why}")
                if answer.failed:
                    broken.append(f"{_label(i, entry)} failed: {answer.why}")
                continue
            skipped = f" (after {'; '.join(passed)})" if passed else ""
            return dataclasses.replace(
                answer,
                reason=f"chain: {_label(i, entry)} answered{skipped}: {answer.reason}",
                fallback=_joined(broken, answer.fallback),
            )
        rec = _reactive(params, ctx)
        return dataclasses.replace(
            rec,
            reason=f"chain: no policy answered ({'; '.join(passed)}); reactive fallback: "
            f"{rec.reason}",
            fallback=_joined(broken, None),
        )


def _joined(broken: Sequence[str], inner: str | None) -> str | None:
    """A composite's fallback note: its entries that failed, then the answering entry's own."""
    parts = [*broken, inner] if inner is not None else list(broken)
    return "; ".join(parts) if parts else None


def _largest(settings: Sequence[CapacitySetting], model: CapacityModel) -> CapacitySetting:
    always_on = max(s.always_on for s in settings)
    if model is CapacityModel.LEGACY:
        return CapacitySetting(
            always_on=always_on, on_demand=max(s.on_demand or 0 for s in settings)
        )
    return CapacitySetting(
        always_on=always_on,
        target_idle=max(s.target_idle for s in settings),
        maximum=max(*(s.maximum for s in settings), always_on),
    )


class MaxPolicy(CompositePlugin):
    """Plugin ``max``: every inner policy is asked; the largest value per field wins."""

    name: str = "max"
    Params: ClassVar[type[BaseModel]] = MaxParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        if not isinstance(params, MaxParams):
            raise TypeError(f"expected MaxParams, got {type(params).__name__}")
        answers: list[Recommendation] = []
        notes: list[str] = []
        broken: list[str] = []
        reactive: Recommendation | None = None
        for i, entry in enumerate(params.policies):
            if entry.when is not None and not entry.when.holds(ctx.now):
                notes.append(f"{_label(i, entry)}: not scheduled now")
                continue
            answer = _answer(self.registry, entry, params, ctx)
            if isinstance(answer, _PassedOver):
                reactive = reactive or _reactive(params, ctx)
                notes.append(f"{_label(i, entry)} replaced by the reactive fallback: {answer.why}")
                if answer.failed:
                    broken.append(f"{_label(i, entry)} failed: {answer.why}")
                continue
            if answer.fallback is not None:
                broken.append(f"{_label(i, entry)}: {answer.fallback}")
            answers.append(answer)
            notes.append(f"{_label(i, entry)} → {answer.setting.describe()}")
        if reactive is None and not answers:
            reactive = _reactive(params, ctx)
            notes.append("no policy active: reactive fallback")
        if reactive is not None:
            answers.append(reactive)
            notes.append(f"reactive → {reactive.setting.describe()}")
        setting = _largest([a.setting for a in answers], ctx.capacity_model)
        forecasts = [a.forecast_in_use for a in answers if a.forecast_in_use is not None]
        rates = [a.forecast_arrivals_per_s for a in answers if a.forecast_arrivals_per_s]
        return Recommendation(
            setting=setting,
            reason=f"max of {len(answers)}: {'; '.join(notes)} ⇒ {setting.describe()}",
            forecast_in_use=max(forecasts) if forecasts else None,
            forecast_arrivals_per_s=max(rates) if rates else None,
            fallback=_joined(broken, None),
        )


def cap_to_bounds(setting: CapacitySetting, ctx: PolicyContext) -> CapacitySetting:
    """Every value at most the location's maximum bound (rounded down to the tenancy)."""
    cap = round_down_to_tenancy(ctx.bounds.max_capacity, ctx.tenancy)
    if setting.on_demand is not None:
        always_on = min(setting.always_on, cap)
        return CapacitySetting(
            always_on=always_on, on_demand=min(setting.on_demand, cap - always_on)
        )
    return CapacitySetting(
        always_on=min(setting.always_on, cap),
        target_idle=min(setting.target_idle, cap),
        maximum=min(setting.maximum, cap),
    )
