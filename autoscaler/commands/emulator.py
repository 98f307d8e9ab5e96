"""``autoscaler emulator``: the local GameLift Streams emulator over HTTP."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulator", help="run the local GameLift Streams emulator (HTTP, rest-json)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per wall second"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the service model")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autoscaler.twin.emulator import serve_forever  # noqa: PLC0415  (keeps --help fast)

    return serve_forever(
        host=args.host, port=args.port, time_scale=args.time_scale, seed=args.seed
    )
