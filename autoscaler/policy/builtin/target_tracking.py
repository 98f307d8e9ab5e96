"""Target tracking on in-use capacity (AWS target tracking / Kubernetes HPA style).

The simplest policy that works and the baseline every other one is measured against: keep
in-use demand at ``targetUtilization`` of the always-on floor, i.e.
``desired = ceil(demand / targetUtilization)``. Demand is *uncensored*: sessions holding a slot,
plus sessions waiting for one, plus the placement failures of the last tick (observed sessions
are demand clipped by capacity; counting the failures keeps a shortage from looking like low
demand). It needs no history, so it works from the first tick.

It scales out at once and proposes scale-in just as directly: gradual scale-in (stabilisation
window, step limits) is the guards' job, configured by the policy's ``behavior``.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from autoscaler.domain.classes import round_down_to_tenancy, round_up_to_tenancy
from autoscaler.domain.models import CapacityModel, CapacitySetting, Recommendation
from autoscaler.policy.plugin import PolicyContext

# Protects ceil() from float noise: 7 / 0.7 is 10.000000000000002, which must stay 10.
_EPSILON = 1e-9


class TargetTrackingParams(BaseModel):
    """``params`` of a ``target-tracking`` policy file (camelCase in YAML)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    target_utilization: float = Field(
        default=0.7,
        gt=0.0,
        le=1.0,
        alias="targetUtilization",
        description="Share of the always-on floor that demand should use (0 < x ≤ 1).",
    )
    min_idle: int = Field(
        default=0,
        ge=0,
        alias="minIdle",
        description="Target-idle buffer in slots (current model; rounded up to the tenancy).",
    )


class TargetTrackingPolicy:
    """Plugin ``target-tracking``: always-on follows demand / targetUtilization."""

    name: str = "target-tracking"
    Params: ClassVar[type[BaseModel]] = TargetTrackingParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        if not isinstance(params, TargetTrackingParams):
            raise TypeError(f"expected TargetTrackingParams, got {type(params).__name__}")
        s = ctx.sample
        demand = max(0, s.in_use) + max(0, s.waiting) + max(0, s.placement_failures)
        desired = math.ceil(demand / params.target_utilization - _EPSILON) if demand else 0
        t = ctx.tenancy
        always_on = round_up_to_tenancy(desired, t)
        cap = round_down_to_tenancy(ctx.bounds.max_capacity, t)
        # Room above the floor for bursts: double the desired level, at least one host.
        maximum = max(always_on, min(round_up_to_tenancy(max(desired * 2, always_on + t), t), cap))
        why = (
            f"target-tracking: demand {demand} (in use {s.in_use} + waiting {s.waiting}"
            f" + placement failures {s.placement_failures}) / target utilization"
            f" {params.target_utilization:g} = {desired} slots"
        )
        if ctx.capacity_model is CapacityModel.LEGACY:
            setting = CapacitySetting(always_on=always_on, on_demand=maximum - always_on)
        else:
            target_idle = min(round_up_to_tenancy(params.min_idle, t), maximum)
            setting = CapacitySetting(always_on=always_on, target_idle=target_idle, maximum=maximum)
        return Recommendation(
            setting=setting,
            reason=f"{why}; {setting.describe()} (tenancy {t})",
            forecast_in_use=float(demand),
        )
