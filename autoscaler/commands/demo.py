"""``autoscaler demo``: the controller keeping a day of player demand served, live."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="run the controller against the embedded emulator on a day of demand"
    )
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument(
        "--time-scale",
        type=float,
        default=720.0,
        help="simulated seconds per wall second (default 720: a day in 2 minutes)",
    )
    parser.add_argument("--peak", type=int, default=40, help="peak concurrent sessions")
    parser.add_argument("--stream-class", default="gen4n_high")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--trace", type=Path, help="replay this concurrency trace (CSV)")
    parser.add_argument("--series", help="the trace's series (column) to replay")
    parser.add_argument(
        "--policy", type=Path, help="policy file (default: the shipped policies/default.yaml)"
    )
    parser.add_argument("--chart", type=Path, help="where to save the PNG chart")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    parser.add_argument("--no-live", action="store_true", help="no live view (logs, CI)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autoscaler.demo import DemoOptions, run_demo  # noqa: PLC0415
    from autoscaler.domain.classes import STREAM_CLASSES, unknown_stream_class  # noqa: PLC0415
    from autoscaler.domain.errors import ConfigError  # noqa: PLC0415
    from autoscaler.logs import configure_logging  # noqa: PLC0415
    from autoscaler.outfiles import check_destination, require_drawing  # noqa: PLC0415
    from autoscaler.policy.config import shipped_policy  # noqa: PLC0415

    problems = [
        f"{flag} must be a number > 0, got {value:g}"
        for flag, value in (("--hours", args.hours), ("--time-scale", args.time_scale))
        if not (math.isfinite(value) and value > 0)
    ]
    if args.peak < 1:
        problems.append(f"--peak must be at least 1 session, got {args.peak}")
    if args.stream_class not in STREAM_CLASSES:
        problems.append(f"--stream-class: {unknown_stream_class(args.stream_class)}")
    if problems:
        raise ConfigError("autoscaler demo", problems)
    if args.chart is not None:  # before the run, not after it
        require_drawing("--chart")
        check_destination(args.chart, "--chart", suffix=".png")
    options = DemoOptions(
        hours=args.hours,
        time_scale=args.time_scale,
        peak=args.peak,
        stream_class=args.stream_class,
        seed=args.seed,
        trace=args.trace,
        series=args.series,
        policy=shipped_policy() if args.policy is None else args.policy,
        chart=args.chart,
        live=not args.no_live,
    )
    configure_logging("ERROR", "console")  # the live view is the output; errors still show
    summary = asyncio.run(run_demo(options))
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "usage"}, indent=2))
    return 0 if summary["daemon_exit"] == 0 else 1
