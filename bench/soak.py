"""Soak: thousands of controller ticks through the real HTTP path with seeded random faults,
checking that nothing leaks and no group is ever scaled down on incomplete data.

The controller is built by the composition root (``runtime.build_controller``) and talks to the
in-process HTTP emulator on a manual clock (one simulated minute per tick, so a few thousand
ticks are days of simulated time). Every tick, demand drifts (a daily wave plus noise, sessions
of random length), and faults are drawn from a seeded RNG: throttling and 5xx on reads, 5xx on
writes, a group forced out of ACTIVE for a few ticks, a location's capacity changed by hand.

Checked and printed: ticks completed, decisions applied, failed writes, incomplete samples,
RSS, asyncio task count and thread count at start and end, and violations: a location
decided below its current capacity while its group's sample was incomplete. Exits 1 on any
violation, when RSS grew more than ``--max-rss-growth-mb`` (default 50 MB), or when tasks or
threads (other than the bounded default-executor pool) grew.

The client's rate limiter is off (the clock is virtual: its wall-clock quotas would only slow
the run down) and botocore makes one attempt per call (its backoff sleeps in wall time); a
failed call therefore shows up directly as an incomplete sample or a failed write.

    .venv/bin/python -m bench.soak [--ticks 5000] [--seed 7] [--groups 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import math
import os
import random
import resource
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoscaler.domain.clock import ManualClock
from autoscaler.domain.models import TickReport
from autoscaler.runtime import build_controller
from autoscaler.settings import Settings, load_settings
from autoscaler.twin.emulator import Emulator
from autoscaler.twin.model import LocationConfigInput

REGION = "us-west-2"
PAGE = 4096

POLICY = """\
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {{name: soak}}
spec:
  streamGroups: {{ids: [{ids}]}}
  defaults: {{minCapacity: 0, maxCapacity: 60}}
  policy:
    plugin: target-tracking
    params: {{targetUtilization: 0.6}}
  fallback: {{failureThreshold: 3, behavior: hold}}
  drift: {{action: respect, cooldownSeconds: 600}}
"""


def own_threads() -> int:
    """Threads other than the event loop's default executor workers (which asyncio starts
    lazily, up to a fixed bound, as store calls overlap): plan threads that never ended would
    show here."""
    return sum(1 for t in threading.enumerate() if not t.name.startswith("asyncio_"))


def rss_mb() -> float:
    """Resident set size now (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class Figures:
    ticks: int = 0
    applied: int = 0
    failed_writes: int = 0
    incomplete_samples: int = 0
    frozen: int = 0
    forced_statuses: int = 0
    drifts: int = 0
    violations: list[str] = field(default_factory=list)
    tick_s: list[float] = field(default_factory=list)


def violations(report: TickReport) -> list[str]:
    """Locations decided below their current capacity on an incomplete sample."""
    bad: list[str] = []
    for g in report.groups:
        if g.decision is None or g.sample.complete:
            continue
        for d in g.decision.locations:
            cur, dec = d.current, d.decided
            if (
                dec.always_on < cur.always_on
                or dec.target_idle < cur.target_idle
                or dec.maximum < cur.maximum
            ):
                bad.append(f"t={report.at:.0f} {g.group_id}/{d.location}: {cur} -> {dec}")
    return bad


def _faults(rng: random.Random) -> dict[str, Any]:
    """This tick's faults: usually none, sometimes a storm on reads or writes."""
    roll = rng.random()
    throttle: dict[str, float] = {}
    errors: dict[str, float] = {}
    if roll < 0.10:
        throttle = {"ListStreamSessions": rng.uniform(0.3, 1.0)}
    elif roll < 0.16:
        errors = {"GetStreamGroup": rng.uniform(0.3, 1.0)}
    elif roll < 0.22:
        errors = {"UpdateStreamGroup": 1.0}
    elif roll < 0.26:
        errors = {"ListStreamSessions": 0.5}
    return {"throttle_probability": throttle, "error_probability": errors}


def _settings(policy: Path, url: str, state: Path) -> Settings:
    extra: dict[str, Any] = {}
    if "cloudwatch_backfill" in Settings.model_fields:
        extra["cloudwatch_backfill"] = False
    return load_settings(
        None,
        env_file=None,
        policy_paths=[policy],
        aws_region=REGION,
        aws_endpoint_url=url,
        state_dir=state,
        aws_max_attempts=1,
        aws_retry_mode="standard",
        api_rate_limits=False,
        **extra,
    )


async def soak(ticks: int, seed: int, n_groups: int, tmp: Path) -> tuple[Figures, dict[str, Any]]:
    rng = random.Random(seed)
    clock = ManualClock()
    figures = Figures()
    async with Emulator(clock=clock, seed=seed) as emulator:
        model = emulator.model
        app = model.create_application(
            region=REGION,
            description="soak",
            runtime={"Type": "PROTON", "Version": "20241007"},
            executable_path="game.exe",
            source_uri="s3://bucket/game",
        )
        groups = [
            model.create_stream_group(
                region=REGION,
                description=f"soak-{i}",
                stream_class="gen4n_high",
                default_application_id=app.app_id,
                locations=[LocationConfigInput(REGION, always_on=2, target_idle=0, maximum=60)],
            ).group_id
            for i in range(n_groups)
        ]
        clock.advance(900)
        model.advance()
        policy = tmp / "soak.yaml"
        policy.write_text(POLICY.format(ids=", ".join(groups)))
        assert emulator.url is not None
        settings = _settings(policy, emulator.url, tmp / "state")
        forced: dict[str, int] = {}  # group → ticks left in a forced status
        async with build_controller(settings, clock=clock, interval_s=60.0) as built:
            controller = built.controller
            await controller.tick()  # warm-up: imports, connections, first store pages
            gc.collect()
            start = {
                "rss_mb": rss_mb(),
                "tasks": len(asyncio.all_tasks()),
                "threads": threading.active_count(),
                "own_threads": own_threads(),
            }
            began = time.perf_counter()
            for i in range(ticks):
                clock.advance(60.0)
                day = 2 * math.pi * (clock.now() % 86400) / 86400
                for gid in groups:
                    target = 12 + 10 * math.sin(day) + rng.gauss(0, 2)
                    for _ in range(max(0, int(rng.gauss(target / 30, 1)))):
                        if model.get_stream_group(gid).status == "ACTIVE":
                            model.start_stream_session(
                                gid,
                                application_identifier=app.app_id,
                                locations=[REGION],
                                end_after_s=rng.uniform(300, 3600),
                            )
                for gid, left in list(forced.items()):
                    if left <= 1:
                        model.force_group_status(gid, "ACTIVE")
                        del forced[gid]
                    else:
                        forced[gid] = left - 1
                if rng.random() < 0.01:
                    gid = rng.choice(groups)
                    if gid not in forced:
                        status = rng.choice(["ERROR", "UPDATING_LOCATIONS", "ACTIVE_WITH_ERRORS"])
                        model.force_group_status(gid, status, "soak")
                        forced[gid] = rng.randint(1, 5)
                        figures.forced_statuses += 1
                if rng.random() < 0.005:
                    gid = rng.choice([g for g in groups if g not in forced] or groups)
                    if model.get_stream_group(gid).status == "ACTIVE":
                        loc = model.get_stream_group(gid).locations[0]
                        by_hand = rng.randrange(0, 30, 2)
                        model.update_stream_group(
                            gid,
                            locations=[
                                LocationConfigInput(
                                    REGION, always_on=by_hand, target_idle=0, maximum=loc.maximum
                                )
                            ],
                        )
                        figures.drifts += 1
                model.advance()
                emulator.set_faults(_faults(rng))
                t0 = time.perf_counter()
                report = await controller.tick()
                figures.tick_s.append(time.perf_counter() - t0)
                figures.ticks += 1
                figures.violations += violations(report)
                for g in report.groups:
                    figures.incomplete_samples += not g.sample.complete
                    if g.decision is not None and g.decision.frozen:
                        figures.frozen += 1
                    if g.actuation is not None and g.actuation.applied:
                        figures.applied += 1
                    if g.actuation is not None and g.actuation.error and not g.actuation.dry_run:
                        figures.failed_writes += 1
                if (i + 1) % 1000 == 0:
                    print(
                        f"  {i + 1} ticks, {time.perf_counter() - began:.0f} s,"
                        f" RSS {rss_mb():.1f} MB, tasks {len(asyncio.all_tasks())}",
                        flush=True,
                    )
            gc.collect()
            end = {
                "rss_mb": rss_mb(),
                "tasks": len(asyncio.all_tasks()),
                "threads": threading.active_count(),
                "own_threads": own_threads(),
                "wall_s": time.perf_counter() - began,
                "db_mb": settings.effective_database_path.stat().st_size / 2**20,
            }
    return figures, {"start": start, "end": end}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--groups", type=int, default=3)
    parser.add_argument("--max-rss-growth-mb", type=float, default=50.0)
    args = parser.parse_args(argv)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    logging.basicConfig(level=logging.CRITICAL)  # faults log on every tick by design
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        figures, mem = asyncio.run(soak(args.ticks, args.seed, args.groups, Path(tmp)))
    start, end = mem["start"], mem["end"]
    growth = end["rss_mb"] - start["rss_mb"]
    ticks_s = sorted(figures.tick_s)
    p50 = ticks_s[len(ticks_s) // 2]
    p99 = ticks_s[min(len(ticks_s) - 1, int(len(ticks_s) * 0.99))]
    lines = [
        f"soak: {figures.ticks} ticks × {args.groups} groups, seed {args.seed},"
        f" {end['wall_s']:.0f} s wall (tick p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms)",
        f"  decisions applied        {figures.applied}",
        f"  failed writes (retried)  {figures.failed_writes}",
        f"  incomplete samples       {figures.incomplete_samples}",
        f"  frozen (forced statuses) {figures.frozen} ({figures.forced_statuses} forced)",
        f"  drifts by hand           {figures.drifts}",
        f"  RSS                      {start['rss_mb']:.1f} → {end['rss_mb']:.1f} MB"
        f" ({growth:+.1f} MB; bound +{args.max_rss_growth_mb:g} MB)",
        f"  asyncio tasks            {start['tasks']} → {end['tasks']}",
        f"  threads                  {start['threads']} → {end['threads']}"
        f" (not executor workers: {start['own_threads']} → {end['own_threads']})",
        f"  SQLite store             {end['db_mb']:.1f} MB",
        f"  scale-downs on incomplete data: {len(figures.violations)}",
    ]
    print("\n".join(lines))
    for v in figures.violations[:10]:
        print(f"  VIOLATION {v}", file=sys.stderr)
    ok = (
        not figures.violations
        and growth < args.max_rss_growth_mb
        and end["tasks"] <= start["tasks"]
        and end["own_threads"] <= start["own_threads"]
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
