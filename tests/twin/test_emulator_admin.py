"""The emulator's own controls: fault injection, rate limits, the admin endpoints, the clock,
and the process entry point."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError
from yarl import URL

from autoscaler.domain.clock import ManualClock, ScaledClock
from autoscaler.domain.policy import DEFAULT_PRICES_PER_SLOT_HOUR
from autoscaler.twin.emulator import ADMIN_PREFIX, Emulator
from autoscaler.twin.protocol import ServiceSpec


async def get(http: aiohttp.ClientSession, path: str) -> Any:
    async with http.get(path.lstrip("/")) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def put(http: aiohttp.ClientSession, path: str, body: Any, status: int = 200) -> Any:
    async with http.put(path.lstrip("/"), json=body) as response:
        assert response.status == status, await response.text()
        return await response.json()


async def code_of(call: Any, **kwargs: Any) -> str:
    try:
        await call(**kwargs)
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "OK"


async def test_rate_limits_are_token_buckets_on_the_emulator_clock(
    client: Any, admin: aiohttp.ClientSession, clock: ManualClock
) -> None:
    settings = await put(admin, "/_emulator/faults", {"rate_limits": {"ListStreamGroups": 2}})
    assert settings["effective_rate_limits"] == {"ListStreamGroups": 2}
    codes = [await code_of(client.list_stream_groups) for _ in range(3)]
    assert codes == ["OK", "OK", "ThrottlingException"]
    assert await code_of(client.list_applications) == "OK"  # other operations are free
    clock.advance(0.5)  # one token back
    assert [await code_of(client.list_stream_groups) for _ in range(2)] == [
        "OK",
        "ThrottlingException",
    ]
    calls = await get(admin, "/_emulator/calls")
    assert calls["operations"]["ListStreamGroups"] == {
        "total": 5,
        "accepted": 3,
        "rejected": 2,
        "throttled": 2,
        "injected_errors": 0,
        "lost_replies": 0,
        "errors": 0,
    }
    reset = await (await admin.post("_emulator/calls/reset")).json()
    assert reset == {"operations": {}, "total": reset["total"]}
    assert reset["total"]["total"] == 0


async def test_aws_rate_limits(client: Any, emulator: Emulator, clock: ManualClock) -> None:
    emulator.set_faults({"aws_rate_limits": True})
    assert emulator.faults.settings.rate_limit("CreateStreamGroup") == 1.0
    assert emulator.faults.settings.rate_limit("ListStreamSessions") == 20.0
    create = {"Description": "g", "StreamClass": "gen4n_high"}
    assert await code_of(client.create_stream_group, **create) == "OK"
    assert await code_of(client.create_stream_group, **create) == "ThrottlingException"
    clock.advance(1)
    assert await code_of(client.create_stream_group, **create) == "OK"
    emulator.set_faults({"aws_rate_limits": False})
    assert await code_of(client.create_stream_group, **create) == "OK"


async def test_fault_randomness_is_seeded(spec: ServiceSpec) -> None:
    def draws(seed: int) -> list[str]:
        emulator = Emulator(clock=ManualClock(), seed=seed, spec=spec)
        emulator.set_faults({"throttle_probability": 0.3, "error_probability": 0.3})
        return [emulator.faults.check("GetStreamGroup") for _ in range(200)]

    first = draws(1)
    assert first == draws(1)
    assert first != draws(2)
    assert 30 < first.count("throttled") < 90
    assert 20 < first.count("failed") < 80


async def test_injected_errors_and_latency_per_operation(
    client: Any, admin: aiohttp.ClientSession
) -> None:
    await put(
        admin,
        "/_emulator/faults",
        {"error_probability": {"ListApplications": 1}, "latency_s": {"ListStreamGroups": 0.2}},
    )
    assert await code_of(client.list_applications) == "InternalServerException"
    started = time.monotonic()
    assert await code_of(client.list_stream_groups) == "OK"
    assert time.monotonic() - started >= 0.2
    calls = (await get(admin, "/_emulator/calls"))["operations"]
    assert calls["ListApplications"]["injected_errors"] == 1
    assert calls["ListApplications"]["rejected"] == 1


async def test_bad_fault_settings_are_rejected_by_field(admin: aiohttp.ClientSession) -> None:
    for body, words in (
        ({"throttle_probability": {"NoSuchCall": 0.5}}, "unknown operation 'NoSuchCall'"),
        ({"error_probability": 2}, "error_probability[*]: 2.0 is not in [0, 1.0]"),
        (
            {"lost_reply_probability": {"AddStreamGroupLocations": -1}},
            "lost_reply_probability[AddStreamGroupLocations]: -1.0 is not in [0, 1.0]",
        ),
        ({"rate_limits": {"ListStreamGroups": 0}}, "rate_limits[ListStreamGroups]"),
        ({"latency": 1}, "latency"),
    ):
        answer = await put(admin, "/_emulator/faults", body, status=400)
        assert words in answer["message"]
    async with admin.put("_emulator/faults", data=b"[1]") as response:
        assert response.status == 400
    assert (await get(admin, "/_emulator/faults"))["throttle_probability"] == {}


async def test_forced_statuses(
    client: Any, admin: aiohttp.ClientSession, clock: ManualClock
) -> None:
    group = await client.create_stream_group(Description="g", StreamClass="gen4n_high")
    clock.advance(600)
    await put(
        admin,
        "/_emulator/faults",
        {"force": [{"group": group["Id"], "location": "us-west-2", "status": "ERROR"}]},
    )
    got = await client.get_stream_group(Identifier=group["Id"])
    assert got["LocationStates"][0]["Status"] == "ERROR"
    assert got["Status"] == "ACTIVE_WITH_ERRORS"
    await put(
        admin,
        "/_emulator/faults",
        {"force": [{"group": group["Id"], "status": "ERROR", "reason": "internalError"}]},
    )
    got = await client.get_stream_group(Identifier=group["Id"])
    assert (got["Status"], got["StatusReason"]) == ("ERROR", "internalError")
    answer = await put(
        admin, "/_emulator/faults", {"force": [{"group": "sg-none", "status": "ERROR"}]}, 400
    )
    assert "sg-none" in answer["message"]


async def test_manual_clock_endpoint(admin: aiohttp.ClientSession, clock: ManualClock) -> None:
    start = clock.now()
    state = await get(admin, "/_emulator/clock")
    assert state == {"kind": "manual", "now": start, "iso": "2026-01-01T00:00:00Z"}
    assert (await put(admin, "/_emulator/clock", {"advance": 90}))["now"] == start + 90
    assert (await put(admin, "/_emulator/clock", {"now": start + 10}))["now"] == start + 10
    assert clock.now() == start + 10
    for body in ({"scale": 2}, {"advance": -1}, {"tomorrow": True}):
        assert "message" in await put(admin, "/_emulator/clock", body, status=400)


async def test_scaled_clock_endpoint(spec: ServiceSpec) -> None:
    clock = ScaledClock(scale=60, start=1_767_225_600.0)
    async with (
        Emulator(clock=clock, spec=spec) as emulator,
        aiohttp.ClientSession(base_url=f"{emulator.url}/") as http,
    ):
        state = await put(http, "/_emulator/clock", {"scale": 120})
        assert (state["kind"], state["scale"]) == ("scaled", 120)
        assert clock.scale == 120
        assert "message" in await put(http, "/_emulator/clock", {"advance": 5}, status=400)


async def test_usage_meters_slot_hours_cost_and_outcomes(
    client: Any, admin: aiohttp.ClientSession, clock: ManualClock, emulator: Emulator
) -> None:
    app = await client.create_application(
        Description="game",
        RuntimeEnvironment={"Type": "PROTON", "Version": "1"},
        ExecutablePath="game",
        ApplicationSourceUri="s3://bucket/game",
    )
    group = await client.create_stream_group(
        Description="g",
        StreamClass="gen4n_high",
        DefaultApplicationIdentifier=app["Id"],
        LocationConfigurations=[
            {
                "LocationName": "us-west-2",
                "AlwaysOnCapacity": 2,
                "TargetIdleCapacity": 0,
                "MaximumCapacity": 2,
            }
        ],
    )
    clock.advance(600)
    for _ in range(3):  # two start at once, the third waits for capacity that never comes
        await client.start_stream_session(
            Identifier=group["Id"],
            ApplicationIdentifier=app["Id"],
            Protocol="WebRTC",
            SignalRequest="o",
        )
    clock.advance(3600)
    usage = await get(admin, "/_emulator/usage")
    entry = usage["groups"][group["Id"]]
    price = DEFAULT_PRICES_PER_SLOT_HOUR["gen4n_high"]
    assert (entry["stream_class"], entry["price_per_slot_hour"]) == ("gen4n_high", price)
    location = entry["locations"]["us-west-2"]
    assert location["sessions"] == {"instant": 2, "cold": 0, "failed": 1}
    assert 1.9 < location["allocated_slot_hours"] <= 2.4  # two slots for about an hour
    assert location["in_use_slot_hours"] == pytest.approx(2.0, abs=0.01)
    # the always-on host was empty (kept) from ready until the sessions came; none was surplus
    assert 0 < location["kept_empty_slot_hours"] <= location["allocated_slot_hours"] - 2.0
    assert location["held_empty_slot_hours"] == 0.0
    assert location["cost_usd"] == pytest.approx(location["allocated_slot_hours"] * price)
    assert usage["total"]["cost_usd"] == pytest.approx(location["cost_usd"])
    assert emulator.usage_json()["total"] == usage["total"]


async def test_prices_are_configurable(spec: ServiceSpec) -> None:
    emulator = Emulator(clock=ManualClock(), spec=spec, prices={"gen4n_high": 1.5})
    assert emulator.prices["gen4n_high"] == 1.5
    assert emulator.prices["gen4n_ultra"] == DEFAULT_PRICES_PER_SLOT_HOUR["gen4n_ultra"]


async def test_unknown_routes_and_admin_prefix(
    admin: aiohttp.ClientSession, spec: ServiceSpec
) -> None:
    assert all(not op.request_uri.startswith(ADMIN_PREFIX) for op in spec.operations.values())
    async with admin.get("nowhere/at/all") as response:
        assert response.status == 404
        assert response.headers["x-amzn-ErrorType"] == "UnknownOperationException"
        assert "GET /nowhere/at/all" in (await response.json())["message"]


@pytest.mark.slow
async def test_serve_forever_prints_its_url_and_stops_cleanly_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autoscaler",
        "emulator",
        "--port",
        "0",
        "--clock",
        "manual",
        "--aws-rate-limits",
        "--price",
        "gen4n_high=0.7",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    try:
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=20)).decode()
        assert line.startswith("emulator listening on http://127.0.0.1:")
        url = line.split()[-1]
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{url}/_emulator/faults") as response:
                assert (await response.json())["aws_rate_limits"] is True
            async with http.get(f"{url}/_emulator/usage") as response:
                assert (await response.json())["prices_per_slot_hour"]["gen4n_high"] == 0.7
    finally:
        process.terminate()
        _, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, err.decode()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--rate-limit", "NoSuchCall=3"], ["unknown operation 'NoSuchCall'"]),
        (["--error-probability", "nan"], ["error_probability[*]: nan is not in [0, 1.0]"]),
        (["--lost-reply-probability", "2"], ["lost_reply_probability[*]: 2.0 is not in [0, 1.0]"]),
        (
            ["--port", "99999", "--time-scale", "inf", "--price", "gen4n_high=-1"],
            [
                "--port must be 0 (any free port) to 65535, got 99999",
                "--time-scale must be a number > 0, got inf",
                "--price gen4n_high: must be a number ≥ 0 (USD per slot-hour), got -1",
            ],
        ),
        (["--price", "gen9=1"], ["--price gen9: unknown stream class (known: gen4n_high,"]),
        (["--port", "TAKEN"], ["cannot listen on 127.0.0.1:", "address already in use"]),
    ],
)
async def test_bad_flags_exit_2_with_a_message(
    flags: list[str], needles: list[str], emulator: Emulator
) -> None:
    taken = str(URL(emulator.url).port)  # the fixture's emulator listens there
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autoscaler",
        "emulator",
        *(taken if flag == "TAKEN" else flag for flag in flags),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 2
    for needle in needles:
        assert needle in err.decode()
    assert "Traceback" not in err.decode()
