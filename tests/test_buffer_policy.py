"""The ``buffer`` plugin (Agones style): demand + max(bufferSize, bufferPercent) kept ready."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    LocationBounds,
    LocationHistory,
)
from autoscaler.policy.builtin.buffer import BufferParams, BufferPolicy
from autoscaler.policy.plugin import PluginRegistry
from tests.policy_context import make_ctx

DAY = 86400.0
START = 1_700_006_400.0  # a UTC midnight


def _decide(params: BufferParams, **kw: Any) -> CapacitySetting:
    ctx = make_ctx(LocationHistory.empty(), START, **kw)
    return BufferPolicy().decide(params, ctx).setting


def test_registers_and_needs_a_buffer() -> None:
    registry = PluginRegistry(discover=False)
    registry.register("buffer", BufferPolicy)
    assert registry.validate_params("buffer", {"bufferSize": 4}) == BufferParams(buffer_size=4)
    with pytest.raises(pydantic.ValidationError, match="bufferSize"):
        registry.validate_params("buffer", {})
    with pytest.raises(pydantic.ValidationError, match="maxReplicas"):
        registry.validate_params("buffer", {"bufferSize": 1, "minReplicas": 5, "maxReplicas": 2})


def test_current_model_maps_buffer_to_target_idle() -> None:
    s = _decide(BufferParams(buffer_size=3, min_replicas=2), in_use=10)
    assert s == CapacitySetting(always_on=2, target_idle=3, maximum=10_000)


def test_larger_of_absolute_and_percent_wins_and_rounds_to_tenancy() -> None:
    s = _decide(BufferParams(buffer_size=2, buffer_percent=25), in_use=40, tenancy=4)
    assert s.target_idle == 12  # 25 % of 40 = 10 → 12 (tenancy 4)
    s = _decide(BufferParams(buffer_size=5, buffer_percent=25), in_use=4, tenancy=2)
    assert s.target_idle == 6  # 5 > 1 → 6 (tenancy 2)


def test_legacy_keeps_the_buffer_always_on() -> None:
    s = _decide(
        BufferParams(buffer_size=3, min_replicas=1),
        in_use=10,
        model=CapacityModel.LEGACY,
        waiting=1,
    )
    assert s.always_on == 14  # 10 in use + 1 waiting + 3
    assert s.on_demand == 3


def test_max_replicas_and_bounds_cap_everything() -> None:
    s = _decide(BufferParams(buffer_size=8, max_replicas=6), in_use=10)
    assert s.maximum == 6
    assert s.target_idle == 6
    s = _decide(
        BufferParams(buffer_percent=50),
        in_use=100,
        model=CapacityModel.LEGACY,
        bounds=LocationBounds(0, 120),
    )
    assert s.always_on == 120
    assert s.on_demand == 0


def test_buffer_on_always_on_keeps_it_above_demand() -> None:
    """``bufferOn: alwaysOn``: the benchmark's Agones-style buffer baseline."""
    params = BufferParams(buffer_size=3, min_replicas=2, buffer_on="alwaysOn")
    s = _decide(params, in_use=10, waiting=1)
    assert s == CapacitySetting(always_on=14, target_idle=0, maximum=10_000)
    s = _decide(BufferParams(buffer_size=2, buffer_percent=25, buffer_on="alwaysOn"), in_use=40)
    assert s.always_on == 50  # 40 + 25 % of 40
    assert _decide(params, in_use=0).always_on == 3  # max(minReplicas 2, 0 + 3)
    legacy = _decide(params, in_use=10, model=CapacityModel.LEGACY)
    assert legacy == _decide(
        BufferParams(buffer_size=3, min_replicas=2), in_use=10, model=CapacityModel.LEGACY
    )
