"""The plugin registry: entry-point discovery, registration, errors that name what exists."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import ClassVar

import pydantic
import pytest
from pydantic import BaseModel, ConfigDict

from autoscaler.domain.models import CapacitySetting, LocationChange, Recommendation
from autoscaler.policy.builtin.target_tracking import TargetTrackingParams, TargetTrackingPolicy
from autoscaler.policy.plugin import (
    GroupContext,
    PluginLoadError,
    PluginRegistry,
    PolicyContext,
    UnknownPluginError,
    default_registry,
    lead_time_s,
    location_changes,
    validate_params,
)


class _FixedParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    slots: int = 1


class _Fixed:
    name: str = "fixed"
    Params: ClassVar[type[BaseModel]] = _FixedParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        assert isinstance(params, _FixedParams)
        return Recommendation(CapacitySetting(params.slots, 0, params.slots), "fixed")


class _Lenient(_Fixed):
    class Params(BaseModel):  # extra fields allowed: typos would pass silently
        slots: int = 1


class _WithLocations(_Fixed):
    def decide_locations(self, params: BaseModel, ctx: GroupContext) -> tuple[LocationChange, ...]:
        return (LocationChange("eu-west-1", "add", CapacitySetting(2, 0, 2), "demand there"),)


def test_target_tracking_is_discovered_through_entry_points() -> None:
    registry = PluginRegistry()
    assert "target-tracking" in registry.names()
    plugin = registry.get("target-tracking")
    assert isinstance(plugin, TargetTrackingPolicy)
    assert plugin.name == "target-tracking"
    assert registry.get("target-tracking") is plugin  # loaded once


def test_no_discovery_sees_only_registered_plugins() -> None:
    registry = PluginRegistry(discover=False)
    assert registry.names() == ()
    registry.register("fixed", _Fixed)
    assert registry.names() == ("fixed",)
    assert isinstance(registry.get("fixed"), _Fixed)


def test_unknown_plugin_lists_known_names() -> None:
    registry = PluginRegistry()
    registry.register("fixed", _Fixed())
    with pytest.raises(UnknownPluginError) as info:
        registry.get("target-trackin")
    message = str(info.value)
    assert "'target-trackin'" in message
    assert "fixed" in message
    assert "target-tracking" in message
    assert isinstance(info.value, KeyError)
    assert {"fixed", "target-tracking"} <= set(info.value.known)
    assert list(info.value.known) == sorted(info.value.known)


def test_plugin_without_forbidden_extras_is_rejected() -> None:
    with pytest.raises(TypeError, match="extra='forbid'"):
        PluginRegistry(discover=False).register("lenient", _Lenient)


def test_object_missing_decide_is_rejected() -> None:
    class NoDecide:
        name = "x"
        Params = _FixedParams

    with pytest.raises(TypeError, match="no callable 'decide'"):
        PluginRegistry(discover=False).register("x", NoDecide())


def test_broken_entry_point_is_a_load_error_naming_the_cause() -> None:
    broken = EntryPoint("broken", "autoscaler.no_such_module:Plugin", "autoscaler.policies")
    registry = PluginRegistry(declared=[broken])
    assert {"broken", "target-tracking"} <= set(registry.names())
    with pytest.raises(PluginLoadError) as info:
        registry.get("broken")
    assert "ModuleNotFoundError" in str(info.value)
    assert "could not be loaded" in str(info.value)


def test_validate_params_builds_the_plugins_model() -> None:
    params = validate_params("target-tracking", {"targetUtilization": 0.5, "minIdle": 2})
    assert isinstance(params, TargetTrackingParams)
    assert params.target_utilization == 0.5
    assert params.min_idle == 2
    assert validate_params("target-tracking", {}) == TargetTrackingParams()


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"targetUtilization": 0}, "targetUtilization"),
        ({"targetUtilization": 1.5}, "targetUtilization"),
        ({"minIdle": -1}, "minIdle"),
        ({"targetUtilisation": 0.5}, "targetUtilisation"),  # typo: extra field
    ],
)
def test_validate_params_rejects_bad_values(raw: dict[str, object], field: str) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        validate_params("target-tracking", raw)
    assert field in str(info.value)


def test_validate_params_unknown_plugin() -> None:
    with pytest.raises(UnknownPluginError, match="target-tracking"):
        validate_params("nope", {})


def test_default_registry_is_built_once() -> None:
    assert default_registry() is default_registry()


def test_location_changes_hook_defaults_to_none() -> None:
    ctx = GroupContext(now=0.0, group=None, locations=())  # type: ignore[arg-type]
    assert location_changes(_Fixed(), _FixedParams(), ctx) == ()
    changes = location_changes(_WithLocations(), _FixedParams(), ctx)
    assert [c.location for c in changes] == ["eu-west-1"]


def test_lead_time_linux_and_windows() -> None:
    assert lead_time_s("gen4n_high", 60.0) == pytest.approx(60 * 1.8 + 60)
    assert lead_time_s("gen5n_win2022", 60.0) == pytest.approx(240 * 1.8 + 60)
