"""Fixtures for the emulator's tests: a live emulator on port 0 with a manual clock, the real
aiobotocore client and the real AWS CLI pointed at it, and a checker of responses against
botocore's output shapes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.emulator import Emulator
from autoscaler.twin.protocol import ServiceSpec

AWS_CLI = Path(sys.executable).with_name("aws")


@pytest.fixture(scope="session")
def spec() -> ServiceSpec:
    return ServiceSpec.load()


@pytest.fixture(scope="session")
def aio_session() -> AioSession:
    return AioSession()  # shared so the service model JSON is loaded once


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def emulator(clock: ManualClock, spec: ServiceSpec) -> AsyncIterator[Emulator]:
    async with Emulator(clock=clock, seed=7, spec=spec) as running:
        yield running


def _client(session: AioSession, url: str, region: str = "us-west-2", **config: Any) -> Any:
    return session.create_client(
        "gameliftstreams",
        region_name=region,
        endpoint_url=url,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=AioConfig(retries={"total_max_attempts": 1}, **config),
    )


@pytest.fixture
async def client(emulator: Emulator, aio_session: AioSession) -> AsyncIterator[Any]:
    """The real aiobotocore client, without retries (one attempt) so errors reach the test."""
    assert emulator.url is not None
    async with _client(aio_session, emulator.url) as gls:
        yield gls


@pytest.fixture
def make_client(emulator: Emulator, aio_session: AioSession) -> Callable[..., Any]:
    """Another client: ``make_client(region=..., parameter_validation=False)``."""

    def make(region: str = "us-west-2", **config: Any) -> Any:
        assert emulator.url is not None
        return _client(aio_session, emulator.url, region, **config)

    return make


@pytest.fixture
async def admin(emulator: Emulator) -> AsyncIterator[aiohttp.ClientSession]:
    """Plain HTTP to the emulator (admin endpoints, raw requests)."""
    async with aiohttp.ClientSession(base_url=f"{emulator.url}/") as http:
        yield http


# --- the output-shape checker ---------------------------------------------------------------
def shape_problems(shape: Any, value: Any, path: str = "", *, cli: bool = False) -> list[str]:
    """Every way ``value`` (a parsed response) breaks ``shape``: required members, types,
    enums, lengths and ranges. ``cli``: timestamps as the AWS CLI prints them."""
    problems: list[str] = []
    kind = shape.type_name
    where = path or "<output>"
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: expected an object, got {type(value).__name__}"]
        for name in shape.required_members:
            if name not in value:
                problems.append(f"{where}: required member {name} missing")
        for name, item in value.items():
            if name == "ResponseMetadata" and not path:
                continue
            member = shape.members.get(name)
            if member is None:
                problems.append(f"{where}: unknown member {name}")
            else:
                problems += shape_problems(member, item, f"{path}.{name}".lstrip("."), cli=cli)
        return problems
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        for index, item in enumerate(value):
            problems += shape_problems(shape.member, item, f"{where}[{index}]", cli=cli)
        return problems + _range(shape, len(value), where, "length")
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: expected a map"]
        for key, item in value.items():
            problems += shape_problems(shape.value, item, f"{where}.{key}", cli=cli)
        return problems
    if kind == "string":
        if not isinstance(value, str):
            return [f"{where}: expected a string, got {value!r}"]
        enum = getattr(shape, "enum", None) or []
        if enum and value not in enum:
            problems.append(f"{where}: {value!r} is not one of {enum}")
        return problems + _range(shape, len(value), where, "length")
    if kind in ("integer", "long"):
        if not isinstance(value, int) or isinstance(value, bool):
            return [f"{where}: expected an integer, got {value!r}"]
        return _range(shape, value, where, "value")
    if kind == "boolean":
        return [] if isinstance(value, bool) else [f"{where}: expected a boolean"]
    if kind == "timestamp":
        if cli:  # AWS CLI v1 prints the wire value (epoch seconds), v2 an ISO string
            if isinstance(value, int | float) and not isinstance(value, bool):
                return []
            try:
                datetime.fromisoformat(value)
            except (TypeError, ValueError):
                return [f"{where}: expected a CLI timestamp, got {value!r}"]
            return []
        return [] if isinstance(value, datetime) else [f"{where}: expected a datetime"]
    return []


def _range(shape: Any, number: int, where: str, what: str) -> list[str]:
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and number < low:
        return [f"{where}: {what} {number} < min {low}"]
    if high is not None and number > high:
        return [f"{where}: {what} {number} > max {high}"]
    return []


@pytest.fixture
def check_output(spec: ServiceSpec) -> Callable[..., dict[str, Any]]:
    """``check_output("GetStreamGroup", response)``: fails the test on any shape problem."""

    def check(operation: str, response: dict[str, Any], *, cli: bool = False) -> dict[str, Any]:
        shape = spec.service.operation_model(operation).output_shape
        assert shape is not None, f"{operation} has no output shape"
        problems = shape_problems(shape, response, cli=cli)
        assert not problems, f"{operation}: " + "; ".join(problems)
        return response

    return check


# --- the AWS CLI -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout) if self.stdout.strip() else None


@pytest.fixture
def aws_cli(emulator: Emulator, tmp_path: Path) -> Callable[..., Any]:
    """``await aws_cli("get-stream-group", "--identifier", gid)``: the real CLI, in a
    subprocess that does not block the emulator's event loop."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_PAGER": "",
    }

    async def run(*args: str) -> CliResult:
        assert emulator.url is not None
        process = await asyncio.create_subprocess_exec(
            str(AWS_CLI),
            "gameliftstreams",
            *args,
            "--endpoint-url",
            emulator.url,
            "--region",
            "us-west-2",
            "--output",
            "json",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
        assert process.returncode is not None
        return CliResult(process.returncode, out.decode(), err.decode())

    return run
