"""Fixtures of the reliability suite: a live emulator on a manual clock with two stream groups,
the real controller pointed at it over HTTP, and a fault proxy for what the emulator cannot
inject by itself (faults on one group's calls only, edited responses).

Its own fixtures, not ``tests/e2e/conftest.py``'s (the suites evolve separately), wider than
those: two groups (A with a second location), a controller builder that takes a plugin registry
and client timeouts, and ``FaultProxy``. What both seed the same way (credentials, the game,
the groups' shape) is in ``tests/emulator_seed.py``.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from autoscaler.aws.gameliftstreams import open_gameliftstreams
from autoscaler.controller import Controller, ControllerOptions
from autoscaler.domain.clock import ManualClock
from autoscaler.domain.models import TickReport
from autoscaler.domain.policy import Policy
from autoscaler.policy.config import load_policies
from autoscaler.policy.plugin import PluginRegistry
from autoscaler.report import AuditLog
from autoscaler.store import HistoryStore
from autoscaler.twin.emulator import Emulator
from autoscaler.twin.model import ModelParams
from tests.emulator_seed import create_game, create_group, fake_aws_env

REGION = "us-west-2"
SECOND = "us-east-1"
MUTATING = ("UpdateStreamGroup", "AddStreamGroupLocations", "RemoveStreamGroupLocations")

TARGET_TRACKING = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: NAME}
spec:
  streamGroups: {ids: [GROUPS]}
  defaults: {minCapacity: 0, maxCapacity: 40}
  policy:
    plugin: PLUGIN
    params: PARAMS
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 120
      policies: [{type: Percent, value: 100, periodSeconds: 60}]
EXTRA
"""


@dataclass
class World:
    emulator: Emulator
    clock: ManualClock
    group_a: str  # two locations: REGION (primary) and SECOND
    group_b: str  # one location: REGION
    app_id: str
    tmp: Path

    @property
    def url(self) -> str:
        assert self.emulator.url is not None
        return self.emulator.url

    @property
    def model(self) -> Any:
        return self.emulator.model

    def policy_file(
        self,
        *,
        name: str = "rel",
        groups: tuple[str, ...] | None = None,
        plugin: str = "target-tracking",
        params: str = "{targetUtilization: 0.5}",
        extra: str = "",
    ) -> Path:
        ids = ", ".join(groups if groups is not None else (self.group_a, self.group_b))
        body = (
            textwrap.dedent(TARGET_TRACKING)
            .replace("NAME", name)
            .replace("GROUPS", ids)
            .replace("PLUGIN", plugin)
            .replace("PARAMS", params)
            .replace("EXTRA", textwrap.indent(textwrap.dedent(extra).strip("\n"), "  "))
        )
        path = self.tmp / f"{name}.yaml"
        path.write_text(body)
        return path

    def start_sessions(
        self, group: str, n: int, *, location: str = REGION, end_after_s: float | None = None
    ) -> list[str]:
        return [
            self.model.start_stream_session(
                group,
                application_identifier=self.app_id,
                locations=[location],
                end_after_s=end_after_s,
            ).session_id
            for _ in range(n)
        ]

    def terminate(self, group: str, session_ids: list[str]) -> None:
        for sid in session_ids:
            self.model.terminate_stream_session(group, sid)

    def location(self, group: str, name: str = REGION) -> Any:
        view = self.model.get_stream_group(group)
        return next(loc for loc in view.locations if loc.name == name)

    def calls(self, op: str) -> int:
        """Requests of ``op`` that reached the emulator (accepted or rejected)."""
        entry = self.emulator.calls.to_json()["operations"].get(op)
        return 0 if entry is None else int(entry["total"])

    def mutating_calls(self) -> int:
        return sum(self.calls(op) for op in MUTATING)

    def advance(self, seconds: float = 60.0) -> None:
        self.clock.advance(seconds)
        self.model.advance()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_env(
        monkeypatch,
        unset=(
            "AWS_PROFILE",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_GAMELIFTSTREAMS",
            "AWS_SESSION_TOKEN",
            "AUTOSCALER_CONFIG",
        ),
    )


async def make_world(tmp: Path, params: ModelParams | None = None) -> AsyncIterator[World]:
    clock = ManualClock()
    async with Emulator(clock=clock, seed=3, params=params) as emulator:
        model = emulator.model
        app_id = create_game(model, REGION)
        clock.advance(60)
        a = create_group(model, REGION, app_id, "a", REGION, SECOND)
        b = create_group(model, REGION, app_id, "b")
        clock.advance(900)
        model.advance()
        for g in (a, b):
            assert model.get_stream_group(g).status == "ACTIVE"
        yield World(emulator, clock, a, b, app_id, tmp)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async for w in make_world(tmp_path):
        yield w


@dataclass
class Rig:
    """A running controller and what a test inspects."""

    controller: Controller
    store: HistoryStore
    audit_path: Path
    calls: Counter[str]

    async def tick(self, world: World, seconds: float = 60.0) -> TickReport:
        world.advance(seconds)
        return await self.controller.tick()


@contextlib.asynccontextmanager
async def open_rig(
    world: World,
    policy_paths: list[Path],
    *,
    registry: PluginRegistry | None = None,
    endpoint_url: str | None = None,
    dry_run: bool = False,
    retry_mode: str = "standard",
    max_attempts: int = 1,
    read_timeout_s: float = 15.0,
    state_dir: Path | None = None,
    **options: Any,
) -> AsyncIterator[Rig]:
    """The controller as ``runtime.build_controller`` wires it, with the knobs tests need
    (client timeouts, retry mode, a registry holding test plugins)."""
    plugins = registry or PluginRegistry()
    policies: list[Policy] = list(
        load_policies(policy_paths, resolve_params=plugins.validate_params)
    )
    state = state_dir or world.tmp / "state"
    state.mkdir(parents=True, exist_ok=True)
    store = HistoryStore(state / "history.sqlite3", retention_s=30 * 86400.0)
    audit_path = state / "audit.jsonl"
    try:
        async with open_gameliftstreams(
            REGION,
            endpoint_url=endpoint_url or world.url,
            retry_mode=retry_mode,
            max_attempts=max_attempts,
            read_only=dry_run,
            read_timeout_s=read_timeout_s,
            connect_timeout_s=2.0,
        ) as gls:
            controller = Controller(
                reader=gls.reader,
                writer=gls.writer,
                store=store,
                policies=policies,
                plugins=plugins,
                clock=world.clock,
                options=ControllerOptions(interval_s=60.0, dry_run=dry_run, **options),
                audit=AuditLog(audit_path),
                call_counts=lambda: dict(gls.calls),
            )
            yield Rig(controller, store, audit_path, gls.calls)
    finally:
        store.close()


def group_report(report: TickReport, group_id: str) -> Any:
    return next(g for g in report.groups if g.group_id == group_id)


def vetoes(report: TickReport, group_id: str) -> list[str]:
    g = group_report(report, group_id)
    return [] if g.decision is None else [f"{v.guard}: {v.reason}" for v in g.decision.vetoes]


# --------------------------------------------------------------------------- fault proxy

Edit = Callable[[str, dict[str, Any]], dict[str, Any]]
# (method, path, query) -> an error code to answer instead of forwarding, or None
Fault = Callable[[str, str, Mapping[str, str]], str | None]
_STATUS = {"ThrottlingException": 429, "ConflictException": 409}


@dataclass
class FaultProxy:
    """An HTTP proxy in front of the emulator for faults the emulator cannot inject itself:
    ``fault(method, path, query)`` may answer an error instead of forwarding (e.g. only one group's
    calls, or only a second page), ``edit(path, body)`` rewrites JSON responses."""

    emulator: Emulator
    fault: Fault | None = None
    edit: Edit | None = None
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str | None = None
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    async def start(self) -> str:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._session = aiohttp.ClientSession()
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.rel_url.raw_path
        query = dict(request.rel_url.query)
        self.seen.append((path, query))
        code = self.fault(request.method, path, query) if self.fault is not None else None
        if code is not None:
            status = _STATUS.get(code, 500)
            err = self.emulator.spec.error(code, f"{code} (injected by the proxy)", "p", status)
            return web.Response(body=err.body, status=err.status, headers=err.headers)
        assert self._session is not None
        assert self.emulator.url is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with self._session.request(
            request.method, self.emulator.url + str(request.rel_url), data=body, headers=headers
        ) as upstream:
            data = await upstream.read()
            out_headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower() not in ("content-length", "transfer-encoding", "content-encoding")
            }
            if self.edit is not None and upstream.status == 200 and data:
                data = json.dumps(self.edit(path, json.loads(data))).encode()
            return web.Response(body=data, status=upstream.status, headers=out_headers)


def sessions_path(group_id: str) -> str:
    return f"/streamgroups/{group_id}/streamsessions"


@pytest.fixture
async def proxy(world: World) -> AsyncIterator[FaultProxy]:
    p = FaultProxy(world.emulator)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
