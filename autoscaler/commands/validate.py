"""``autoscaler validate PATH...``: check policy files before the daemon ever reads them.

Meant for CI and pre-commit: it loads every file exactly as the daemon would (same loader, the
installed policy plugins checking their own params, the same checks across files) and prints
one ``ok:`` line per valid file on stdout and every problem of every invalid file on stderr.
Exit status: 0 when every file is valid, 2 otherwise (the CLI's code for a user error).
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any, TextIO

from autoscaler.policy.config import ResolveParams, check_policies, default_resolve_params

EXIT_OK = 0
EXIT_INVALID = 2


def register(subparsers: Any, *, resolve_params: ResolveParams | None = None) -> None:
    """Add ``validate``. ``resolve_params`` replaces the installed plugin registry (tests)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "validate",
        help="check policy files (exit 0 if all are valid, 2 otherwise)",
        description=(
            "Validate policy files or directories of *.yaml/*.yml files: the envelope, the "
            "plugin's params, and the rules across files (unique names, one policy per group)."
        ),
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or directory")
    parser.set_defaults(
        func=functools.partial(run, resolve_params=resolve_params or default_resolve_params)
    )


def run(
    args: argparse.Namespace,
    *,
    resolve_params: ResolveParams = default_resolve_params,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    stdout = out or sys.stdout
    stderr = err or sys.stderr
    try:
        report = check_policies(args.paths, resolve_params=resolve_params)
    except ImportError as error:
        print(
            f"error: the policy plugin registry is not available ({error}); reinstall autoscaler",
            file=stderr,
        )
        return EXIT_INVALID
    by_source = {policy.source: policy for policy in report.policies}
    for source in report.files:
        policy = by_source.get(source)
        if source not in report.problems and policy is not None:
            print(f"ok: {source} (policy {policy.name}, plugin {policy.plugin})", file=stdout)
    for source, problems in report.problems.items():
        print(f"error: {source}:", file=stderr)
        for problem in problems:
            print(f"  - {problem}", file=stderr)
    if report.problems:
        valid = sum(1 for source in report.files if source not in report.problems)
        print(f"{len(report.problems)} with problems, {valid} valid", file=stderr)
        return EXIT_INVALID
    return EXIT_OK
