"""target-tracking: the numbers, both capacity models, tenancy rounding, no history needed."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import BaseModel

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    LocationBounds,
    LocationHistory,
    LocationState,
)
from autoscaler.policy.builtin.target_tracking import TargetTrackingParams, TargetTrackingPolicy
from autoscaler.policy.plugin import PolicyContext
from tests.policy_context import by_model, make_ctx

POLICY = TargetTrackingPolicy()


def _ctx(
    *,
    in_use: int = 0,
    waiting: int = 0,
    failures: int = 0,
    tenancy: int = 1,
    model: CapacityModel = CapacityModel.CURRENT,
    max_capacity: int = 1_000_000,
    history: LocationHistory | None = None,
) -> PolicyContext:
    current = by_model(
        model, current=CapacitySetting(0, 0, 0), legacy=CapacitySetting(always_on=0, on_demand=0)
    )
    return make_ctx(
        history,
        1000.0,
        location="us-east-1",
        group_locations=(LocationState("us-east-1", "ACTIVE", current),),
        in_use=in_use,
        idle=0,
        waiting=waiting,
        placement_failures=failures,
        tenancy=tenancy,
        model=model,
        stream_class="gen4n_high",
        setting=current,
        bounds=LocationBounds(0, max_capacity),
        lead_time=168.0,
    )


def _params(**raw: object) -> TargetTrackingParams:
    return TargetTrackingParams.model_validate(raw)


def test_desired_is_uncensored_demand_over_target_utilization() -> None:
    rec = POLICY.decide(_params(), _ctx(in_use=7, waiting=2, failures=1))
    # demand 10 / 0.7 = 14.29 → 15 slots of always-on, maximum twice that.
    assert rec.setting == CapacitySetting(always_on=15, target_idle=0, maximum=30)
    assert rec.forecast_in_use == 10.0
    for text in ("demand 10", "in use 7", "waiting 2", "placement failures 1", "0.7", "15 slots"):
        assert text in rec.reason


def test_exact_division_is_not_pushed_up_by_float_noise() -> None:
    rec = POLICY.decide(_params(), _ctx(in_use=7))  # 7 / 0.7 = 10.000000000000002
    assert rec.setting.always_on == 10


def test_full_utilization_keeps_floor_at_demand() -> None:
    rec = POLICY.decide(_params(targetUtilization=1.0), _ctx(in_use=6))
    assert rec.setting == CapacitySetting(always_on=6, target_idle=0, maximum=12)


def test_no_demand_keeps_one_host_of_room() -> None:
    rec = POLICY.decide(_params(), _ctx(tenancy=2))
    assert rec.setting == CapacitySetting(always_on=0, target_idle=0, maximum=2)


def test_min_idle_is_rounded_up_to_tenancy() -> None:
    rec = POLICY.decide(_params(minIdle=3), _ctx(in_use=4, tenancy=2))
    # 4 / 0.7 = 5.7 → 6 (already a multiple of 2); idle 3 → 4.
    assert rec.setting == CapacitySetting(always_on=6, target_idle=4, maximum=12)


@pytest.mark.parametrize(
    ("tenancy", "in_use", "always_on", "maximum"),
    [
        (2, 7, 10, 20),  # 10 slots desired: already even
        (2, 8, 12, 24),  # 11.43 → 12 desired, max 24
        (12, 7, 12, 24),  # 10 → one host of 12; max 20 → 24
        (12, 20, 36, 60),  # 28.6 → 29 → 36; max 58 → 60
    ],
)
def test_tenancy_rounding(tenancy: int, in_use: int, always_on: int, maximum: int) -> None:
    rec = POLICY.decide(_params(), _ctx(in_use=in_use, tenancy=tenancy))
    assert rec.setting.always_on == always_on
    assert rec.setting.maximum == maximum
    assert rec.setting.always_on % tenancy == 0
    assert rec.setting.maximum % tenancy == 0


def test_maximum_is_capped_by_the_bound_but_never_below_always_on() -> None:
    rec = POLICY.decide(_params(), _ctx(in_use=14, max_capacity=25))
    assert rec.setting.always_on == 20
    assert rec.setting.maximum == 25
    rec = POLICY.decide(_params(), _ctx(in_use=14, tenancy=2, max_capacity=15))
    assert rec.setting.maximum == rec.setting.always_on == 20  # the guards apply the bound


def test_legacy_model_drives_always_on_and_on_demand() -> None:
    rec = POLICY.decide(
        _params(minIdle=4), _ctx(in_use=7, waiting=2, failures=1, model=CapacityModel.LEGACY)
    )
    assert rec.setting == CapacitySetting(always_on=15, on_demand=15)
    assert rec.setting.model is CapacityModel.LEGACY
    assert "on-demand 15" in rec.reason


def test_legacy_with_tenancy_keeps_one_host_of_headroom() -> None:
    rec = POLICY.decide(_params(), _ctx(model=CapacityModel.LEGACY, tenancy=12))
    assert rec.setting == CapacitySetting(always_on=0, on_demand=12)


def test_history_is_not_needed_and_does_not_change_the_answer() -> None:
    n = 5
    nan = np.full(n, np.nan)
    gappy = LocationHistory(
        at=np.arange(n, dtype=np.float64) * 60.0,
        in_use=nan,
        waiting=nan,
        arrivals=nan,
        placement_failures=nan,
        departures=nan,
        allocated=nan,
        idle=nan,
        complete=np.zeros(n, dtype=np.bool_),
    )
    empty = POLICY.decide(_params(), _ctx(in_use=3))
    with_history = POLICY.decide(_params(), _ctx(in_use=3, history=gappy))
    assert empty == with_history


class _OtherParams(BaseModel):
    target_utilization: float = 0.7


def test_wrong_params_type_is_an_error() -> None:
    with pytest.raises(TypeError, match="TargetTrackingParams"):
        POLICY.decide(_OtherParams(), _ctx())
