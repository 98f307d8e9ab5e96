"""The decision bench's bookkeeping: which cases a tier holds, which code invalidates the
baseline cache, and how each case is judged against the issue's three targets."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from autoscaler.backtest import baselines
from autoscaler.backtest.runner import Backtest, backtest_registry, model_params, summarise
from autoscaler.backtest.sessions import plan_sessions
from autoscaler.backtest.synthetic import synthetic_trace
from autoscaler.domain.models import CapacityModel
from autoscaler.domain.policy import Slo
from bench import decision_bench as db


def _report(
    ours: tuple[float, bool], best: tuple[float, bool], *, swing: float, windows: bool = False
) -> dict[str, Any]:
    rows = [
        {"policy": "ours", "cost": ours[0] * 100, "cost_ratio": ours[0], "meets_slo": ours[1]},
        {"policy": "buffer", "cost": best[0] * 100, "cost_ratio": best[0], "meets_slo": best[1]},
    ]
    return {
        "case": {
            "file": "f.csv",
            "series": "S",
            "peak": 40.0,
            "stream_class": "gen4n_high",
            "capacity_model": "current",
            "days": 2.0,
            "seeds": 1,
        },
        "results": rows,
        "summary": summarise(rows),
        "swing": swing,
        "windows": windows,
    }


def test_verdict_judges_each_target() -> None:
    win = db.verdict(_report((1.05, True), (1.20, True), swing=5.0))
    assert win == {
        "meets_slo": True,
        "cheapest": True,
        "qualifies": True,
        "overhead_vs_cheapest": pytest.approx(0.25),
        "overhead_met": True,
        "held_partial_vs_cheapest": None,  # the rows carry no idle split
    }
    lose = db.verdict(_report((1.15, True), (1.20, True), swing=5.0))
    assert lose["cheapest"] is True
    assert lose["overhead_met"] is False  # 0.15 / 0.20 = 0.75 > 0.6
    flat = db.verdict(_report((1.25, False), (1.20, True), swing=2.0))
    assert flat["meets_slo"] is False
    assert flat["cheapest"] is False
    assert flat["overhead_vs_cheapest"] is None  # flat demand on Linux: target n/a
    windows = db.verdict(_report((1.10, True), (1.20, True), swing=1.5, windows=True))
    assert windows["overhead_met"] is True
    nobody = db.verdict(_report((1.10, True), (1.20, False), swing=9.0))
    assert nobody["cheapest"] is None


def test_verdict_weighs_what_no_buffer_sheds() -> None:
    held_in = _report((1.10, True), (1.20, True), swing=5.0)
    held_in["results"][0]["idle"] = {"kept": 0.02, "held": 0.05, "partial": 0.03}
    v = db.verdict(held_in)
    # ours' held hosts and partly used hosts alone are 0.08 / 0.20 of the cheapest's overhead
    assert v["held_partial_vs_cheapest"] == pytest.approx(0.4)
    reps = [held_in]
    heavy = _report((1.10, True), (1.12, True), swing=5.0)
    heavy["results"][0]["idle"] = {"kept": 0.02, "held": 0.05, "partial": 0.03}
    reps.append(heavy)  # 0.08 / 0.12: beyond 0.6 with no buffer at all
    (regime,) = db.summarise_regimes(reps)
    assert regime["median_held_partial_vs_cheapest"] == pytest.approx((0.4 + 0.08 / 0.12) / 2)
    assert regime["held_partial_over_target"] == 1
    text = db.markdown(
        {
            "cases": [{**r, "verdict": db.verdict(r)} for r in reps],
            "regimes": [regime],
            "speed": None,
            "planned": 2,
        }
    )
    assert "| 2.0 / 5.0 / 3.0 | 0.40 |" in text
    assert "| 0.53 | 1/2 |" in text


def test_tiers_cover_every_regime() -> None:
    standard = db.cases("standard")
    assert len(standard) == len(db.REPRESENTATIVE) * 12
    assert {c.regime for c in standard} == {
        f"peak {p:g} {c} {m}" for p in db.PEAKS for c in db.CLASSES for m in db.MODELS
    }
    assert len({c.key for c in standard}) == len(standard)
    assert len(db.cases("quick")) == 6
    with pytest.raises(ValueError, match="unknown tier"):
        db.cases("huge")


def test_window_and_seed_overrides_make_distinct_cases() -> None:
    standard = db.cases("standard")
    short = db.cases("standard", days=1, seeds=3)
    assert [(c.series, c.regime) for c in short] == [(c.series, c.regime) for c in standard]
    assert {(c.days, c.seeds) for c in short} == {(1.0, 3)}
    # a different window is a different case: its cached baselines are never reused
    assert not {c.key for c in short} & {c.key for c in standard}
    assert db.cases("standard", days=2, seeds=1) == standard


def test_fingerprint_ignores_our_plugin_but_not_the_model(tmp_path: Path) -> None:
    package = tmp_path / "autoscaler"
    shutil.copytree(db.ROOT / "autoscaler", package)
    before = db.baseline_fingerprint(package)
    slo = package / "policy" / "builtin" / "slo.py"
    slo.write_text(slo.read_text() + "\n# tuned\n")
    assert db.baseline_fingerprint(package) == before
    chart = package / "backtest" / "plot.py"
    chart.write_text(chart.read_text() + "\n# a new colour\n")
    assert db.baseline_fingerprint(package) == before
    model = package / "twin" / "model.py"
    model.write_text(model.read_text() + "\n# changed\n")
    assert db.baseline_fingerprint(package) != before


def _result(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """A bench result of ``reps``, as ``run`` makes it."""
    return {
        "cases": [{**r, "verdict": db.verdict(r)} for r in reps],
        "regimes": db.summarise_regimes(reps),
        "series": db.summarise_series(reps),
        "speed": None,
        "planned": len(reps),
    }


def test_markdown_reports_the_targets() -> None:
    reps = [
        _report((1.05, True), (1.20, True), swing=5.0),
        _report((1.25, True), (1.20, True), swing=2.0),
    ]
    result = _result(reps)
    text = db.markdown(result)
    assert "ours meets the SLO in 2/2" in text
    assert "cheaper than every baseline that meets it in 1/2" in text
    assert "in 1/1 qualifying cases" in text
    assert "| peak 40 gen4n_high current | 2 | 2/2 | 1/2 |" in text
    assert "| series | cases |" not in text  # one series: its table would repeat the totals
    other = _report((1.30, True), (1.20, True), swing=2.0)
    other["case"] = {**other["case"], "series": "T"}
    reps.append(other)
    result = _result(reps)
    text = db.markdown(result)
    assert "| peak 40 gen4n_high current | 3 | 3/3 | 1/3 |" in text
    assert "| S | 2 | 2/2 | 1/2 |" in text
    assert "| T | 1 | 1/1 | 0/1 |" in text


# the cheapest baseline's idle split, fractions of the bound, in the loss-cause test
BASELINE_IDLE = {"kept": 0.08, "held": 0.06, "partial": 0.06}


def test_markdown_says_which_idle_ours_overpays_where_it_loses() -> None:
    def lost(ours_idle: dict[str, float], best_idle: dict[str, float] | None, model: str) -> Any:
        rep = _report((1.21, True), (1.20, True), swing=2.0)
        rep["case"] = {**rep["case"], "capacity_model": model}
        rep["results"][0]["idle"] = ours_idle
        if best_idle is not None:
            rep["results"][1]["idle"] = best_idle
        return rep

    buffer_heavy = lost({"kept": 0.10, "held": 0.05, "partial": 0.06}, BASELINE_IDLE, "current")
    held_heavy = lost({"kept": 0.07, "held": 0.08, "partial": 0.06}, BASELINE_IDLE, "legacy")
    unsplit = lost({"kept": 0.10, "held": 0.05, "partial": 0.06}, None, "legacy")
    won = _report((1.10, True), (1.20, True), swing=2.0)
    won["results"][0]["idle"] = {"kept": 0.0, "held": 0.5, "partial": 0.0}  # a win: not counted
    text = db.markdown(_result([buffer_heavy, held_heavy, unsplit, won]))
    assert (
        "Where ours is not the cheapest (3 cases), the part of the idle in which ours pays the "
        "most above the cheapest baseline: the idle its targets keep (kept) in 1 (current 1); "
        "empty hosts held through the release delay after a target falls (held) in 1 "
        "(legacy 1); no idle split to compare in 1 (legacy 1)." in text
    )
    assert "Where ours is not the cheapest" not in db.markdown(_result([won]))


def _with_seeds(rep: dict[str, Any], ours: list[float], best: list[float]) -> dict[str, Any]:
    """``rep`` as a three-seed case: each seed's instant share for ours, each seed's cost
    for ours and for the cheapest baseline."""
    per = {"ours": (ours, [0.992, 0.995, 0.9917]), "buffer": (best, [0.991] * 3)}
    spread = {
        name: {"per_seed": {"cost": cost, "instant": instant, "meets_slo": [True] * 3}}
        for name, (cost, instant) in per.items()
    }
    return {**rep, "case": {**rep["case"], "seeds": 3}, "spread": spread}


def test_markdown_reports_the_seeds_when_it_has_them() -> None:
    won = _with_seeds(_report((1.05, True), (1.20, True), swing=5.0), [90, 95, 100], [100] * 3)
    lost = _with_seeds(_report((1.19, True), (1.20, True), swing=2.0), [99, 101, 97], [100] * 3)
    lost["case"] = {**lost["case"], "series": "T"}
    reps = [won, lost]
    result = _result(reps)
    text = db.markdown(result)
    assert "lowest instant / ours ÷ cheapest, seed by seed |" in text.splitlines()[0]
    assert "| 99.17 % / 0.900–1.000 |" in text
    assert "| 99.17 % / 0.970–1.010 |" in text
    assert "ours' lowest single-seed instant share 99.17 %" in text
    assert "the SLO held on every seed in 2/2" in text
    assert "cheaper than the cheapest baseline on every seed in 0/2" in text  # 1.000 is a tie
    assert "spanning a median 0.070 (widest 0.100)" in text
    one_seed = db.markdown(_result([_report((1.05, True), (1.2, True), swing=5.0)]))
    assert "seed by seed" not in one_seed  # no column, no line, for one-seed results


def _run_file(path: Path, reps: list[dict[str, Any]], fingerprint: str = "f1") -> Path:
    db.write_result(
        {"fingerprint": fingerprint, "cases": [{**r, "verdict": db.verdict(r)} for r in reps]},
        path,
    )
    return path


def test_merge_keeps_each_case_once_preferring_more_seeds_then_the_later_run(
    tmp_path: Path,
) -> None:
    early = _report((1.25, True), (1.20, True), swing=2.0)  # loses on cost
    later = _report((1.10, True), (1.20, True), swing=2.0)  # the same case, run again: wins
    three = _report((1.15, True), (1.20, True), swing=2.0)
    three["case"] = {**three["case"], "series": "T", "seeds": 3}
    one = _report((1.30, True), (1.20, True), swing=2.0)
    one["case"] = {**one["case"], "series": "T"}
    a = _run_file(tmp_path / "a.json", [early, three])
    b = _run_file(tmp_path / "b.json.gz", [later, one], fingerprint="f2")
    merged = db.merge([a, b])
    assert [(c["case"]["series"], c["case"]["seeds"]) for c in merged["cases"]] == [
        ("S", 1),
        ("T", 3),  # three seeds supersede one, though the one-seed run came later
    ]
    assert [c["results"][0]["cost_ratio"] for c in merged["cases"]] == [1.10, 1.15]
    assert merged["superseded"] == 2
    assert merged["fingerprint"] == ["f1", "f2"]
    assert [r["ours_cheapest"] for r in merged["series"]] == [1, 1]
    assert "cheaper than every baseline that meets it in 2/2" in db.markdown(merged)
    assert [c["case"]["series"] for c in db.merge([a, b], series=["T"])["cases"]] == ["T"]
    # the merged result is itself a result: it merges again to the same cases
    out = tmp_path / "merged.json.gz"
    db.write_result(merged, out)
    again = db.merge([out])
    assert again["cases"] == merged["cases"]
    assert again["fingerprint"] == ["f1", "f2"]
    md = tmp_path / "merged.md"
    assert db.main(["--merge", str(a), str(b), "--markdown", str(md)]) == 0
    assert "| T | 1 | 1/1 | 1/1 |" in md.read_text(encoding="utf-8")


def test_merge_names_the_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "gone.json"
    garbled = tmp_path / "garbled.json"
    garbled.write_text("{not json", encoding="utf-8")
    other = tmp_path / "other.json"
    other.write_text('{"results": []}', encoding="utf-8")
    broken = tmp_path / "broken.json"
    broken.write_text('{"cases": [{"case": {"series": "S"}}]}', encoding="utf-8")
    for path, expected in (
        (missing, "no such file"),
        (garbled, "not a readable JSON result"),
        (other, "not a decision-bench result"),
        (broken, r"cases\[0\] is not a case report"),
    ):
        with pytest.raises(db.MergeError, match=expected) as caught:
            db.merge([path])
        assert str(path) in str(caught.value)
    out = tmp_path / "out.json"
    assert db.main(["--merge", str(garbled), "--json", str(out)]) == 2
    err = capsys.readouterr().err
    assert "garbled.json: not a readable JSON result" in err
    assert "Traceback" not in err
    assert not out.exists()  # nothing written on a bad input


def test_markdown_warns_when_ours_scored_a_fallback() -> None:
    result = _result([_report((1.05, True), (1.20, True), swing=5.0)])
    assert "WARNING" not in db.markdown(result)
    ours = next(r for r in result["cases"][0]["results"] if r["policy"] == "ours")
    ours.update(decisions=100.0, fallback_decisions=40.0, fallback_reason="at x: boom")
    text = db.markdown(result)
    assert "WARNING: ours' policy failed (a fallback or a hold decided) in 1 case(s)" in text
    assert "(40 of 100 decisions; at x: boom)" in text


def test_a_policy_to_score_is_checked_before_any_case_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        db.DEFAULT_POLICY_FILE.read_text().replace("missBudgetShare: 1.0", "missBudgetShare: -1")
    )
    for path, expected in ((bad, "missBudgetShare"), (tmp_path / "gone.yaml", "gone.yaml")):
        assert db.main(["--policy", str(path), "--series", "none such"]) == 2
        err = capsys.readouterr().err
        assert f"decision bench: --policy {path}:" in err
        assert expected in err
        assert "Traceback" not in err


def _three_seed_world(cls: type[Backtest]) -> Backtest:
    trace = synthetic_trace(peak=100, days=0.25, step_s=600, seed=9, trough_ratio=2)
    plans = [plan_sessions(trace, peak=30, seed=s, days=2 / 24) for s in (1, 2, 3)]
    return cls(
        plans=plans,
        seeds=[1, 2, 3],
        stream_class="gen4n_ultra",
        capacity_model=CapacityModel.CURRENT,
        slo=Slo(instant=0.99, failed=0.001),
        price=1.0,
        registry=backtest_registry(),
        params=model_params(60.0),
    )


def _without_wall(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]


def test_screened_search_picks_and_reports_what_the_full_one_does() -> None:
    full = _three_seed_world(Backtest)
    screened = _three_seed_world(db.ScreenedBacktest)
    full_rows, full_spreads, full_unavailable = db.hindsight_baselines(full)
    screened_rows, screened_spreads, screened_unavailable = db.hindsight_baselines(screened)
    assert _without_wall(screened_rows) == _without_wall(full_rows)
    assert screened_spreads == full_spreads
    assert screened_unavailable == full_unavailable
    # each reported baseline's spread has every seed's own figures, in seed order
    assert set(full_spreads) == {r["policy"] for r in full_rows}
    for row in full_rows:
        per_seed = full_spreads[row["policy"]]["per_seed"]
        assert len(per_seed["cost"]) == 3
        assert sum(per_seed["cost"]) / 3 == pytest.approx(row["cost"])
        assert all(per_seed["meets_slo"]) == row["meets_slo"]
    # every tried candidate that missed on seed 1 skipped seeds 2 and 3
    assert any(not r["meets_slo"] or len(r["params"].get("tuned_over", ())) > 1 for r in full_rows)
    assert screened.runs < full.runs


def test_screened_row_of_a_baseline_that_never_meets_has_every_seed() -> None:
    world = _three_seed_world(db.ScreenedBacktest)
    nothing = baselines.native_idle(world.fleets[0], 0)  # no capacity until sessions ask
    assert isinstance(nothing, baselines.Candidate)
    screened = world.evaluate("none", lambda _f: nothing)
    assert not screened.aggregate.meets_slo
    assert screened.aggregate.seeds == 1  # seeds 2 and 3 skipped: seed 1 already missed
    best = db.lean_first(world, "none", [nothing])
    assert not best.aggregate.meets_slo
    assert best.aggregate.seeds == 3  # completed, as the full search would report it
    full = Backtest.evaluate(_three_seed_world(Backtest), "none", lambda _f: nothing)
    assert best.aggregate["cost"].mean == full.aggregate["cost"].mean


def test_a_case_where_ours_misses_the_slo_has_no_cost_figure_in_the_medians() -> None:
    """benchmark.md: "A policy that misses the SLO on a trace has no cost figure worth
    comparing there": it counts as a miss, not in the medians of cost."""
    reps = [
        _report((1.10, True), (1.20, True), swing=2.0),
        _report((0.50, False), (1.20, True), swing=2.0),  # cheap because it misses
    ]
    (regime,) = db.summarise_regimes(reps)
    assert regime["ours_meets_slo"] == 1
    assert regime["median_cost_ratio"] == pytest.approx(1.10)
    assert regime["median_vs_cheapest_baseline"] == pytest.approx(1.10 / 1.20)
    text = db.markdown(
        {
            "cases": [{**r, "verdict": db.verdict(r)} for r in reps],
            "regimes": [regime],
            "speed": None,
            "planned": 2,
        }
    )
    assert f"median ours/cheapest {1.10 / 1.20:.3f}, worst {1.10 / 1.20:.3f}" in text


_FAKE_CASES = [
    db.Case("f.csv", series, 40.0, "gen4n_high", "current", 2.0, 1) for series in ("S", "T")
]


# How long the canned case ``T`` takes: long enough to be stopped in flight (the SIGTERM test
# makes it a minute, so a worker left running is still there when the test looks).
T_CASE_SECONDS = 2.0


def _fake_case(case: db.Case, *_: object) -> dict[str, Any]:
    """A finished case at once for ``S``; ``T`` takes ``T_CASE_SECONDS``."""
    if case.series == "T":
        time.sleep(T_CASE_SECONDS)
    rep = _report((1.10, True), (1.20, True), swing=2.0)
    return {**rep, "case": dataclasses.asdict(case)}


@pytest.fixture
def fake_cases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench's bookkeeping around two canned cases (a real case replays 28 days)."""
    monkeypatch.setattr(db, "TRACES", tmp_path)
    monkeypatch.setattr(db, "cases", lambda *_, **__: list(_FAKE_CASES))
    monkeypatch.setattr(db, "run_case", _fake_case)
    monkeypatch.setattr(db, "speed", lambda days: {"days": days})


def test_every_finished_case_is_checkpointed_until_the_run_ends(
    fake_cases: None, tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    result = db.run("full", jobs=1, cache=tmp_path / "cache", checkpoint=seen.append)
    assert [[c["case"]["series"] for c in r["cases"]] for r in seen] == [["S"], ["S", "T"]]
    assert seen[0]["interrupted"] is True
    assert seen[0]["planned"] == 2
    assert "interrupted" not in seen[1]  # every case in: a stop during speed() loses none
    assert [c["case"]["series"] for c in result["cases"]] == ["S", "T"]
    assert "interrupted" not in result
    assert result["speed"] == {"days": 7.0}


def test_a_stop_while_timing_the_speed_keeps_every_case(
    fake_cases: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stopped(days: float) -> dict[str, float]:
        raise KeyboardInterrupt

    monkeypatch.setattr(db, "speed", stopped)
    result = db.run("full", jobs=1, cache=tmp_path / "cache")
    assert [c["case"]["series"] for c in result["cases"]] == ["S", "T"]
    assert result["interrupted"] is True
    assert result["speed"] is None


def test_unusable_outputs_and_inputs_are_refused_before_any_case(
    fake_cases: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = tmp_path / "no-such-folder" / "part.json"
    assert db.main(["--tier", "full", "--json", str(gone)]) == 2
    assert f"--json {gone}: no folder" in capsys.readouterr().err
    assert db.main(["--tier", "full", "--baselines-from", str(tmp_path / "old.json")]) == 2
    err = capsys.readouterr().err
    assert "--baselines-from" in err
    assert "old.json: no such file" in err
    assert "Traceback" not in err


def test_a_filter_that_keeps_no_case_is_refused_naming_what_would_match(
    fake_cases: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = ["--cache", str(tmp_path / "cache")]
    assert db.main(["--tier", "full", "--series", "U", *cache]) == 2
    err = capsys.readouterr().err
    assert "--series 'U': no such series in the full tier; valid: 'S', 'T'" in err
    assert db.main(["--tier", "full", "--only", "S 40 gen5n", *cache]) == 2
    err = capsys.readouterr().err
    assert "--only 'S 40 gen5n' matches no case of the full tier" in err
    assert "e.g. 'S 40 gen4n_high'" in err
    # Each filter matches on its own, not together.
    assert db.main(["--tier", "full", "--series", "T", "--only", "S 40", *cache]) == 2
    assert "e.g. 'T 40 gen4n_high'" in capsys.readouterr().err
    # The regime as the tables print it, or with its "peak", keeps the case.
    for only in ("T 40 gen4n_high", "T peak 40 gen4n_high current"):
        result = db.run("full", jobs=1, only=only, cache=tmp_path / "cache")
        assert [c["case"]["series"] for c in result["cases"]] == ["T"]


def test_skip_done_resumes_without_the_cases_an_earlier_run_holds(
    fake_cases: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run over many sessions resumes where it stopped: a case held for the same policy
    over as many seeds is left out; one held for another policy file, or over fewer seeds, is
    run."""
    done = _report((1.10, True), (1.20, True), swing=2.0)
    done["case"] = dataclasses.asdict(_FAKE_CASES[0])
    done["results"][0]["params"] = {"file": "policies/default.yaml", "plugin": "slo"}
    earlier = tmp_path / "earlier.json.gz"
    db.write_result({"fingerprint": "x", "cases": [done]}, earlier)
    result = db.run("full", jobs=1, cache=tmp_path / "cache", skip_done=[earlier])
    assert [c["case"]["series"] for c in result["cases"]] == ["T"]
    assert "1 of 2 case(s) skipped" in capsys.readouterr().out

    other = tmp_path / "other.yaml"
    other.write_bytes(db.DEFAULT_POLICY_FILE.read_bytes())
    result = db.run("full", jobs=1, cache=tmp_path / "cache", skip_done=[earlier], policy=other)
    assert [c["case"]["series"] for c in result["cases"]] == ["S", "T"]

    fewer = dataclasses.replace(_FAKE_CASES[0], seeds=0)
    done["case"] = dataclasses.asdict(fewer)
    db.write_result({"fingerprint": "x", "cases": [done]}, earlier)
    result = db.run("full", jobs=1, cache=tmp_path / "cache", skip_done=[earlier])
    assert [c["case"]["series"] for c in result["cases"]] == ["S", "T"]

    finished = {**done, "case": dataclasses.asdict(_FAKE_CASES[1])}
    done["case"] = dataclasses.asdict(_FAKE_CASES[0])
    db.write_result({"fingerprint": "x", "cases": [done, finished]}, earlier)
    result = db.run("full", jobs=1, cache=tmp_path / "cache", skip_done=[earlier])
    assert result["cases"] == []
    assert result["speed"] is None  # nothing ran: no speed figure is timed either
    assert "2 of 2 case(s) skipped" in capsys.readouterr().out

    assert db.main(["--tier", "full", "--skip-done", str(tmp_path / "gone.json")]) == 2
    err = capsys.readouterr().err
    assert "gone.json: no such file" in err
    assert "Traceback" not in err


def test_sigterm_stops_the_run_and_keeps_the_finished_cases(
    fake_cases: None,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The workers fork after this, so the case in flight sleeps a minute unless terminated.
    monkeypatch.setattr(sys.modules[__name__], "T_CASE_SECONDS", 60.0)
    out = tmp_path / "part.json"
    checkpointed: list[dict[str, Any]] = []

    def terminate_after_the_first_case() -> None:
        deadline = time.monotonic() + 30
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        checkpointed.append(db.read_result(out))
        os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=terminate_after_the_first_case)
    killer.start()
    try:
        code = db.main(["--tier", "full", "--jobs", "1", "--json", str(out)])
    finally:
        killer.join()
    assert code == 130
    assert signal.getsignal(signal.SIGTERM) == before  # the handler is the run's only
    for worker in multiprocessing.active_children():
        # A terminated worker is gone within seconds even on a loaded machine (1 s was too
        # short beside a benchmark on both cores); one left running sleeps on for a minute.
        worker.join(timeout=15.0)
    assert not multiprocessing.active_children(), "the case in flight was left running"
    assert [c["case"]["series"] for c in checkpointed[0]["cases"]] == ["S"]
    written = db.read_result(out)
    assert written["interrupted"] is True
    assert [c["case"]["series"] for c in written["cases"]] == ["S"]
    assert "Interrupted: 1 of 2 cases finished." in capsys.readouterr().out


def test_baselines_from_an_earlier_result_are_reused_only_on_the_same_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A case run afresh, its result written, then primed into an empty cache: the rerun reads
    the very rows it would compute (the cache outlives no machine, bench/results/ does); a
    result from other code primes nothing."""
    trace = synthetic_trace(peak=100, days=1.0, step_s=600, seed=3, trough_ratio=3)
    stamps = pd.to_datetime(np.asarray(trace.times), unit="s", utc=True)
    frame = pd.DataFrame({"timestamp": stamps.strftime("%Y-%m-%dT%H:%M:%SZ"), "S": trace.values})
    frame.to_csv(tmp_path / "t.csv", index=False)
    monkeypatch.setattr(db, "TRACES", tmp_path)
    case = db.Case("t.csv", "S", 20.0, "gen4n_high", "current", 0.25, 1)
    first = db.run_case(case, tmp_path / "cache-a" / "same-code")
    assert first["fingerprint"] == "same-code"
    earlier = tmp_path / "earlier.json.gz"
    db.write_result({"fingerprint": "same-code", "cases": [first]}, earlier)

    assert db.prime_cache([earlier], [case], tmp_path / "cache-b" / "other-code") == (
        0,
        {"same-code": 1},
    )
    assert not (tmp_path / "cache-b").exists()

    # another SLO tunes other baselines: a policy setting one gets its own cache entry
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(
        db.DEFAULT_POLICY_FILE.read_text().replace("instant: 0.99 ", "instant: 0.995 ")
    )
    assert db.prime_cache([earlier], [case], tmp_path / "cache-d" / "same-code", stricter) == (
        0,
        {},
    )

    fresh = tmp_path / "cache-c" / "same-code"
    assert db.prime_cache([earlier], [case], fresh) == (1, {})
    again = db.run_case(case, fresh)
    baselines = [r for r in first["results"] if r["policy"] != "ours"]
    assert baselines  # the sweep ran: there is something to reuse
    assert [r for r in again["results"] if r["policy"] != "ours"] == baselines
    assert again["spread"] == first["spread"]  # ours' own spread replayed the same
    assert again["unavailable"] == first["unavailable"]
    assert again["summary"] == first["summary"]


def test_merged_tables_replace_only_the_rerun_sections_tables(tmp_path: Path) -> None:
    """``bench.benchmarks_doc`` puts a merge's tables into BENCHMARKS.md (targets first), and
    keeps the prose around them; a second splice replaces the first one's tables."""
    from bench import benchmarks_doc  # noqa: PLC0415

    first = _report((1.05, True), (1.20, True), swing=5.0)
    second = _report((1.30, True), (1.20, True), swing=2.0)
    second["case"] = {**second["case"], "series": "T"}
    tables = db.markdown(_result([first, second]))
    doc = (
        "# Benchmarks\n\nintro\n\n"
        + benchmarks_doc.SECTION_START
        + "old tables\n\n"
        + benchmarks_doc.SECTION_END
        + "\n\nlater prose\n"
    )
    once = benchmarks_doc.splice(doc, tables)
    assert once.startswith("# Benchmarks\n\nintro\n\n" + benchmarks_doc.SECTION_START)
    assert once.endswith(benchmarks_doc.SECTION_END + "\n\nlater prose\n")
    assert "old tables" not in once
    section = once[
        once.index(benchmarks_doc.SECTION_START) : once.index(benchmarks_doc.SECTION_END)
    ]
    heads = ("Targets over 2 cases", "Per regime:", "Per series:", "Per case:")
    order = [section.index(head) for head in heads]
    assert order == sorted(order)
    assert section.count("| S | 40 gen4n_high current |") == 1
    assert benchmarks_doc.splice(once, tables) == once

    path, tables_path = tmp_path / "BENCHMARKS.md", tmp_path / "tables.md"
    path.write_text(doc)
    tables_path.write_text(db.markdown(_result([first])))  # one series: no series table
    assert benchmarks_doc.main([str(path), str(tables_path)]) == 2
    assert path.read_text() == doc  # nothing written
    tables_path.write_text(tables)
    assert benchmarks_doc.main([str(path), str(tables_path)]) == 0
    assert path.read_text() == once
