"""Agones-style buffer: keep a fixed or proportional number of slots ready above demand.

Agones' FleetAutoscaler "Buffer" policy keeps ``bufferSize`` game servers Ready (an absolute
count or a percentage of allocated ones) within ``minReplicas``/``maxReplicas``. The same idea
maps onto GameLift Streams as:

- current model, ``bufferOn: targetIdle`` (the default): ``TargetIdle`` = the buffer (the
  service keeps that many slots idle and refills it itself), ``AlwaysOn`` = ``minReplicas``,
  ``Maximum`` = ``maxReplicas`` (or the location's upper bound);
- current model, ``bufferOn: alwaysOn``: ``AlwaysOn`` = max(``minReplicas``, demand + buffer),
  ``TargetIdle`` = 0, as an Agones fleet autoscaler sets its fleet's size: the benchmark's
  ``buffer`` baseline (``../shared/docs/benchmark.md``); the controller, not the service, then
  follows demand, a tick late;
- legacy model (either ``bufferOn``): ``AlwaysOn`` = max(``minReplicas``, demand + buffer),
  ``OnDemand`` = the buffer again as (cold) burst headroom.

The buffer is ``max(bufferSize, ceil(bufferPercent % × demand))`` with demand = sessions holding
or waiting for a slot; either or both may be set. It needs no history and no forecast: it is the
baseline a user would otherwise tune by hand.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from autoscaler.domain.classes import round_down_to_tenancy, round_up_to_tenancy
from autoscaler.domain.models import CapacityModel, CapacitySetting, Recommendation
from autoscaler.policy.plugin import PolicyContext

_EPSILON = 1e-9


class BufferParams(BaseModel):
    """``params`` of a ``buffer`` policy file (camelCase in YAML, Agones names)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    buffer_size: int = Field(
        default=0, ge=0, alias="bufferSize", description="Slots kept ready above demand."
    )
    buffer_percent: float = Field(
        default=0.0,
        ge=0.0,
        le=1000.0,
        alias="bufferPercent",
        description="Slots kept ready, percent of demand (the larger of both wins).",
    )
    min_replicas: int = Field(
        default=0, ge=0, alias="minReplicas", description="Always-on floor, slots."
    )
    max_replicas: int | None = Field(
        default=None,
        ge=0,
        alias="maxReplicas",
        description="Maximum capacity, slots; None: the location's upper bound.",
    )
    buffer_on: Literal["targetIdle", "alwaysOn"] = Field(
        default="targetIdle",
        alias="bufferOn",
        description="Current model: the buffer as TargetIdle (the service refills it) or in "
        "AlwaysOn above demand (the controller follows demand).",
    )

    @model_validator(mode="after")
    def _some_buffer(self) -> Self:
        if self.buffer_size == 0 and self.buffer_percent == 0.0:
            raise ValueError("set bufferSize and/or bufferPercent (both are 0)")
        if self.max_replicas is not None and self.max_replicas < self.min_replicas:
            raise ValueError("maxReplicas must be ≥ minReplicas")
        return self


class BufferPolicy:
    """Plugin ``buffer``: demand + max(bufferSize, bufferPercent × demand) kept ready."""

    name: str = "buffer"
    Params: ClassVar[type[BaseModel]] = BufferParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        if not isinstance(params, BufferParams):
            raise TypeError(f"expected BufferParams, got {type(params).__name__}")
        t = ctx.tenancy
        s = ctx.sample
        demand = max(0, s.in_use) + max(0, s.waiting)
        pct = math.ceil(params.buffer_percent / 100.0 * demand - _EPSILON) if demand else 0
        buffer = round_up_to_tenancy(max(params.buffer_size, pct), t)
        limit = ctx.bounds.max_capacity
        if params.max_replicas is not None:
            limit = min(limit, params.max_replicas)
        cap = round_down_to_tenancy(limit, t)
        floor = min(round_up_to_tenancy(params.min_replicas, t), cap)
        why = (
            f"buffer: demand {demand} (in use {s.in_use} + waiting {s.waiting}), buffer"
            f" max({params.buffer_size}, {params.buffer_percent:g}% → {pct}) = {buffer}"
        )
        always_on = min(max(floor, round_up_to_tenancy(demand, t) + buffer), cap)
        if ctx.capacity_model is CapacityModel.LEGACY:
            setting = CapacitySetting(
                always_on=always_on, on_demand=max(0, min(buffer, cap - always_on))
            )
        elif params.buffer_on == "alwaysOn":
            setting = CapacitySetting(always_on=always_on, target_idle=0, maximum=cap)
        else:
            setting = CapacitySetting(
                always_on=floor, target_idle=min(buffer, cap), maximum=max(cap, floor)
            )
        return Recommendation(
            setting=setting,
            reason=f"{why}; {setting.describe()} (tenancy {t})",
            forecast_in_use=float(demand),
        )
