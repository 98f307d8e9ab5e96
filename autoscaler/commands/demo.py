"""``autoscaler demo``: the controller keeping a day of player demand served, live."""

from __future__ import annotations

import argparse
import asyncio
import json
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
        "--policy", type=Path, default=Path("policies/default.yaml"), help="policy file"
    )
    parser.add_argument("--chart", type=Path, help="where to save the PNG chart")
    parser.add_argument("--json", action="store_true", help="also print the summary as JSON")
    parser.add_argument("--no-live", action="store_true", help="no live view (logs, CI)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autoscaler.demo import DemoOptions, run_demo  # noqa: PLC0415
    from autoscaler.domain.errors import ConfigError  # noqa: PLC0415
    from autoscaler.logs import configure_logging  # noqa: PLC0415

    if args.hours <= 0 or args.time_scale <= 0 or args.peak < 1:
        raise ConfigError(
            "autoscaler demo",
            ["--hours and --time-scale must be > 0 and --peak >= 1"],
        )
    options = DemoOptions(
        hours=args.hours,
        time_scale=args.time_scale,
        peak=args.peak,
        stream_class=args.stream_class,
        seed=args.seed,
        trace=args.trace,
        series=args.series,
        policy=args.policy,
        chart=args.chart,
        live=not args.no_live,
    )
    configure_logging("ERROR", "console")  # the live view is the output; errors still show
    summary = asyncio.run(run_demo(options))
    if args.json:
        print(json.dumps({k: v for k, v in summary.items() if k != "usage"}, indent=2))
    return 0 if summary["daemon_exit"] == 0 else 1
