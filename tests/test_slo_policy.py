"""The ``slo`` plugin: an idle buffer sized from λ·L and the SLO, a pre-warm floor, a guard max."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pydantic
import pytest

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    FloatArray,
    GroupState,
    LocationBounds,
    LocationHistory,
    LocationSample,
)
from autoscaler.domain.policy import Slo
from autoscaler.forecast.synthetic import Diurnal, history
from autoscaler.policy.builtin.buffer import BufferParams
from autoscaler.policy.builtin.slo import SloParams, SloPolicy
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
    return history(Diurnal(peak=400.0), START, START + 7 * DAY, seed=1)


def _registry_plugin() -> SloPolicy:
    registry = PluginRegistry(discover=False)
    registry.register("slo", SloPolicy)
    plugin = registry.get("slo")
    assert isinstance(plugin, SloPolicy)
    return plugin


def test_registers_and_validates_params() -> None:
    registry = PluginRegistry(discover=False)
    registry.register("slo", SloPolicy)
    params = registry.validate_params("slo", {"minIdle": 2, "prewarmSeconds": 900})
    assert params == SloParams(min_idle=2, prewarm_seconds=900)
    with pytest.raises(pydantic.ValidationError, match="minIdl"):
        registry.validate_params("slo", {"minIdl": 2})
    with pytest.raises(pydantic.ValidationError, match="quantile"):
        registry.validate_params("slo", {"quantile": 1.2})


@pytest.mark.parametrize("tenancy", [1, 2, 4, 12])
@pytest.mark.parametrize("model", list(CapacityModel))
def test_multiples_of_tenancy_within_bounds(
    week: LocationHistory, tenancy: int, model: CapacityModel
) -> None:
    plugin = _registry_plugin()
    now = START + 7 * DAY - 60.0
    bounds = LocationBounds(0, 250)
    in_use = int(week.in_use[-1])
    rec = plugin.decide(SloParams(), make_ctx(week, now, in_use=in_use, tenancy=tenancy,
                                              model=model, bounds=bounds))  # fmt: skip
    s = rec.setting
    values = [s.always_on, s.target_idle, s.maximum, s.on_demand or 0]
    assert all(v % tenancy == 0 for v in values), values
    assert all(0 <= v <= 250 for v in values)
    assert s.ceiling <= 250
    assert s.model is model
    if model is CapacityModel.LEGACY:
        assert s.always_on >= in_use  # always-on carries demand + buffer
    else:
        assert s.target_idle > 0
        assert s.maximum >= s.always_on
        assert s.maximum >= min(in_use + s.target_idle, 250)


def test_deterministic_and_explained(week: LocationHistory) -> None:
    now = START + 7 * DAY - 60.0
    ctx = make_ctx(week, now, in_use=int(week.in_use[-1]))
    a = SloPolicy().decide(SloParams(), ctx)
    b = SloPolicy().decide(SloParams(), ctx)
    assert a == b
    for word in ("λ", "refill window", "lead time", "buffer", "window quantile", "forecast"):
        assert word in a.reason
    assert a.forecast_arrivals_per_s is not None
    assert a.forecast_arrivals_per_s > 0


def test_buffer_rises_with_arrival_rate_and_lead_time() -> None:
    now = START + 7 * DAY - 60.0
    buffers = []
    for peak in (40.0, 400.0, 4000.0):
        hist = history(Diurnal(peak=peak), START, START + 7 * DAY, seed=2)
        ctx = make_ctx(hist, now, in_use=int(hist.in_use[-1]))
        buffers.append(SloPolicy().decide(SloParams(), ctx).setting.target_idle)
    assert buffers[0] < buffers[1] < buffers[2]
    # Sub-linear: the Poisson buffer grows like √λ, not like λ.
    assert buffers[2] < 10 * buffers[1]

    hist = history(Diurnal(peak=400.0), START, START + 7 * DAY, seed=2)
    linux = SloPolicy().decide(SloParams(), make_ctx(hist, now, in_use=int(hist.in_use[-1])))
    windows = SloPolicy().decide(
        SloParams(),
        make_ctx(hist, now, in_use=int(hist.in_use[-1]), stream_class="gen5n_win2022"),
    )
    assert windows.setting.target_idle > linux.setting.target_idle
    longer = SloPolicy().decide(
        SloParams(lead_time_seconds=900.0), make_ctx(hist, now, in_use=int(hist.in_use[-1]))
    )
    assert longer.setting.target_idle > linux.setting.target_idle


def test_buffer_follows_the_hour_of_the_day(week: LocationHistory) -> None:
    truth = Diurnal(peak=400.0)
    night = START + 7 * DAY + 0.05 * DAY  # near the trough
    peak = START + 7 * DAY + 0.55 * DAY  # near the peak
    hist = history(truth, START, START + 8 * DAY, seed=3)

    def idle(now: float) -> int:
        i = int(np.searchsorted(hist.at, now))
        ctx = make_ctx(hist, now, in_use=int(hist.in_use[i]))
        return SloPolicy().decide(SloParams(), ctx).setting.target_idle

    assert idle(night) < idle(peak)


def test_stricter_slo_and_explicit_quantile_buy_more(week: LocationHistory) -> None:
    now = START + 7 * DAY - 60.0
    ctx = make_ctx(week, now, in_use=int(week.in_use[-1]))
    base = SloPolicy().decide(SloParams(), ctx).setting.target_idle
    strict = SloPolicy().decide(SloParams(), replace(ctx, slo=Slo(instant=0.999)))
    assert strict.setting.target_idle > base
    q = SloPolicy().decide(SloParams(quantile=0.999), ctx)
    assert q.setting.target_idle >= base
    assert "quantile 0.999" in q.reason
    no_credit = SloPolicy().decide(SloParams(departure_credit=0.0), ctx)
    assert no_credit.setting.target_idle >= base


def test_prewarm_raises_the_floor_before_a_known_ramp() -> None:
    # A sharp morning ramp: flat 20 until 08:00, 300 from 08:30 (a launch every day).
    class Ramp(Diurnal):
        def concurrency(self, t: FloatArray) -> FloatArray:
            tod = (t % DAY) / 3600.0
            return np.clip(20.0 + (tod - 8.0) * 560.0, 20.0, 300.0)

    truth = Ramp()
    hist = history(truth, START, START + 6 * DAY, seed=4)
    plugin = SloPolicy()
    params = SloParams()
    day = START + 5 * DAY

    def decide(hour: float) -> CapacitySetting:
        now = day + hour * 3600.0
        i = int(np.searchsorted(hist.at, now))
        return plugin.decide(params, make_ctx(hist, now, in_use=int(hist.in_use[i]))).setting

    before = decide(7.0)  # nothing forecast within L + prewarm
    assert before.always_on == 0
    ahead = decide(7.85)  # the ramp starts within L + 10 min
    assert ahead.always_on > 40
    assert ahead.maximum >= ahead.always_on + ahead.target_idle


def test_no_history_still_keeps_a_buffer() -> None:
    ctx = make_ctx(LocationHistory.empty(), START, in_use=3, tenancy=2)
    rec = SloPolicy().decide(SloParams(), ctx)
    assert rec.setting.target_idle == 2  # minIdle 1, rounded up to the tenancy
    assert rec.setting.maximum >= 3 + 2
    assert rec.setting.always_on == 0


def test_rejects_foreign_params(week: LocationHistory) -> None:
    ctx = make_ctx(week, START + DAY, in_use=1)
    with pytest.raises(TypeError, match="SloParams"):
        SloPolicy().decide(BufferParams(buffer_size=1), ctx)
