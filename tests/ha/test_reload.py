"""Config reload on SIGHUP and on file change: an invalid configuration is rejected with its
problems logged and the last good one keeps running."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from autoscaler import runtime
from autoscaler.runtime import ConfigWatcher, _default_reloader, build_controller, run_daemon
from autoscaler.settings import load_settings
from tests.ha.conftest import REGION, Group, buffer_policy


def touch_write(path: Path, text: str) -> None:
    """Write and move the mtime forward (file systems with coarse mtimes included)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


def settings_text(policy: Path, group: Group, tmp: Path, extra: str = "") -> str:
    return (
        f"policy_paths: [{policy}]\naws_region: {REGION}\naws_endpoint_url: {group.url}\n"
        f"state_dir: {tmp / 'state'}\nhttp_port: 0\naws_max_attempts: 1\n{extra}"
    )


def rejected(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("config reload rejected")]


async def test_file_changes_reload_and_invalid_ones_are_rejected(
    group: Group, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    policy = policies / "a.yaml"
    policy.write_text(buffer_policy(group.group_id, name="first"))
    config = tmp_path / "settings.yaml"
    config.write_text(settings_text(policies, group, tmp_path))
    settings = load_settings(config, env_file=None)
    async with build_controller(settings, clock=group.clock) as built:
        watcher = ConfigWatcher(settings, built.controller, _default_reloader(settings))
        assert watcher.poll() is False  # nothing changed
        assert config in watcher.watched_files()
        assert policy in watcher.watched_files()

        touch_write(policy, buffer_policy(group.group_id, name="first").replace("buffer", "nope"))
        assert watcher.poll() is True
        assert [p.name for p in built.controller.policies] == ["first"]
        assert watcher.rejections == 1
        assert any("nope" in str(getattr(r, "problems", "")) for r in rejected(caplog))

        touch_write(policy, buffer_policy(group.group_id, name="second"))
        assert watcher.poll() is True
        assert [p.name for p in built.controller.policies] == ["second"]
        assert watcher.poll() is False

        touch_write(config, settings_text(policies, group, tmp_path, "interval_s: -5\n"))
        assert watcher.poll() is True
        assert watcher.rejections == 2
        assert any("interval_s" in str(getattr(r, "problems", "")) for r in rejected(caplog))
        assert watcher.settings.interval_s == 60.0

        caplog.clear()
        touch_write(config, settings_text(policies, group, tmp_path, "interval_s: 30\n"))
        assert watcher.poll() is True
        assert watcher.settings.interval_s == 30.0
        restart = [r for r in caplog.records if "restart" in r.getMessage()]
        assert restart
        assert getattr(restart[0], "fields", None) == ["interval_s"]

        # a policy file added to the directory is seen too
        (policies / "b.yaml").write_text(
            buffer_policy(group.group_id, name="third").replace(group.group_id, "sg-other")
        )
        os.utime(policies, ns=(0, policies.stat().st_mtime_ns + 2_000_000_000))
        assert watcher.poll() is True
        assert sorted(p.name for p in built.controller.policies) == ["second", "third"]


async def test_daemon_reloads_on_sighup_and_on_file_change(
    group: Group, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    policy = tmp_path / "policy.yaml"
    policy.write_text(buffer_policy(group.group_id, name="first"))
    config = tmp_path / "settings.yaml"
    config.write_text(settings_text(policy, group, tmp_path, "config_poll_s: 0.1\n"))
    settings = load_settings(config, env_file=None)
    stop = asyncio.Event()
    ready = asyncio.Event()
    daemon = asyncio.create_task(
        run_daemon(settings, clock=group.clock, stop=stop, on_ready=lambda _: ready.set())
    )

    async def reloaded(trigger: str) -> logging.LogRecord:
        for _ in range(100):
            for r in caplog.records:
                if r.getMessage() == "config reloaded" and getattr(r, "trigger", "") == trigger:
                    return r
            await asyncio.sleep(0.05)
        raise AssertionError(f"no reload by {trigger}")

    try:
        await asyncio.wait_for(ready.wait(), 10)
        os.kill(os.getpid(), signal.SIGHUP)
        first = await reloaded("SIGHUP")
        assert getattr(first, "policies", None) == ["first"]
        touch_write(policy, buffer_policy(group.group_id, name="second"))
        second = await reloaded("file change")
        assert getattr(second, "policies", None) == ["second"]
        touch_write(policy, "apiVersion: nonsense\n")
        for _ in range(100):
            if rejected(caplog):
                break
            await asyncio.sleep(0.05)
        assert rejected(caplog)
        assert not daemon.done()  # still running on the last good configuration
    finally:
        stop.set()
        assert await asyncio.wait_for(daemon, 15) == 0


async def test_sigterm_during_the_first_tick_stops_within_the_grace(
    group: Group, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first tick used to be awaited outside the tick loop: a SIGTERM during it waited
    for the tick's whole timeout (60 s by default) instead of the shutdown grace, and
    Kubernetes (30 s) killed the process mid-write."""
    monkeypatch.setattr(runtime, "SHUTDOWN_GRACE_S", 1.0)
    group.emulator.set_faults({"latency_s": {"GetStreamGroup": 6.0}})  # a slow first tick
    policy = tmp_path / "policy.yaml"
    policy.write_text(buffer_policy(group.group_id))
    config = tmp_path / "settings.yaml"
    config.write_text(settings_text(policy, group, tmp_path))
    settings = load_settings(config, env_file=None)
    stop = asyncio.Event()
    ready = asyncio.Event()
    daemon = asyncio.create_task(
        run_daemon(settings, clock=group.clock, stop=stop, on_ready=lambda _: ready.set())
    )
    await asyncio.wait_for(ready.wait(), 10)
    await asyncio.sleep(0.3)  # the first tick is waiting on GetStreamGroup
    loop = asyncio.get_running_loop()
    started = loop.time()
    stop.set()  # what the SIGTERM handler does
    assert await asyncio.wait_for(daemon, 10) == 0
    assert loop.time() - started < 3.0


async def test_start_up_work_is_cancelled_by_a_stop() -> None:
    """A SIGTERM during start-up (the CloudWatch backfill may take minutes) cancels it."""
    stop = asyncio.Event()
    cancelled = asyncio.Event()

    async def backfill() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    asyncio.get_running_loop().call_later(0.05, stop.set)
    assert await runtime._unless_stopped(stop, backfill()) is False
    assert cancelled.is_set()
    assert await runtime._unless_stopped(asyncio.Event(), asyncio.sleep(0)) is True
