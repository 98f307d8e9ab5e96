"""moto in server mode (a real HTTP endpoint in a subprocess) for DynamoDB and CloudWatch."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import AioSession

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.emulator import Emulator
from tests.emulator_seed import create_game, create_group, fake_aws_env

REGION = "us-west-2"
TABLE = "autoscaler-lease"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Moto:
    """A ``python -m moto.server`` process; ``stop()`` is the network partition."""

    port: int
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def reset(self) -> None:
        req = urllib.request.Request(f"{self.url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=5):
            pass


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_env(
        monkeypatch,
        key_id="testing",
        secret="testing",
        unset=[
            name
            for name in os.environ
            if name.startswith(("AWS_ENDPOINT_URL", "AUTOSCALER_")) or name == "AWS_PROFILE"
        ],
    )
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


@pytest.fixture(scope="session")
def moto_session() -> Iterator[Moto]:
    moto = Moto(free_port())
    moto.start()
    yield moto
    moto.stop()


@pytest.fixture
def moto(moto_session: Moto) -> Moto:
    """The shared server, emptied for this test."""
    moto_session.reset()
    return moto_session


@pytest.fixture
def own_moto() -> Iterator[Moto]:
    """A server of this test's own (to be stopped mid-test)."""
    moto = Moto(free_port())
    moto.start()
    yield moto
    moto.stop()


async def create_lease_table(url: str, table: str = TABLE) -> None:
    session = AioSession()
    async with session.create_client("dynamodb", region_name=REGION, endpoint_url=url) as client:
        await client.create_table(
            TableName=table,
            AttributeDefinitions=[{"AttributeName": "name", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "name", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )


@pytest.fixture
async def lease_table(moto: Moto) -> str:
    await create_lease_table(moto.url)
    return moto.url


ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Group:
    """An in-process emulator on a manual clock with one ACTIVE stream group."""

    emulator: Any
    clock: ManualClock
    group_id: str

    @property
    def url(self) -> str:
        assert self.emulator.url is not None
        return str(self.emulator.url)


@pytest.fixture
async def group() -> AsyncIterator[Group]:
    clock = ManualClock(start=time.time())
    async with Emulator(clock=clock, seed=1) as emulator:
        model = emulator.model
        group_id = create_group(model, REGION, create_game(model, REGION), "ha")
        clock.advance(600)
        model.advance()
        yield Group(emulator, clock, group_id)


BUFFER_POLICY = """\
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: NAME}
spec:
  streamGroups: {ids: [GROUP_ID]}
  defaults: {minCapacity: 0, maxCapacity: 40}
  policy:
    plugin: buffer
    params: {bufferSize: BUFFER, minReplicas: 2, maxReplicas: 40}
"""


def buffer_policy(group_id: str, *, name: str = "ha", buffer: int = 4) -> str:
    return (
        BUFFER_POLICY.replace("GROUP_ID", group_id)
        .replace("NAME", name)
        .replace("BUFFER", str(buffer))
    )
