"""Forecast-driven floor: always-on carries the forecast load, the idle buffer stays small.

For users who want predictable, pre-provisioned capacity (AWS predictive scaling style) rather
than the service's own refill: always-on is the forecast concurrency at an upper quantile, taken
as the peak over ``[now, now + L + prewarm]`` so hosts for a ramp are provisioned before it
(L = decision → usable capacity). It never plans below today's demand. Target-idle stays at
``minIdle`` (a host by default) to catch what the forecast misses. It costs more than ``slo``
on smooth demand (the floor holds the quantile's margin all day) and is easier to reason about.
Legacy groups get the same always-on plus the buffer; on-demand is the burst headroom.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from autoscaler.domain.classes import round_down_to_tenancy, round_up_to_tenancy
from autoscaler.domain.models import CapacityModel, CapacitySetting, Recommendation
from autoscaler.forecast import SeasonalForecaster
from autoscaler.policy.builtin.slo import demand_now
from autoscaler.policy.plugin import PolicyContext

_EPSILON = 1e-9


class PredictiveParams(BaseModel):
    """``params`` of a ``predictive`` policy file (camelCase in YAML)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    quantile: float = Field(
        default=0.95,
        gt=0.0,
        lt=1.0,
        description="Forecast concurrency quantile the always-on floor carries.",
    )
    prewarm_seconds: float = Field(
        default=600.0,
        ge=0.0,
        alias="prewarmSeconds",
        description="How far beyond the lead time the floor looks for a rise, seconds.",
    )
    min_idle: int = Field(
        default=1,
        ge=0,
        alias="minIdle",
        description="Target-idle buffer, slots (rounded up to the tenancy).",
    )
    maximum_margin: float = Field(
        default=0.5,
        ge=0.0,
        alias="maximumMargin",
        description="Maximum = always-on × (1 + this), at least one host above it.",
    )
    lead_time_seconds: float | None = Field(
        default=None,
        gt=0.0,
        alias="leadTimeSeconds",
        description="Decision → usable capacity, seconds; None: provisioning p95 + one interval.",
    )


class PredictivePolicy:
    """Plugin ``predictive``: always-on = forecast concurrency quantile, pre-warmed."""

    name: str = "predictive"
    Params: ClassVar[type[BaseModel]] = PredictiveParams

    def __init__(self) -> None:
        self._forecaster = SeasonalForecaster()

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        if not isinstance(params, PredictiveParams):
            raise TypeError(f"expected PredictiveParams, got {type(params).__name__}")
        t = ctx.tenancy
        lead = params.lead_time_seconds or ctx.lead_time_s
        ahead = lead + params.prewarm_seconds
        fc = self._forecaster.forecast(
            ctx.history, ctx.now, np.array([lead, ahead]), quantiles=(params.quantile,)
        )
        demand = demand_now(ctx)
        carried = float(fc.in_use_peak_quantiles[0, 1])
        always_on = round_up_to_tenancy(max(demand, math.ceil(carried - _EPSILON)), t)
        idle = round_up_to_tenancy(params.min_idle, t)
        cap = round_down_to_tenancy(ctx.bounds.max_capacity, t)
        maximum = round_up_to_tenancy(
            max(
                math.ceil(always_on * (1.0 + params.maximum_margin) - _EPSILON),
                always_on + max(idle, t),
            ),
            t,
        )
        maximum = min(maximum, cap)
        why = (
            f"predictive: forecast in-use q{params.quantile:g} peak {carried:.1f} over the next"
            f" {ahead:.0f}s (lead time {lead:.0f}s + pre-warm {params.prewarm_seconds:.0f}s;"
            f" mean {float(fc.in_use_peak_mean[1]):.1f}) [{fc.method}], demand now {demand}"
        )
        if ctx.capacity_model is CapacityModel.LEGACY:
            always_on = min(always_on + idle, maximum)
            setting = CapacitySetting(always_on=always_on, on_demand=maximum - always_on)
        else:
            always_on = min(always_on, maximum)
            setting = CapacitySetting(
                always_on=always_on, target_idle=min(idle, maximum), maximum=maximum
            )
        return Recommendation(
            setting=setting,
            reason=f"{why}; {setting.describe()} (tenancy {t})",
            forecast_in_use=float(fc.in_use_mean[0]),
            forecast_arrivals_per_s=float(fc.arrival_rate_mean[0]),
        )
