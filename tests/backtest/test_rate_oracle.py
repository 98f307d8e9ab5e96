"""The rate oracle of ``bench.rate_oracle``: its rate is the realised arrivals, smoothed, and its
hindsight tuning lands on the leanest buffer that still meets the SLO."""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.backtest.runner import model_params
from autoscaler.backtest.sessions import SessionPlan, plan_sessions
from autoscaler.backtest.synthetic import synthetic_trace
from autoscaler.domain.policy import Slo
from bench import rate_oracle as ro

CLASS = "gen4n_ultra"  # tenancy 1, 60 s provisioning median


def test_rate_is_the_arrivals_per_minute_smoothed() -> None:
    # one arrival a minute for the first 60 minutes, then none: a step the average ramps over
    arrivals = np.arange(60) * 60.0 + 1.0
    plan = SessionPlan.build(
        arrival_s=arrivals,
        duration_s=np.full(60, 30.0),
        location=np.zeros(60),
        locations=("us-east-1",),
        t0_epoch_s=1_767_225_600.0,
        horizon_s=7200.0,
        source="step",
    )
    rate = ro.arrival_rate(plan, smooth_min=5)
    assert rate[30] == pytest.approx(1.0)  # well inside the step
    assert rate[59] == pytest.approx(6 / 11)  # minutes 54..59 of the 11 averaged
    assert rate[100] == 0.0
    assert rate[0] == pytest.approx(6 / 11)  # the window's part before t=0 counts as none


@pytest.fixture(scope="module")
def plan() -> SessionPlan:
    trace = synthetic_trace(peak=100, days=0.25, step_s=600, seed=4, trough_ratio=3)
    return plan_sessions(trace, peak=30, seed=7, days=3 / 24)


def test_tuning_finds_the_leanest_buffer_that_meets_the_slo(plan: SessionPlan) -> None:
    params = model_params(60.0)
    slo = Slo()
    best = ro.tune(plan, CLASS, 1, 60.0, slo, params)
    assert best is not None
    assert best.meets_slo
    z = best.params["z"]
    assert ro.Z_RANGE[0] <= z <= ro.Z_RANGE[1]
    # the idle split adds up, and on tenancy 1 nothing is lost to packing
    assert best.idle_kept + best.idle_held + best.idle_partial == pytest.approx(best.cost_ratio - 1)
    assert abs(best.idle_partial) < 0.01
    # one bisection step leaner misses the SLO, and a larger z costs at least as much
    step = (ro.Z_RANGE[1] - ro.Z_RANGE[0]) / 2**ro.BISECTIONS
    leaner = ro.oracle_run(plan, CLASS, 1, z - step, 60.0, params)
    assert not leaner.meets_slo
    richer = ro.oracle_run(plan, CLASS, 1, z + 1.0, 60.0, params)
    assert richer.cost_ratio >= best.cost_ratio
