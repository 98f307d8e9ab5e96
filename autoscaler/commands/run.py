"""``autoscaler run``: the long-running controller (or one tick with ``--once``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from autoscaler.logs import configure_logging
from autoscaler.report import tick_record


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", type=Path, help="settings file (YAML); env AUTOSCALER_CONFIG also works"
    )
    parser.add_argument(
        "--policy",
        dest="policy_paths",
        action="append",
        type=Path,
        help="policy file or directory (repeatable); default: the settings' policy_paths",
    )
    parser.add_argument(
        "--endpoint-url", help="GameLift Streams endpoint (e.g. the emulator); overrides env"
    )
    parser.add_argument("--region", help="AWS region; overrides AWS_REGION")


def overrides_from(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "policy_paths": args.policy_paths,
        "aws_endpoint_url": args.endpoint_url,
        "aws_region": args.region,
    }


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="run the controller (long-running daemon)"
    )
    add_common_flags(parser)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        default=None,
        help="read and plan, never call a mutating API (the writer is not even built)",
    )
    parser.add_argument("--once", action="store_true", help="run one tick, print it, exit")
    parser.add_argument("--http-port", type=int, help="port of /metrics /healthz /readyz")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from autoscaler.runtime import run_daemon, run_once  # noqa: PLC0415
    from autoscaler.settings import Settings, load_settings  # noqa: PLC0415

    def current_settings() -> Settings:
        return load_settings(
            args.config,
            dry_run=args.dry_run,
            http_port=args.http_port,
            **overrides_from(args),
        )

    settings = current_settings()
    fmt = settings.log_format or ("console" if sys.stderr.isatty() else "json")
    configure_logging(settings.log_level, fmt)
    if args.once or settings.once:
        report = asyncio.run(run_once(settings, dry_run=settings.dry_run))
        print(json.dumps(tick_record(report), indent=2))
        return 0 if report.ok else 1
    return asyncio.run(run_daemon(settings, reload_settings=current_settings))
