"""One controller tick over 200 stream groups × 3 locations with 20,000 live sessions, next to
a bare aiobotocore loop making the same reads (the I/O floor), in the same run.

The emulator runs in its own process (``autoscaler emulator``) so that the CPU time measured
here is the controller's alone. Rate limits are off on both sides (the emulator's, and the
controller's own limiter) so the figure is the pipeline's overhead, not the AWS quota.

    .venv/bin/python -m bench.tick_bench [--groups 200] [--sessions 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from autoscaler.aws.gameliftstreams import open_gameliftstreams
from autoscaler.controller import Controller, ControllerOptions
from autoscaler.domain.clock import WallClock
from autoscaler.domain.models import LocationBounds
from autoscaler.domain.policy import GroupSelector, Policy
from autoscaler.limiter import RateLimiter
from autoscaler.policy.plugin import PluginRegistry, validate_params
from autoscaler.store import HistoryStore

REGION = "us-west-2"
LOCATIONS = ("us-west-2", "us-east-2", "eu-central-1")
CONCURRENCY = 8


def start_emulator() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "emulator", "--port", "0", "--time-scale", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if match is None:
        proc.kill()
        raise RuntimeError(f"emulator did not start: {line!r}")
    return proc, match.group(1)


def client(session: AioSession, url: str) -> Any:
    return session.create_client(
        "gameliftstreams",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=AioConfig(max_pool_connections=32, retries={"total_max_attempts": 1}),
    )


async def populate(url: str, groups: int, sessions: int) -> list[str]:
    per_group = max(1, sessions // groups)
    per_location = -(-per_group // len(LOCATIONS))
    capacity = per_location + (per_location % 2) + 2  # gen4n_high: tenancy 2
    session = AioSession()
    async with client(session, url) as gls:
        app = await gls.create_application(
            Description="bench",
            RuntimeEnvironment={"Type": "PROTON", "Version": "20241007"},
            ExecutablePath="game",
            ApplicationSourceUri="s3://bench/game",
        )
        ids: list[str] = []
        for i in range(groups):
            group = await gls.create_stream_group(
                Description=f"bench {i}",
                StreamClass="gen4n_high",
                DefaultApplicationIdentifier=app["Id"],
                LocationConfigurations=[
                    {
                        "LocationName": loc,
                        "AlwaysOnCapacity": capacity,
                        "TargetIdleCapacity": 0,
                        "MaximumCapacity": capacity,
                    }
                    for loc in LOCATIONS
                ],
            )
            ids.append(group["Id"])
        # wait for groups to be ACTIVE and the floors provisioned (time scale 60)
        while True:
            state = await gls.get_stream_group(Identifier=ids[-1])
            locs = state.get("LocationStates", [])
            if state["Status"] == "ACTIVE" and all(
                loc.get("AllocatedCapacity", 0) >= capacity for loc in locs
            ):
                break
            await asyncio.sleep(0.5)
        semaphore = asyncio.Semaphore(32)

        async def start(gid: str, loc: str) -> None:
            async with semaphore:
                await gls.start_stream_session(
                    Identifier=gid,
                    ApplicationIdentifier=app["Id"],
                    Protocol="WebRTC",
                    SignalRequest="offer",
                    Locations=[loc],
                )

        await asyncio.gather(
            *(start(gid, LOCATIONS[k % len(LOCATIONS)]) for gid in ids for k in range(per_group))
        )
        return ids


async def floor_tick(gls: Any, ids: list[str]) -> None:
    """The same reads as a tick, nothing else: GetStreamGroup + all pages of sessions."""
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(gid: str) -> None:
        async with semaphore:
            await gls.get_stream_group(Identifier=gid)
            paginator = gls.get_paginator("list_stream_sessions")
            async for _ in paginator.paginate(Identifier=gid, PaginationConfig={"PageSize": 100}):
                pass

    await asyncio.gather(*(one(g) for g in ids))


async def measure(url: str, ids: list[str], repeat: int) -> dict[str, float]:
    registry = PluginRegistry()
    params = validate_params("target-tracking", {})
    policy = Policy(
        name="bench",
        source="bench",
        selector=GroupSelector(ids=tuple(ids)),
        plugin="target-tracking",
        plugin_params=params,
        default_bounds=LocationBounds(0, 1000),
    )
    unlimited = RateLimiter(
        dict.fromkeys(("ListStreamSessions", "GetStreamGroup"), 0.0), unknown_rate=0.0
    )
    floor_s: list[float] = []
    tick_s: list[float] = []
    tick_cpu_s: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "h.sqlite3", retention_s=86400.0)
        async with open_gameliftstreams(
            REGION,
            endpoint_url=url,
            limiter=unlimited,
            read_only=True,
            max_attempts=1,
            max_pool_connections=32,
        ) as gls_port:
            controller = Controller(
                reader=gls_port.reader,
                writer=None,
                store=store,
                policies=[policy],
                plugins=registry,
                clock=WallClock(),
                options=ControllerOptions(dry_run=True, max_concurrency=CONCURRENCY),
            )
            session = AioSession()
            async with client(session, url) as raw:
                await floor_tick(raw, ids)  # warm both paths (connections, models)
                await controller.tick()
                for _ in range(repeat):
                    t = time.perf_counter()
                    await floor_tick(raw, ids)
                    floor_s.append(time.perf_counter() - t)
                    t, c = time.perf_counter(), time.process_time()
                    report = await controller.tick()
                    tick_s.append(time.perf_counter() - t)
                    tick_cpu_s.append(time.process_time() - c)
                    assert report.ok, [
                        g.sample.problems for g in report.groups if g.sample.problems
                    ]
            sessions_seen = sum(
                ls.in_use + ls.waiting for g in report.groups for ls in g.sample.locations
            )
        store.close()
    floor = statistics.median(floor_s)
    tick = statistics.median(tick_s)
    return {
        "groups": float(len(ids)),
        "sessions_seen": float(sessions_seen),
        "floor_s": floor,
        "tick_s": tick,
        "tick_over_floor": tick / floor,
        "tick_cpu_s": statistics.median(tick_cpu_s),
    }


def run(groups: int = 200, sessions: int = 20_000, repeat: int = 3) -> dict[str, float]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    proc, url = start_emulator()
    try:
        ids = asyncio.run(populate(url, groups, sessions))
        return asyncio.run(measure(url, ids, repeat))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--groups", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    result = run(args.groups, args.sessions, args.repeat)
    print(
        f"tick over {result['groups']:.0f} groups × 3 locations, "
        f"{result['sessions_seen']:.0f} live sessions: "
        f"floor (bare aiobotocore reads) {result['floor_s']:.2f} s, "
        f"controller tick {result['tick_s']:.2f} s, "
        f"ratio {result['tick_over_floor']:.2f}× (target ≤ 1.5×), "
        f"controller CPU {result['tick_cpu_s']:.2f} s per tick"
    )


if __name__ == "__main__":
    main()
