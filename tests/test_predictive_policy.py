"""The ``predictive`` plugin: always-on carries the forecast concurrency quantile, pre-warmed."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.domain.models import (
    CapacityModel,
    LocationBounds,
    LocationHistory,
)
from autoscaler.forecast.synthetic import Diurnal, history
from autoscaler.policy.builtin.predictive import PredictiveParams, PredictivePolicy
from autoscaler.policy.plugin import PluginRegistry
from tests.policy_context import make_ctx

DAY = 86400.0
START = 1_700_006_400.0  # a UTC midnight


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
