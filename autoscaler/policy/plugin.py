"""The policy plugin contract and the registry that finds plugins.

A policy plugin turns what was observed at one location into a capacity recommendation. It is
published under the entry-point group ``autoscaler.policies`` so built-in and third-party
plugins are found the same way, and it is *pure*: everything it may look at is handed to it as
data in a ``PolicyContext`` (``now`` included), so the same decision can be replayed in a
backtest, in virtual time, bit for bit. Plugins never talk to AWS, never read the clock and
never apply anything: the planner asks, the guards decide.

Parameters are validated at the boundary: each plugin carries a pydantic model (``Params``,
``extra="forbid"`` so a typo in a policy file is an error, not a silently ignored key) and the
YAML loader calls ``validate_params(name, raw)`` to turn the file's ``params`` mapping into an
instance of it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from autoscaler.domain.classes import stream_class_info
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupState,
    LocationBounds,
    LocationChange,
    LocationHistory,
    LocationSample,
    Recommendation,
)
from autoscaler.domain.policy import Slo

ENTRY_POINT_GROUP = "autoscaler.policies"

# Median provisioning delay from a capacity change to a usable slot, by operating system
# (gameliftstreams.md: ~90 s Linux/Proton on-demand in AWS's example, minutes for Windows).
PROVISIONING_MEDIAN_S_LINUX = 60.0
PROVISIONING_MEDIAN_S_WINDOWS = 240.0
# Median → high quantile (≈p95) of a right-skewed provisioning delay.
PROVISIONING_P95_FACTOR = 1.8


def lead_time_s(stream_class: str, interval_s: float) -> float:
    """Time from a decision to capacity being usable: provisioning delay at a high quantile
    plus one decision interval (the decision itself may come up to one interval late)."""
    median = (
        PROVISIONING_MEDIAN_S_WINDOWS
        if stream_class_info(stream_class).windows
        else PROVISIONING_MEDIAN_S_LINUX
    )
    return median * PROVISIONING_P95_FACTOR + interval_s


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """Everything a plugin may look at for one location at one tick, as data.

    ``history`` is oldest first and may be empty, short, gappy, or hold NaN: plugins must cope
    (falling back to the current ``sample`` is always possible). ``sample`` may be incomplete
    (``sample.complete`` False): the guards then forbid any decrease, so a plugin need not.
    """

    now: float  # epoch seconds; the only clock a plugin has
    group: GroupState
    location: str
    sample: LocationSample  # this tick
    history: LocationHistory  # stored samples of this location, oldest first
    bounds: LocationBounds
    tenancy: int  # slots per host: every capacity value must be a multiple of it
    capacity_model: CapacityModel  # which fields the recommendation must set
    slo: Slo
    price_per_slot_hour: float  # USD
    interval_s: float  # time between decisions
    lead_time_s: float  # decision → usable capacity (high quantile + one interval)

    @property
    def current(self) -> CapacitySetting:
        """The location's configured capacity as sampled this tick."""
        return self.sample.setting


@dataclass(frozen=True, slots=True)
class GroupContext:
    """What ``decide_locations`` may look at: the per-location contexts of one group (every
    location that has a sample this tick, in the group's order) and the group itself."""

    now: float
    group: GroupState
    locations: tuple[PolicyContext, ...]


class PolicyPlugin(Protocol):
    """A capacity policy. Implementations are stateless; any state they need is in the
    context (history). ``decide`` must be pure and deterministic and return a setting of the
    context's ``capacity_model`` (``on_demand`` set for legacy, None for current). The planner
    replaces exceptions and nonsense answers with "hold current capacity", so a plugin bug
    costs one tick of planning, never the daemon.
    """

    name: str
    Params: ClassVar[type[BaseModel]]

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        """The capacity this location should have, with a human-readable reason."""
        ...


@runtime_checkable
class LocationLifecyclePlugin(Protocol):
    """Optional extension: a plugin that also proposes adding or removing locations.

    The planner calls ``decide_locations`` once per group when the plugin has it (see
    ``location_changes``); a plugin without it never changes the set of locations. Proposals
    pass the guards like capacity does (the primary location and locations with live sessions
    are never removed).
    """

    def decide_locations(
        self, params: BaseModel, ctx: GroupContext
    ) -> tuple[LocationChange, ...]: ...


def location_changes(
    plugin: PolicyPlugin, params: BaseModel, ctx: GroupContext
) -> tuple[LocationChange, ...]:
    """The plugin's location changes; the default (no hook) is none."""
    if isinstance(plugin, LocationLifecyclePlugin):
        return tuple(plugin.decide_locations(params, ctx))
    return ()


class UnknownPluginError(KeyError):
    """No plugin of that name (or it could not be loaded); the message lists the known ones."""

    def __init__(self, name: str, known: Iterable[str], detail: str | None = None) -> None:
        self.name = name
        self.known = tuple(sorted(known))
        self.detail = detail
        listed = ", ".join(self.known) if self.known else "none"
        text = f"unknown policy plugin {name!r} (known: {listed})"
        if detail:
            text = f"policy plugin {name!r} could not be loaded: {detail} (known: {listed})"
        self.message = text
        super().__init__(text)

    def __reduce__(
        self,
    ) -> tuple[
        type[UnknownPluginError], tuple[str, tuple[str, ...], str | None], dict[str, object]
    ]:
        # As ConfigError: rebuilt from its arguments (``args`` holds the message, which this
        # __init__ cannot take), so a backtest worker's error reaches its parent intact.
        return type(self), (self.name, self.known, self.detail), dict(self.__dict__)

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class PluginLoadError(UnknownPluginError):
    """A plugin is declared but importing or checking it failed."""


def _check_plugin(name: str, plugin: object) -> PolicyPlugin:
    """Accept an object that honours the protocol; say precisely what is missing otherwise."""
    problems: list[str] = []
    if not isinstance(getattr(plugin, "name", None), str):
        problems.append("no str attribute 'name'")
    params = getattr(plugin, "Params", None)
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        problems.append("'Params' is not a pydantic model class")
    elif params.model_config.get("extra") != "forbid":
        problems.append("'Params' must forbid extra fields (model_config extra='forbid')")
    if not callable(getattr(plugin, "decide", None)):
        problems.append("no callable 'decide'")
    if problems:
        raise TypeError(f"policy plugin {name!r}: " + "; ".join(problems))
    return plugin  # type: ignore[return-value]  # checked structurally above


class PluginRegistry:
    """Policy plugins by name: entry points of ``autoscaler.policies``, discovered on first
    use and each imported only when asked for (one broken third-party plugin does not break the
    others), plus plugins ``register``-ed directly (tests, embedding)."""

    def __init__(
        self,
        *,
        group: str = ENTRY_POINT_GROUP,
        discover: bool = True,
        declared: Iterable[EntryPoint] = (),
    ) -> None:
        """``discover`` False: only ``declared`` entry points and registered plugins count
        (tests, embedding); True: the installed entry points of ``group`` as well."""
        self._group = group
        self._discover = discover
        self._extra = tuple(declared)
        self._entry_points: dict[str, EntryPoint] | None = None
        self._plugins: dict[str, PolicyPlugin] = {}

    def _declared(self) -> dict[str, EntryPoint]:
        if self._entry_points is None:
            found = tuple(entry_points(group=self._group)) if self._discover else ()
            self._entry_points = {ep.name: ep for ep in (*found, *self._extra)}
        return self._entry_points

    def register(self, name: str, plugin: object) -> None:
        """Add (or replace) a plugin under ``name``; a class is instantiated without
        arguments, like an entry point's target."""
        instance = plugin() if isinstance(plugin, type) else plugin
        self._plugins[name] = _check_plugin(name, instance)

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(set(self._declared()) | set(self._plugins)))

    def get(self, name: str) -> PolicyPlugin:
        plugin = self._plugins.get(name)
        if plugin is not None:
            return plugin
        ep = self._declared().get(name)
        if ep is None:
            raise UnknownPluginError(name, self.names())
        try:
            self.register(name, ep.load())
        except Exception as exc:  # any import-time or shape error is the plugin's fault
            raise PluginLoadError(name, self.names(), f"{type(exc).__name__}: {exc}") from exc
        return self._plugins[name]

    def validate_params(self, name: str, raw: Mapping[str, Any]) -> BaseModel:
        """The plugin's ``Params`` built from a policy file's mapping.

        Raises ``UnknownPluginError`` or ``pydantic.ValidationError``.
        """
        return self.get(name).Params.model_validate(dict(raw))


@functools.lru_cache(maxsize=1)
def default_registry() -> PluginRegistry:
    """The registry of installed plugins, built on first use (no import-time discovery)."""
    return PluginRegistry()


def validate_params(name: str, raw: Mapping[str, Any]) -> BaseModel:
    """Validate a policy file's plugin parameters against the installed plugin ``name``.

    Raises ``UnknownPluginError`` (a ``KeyError``) or ``pydantic.ValidationError``.
    """
    return default_registry().validate_params(name, raw)
