"""``autoscaler backtest``: score a policy on real demand against the baselines, in one run.

Replays a trace through the controller's real pipeline in virtual time (see
``autoscaler.backtest.runner``) and prints a table (or JSON) with cost, the in-use bound,
service shares, start waits and capacity updates per policy, plus the cheapest baseline that
meets the SLO and our cost relative to it. Long runs show a progress line; Ctrl-C or SIGTERM
(``kill``, ``timeout``, a container or a Kubernetes Job stopped) stops and prints what finished
(exit 130).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import sys
from collections.abc import Iterator, Mapping
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "backtest",
        help="replay a demand trace through the controller and the baselines (virtual time)",
        description=(
            "Replay demand from a trace (CSV: concurrency series or session log) through the "
            "controller's real pipeline against the simulated service, next to the baselines "
            "a user would otherwise pick, and score cost and service."
        ),
    )
    parser.add_argument("--trace", required=True, help="trace CSV file")
    parser.add_argument("--series", help="which series of a multi-series trace")
    parser.add_argument(
        "--policy", help="policy file for 'ours' (default: the shipped policies/default.yaml)"
    )
    parser.add_argument(
        "--peak",
        type=_peak,
        help="scale a concurrency trace to this many sessions at its peak (default 400), or "
        "'recorded' to replay it at its own scale (your own history); a session log is "
        "replayed as recorded",
    )
    parser.add_argument("--stream-class", default="gen4n_high", help="default gen4n_high")
    parser.add_argument(
        "--capacity-model",
        choices=("current", "legacy"),
        help="default: the policy file's capacityModel if it sets one, else current",
    )
    parser.add_argument("--days", type=float, help="length of the window (default: all)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds to average (default 3)")
    parser.add_argument(
        "--baselines",
        default="all",
        help="comma-separated: static-peak, native-idle, target-tracking, buffer, "
        "hourly-predictive; or all (default), none",
    )
    parser.add_argument(
        "--as-is",
        metavar="SETTING",
        help="the capacity you run today, replayed unchanged beside ours (in slots, every "
        "location): alwaysOn=N,targetIdle=N,maximum=N (current model) or alwaysOn=N,onDemand=N "
        "(legacy)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        help="worker processes for the runs (default: every usable CPU; 1: in this process). "
        "The report is the same for any value but for wall times",
    )
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.add_argument("--plot", help="write a PNG of our run (first seed) here")
    parser.set_defaults(func=run)


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Within: SIGTERM to this process stops the runs as Ctrl-C does, so a backtest stopped
    by ``timeout`` or its container still reports the policies that finished (the decision
    bench uses it too); the handler before is restored after."""
    owner = os.getpid()

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != owner:  # a forked child that kept the handler: just end
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def run(args: argparse.Namespace) -> int:
    from autoscaler.backtest.parallel import usable_cores  # noqa: PLC0415
    from autoscaler.backtest.runner import backtest  # noqa: PLC0415

    err = Console(stderr=True)
    quiet = args.output == "json" or not err.is_terminal
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.completed} runs"),
        TextColumn("[dim]{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=quiet,
    )
    task = bar.add_task("starting", total=None)

    def progress(message: str) -> None:
        bar.update(task, description=message, advance=1)

    try:
        with bar, sigterm_as_ctrl_c():
            report = backtest(
                args.trace,
                args.series,
                policy_file=args.policy,
                peak=args.peak,
                stream_class=args.stream_class,
                capacity_model=args.capacity_model,
                days=args.days,
                seeds=args.seeds,
                baselines_to_run=args.baselines,
                progress=progress,
                plot=args.plot,
                jobs=usable_cores() if args.jobs is None else args.jobs,
                as_is=args.as_is,
            )
    except BrokenProcessPool:
        print(
            "error: a backtest worker process died (killed, or out of memory?): "
            "rerun with fewer --jobs, or --jobs 1 to run in this process",
            file=sys.stderr,
        )
        return 1
    if args.output == "json":
        print(json.dumps(_jsonable(report), indent=2))
    else:
        print_table(report, Console(width=170))
    if report.get("plot_error"):
        print(
            "error: --plot: the report above is complete; the picture was not written:",
            file=sys.stderr,
        )
        for problem in report["plot_error"]:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    if report.get("interrupted"):
        print("interrupted: results above are the runs that finished", file=sys.stderr)
        return 130
    return 0


def _peak(text: str) -> float | str:
    if text == "recorded":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of sessions or 'recorded', got {text!r}"
        ) from None


def _jsonable(value: Any) -> Any:
    """JSON has no infinity: an unbounded ratio becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _params(params: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k != "tuned_over"}
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _cell(row: Mapping[str, Any], spread: Mapping[str, Any] | None, name: str, spec: str) -> str:
    """``row[name]`` (the mean over seeds) and, under it, the lowest–highest seed."""
    text = format(row[name], spec)
    got = (spread or {}).get(name)
    if got is None:
        return text
    return f"{text}\n{format(got['min'], spec)}–{format(got['max'], spec)}"


def fallback_note(row: Mapping[str, Any]) -> str | None:
    """What to say of a row whose policy failed on some decisions (None: it never did): its
    figures are then partly, or wholly, its fallback's."""
    failed = row.get("fallback_decisions") or 0
    if failed <= 0:
        return None
    decisions = row.get("decisions") or 0
    share = f" ({failed / decisions:.1%})" if decisions > 0 else ""
    whose = "wholly" if decisions > 0 and failed >= decisions else "partly"
    first = row.get("fallback_reason")
    return (
        f"WARNING {row['policy']}: the policy failed on {failed:,.0f} of {decisions:,.0f}"
        f" decisions{share} (mean over seeds), and a fallback or a hold decided instead: the"
        f" row above is {whose} the fallback's" + (f"; first failure: {first}" if first else "")
    )


def print_table(report: Mapping[str, Any], console: Console) -> None:
    from autoscaler.backtest.runner import seed_ratios  # noqa: PLC0415  (numpy: lazily)
    from autoscaler.backtest.scoring import idle_split_text  # noqa: PLC0415

    slo = report["slo"]
    title = (
        f"backtest {report['trace']} [{report['series']}] peak {report['peak']:g}, "
        f"{report['stream_class']}, {report['capacity_model']} model, {report['seeds']} seed(s); "
        f"SLO instant ≥ {slo['instant']:.1%}, failed ≤ {slo['failed']:.2%}"
    )
    window = report.get("window")
    if window is not None:
        title += f"\nreplayed {window['start']} to {window['end']} ({window['days']:.1f} days)"
        if "note" in window:
            title += f": {window['note']}"
    # Names from the user's files (a series "sg-1/us-east-1", a policy path) are text, not
    # rich markup: "[sg-1/us-east-1]" would otherwise vanish as an unknown style tag.
    table = Table(title=escape(title))
    for column in (
        "policy",
        "params",
        "cost $",
        "bound $",
        "ratio",
        "idle % kept/held/partial",
        "instant",
        "cold",
        "failed",
        "p95 s",
        "p99 s",
        "updates",
        "SLO",
        "wall s",
    ):
        table.add_column(column, overflow="fold")
    spreads: Mapping[str, Any] = report.get("spread") or {}
    for row in report["results"]:
        spread = spreads.get(row["policy"]) if report.get("seeds", 1) > 1 else None
        met = "meets" if row["meets_slo"] else "MISSES"
        if spread is not None and not row["meets_slo"]:
            seeds = int(report["seeds"])
            met += f" ({round(spread['meets_slo_share'] * seeds)}/{seeds} seeds met)"
        table.add_row(
            row["policy"],
            escape(_params(row["params"])),
            _cell(row, spread, "cost", ".2f"),
            f"{row['bound']:.2f}",
            _cell(row, spread, "cost_ratio", ".3f"),
            idle_split_text(row.get("idle")),
            _cell(row, spread, "instant", ".2%"),
            f"{row['cold']:.2%}",
            _cell(row, spread, "failed", ".3%"),
            f"{row['p95_wait_s']:.0f}",
            f"{row['p99_wait_s']:.0f}",
            f"{row['updates']:.0f}",
            met,
            f"{row['wall_s']:.1f}",
        )
    console.print(table)
    if report.get("seeds", 1) > 1:
        console.print("two-line cells: the mean over the seeds, then the lowest–highest seed")
    for name, reason in report.get("unavailable", {}).items():
        console.print(escape(f"{name}: not run ({reason})"))
    for row in report["results"]:
        note = fallback_note(row)
        if note is not None:
            console.print(escape(note))
    summary = report["summary"]
    ran = [r for r in report["results"] if r["policy"] != "ours"]
    finished = " of those that finished" if report.get("interrupted") else ""
    if not ran:
        console.print("no baseline ran")
    elif summary["cheapest_baseline"] is None:
        console.print(f"no baseline{finished} met the SLO")
    else:
        ratio = summary["ours_vs_cheapest"]
        shown = "-" if ratio is None else f"{ratio:.3f}"
        verdict = "" if summary["ours_meets_slo"] else " (ours MISSES the SLO)"
        per_seed = seed_ratios(report, summary["cheapest_baseline"])
        by_seed = (
            f" (seed by seed {min(per_seed):.3f}–{max(per_seed):.3f})" if len(per_seed) > 1 else ""
        )
        console.print(
            f"cheapest baseline{finished} meeting the SLO: {summary['cheapest_baseline']} "
            f"(${summary['cheapest_baseline_cost']:.2f}); ours costs {shown}× that{by_seed}"
            f"{verdict}"
        )
