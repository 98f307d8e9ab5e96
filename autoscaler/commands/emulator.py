"""``autoscaler emulator``: the local GameLift Streams emulator over HTTP."""

from __future__ import annotations

import argparse
import math
from typing import Any

from autoscaler.domain.errors import ConfigError

MAX_PORT = 65535


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "emulator",
        help="run the local GameLift Streams emulator (HTTP, rest-json)",
        description=(
            "Serve the GameLift Streams API on a local port for aiobotocore and the AWS CLI "
            "(--endpoint-url). Admin endpoints: /_emulator/{usage,calls,calls/reset,faults,clock}."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="simulated seconds per wall second"
    )
    parser.add_argument(
        "--clock",
        choices=("wall", "scaled", "manual"),
        default=None,
        help="wall (scale 1), scaled (--time-scale), or manual (moved by PUT /_emulator/clock);"
        " default: wall at scale 1, scaled otherwise",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the service model")
    parser.add_argument(
        "--aws-rate-limits",
        action="store_true",
        help="throttle like AWS's default quotas (e.g. ListStreamSessions 20/s)",
    )
    parser.add_argument(
        "--rate-limit",
        action="append",
        default=[],
        metavar="OPERATION=RPS",
        help="token-bucket limit for one operation ('*' = every operation); repeatable",
    )
    parser.add_argument(
        "--throttle-probability",
        type=float,
        default=None,
        metavar="P",
        help="throttle each call with probability P (ThrottlingException, 429)",
    )
    parser.add_argument(
        "--error-probability",
        type=float,
        default=None,
        metavar="P",
        help="fail each call with probability P (InternalServerException, 500)",
    )
    parser.add_argument(
        "--lost-reply-probability",
        type=float,
        default=None,
        metavar="P",
        help="carry out each call, then answer it with probability P as if its reply were "
        "lost (InternalServerException, 500): the SDK retries a call that already landed",
    )
    parser.add_argument(
        "--latency", type=float, default=None, metavar="SECONDS", help="added to every call"
    )
    parser.add_argument(
        "--price",
        action="append",
        default=[],
        metavar="CLASS=USD",
        help="price per slot-hour of a stream class for /_emulator/usage; repeatable",
    )
    parser.set_defaults(func=run)


def _pairs(flag: str, items: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    problems: list[str] = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name:
                raise ValueError(item)
            out[name] = float(value)
        except ValueError:
            problems.append(f"{flag} {item!r}: expected NAME=NUMBER")
    if problems:
        raise ConfigError(flag, problems)
    return out


def _option_problems(args: argparse.Namespace) -> list[str]:
    """What is wrong with the options the fault settings do not check themselves."""
    from autoscaler.domain.classes import STREAM_CLASSES  # noqa: PLC0415

    problems: list[str] = []
    if not 0 <= args.port <= MAX_PORT:
        problems.append(f"--port must be 0 (any free port) to {MAX_PORT}, got {args.port}")
    if not (math.isfinite(args.time_scale) and args.time_scale > 0):
        problems.append(f"--time-scale must be a number > 0, got {args.time_scale:g}")
    for name, price in _pairs("--price", args.price).items():
        if name not in STREAM_CLASSES:
            known = ", ".join(sorted(STREAM_CLASSES))
            problems.append(f"--price {name}: unknown stream class (known: {known})")
        if not (math.isfinite(price) and price >= 0):
            problems.append(
                f"--price {name}: must be a number ≥ 0 (USD per slot-hour), got {price:g}"
            )
    return problems


def run(args: argparse.Namespace) -> int:
    from autoscaler.twin.emulator import serve_forever  # noqa: PLC0415  (keeps --help fast)

    problems = _option_problems(args)
    if problems:
        raise ConfigError("autoscaler emulator", problems)
    faults: dict[str, Any] = {"aws_rate_limits": args.aws_rate_limits}
    rate_limits = _pairs("--rate-limit", args.rate_limit)
    if rate_limits:
        faults["rate_limits"] = rate_limits
    if args.throttle_probability is not None:
        faults["throttle_probability"] = args.throttle_probability
    if args.error_probability is not None:
        faults["error_probability"] = args.error_probability
    if args.lost_reply_probability is not None:
        faults["lost_reply_probability"] = args.lost_reply_probability
    if args.latency is not None:
        faults["latency_s"] = args.latency
    return serve_forever(
        host=args.host,
        port=args.port,
        time_scale=args.time_scale,
        seed=args.seed,
        clock=args.clock,
        faults=faults,
        prices=_pairs("--price", args.price),
    )
