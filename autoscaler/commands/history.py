"""``autoscaler history``: what the daemon has recorded, and the recorded demand as a trace.

The daemon samples every location of every group it manages and keeps the counts in its
history database. Run in dry-run for a few weeks, that is the studio's own demand, measured
the way the controller measures it: this command lists it and exports it in the backtest's
trace format (long: ``timestamp,series,value``, one series per group and location), so
"what would the controller have cost on our own last month" is two commands.

The database is never written (no migration, no write): with no daemon holding it, it is read
as immutable, creating nothing beside it; beside a running daemon, through a read-only
connection that shares the daemon's ``-shm`` (see ``store.read_demand_samples``).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from autoscaler.domain.errors import ConfigError
from autoscaler.outfiles import check_destination, write_atomically

VALUES = {
    "demand": "sessions in use + sessions waiting for capacity (what players asked for)",
    "in-use": "sessions in use only (what the capacity served)",
}


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "history",
        help="list the recorded demand per group and location, or export it as a trace",
        description=(
            "List what the daemon's history database holds per stream group and location, or "
            "write it (--export) as a trace for `autoscaler backtest`. Read-only: safe while "
            "the daemon runs."
        ),
    )
    parser.add_argument(
        "--config", type=Path, help="settings file (YAML); its state_dir names the database"
    )
    parser.add_argument(
        "--database", type=Path, help="the history database (default: from the settings)"
    )
    parser.add_argument("--group", help="only this stream group (its id)")
    parser.add_argument("--location", help="only this location (e.g. us-east-1)")
    parser.add_argument(
        "--since", help="from this UTC time (ISO 8601: 2026-11-01 or 2026-11-01T18:00Z)"
    )
    parser.add_argument("--until", help="up to this UTC time (ISO 8601)")
    parser.add_argument(
        "--export",
        type=Path,
        metavar="CSV",
        help="write the samples as a trace CSV here ('-': to stdout, the listing to stderr)",
    )
    parser.add_argument(
        "--value",
        choices=tuple(VALUES),
        default="demand",
        help="what a trace point counts: "
        + "; ".join(f"{name}: {what}" for name, what in VALUES.items()),
    )
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def _when(flag: str, text: str | None) -> float | None:
    """``text`` (ISO 8601; without a zone, UTC; or ``now``) as epoch seconds."""
    import pandas as pd  # noqa: PLC0415  (keeps --help fast)

    if text is None:
        return None
    try:
        stamp = pd.to_datetime(text, format="ISO8601", utc=True)
    except ValueError:
        stamp = None
    if stamp is None or pd.isna(stamp):
        raise ConfigError(
            flag,
            [f"{text!r} is not a date or time (ISO 8601, e.g. 2026-11-01 or 2026-11-01T18:00Z)"],
        )
    return float(stamp.timestamp())


def _database(args: argparse.Namespace) -> Path:
    if args.database is not None:
        return Path(args.database)
    from autoscaler.settings import load_settings  # noqa: PLC0415

    return load_settings(args.config).effective_database_path


def run(args: argparse.Namespace) -> int:
    import numpy as np  # noqa: PLC0415

    from autoscaler.store import StoreError, read_demand_samples  # noqa: PLC0415

    since, until = _when("--since", args.since), _when("--until", args.until)
    if since is not None and until is not None and until <= since:
        raise ConfigError("--until", [f"{args.until!r} is not after --since {args.since!r}"])
    database = _database(args)
    to_stdout = args.export is not None and str(args.export) == "-"
    if to_stdout and args.output == "json":
        raise ConfigError(
            "--export -",
            [
                "the trace goes to stdout, so the JSON report cannot: export to a file, "
                "or drop --output json"
            ],
        )
    if args.export is not None and not to_stdout:
        check_destination(args.export, "--export", example="trace.csv")  # before the reading
        own_files = {
            database.resolve().with_name(database.name + end) for end in ("", "-wal", "-shm")
        }
        if args.export.resolve() in own_files:
            raise ConfigError(
                "--export", [f"{args.export} is the history database itself; name a new file"]
            )
    try:
        samples = read_demand_samples(
            database, since=since, until=until, group_id=args.group, location=args.location
        )
    except StoreError as error:
        raise ConfigError(str(database), [str(error)]) from None
    if samples.empty:
        chosen = ", ".join(
            f"{flag} {value}"
            for flag, value in (
                ("--group", args.group),
                ("--location", args.location),
                ("--since", args.since),
                ("--until", args.until),
            )
            if value is not None
        )
        raise ConfigError(
            str(database), [f"no samples{' for ' + chosen if chosen else ''}: nothing to show"]
        )
    value = samples["in_use"] + (samples["waiting"] if args.value == "demand" else 0.0)
    samples = samples.assign(value=np.round(value.to_numpy()).astype(np.int64))
    listing = _listing(samples)
    report: dict[str, Any] = {"database": str(database), "value": args.value, "series": listing}
    if args.export is not None:
        measured = samples[samples["complete"]]
        if measured.empty:
            raise ConfigError(
                str(database),
                ["every sample chosen is of a tick whose listing failed: nothing to export"],
            )
        points = _write_trace(measured, None if to_stdout else args.export)
        exported = measured[["group_id", "location"]].drop_duplicates().shape[0]
        report["export"] = {"path": str(args.export), "points": points, "series": exported}
        if args.output == "table":
            print(
                f"wrote {points} points of {exported} series to "
                f"{'stdout' if to_stdout else args.export} ({args.value})",
                file=sys.stderr if to_stdout else sys.stdout,
            )
    if args.output == "json":
        print(json.dumps(report, indent=2))
        return 0
    _print_listing(listing, args.export, args.value, stderr=to_stdout)
    return 0


def _listing(samples: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for (group_id, location), rows in samples.groupby(["group_id", "location"], sort=True):
        measured = rows[rows["complete"]]
        at = rows["at"]
        out.append(
            {
                "series": f"{group_id}/{location}",
                "group_id": str(group_id),
                "location": str(location),
                "first": _iso(float(at.min())),
                "last": _iso(float(at.max())),
                "days": round((float(at.max()) - float(at.min())) / 86400.0, 2),
                "samples": len(rows),
                "incomplete": int((~rows["complete"]).sum()),
                "imported": int(rows["backfilled"].sum()),
                "peak": int(measured["value"].max()) if len(measured) else 0,
            }
        )
    return out


def _iso(epoch_s: float) -> str:
    return _iso_all([epoch_s])[0]


def _iso_all(epochs_s: Any) -> list[str]:
    """UTC, to the second, or to the microsecond where a time has a fraction (two ticks less
    than a second apart must stay two times); one vectorised pass for a whole export."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    at = np.asarray(epochs_s, dtype=np.float64)
    stamps = pd.to_datetime(at, unit="s", utc=True)
    whole = stamps.strftime("%Y-%m-%dT%H:%M:%SZ")
    if not (at % 1).any():
        return list(whole)
    fine = stamps.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return list(np.where(at % 1 != 0, fine, whole))


def _print_listing(
    listing: list[dict[str, Any]], export: Path | None, value: str, *, stderr: bool = False
) -> None:
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    table = Table(title=f"recorded {value} per stream group and location (UTC)")
    for column in ("series", "first", "last", "days", "samples", "incomplete", "imported", "peak"):
        table.add_column(
            column, justify="left" if column in ("series", "first", "last") else "right"
        )
    for row in listing:
        table.add_row(
            row["series"],
            row["first"],
            row["last"],
            f"{row['days']:.2f}",
            str(row["samples"]),
            str(row["incomplete"]),
            str(row["imported"]),
            str(row["peak"]),
        )
    # wide: the series and times whole, also in a pipe or a log
    console = Console(width=170, stderr=stderr)
    console.print(table)
    console.print(
        "incomplete: ticks whose listing failed (left out of an export); imported: backfilled "
        "from CloudWatch on the daemon's first start"
    )
    exported = [row for row in listing if row["samples"] > row["incomplete"]]
    if export is not None and exported:
        busiest = max(exported, key=lambda row: row["peak"])
        command = shlex.join(
            [
                "autoscaler",
                "backtest",
                "--trace",
                "trace.csv" if str(export) == "-" else str(export),  # where stdout went
                "--series",
                busiest["series"],
                "--peak",
                "recorded",
            ]
        )
        # markup=False: a path or a name is text, "[x]" in it is not a style tag
        console.print(f"backtest one at its own scale:\n  {command}", soft_wrap=True, markup=False)


def _write_trace(samples: Any, path: Path | None) -> int:
    """Write the long trace format, atomically (beside ``path``, then renamed over it), or to
    stdout (``path`` None)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["timestamp", "series", "value"])
    stamps = _iso_all(samples["at"].to_numpy())
    series = (samples["group_id"] + "/" + samples["location"]).tolist()
    writer.writerows(zip(stamps, series, samples["value"].tolist(), strict=True))
    if path is None:
        sys.stdout.write(buffer.getvalue())
        sys.stdout.flush()
        return len(stamps)
    text = buffer.getvalue().encode("utf-8")
    write_atomically(path, "--export", lambda sink: sink.write(text), example="trace.csv")
    return len(stamps)
