"""How many ListStreamSessions pages the emulator serves per second.

A controller lists the sessions of every group every tick, and the demo, the end-to-end tests
and the scale tests run many groups against one emulator; the emulator must never be the
bottleneck of a test. This run: one stream group with 1,200 placed sessions, rate limits off,
pages of 100 (each checked to hold 100 summaries), every worker walking the NextToken chain.
Target: the emulator serves ≥ 500 such pages per second on a 2-core machine.

The client costs more than the server (botocore spends ~4 ms parsing one page of 100
summaries: 200 timestamps through dateutil), so one aiobotocore process cannot go past
~200 pages/s whatever the server does. Hence two kinds of figures, the emulator always in
its own process (``autoscaler emulator``), every client process with 8 requests in flight:

- ``server_pages_per_s`` (the target's figure): pages per wall second the emulator served to
  CLIENTS light client processes (aiohttp; the body read whole, its summaries counted and the
  NextToken taken off its end; no SigV4 signing, no botocore parsing). Clients and server
  share the 2 cores (and whatever else runs), so this is a lower bound;
- ``server_pages_per_cpu_s``: the same pages over the emulator process's CPU seconds
  (``/proc``): what one core running only the emulator serves (``server_cpu_ms_per_page``);
- ``*_client_cpu_ms_per_page``: what each page costs the client side, for comparison;
- ``sdk_pages_per_s``: one aiobotocore client process, end to end (client-bound);
- ``sdk_multi_pages_per_s``: CLIENTS aiobotocore client processes at once, in total;
- ``sdk_inprocess_pages_per_s``: aiobotocore and the emulator in one event loop (the setup
  of the contract tests).

Run: ``python -m bench.emulator_bench [--repeats N] [--duration S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.emulator import Emulator
from autoscaler.twin.model import LocationConfigInput

SESSIONS = 1_200
PAGE_SIZE = 100
CONCURRENCY = 8  # requests in flight per client process
CLIENTS = 2  # client processes for the multi-process figures
DURATION_S = 3.0
TARGET_PAGES_PER_S = 500.0
REGION = "us-west-2"
STARTUP_TIMEOUT_S = 60.0


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


@dataclass(frozen=True, slots=True)
class _Run:
    pages: int
    items: int
    seconds: float
    cpu_s: float = 0.0  # CPU time of the client process(es) meanwhile


async def _drive(fetch: Fetch, duration_s: float, go: Awaitable[None] | None = None) -> _Run:
    """CONCURRENCY workers calling ``fetch`` for ``duration_s`` (after ``go``, if given)."""
    pages = 0
    items = 0
    await fetch(None)  # warm up: connection, first parse
    if go is not None:
        await go
    started = time.perf_counter()
    cpu_started = time.process_time()
    deadline = started + duration_s

    async def worker() -> None:
        nonlocal pages, items
        token: str | None = None
        while time.perf_counter() < deadline:
            count, token = await fetch(token)
            pages += 1
            items += count

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return _Run(pages, items, time.perf_counter() - started, time.process_time() - cpu_started)


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


async def _sdk_run(
    url: str, group_id: str, duration_s: float, go: Awaitable[None] | None = None
) -> _Run:
    async with _sdk_client(url) as client:

        async def fetch(token: str | None) -> tuple[int, str | None]:
            kwargs: dict[str, Any] = {"Identifier": group_id, "MaxResults": PAGE_SIZE}
            if token:
                kwargs["NextToken"] = token
            page = await client.list_stream_sessions(**kwargs)
            return len(page["Items"]), page.get("NextToken")

        return await _drive(fetch, duration_s, go)


async def _raw_run(
    url: str, group_id: str, duration_s: float, go: Awaitable[None] | None = None
) -> _Run:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(base_url=url, connector=connector) as http:

        async def fetch(token: str | None) -> tuple[int, str | None]:
            params = {"MaxResults": str(PAGE_SIZE)}
            if token:
                params["NextToken"] = token
            async with http.get(f"/streamgroups/{group_id}/streamsessions", params=params) as r:
                body = await r.read()
                if r.status != 200:
                    raise RuntimeError(f"HTTP {r.status}: {body[:200]!r}")
            # no full JSON decode: count the summaries, pick the token off the end
            marker = body.rfind(b'"NextToken":"')
            if marker < 0:
                return body.count(b'{"Arn":'), None
            end = body.index(b'"', marker + 13)
            return body.count(b'{"Arn":'), body[marker + 13 : end].decode()

        return await _drive(fetch, duration_s, go)


async def _inprocess(duration_s: float) -> float:
    clock = ManualClock()
    async with Emulator(clock=clock) as emulator:
        assert emulator.url is not None
        group_id = await _populate(emulator, clock)
        run = await _sdk_run(emulator.url, group_id, duration_s)
        calls = emulator.calls["ListStreamSessions"]
        assert calls.rejected == 0
        assert calls.errors == 0
    _check_full_pages(run)
    return run.pages / run.seconds


def _check_full_pages(run: _Run) -> None:
    """Every page held PAGE_SIZE summaries (1,200 is a multiple of 100): no empty pages."""
    if run.items != run.pages * PAGE_SIZE:
        raise AssertionError(f"{run.items} summaries in {run.pages} pages of {PAGE_SIZE}")


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


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _clients(kind: str, count: int, url: str, group_id: str, duration_s: float) -> _Run:
    """``count`` client processes started together; pages summed over one window."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.emulator_bench",
            "--client",
            kind,
            "--url",
            url,
            "--group",
            group_id,
            "--duration",
            str(duration_s),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(count)
    ]
    try:
        for proc in procs:  # each is connected and warmed up
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), STARTUP_TIMEOUT_S)
            if line.strip() != b"ready":
                raise RuntimeError(f"a {kind} client did not start: {line!r}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
        runs = []
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), duration_s + STARTUP_TIMEOUT_S)
            runs.append(_Run(**json.loads(line)))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
    return _Run(
        pages=sum(r.pages for r in runs),
        items=sum(r.items for r in runs),
        seconds=max(r.seconds for r in runs),
        cpu_s=sum(r.cpu_s for r in runs),
    )


async def _separate_process(duration_s: float) -> dict[str, float]:
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
        line = await asyncio.wait_for(process.stdout.readline(), timeout=STARTUP_TIMEOUT_S)
        url = line.decode().split()[-1]
        group_id = await _populate_over_http(url)
        cpu_before = _cpu_seconds(process.pid)
        served = await _clients("raw", CLIENTS, url, group_id, duration_s)
        server_cpu = _cpu_seconds(process.pid) - cpu_before
        sdk = await _clients("sdk", 1, url, group_id, duration_s)
        sdk_multi = await _clients("sdk", CLIENTS, url, group_id, duration_s)
    finally:
        process.terminate()
        await process.wait()
    for run in (served, sdk, sdk_multi):
        _check_full_pages(run)
    return {
        "server_pages_per_s": served.pages / served.seconds,
        "server_pages_per_cpu_s": served.pages / server_cpu,
        "server_cpu_ms_per_page": 1000.0 * server_cpu / served.pages,
        "light_client_cpu_ms_per_page": 1000.0 * served.cpu_s / served.pages,
        "sdk_pages_per_s": sdk.pages / sdk.seconds,
        "sdk_client_cpu_ms_per_page": 1000.0 * sdk.cpu_s / sdk.pages,
        "sdk_multi_pages_per_s": sdk_multi.pages / sdk_multi.seconds,
    }


async def _run(duration_s: float) -> dict[str, float]:
    separate = await _separate_process(duration_s)
    inprocess = await _inprocess(duration_s)
    return {**separate, "sdk_inprocess_pages_per_s": inprocess}


def run(duration_s: float = DURATION_S) -> dict[str, float]:
    return asyncio.run(_run(duration_s))


async def _client_process(kind: str, url: str, group_id: str, duration_s: float) -> None:
    """One client process: warm up, print ``ready``, wait for ``go`` on stdin, run, print
    the run as JSON."""
    loop = asyncio.get_running_loop()

    async def go() -> None:
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)

    runner = _raw_run if kind == "raw" else _sdk_run
    result = await runner(url, group_id, duration_s, go())
    print(json.dumps(_as_dict(result)), flush=True)


def _as_dict(result: _Run) -> dict[str, float]:
    return {
        "pages": result.pages,
        "items": result.items,
        "seconds": result.seconds,
        "cpu_s": result.cpu_s,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="ListStreamSessions pages per second")
    parser.add_argument("--repeats", type=int, default=1, help="runs; medians are printed")
    parser.add_argument("--duration", type=float, default=DURATION_S, help="seconds per figure")
    parser.add_argument("--client", choices=("raw", "sdk"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--group", help=argparse.SUPPRESS)
    args, _ = parser.parse_known_args(argv)
    if args.client is not None:
        asyncio.run(_client_process(args.client, args.url, args.group, args.duration))
        return
    load = os.getloadavg()[0]  # other work on the machine takes cores from the wall figures
    results = [run(args.duration) for _ in range(args.repeats)]
    for key in results[0]:
        print(f"{key:>28}: {statistics.median(r[key] for r in results):,.2f}")
    served = statistics.median(r["server_pages_per_s"] for r in results)
    verdict = "met" if served >= TARGET_PAGES_PER_S else "NOT met"
    print(
        f"target ≥ {TARGET_PAGES_PER_S:.0f} pages/s served (server_pages_per_s): {verdict}\n"
        f"(median of {args.repeats} run(s) of {args.duration:.0f} s each; {CLIENTS} client "
        f"processes × {CONCURRENCY} requests in flight for the multi-process figures; "
        f"{SESSIONS:,} sessions, pages of {PAGE_SIZE}; load average before: {load:.2f} "
        f"on {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
