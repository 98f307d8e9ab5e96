"""Baselines: what they set, how they are tuned, and the hourly-predictive policy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.backtest import baselines
from autoscaler.backtest.baselines import (
    Candidate,
    Fleet,
    HourlyPredictiveParams,
    HourlyPredictivePolicy,
    Unavailable,
    hourly_forecast,
    parse_baselines,
    smallest_meeting,
)
from autoscaler.backtest.runner import (
    Backtest,
    backtest_registry,
    constant_candidate,
    model_params,
    refine_utilization,
)
from autoscaler.backtest.sessions import SessionPlan, plan_sessions
from autoscaler.backtest.synthetic import synthetic_trace
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupState,
    LocationBounds,
    LocationHistory,
    LocationSample,
    LocationState,
)
from autoscaler.domain.policy import Slo
from autoscaler.policy.builtin.buffer import BufferParams
from autoscaler.policy.plugin import PolicyContext

T0 = 1_767_225_600.0  # midnight UTC


def _fleet(model: CapacityModel = CapacityModel.CURRENT) -> Fleet:
    return Fleet(
        locations=("a", "b"),
        peak={"a": 7, "b": 0},
        maximum={"a": 16, "b": 2},
        tenancy=2,
        capacity_model=model,
    )


def test_parse_baselines() -> None:
    assert parse_baselines("all") == baselines.BASELINE_IDS
    assert parse_baselines("none") == ()
    assert parse_baselines(" buffer, static-peak,buffer ") == ("buffer", "static-peak")
    with pytest.raises(ValueError, match="unknown baseline\\(s\\) nope"):
        parse_baselines("buffer,nope")


def test_static_peak_and_native_idle_settings() -> None:
    peak = baselines.static_peak(_fleet())
    assert peak.static == {
        "a": CapacitySetting(always_on=8, target_idle=0, maximum=8),  # 7 rounded to tenancy 2
        "b": CapacitySetting(always_on=0, target_idle=0, maximum=0),
    }
    legacy = baselines.static_peak(_fleet(CapacityModel.LEGACY))
    assert legacy.static is not None
    assert legacy.static["a"] == CapacitySetting(always_on=8, on_demand=0)
    idle = baselines.native_idle(_fleet(), 3)
    assert isinstance(idle, Candidate)
    assert idle.params == {"target_idle": 4}
    assert idle.static == {
        "a": CapacitySetting(always_on=0, target_idle=4, maximum=16),
        "b": CapacitySetting(always_on=0, target_idle=4, maximum=6),
    }
    assert isinstance(baselines.native_idle(_fleet(CapacityModel.LEGACY), 2), Unavailable)


@pytest.mark.parametrize("threshold", [1, 2, 5, 8, 9, 31, 64])
def test_smallest_meeting_finds_the_threshold_with_few_tries(threshold: int) -> None:
    calls: list[int] = []

    def meets(k: int) -> bool:
        calls.append(k)
        return k >= threshold * 2

    found, tried = smallest_meeting(meets, step=2, upper=200)
    assert found == threshold * 2
    assert tried == calls
    assert len(tried) <= 2 * math.ceil(math.log2(threshold + 1)) + 2


def test_smallest_meeting_gives_up_at_the_upper_bound() -> None:
    found, tried = smallest_meeting(lambda _k: False, step=2, upper=20)
    assert found is None
    assert tried == [2, 4, 8, 16, 20]


@pytest.fixture(scope="module")
def small_backtest() -> Backtest:
    trace = synthetic_trace(peak=100, days=0.25, step_s=600, seed=9, trough_ratio=2)
    plans: list[SessionPlan] = [plan_sessions(trace, peak=30, seed=s, days=2 / 24) for s in (1, 2)]
    return Backtest(
        plans=plans,
        seeds=[1, 2],
        stream_class="gen4n_ultra",  # tenancy 1: k moves one slot at a time
        capacity_model=CapacityModel.CURRENT,
        slo=Slo(instant=0.99, failed=0.001),
        price=1.0,
        registry=backtest_registry(),
        params=model_params(60.0),
    )


def test_native_idle_sweep_picks_the_smallest_k_meeting_the_slo(small_backtest: Backtest) -> None:
    chosen = small_backtest.native_idle()
    assert not isinstance(chosen, Unavailable)
    assert chosen.aggregate.meets_slo
    k = int(chosen.candidate.params["target_idle"])
    assert k > 1  # this demand needs a real buffer, so the search had to work
    below = small_backtest.evaluate(
        baselines.NATIVE_IDLE,
        lambda fleet: baselines.native_idle(fleet, k - 1),  # type: ignore[arg-type,return-value]
    )
    assert not below.aggregate.meets_slo
    # the search is exhaustive in the sense that matters: more buffer costs more
    above = small_backtest.evaluate(
        baselines.NATIVE_IDLE,
        lambda fleet: baselines.native_idle(fleet, k + 2),  # type: ignore[arg-type,return-value]
    )
    assert above.aggregate["cost"].mean > chosen.aggregate["cost"].mean


def test_target_tracking_grid_runs_through_the_controller(small_backtest: Backtest) -> None:
    grid = baselines.target_tracking(small_backtest.fleets[0], small_backtest.registry)
    assert not isinstance(grid, Unavailable)
    assert [c.params["targetUtilization"] for c in grid] == list(baselines.UTILIZATION_GRID)
    best = small_backtest.sweep(baselines.TARGET_TRACKING, grid[-2:])
    assert best.results[0].updates > 0  # the controller really acted
    assert best.aggregate.params["tuned_over"] == [{"targetUtilization": u} for u in (0.8, 0.9)]


def test_unknown_plugin_is_unavailable_not_an_error() -> None:
    from autoscaler.policy.plugin import PluginRegistry  # noqa: PLC0415

    got = baselines.buffer(_fleet(), PluginRegistry(discover=False))
    assert isinstance(got, Unavailable)
    assert "buffer" in got.reason


# --- hourly-predictive ------------------------------------------------------------------------


def test_hourly_forecast_is_the_mean_of_daily_peaks_in_that_hour() -> None:
    at = np.arange(T0, T0 + 3 * 86400.0, 60.0)
    hour = np.floor((at - T0) % 86400.0 / 3600.0)
    day = np.floor((at - T0) / 86400.0)
    demand = np.where(hour == 20, 10.0 + 10.0 * day, 1.0)  # 20:00-21:00 peaks 10, 20, 30
    start = T0 + 3 * 86400.0 + 20 * 3600.0
    assert hourly_forecast(at, demand, start, days=14) == pytest.approx(20.0)
    assert hourly_forecast(at, demand, start, days=1) == pytest.approx(30.0)
    assert hourly_forecast(at, demand, start - 3600.0, days=14) == pytest.approx(1.0)
    assert hourly_forecast(at[:0], demand[:0], start, days=14) is None


def _ctx(now: float, in_use: int, history: LocationHistory) -> PolicyContext:
    setting = CapacitySetting(always_on=0, target_idle=0, maximum=100)
    state = GroupState(
        group_id="g",
        arn="arn",
        status="ACTIVE",
        stream_class="gen4n_ultra",
        tenancy=1,
        capacity_model=CapacityModel.CURRENT,
        locations=(LocationState("l", "ACTIVE", setting, 0, in_use, 0),),
        primary_location="l",
    )
    sample = LocationSample("g", "l", now, "ACTIVE", setting, in_use, 0, in_use, 0, 0.0, 0, 0, 0)
    return PolicyContext(
        now=now,
        group=state,
        location="l",
        sample=sample,
        history=history,
        bounds=LocationBounds(0, 100),
        tenancy=1,
        capacity_model=CapacityModel.CURRENT,
        slo=Slo(),
        price_per_slot_hour=1.0,
        interval_s=60.0,
        lead_time_s=170.0,
    )


def _history(at: np.ndarray, in_use: np.ndarray) -> LocationHistory:
    z = np.zeros_like(at)
    return LocationHistory(at, in_use, z, z, z, z, in_use, z, np.ones(at.size, dtype=bool))


def test_hourly_predictive_raises_to_the_forecast_and_never_below_reactive() -> None:
    at = np.arange(T0, T0 + 2 * 86400.0, 60.0)
    hour = np.floor((at - T0) % 86400.0 / 3600.0)
    history = _history(at, np.where(hour == 20, 40.0, 5.0))
    plugin = HourlyPredictivePolicy()
    params = HourlyPredictiveParams(target_utilization=0.8)
    evening = T0 + 2 * 86400.0 + 20 * 3600.0 + 60.0
    # at 20:01 with little demand yet, capacity is already the forecast: 40 / 0.8 = 50
    rec = plugin.decide(params, _ctx(evening, 3, history))
    assert rec.setting.always_on == 50
    # a surge beyond the forecast: the reactive part wins
    rec = plugin.decide(params, _ctx(evening, 48, history))
    assert rec.setting.always_on == 60
    # another hour: forecast 5 → 7 slots
    rec = plugin.decide(params, _ctx(evening - 2 * 3600.0, 0, history))
    assert rec.setting.always_on == 7
    assert rec.setting.maximum >= rec.setting.always_on
    # no history at all: purely reactive
    rec = plugin.decide(params, _ctx(evening, 8, LocationHistory.empty()))
    assert rec.setting.always_on == 10


def test_hourly_predictive_legacy_setting() -> None:
    ctx = _ctx(T0, 8, LocationHistory.empty())
    legacy = PolicyContext(
        **{f: getattr(ctx, f) for f in ctx.__slots__ if f != "capacity_model"},
        capacity_model=CapacityModel.LEGACY,
    )
    rec = HourlyPredictivePolicy().decide(HourlyPredictiveParams(), legacy)
    assert rec.setting.on_demand is not None
    assert rec.setting.always_on == 12  # ceil(8 / 0.7)


def test_buffer_is_always_on_above_demand_and_buffer_idle_is_target_idle() -> None:
    """benchmark.md's ``buffer`` (Agones style) sets AlwaysOn = in use + buffer; the variant
    that puts the same buffer in TargetIdle (which the service refills) is ``buffer-idle``,
    kept as a baseline of its own. The legacy model has no TargetIdle: one buffer only."""
    registry = backtest_registry()
    on = baselines.buffer(_fleet(), registry)
    idle = baselines.buffer(_fleet(), registry, which=baselines.BUFFER_IDLE)
    assert not isinstance(on, Unavailable)
    assert not isinstance(idle, Unavailable)
    assert {c.baseline for c in on} == {baselines.BUFFER}
    assert {c.baseline for c in idle} == {baselines.BUFFER_IDLE}
    assert [c.params for c in on] == [c.params for c in idle]  # the same sweep
    for candidate, layer in ((on[0], "alwaysOn"), (idle[0], "targetIdle")):
        assert candidate.policy is not None
        params = candidate.policy.plugin_params
        assert isinstance(params, BufferParams)
        assert params.buffer_on == layer
    legacy = _fleet(CapacityModel.LEGACY)
    assert not isinstance(baselines.buffer(legacy, registry), Unavailable)
    gone = baselines.buffer(legacy, registry, which=baselines.BUFFER_IDLE)
    assert isinstance(gone, Unavailable)
    assert "legacy" in gone.reason


@pytest.mark.parametrize(
    ("met", "expected"),
    [
        ({0.5: True, 0.6: True, 0.7: True, 0.8: True, 0.9: False}, 0.85),
        ({0.8: True, 0.9: False, 0.85: True}, 0.87),
        ({0.8: True, 0.9: False, 0.85: True, 0.87: False}, 0.86),
        ({0.8: True, 0.9: False, 0.85: True, 0.87: False, 0.86: True}, None),
        ({0.5: True, 0.9: True}, 0.95),  # nothing failed above: up to the top
        ({0.9: True, 0.95: True, 0.97: True, 0.98: True, 0.99: True}, None),
        ({0.5: False, 0.6: False}, None),  # nothing met: nothing to refine
    ],
)
def test_next_utilization_bisects_above_the_best_target(
    met: dict[float, bool], expected: float | None
) -> None:
    assert baselines.next_utilization(met) == expected


def test_utilization_sweep_refines_the_grid_to_the_step(small_backtest: Backtest) -> None:
    """The grid (0.5 … 0.9), then bisection between its best target and the next one up,
    so the cheapest target meeting the SLO is found to the step, not to the grid's 0.1."""
    bt = small_backtest
    grid = bt.utilization_grid(baselines.TARGET_TRACKING, baselines.UTILIZATION_GRID)
    assert not isinstance(grid, Unavailable)
    scored = bt.evaluate_many(baselines.TARGET_TRACKING, [constant_candidate(c) for c in grid])
    more = refine_utilization(bt, baselines.TARGET_TRACKING, scored)
    met = {
        float(s.candidate.params["targetUtilization"]): s.aggregate.meets_slo
        for s in [*scored, *more]
    }
    assert any(met.values())  # this demand can be served by some target
    assert more  # the refinement ran
    assert all(round(u * 100) == round(u * 100, 6) for u in met)  # whole steps
    assert baselines.next_utilization(met) is None  # done: the best is a step from a miss
    best = max(u for u, ok in met.items() if ok)
    assert best >= baselines.UTILIZATION_TOP or met.get(round(best + 0.01, 2)) is False
