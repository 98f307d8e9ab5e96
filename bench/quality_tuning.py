"""Tuning harness for the ``slo`` policy's shipped defaults: ours against cached baselines.

Why it exists: ``bench/decision_bench.py`` reruns every hindsight-tuned baseline sweep (tens of
runs per case) each time, which is right for a report and far too slow for trying parameter
variants of our policy. Baselines do not depend on our policy, so this harness runs them once
per case, caches their rows in a JSON file outside the repository, and then scores only our
policy (with parameter or ``behavior`` overrides) against them: one run per case and variant.

Cases are split into a *tuning* set and a *held-out* set (other series, seeds and windows) so a
change that only fits the tuning traces shows up as a loss on the held-out ones. Windows can
start ``offset_days`` into a series' longest hole-free stretch, so held-out cases can also be
later days of a tuned series.

Run: ``python -m bench.quality_tuning [--set tune|held|all] [--param name=value ...]
[--behavior default|reactive|file] [--jobs N]``. Traces are read from ``/work/shared/traces``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.backtest import baselines
from autoscaler.backtest.runner import (
    DEFAULT_POLICY_FILE,
    MAX_INTERP_GAP_S,
    Backtest,
    backtest_registry,
    constant_candidate,
    model_params,
    result_row,
)
from autoscaler.backtest.sessions import SessionPlan, plan_sessions
from autoscaler.backtest.traces import longest_stretch, read_trace
from autoscaler.domain.models import CapacityModel
from autoscaler.domain.policy import Behavior, Policy
from autoscaler.policy.config import load_policy_file
from bench.decision_bench import hindsight_baselines

TRACES = Path("/work/shared/traces")
STEAM = "steamdb_20games_hourly_2025-09-20_2025-11-21.csv"
SMALL = "super_animal_royale_hourly_2025-04-20_2025-12-16.csv"
HYPIXEL = "hypixel_by_gamemode_2025-03-08_2025-05-01.csv"
DEFAULT_CACHE = Path("/tmp/autoscaler-quality/baselines.json")
DAY_S = 86400.0


@dataclass(frozen=True, slots=True)
class TuneCase:
    file: str
    series: str
    peak: float
    stream_class: str
    capacity_model: str
    days: float = 2.0
    seed: int = 1
    offset_days: float = 0.0

    @property
    def key(self) -> str:
        return (
            f"{self.series}|{self.peak:g}|{self.stream_class}|{self.capacity_model}|"
            f"{self.days:g}d|s{self.seed}|+{self.offset_days:g}d"
        )

    @property
    def label(self) -> str:
        off = f" +{self.offset_days:g}d" if self.offset_days else ""
        return (
            f"{self.series[:18]} p{self.peak:g} {self.stream_class} {self.capacity_model[:3]}"
            f" s{self.seed}{off}"
        )


TUNE: tuple[TuneCase, ...] = (
    TuneCase(STEAM, "PUBG Battlegrounds", 40, "gen4n_high", "current"),
    TuneCase(STEAM, "Counter-Strike2", 40, "gen4n_ultra", "current"),
    TuneCase(SMALL, "super_animal_royale_players", 40, "gen4n_high", "legacy"),
    TuneCase(HYPIXEL, "SKYBLOCK", 40, "gen5n_win2022", "current"),
    TuneCase(HYPIXEL, "BEDWARS", 40, "gen4n_high", "legacy"),
    TuneCase(STEAM, "Rust", 400, "gen4n_high", "current", days=1.0),
)
HELD: tuple[TuneCase, ...] = (
    TuneCase(STEAM, "Naraka Bladepoint", 40, "gen4n_ultra", "current", seed=2),
    TuneCase(STEAM, "Team Fortress 2", 40, "gen4n_high", "current", seed=3),
    TuneCase(HYPIXEL, "DUELS", 40, "gen5n_win2022", "legacy", seed=2),
    TuneCase(STEAM, "PUBG Battlegrounds", 400, "gen5n_win2022", "current", days=1.0, seed=2),
    TuneCase(STEAM, "Counter-Strike2", 400, "gen4n_ultra", "legacy", days=1.0, seed=3),
    TuneCase(SMALL, "super_animal_royale_players", 40, "gen4n_ultra", "current", offset_days=9),
    TuneCase(STEAM, "Team Fortress 2", 400, "gen5n_win2022", "legacy", days=1.0, seed=2),
    TuneCase(HYPIXEL, "BEDWARS", 40, "gen4n_high", "current", seed=2, offset_days=5),
)
# Held out from the second round of tuning (departure credit, release delay, tolerance 0),
# which looked at TUNE + HELD: other seeds and later windows of the same regimes.
HELD2: tuple[TuneCase, ...] = (
    TuneCase(STEAM, "Rust", 400, "gen4n_high", "current", days=1.0, seed=4, offset_days=10),
    TuneCase(STEAM, "PUBG Battlegrounds", 40, "gen4n_high", "legacy", seed=4, offset_days=14),
    TuneCase(STEAM, "Team Fortress 2", 400, "gen5n_win2022", "current", days=1.0, seed=5),
    TuneCase(HYPIXEL, "SKYBLOCK", 40, "gen5n_win2022", "legacy", seed=3, offset_days=3),
    TuneCase(STEAM, "Counter-Strike2", 40, "gen4n_high", "current", seed=2, offset_days=12),
    TuneCase(HYPIXEL, "DUELS", 400, "gen4n_ultra", "current", days=1.0, seed=3),
    TuneCase(STEAM, "Naraka Bladepoint", 400, "gen4n_ultra", "legacy", days=1.0, seed=4),
)
# The cases where the session-2 policy missed the SLO once the decision bench covered every
# series (``--tier full --days 2 --seeds 1``): legacy p400 on series the tuning never saw.
WIDE_MISSES: tuple[TuneCase, ...] = (
    TuneCase(STEAM, "Banana", 400, "gen4n_high", "legacy"),
    TuneCase(STEAM, "Banana", 400, "gen4n_ultra", "legacy"),
    TuneCase(STEAM, "Banana", 400, "gen5n_win2022", "legacy"),
    TuneCase(HYPIXEL, "BUILD_BATTLE", 400, "gen4n_ultra", "legacy"),
    # and the two the full-width run still found with the rate floor (98.98 % each)
    TuneCase(STEAM, "Baldur's Gate 3", 400, "gen4n_ultra", "legacy"),
    TuneCase(HYPIXEL, "BEDWARS", 40, "gen5n_win2022", "current"),
)
SETS: Mapping[str, tuple[TuneCase, ...]] = {
    "tune": TUNE,
    "held": HELD,
    "held2": HELD2,
    "all": TUNE + HELD,
    "every": TUNE + HELD + HELD2,
    "wide-misses": WIDE_MISSES,
}


def plan_for(case: TuneCase) -> SessionPlan:
    """The case's session plan: ``days`` from ``offset_days`` into the longest stretch."""
    loaded = read_trace(TRACES / case.file, case.series)
    if isinstance(loaded, SessionPlan):
        return loaded
    stretch = longest_stretch(loaded, MAX_INTERP_GAP_S)
    return plan_sessions(
        stretch,
        peak=case.peak,
        seed=case.seed,
        days=case.days,
        start_offset_s=case.offset_days * DAY_S,
        max_interp_gap_s=MAX_INTERP_GAP_S,
    )


def backtest_for(case: TuneCase, policy: Policy) -> Backtest:
    """The case as a ``Backtest`` (its plan, seed, class and model) scored by ``policy``'s SLO."""
    return Backtest(
        plans=[plan_for(case)],
        seeds=[case.seed],
        stream_class=case.stream_class,
        capacity_model=CapacityModel(case.capacity_model),
        slo=policy.slo,
        price=policy.price_for(case.stream_class),
        registry=backtest_registry(),
        params=model_params(60.0),
    )


def run_baselines(case: TuneCase) -> list[dict[str, Any]]:
    """Every baseline of ``shared/docs/benchmark.md`` on the case, tuned in hindsight (the
    decision bench's own tuning, so both harnesses compare against the same picks)."""
    policy = load_policy_file(
        DEFAULT_POLICY_FILE, resolve_params=backtest_registry().validate_params
    )
    rows, _, _ = hindsight_baselines(backtest_for(case, policy))
    return rows


def ours_policy(overrides: Mapping[str, Any], behavior: str) -> Policy:
    registry = backtest_registry()
    policy = load_policy_file(DEFAULT_POLICY_FILE, resolve_params=registry.validate_params)
    if overrides:
        raw = policy.plugin_params.model_dump(by_alias=True, exclude_none=True)
        raw.update(overrides)
        params = type(policy.plugin_params).model_validate(raw)
        policy = dataclasses.replace(policy, plugin_params=params)
    if behavior == "default":
        policy = dataclasses.replace(policy, behavior=Behavior())
    elif behavior == "reactive":
        policy = dataclasses.replace(policy, behavior=baselines.reactive_behavior())
    elif behavior.startswith("tol"):  # "tol<x>": the file's, with that tolerance
        policy = dataclasses.replace(
            policy, behavior=dataclasses.replace(policy.behavior, tolerance=float(behavior[3:]))
        )
    elif behavior.startswith("down"):  # "down<window s>": that scale-down window, 100 %/min
        fast = dataclasses.replace(
            baselines.reactive_behavior().scale_down, stabilization_window_s=float(behavior[4:])
        )
        policy = dataclasses.replace(
            policy, behavior=dataclasses.replace(policy.behavior, scale_down=fast)
        )
    return policy


def run_ours(case: TuneCase, overrides: Mapping[str, Any], behavior: str) -> dict[str, Any]:
    policy = ours_policy(overrides, behavior)
    bt = backtest_for(case, policy)
    candidate = baselines.Candidate("ours", {}, policy=policy)
    started = time.perf_counter()
    agg = bt.evaluate("ours", constant_candidate(candidate)).aggregate
    row = result_row(dataclasses.replace(agg, policy="ours"))
    row["wall_s"] = time.perf_counter() - started
    return row


def load_cache(path: Path) -> dict[str, list[dict[str, Any]]]:
    if path.is_file():
        data: dict[str, list[dict[str, Any]]] = json.loads(path.read_text())
        return data
    return {}


def _task(args: tuple[TuneCase, Mapping[str, Any], str, bool]) -> tuple[str, Any, Any]:
    case, overrides, behavior, need_baselines = args
    base = run_baselines(case) if need_baselines else None
    return case.key, base, run_ours(case, overrides, behavior)


def evaluate(
    cases: Sequence[TuneCase],
    overrides: Mapping[str, Any],
    behavior: str = "file",
    *,
    jobs: int = 1,
    cache: Path = DEFAULT_CACHE,
) -> list[dict[str, Any]]:
    """Ours (with ``overrides``) on every case, each with its cheapest SLO-meeting baseline."""
    todo = [(c, dict(overrides), behavior, c.key not in load_cache(cache)) for c in cases]
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        done = list(pool.map(_task, todo))
    known = load_cache(cache)  # again: another run may have added cases meanwhile
    for key, base, _ in done:
        if base is not None:
            known[key] = base
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(known, indent=1, default=str))
    out: list[dict[str, Any]] = []
    for case, (_, _, ours) in zip(cases, done, strict=True):
        rows = known[case.key]
        meeting = [r for r in rows if r["meets_slo"]]
        # One plan per case, so one in-use bound: comparing cost_ratio compares cost.
        best = min(meeting, key=lambda r: r["cost_ratio"]) if meeting else None
        out.append(
            {
                "case": case.label,
                "ours": ours,
                "best": best,
                "vs": ours["cost_ratio"] / best["cost_ratio"] if best else None,
                "overhead_vs": (ours["cost_ratio"] - 1) / (best["cost_ratio"] - 1)
                if best and best["cost_ratio"] > 1
                else None,
            }
        )
    return out


def print_table(rows: Sequence[Mapping[str, Any]]) -> None:
    for r in rows:
        o, b = r["ours"], r["best"]
        best = f"{b['policy']:17s} {b['cost_ratio']:.3f}" if b else "-"
        vs = f"{r['vs']:.3f}" if r["vs"] is not None else "-"
        ov = f"{r['overhead_vs']:.2f}" if r["overhead_vs"] is not None else "-"
        print(
            f"{r['case']:58s} {'ok ' if o['meets_slo'] else 'MISS'} "
            f"inst {o['instant'] * 100:6.2f} fail {o['failed'] * 100:5.2f} "
            f"ratio {o['cost_ratio']:.3f} | {best} | vs {vs} idle× {ov} ({o['wall_s']:.0f}s)"
        )
    vs_all = [r["vs"] for r in rows if r["vs"] is not None]
    misses = sum(1 for r in rows if not r["ours"]["meets_slo"])
    if vs_all:
        print(
            f"-- {len(rows)} cases, {misses} miss the SLO; vs cheapest: max {max(vs_all):.3f} "
            f"mean {sum(vs_all) / len(vs_all):.3f}"
        )


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--set", choices=sorted(SETS), default="tune")
    parser.add_argument("--only", help="only cases whose label contains this")
    parser.add_argument("--param", action="append", default=[], help="name=value (camelCase)")
    parser.add_argument(
        "--behavior",
        default="file",
        help="behavior block: file (the policy file's), default (built-in), reactive (HPA), "
        "down<seconds> (the file's, scale-down: that window, 100 %% per minute), or "
        "tol<x> (the file's with tolerance x)",
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args(argv)
    overrides = dict(p.split("=", 1) for p in args.param)
    cases = [c for c in SETS[args.set] if not args.only or args.only in c.label]
    rows = evaluate(
        cases,
        {k: _value(v) for k, v in overrides.items()},
        args.behavior,
        jobs=args.jobs,
        cache=args.cache,
    )
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
