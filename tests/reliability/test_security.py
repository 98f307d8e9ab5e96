"""Security properties checked end to end: credentials and tokens never reach a log line or the
audit log, YAML is loaded safely, and every listener binds to 127.0.0.1 unless told otherwise.
Dry-run is enforced by construction: a whole dry-run session, the policy-level dry-run and
ForecastOnly mode, and ``autoscaler plan`` in a subprocess send zero mutating calls."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import sys
from pathlib import Path

import pytest

from autoscaler.cli import build_parser
from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import TickReport
from autoscaler.logs import configure_logging
from autoscaler.policy.config import load_policies
from autoscaler.runtime import build_controller, run_daemon
from autoscaler.settings import Settings, load_settings
from autoscaler.twin.emulator import Emulator, serve_forever
from tests.reliability.conftest import REGION, World, group_report, open_rig

SECRET = "wJalrXUtnFEMI-RELIABILITY-SECRET-7f3a9c"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE-RELIABILITY-TOKEN-55aa"
HTTP_TOKEN = "http-token-RELIABILITY-0c0ffee"


def _settings(world: World, **overrides: object) -> Settings:
    extra: dict[str, object] = {}
    if "cloudwatch_backfill" in Settings.model_fields:
        extra["cloudwatch_backfill"] = False
    return load_settings(
        None,
        env_file=None,
        policy_paths=[world.policy_file()],
        aws_region=REGION,
        aws_endpoint_url=world.url,
        state_dir=world.tmp / "state",
        aws_max_attempts=1,
        http_port=0,
        **extra,
        **overrides,
    )


async def test_secrets_never_logged(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    settings = _settings(world, http_token=HTTP_TOKEN, log_level="DEBUG")
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("DEBUG", "json")
    try:
        world.start_sessions(world.group_a, 10)  # something to decide and write
        world.emulator.set_faults({"error_probability": {"ListStreamSessions": 0.5}})
        stop = asyncio.Event()
        reports: list[TickReport] = []

        def on_report(report: TickReport) -> None:
            reports.append(report)
            stop.set()

        assert await run_daemon(settings, clock=world.clock, stop=stop, on_report=on_report) == 0
        logging.getLogger("autoscaler").debug("settings: %r", settings)  # a careless debug line
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    assert reports
    logs = capsys.readouterr().err
    assert '"level": "debug"' in logs  # DEBUG really was captured
    assert "controller started" in logs
    audit = (world.tmp / "state" / "audit.jsonl").read_text()
    assert audit
    for secret in (SECRET, SESSION_TOKEN, HTTP_TOKEN):
        assert secret not in logs
        assert secret not in audit
        assert secret not in repr(settings)


def test_yaml_with_python_objects_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f'!!python/object/apply:os.system ["touch {marker}"]'
    settings_file = tmp_path / "settings.yaml"
    settings_file.write_text(f"interval_s: {payload}\n")
    with pytest.raises(ConfigError):
        load_settings(settings_file, env_file=None)
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "apiVersion: autoscaler.gameliftstreams/v1\nkind: CapacityPolicy\n"
        f"metadata: {{name: {payload}}}\n"
        "spec: {streamGroups: {ids: [sg-1]}, policy: {plugin: target-tracking}}\n"
    )
    with pytest.raises(ConfigError):
        load_policies([policy])
    assert not marker.exists()


def test_listeners_bind_to_localhost_by_default() -> None:
    assert Settings.model_fields["http_host"].default == "127.0.0.1"
    assert build_parser().parse_args(["emulator"]).host == "127.0.0.1"
    assert inspect.signature(Emulator.start).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(serve_forever).parameters["host"].default == "127.0.0.1"


# --------------------------------------------------------------------------- dry-run


async def test_a_whole_dry_run_session_sends_no_mutating_call(world: World) -> None:
    settings = _settings(world)
    sessions = world.start_sessions(world.group_a, 12, location=REGION)
    world.start_sessions(world.group_b, 12)
    wanted = False
    async with build_controller(settings, clock=world.clock, dry_run=True) as built:
        for i in range(12):
            if i == 6:
                world.terminate(world.group_a, sessions)  # and scale-down pressure
            world.advance(60.0)
            report = await built.controller.tick()
            for g in report.groups:
                assert g.actuation is None or g.actuation.dry_run
                if g.decision is not None and g.decision.changed_locations:
                    wanted = True
                    assert g.actuation is not None
                    assert g.actuation.calls  # it says what it would have sent
    assert wanted
    assert world.mutating_calls() == 0
    assert world.location(world.group_b).always_on == 2


async def test_policy_dry_run_and_forecast_only_send_nothing(world: World) -> None:
    dry = world.policy_file(name="dry", groups=(world.group_a,), extra="dryRun: true")
    fo = world.policy_file(name="fo", groups=(world.group_b,), extra="mode: ForecastOnly")
    world.start_sessions(world.group_a, 12)
    world.start_sessions(world.group_b, 12)
    async with open_rig(world, [dry, fo]) as rig:  # a controller that has a writer
        for _ in range(5):
            report = await rig.tick(world)
    assert group_report(report, world.group_a).actuation.dry_run
    assert any(
        v.guard == "forecast-only" for v in group_report(report, world.group_b).decision.vetoes
    )
    assert world.mutating_calls() == 0


async def test_plan_command_in_a_subprocess_sends_no_mutating_call(world: World) -> None:
    world.start_sessions(world.group_a, 12)
    policy = world.policy_file()
    env = dict(os.environ)
    env["AUTOSCALER_STATE_DIR"] = str(world.tmp / "plan-state")
    if "cloudwatch_backfill" in Settings.model_fields:
        env["AUTOSCALER_CLOUDWATCH_BACKFILL"] = "false"
    world.advance(60.0)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "autoscaler",
        "plan",
        "--policy",
        str(policy),
        "--endpoint-url",
        world.url,
        "--region",
        REGION,
        "--output",
        "json",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    plan = json.loads(out)
    rows = [r for r in plan["plan"] if r["group"] == world.group_a and r["location"] == REGION]
    assert rows[0]["decided"]["always_on"] > rows[0]["current"]["always_on"]  # it would scale
    assert world.mutating_calls() == 0


async def test_session_token_not_logged_even_with_botocore_debug(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("DEBUG", "json")
    logging.getLogger("botocore").setLevel(logging.DEBUG)
    try:
        async with open_rig(world, [world.policy_file()]) as rig:
            await rig.tick(world)
    finally:
        logging.getLogger("botocore").setLevel(logging.WARNING)
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
    assert SESSION_TOKEN not in capsys.readouterr().err
