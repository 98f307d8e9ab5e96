"""How fast the service model runs a day of demand, the unit of work of every backtest.

A 30-day backtest at medium scale drives ~270k sessions and 43,200 decisions through the model
and must finish in seconds, so the model alone needs ≥ 50k sessions/s. This run: one day at
~400 concurrent sessions (Poisson arrivals, log-normal durations with mean 40 min, sigma 0.9,
capped at 12 h), one read of the group per 60 s decision, a current-model location with
target-idle capacity so hosts are provisioned, filled and released all day.
Run: ``python -m bench.model_bench``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.model import LocationConfigInput, ServiceModel

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY_S = 86_400.0
CONCURRENCY = 400
MEAN_DURATION_S = 2400.0
SIGMA = 0.9
DECISION_S = 60.0
REGION = "us-east-1"


def _demand(seed: int) -> tuple[list[float], list[float]]:
    rng = np.random.default_rng(seed)
    rate = CONCURRENCY / MEAN_DURATION_S
    n = int(rng.poisson(rate * DAY_S))
    arrivals = np.sort(rng.uniform(0.0, DAY_S, n))
    mu = math.log(MEAN_DURATION_S) - SIGMA**2 / 2
    durations = np.minimum(rng.lognormal(mu, SIGMA, n), 12 * 3600.0)
    return arrivals.tolist(), durations.tolist()


def run(seed: int = 1) -> dict[str, float]:
    arrivals, durations = _demand(seed)
    clock = ManualClock(START)
    model = ServiceModel(clock=clock, seed=seed)
    app = model.create_application(
        region=REGION,
        description="bench",
        runtime={"Type": "PROTON", "Version": "20241007"},
        executable_path="game",
        source_uri="s3://bench/game",
    )
    group = model.create_stream_group(
        region=REGION,
        description="bench",
        stream_class="gen4n_high",
        default_application_id=app.app_id,
        locations=[
            LocationConfigInput(REGION, always_on=300, target_idle=40, maximum=1000),
        ],
    )
    gid = group.group_id
    t0 = START + 300.0  # the group is ACTIVE and the floor provisioned by then
    clock.set(t0)
    model.advance()

    started = time.perf_counter()
    cpu_started = time.process_time()  # the machine is shared: rates use this process's CPU
    next_decision = t0
    reads = 0
    for offset, duration in zip(arrivals, durations, strict=True):
        at = t0 + offset
        while next_decision <= at:
            clock.set(next_decision)
            model.get_stream_group(gid)
            reads += 1
            next_decision += DECISION_S
        clock.set(at)
        model.start_stream_session(gid, application_identifier=app.app_id, end_after_s=duration)
    clock.set(t0 + DAY_S + 13 * 3600.0)
    model.advance()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started

    usage = model.usage()[gid][REGION]
    sessions = len(arrivals)
    return {
        "sessions": float(sessions),
        "events": float(model.events_processed),
        "reads": float(reads),
        "wall_s": elapsed,
        "cpu_s": cpu,
        "sessions_per_s": sessions / cpu,
        "events_per_s": model.events_processed / cpu,
        "instant_share": usage.instant / sessions,
        "failed_share": usage.failed / sessions,
        "cost_ratio": usage.allocated_slot_s / usage.in_use_slot_s,
    }


def main(repeats: int = 5) -> None:
    # the machine is shared: report the best of a few runs (the model's own speed)
    results = sorted((run() for _ in range(repeats)), key=lambda r: r["cpu_s"])
    for key, value in results[0].items():
        print(f"{key:>16}: {value:,.3f}")
    median = results[len(results) // 2]
    print(f"{'median s/s':>16}: {median['sessions_per_s']:,.3f} (of {repeats} runs)")


if __name__ == "__main__":
    main()
