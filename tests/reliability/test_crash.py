"""kill -9 in the middle of a write, then a restart: ``autoscaler run`` as a real process against
``autoscaler emulator`` as another. The SQLite store passes ``PRAGMA integrity_check``, the
intent left in flight is closed as abandoned (not replayed), the group is re-read and the
update sent once more only because it never landed, and the audit log parses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiobotocore.session import AioSession

from autoscaler.report import read_audit_log
from autoscaler.settings import Settings
from autoscaler.store import HistoryStore, Outcome

pytestmark = pytest.mark.slow
REGION = "us-west-2"


@contextmanager
def _process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", *args], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def _wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def _client(url: str) -> AsyncIterator[Any]:
    async with AioSession().create_client(
        "gameliftstreams", region_name=REGION, endpoint_url=url
    ) as client:
        yield client


class Admin:
    def __init__(self, url: str) -> None:
        self.url = url

    async def put(self, what: str, body: dict[str, Any]) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.put(f"{self.url}/_emulator/{what}", json=body) as r,
        ):
            assert r.status == 200, await r.text()
            return await r.json()

    async def calls(self) -> dict[str, Any]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{self.url}/_emulator/calls") as r,
        ):
            data: dict[str, Any] = (await r.json())["operations"]
            return data


async def _setup_group(url: str, admin: Admin) -> str:
    async with _client(url) as c:
        app = await c.create_application(
            Description="game",
            RuntimeEnvironment={"Type": "PROTON", "Version": "20241007"},
            ExecutablePath="game.exe",
            ApplicationSourceUri="s3://bucket/game",
        )
        group = await c.create_stream_group(
            Description="crash",
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
        await admin.put("clock", {"advance": 900})
        for _ in range(10):
            await c.start_stream_session(
                Identifier=group["Id"],
                ApplicationIdentifier=app["Id"],
                Protocol="WebRTC",
                SignalRequest="offer",
                Locations=[REGION],
            )
        await admin.put("clock", {"advance": 30})
        gid: str = group["Id"]
        return gid


async def _always_on(url: str, gid: str) -> int:
    async with _client(url) as c:
        g = await c.get_stream_group(Identifier=gid)
        return int(g["LocationStates"][0]["AlwaysOnCapacity"])


def _settings_file(tmp: Path, url: str, gid: str) -> Path:
    policy = tmp / "policy.yaml"
    policy.write_text(
        "apiVersion: autoscaler.gameliftstreams/v1\nkind: CapacityPolicy\n"
        "metadata: {name: crash}\n"
        f"spec:\n  streamGroups: {{ids: [{gid}]}}\n"
        "  defaults: {minCapacity: 0, maxCapacity: 40}\n"
        "  policy: {plugin: target-tracking, params: {targetUtilization: 0.5}}\n"
    )
    doc: dict[str, Any] = {
        "policy_paths": [str(policy)],
        "interval_s": 2.0,
        "tick_timeout_s": 2.0,
        "state_dir": str(tmp / "state"),
        "aws_region": REGION,
        "aws_endpoint_url": url,
        "aws_max_attempts": 1,
        "http_port": 0,
        "log_format": "json",
        "log_level": "INFO",
    }
    if "cloudwatch_backfill" in Settings.model_fields:
        doc["cloudwatch_backfill"] = False
    path = tmp / "settings.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update({"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"})
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AUTOSCALER_CONFIG", "AWS_SESSION_TOKEN"):
        env.pop(var, None)
    return env


async def test_kill_9_mid_write_then_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in _env().items():
        monkeypatch.setenv(key, value)
    emu_log = tmp_path / "emulator.log"
    with _process(["emulator", "--clock", "manual", "--port", "0"], emu_log):
        line = await asyncio.to_thread(
            _wait_for,
            lambda: next(
                (x for x in emu_log.read_text().splitlines() if "listening on" in x), None
            ),
            20,
            "the emulator",
        )
        url = line.rsplit(" ", 1)[-1]
        admin = Admin(url)
        gid = await _setup_group(url, admin)
        settings = _settings_file(tmp_path, url, gid)
        db = tmp_path / "state" / "history.sqlite3"
        audit = tmp_path / "state" / "audit.jsonl"
        await admin.put("faults", {"latency_s": {"UpdateStreamGroup": 1.5}})

        # 1. the daemon's first tick decides to scale up; kill it while the write is in flight
        with _process(["run", "--config", str(settings)], tmp_path / "run1.log") as run1:
            deadline = time.monotonic() + 20
            while "UpdateStreamGroup" not in await admin.calls():
                assert time.monotonic() < deadline, (tmp_path / "run1.log").read_text()
                assert run1.poll() is None, (tmp_path / "run1.log").read_text()
                await asyncio.sleep(0.02)
            run1.send_signal(signal.SIGKILL)
            run1.wait(10)
        await asyncio.sleep(1.7)  # the emulator finishes with the request it was sent

        with sqlite3.connect(db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        with HistoryStore(db, retention_s=86400.0) as store:
            pending = store.pending_intents()
        assert len(pending) == 1  # the kill landed between intent and outcome
        killed = pending[0].decision_id
        landed = await _always_on(url, gid) > 2
        sent_before = (await admin.calls())["UpdateStreamGroup"]["total"]

        # 2. restart without the latency: the intent is closed, the truth re-read
        await admin.put("faults", {"latency_s": {"UpdateStreamGroup": 0.0}})
        with _process(["run", "--config", str(settings)], tmp_path / "run2.log") as run2:
            await asyncio.to_thread(
                _wait_for,
                lambda: (tmp_path / "run2.log").read_text().count('"controller started"') > 0,
                20,
                "the restart",
            )
            await asyncio.sleep(3.0)  # the first tick and a scheduled one
            assert run2.poll() is None, (tmp_path / "run2.log").read_text()
            run2.send_signal(signal.SIGTERM)
            assert run2.wait(15) == 0
        log2 = (tmp_path / "run2.log").read_text()
        assert "left in flight by a previous run" in log2
        assert await _always_on(url, gid) > 2
        sent_after = (await admin.calls())["UpdateStreamGroup"]["total"]
        # sent again only if the killed write did not land, and then exactly once
        assert sent_after - sent_before == (0 if landed else 1)

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with HistoryStore(db, retention_s=86400.0) as store:
        assert store.pending_intents() == []
        outcome = store.outcome(killed)
    assert outcome is not None
    assert outcome[0] is Outcome.ABANDONED
    assert "restarted" in outcome[1]
    lines = audit.read_text().splitlines()
    for line in lines[:-1]:
        json.loads(line)  # every line but the last is whole
    records = read_audit_log(audit)
    assert len(records) >= len(lines) - 1
    assert any(r["group_id"] == gid for r in records)
