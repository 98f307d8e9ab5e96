"""A live emulator on a manual clock, a stream group in it, and a way to build the real
controller (the composition root's ``build_controller``) pointed at it over HTTP."""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from autoscaler.domain.clock import ManualClock
from autoscaler.runtime import Built, build_controller
from autoscaler.settings import Settings, load_settings
from autoscaler.twin.emulator import Emulator
from tests.emulator_seed import create_game, create_group, fake_aws_env

REGION = "us-west-2"


@dataclass
class World:
    emulator: Emulator
    clock: ManualClock
    group_id: str
    app_id: str
    tmp: Path

    @property
    def url(self) -> str:
        assert self.emulator.url is not None
        return self.emulator.url

    def settings(self, policy: Path, **overrides: Any) -> Settings:
        return load_settings(
            None,
            env_file=None,
            policy_paths=[policy],
            aws_region=REGION,
            aws_endpoint_url=self.url,
            state_dir=self.tmp / "state",
            aws_max_attempts=overrides.pop("aws_max_attempts", 1),
            **overrides,
        )

    def policy_file(self, body: str, name: str = "policy.yaml") -> Path:
        path = self.tmp / name
        path.write_text(textwrap.dedent(body).replace("GROUP_ID", self.group_id))
        return path

    def start_sessions(self, n: int, *, end_after_s: float | None = None) -> list[str]:
        return [
            self.emulator.model.start_stream_session(
                self.group_id,
                application_identifier=self.app_id,
                locations=[REGION],
                end_after_s=end_after_s,
            ).session_id
            for _ in range(n)
        ]

    def terminate(self, session_ids: list[str]) -> None:
        for sid in session_ids:
            self.emulator.model.terminate_stream_session(self.group_id, sid)

    def location(self) -> Any:
        view = self.emulator.model.get_stream_group(self.group_id)
        return next(loc for loc in view.locations if loc.name == REGION)

    def mutating_calls(self) -> int:
        calls = self.emulator.calls.to_json()
        ops = calls.get("operations", calls)
        total = 0
        for op in ("UpdateStreamGroup", "AddStreamGroupLocations", "RemoveStreamGroupLocations"):
            entry = ops.get(op)
            if isinstance(entry, dict):
                total += int(entry.get("accepted", 0)) + int(entry.get("rejected", 0))
            elif isinstance(entry, int):
                total += entry
        return total


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_env(
        monkeypatch, unset=("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_GAMELIFTSTREAMS")
    )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = ManualClock()
    async with Emulator(clock=clock, seed=3) as emulator:
        model = emulator.model
        app_id = create_game(model, REGION)
        clock.advance(60)
        group_id = create_group(model, REGION, app_id, "e2e")
        clock.advance(600)
        model.advance()
        assert model.get_stream_group(group_id).status == "ACTIVE"
        yield World(emulator, clock, group_id, app_id, tmp_path)


BuildFn = Callable[..., contextlib.AbstractAsyncContextManager[Built]]


@pytest.fixture
def controller_for(world: World) -> BuildFn:
    def build(policy: Path, *, dry_run: bool = False, **overrides: Any) -> Any:
        settings = world.settings(policy, **overrides)
        return build_controller(settings, clock=world.clock, dry_run=dry_run, interval_s=60.0)

    return build
