"""``make bench``: every benchmark of the project, one after the other, in one process tree.

Each benchmark module has a ``main()`` that prints its own figures next to its baseline;
``--only NAME`` runs one. The figures recorded in BENCHMARKS.md come from this command.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import subprocess
import sys
import time

BENCHMARKS = (
    ("model", "bench.model_bench", "service model: events/s and sessions/s"),
    ("emulator", "bench.emulator_bench", "HTTP emulator: ListStreamSessions pages/s"),
    ("store", "bench.store_bench", "SQLite history: appends/s and 14-day reads"),
    ("tick", "bench.tick_bench", "one tick, 200 groups × 3 locations vs the I/O floor"),
    ("forecast", "bench.forecast_bench", "forecast accuracy and time per series"),
    ("backtest", "bench.backtest_speed", "backtest speed: 30 days at peak 400, per stage"),
    ("decision", "bench.decision_bench", "backtest decision quality vs baselines"),
)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import os  # noqa: PLC0415

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=[name for name, _, _ in BENCHMARKS], action="append")
    args, rest = parser.parse_known_args()
    print(f"machine: {machine()}")
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        rev = "?"
    print(f"commit: {rev}\n")
    failed = []
    for name, module_name, what in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        print(f"=== {name}: {what}")
        started = time.perf_counter()
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            print(f"skipped: {error}\n")
            continue
        saved = sys.argv
        sys.argv = [module_name, *rest]
        try:
            module.main()
        except Exception as error:  # one broken benchmark must not hide the others
            failed.append(name)
            print(f"FAILED: {type(error).__name__}: {error}")
        finally:
            sys.argv = saved
        print(f"({time.perf_counter() - started:.1f} s)\n")
    if failed:
        raise SystemExit(f"benchmarks failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
