"""The ``slo`` plugin: an idle buffer sized from λ·L and the SLO, a pre-warm floor, a guard max."""

from __future__ import annotations

import math
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pydantic
import pytest

from autoscaler.domain.classes import round_up_to_tenancy
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    FloatArray,
    LocationBounds,
    LocationHistory,
)
from autoscaler.domain.policy import Slo
from autoscaler.forecast import NetArrivals, SeasonalForecaster
from autoscaler.forecast.synthetic import Diurnal, history
from autoscaler.guard import step_limit
from autoscaler.policy.builtin.buffer import BufferParams
from autoscaler.policy.builtin.slo import (
    SloParams,
    SloPolicy,
    budget_estimate,
    budget_skew,
    day_measure,
    feedback_factor,
    host_buffer_for_miss_share,
    measured_misses,
    observed_arrival_rate,
    provisioning_exceeds,
    sticky_maximum,
)
from autoscaler.policy.config import load_policy_file
from autoscaler.policy.plugin import PluginRegistry
from tests.policy_context import make_ctx

DAY = 86400.0
DEFAULT_POLICY = Path(__file__).resolve().parents[1] / "policies" / "default.yaml"
START = 1_700_006_400.0  # a UTC midnight


@pytest.fixture(scope="module")
def week() -> LocationHistory:
    return history(Diurnal(peak=400.0), START, START + 7 * DAY, seed=1)


def _registry() -> PluginRegistry:
    registry = PluginRegistry(discover=False)
    registry.register("slo", SloPolicy)
    return registry


def _registry_plugin() -> SloPolicy:
    plugin = _registry().get("slo")
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


def test_budget_skew_spreads_the_day_budget_by_arrival_rate() -> None:
    day = np.array([1.0, 1.0, 4.0, 4.0])  # arrivals per s over the next day
    assert budget_skew(2.0, day, 0.0) == 1.0
    assert budget_skew(0.0, day, 0.5) == 1.0
    assert budget_skew(1.0, np.zeros(4), 0.5) == 1.0
    quiet, busy = budget_skew(1.0, day, 0.5), budget_skew(4.0, day, 0.5)
    assert quiet > 1.0 > busy
    # The arrival-weighted share over the day is what the SLO allows, unchanged.
    weighted = (2 * 1.0 * quiet + 2 * 4.0 * busy) / day.sum()
    assert weighted == pytest.approx(1.0)
    assert budget_skew(1e-6, day, 1.0) == 4.0  # clamped
    assert budget_skew(1e6, day, 1.0) == 0.25


def test_skewed_budget_buys_less_at_night_and_more_at_the_peak() -> None:
    hist = history(Diurnal(peak=400.0), START, START + 8 * DAY, seed=3)
    night = START + 7 * DAY + 0.05 * DAY
    peak = START + 7 * DAY + 0.55 * DAY

    def idle(now: float, skew: float) -> int:
        i = int(np.searchsorted(hist.at, now))
        ctx = make_ctx(hist, now, in_use=int(hist.in_use[i]))
        rec = SloPolicy().decide(SloParams(miss_budget_skew=skew), ctx)
        if skew:
            assert "day-budget skew" in rec.reason
        return rec.setting.target_idle

    assert idle(night, 0.5) < idle(night, 0.0)
    assert idle(peak, 0.5) >= idle(peak, 0.0)


def test_refill_factor_sizes_the_window_from_the_provisioning_median(
    week: LocationHistory,
) -> None:
    now = START + 7 * DAY - 60.0
    ctx = make_ctx(week, now, in_use=int(week.in_use[-1]))
    p95 = SloPolicy().decide(SloParams(), ctx)
    mean = SloPolicy().decide(SloParams(refill_factor=1.06), ctx)
    assert "refill window 108s" in p95.reason  # 1.8 × the 60 s Linux median
    assert "refill window 64s" in mean.reason
    assert mean.setting.target_idle < p95.setting.target_idle
    legacy = make_ctx(week, now, in_use=int(week.in_use[-1]), model=CapacityModel.LEGACY)
    assert "refill window 124s" in SloPolicy().decide(SloParams(refill_factor=1.06), legacy).reason


def test_shipped_policy_lets_a_small_buffer_shrink() -> None:
    """The guards run after the plugin: the shipped scale-down pacing must let a 2-host buffer
    fall to one host (a Percent rule alone floors 20 % of 4 slots to none), and a stabilisation
    window of one interval or less remembers no earlier tick, so it would never scale down."""
    policy = load_policy_file(DEFAULT_POLICY, resolve_params=_registry().validate_params)
    assert isinstance(policy.plugin_params, SloParams)
    down = policy.behavior.scale_down
    assert down.stabilization_window_s == 0 or down.stabilization_window_s > 60.0
    limit = step_limit(
        down, current=4, name="target_idle", applied=(), now=0.0, tenancy=2, up=False
    )
    assert limit is not None
    assert limit <= 2


def test_partial_hosts_dispersion_cap_and_legacy_share(week: LocationHistory) -> None:
    now = START + 7 * DAY - 60.0
    in_use = int(week.in_use[-1])
    ctx = make_ctx(week, now, in_use=in_use, tenancy=2, stream_class="gen4n_high")
    rounded = SloPolicy().decide(SloParams(), ctx)
    credited = SloPolicy().decide(SloParams(partial_host_credit=True), ctx)
    assert credited.setting.target_idle % 2 == 0
    assert credited.setting.target_idle <= rounded.setting.target_idle
    assert "free slots counted" in credited.reason
    capped = SloPolicy().decide(SloParams(max_dispersion=0.0), ctx)
    assert capped.setting.target_idle <= rounded.setting.target_idle
    legacy = replace(ctx, capacity_model=CapacityModel.LEGACY)
    loose = SloPolicy().decide(SloParams(miss_budget_share=2.0), legacy)
    strict = SloPolicy().decide(
        SloParams(miss_budget_share=2.0, legacy_miss_budget_share=0.25), legacy
    )
    assert strict.setting.always_on > loose.setting.always_on
    # The legacy share leaves current-model groups alone.
    same = SloPolicy().decide(SloParams(miss_budget_share=2.0, legacy_miss_budget_share=0.25), ctx)
    assert same.setting == SloPolicy().decide(SloParams(miss_budget_share=2.0), ctx).setting


def test_host_buffer_counts_the_partly_used_host() -> None:
    net = NetArrivals.of(4.0, 0.0, 2.0)
    miss = 0.01
    plain = round_up_to_tenancy(net.buffer_for_miss_share(miss), 2)
    host = host_buffer_for_miss_share(net, miss, 2)
    assert host % 2 == 0
    assert host <= plain
    # Averaged over the partly used host's free slot, it still meets the target.
    short = (net.shortfall(host) + net.shortfall(host + 1)) / 2
    assert short <= miss * net.mean_arrivals
    assert host_buffer_for_miss_share(NetArrivals.of(0.0, 0.0, 1.0), miss, 2) == 0


def _freed(reason: str) -> float:
    return float(reason.split("departures freeing ")[1].split(" ", maxsplit=1)[0])


def test_release_delay_scales_departures_on_long_refill_windows(week: LocationHistory) -> None:
    """A departure's slot counts only if the service still holds it when the window ends: on
    Linux (refill ≈ 108 s, under the 5-minute release delay) nothing changes; on Windows
    (≈ 7 min) the credit shrinks by 300 / window and the buffer grows."""
    now = START + 7 * DAY - 60.0
    in_use = int(week.in_use[-1])
    linux = make_ctx(week, now, in_use=in_use)
    plain = SloPolicy().decide(SloParams(departure_credit=1.0), linux)
    delayed = SloPolicy().decide(
        SloParams(departure_credit=1.0, release_delay_seconds=300.0), linux
    )
    assert delayed.setting == plain.setting
    assert _freed(delayed.reason) == _freed(plain.reason) > 0
    windows = make_ctx(week, now, in_use=in_use, stream_class="gen5n_win2022")
    plain_w = SloPolicy().decide(SloParams(departure_credit=1.0), windows)
    delayed_w = SloPolicy().decide(
        SloParams(departure_credit=1.0, release_delay_seconds=300.0), windows
    )
    window_s = float(plain_w.reason.split("refill window ")[1].split("s")[0])
    assert window_s > 300.0
    # Both readings are rounded to 0.1 in the reason (and the window to 1 s), so they agree
    # within 0.05 + 0.05 × 300 / window plus the window's share.
    assert _freed(delayed_w.reason) == pytest.approx(
        _freed(plain_w.reason) * 300.0 / window_s, abs=0.1
    )
    assert delayed_w.setting.target_idle > plain_w.setting.target_idle


def test_legacy_departure_credit_leaves_current_groups_alone(week: LocationHistory) -> None:
    now = START + 7 * DAY - 60.0
    in_use = int(week.in_use[-1])
    ctx = make_ctx(week, now, in_use=in_use)
    legacy = replace(ctx, capacity_model=CapacityModel.LEGACY)
    half = SloPolicy().decide(SloParams(), legacy)
    full = SloPolicy().decide(SloParams(legacy_departure_credit=1.0), legacy)
    assert _freed(full.reason) == pytest.approx(2 * _freed(half.reason), abs=0.051)
    assert full.setting.always_on < half.setting.always_on
    same = SloPolicy().decide(SloParams(legacy_departure_credit=1.0), ctx)
    assert same.setting == SloPolicy().decide(SloParams(), ctx).setting


def test_provisioning_tail_beyond_the_always_on_timeout() -> None:
    # Linux: median 60 s, p95 108 s → about a quarter of hosts take longer than 75 s.
    assert provisioning_exceeds(75.0, 108.0) == pytest.approx(0.266, abs=0.005)
    # Windows: median 240 s → nearly every host takes longer than 75 s.
    assert provisioning_exceeds(75.0, 432.0) > 0.999
    assert provisioning_exceeds(1e6, 108.0) == 1e-3  # floored, never 0


def test_legacy_failure_cap_and_refill_window(week: LocationHistory) -> None:
    """Windows legacy misses become failures (75 s always-on timeout, 4 min provisioning), so
    the failure cap binds there and buys more always-on; the legacy refill factor shortens the
    window to interval + mean provisioning."""
    now = START + 7 * DAY - 60.0
    in_use = int(week.in_use[-1])
    win = make_ctx(
        week, now, in_use=in_use, stream_class="gen5n_win2022", model=CapacityModel.LEGACY
    )
    free = SloPolicy().decide(SloParams(miss_budget_share=1.0), win)
    capped = SloPolicy().decide(SloParams(miss_budget_share=1.0, legacy_failure_share=1.0), win)
    assert "≤ 0.10% of arrivals missing" in capped.reason
    assert capped.setting.always_on > free.setting.always_on
    short = SloPolicy().decide(SloParams(legacy_refill_factor=1.06), win)
    assert "refill window 314s" in short.reason  # 60 s + 1.06 × 240 s
    current = replace(win, capacity_model=CapacityModel.CURRENT)
    assert SloPolicy().decide(
        SloParams(legacy_failure_share=1.0, legacy_refill_factor=1.06), current
    ) == SloPolicy().decide(SloParams(), current)


def test_sticky_maximum_moves_only_outside_its_band() -> None:
    assert sticky_maximum(40, 45, 0.25, 1) == 45  # within [40, 50]: kept
    assert sticky_maximum(40, 50, 0.25, 1) == 50
    assert sticky_maximum(40, 39, 0.25, 1) == 45  # too low: the middle of the band
    assert sticky_maximum(40, 51, 0.25, 1) == 45  # too high: back to the middle
    assert sticky_maximum(41, 0, 0.25, 2) == 48  # 41 × 1.125 = 46.1 → whole 2-slot hosts


def test_maximum_slack_keeps_the_ceiling_across_small_moves(week: LocationHistory) -> None:
    now = START + 7 * DAY - 60.0
    in_use = int(week.in_use[-1])
    ctx = make_ctx(week, now, in_use=in_use)
    need = SloPolicy().decide(SloParams(), ctx).setting.maximum
    sticky = SloParams(maximum_slack=0.25)
    held = replace(
        ctx, sample=replace(ctx.sample, setting=CapacitySetting(0, 2, math.floor(need * 1.2)))
    )
    assert SloPolicy().decide(sticky, held).setting.maximum == math.floor(need * 1.2)
    low = replace(ctx, sample=replace(ctx.sample, setting=CapacitySetting(0, 2, need - 1)))
    assert SloPolicy().decide(sticky, low).setting.maximum == math.ceil(need * 1.125)


def _rows(at: list[float], arrivals: list[float], complete: list[bool]) -> LocationHistory:
    n = len(at)
    zero = np.zeros(n)
    return LocationHistory(
        at=np.array(at),
        in_use=zero,
        waiting=zero,
        arrivals=np.array(arrivals),
        placement_failures=zero,
        departures=zero,
        allocated=zero,
        idle=zero,
        complete=np.array(complete, dtype=np.bool_),
    )


def test_observed_arrival_rate_is_a_lower_bound_over_complete_samples() -> None:
    at = [0.0, 60.0, 120.0, 180.0, 240.0]
    hist = _rows(at, [99.0, 16.0, 20.0, 64.0, 0.0], [True, True, True, False, True])
    # The window (60, 240] holds 120, 180 (incomplete: its time is left out) and 240: 20
    # arrivals over 120 s; the first sample's arrivals cover no known time and never count.
    assert observed_arrival_rate(hist, 240.0, 180.0) == pytest.approx((20 - math.sqrt(20)) / 120)
    # Everything after the first sample: 36 arrivals over 180 s of complete samples.
    assert observed_arrival_rate(hist, 240.0, 1e9) == pytest.approx((36 - 6) / 180)
    assert observed_arrival_rate(hist, 240.0, 30.0) == 0.0  # (210, 240]: 0 arrivals
    assert observed_arrival_rate(hist, 100.0, 1e9) == pytest.approx((16 - 4) / 60)
    assert observed_arrival_rate(LocationHistory.empty(), 240.0, 600.0) == 0.0
    one = _rows([0.0], [5.0], [True])
    assert observed_arrival_rate(one, 0.0, 600.0) == 0.0
    gap = _rows([0.0, 60.0], [0.0, 7.0], [True, False])
    assert observed_arrival_rate(gap, 60.0, 600.0) == 0.0


def test_rate_floor_keeps_the_buffer_when_a_learnt_dip_does_not_come() -> None:
    # Day one had an evening dip (a one-off: an outage, a patch); day two does not. The
    # seasonal profile, learnt from that one day, forecasts the dip again.
    class OneOffDip(Diurnal):
        def concurrency(self, t: FloatArray) -> FloatArray:
            hour = (t - START) / 3600.0
            dip = (hour >= 19.0) & (hour < 22.0)
            return np.where(dip, 100.0, 350.0)

        def arrival_rate(self, t: FloatArray) -> FloatArray:
            return self.concurrency(t) / self.mean_duration_s

    hist = history(OneOffDip(), START, START + 1.8 * DAY, seed=2)
    now = START + DAY + 19.5 * 3600.0  # inside the dip day one had
    ctx = make_ctx(hist, now, in_use=350)
    plain = SloPolicy().decide(SloParams(), ctx)
    floored = SloPolicy().decide(SloParams(rate_floor_seconds=1200.0), ctx)
    assert "floored at the observed" in floored.reason
    assert "floored" not in plain.reason
    assert floored.setting.target_idle > plain.setting.target_idle
    # Where the forecast is not below what arrives, the floor changes nothing.
    calm = make_ctx(hist, START + DAY + 12 * 3600.0, in_use=350)
    assert (
        SloPolicy().decide(SloParams(rate_floor_seconds=1200.0), calm).setting
        == SloPolicy().decide(SloParams(), calm).setting
    )


def _with_late(hist: LocationHistory, late: FloatArray) -> LocationHistory:
    return replace(hist, late_starts=late)


def test_measured_misses_skip_unmeasured_and_incomplete_rows() -> None:
    at = [0.0, 60.0, 120.0, 180.0, 240.0]
    hist = _rows(at, [10.0, 10.0, 10.0, 10.0, 10.0], [True, True, True, False, True])
    assert measured_misses(hist, 240.0, 600.0) is None  # nothing measured at all
    late = np.array([np.nan, 1.0, 2.0, 5.0, 0.0])
    got = measured_misses(_with_late(hist, late), 240.0, 600.0)
    # Row 0 was not measured (NaN: arrivals left out too), row 3 is incomplete: the rows
    # left cover 3 minutes.
    assert got == (3.0, 0.0, 30.0, 180.0)
    got = measured_misses(_with_late(hist, late), 240.0, 150.0)  # (90, 240]: rows 2-4
    assert got == (2.0, 0.0, 20.0, 120.0)
    assert measured_misses(_with_late(hist, np.full(5, np.nan)), 240.0, 600.0) is None


def test_feedback_factor_needs_evidence_and_is_bounded() -> None:
    target = 0.008
    assert feedback_factor(0.0, 0.0, target, 0.5, 2.0) == pytest.approx(1.0)  # prior only
    assert feedback_factor(8.0, 1000.0, target, 0.5, 2.0) == pytest.approx(1.0)  # on target
    # A day at p40 (1,400 arrivals) without a miss: about x1.8, within the cap.
    assert 1.7 < feedback_factor(0.0, 1400.0, target, 0.5, 2.0) < 1.9
    assert feedback_factor(0.0, 1e6, target, 0.5, 2.0) == 2.0
    # Twice the target's misses tightens by about 1/sqrt(2); a flood stops at 1/4.
    assert feedback_factor(320.0, 20_000.0, target, 0.5, 2.0) == pytest.approx(
        math.sqrt(0.008 / ((320 + 5) / (20_000 + 5 / 0.008))), rel=1e-9
    )
    assert feedback_factor(5000.0, 10_000.0, target, 1.0, 2.0) == 0.25


def test_feedback_tightens_on_measured_misses_and_loosens_only_on_a_full_window(
    week: LocationHistory,
) -> None:
    now = START + 7 * DAY - 60.0
    params = SloParams(feedback_window_seconds=DAY)
    open_loop = SloPolicy().decide(SloParams(), make_ctx(week, now, in_use=300))
    unmeasured = SloPolicy().decide(params, make_ctx(week, now, in_use=300))
    assert unmeasured.setting == open_loop.setting  # no late-start column: open loop
    assert "feedback" not in unmeasured.reason

    missing = _with_late(week, 0.05 * week.arrivals)  # 5 % of sessions started late
    tight = SloPolicy().decide(params, make_ctx(missing, now, in_use=300))
    assert "feedback ×0.25" in tight.reason or "feedback ×0.4" in tight.reason
    assert tight.setting.target_idle > open_loop.setting.target_idle

    perfect = _with_late(week, np.zeros(len(week)))
    loose = SloPolicy().decide(params, make_ctx(perfect, now, in_use=300))
    assert "feedback ×2.00" in loose.reason
    assert loose.setting.target_idle < open_loop.setting.target_idle

    # Measured for 6 hours only: no miss yet is no evidence for a whole day.
    late = np.full(len(week), np.nan)
    late[week.at > now - 6 * 3600.0] = 0.0
    partial = SloPolicy().decide(params, make_ctx(_with_late(week, late), now, in_use=300))
    assert "feedback ×1.00" in partial.reason
    assert partial.setting == open_loop.setting


def test_measured_misses_fast_path_equals_the_masked_sums() -> None:
    rng = np.random.default_rng(5)
    n = 3000
    at = np.cumsum(rng.choice([60.0, 60.0, 30.0], n))
    hist = _rows(list(at), list(rng.poisson(3.0, n).astype(float)), [True] * n)
    late = rng.poisson(0.05, n).astype(float)
    full = _with_late(replace(hist, placement_failures=rng.poisson(0.01, n) * 1.0), late)
    now = float(at[-1])
    got = measured_misses(full, now, 86400.0)
    lo = int(at.searchsorted(now - 86400.0, side="right"))
    ok = np.ones(n - lo, dtype=np.bool_)  # the masked path's sums, spelt out
    want = (
        float(late[lo:][ok].sum()),
        float(full.placement_failures[lo:][ok].sum()),
        float(full.arrivals[lo:][ok].sum()),
        now - float(at[lo - 1]),
    )
    assert got == want
    # One unmeasured row inside the window takes the masked path: that row drops out.
    dirty = late.copy()
    dirty[lo + 5] = np.nan
    slow = measured_misses(replace(full, late_starts=dirty), now, 86400.0)
    assert slow is not None
    assert slow[0] == pytest.approx(want[0] - late[lo + 5])
    assert slow[2] == pytest.approx(want[2] - full.arrivals[lo + 5])


def _late_week(week: LocationHistory, share: float) -> LocationHistory:
    """``week`` with ``share`` of each row's arrivals late."""
    return _with_late(week, share * week.arrivals)


def test_feedback_floor_is_a_parameter(week: LocationHistory) -> None:
    now = START + 7 * DAY - 60.0
    params = SloParams(feedback_window_seconds=DAY, feedback_gain=2.0)
    flooded = make_ctx(_late_week(week, 0.05), now, in_use=300)
    assert "feedback ×0.25 (" in SloPolicy().decide(params, flooded).reason
    deeper = params.model_copy(update={"feedback_min_factor": 1 / 16})
    assert "feedback ×0.06 (" in SloPolicy().decide(deeper, flooded).reason
    with pytest.raises(pydantic.ValidationError, match="feedbackMinFactor"):
        SloParams.model_validate({"feedbackMinFactor": 0.001})


def test_a_day_with_two_measured_hours_is_not_a_measured_day(week: LocationHistory) -> None:
    now = START + 7 * DAY - 60.0
    params = SloParams(feedback_window_seconds=DAY, feedback_gain=2.0, feedback_max_factor=8)
    # The window's first two hours and its newest row measured, no miss; the rest not.
    late = np.full(len(week), np.nan)
    day = week.at > now - DAY
    late[day & (week.at <= now - DAY + 7200.0)] = 0.0
    late[-1] = 0.0
    gappy = SloPolicy().decide(params, make_ctx(_with_late(week, late), now, in_use=300))
    assert "feedback ×1.00" in gappy.reason
    assert "over 2.0 h)" in gappy.reason


# ---------------------------------------------------------------------------------------------
# The integral loop over recorded budgets (feedbackIntegralDays).

_TARGET = 0.8 * 0.01  # feedbackTarget × the default SLO's miss budget
_NOMINAL = 0.5 * 0.01  # the open-loop budget: missBudgetShare (default 0.5) × the SLO's


def _recorded(
    week: LocationHistory, factor: float | FloatArray, late_share: float
) -> LocationHistory:
    """``week`` with ``factor`` × the nominal budget recorded in force on every row and
    ``late_share`` of each row's arrivals late."""
    factors = np.broadcast_to(np.asarray(factor, dtype=np.float64), week.at.shape)
    return replace(week, late_starts=late_share * week.arrivals, miss_budget=factors * _NOMINAL)


def day_budget_estimate(
    history: LocationHistory, day_end: float, target: float, *, failures_only: bool
) -> float | None:
    """The integral's estimate from the UTC day ending at ``day_end`` alone."""
    day = day_measure(history, day_end, failures_only=failures_only)
    return None if day is None else budget_estimate((day,), target)


def test_a_day_estimate_is_the_budget_in_force_times_target_over_measured(
    week: LocationHistory,
) -> None:
    day_end = START + 3 * DAY
    hist = _recorded(week, 2.0, 0.004)  # half the target's misses at x2
    got = day_budget_estimate(hist, day_end, _TARGET, failures_only=False)
    assert got is not None
    day = (week.at > day_end - DAY) & (week.at <= day_end)
    arrivals = float(week.arrivals[day].sum())
    shrunk = (0.004 * arrivals + 5.0) / (arrivals + 5.0 / _TARGET)
    assert got == pytest.approx(2.0 * _NOMINAL * _TARGET / shrunk, rel=1e-9)
    assert 3.6 < got / _NOMINAL < 4.0  # twice the room: about twice the budget (the prior)
    # The budget in force is averaged over time in logs: half the day at x1, half at x4 is x2.
    varying = np.where(week.at <= day_end - DAY / 2, 1.0, 4.0)
    hist = _recorded(week, varying, 0.004)
    assert day_budget_estimate(hist, day_end, _TARGET, failures_only=False) == pytest.approx(
        got, rel=2e-3
    )
    # No estimate from a day whose budget was recorded for less than 90 % of it (a dry run,
    # a fresh deployment, a standby), nor from one without a late-start measurement.
    gappy = np.where(day & (week.at <= day_end - 0.8 * DAY), np.nan, 2.0)
    assert (
        day_budget_estimate(_recorded(week, gappy, 0.004), day_end, _TARGET, failures_only=False)
        is None
    )
    assert (
        day_budget_estimate(replace(hist, late_starts=None), day_end, _TARGET, failures_only=False)
        is None
    )
    assert day_budget_estimate(week, day_end, _TARGET, failures_only=False) is None


def _integral_params() -> SloParams:
    return SloParams(
        feedback_window_seconds=DAY,
        feedback_gain=2.0,
        feedback_max_factor=8.0,
        feedback_min_factor=1 / 16,
        feedback_integral_days=7,
    )


def _first_rows(hist: LocationHistory, n: int) -> LocationHistory:
    """The first ``n`` rows of every column ``hist`` has."""
    columns = {f.name: getattr(hist, f.name) for f in fields(hist)}
    return replace(hist, **{k: v[:n] for k, v in columns.items() if v is not None})


def _closed_loop(
    days: int,
    truth: float,
    slope: float,
    *,
    per_row: float = 10.0,
    params: SloParams | None = None,
) -> tuple[FloatArray, SloPolicy, object]:
    """The integral loop on a plant whose miss share is target × (factor / truth)^slope,
    with ``per_row`` arrivals a minute, deciding every hour for ``days`` days; the day-mean
    factors, the policy, the last context."""
    step = 60.0
    n = int(days * DAY / step)
    at = START + step * np.arange(1, n + 1)
    zero = np.zeros(n)
    late = np.full(n, np.nan)
    recorded = np.full(n, np.nan)
    arrivals = np.full(n, per_row)
    full = LocationHistory(
        at=at,
        in_use=zero,
        waiting=zero,
        arrivals=arrivals,
        placement_failures=zero,
        departures=zero,
        allocated=zero,
        idle=zero,
        complete=np.ones(n, dtype=np.bool_),
        late_starts=late,
        miss_budget=recorded,
    )
    policy = SloPolicy()
    params = params or _integral_params()
    rows_per_hour = int(3600.0 / step)
    factor, ctx = 1.0, None
    for start in range(0, n, rows_per_hour):
        now = START + start * step
        if start:
            view = _first_rows(full, start)
            ctx = make_ctx(view, now, in_use=100)
            factor = policy._feedback(params, ctx, _NOMINAL, None)[0]
        stop = start + rows_per_hour
        recorded[start:stop] = factor * _NOMINAL
        late[start:stop] = per_row * _TARGET * (factor / truth) ** slope
    daily = np.exp(np.log(recorded / _NOMINAL).reshape(days, -1).mean(axis=1))
    return daily, policy, ctx


def test_the_integral_loop_settles_on_the_factor_that_meets_the_target() -> None:
    # Six weeks: three times the integral's memory. The withdrawn recursion (session 5)
    # oscillated with a 15-day period; a sound loop settles and stays.
    truth = 3.0
    daily, policy, ctx = _closed_loop(42, truth, 0.8)
    assert daily[0] < 1.5  # no recorded day yet: the stateless loop alone
    settled = daily[-21:]
    assert np.all(np.abs(settled / truth - 1.0) < 0.05), daily.round(2)
    assert settled.max() / settled.min() < 1.02, daily.round(2)
    # A restarted controller (a new plugin, no memo) reads the same factor from the history.
    assert ctx is not None
    again = SloPolicy()._feedback(_integral_params(), ctx, _NOMINAL, None)
    assert again == policy._feedback(_integral_params(), ctx, _NOMINAL, None)
    assert "integral ×" in again[2]
    # An edited policy whose open-loop budget is twice as large (a larger missBudgetShare)
    # keeps the budget that met the target: the factor on the new budget halves.
    edited = SloPolicy()._feedback(_integral_params(), ctx, 2 * _NOMINAL, None)
    assert edited[0] == pytest.approx(again[0] / 2, rel=1e-9)


def test_the_integral_loop_tightens_where_the_service_is_slower() -> None:
    # The plant needs a factor below 1 (the buffer model is optimistic): the loop goes there
    # and stays within its floor.
    daily, _, _ = _closed_loop(28, 0.25, 1.0)
    assert np.all(np.abs(daily[-7:] / 0.25 - 1.0) < 0.05), daily.round(2)


def test_the_integral_pools_its_days(week: LocationHistory) -> None:
    # Seven days at x2, each with half the target's misses: one estimate from all of them,
    # the prior counted once, not once a day.
    varying = np.where(week.at <= START + 3 * DAY, 1.0, 4.0)
    hist = _recorded(week, varying, 0.004)
    measured = [day_measure(hist, START + d * DAY, failures_only=False) for d in range(1, 7)]
    assert all(m is not None for m in measured)
    days = [m for m in measured if m is not None]
    misses = sum(m.misses for m in days)
    arrivals = sum(m.arrivals for m in days)
    assert misses == pytest.approx(0.004 * arrivals)
    in_force = math.exp(sum(m.log_budget_s for m in days) / sum(m.covered_s for m in days))
    assert in_force == pytest.approx(2.0 * _NOMINAL, rel=2e-3)  # three days x1, three x4
    pooled = budget_estimate(days, _TARGET)
    shrunk = (misses + 5.0) / (arrivals + 5.0 / _TARGET)
    assert pooled == pytest.approx(in_force * _TARGET / shrunk, rel=1e-12)
    assert budget_estimate([], _TARGET) is None
    # The integral acts on that pooled estimate (within the factor's bounds).
    ctx = make_ctx(hist, START + 7 * DAY - 60.0, in_use=300)
    found = SloPolicy()._integral(_integral_params(), ctx, _TARGET, _NOMINAL, failures_only=False)
    assert found is not None
    assert pooled is not None
    factor, days_measured = found
    assert days_measured == 6  # the day ending at START has no rows
    assert factor == pytest.approx(pooled / _NOMINAL, rel=1e-12)


def test_the_integral_loop_settles_at_a_quiet_location_too() -> None:
    # ~860 arrivals a day (peak 40): a day has a handful of misses. Averaging one estimate a
    # day, each shrunk toward the budget in force by a 5-miss prior, the loop crept (here:
    # x2.6 to x2.9 of x3 through the third week); pooled, it is within 3 % by day 13.
    truth = 3.0
    daily, _, _ = _closed_loop(21, truth, 0.8, per_row=0.6)
    assert np.all(np.abs(daily[-7:] / truth - 1.0) < 0.05), daily.round(2)


def test_the_integral_aims_at_its_own_target() -> None:
    # Aimed at 0.9 of the SLO's budget instead of feedbackTarget's 0.8, on a plant whose
    # misses are 0.8 x the budget at x3 and grow as factor^0.8: it settles where they are
    # 0.9 x the budget, at x3 x (9/8)^(1/0.8).
    aimed = _integral_params().model_copy(update={"feedback_integral_target": 0.9})
    daily, _, _ = _closed_loop(28, 3.0, 0.8, params=aimed)
    assert np.all(np.abs(daily[-7:] / (3.0 * (9 / 8) ** 1.25) - 1.0) < 0.05), daily.round(2)


def test_a_bad_day_is_judged_against_the_integrals_aim(week: LocationHistory) -> None:
    # Recorded days at x2 with 0.85 % of arrivals late: worse than feedbackTarget's 0.8 % of
    # the SLO's 1 %, better than the 0.9 % the integral aims at.
    now = START + 7 * DAY - 60.0
    ctx = make_ctx(_recorded(week, 2.0, 0.0085), now, in_use=300)
    plain = SloPolicy()._feedback(_integral_params(), ctx, _NOMINAL, None)
    aimed_params = _integral_params().model_copy(update={"feedback_integral_target": 0.9})
    aimed = SloPolicy()._feedback(aimed_params, ctx, _NOMINAL, None)
    plain_integral = SloPolicy()._integral(
        _integral_params(), ctx, _TARGET, _NOMINAL, failures_only=False
    )
    aimed_integral = SloPolicy()._integral(
        aimed_params, ctx, 0.9 * 0.01, _NOMINAL, failures_only=False
    )
    assert plain_integral is not None
    assert aimed_integral is not None
    # feedbackTarget: the integral tightens below x2 and the day's stateless factor on top
    assert plain[0] < 0.99 * plain_integral[0]
    # the integral's aim: it loosens past x2 and the day is no bad day
    assert aimed[0] == pytest.approx(aimed_integral[0], rel=1e-12)
    assert aimed_integral[0] > 2.0 > plain_integral[0]
    # A legacy group's failure cap keeps feedbackTarget.
    assert aimed[1] == plain[1]


def test_until_two_recorded_days_the_stateless_loop_decides(week: LocationHistory) -> None:
    now = START + 7 * DAY - 60.0
    late = _late_week(week, 0.006)  # three quarters of the target
    stateless = _integral_params().model_copy(update={"feedback_integral_days": None})
    ctx = make_ctx(late, now, in_use=300)
    plain = SloPolicy().decide(stateless, ctx)
    unrecorded = SloPolicy().decide(_integral_params(), ctx)
    assert unrecorded.setting == plain.setting
    assert unrecorded.miss_budget == plain.miss_budget
    assert plain.miss_budget is not None
    assert plain.miss_budget > _NOMINAL  # the stateless loop loosened
    # Recorded days at x2 with room left: the integral goes on loosening where the
    # stateless loop stops (at (target / measured)^2 whatever budget is in force).
    recorded = SloPolicy().decide(
        _integral_params(), make_ctx(_recorded(week, 2.0, 0.006), now, in_use=300)
    )
    assert recorded.miss_budget is not None
    assert recorded.miss_budget > 2.0 * _NOMINAL > plain.miss_budget
    assert "integral ×" in recorded.reason
    # One recorded day is not enough: a single day's estimate is too bold a step.
    day_six = (week.at > START + 5 * DAY) & (week.at <= START + 6 * DAY)
    last_day_only = np.where(day_six, 2.0, np.nan)  # the last completed day
    one_day = SloPolicy().decide(
        _integral_params(), make_ctx(_recorded(week, last_day_only, 0.006), now, in_use=300)
    )
    assert one_day.miss_budget == plain.miss_budget
    assert "integral" not in one_day.reason
    # Open loop and a quantile buffer: nothing to record.
    assert SloPolicy().decide(SloParams(), ctx).miss_budget is None
    quantile = _integral_params().model_copy(update={"quantile": 0.995})
    assert SloPolicy().decide(quantile, ctx).miss_budget is None
    # Nothing measured and no recorded day: the loop is at x1 and the reason says nothing.
    unmeasured = SloPolicy().decide(_integral_params(), make_ctx(week, now, in_use=300))
    assert unmeasured.miss_budget == pytest.approx(_NOMINAL)
    assert "feedback" not in unmeasured.reason


@pytest.mark.parametrize("extra", [0, 1])  # an even and an odd demand
def test_legacy_counts_the_partly_used_hosts_free_slot_exactly(
    week: LocationHistory, extra: int
) -> None:
    """A legacy group's idle capacity is always-on − demand, known at the decision: always-on
    is demand + the buffer in slots, rounded up to whole hosts (not the host-averaged buffer
    rounded up again on top of an odd demand)."""
    now = START + 6 * DAY  # midnight: an odd buffer in slots (11)
    i = int(np.searchsorted(week.at, now))
    demand = 2 * (int(week.in_use[i - 1]) // 2) + extra
    ctx = make_ctx(
        week,
        now,
        in_use=demand,
        tenancy=2,
        stream_class="gen4n_high",
        model=CapacityModel.LEGACY,
    )
    exact = SloPolicy().decide(SloParams(partial_host_credit=True), ctx)
    averaged = SloPolicy().decide(SloParams(), ctx)
    slots = int(exact.reason.split("→ buffer ")[1].split(" ", maxsplit=1)[0])
    assert slots % 2 == 1
    idle = exact.setting.always_on - demand
    assert exact.setting.always_on % 2 == 0
    assert idle == slots + (demand + slots) % 2  # the buffer, and the rounding to a host
    if extra:  # odd demand, odd buffer: a whole number of hosts without a spare slot
        assert exact.setting.always_on < averaged.setting.always_on
    else:
        assert exact.setting.always_on == averaged.setting.always_on
    assert "partly used 2-slot host" in exact.reason


def _upto(hist: LocationHistory, end: float) -> LocationHistory:
    """The rows of ``hist`` at or before ``end`` (what the controller had stored then)."""
    return _first_rows(hist, int(hist.at.searchsorted(end, side="right")))


class _CountingForecaster(SeasonalForecaster):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[float] = []

    def forecast(self, history: LocationHistory, now: float, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(now)
        return super().forecast(history, now, *args, **kwargs)


def test_forecast_refresh_reuses_the_period_s_forecast_and_nothing_else(
    week: LocationHistory,
) -> None:
    refreshed = SloParams(forecast_refresh_seconds=300.0)
    plugin, fresh = SloPolicy(), SloPolicy()
    counting = _CountingForecaster()
    plugin._forecaster = counting  # count the calls the period saves
    period_start = START + 6 * DAY + 17 * 3600.0  # a rising afternoon, on a 5-min boundary
    minutes = [period_start + 60.0 * k for k in range(7)]  # the period's five, then the next
    got = []
    for now in minutes:
        ctx = make_ctx(_upto(week, now), now, in_use=int(week.in_use[int(now - START) // 60]))
        got.append(plugin.decide(refreshed, ctx))
        if now == minutes[0]:
            # the period's first decision is the fresh one to the last digit
            assert got[0] == fresh.decide(SloParams(), ctx)
    # One forecast for the first period's five decisions, one for the next period.
    assert counting.calls == [minutes[0], minutes[5]]
    # Within the period the forecast is the period's first (the history grew meanwhile)...
    assert {r.forecast_in_use for r in got[:5]} == {got[0].forecast_in_use}
    # ...and the next period's is its own.
    assert got[5].forecast_in_use != got[0].forecast_in_use


def test_forecast_refresh_does_not_reuse_another_history(week: LocationHistory) -> None:
    refreshed = SloParams(forecast_refresh_seconds=300.0)
    plugin = SloPolicy()
    counting = _CountingForecaster()
    plugin._forecaster = counting
    now = START + 6 * DAY + 17 * 3600.0  # a period's first minute
    plugin.decide(refreshed, make_ctx(_upto(week, now), now, in_use=300))
    # The same history, continued: the period's forecast is reused.
    plugin.decide(refreshed, make_ctx(_upto(week, now + 60.0), now + 60.0, in_use=300))
    assert counting.calls == [now]
    # Another run at the same times (a seed, a history rewritten by a backfill): the row
    # the kept forecast saw newest differs there, so it is forecast afresh...
    other = replace(week, in_use=week.in_use + 1.0)
    plugin.decide(refreshed, make_ctx(_upto(other, now + 120.0), now + 120.0, in_use=300))
    assert counting.calls == [now, now + 120.0]
    # ...and another location of the same group keeps a forecast of its own.
    eu = make_ctx(_upto(other, now + 180.0), now + 180.0, in_use=300, location="eu-west-1")
    plugin.decide(refreshed, eu)
    plugin.decide(refreshed, make_ctx(_upto(other, now + 180.0), now + 180.0, in_use=300))
    assert counting.calls == [now, now + 120.0, now + 180.0]


@pytest.mark.parametrize("bad", [0.0, -60.0, 7200.0])
def test_forecast_refresh_is_validated(bad: float) -> None:
    with pytest.raises(pydantic.ValidationError, match="forecastRefreshSeconds"):
        SloParams.model_validate({"forecastRefreshSeconds": bad})
