"""A resolved policy for one set of stream groups, as plain frozen data.

The YAML policy file (``autoscaler.policy.config``) is validated with pydantic at the boundary
and turned into these; the planner, the guards and the controller only ever see these.
Field names follow what users know: HPA (behavior.scaleUp/scaleDown, stabilizationWindowSeconds,
policies, selectPolicy, tolerance), KEDA (fallback, paused), AWS predictive scaling (mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from autoscaler.domain.models import CapacitySetting, LocationBounds


class Mode(StrEnum):
    FORECAST_ONLY = "ForecastOnly"  # record forecasts and plans, apply nothing
    FORECAST_AND_SCALE = "ForecastAndScale"


class SelectPolicy(StrEnum):
    MAX = "Max"  # the rule allowing the largest change wins
    MIN = "Min"  # the rule allowing the smallest change wins
    DISABLED = "Disabled"  # no change in this direction at all


class RuleType(StrEnum):
    SLOTS = "Slots"  # absolute number of slots per period
    PERCENT = "Percent"  # percent of the current value per period


class DriftAction(StrEnum):
    RESPECT = "respect"  # a hand-made change holds for ``drift_cooldown_s``, then we resume
    REVERT = "revert"  # put back what the controller last applied


class FallbackBehavior(StrEnum):
    HOLD = "hold"  # keep capacity as it is (never scale down blind)
    STATIC = "static"  # go to ``fallback.always_on`` etc. (only ever upwards)


@dataclass(frozen=True, slots=True)
class ScalingRule:
    """HPA ``behavior.scaleUp.policies[]``: at most ``value`` change per ``period_s``."""

    type: RuleType
    value: float
    period_s: float


@dataclass(frozen=True, slots=True)
class DirectionBehavior:
    stabilization_window_s: float
    rules: tuple[ScalingRule, ...]
    select_policy: SelectPolicy = SelectPolicy.MAX


def _default_scale_up() -> DirectionBehavior:
    # Scale out at once: a player waiting costs more than an idle GPU for a minute.
    return DirectionBehavior(
        stabilization_window_s=0.0,
        rules=(
            ScalingRule(RuleType.PERCENT, 100.0, 60.0),
            ScalingRule(RuleType.SLOTS, 8.0, 60.0),
        ),
        select_policy=SelectPolicy.MAX,
    )


def _default_scale_down() -> DirectionBehavior:
    # Scale in gradually after 5 minutes of lower recommendations (HPA's default window).
    return DirectionBehavior(
        stabilization_window_s=300.0,
        rules=(ScalingRule(RuleType.PERCENT, 20.0, 60.0),),
        select_policy=SelectPolicy.MAX,
    )


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: DirectionBehavior = field(default_factory=_default_scale_up)
    scale_down: DirectionBehavior = field(default_factory=_default_scale_down)
    tolerance: float = 0.0  # ignore relative changes smaller than this (0.1 = 10 %)
    cooldown_s: float = 0.0  # minimum time between two applied changes of a group


@dataclass(frozen=True, slots=True)
class Slo:
    instant: float = 0.99  # share of sessions that must start on idle capacity at once
    failed: float = 0.001  # share of sessions that may fail with placementTimeout


@dataclass(frozen=True, slots=True)
class Budget:
    max_cost_per_hour: float | None = None  # USD across every group of the policy
    max_cost_per_month: float | None = None
    # What is cut first when a cap binds: lower-priority locations lose idle buffer first.
    cut_order: tuple[str, ...] = ("target_idle", "maximum", "always_on")

    @property
    def has_cap(self) -> bool:
        return self.max_cost_per_hour is not None or self.max_cost_per_month is not None


@dataclass(frozen=True, slots=True)
class Fallback:
    """KEDA-style: after ``failure_threshold`` failed samples or policy errors in a row."""

    failure_threshold: int = 3
    behavior: FallbackBehavior = FallbackBehavior.HOLD
    always_on: int = 0
    target_idle: int = 0
    maximum: int = 0


@dataclass(frozen=True, slots=True)
class GroupSelector:
    """Which stream groups a policy manages: any listed id or ARN, or every group whose tags
    include all of ``tags``."""

    ids: tuple[str, ...] = ()
    arns: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def matches(self, group_id: str, arn: str, tags: Mapping[str, str] | None) -> bool:
        if group_id in self.ids or arn in self.arns:
            return True
        if self.tags and tags is not None:
            return all(tags.get(k) == v for k, v in self.tags.items())
        return False


@dataclass(frozen=True, slots=True)
class LifecycleWindow:
    """A recurring window during which a candidate location must be part of the group: it
    starts at each ``cron`` time read in ``time_zone``'s wall clock and lasts ``duration_s``."""

    cron: str
    duration_s: float
    time_zone: str = "UTC"


@dataclass(frozen=True, slots=True)
class LocationCandidate:
    """A location the controller may add and remove (``spec.locationLifecycle.candidates``).

    It is added ahead of any of ``windows`` or of the group's demand forecast reaching
    ``forecast_above`` slots (None: no forecast trigger), with ``capacity`` as its first
    setting; with neither trigger it is only ever removed (when idle).
    """

    location: str
    capacity: CapacitySetting
    windows: tuple[LifecycleWindow, ...] = ()
    forecast_above: float | None = None
    forecast_quantile: float = 0.9


@dataclass(frozen=True, slots=True)
class LocationLifecycle:
    """When to add and remove locations; locations not listed are never added or removed."""

    candidates: tuple[LocationCandidate, ...] = ()
    remove_after_idle_s: float = 3600.0  # no sessions, waits or arrivals this long → remove
    activation_s: float = 600.0  # AddStreamGroupLocations → ACTIVE (content replication)


# Example prices, USD per slot-hour (shared/docs/gameliftstreams.md). Rates change: they are
# configuration; a policy file's ``prices`` override these.
DEFAULT_PRICES_PER_SLOT_HOUR: Mapping[str, float] = {
    "gen4n_ultra": 0.4982,
    "gen4n_high": 0.6571,
    "gen5n_win2022": 2.13,
}
FALLBACK_PRICE_PER_SLOT_HOUR = 1.0


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy file, resolved: everything the controller needs to manage its groups."""

    name: str
    source: str  # file path, for messages
    selector: GroupSelector
    plugin: str  # entry-point name in ``autoscaler.policies``
    plugin_params: Any  # the plugin's validated pydantic model instance
    default_bounds: LocationBounds = field(default_factory=LocationBounds)
    location_bounds: Mapping[str, LocationBounds] = field(default_factory=dict)
    behavior: Behavior = field(default_factory=Behavior)
    slo: Slo = field(default_factory=Slo)
    budget: Budget = field(default_factory=Budget)
    fallback: Fallback = field(default_factory=Fallback)
    prices: Mapping[str, float] = field(default_factory=dict)
    mode: Mode = Mode.FORECAST_AND_SCALE
    dry_run: bool = False
    paused: bool = False
    stale_after_s: float = 180.0  # data older than this freezes the group
    drift: DriftAction = DriftAction.RESPECT
    drift_cooldown_s: float = 1800.0
    history_window_s: float = 14 * 86400.0  # how much history the plugin is given
    location_lifecycle: LocationLifecycle | None = None  # None: the set of locations is fixed

    def bounds_for(self, location: str) -> LocationBounds:
        return self.location_bounds.get(location, self.default_bounds)

    def price_for(self, stream_class: str) -> float:
        if stream_class in self.prices:
            return self.prices[stream_class]
        return DEFAULT_PRICES_PER_SLOT_HOUR.get(stream_class, FALLBACK_PRICE_PER_SLOT_HOUR)
