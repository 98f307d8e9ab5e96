"""Robustness of the shipped ``slo`` policy to a service that is slower than it assumes.

Why: the policy sizes its buffer from a model of the service (the stream class's provisioning
delay, the 5-minute release of emptied hosts), and the real service may differ (a region with
slower hosts, a busy day). The decision bench runs policy and simulator on the same model, so
it cannot show what happens then. This runs the shipped policy twice on a simulator whose hosts
provision ``--scale`` times slower than the policy assumes: as shipped (``feedbackWindowSeconds``
measuring late starts and scaling the miss budget, made integral by ``feedbackIntegralDays``),
with the stateless loop only (the integral off), and open loop (the feedback switched off),
and prints the instant share and cost of each. No baselines: the question is how far each falls
below the SLO, not who is cheapest.

Run: ``python -m bench.robustness [--scale 1.5] [--days 3] [--jobs 2]``. Traces are read from
``/work/shared/traces`` (skipped with a message when absent).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from autoscaler.backtest.runner import run_policy, score_outcome
from bench.quality_tuning import HYPIXEL, STEAM, TRACES, TuneCase, backtest_for, ours_policy

# The shipped file without its feedback, and without its integral only.
VARIANTS: dict[str, dict[str, Any]] = {
    "open loop": {"feedbackWindowSeconds": None, "feedbackIntegralDays": None},
    "stateless": {"feedbackIntegralDays": None},
    "shipped": {},
}

CASES: tuple[tuple[str, str, float, str, str], ...] = (
    (STEAM, "Rust", 400, "gen4n_high", "current"),
    (HYPIXEL, "SKYBLOCK", 40, "gen5n_win2022", "current"),
    (STEAM, "Counter-Strike2", 400, "gen4n_ultra", "legacy"),
    (STEAM, "Team Fortress 2", 400, "gen5n_win2022", "current"),
)


def run_case(args: tuple[TuneCase, float, str]) -> dict[str, Any]:
    case, scale, variant = args
    policy = ours_policy(VARIANTS[variant], "file")
    bt = backtest_for(case, policy)
    assert bt.params is not None
    slow = dataclasses.replace(
        bt.params,
        provisioning_median_linux_s=bt.params.provisioning_median_linux_s * scale,
        provisioning_median_windows_s=bt.params.provisioning_median_windows_s * scale,
    )
    plan = bt.plans[0]
    outcome = run_policy(
        plan,
        policy=policy,
        stream_class=case.stream_class,
        capacity_model=bt.capacity_model,
        seed=case.seed,
        interval_s=60.0,
        params=slow,
        registry=bt.registry,
    )
    result = score_outcome(
        outcome, plan, price_per_slot_hour=bt.price, slo=bt.slo, bound_slot_h=bt.bounds[0]
    )
    return {
        "case": case.label,
        "variant": variant,
        "instant": result.instant,
        "failed": result.failed,
        "cost_ratio": result.cost_ratio,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1.5, help="provisioning delay factor")
    parser.add_argument("--days", type=float, default=3.0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if not TRACES.is_dir():
        print(f"skipped: no traces at {TRACES}")
        return 0
    cases = [TuneCase(f, s, p, c, m, days=args.days) for f, s, p, c, m in CASES]
    todo = [(c, args.scale, v) for c in cases for v in VARIANTS]
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(run_case, todo))
    print(f"provisioning {args.scale:g}x slower than the policy assumes, {args.days:g}-day windows")
    print("| case | " + " | ".join(f"{v}: instant / cost_ratio" for v in VARIANTS) + " |")
    print("|---|" + "---|" * len(VARIANTS))
    width = len(VARIANTS)
    for i in range(0, len(rows), width):
        cells = [f"{r['instant']:.2%} / {r['cost_ratio']:.3f}" for r in rows[i : i + width]]
        print(f"| {rows[i]['case']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
