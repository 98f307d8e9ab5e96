"""How many ListStreamSessions pages the emulator serves per second.

A controller lists the sessions of every group every tick, and the demo, the end-to-end tests
and the scale tests run many groups against one emulator; the emulator must never be the
bottleneck of a test. This run: one stream group with 1,200 placed sessions, rate limits off,
pages of 100 fetched with 8 requests in flight, each worker walking the NextToken chain.
Target: ≥ 500 pages/s on a 2-core machine.

Three figures, because the client costs more than the server here:
- ``sdk_inprocess_pages_per_s``: aiobotocore and the emulator in one process and event loop;
- ``sdk_pages_per_s``: aiobotocore against an ``autoscaler emulator`` process (a core each);
- ``server_pages_per_s``: the same process, read by a bare aiohttp client (no SigV4 signing,
  no botocore parsing): what the emulator itself can serve.
botocore spends ~4 ms parsing one page of 100 summaries (200 timestamps through dateutil's
tzlocal), so one client process cannot go past ~200 pages/s whatever the server does.
Run: ``python -m bench.emulator_bench``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.emulator import Emulator
from autoscaler.twin.model import LocationConfigInput

SESSIONS = 1_200
PAGE_SIZE = 100
CONCURRENCY = 8
DURATION_S = 3.0
REGION = "us-west-2"


async def _populate(emulator: Emulator, clock: ManualClock) -> str:
    model = emulator.model
    app = model.create_application(
        region=REGION,
        description="bench",
        runtime={"Type": "PROTON", "Version": "20241007"},
        executable_path="bin/game",
        source_uri="s3://bench/game",
    )
    group = model.create_stream_group(
        region=REGION,
        description="bench",
        stream_class="gen4n_ultra",
        default_application_id=app.app_id,
        locations=[
            LocationConfigInput(REGION, always_on=SESSIONS, target_idle=0, maximum=SESSIONS)
        ],
    )
    clock.advance(3600)  # activation and every host ready
    for _ in range(SESSIONS):
        model.start_stream_session(group.group_id, application_identifier=app.app_id)
    clock.advance(60)
    return group.group_id


Fetch = Callable[[str | None], Awaitable[tuple[int, str | None]]]


async def _drive(fetch: Fetch, duration_s: float) -> tuple[float, int]:
    """(pages per second, sessions seen) with CONCURRENCY workers calling ``fetch``."""
    pages = 0
    items = 0
    await fetch(None)  # warm up
    started = time.perf_counter()
    deadline = started + duration_s

    async def worker() -> None:
        nonlocal pages, items
        token: str | None = None
        while time.perf_counter() < deadline:
            count, token = await fetch(token)
            pages += 1
            items += count

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return pages / (time.perf_counter() - started), items


def _sdk_client(url: str) -> Any:
    config = AioConfig(retries={"total_max_attempts": 1}, max_pool_connections=CONCURRENCY)
    return AioSession().create_client(
        "gameliftstreams",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=config,
    )


async def _sdk_rate(url: str, group_id: str, duration_s: float) -> float:
    async with _sdk_client(url) as client:

        async def fetch(token: str | None) -> tuple[int, str | None]:
            kwargs: dict[str, Any] = {"Identifier": group_id, "MaxResults": PAGE_SIZE}
            if token:
                kwargs["NextToken"] = token
            page = await client.list_stream_sessions(**kwargs)
            return len(page["Items"]), page.get("NextToken")

        rate, _ = await _drive(fetch, duration_s)
        return rate


async def _raw_rate(url: str, group_id: str, duration_s: float) -> float:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as http:

        async def fetch(token: str | None) -> tuple[int, str | None]:
            params = {"MaxResults": str(PAGE_SIZE)}
            if token:
                params["NextToken"] = token
            async with http.get(f"/streamgroups/{group_id}/streamsessions", params=params) as r:
                assert r.status == 200, await r.text()
                page = await r.json()
            return len(page["Items"]), page.get("NextToken")

        rate, _ = await _drive(fetch, duration_s)
        return rate


async def _inprocess(duration_s: float) -> float:
    clock = ManualClock()
    async with Emulator(clock=clock) as emulator:
        assert emulator.url is not None
        group_id = await _populate(emulator, clock)
        rate = await _sdk_rate(emulator.url, group_id, duration_s)
        calls = emulator.calls["ListStreamSessions"]
        assert calls.rejected == 0
        assert calls.errors == 0
    return rate


async def _populate_over_http(url: str) -> str:
    """The same group, built through the API of an emulator process."""
    async with _sdk_client(url) as client, aiohttp.ClientSession(base_url=url) as http:
        app = await client.create_application(
            Description="bench",
            RuntimeEnvironment={"Type": "PROTON", "Version": "20241007"},
            ExecutablePath="bin/game",
            ApplicationSourceUri="s3://bench/game",
        )
        capacity = {"AlwaysOnCapacity": SESSIONS, "TargetIdleCapacity": 0}
        group = await client.create_stream_group(
            Description="bench",
            StreamClass="gen4n_ultra",
            DefaultApplicationIdentifier=app["Id"],
            LocationConfigurations=[
                {"LocationName": REGION, **capacity, "MaximumCapacity": SESSIONS}
            ],
        )
        await http.put("/_emulator/clock", json={"advance": 3600})

        async def start(count: int) -> None:
            for _ in range(count):
                await client.start_stream_session(
                    Identifier=group["Id"],
                    ApplicationIdentifier=app["Id"],
                    Protocol="WebRTC",
                    SignalRequest="offer",
                )

        await asyncio.gather(*(start(SESSIONS // CONCURRENCY) for _ in range(CONCURRENCY)))
        await http.put("/_emulator/clock", json={"advance": 60})
        return str(group["Id"])


async def _separate_process(duration_s: float) -> tuple[float, float]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autoscaler",
        "emulator",
        "--port",
        "0",
        "--clock",
        "manual",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        url = line.decode().split()[-1]
        group_id = await _populate_over_http(url)
        sdk = await _sdk_rate(url, group_id, duration_s)
        raw = await _raw_rate(url, group_id, duration_s)
    finally:
        process.terminate()
        await process.wait()
    return sdk, raw


async def _run(duration_s: float) -> dict[str, float]:
    inprocess = await _inprocess(duration_s)
    sdk, raw = await _separate_process(duration_s)
    return {
        "sdk_inprocess_pages_per_s": inprocess,
        "sdk_pages_per_s": sdk,
        "server_pages_per_s": raw,
        "sessions_listed": float(SESSIONS),
    }


def run(duration_s: float = DURATION_S) -> dict[str, float]:
    return asyncio.run(_run(duration_s))


def main(repeats: int = 1) -> None:
    results = [run() for _ in range(repeats)]
    for key in results[0]:
        print(f"{key:>16}: {statistics.median(r[key] for r in results):,.1f}")
    print(
        f"(median of {repeats} run(s) of {DURATION_S:.0f} s each, {CONCURRENCY} requests in flight)"
    )


if __name__ == "__main__":
    main()
