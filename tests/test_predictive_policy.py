"""The ``predictive`` plugin: always-on carries the forecast concurrency quantile, pre-warmed."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupState,
    LocationBounds,
    LocationHistory,
    LocationSample,
)
from autoscaler.domain.policy import Slo
from autoscaler.forecast.synthetic import Diurnal, history
from autoscaler.policy.builtin.predictive import PredictiveParams, PredictivePolicy
from autoscaler.policy.plugin import PluginRegistry, PolicyContext, lead_time_s

DAY = 86400.0
START = 1_700_006_400.0  # a UTC midnight


def make_ctx(
    hist: LocationHistory,
    now: float,
    *,
    in_use: int,
    tenancy: int = 1,
    model: CapacityModel = CapacityModel.CURRENT,
    stream_class: str = "gen4n_ultra",
    bounds: LocationBounds | None = None,
    waiting: int = 0,
) -> PolicyContext:
    setting = (
        CapacitySetting(always_on=0, on_demand=10)
        if model is CapacityModel.LEGACY
        else CapacitySetting(0, 2, 100)
    )
    group = GroupState(
        group_id="sg-1",
        arn="arn:aws:gameliftstreams:us-east-2:123456789012:streamgroup/sg-1",
        status="ACTIVE",
        stream_class=stream_class,
        tenancy=tenancy,
        capacity_model=model,
        locations=(),
        primary_location="us-east-2",
    )
    sample = LocationSample(
        group_id="sg-1",
        location="us-east-2",
        at=now,
        status="ACTIVE",
        setting=setting,
        allocated=in_use + 2,
        idle=2,
        in_use=in_use,
        waiting=waiting,
        oldest_waiting_s=0.0,
        arrivals=0,
        placement_failures=0,
        departures=0,
    )
    return PolicyContext(
        now=now,
        group=group,
        location="us-east-2",
        sample=sample,
        history=hist,
        bounds=bounds or LocationBounds(0, 10_000),
        tenancy=tenancy,
        capacity_model=model,
        slo=Slo(),
        price_per_slot_hour=0.5,
        interval_s=60.0,
        lead_time_s=lead_time_s(stream_class, 60.0),
    )


@pytest.fixture(scope="module")
def week() -> LocationHistory:
    return history(Diurnal(peak=200.0), START, START + 7 * DAY, seed=1)


def test_registers_and_validates() -> None:
    registry = PluginRegistry(discover=False)
    registry.register("predictive", PredictivePolicy)
    assert registry.validate_params("predictive", {"quantile": 0.9}) == PredictiveParams(
        quantile=0.9
    )


@pytest.mark.parametrize("tenancy", [1, 2, 12])
@pytest.mark.parametrize("model", list(CapacityModel))
def test_floor_carries_the_forecast(
    week: LocationHistory, tenancy: int, model: CapacityModel
) -> None:
    now = START + 7 * DAY - 60.0
    in_use = int(week.in_use[-1])
    ctx = make_ctx(week, now, in_use=in_use, tenancy=tenancy, model=model)
    rec = PredictivePolicy().decide(PredictiveParams(), ctx)
    s = rec.setting
    assert all(v % tenancy == 0 for v in (s.always_on, s.target_idle, s.maximum, s.on_demand or 0))
    assert s.always_on >= in_use
    assert s.always_on >= Diurnal(peak=200.0).concurrency(np.array([now]))[0]
    assert s.ceiling > s.always_on
    assert s.model is model
    assert "predictive" in rec.reason
    assert "q0.95" in rec.reason


def test_higher_quantile_buys_more_and_bounds_hold(week: LocationHistory) -> None:
    now = START + 7 * DAY - 60.0
    ctx = make_ctx(week, now, in_use=int(week.in_use[-1]))
    low = PredictivePolicy().decide(PredictiveParams(quantile=0.5), ctx).setting
    high = PredictivePolicy().decide(PredictiveParams(quantile=0.99), ctx).setting
    assert high.always_on > low.always_on
    tight = make_ctx(week, now, in_use=int(week.in_use[-1]), bounds=LocationBounds(0, 30))
    capped = PredictivePolicy().decide(PredictiveParams(), tight).setting
    assert capped.maximum <= 30
    assert capped.always_on <= 30


def test_prewarms_ahead_of_the_daily_rise(week: LocationHistory) -> None:
    truth = Diurnal(peak=200.0)
    hist = history(truth, START, START + 8 * DAY, seed=5)
    trough = START + 7 * DAY + 0.05 * DAY  # the wave rises after its trough at 0.05 day
    i = int(np.searchsorted(hist.at, trough))
    ctx = make_ctx(hist, trough, in_use=int(hist.in_use[i]))
    near = PredictivePolicy().decide(PredictiveParams(prewarm_seconds=0.0), ctx).setting
    far = PredictivePolicy().decide(PredictiveParams(prewarm_seconds=4 * 3600.0), ctx).setting
    assert far.always_on > near.always_on
    later = truth.concurrency(np.array([trough + 4 * 3600.0]))[0]
    assert far.always_on >= later


def test_deterministic(week: LocationHistory) -> None:
    ctx = make_ctx(week, START + 6.5 * DAY, in_use=50)
    assert PredictivePolicy().decide(PredictiveParams(), ctx) == PredictivePolicy().decide(
        PredictiveParams(), ctx
    )
