"""How fast the history store writes a month of ticks and reads a forecaster's window back.

The controller appends one batch per tick (one transaction per group) and, every tick, reads
about 14 days of one location for the forecaster; the read must stay well under a tick's
budget (target: under ~20 ms for 20k rows). Run: ``python -m bench.store_bench``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from autoscaler.domain.models import CapacitySetting, LocationSample
from autoscaler.store import HistoryStore

TICKS = 43_200
TICK_S = 60.0
LOCATIONS = ("us-east-1", "us-west-2", "eu-central-1")
GROUP = "sg-bench"
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
READ_DAYS = 14
READ_REPEATS = 20


def _tick(i: int) -> list[LocationSample]:
    at = START + i * TICK_S
    setting = CapacitySetting(always_on=4, target_idle=2, maximum=40)
    return [
        LocationSample(
            group_id=GROUP,
            location=loc,
            at=at,
            status="ACTIVE",
            setting=setting,
            allocated=10 + (i + k) % 7,
            idle=(i + k) % 3,
            in_use=8 + (i + k) % 5,
            waiting=(i + k) % 2,
            oldest_waiting_s=float((i + k) % 11),
            arrivals=(i + k) % 4,
            placement_failures=0,
            departures=(i + k) % 3,
        )
        for k, loc in enumerate(LOCATIONS)
    ]


def run(directory: Path | None = None) -> dict[str, float]:
    """Write ``TICKS`` × ``len(LOCATIONS)`` samples, one transaction per tick, then time the
    14-day read of one location: the first after reopening (it packs the sealed buckets),
    then best and median of ``READ_REPEATS``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = (directory or Path(tmp)) / "bench.sqlite"
        batches = [_tick(i) for i in range(TICKS)]
        with HistoryStore(path, retention_s=30 * 86_400.0) as store:
            t0 = time.perf_counter()
            for batch in batches:
                store.append_samples(batch)
            write_s = time.perf_counter() - t0

        # Reopen: the read is measured against the file, as after a restart.
        with HistoryStore(path, retention_s=30 * 86_400.0) as store:
            end = START + (TICKS - 1) * TICK_S
            since = end - READ_DAYS * 86_400.0
            reads: list[float] = []
            frames: list[float] = []
            t0 = time.perf_counter()
            rows = len(store.history(GROUP, LOCATIONS[0], since))  # packs the sealed buckets
            cold_s = time.perf_counter() - t0
            for _ in range(READ_REPEATS):
                t0 = time.perf_counter()
                hist = store.history(GROUP, LOCATIONS[0], since)
                reads.append(time.perf_counter() - t0)
                rows = len(hist)
            for _ in range(3):
                t0 = time.perf_counter()
                store.history_frame(GROUP, LOCATIONS[0], since)
                frames.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            pruned = store.prune(end)
            prune_s = time.perf_counter() - t0
        size = path.stat().st_size + sum(
            p.stat().st_size for p in path.parent.glob(path.name + "-*")
        )
    reads.sort()
    total_rows = TICKS * len(LOCATIONS)
    return {
        "rows_written": float(total_rows),
        "write_s": write_s,
        "write_rows_per_s": total_rows / write_s,
        "write_ticks_per_s": TICKS / write_s,
        "read_rows": float(rows),
        "read_ms_cold": cold_s * 1e3,
        "read_ms_best": reads[0] * 1e3,
        "read_ms_median": reads[len(reads) // 2] * 1e3,
        "frame_ms_best": min(frames) * 1e3,
        "prune_rows": float(pruned),
        "prune_ms": prune_s * 1e3,
        "file_mb": size / 1e6,
    }


def main() -> None:
    for name, value in run().items():
        print(f"{name:>20}: {value:,.2f}")


if __name__ == "__main__":
    main()
