"""Decision quality on real demand: our shipped policy against hindsight-tuned baselines.

What it measures (``shared/docs/benchmark.md``): for each real trace × regime (peak, stream
class, capacity model), ``autoscaler.backtest.runner.backtest`` replays the demand through the
controller's real pipeline in virtual time, runs our policy (``policies/default.yaml``, shipped
parameters, never tuned per trace) and the baselines (each tuned on the very trace it is scored
on), and scores cost against the in-use bound and the SLO. Per regime it reports how often ours
meets the SLO, its median cost_ratio, and its median cost relative to the cheapest baseline
that meets the SLO there (< 1: ours is cheaper than anything a user could have tuned by
hand, in hindsight). Plus the speed of one run: a window of the 20-game trace at peak 400
(30 days in the full run), in sessions and decisions per second of wall time.

The traces are read from ``/work/shared/traces`` (not shipped with the project); without them
the bench says so and returns an empty result.

Run: ``python -m bench.decision_bench [--quick] [--jobs N]``. ``--quick`` (a few minutes on 2
cores): 2-day windows, 1 seed, six cases; the full run: 7-day windows, 3 seeds, every trace ×
every regime (hours).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from autoscaler.backtest.runner import backtest, load_plans, model_params, run_policy
from autoscaler.domain.models import CapacityModel
from autoscaler.policy.config import load_policy_file

TRACES = Path("/work/shared/traces")
STEAM = "steamdb_20games_hourly_2025-09-20_2025-11-21.csv"
SMALL = "super_animal_royale_hourly_2025-04-20_2025-12-16.csv"
HYPIXEL = "hypixel_by_gamemode_2025-03-08_2025-05-01.csv"
SERIES: tuple[tuple[str, str], ...] = (
    (STEAM, "Counter-Strike2"),  # typical
    (STEAM, "PUBG Battlegrounds"),  # steep
    (STEAM, "Team Fortress 2"),  # flat
    (STEAM, "Naraka Bladepoint"),  # steepest
    (STEAM, "Rust"),  # EU/NA evening
    (SMALL, "super_animal_royale_players"),
    (HYPIXEL, "SKYBLOCK"),
    (HYPIXEL, "BEDWARS"),
    (HYPIXEL, "DUELS"),
)
CLASSES = ("gen4n_high", "gen4n_ultra", "gen5n_win2022")  # tenancy 2, tenancy-1 Linux, Windows
PEAKS = (40.0, 400.0)


@dataclass(frozen=True, slots=True)
class Case:
    file: str
    series: str
    peak: float
    stream_class: str
    capacity_model: str
    days: float
    seeds: int

    @property
    def regime(self) -> str:
        return f"peak {self.peak:g} {self.stream_class} {self.capacity_model}"


def cases(quick: bool) -> list[Case]:
    if quick:
        return [
            Case(STEAM, "PUBG Battlegrounds", 40, "gen4n_high", "current", 2, 1),
            Case(STEAM, "Counter-Strike2", 40, "gen4n_ultra", "current", 2, 1),
            Case(SMALL, "super_animal_royale_players", 40, "gen4n_high", "legacy", 2, 1),
            Case(HYPIXEL, "SKYBLOCK", 40, "gen5n_win2022", "current", 2, 1),
            Case(HYPIXEL, "BEDWARS", 40, "gen4n_high", "legacy", 2, 1),
            Case(STEAM, "Rust", 400, "gen4n_high", "current", 1, 1),
        ]
    return [
        Case(f, s, peak, cls, model, 7, 3)
        for f, s in SERIES
        for peak in PEAKS
        for cls in CLASSES
        for model in ("current", "legacy")
    ]


def run_case(case: Case) -> dict[str, Any]:
    started = time.perf_counter()
    report = backtest(
        TRACES / case.file,
        case.series,
        peak=case.peak,
        stream_class=case.stream_class,
        capacity_model=case.capacity_model,
        days=case.days,
        seeds=case.seeds,
    )
    report["case"] = asdict(case)
    report["case_wall_s"] = time.perf_counter() - started
    return report


def speed(days: float) -> dict[str, float]:
    """Wall time of one run of our policy on ``days`` of the 20-game trace at peak 400."""
    (plan,), _ = load_plans(TRACES / STEAM, "Counter-Strike2", peak=400, days=days, seeds=[1])
    from autoscaler.backtest.runner import DEFAULT_POLICY_FILE, backtest_registry  # noqa: PLC0415

    registry = backtest_registry()
    policy = load_policy_file(DEFAULT_POLICY_FILE, resolve_params=registry.validate_params)
    started = time.perf_counter()
    out = run_policy(
        plan,
        policy=policy,
        stream_class="gen4n_high",
        capacity_model=CapacityModel.CURRENT,
        seed=1,
        params=model_params(60.0),
        registry=registry,
    )
    wall = time.perf_counter() - started
    return {
        "days": days,
        "sessions": float(plan.size),
        "decisions": float(out.decisions),
        "wall_s": wall,
        "sessions_per_s": plan.size / wall,
        "decisions_per_s": out.decisions / wall,
        "projected_30_day_s": wall * 30.0 / days,
    }


def _row(report: dict[str, Any], policy: str) -> dict[str, Any] | None:
    return next((r for r in report["results"] if r["policy"] == policy), None)


def summarise(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    by_regime: dict[str, list[dict[str, Any]]] = {}
    for rep in reports:
        regime = Case(**rep["case"]).regime
        by_regime.setdefault(regime, []).append(rep)
    out: list[dict[str, Any]] = []
    for regime, reps in sorted(by_regime.items()):
        ours = [r for r in (_row(rep, "ours") for rep in reps) if r is not None]
        vs = [
            rep["summary"]["ours_vs_cheapest"]
            for rep in reps
            if rep["summary"]["ours_vs_cheapest"] is not None
        ]
        out.append(
            {
                "regime": regime,
                "cases": len(reps),
                "ours_meets_slo": sum(1 for r in ours if r["meets_slo"]),
                "median_cost_ratio": statistics.median(r["cost_ratio"] for r in ours)
                if ours
                else None,
                "median_vs_cheapest_baseline": statistics.median(vs) if vs else None,
            }
        )
    return out


def run(quick: bool = True, jobs: int = 2) -> dict[str, Any]:
    if not TRACES.is_dir():
        print(f"decision bench skipped: no traces at {TRACES}")
        return {"skipped": f"no traces at {TRACES}"}
    todo = cases(quick)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        reports = list(pool.map(run_case, todo))
    figure = speed(2.0 if quick else 30.0)
    return {
        "quick": quick,
        "cases": [
            {
                **rep["case"],
                "results": {
                    r["policy"]: {
                        "cost_ratio": r["cost_ratio"],
                        "instant": r["instant"],
                        "failed": r["failed"],
                        "meets_slo": r["meets_slo"],
                        "params": {k: v for k, v in r["params"].items() if k != "tuned_over"},
                    }
                    for r in rep["results"]
                },
                "summary": rep["summary"],
                "unavailable": rep["unavailable"],
                "wall_s": rep["case_wall_s"],
            }
            for rep in reports
        ],
        "regimes": summarise(reports),
        "speed": figure,
        "wall_s": time.perf_counter() - started,
    }


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_report(result: dict[str, Any]) -> None:
    if "skipped" in result:
        return
    print(
        "case                                    regime                           ours   "
        "ours ratio  cheapest baseline (ratio)   ours/cheapest"
    )
    for c in result["cases"]:
        ours = c["results"].get("ours", {})
        best = c["summary"]["cheapest_baseline"]
        best_ratio = c["results"][best]["cost_ratio"] if best else None
        name = f"{c['series'][:22]} {c['days']:g}d×{c['seeds']}"
        regime = f"peak {c['peak']:g} {c['stream_class']} {c['capacity_model']}"
        print(
            f"{name:39s} {regime:32s} {'meets' if ours.get('meets_slo') else 'MISSES':6s} "
            f"{_fmt(ours.get('cost_ratio'), '.3f'):>10s}  "
            f"{(best or '-'):17s} ({_fmt(best_ratio, '.3f')})   "
            f"{_fmt(c['summary']['ours_vs_cheapest'], '.3f'):>6s}"
        )
    print()
    print(
        "regime                            cases  ours meets SLO  median cost_ratio  "
        "median ours/cheapest"
    )
    for r in result["regimes"]:
        print(
            f"{r['regime']:33s} {r['cases']:5d}  {r['ours_meets_slo']:>6d}/{r['cases']:<7d} "
            f"{_fmt(r['median_cost_ratio'], '.3f'):>17s}  "
            f"{_fmt(r['median_vs_cheapest_baseline'], '.3f'):>20s}"
        )
    s = result["speed"]
    print()
    print(
        f"speed: {s['days']:g} days at peak 400 (ours, gen4n_high): {s['sessions']:.0f} sessions, "
        f"{s['decisions']:.0f} decisions in {s['wall_s']:.1f} s = {s['sessions_per_s']:.0f} "
        f"sessions/s, {s['decisions_per_s']:.0f} decisions/s (30 days ≈ "
        f"{s['projected_30_day_s']:.0f} s)"
    )
    print(f"bench wall time {result['wall_s']:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a few minutes on 2 cores")
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--json", help="also write the full result here")
    args = parser.parse_args(argv)
    result = run(quick=args.quick, jobs=args.jobs)
    print_report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
