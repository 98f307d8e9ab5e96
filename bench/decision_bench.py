"""Decision quality on real demand: our shipped policy against hindsight-tuned baselines.

What it measures (``shared/docs/benchmark.md``): for each real trace × regime (peak, stream
class, capacity model), ``autoscaler.backtest.runner.backtest`` replays the demand through the
controller's real pipeline in virtual time, runs our policy (``policies/default.yaml``, shipped
parameters, never tuned per trace) and the baselines (each tuned on the very trace it is scored
on), and scores cost against the in-use bound and the SLO. It then checks the issue's three
targets case by case: ours meets the SLO; ours costs less than every baseline that meets it;
and where demand swings ≥ 4× within a day or provisioning takes minutes (Windows), ours' idle
overhead (cost_ratio − 1) is at most 0.6× the cheapest baseline's. Where that last target
applies it also says how much of the cheapest's overhead ours' held and partly used slots
already take (``held_partial_vs_cheapest``, from the run's idle split): above 0.6, no buffer
setting, not even none, could meet the target on the service's own release delay and packing.

Tiers (``--tier``):

- ``quick``: six cases, 2-day windows, 1 seed (minutes);
- ``standard``: nine representative series (typical, steep, flat, steepest, evening, the small
  game, three Hypixel modes) × every regime (peak 40 and 400, a tenancy-2 Linux class, a
  tenancy-1 Linux class, a Windows class, both capacity models): 108 cases, 2-day windows,
  1 seed (about an hour on 2 cores once the baselines are cached, longer the first time);
- ``full``: every series of the 20-game file, the small game and five Hypixel modes × every
  regime, 7-day windows, 3 seeds (days of CPU on this machine: resumable, see below).

The baselines are tuned exactly as ``autoscaler backtest`` tunes them, except that each swept
family is walked leanest first and stops at the first member meeting the SLO (``lean_first``:
the families are monotone in their knob, so the rest cannot be the cheapest that meets it);
about 15 runs per case instead of 26. With several seeds, a candidate's seeds run in order
and stop at the first that misses the SLO (``ScreenedBacktest``: it must hold on every seed,
so the rest cannot change the pick); the picks and rows are the unscreened search's.

Why a cache: the baselines' hindsight sweeps still dominate a case and do not depend on our
policy, so they are stored per case under ``.bench-cache/decision/<fingerprint>/`` (the
fingerprint hashes the code that decides a baseline's result: everything in ``autoscaler/``
but our own plugin, the plugins and the location lifecycle no baseline runs, and the daemon's
I/O). The SLO and price the baselines are tuned and billed to come from the policy file
scored as ours: a ``--policy`` file that sets others gets cache entries of its own. Rerunning
after a change to our policy replays only ours; a change to the model or the baselines starts
a fresh cache. A case's baselines are written as soon as they finish, so an
interrupted run (Ctrl-C, a session ending) resumes where it stopped and ``full`` fills in over
several runs. Ctrl-C or SIGTERM stops the cases in flight at once, prints the cases that
finished and writes them to ``--json``;
that file is also rewritten after every finished case (marked ``"interrupted": true`` until the
last), so even a kill without warning loses only ours' runs of the cases in flight.

With several seeds (benchmark.md: "the mean (and spread) over at least 3 seeds") every row is
the mean over the seeds, and each case keeps every policy's spread with each seed's own figures
(``spread``, as ``autoscaler backtest --output json`` reports it); the case table gains a column
with ours' lowest single-seed instant share and ours' cost over the cheapest baseline's seed by
seed (the same demand), and the totals say on how many cases ours was the cheaper on every seed.

The traces are read from ``/work/shared/traces`` (not shipped with the project); without them
the bench says so and returns an empty result.

Run: ``python -m bench.decision_bench [--tier quick|standard|full] [--only TEXT] [--series NAME
...] [--jobs N] [--days D] [--seeds K] [--policy FILE] [--baselines-from FILE ...] [--skip-done
FILE ...] [--json FILE] [--markdown FILE]`` (``--quick`` is ``--tier quick``; ``--series`` keeps
the named series, exactly; ``--only`` the cases whose series and regime, as the tables print
them, contain TEXT; a filter that keeps no case is refused, naming a valid value;
``--policy`` scores that file as ours, default the shipped one;
``--days`` / ``--seeds`` override the tier's window and seeds: ``--tier full --days 2 --seeds 1``
is every series on the standard tier's footing, about three times as long as ``standard``;
``--baselines-from bench/results/….json.gz`` fills the cache first with the baselines of the
cases those results ran on the same code, recorded per case, so a policy change reruns only ours
where the merged results already hold the case; ``--skip-done FILE`` resumes a run over many
sessions: the cases FILE holds for the same policy file are left out).

Merge: ``python -m bench.decision_bench --merge FILE [FILE ...] [--json OUT] [--markdown OUT]``
runs nothing; it joins the ``--json`` results of earlier runs (a few series each, over several
sessions) into the one table those runs make together, each case once (more seeds supersede
fewer, else the later file wins). ``bench/results/`` keeps the merged results behind the
tables in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import gzip
import hashlib
import json
import multiprocessing
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.backtest import baselines
from autoscaler.backtest.runner import (
    DEFAULT_POLICY_FILE,
    MAX_INTERP_GAP_S,
    Backtest,
    Scored,
    backtest,
    backtest_registry,
    constant_candidate,
    load_plans,
    model_params,
    pick_cheapest,
    refine_utilization,
    reported,
    run_policy,
    seed_ratios,
    summarise,
)
from autoscaler.backtest.scoring import Result, aggregate, idle_split_text
from autoscaler.backtest.sessions import SessionPlan
from autoscaler.backtest.traces import longest_stretch, read_trace
from autoscaler.commands.backtest import sigterm_as_ctrl_c
from autoscaler.domain.classes import stream_class_info
from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import CapacityModel
from autoscaler.domain.policy import Policy
from autoscaler.policy.config import load_policy_file

ROOT = Path(__file__).resolve().parent.parent
TRACES = Path("/work/shared/traces")
DEFAULT_CACHE = ROOT / ".bench-cache" / "decision"
STEAM = "steamdb_20games_hourly_2025-09-20_2025-11-21.csv"
SMALL = "super_animal_royale_hourly_2025-04-20_2025-12-16.csv"
HYPIXEL = "hypixel_by_gamemode_2025-03-08_2025-05-01.csv"
REPRESENTATIVE: tuple[tuple[str, str], ...] = (
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
HYPIXEL_MODES = ("SKYBLOCK", "BEDWARS", "DUELS", "SKYWARS", "BUILD_BATTLE")
CLASSES = ("gen4n_high", "gen4n_ultra", "gen5n_win2022")  # tenancy 2, tenancy-1 Linux, Windows
PEAKS = (40.0, 400.0)
MODELS = ("current", "legacy")
SWING_TARGET = 4.0  # daily max / min at or above this: the idle-overhead target applies
OVERHEAD_TARGET = 0.6  # ours' idle overhead ≤ this × the cheapest baseline's there
# Baseline knobs whose higher values buy less capacity (buffers: lower values do).
_LEANER_WHEN_HIGHER = frozenset({"targetUtilization"})
# Code that cannot change a baseline's result: our own plugin, the plugins no baseline runs
# (``hourly-predictive`` is a policy of its own in ``backtest/baselines.py``), the location
# lifecycle and its cron helpers (no baseline policy has a ``location_lifecycle``), the
# ``--plot`` chart (drawn after the runs) and the daemon's I/O. Why it matters: every file
# hashed here that changes starts the hours-long cache afresh.
_NOT_BASELINE_CODE = (
    "policy/builtin/slo.py",
    "lifecycle.py",
    "schedule.py",
    "policy/builtin/predictive.py",
    "policy/builtin/scheduled.py",
    "policy/builtin/chain.py",
    "policy/builtin/webhook.py",
    "cli.py",
    "commands/",
    "demo.py",
    "service.py",
    "runtime.py",
    "settings.py",
    "aws/",
    "ha.py",
    "logs.py",
    "metrics.py",
    "twin/emulator.py",
    "twin/protocol.py",
    "backtest/plot.py",
)


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

    def selected(self, only: str | None, series: Sequence[str]) -> bool:
        """Whether ``--only`` and ``--series`` keep this case: ``only`` found in its series
        and regime, as the tables print them ("Dota 2 400 gen4n_high") or with the regime's
        "peak"; its series among ``series``. An empty filter keeps every case."""
        if series and self.series not in series:
            return False
        if not only:
            return True
        regime = self.regime
        return (
            only in f"{self.series} {regime}"
            or only in f"{self.series} {regime.removeprefix('peak ')}"
        )

    @property
    def key(self) -> str:
        raw = (
            f"{self.file}|{self.series}|{self.peak:g}|{self.stream_class}|"
            f"{self.capacity_model}|{self.days:g}d|{self.seeds}s"
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _steam_series() -> list[str]:
    header = (TRACES / STEAM).open(encoding="utf-8").readline().strip().split(",")
    return [c for c in header if c != "timestamp"]


def cases(tier: str, *, days: float | None = None, seeds: int | None = None) -> list[Case]:
    """The tier's cases; ``days`` and ``seeds`` override its window length and seed count
    (e.g. every series of ``full`` on the standard tier's 2-day windows and one seed)."""
    chosen = _tier_cases(tier)
    if days is None and seeds is None:
        return chosen
    return [
        dataclasses.replace(
            c, days=c.days if days is None else days, seeds=c.seeds if seeds is None else seeds
        )
        for c in chosen
    ]


def _tier_cases(tier: str) -> list[Case]:
    if tier == "quick":
        return [
            Case(STEAM, "PUBG Battlegrounds", 40, "gen4n_high", "current", 2, 1),
            Case(STEAM, "Counter-Strike2", 40, "gen4n_ultra", "current", 2, 1),
            Case(SMALL, "super_animal_royale_players", 40, "gen4n_high", "legacy", 2, 1),
            Case(HYPIXEL, "SKYBLOCK", 40, "gen5n_win2022", "current", 2, 1),
            Case(HYPIXEL, "BEDWARS", 40, "gen4n_high", "legacy", 2, 1),
            Case(STEAM, "Rust", 400, "gen4n_high", "current", 1, 1),
        ]
    if tier == "standard":
        series, days, seeds = list(REPRESENTATIVE), 2.0, 1
    elif tier == "full":
        series = [(STEAM, s) for s in _steam_series()]
        series += [(SMALL, "super_animal_royale_players")]
        series += [(HYPIXEL, m) for m in HYPIXEL_MODES]
        days, seeds = 7.0, 3
    else:
        raise ValueError(f"unknown tier {tier!r} (quick, standard, full)")
    return [
        Case(f, s, peak, cls, model, days, seeds)
        for f, s in series
        for peak in PEAKS
        for cls in CLASSES
        for model in MODELS
    ]


def baseline_fingerprint(package: Path = ROOT / "autoscaler") -> str:
    """Hash of the code a baseline's result depends on (see ``_NOT_BASELINE_CODE``)."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if any(rel == x or (x.endswith("/") and rel.startswith(x)) for x in _NOT_BASELINE_CODE):
            continue
        digest.update(rel.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def daily_swing(case: Case) -> float:
    """Largest max/min of the case's demand within one day of its window (the trace's own
    resolution; a day whose minimum is 0 counts as an unbounded swing)."""
    loaded = read_trace(TRACES / case.file, case.series)
    if isinstance(loaded, SessionPlan):  # pragma: no cover - the bench's traces are series
        return 1.0
    stretch = longest_stretch(loaded, MAX_INTERP_GAP_S)
    t = np.asarray(stretch.times)
    v = np.asarray(stretch.values)
    start = float(t[0])
    worst = 1.0
    for day in range(max(1, round(case.days))):
        lo, hi = start + day * 86400.0, start + (day + 1) * 86400.0
        window = v[(t >= lo) & (t < hi)]
        if window.size == 0:
            continue
        top, bottom = float(window.max()), float(window.min())
        worst = max(worst, top / bottom if bottom > 0 else float("inf"))
    return worst


@dataclass(slots=True)
class ScreenedBacktest(Backtest):
    """A ``Backtest`` whose hindsight searches stop a candidate at its first seed that misses.

    Why: a candidate meets the SLO only if it meets it on every seed (``aggregate``), and a
    search walks through several that miss before the one that meets, so running a miss's
    other seeds tells the search nothing. Seeds run in order in this process (the bench
    spreads whole cases over its workers instead). The pick and every reported row that met
    the SLO are the unscreened search's, run for run; only a baseline none of whose candidates
    met it can be left with a row of fewer seeds, which ``_complete`` runs out."""

    def evaluate_many(
        self, label: str, makes: Sequence[Callable[[baselines.Fleet], baselines.Candidate]]
    ) -> list[Scored]:
        out: list[Scored] = []
        for make in makes:
            candidates = [make(fleet) for fleet in self.fleets]
            results: list[Result] = []
            for index, candidate in enumerate(candidates):
                results.append(self._run_here(label, candidate, index))
                if not results[-1].meets_slo:
                    break
            out.append(Scored(candidates[-1], aggregate(results), results))
        return out


def _complete(bt: Backtest, label: str, scored: Scored) -> Scored:
    """``scored`` with every seed run, as an unscreened search reports it (a no-op unless a
    ``ScreenedBacktest`` stopped it early)."""
    if scored.aggregate.seeds == len(bt.plans):
        return scored
    (full,) = Backtest.evaluate_many(bt, label, [constant_candidate(scored.candidate)])
    return Scored(
        scored.candidate,
        dataclasses.replace(full.aggregate, params=dict(scored.aggregate.params)),
        full.results,
    )


def lean_first(bt: Backtest, label: str, grid: Sequence[baselines.Candidate]) -> Scored:
    """The cheapest candidate of ``grid`` that meets the SLO, searched leanest first.

    Why: a baseline family is monotone in its knob (a higher utilisation target or a smaller
    buffer costs less and serves worse), so its cheapest SLO-meeting member is the first one
    that meets the SLO when walking from the leanest; the rest of the sweep cannot win and is
    not run (~2 runs per family instead of 4-5). Families are the candidates sharing a knob.
    Returns the pick as ``Backtest.sweep`` reports it, over the candidates actually run."""
    families: dict[str, list[baselines.Candidate]] = {}
    for c in grid:
        families.setdefault(next(iter(c.params)), []).append(c)
    scored: list[Scored] = []
    for knob, members in families.items():
        members.sort(key=lambda c: c.params[knob], reverse=knob in _LEANER_WHEN_HIGHER)
        for c in members:
            scored.append(bt.evaluate(label, constant_candidate(c)))
            if scored[-1].aggregate.meets_slo:
                break
        if knob == "targetUtilization":  # then bisected to the step above the grid's best
            scored += refine_utilization(bt, label, scored)
    return _complete(
        bt, label, pick_cheapest(scored, grid=[dict(s.candidate.params) for s in scored])
    )


def hindsight_baselines(
    bt: Backtest,
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, str]]:
    """Every baseline of ``shared/docs/benchmark.md`` on ``bt``'s plans, each tuned in
    hindsight: result rows and their spreads over the seeds (as ``autoscaler backtest``
    reports them), and the unavailable ones with the reason."""
    rows: list[dict[str, Any]] = []
    spreads: dict[str, Any] = {}
    unavailable: dict[str, str] = {}

    def keep(name: str, scored: Scored) -> None:
        row, spreads[name] = reported(scored, name)
        rows.append(row)

    fleet = bt.fleets[0]
    top = {name: max(f.peak[name] for f in bt.fleets) for name in fleet.locations}
    static = baselines.static_peak(dataclasses.replace(fleet, peak=top))
    keep(
        baselines.STATIC_PEAK,
        _complete(bt, baselines.STATIC_PEAK, bt.evaluate(baselines.STATIC_PEAK, lambda _f: static)),
    )
    native = bt.native_idle()
    if isinstance(native, baselines.Unavailable):
        unavailable[baselines.NATIVE_IDLE] = native.reason
    else:
        keep(baselines.NATIVE_IDLE, _complete(bt, baselines.NATIVE_IDLE, native))
    grids: list[tuple[str, list[baselines.Candidate] | baselines.Unavailable]] = [
        (baselines.TARGET_TRACKING, baselines.target_tracking(fleet, bt.registry)),
        (baselines.BUFFER, baselines.buffer(fleet, bt.registry)),
        (baselines.BUFFER_IDLE, baselines.buffer(fleet, bt.registry, which=baselines.BUFFER_IDLE)),
        (baselines.HOURLY_PREDICTIVE, baselines.hourly_predictive(fleet)),
    ]
    for name, grid in grids:
        if isinstance(grid, baselines.Unavailable):
            unavailable[name] = grid.reason
            continue
        keep(name, lean_first(bt, name, grid))
    return rows, spreads, unavailable


def case_backtest(case: Case, policy: Policy) -> Backtest:
    """The runs of ``case``: its seeds' plans of the trace, the benchmark's model."""
    seeds = list(range(1, case.seeds + 1))
    plans, _ = load_plans(
        TRACES / case.file, case.series, peak=case.peak, days=case.days, seeds=seeds
    )
    return ScreenedBacktest(
        plans=plans,
        seeds=seeds,
        stream_class=case.stream_class,
        capacity_model=CapacityModel(case.capacity_model),
        slo=policy.slo,
        price=policy.price_for(case.stream_class),
        registry=backtest_registry(),
        params=model_params(60.0),
    )


def run_case(
    case: Case, cache: Path, policy_file: Path = DEFAULT_POLICY_FILE, shown_as: str | None = None
) -> dict[str, Any]:
    """Ours (always replayed, ``policy_file``, reported as ``shown_as`` when that is a
    snapshot of another file) and the baselines (from ``cache``, the fingerprint's folder,
    else run and stored there)."""
    started = time.perf_counter()
    registry = backtest_registry()
    policy = load_policy_file(policy_file, resolve_params=registry.validate_params)
    terms = baseline_terms(policy, case.stream_class)
    stored = cache_entry(cache, case, terms)
    known: dict[str, Any] | None = None
    if stored.is_file():
        known = json.loads(stored.read_text(encoding="utf-8"))
    report = backtest(
        TRACES / case.file,
        case.series,
        peak=case.peak,
        stream_class=case.stream_class,
        capacity_model=case.capacity_model,
        days=case.days,
        seeds=case.seeds,
        policy_file=policy_file,
        baselines_to_run=(),
    )
    if report.get("interrupted"):
        raise KeyboardInterrupt
    ours = [r for r in report["results"] if r["policy"] == "ours"]
    if shown_as is not None:
        ours = [{**r, "params": {**r["params"], "file": shown_as}} for r in ours]
    if known is None:
        rows, spreads, unavailable = hindsight_baselines(case_backtest(case, policy))
        known = {
            "case": asdict(case),
            "results": rows,
            "spread": spreads,
            "unavailable": unavailable,
        }
        _store_entry(stored, known)
    rows = ours + known["results"]
    return {
        "case": asdict(case),
        "results": rows,
        # per policy; a baseline cache entry written before spreads were kept has none
        "spread": {**known.get("spread", {}), **report["spread"]},
        "summary": summarise(rows),
        "unavailable": known["unavailable"],
        "swing": daily_swing(case),
        "windows": stream_class_info(case.stream_class).windows,
        "case_wall_s": time.perf_counter() - started,
        "fingerprint": cache.name,  # of the code the baselines ran (the cache folder's name)
        "baseline_terms": terms,
    }


def _store_entry(path: Path, entry: dict[str, Any]) -> None:
    """A case's baselines into the cache, whole or not at all: a killed run leaves no half
    entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(entry, indent=1, default=str), encoding="utf-8")
    partial.replace(path)


def baseline_terms(policy: Policy, stream_class: str) -> dict[str, Any]:
    """What a baseline's result depends on besides the code and the case: the SLO it is
    tuned to meet and the price it is billed at, both read from the policy file scored as
    ours (``case_backtest``)."""
    return {
        "slo": {"instant": policy.slo.instant, "failed": policy.slo.failed},
        "price": policy.price_for(stream_class),
    }


@functools.lru_cache(maxsize=16)
def _shipped_terms(stream_class: str) -> dict[str, Any]:
    policy = load_policy_file(
        DEFAULT_POLICY_FILE, resolve_params=backtest_registry().validate_params
    )
    return baseline_terms(policy, stream_class)


def cache_entry(folder: Path, case: Case, terms: dict[str, Any]) -> Path:
    """Where ``case``'s baselines for ``terms`` are cached in the fingerprint's ``folder``:
    the plain key for the shipped policy's SLO and price, a suffixed one for a ``--policy``
    file that sets others (whose baselines are tuned to another target)."""
    if terms == _shipped_terms(case.stream_class):
        return folder / f"{case.key}.json"
    digest = hashlib.sha256(json.dumps(terms, sort_keys=True).encode()).hexdigest()[:10]
    return folder / f"{case.key}-{digest}.json"


def _shown(path: Path) -> str:
    """``path`` relative to the project when it lies inside it (as reports name it)."""
    try:
        return path.relative_to(ROOT).as_posix()
    except ValueError:
        return str(path)


def verdict(rep: dict[str, Any]) -> dict[str, Any]:
    """The three targets for one case (None where a target does not apply or cannot be
    judged: no baseline met the SLO)."""
    ours = next((r for r in rep["results"] if r["policy"] == "ours"), None)
    best_id = rep["summary"]["cheapest_baseline"]
    best = next((r for r in rep["results"] if r["policy"] == best_id), None)
    meets = bool(ours and ours["meets_slo"])
    cheaper = None if best is None or ours is None else ours["cost"] < best["cost"]
    qualifies = rep["swing"] >= SWING_TARGET or rep["windows"]
    overhead = floor = None
    if qualifies and best is not None and ours is not None and best["cost_ratio"] > 1.0:
        allowance = best["cost_ratio"] - 1.0
        overhead = (ours["cost_ratio"] - 1.0) / allowance
        split = ours.get("idle")
        if split is not None:
            # What no buffer setting sheds: surplus hosts the service holds until their
            # release delay ends, and free slots on partly used hosts (its packing).
            floor = (split["held"] + split["partial"]) / allowance
    return {
        "meets_slo": meets,
        "cheapest": cheaper,
        "qualifies": qualifies,
        "overhead_vs_cheapest": overhead,
        "overhead_met": None if overhead is None else overhead <= OVERHEAD_TARGET,
        "held_partial_vs_cheapest": floor,
    }


def speed(days: float) -> dict[str, float]:
    """Wall time of one run of our policy on ``days`` of the 20-game trace at peak 400."""
    (plan,), _ = load_plans(TRACES / STEAM, "Counter-Strike2", peak=400, days=days, seeds=[1])
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
    }


def summarise_regimes(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets per regime (peak, stream class, capacity model)."""
    return summarise_groups(reports, lambda case: case.regime)


def summarise_series(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets per series (every regime of one game or mode)."""
    return summarise_groups(reports, lambda case: case.series)


def summarise_groups(
    reports: Sequence[dict[str, Any]], label: Callable[[Case], str]
) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    for rep in reports:
        groups.setdefault(label(Case(**rep["case"])), []).append(rep)
    out: list[dict[str, Any]] = []
    for regime, reps in sorted(groups.items()):
        checks = [verdict(rep) for rep in reps]
        # A miss of the SLO has no cost figure worth comparing (benchmark.md): the medians
        # are over the cases where ours meets it.
        met = [rep for rep, c in zip(reps, checks, strict=True) if c["meets_slo"]]
        ours = [r for rep in met for r in rep["results"] if r["policy"] == "ours"]
        vs = [rep["summary"]["ours_vs_cheapest"] for rep in met]
        vs = [v for v in vs if v is not None]
        floors = [
            c["held_partial_vs_cheapest"]
            for c in checks
            if c["held_partial_vs_cheapest"] is not None
        ]
        out.append(
            {
                "regime": regime,
                "cases": len(reps),
                "ours_meets_slo": sum(1 for c in checks if c["meets_slo"]),
                "ours_cheapest": sum(1 for c in checks if c["cheapest"]),
                "median_cost_ratio": statistics.median(r["cost_ratio"] for r in ours)
                if ours
                else None,
                "median_vs_cheapest_baseline": statistics.median(vs) if vs else None,
                "overhead_cases": sum(1 for c in checks if c["overhead_met"] is not None),
                "overhead_met": sum(1 for c in checks if c["overhead_met"]),
                "median_held_partial_vs_cheapest": statistics.median(floors) if floors else None,
                "held_partial_over_target": sum(1 for f in floors if f > OVERHEAD_TARGET),
            }
        )
    return out


def run(
    tier: str = "quick",
    *,
    jobs: int = 2,
    only: str | None = None,
    series: Sequence[str] = (),
    days: float | None = None,
    seeds: int | None = None,
    cache: Path = DEFAULT_CACHE,
    on_case: Callable[[dict[str, Any]], None] | None = None,
    policy: Path = DEFAULT_POLICY_FILE,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
    baselines_from: Sequence[Path] = (),
    skip_done: Sequence[Path] = (),
) -> dict[str, Any]:
    """Every case of ``tier`` (filtered, less those ``skip_done``'s results hold for this
    policy), ``jobs`` at a time. After each finished case, ``checkpoint`` (if given) gets the
    result so far, marked interrupted: a run stopped without warning (a session ending,
    SIGKILL) then loses only the cases in flight, whose baselines the cache keeps anyway."""
    if not TRACES.is_dir():
        print(f"decision bench skipped: no traces at {TRACES}")
        return {"skipped": f"no traces at {TRACES}"}
    todo = [c for c in cases(tier, days=days, seeds=seeds) if c.selected(only, series)]
    if skip_done:
        shown = _shown(policy)
        held = finished_cases(skip_done, shown)
        kept = [c for c in todo if held.get(_slot(c), 0) < c.seeds]
        print(
            f"{len(todo) - len(kept)} of {len(todo)} case(s) skipped: "
            f"{len(skip_done)} earlier result(s) hold them for {shown}"
        )
        todo = kept
    fingerprint = baseline_fingerprint()
    if baselines_from:
        primed, other = prime_cache(baselines_from, todo, cache / fingerprint, policy)
        print(f"baselines of {primed} case(s) taken from {len(baselines_from)} earlier result(s)")
        for version, count in sorted(other.items()):
            print(
                f"note: {count} case(s) in them ran on other code (fingerprint {version}, "
                f"now {fingerprint}): their baselines are run again"
            )
    started = time.perf_counter()
    reports: list[dict[str, Any]] = []
    interrupted = False
    # The policy as it is now, for every case: each worker reads the file per case, and an
    # edit during a long run would otherwise mix two policies (or a file the workers'
    # already-imported plugin code rejects).
    snapshot_dir = tempfile.TemporaryDirectory(prefix="decision-bench-")
    policy_file = Path(snapshot_dir.name) / policy.name
    policy_file.write_bytes(policy.read_bytes())
    pool = ProcessPoolExecutor(max_workers=max(1, jobs), initializer=_worker_signals)
    try:
        # One fingerprint for the whole run, taken before any case starts: the workers run
        # the code they imported at start, whatever is edited on disk meanwhile.
        folder = cache / fingerprint
        # Workers fork during the submits: SIGTERM waits until they have reset its handler.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            futures: list[Future[dict[str, Any]]] = [
                pool.submit(run_case, c, folder, policy_file, _shown(policy)) for c in todo
            ]
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        for done in as_completed(futures):
            rep = done.result()
            reports.append(rep)
            if on_case is not None:
                on_case(rep)
            if checkpoint is not None:  # the last one too: a stop during speed() keeps it
                checkpoint(_assembled(tier, fingerprint, todo, reports, started, None))
    except KeyboardInterrupt:
        interrupted = True
        _stop_now(pool)
    except BaseException:
        _stop_now(pool)  # a failed checkpoint write: no hours of cases nobody will see
        raise
    else:
        pool.shutdown()
    finally:
        snapshot_dir.cleanup()
    figure = None
    if not interrupted and todo:  # with nothing run, a speed figure would only cost time
        try:
            figure = speed(2.0 if tier == "quick" else 7.0)
        except KeyboardInterrupt:
            interrupted = True  # every case finished; only the speed figure is missing
    result = _assembled(tier, fingerprint, todo, reports, started, figure)
    if interrupted:
        result["interrupted"] = True
    return result


def _stop_now(pool: ProcessPoolExecutor) -> None:
    """Cancel the cases not started and stop those in flight at once: the interpreter's exit
    would otherwise wait for them (minutes each). What finished is kept; their cached
    baselines too."""
    workers = _workers(pool)  # shutdown forgets them
    pool.shutdown(wait=False, cancel_futures=True)
    for process in workers:
        process.terminate()


def _workers(pool: ProcessPoolExecutor) -> list[multiprocessing.Process]:
    """The pool's live worker processes (ProcessPoolExecutor has no public way to stop the
    work they run before Python 3.14)."""
    processes = getattr(pool, "_processes", None) or {}
    return [p for p in processes.values() if p.is_alive()]


def _assembled(
    tier: str,
    fingerprint: str,
    todo: Sequence[Case],
    reports: list[dict[str, Any]],
    started: float,
    figure: dict[str, float] | None,
) -> dict[str, Any]:
    """The result of the cases in ``reports`` (in ``todo``'s order), with their verdicts and
    summaries; ``"interrupted": true`` unless every planned case finished."""
    order = {c.key: i for i, c in enumerate(todo)}
    ordered = sorted(reports, key=lambda rep: order[Case(**rep["case"]).key])
    result: dict[str, Any] = {
        "tier": tier,
        "fingerprint": fingerprint,
        "cases": [{**rep, "verdict": verdict(rep)} for rep in ordered],
        "regimes": summarise_regimes(ordered),
        "series": summarise_series(ordered),
        "speed": figure,
        "planned": len(todo),
        "wall_s": time.perf_counter() - started,
    }
    if len(ordered) < len(todo):
        result["interrupted"] = True
    return result


def _worker_signals() -> None:
    """A worker forked inside ``sigterm_as_ctrl_c`` would inherit its handler; a terminated
    worker should just end (its case is lost, its cached baselines are not). It was forked
    with SIGTERM blocked (``run``), so none arrives before this."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def prime_cache(
    paths: Sequence[Path],
    todo: Sequence[Case],
    folder: Path,
    policy_file: Path = DEFAULT_POLICY_FILE,
) -> tuple[int, dict[str, int]]:
    """Baselines of ``todo``'s cases taken from earlier ``--json`` results into the cache
    ``folder`` (named by the current fingerprint), where the result says they ran on that very
    code, for the SLO and price ``policy_file`` sets; cases already cached are left alone.

    Why: the cache does not outlive the machine, the results in ``bench/results/`` do, and the
    baselines' sweeps are most of a case's time: rerunning ours on every case after a change
    to our policy then costs ours' runs only. Every case of every file is looked at (not only
    the one a merge would keep). Returns how many cases were primed, and how many entries of
    the wanted cases were passed over per other fingerprint (their baselines ran on other
    code, or the file does not say which). Raises ``MergeError`` naming an unreadable file."""
    policy = load_policy_file(policy_file, resolve_params=backtest_registry().validate_params)
    wanted: dict[str, tuple[Case, dict[str, Any], Path]] = {}
    for c in todo:
        terms = baseline_terms(policy, c.stream_class)
        entry_path = cache_entry(folder, c, terms)
        if not entry_path.is_file():
            wanted[c.key] = (c, terms, entry_path)
    primed = 0
    other: dict[str, int] = {}
    for path in paths:
        for rep in _vouched_cases(read_result(path)):
            key = Case(**rep["case"]).key
            if key not in wanted:
                continue
            case, terms, entry_path = wanted[key]
            fingerprint = rep.get("fingerprint") or "unknown"
            if fingerprint != folder.name:
                other[fingerprint] = other.get(fingerprint, 0) + 1
                continue
            # Results written before the terms were recorded all ran the shipped SLO and price.
            if rep.get("baseline_terms", _shipped_terms(case.stream_class)) != terms:
                continue
            entry = {
                "case": asdict(case),
                "results": [r for r in rep["results"] if r["policy"] != "ours"],
                "spread": {k: v for k, v in (rep.get("spread") or {}).items() if k != "ours"},
                "unavailable": rep.get("unavailable", {}),
            }
            _store_entry(entry_path, entry)
            del wanted[key]
            primed += 1
    return primed, other


def _vouched_cases(data: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The cases of a result, each with the fingerprint of the code its baselines ran on: its
    own record, else the file's when the file names one (a file from one run, or one code
    version, vouches for each of its cases; a merge of several is only as good as the cases'
    own record)."""
    known = data.get("fingerprint")
    for rep in data["cases"]:
        if isinstance(known, str) and not rep.get("fingerprint"):
            yield {**rep, "fingerprint": known}
        else:
            yield rep


Slot = tuple[str, str, str, float]
"""Trace file, series, regime and window: what makes two runs of a case the same case."""


def _slot(case: Case) -> Slot:
    """``case``'s slot (seeds aside: a run over more seeds supersedes one over fewer)."""
    return (case.file, case.series, case.regime, case.days)


def finished_cases(paths: Sequence[Path], policy_shown: str) -> dict[Slot, int]:
    """The cases earlier ``--json`` results hold with ours run on ``policy_shown`` (the file
    as reports name it), and the most seeds each was run over.

    Why: resuming a run of many sessions (``--skip-done``) would otherwise replay ours again
    on every case of a series it had half done. The results name ours' policy file, not its
    content: resuming is for the same policy, as the option's help says. Raises
    ``MergeError`` naming an unreadable file."""
    held: dict[Slot, int] = {}
    for path in paths:
        for rep in read_result(path)["cases"]:
            ours = next((r for r in rep["results"] if r["policy"] == "ours"), None)
            if ours is None or ours.get("params", {}).get("file") != policy_shown:
                continue
            case = Case(**rep["case"])
            held[_slot(case)] = max(held.get(_slot(case), 0), case.seeds)
    return held


class MergeError(ValueError):
    """A file given to ``--merge`` that is not a decision-bench result (names the file)."""


def read_result(path: Path) -> dict[str, Any]:
    """A result an earlier run wrote with ``--json`` (gzip-compressed when it ends in .gz)."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise MergeError(f"{path}: no such file") from None
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MergeError(f"{path}: not a readable JSON result ({error})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
        raise MergeError(
            f"{path}: not a decision-bench result (expected an object with a 'cases' list, "
            "as --json writes)"
        )
    for index, rep in enumerate(data["cases"]):
        try:
            Case(**rep["case"])
            rep["results"], rep["summary"]["cheapest_baseline"], rep["swing"], rep["windows"]
        except (KeyError, TypeError) as error:
            raise MergeError(f"{path}: cases[{index}] is not a case report ({error!r})") from None
    return data


def merge(
    paths: Sequence[Path], *, only: str | None = None, series: Sequence[str] = ()
) -> dict[str, Any]:
    """One result from the ``--json`` files of several runs, as if one run had made it.

    Why: ``full`` is days of CPU, run a few series at a time across sessions; its table is
    the union of those runs. Each trace × regime × window appears once: a run over more
    seeds supersedes one over fewer, else the later file wins. Verdicts and summaries are
    recomputed by this code, so files written before a change to the verdict still merge.
    ``only`` and ``series`` keep cases as they do for a run."""
    chosen: dict[Slot, dict[str, Any]] = {}
    fingerprints: list[str] = []
    superseded = 0
    for path in paths:
        data = read_result(path)
        known = data.get("fingerprint")
        for fingerprint in known if isinstance(known, list) else [known]:
            if isinstance(fingerprint, str) and fingerprint not in fingerprints:
                fingerprints.append(fingerprint)
        for rep in _vouched_cases(data):
            case = Case(**rep["case"])
            if not case.selected(only, series):
                continue
            slot = _slot(case)
            held = chosen.get(slot)
            if held is not None:
                superseded += 1
                if Case(**held["case"]).seeds > case.seeds:
                    continue
            chosen[slot] = {k: v for k, v in rep.items() if k != "verdict"}
    reports = sorted(
        chosen.values(),
        key=lambda rep: (
            rep["case"]["series"],
            rep["case"]["peak"],
            rep["case"]["stream_class"],
            rep["case"]["capacity_model"],
            rep["case"]["days"],
        ),
    )
    return {
        "tier": "merged",
        "fingerprint": fingerprints[0] if len(fingerprints) == 1 else fingerprints,
        "merged_from": [str(p) for p in paths],
        "superseded": superseded,
        "cases": [{**rep, "verdict": verdict(rep)} for rep in reports],
        "regimes": summarise_regimes(reports),
        "series": summarise_series(reports),
        "speed": None,
        "planned": len(reports),
        "wall_s": sum(float(rep.get("case_wall_s") or 0.0) for rep in reports),
    }


def write_result(result: dict[str, Any], path: Path) -> None:
    """``result`` as JSON at ``path`` (gzip-compressed when it ends in .gz), whole or not at
    all: written beside it, then moved into place."""
    raw = json.dumps(result, indent=None if path.suffix == ".gz" else 2, default=str).encode()
    if path.suffix == ".gz":
        raw = gzip.compress(raw, mtime=0)
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(raw)
    partial.replace(path)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def seed_figures(rep: dict[str, Any]) -> tuple[list[float], list[float]]:
    """Ours' instant share on each seed, and ours' cost over the cheapest baseline's on each
    seed (same demand); empty lists where the case's result has no per-seed figures (one
    seed, or a result written before they were kept)."""
    ours = (rep.get("spread") or {}).get("ours") or {}
    instant = list(ours.get("per_seed", {}).get("instant") or [])
    best = rep["summary"]["cheapest_baseline"]
    return instant, (seed_ratios(rep, best) if best else [])


def seeds_cell(rep: dict[str, Any]) -> str:
    instant, ratios = seed_figures(rep)
    if len(instant) < 2:
        return "-"
    text = f"{min(instant) * 100:.2f} %"
    if ratios:
        text += f" / {min(ratios):.3f}–{max(ratios):.3f}"
    return text


def case_line(rep: dict[str, Any], *, with_seeds: bool = False) -> str:
    c = rep["case"]
    ours: dict[str, Any] = next((r for r in rep["results"] if r["policy"] == "ours"), {})
    best = rep["summary"]["cheapest_baseline"]
    best_row = next((r for r in rep["results"] if r["policy"] == best), None)
    v = rep.get("verdict") or verdict(rep)
    swing = "∞" if rep["swing"] == float("inf") else f"{rep['swing']:.1f}×"
    return (
        f"| {c['series'][:24]} | {c['peak']:g} {c['stream_class']} {c['capacity_model']} | "
        f"{swing} | {'meets' if v['meets_slo'] else '**misses**'} "
        f"({ours.get('instant', 0) * 100:.2f} % / {ours.get('failed', 0) * 100:.2f} %) | "
        f"{_fmt(ours.get('cost_ratio'), '.3f')} | {best or '-'} "
        f"{_fmt(best_row['cost_ratio'] if best_row else None, '.3f')} | "
        f"{_fmt(rep['summary']['ours_vs_cheapest'], '.3f')} | "
        f"{_fmt(v['overhead_vs_cheapest'], '.2f')} | {idle_split_text(ours.get('idle'))} | "
        f"{_fmt(v.get('held_partial_vs_cheapest'), '.2f')} |"
        + (f" {seeds_cell(rep)} |" if with_seeds else "")
    )


CASE_HEADER = (
    "| series | regime | daily swing | ours vs SLO (instant / failed) | ours cost_ratio | "
    "cheapest baseline | ours / cheapest | idle overhead ÷ cheapest's | "
    "ours idle % kept / held / partial | held + partial ÷ cheapest's overhead |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


SEEDS_HEADING = "ours over the seeds: lowest instant / ours ÷ cheapest, seed by seed"


def seed_totals(cases: Sequence[dict[str, Any]]) -> str | None:
    """The targets seed by seed over the cases that have per-seed figures (None if none)."""
    figures = [seed_figures(rep) for rep in cases]
    figures = [(i, r) for i, r in figures if len(i) > 1]
    if not figures:
        return None
    lowest = min(min(i) for i, _ in figures)
    met = sum(1 for rep in cases if (rep.get("verdict") or verdict(rep))["meets_slo"])
    ratios = [r for _, r in figures if r]
    every_seed = sum(1 for r in ratios if max(r) < 1.0)
    spans = [max(r) - min(r) for r in ratios]
    text = (
        f"Seed by seed ({len(figures)} cases with per-seed figures): ours' lowest single-seed "
        f"instant share {lowest * 100:.2f} %"
    )
    if len(figures) == len(cases):
        text += f" (the SLO held on every seed in {met}/{len(cases)})"
    if ratios:
        text += (
            f"; ours cheaper than the cheapest baseline on every seed in {every_seed}/"
            f"{len(ratios)}, the seed-by-seed ratio spanning a median "
            f"{statistics.median(spans):.3f} (widest {max(spans):.3f})"
        )
    return text + "."


IDLE_PARTS = {
    "kept": "the idle its targets keep (kept)",
    "held": "empty hosts held through the release delay after a target falls (held)",
    "partial": "free slots on partly used hosts (partial)",
}


def loss_causes(cases: Sequence[dict[str, Any]]) -> str | None:
    """Why ours is not the cheapest where it is not: for each such case, the part of the idle
    (``IDLE_PARTS``) in which ours pays the most above the cheapest baseline, counted per
    capacity model. None when ours is the cheapest wherever it can be judged."""
    lost = [rep for rep in cases if (rep.get("verdict") or verdict(rep))["cheapest"] is False]
    if not lost:
        return None
    labels = {**IDLE_PARTS, "unsplit": "no idle split to compare"}
    by_part: dict[str, Counter[str]] = {part: Counter() for part in labels}
    for rep in lost:
        rows = {r["policy"]: r for r in rep["results"]}
        ours = rows["ours"].get("idle")
        best = rows[rep["summary"]["cheapest_baseline"]].get("idle")
        if ours is None or best is None:
            part = "unsplit"
        else:
            part = max(IDLE_PARTS, key=lambda name: ours[name] - best[name])
        by_part[part][rep["case"]["capacity_model"]] += 1
    shown = []
    for part, models in by_part.items():
        if not models:
            continue
        detail = ", ".join(f"{model} {count}" for model, count in sorted(models.items()))
        shown.append(f"{labels[part]} in {sum(models.values())} ({detail})")
    return (
        f"Where ours is not the cheapest ({len(lost)} cases), the part of the idle in which ours "
        f"pays the most above the cheapest baseline: {'; '.join(shown)}."
    )


def case_header(*, with_seeds: bool = False) -> str:
    if not with_seeds:
        return CASE_HEADER
    top, rule = CASE_HEADER.split("\n")
    return f"{top} {SEEDS_HEADING} |\n{rule}---|"


def policy_failures(reports: Sequence[dict[str, Any]]) -> list[str]:
    """The cases where ours' plugin failed on some decisions (rows from before the count
    existed have none), each with the first failure."""
    out = []
    for rep in reports:
        ours = next((r for r in rep["results"] if r["policy"] == "ours"), None)
        if ours is not None and (ours.get("fallback_decisions") or 0) > 0:
            case = Case(**rep["case"])
            out.append(
                f"{case.series} {case.regime} ({ours['fallback_decisions']:.0f} of "
                f"{ours.get('decisions', 0):.0f} decisions; {ours.get('fallback_reason')})"
            )
    return out


def markdown(result: dict[str, Any]) -> str:
    with_seeds = any(len(seed_figures(rep)[0]) > 1 for rep in result["cases"])
    lines = [
        case_header(with_seeds=with_seeds),
        *(case_line(rep, with_seeds=with_seeds) for rep in result["cases"]),
    ]
    groups = [("regime", result["regimes"])]
    if len(result.get("series") or ()) > 1:
        groups.append(("series", result["series"]))
    for title, rows in groups:
        lines += [
            "",
            f"| {title} | cases | ours meets SLO | ours cheapest | median cost_ratio | "
            "median ours / cheapest | idle-overhead target met | "
            "median held + partial ÷ cheapest's overhead | held + partial alone over the target |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r['regime']} | {r['cases']} | {r['ours_meets_slo']}/{r['cases']} | "
                f"{r['ours_cheapest']}/{r['cases']} | {_fmt(r['median_cost_ratio'], '.3f')} | "
                f"{_fmt(r['median_vs_cheapest_baseline'], '.3f')} | "
                f"{r['overhead_met']}/{r['overhead_cases']} | "
                f"{_fmt(r.get('median_held_partial_vs_cheapest'), '.2f')} | "
                f"{r.get('held_partial_over_target', 0)}/{r['overhead_cases']} |"
            )
    checks = [c["verdict"] for c in result["cases"]]
    vs = [c["summary"]["ours_vs_cheapest"] for c in result["cases"] if c["verdict"]["meets_slo"]]
    vs = [v for v in vs if v is not None]
    n = len(checks)
    lines += [
        "",
        f"Targets over {n} cases: ours meets the SLO in "
        f"{sum(1 for c in checks if c['meets_slo'])}/{n}; ours is cheaper than every baseline "
        f"that meets it in {sum(1 for c in checks if c['cheapest'])}/{n} (median ours/cheapest "
        f"{_fmt(statistics.median(vs) if vs else None, '.3f')}, worst "
        f"{_fmt(max(vs) if vs else None, '.3f')}); idle overhead ≤ {OVERHEAD_TARGET:g}× the "
        f"cheapest's in {sum(1 for c in checks if c['overhead_met'])}/"
        f"{sum(1 for c in checks if c['overhead_met'] is not None)} qualifying cases "
        f"(swing ≥ {SWING_TARGET:g}× or Windows).",
    ]
    by_seed = seed_totals(result["cases"])
    if by_seed is not None:
        lines.append(by_seed)
    causes = loss_causes(result["cases"])
    if causes is not None:
        lines.append(causes)
    failing = policy_failures(result["cases"])
    if failing:
        lines.append(
            f"WARNING: ours' policy failed (a fallback or a hold decided) in {len(failing)} "
            f"case(s), so their rows score the fallback: {'; '.join(failing)}."
        )
    s = result.get("speed")
    if s:
        lines.append(
            f"Speed: {s['days']:g} days at peak 400 (ours, gen4n_high): {s['sessions']:.0f} "
            f"sessions, {s['decisions']:.0f} decisions in {s['wall_s']:.1f} s wall = "
            f"{s['sessions_per_s']:.0f} sessions/s, {s['decisions_per_s']:.0f} decisions/s."
        )
    if result.get("interrupted"):
        lines.append(f"Interrupted: {n} of {result['planned']} cases finished.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tier", choices=("quick", "standard", "full"), default="quick")
    parser.add_argument("--quick", action="store_true", help="same as --tier quick")
    parser.add_argument(
        "--only",
        help="only cases whose '<series> <peak> <stream class> <capacity model>' (as the "
        'tables print it, e.g. "Dota 2 400 gen4n_high") contains this',
    )
    parser.add_argument(
        "--series",
        action="append",
        default=[],
        help="only this series (exact name; repeat for several)",
    )
    parser.add_argument("--jobs", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--days", type=float, help="window length per case (default: the tier's)")
    parser.add_argument("--seeds", type=int, help="seeds per case (default: the tier's)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="baseline cache")
    parser.add_argument(
        "--policy",
        type=Path,
        default=DEFAULT_POLICY_FILE,
        help="score this policy file as ours (default: the shipped policies/default.yaml); "
        "the baselines do not depend on it, so cached ones are reused",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the full result here (gzip-compressed if .gz)"
    )
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument(
        "--baselines-from",
        type=Path,
        nargs="+",
        default=[],
        metavar="FILE",
        help="take the baselines of cases these earlier --json results (.gz too) ran on the "
        "same code into the cache first (e.g. bench/results/*.json.gz): ours is run again",
    )
    parser.add_argument(
        "--skip-done",
        type=Path,
        nargs="+",
        default=[],
        metavar="FILE",
        help="resume: leave out the cases these earlier --json results (.gz too) already hold "
        "for the same policy file, over at least as many seeds (the policy's content must not "
        "have changed since)",
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="run nothing: merge the --json results of earlier runs (.gz too) into one "
        "(--only and --series still filter)",
    )
    args = parser.parse_args(argv)
    if args.merge:
        try:
            merged = merge(args.merge, only=args.only, series=args.series)
        except MergeError as error:
            print(f"decision bench: {error}", file=sys.stderr)
            return 2
        text = markdown(merged)
        print(text)
        if isinstance(merged["fingerprint"], list) and len(merged["fingerprint"]) > 1:
            print(
                f"note: the baselines come from {len(merged['fingerprint'])} versions of the "
                f"code (fingerprints {', '.join(merged['fingerprint'])})"
            )
        windows = sorted({rep["case"]["days"] for rep in merged["cases"]})
        if len(windows) > 1:
            print(
                "note: the tables count cases of different windows together "
                f"({', '.join(f'{d:g} d' for d in windows)}); merge each window's files "
                "separately to keep them apart"
            )
        print(
            f"{len(merged['cases'])} cases from {len(args.merge)} file(s); "
            f"{merged['superseded']} superseded by a later or longer run"
        )
        _write_outputs(merged, text, args.json, args.markdown)
        return 0
    if args.policy != DEFAULT_POLICY_FILE:
        problem = _policy_problem(args.policy)
        if problem is not None:
            print(f"decision bench: --policy {args.policy}: {problem}", file=sys.stderr)
            return 2
    if args.json is not None and not args.json.parent.is_dir():
        print(
            f"decision bench: --json {args.json}: no folder {args.json.parent} to write it in",
            file=sys.stderr,
        )
        return 2
    tier = "quick" if args.quick else args.tier
    planned = cases(tier, days=args.days, seeds=args.seeds) if TRACES.is_dir() else []
    problem = _filter_problem(planned, tier, args.only, args.series)
    if problem is not None:
        print(f"decision bench: {problem}", file=sys.stderr)
        return 2
    with_seeds = bool(planned) and planned[0].seeds > 1
    print(case_header(with_seeds=with_seeds), flush=True)
    json_path: Path | None = args.json
    with sigterm_as_ctrl_c():
        try:
            result = run(
                tier,
                jobs=args.jobs,
                only=args.only,
                series=args.series,
                days=args.days,
                seeds=args.seeds,
                cache=args.cache,
                on_case=lambda rep: print(case_line(rep, with_seeds=with_seeds), flush=True),
                policy=args.policy,
                baselines_from=args.baselines_from,
                skip_done=args.skip_done,
                checkpoint=None
                if json_path is None
                else lambda partial: write_result(partial, json_path),
            )
        except MergeError as error:  # an earlier result, read before any case runs
            print(f"decision bench: --baselines-from/--skip-done {error}", file=sys.stderr)
            return 2
    if "skipped" in result:
        return 0
    text = markdown(result)
    print()
    print(text.split("\n\n", 1)[1] if "\n\n" in text else text)
    print(f"bench wall time {result['wall_s']:.0f} s (tier {tier})")
    _write_outputs(result, text, args.json, args.markdown)
    return 130 if result.get("interrupted") else 0


def _filter_problem(
    planned: Sequence[Case], tier: str, only: str | None, series: Sequence[str]
) -> str | None:
    """Why ``--only``/``--series`` would leave nothing of ``tier`` to run (None: they keep
    some case, or there are no traces to filter): a typo there would otherwise "finish" an
    empty run, and a resumed rerun would silently do nothing."""
    if not planned:
        return None
    names = sorted({c.series for c in planned})
    unknown = [name for name in series if name not in names]
    if unknown:
        return (
            f"--series {unknown[0]!r}: no such series in the {tier} tier; "
            f"valid: {', '.join(repr(n) for n in names)}"
        )
    kept = [c for c in planned if c.selected(None, series)]
    if not any(c.selected(only, series) for c in kept):
        example = f"{kept[0].series} {kept[0].peak:g} {kept[0].stream_class}"
        return (
            f"--only {only!r} matches no case of the {tier} tier; it is looked for in "
            f"'<series> <peak> <stream class> <capacity model>', e.g. {example!r}"
        )
    return None


def _policy_problem(path: Path) -> str | None:
    """Why ``path`` cannot be scored as ours (None: it loads), before any case starts."""
    try:
        load_policy_file(path, resolve_params=backtest_registry().validate_params)
    except ConfigError as error:  # a missing or unreadable file too, named
        return "; ".join(error.problems)
    return None


def _write_outputs(
    result: dict[str, Any], text: str, json_path: Path | None, markdown_path: Path | None
) -> None:
    if json_path:
        write_result(result, json_path)
    if markdown_path:
        markdown_path.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
