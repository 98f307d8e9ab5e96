"""The ``autoscaler`` command line: one sub-command per job, each defined in its own module.

Each command module exposes ``register(subparsers)``, which adds its parser and sets
``func`` to a callable ``(args) -> int`` (the exit code). User mistakes (``ConfigError``) are
printed as a clear message with exit code 2, never as a stack trace.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import cast

from autoscaler import __version__
from autoscaler.domain.errors import ConfigError

# Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "autoscaler.commands.run",
    "autoscaler.commands.plan",
    "autoscaler.commands.validate",
    "autoscaler.commands.backtest",
    "autoscaler.commands.history",
    "autoscaler.commands.demo",
    "autoscaler.commands.emulator",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="autoscaler",
        description="Capacity controller for Amazon GameLift Streams.",
    )
    parser.add_argument("--version", action="version", version=f"autoscaler {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def _under_source(problem: str, source: str) -> str:
    """A problem as listed under its source's heading: without the source named again where
    it begins with it (``FILE: …`` → ``…``, ``FILE, line 3: …`` → ``line 3: …``); a
    ``FILE:2:1:`` position, which editors jump to, is kept whole."""
    for lead in (f"{source}: ", f"{source}, "):
        if source and problem.startswith(lead) and len(problem) > len(lead):
            return problem[len(lead) :]
    return problem


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = cast(Callable[[argparse.Namespace], int], args.func)
    try:
        return func(args)
    except ConfigError as error:
        print(f"error: {error.source}:", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {_under_source(problem, error.source)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
