"""Acceptance: two controller processes, one emulator process, one moto DynamoDB (and its
CloudWatch for the start-up backfill).

Exactly one replica mutates; the standby samples but its writes are refused ("not leader");
after the leader is SIGKILLed the standby takes over within the lease time and applies the
next change; every applied change is in exactly one audit log, stamped with its replica's
lease token, and the emulator saw exactly those writes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import AioSession

from autoscaler.report import read_audit_log
from autoscaler.store import HistoryStore
from tests.ha.conftest import REGION, TABLE, Moto, buffer_policy, create_lease_table, free_port

LEASE_S = 3.0
RENEW_S = 1.0


def http_json(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:  # /readyz answers 503 with a JSON body
        return json.loads(error.read())


@pytest.fixture
def emulator() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "emulator", "--port", "0", "--clock", "manual"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        yield line.rsplit(" ", 1)[-1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def updates(url: str) -> int:
    """UpdateStreamGroup calls the emulator carried out (accepted and not failed)."""
    op = http_json(f"{url}/_emulator/calls")["operations"].get("UpdateStreamGroup", {})
    return int(op.get("accepted", 0)) - int(op.get("errors", 0))


def advance(url: str, seconds: float) -> None:
    http_json(f"{url}/_emulator/clock", "PUT", {"advance": seconds})


async def gls_call(url: str, method: str, **params: Any) -> Any:
    async with AioSession().create_client(
        "gameliftstreams", region_name=REGION, endpoint_url=url
    ) as client:
        return await getattr(client, method)(**params)


async def make_group(url: str) -> str:
    app = await gls_call(
        url,
        "create_application",
        Description="game",
        RuntimeEnvironment={"Type": "PROTON", "Version": "20241007"},
        ExecutablePath="game.exe",
        ApplicationSourceUri="s3://bucket/game",
    )
    advance(url, 600)
    group = await gls_call(
        url,
        "create_stream_group",
        Description="ha",
        StreamClass="gen4n_high",
        DefaultApplicationIdentifier=app["Id"],
        LocationConfigurations=[
            {
                "LocationName": REGION,
                "AlwaysOnCapacity": 2,
                "TargetIdleCapacity": 0,
                "MaximumCapacity": 40,
            }
        ],
    )
    advance(url, 600)
    return str(group["Id"])


async def put_history(url: str, group_id: str, minutes: int) -> float:
    end = float(int(time.time()) // 60 * 60)
    dims = [{"Name": "StreamGroupId", "Value": group_id}, {"Name": "Location", "Value": REGION}]
    data = [
        {
            "MetricName": name,
            "Dimensions": dims,
            "Timestamp": datetime.fromtimestamp(end - (minutes - m) * 60, tz=UTC),
            "Value": value,
        }
        for m in range(minutes)
        for name, value in (("ActiveCapacity", 6.0), ("IdleCapacity", 2.0))
    ]
    async with AioSession().create_client(
        "cloudwatch", region_name=REGION, endpoint_url=url
    ) as client:
        await client.put_metric_data(Namespace="AWS/GameLiftStreams", MetricData=data)
    return end


class Replica:
    def __init__(self, name: str, tmp: Path, *, emulator: str, moto: str, policy: Path) -> None:
        self.name = name
        self.port = free_port()
        self.state = tmp / name
        self.state.mkdir()
        self.config = self.state / "settings.yaml"
        self.config.write_text(
            "\n".join(
                [
                    f"policy_paths: [{policy}]",
                    f"aws_region: {REGION}",
                    f"aws_endpoint_url: {emulator}",
                    "aws_max_attempts: 1",
                    f"state_dir: {self.state}",
                    f"http_port: {self.port}",
                    "interval_s: 1",
                    "log_format: json",
                    "lease_backend: dynamodb",
                    f"lease_table: {TABLE}",
                    f"lease_endpoint_url: {moto}",
                    f"lease_holder: {name}",
                    f"lease_duration_s: {LEASE_S}",
                    f"lease_renew_every_s: {RENEW_S}",
                    "lease_clock_skew_s: 0.5",
                    f"cloudwatch_endpoint_url: {moto}",
                    "backfill_window_s: 7200",
                    "config_poll_s: 0",
                    "",
                ]
            )
        )
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AUTOSCALER_", "AWS_ENDPOINT_URL"))
        }
        self.log = (self.state / "daemon.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "run", "--config", str(self.config)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def readyz(self) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = http_json(f"http://127.0.0.1:{self.port}/readyz")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None
        return result

    def audit(self) -> list[dict[str, Any]]:
        return read_audit_log(self.state / "audit.jsonl")

    def applied(self) -> list[dict[str, Any]]:
        return [r for r in self.audit() if (r.get("actuation") or {}).get("applied")]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=20)
        self.log.close()
        return code


async def wait_for(what: str, check: Any, within_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if check():
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(90)
async def test_one_leader_mutates_and_the_standby_takes_over(
    own_moto: Moto, emulator: str, tmp_path: Path
) -> None:
    await create_lease_table(own_moto.url)
    group_id = await make_group(emulator)
    history_end = await put_history(own_moto.url, group_id, minutes=30)
    policy = tmp_path / "policy.yaml"
    policy.write_text(buffer_policy(group_id, buffer=4))
    replicas = [
        Replica(n, tmp_path, emulator=emulator, moto=own_moto.url, policy=policy)
        for n in ("r1", "r2")
    ]
    try:
        # one leader applies TargetIdle 0 -> 4; the standby samples and is refused
        await wait_for("the first change", lambda: updates(emulator) >= 1, 30)
        await wait_for(
            "both replicas serving",
            lambda: all(r.readyz() is not None and r.audit() for r in replicas),
            15,
        )
        await asyncio.sleep(2 * RENEW_S)  # a few more ticks of both
        states = {r.name: r.readyz() for r in replicas}
        leaders = [r for r in replicas if (states[r.name] or {}).get("leader")]
        assert len(leaders) == 1, states
        leader = leaders[0]
        standby = next(r for r in replicas if r is not leader)
        assert states[standby.name] == {
            "ready": False,
            "reason": "standby: not the leader",
            "leader": False,
        }
        assert updates(emulator) == 1
        assert len(leader.applied()) == 1
        assert standby.applied() == []
        standby_records = standby.audit()
        assert standby_records  # it keeps sampling

        # the leader dies; someone resets the capacity by hand meanwhile
        advance(emulator, 600)
        leader.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        await gls_call(
            emulator,
            "update_stream_group",
            Identifier=group_id,
            LocationConfigurations=[
                {
                    "LocationName": REGION,
                    "AlwaysOnCapacity": 2,
                    "TargetIdleCapacity": 0,
                    "MaximumCapacity": 40,
                }
            ],
        )
        advance(emulator, 600)
        assert updates(emulator) == 2  # the leader's one and ours

        await wait_for(
            "the standby to take over",
            lambda: (standby.readyz() or {}).get("leader") is True,
            LEASE_S + 2 * RENEW_S + 3,
        )
        took = time.monotonic() - killed_at
        assert took < LEASE_S + 2 * RENEW_S + 3, took
        await wait_for("the new leader's change", lambda: updates(emulator) >= 3, 10)
        await asyncio.sleep(2 * RENEW_S)
        assert updates(emulator) == 3  # applied once, not again on later ticks
        assert standby.stop() == 0
    finally:
        for r in replicas:
            if r.process.poll() is None:
                r.stop(signal.SIGKILL)

    # every applied change is in exactly one audit log, stamped with its replica's term
    old, new = leader.applied(), standby.applied()
    assert len(old) == 1
    assert len(new) == 1
    assert old[0]["lease"]["holder"] == leader.name
    assert new[0]["lease"]["holder"] == standby.name
    assert old[0]["lease"]["fenced_tokens"] == [1]
    assert new[0]["lease"]["fenced_tokens"] == [2]
    assert old[0]["at"] < new[0]["at"]
    assert len(old) + len(new) == updates(emulator) - 1  # minus the hand-made reset
    for record in (*old, *new):
        assert record["actuation"]["calls"] == ["UpdateStreamGroup"]
        assert record["lease"]["leader"] is True
    # nothing applied by the standby while it was one: after the reset it wanted the change
    # at once, and was refused until the dead leader's lease ran out
    before = [r for r in standby.audit() if r["at"] < new[0]["at"]]
    assert not any((r.get("actuation") or {}).get("applied") for r in before)
    refused = [r for r in before if "not leader" in ((r.get("actuation") or {}).get("error") or "")]
    assert refused
    assert all(r["lease"]["leader"] is False for r in refused)

    # both replicas started from CloudWatch history, and the journal agrees with the logs
    for r in replicas:
        store = HistoryStore(r.state / "history.sqlite3", retention_s=86400.0)
        try:
            frame = store.history_frame(group_id, REGION, since=history_end - 7200)
            backfilled = frame[frame["backfilled"]]
            assert len(backfilled) == 30
            assert set(backfilled["in_use"]) == {4.0}
            last = store.last_applied(group_id)
            assert last is not None
            assert json.loads(last[1])["locations"][REGION]["target_idle"] == 4
            assert store.pending_intents() == []
        finally:
            store.close()
