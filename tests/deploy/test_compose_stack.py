"""The compose stack's controller becomes ready against its emulator.

Without a Docker engine the stack still runs: each service's command, environment (the
image's ENV from the Dockerfile, then the service's own) and mounted files are taken from
deploy/docker-compose.yml and run as local ``python -m autoscaler`` processes. Only what the
container network provides is translated: listen addresses become loopback, ports become
free ones, service names become 127.0.0.1, and container paths are laid out under a
temporary root (mounted files linked in, path settings of the mounted settings file pointed
there). The services' health checks are run as declared. With an engine, a second test runs
the real ``docker compose up``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.deployfiles import COMPOSE, DEPLOY, ROOT, dockerfile_instructions, image_env

LOOPBACK = "127.0.0.1"
PATH_SETTINGS = ("policy_paths", "state_dir", "database_path", "audit_log")
START_TIMEOUT_S = 40.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def _container_port(service: dict[str, Any]) -> int | None:
    ports = service.get("ports", [])
    return int(str(ports[0]).rsplit(":", 1)[1]) if ports else None


@dataclass
class Stack:
    """The compose file's services, placed on this machine."""

    compose: dict[str, Any]
    root: Path  # stands for the containers' filesystem root
    ports: dict[str, int] = field(default_factory=dict)  # service -> local port

    def host_path(self, container_path: str) -> Path:
        return self.root / container_path.lstrip("/")

    def mount(self, name: str) -> None:
        """Lay out the service's bind mounts (linked) and named volumes (empty dirs)."""
        for volume in self.compose["services"][name].get("volumes", []):
            source, target = volume.split(":")[:2]
            local = self.host_path(target)
            local.parent.mkdir(parents=True, exist_ok=True)
            if source.startswith("."):
                local.symlink_to((DEPLOY / source).resolve())
            else:
                local.mkdir(parents=True, exist_ok=True)

    def translate(self, value: str) -> str:
        """Service-name URLs to loopback ports."""
        for service, port in self.ports.items():
            container = _container_port(self.compose["services"][service])
            value = value.replace(f"{service}:{container}", f"{LOOPBACK}:{port}")
        return value

    def environment(self, name: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AUTOSCALER_", "AWS_")) and k != "PYTHONPATH"
        }
        env.update({k: v for k, v in image_env().items() if k != "PATH"})
        env.update(
            {k: str(v) for k, v in self.compose["services"][name].get("environment", {}).items()}
        )
        env = {k: self.translate(v) for k, v in env.items()}
        if "AUTOSCALER_HTTP_HOST" in env:
            env["AUTOSCALER_HTTP_HOST"] = LOOPBACK
        if "AUTOSCALER_HTTP_PORT" in env:
            env["AUTOSCALER_HTTP_PORT"] = str(self.ports[name])
        if "AUTOSCALER_STATE_DIR" in env:
            env["AUTOSCALER_STATE_DIR"] = str(self.host_path(env["AUTOSCALER_STATE_DIR"]))
        env["PYTHONPATH"] = str(ROOT)
        return env

    def command(self, name: str) -> list[str]:
        args = [self.translate(str(a)) for a in self.compose["services"][name]["command"]]
        for flag, value in (("--host", LOOPBACK), ("--port", str(self.ports.get(name)))):
            if flag in args:
                args[args.index(flag) + 1] = value
        if "--config" in args:
            at = args.index("--config") + 1
            args[at] = str(self.localise_settings(args[at]))
        return [sys.executable, "-m", "autoscaler", *args]

    def localise_settings(self, container_path: str) -> Path:
        """The mounted settings file with its container paths placed under ``root``."""
        local = self.host_path(container_path)
        settings = yaml.safe_load(local.read_text())
        for key in PATH_SETTINGS:
            if isinstance(settings.get(key), list):
                settings[key] = [str(self.host_path(p)) for p in settings[key]]
            elif isinstance(settings.get(key), str):
                settings[key] = str(self.host_path(settings[key]))
        local.unlink()
        local.write_text(yaml.safe_dump(settings))
        return local

    def healthcheck(self, name: str) -> list[str]:
        test = self.compose["services"][name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "python"]
        script = test[3].replace(
            f"{LOOPBACK}:{_container_port(self.compose['services'][name])}",
            f"{LOOPBACK}:{self.ports[name]}",
        )
        return [sys.executable, test[2], script]


def _wait(check: Callable[[], bool], what: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for proc in procs:
            assert proc.poll() is None, f"{proc.args!r} exited with {proc.returncode}"
        if check():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()
    except OSError:
        return 0, b""


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _start(
    stack: Stack, name: str, tmp: Path, procs: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    with (tmp / f"{name}.log").open("wb") as log:  # the child keeps its own descriptor
        proc = subprocess.Popen(
            stack.command(name),
            env=stack.environment(name),
            cwd=tmp / "workdir",  # empty, like the image's WORKDIR: no stray .env is read
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    procs.append(proc)
    return proc


def test_compose_controller_becomes_ready_against_its_emulator(
    tmp_path: Path, processes: list[subprocess.Popen[bytes]]
) -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    stack = Stack(compose, tmp_path / "root")
    (tmp_path / "workdir").mkdir()
    stack.ports = {"emulator": _free_port(), "controller": _free_port()}
    stack.mount("controller")

    # emulator, then its health check as declared (depends_on: service_healthy)
    _start(stack, "emulator", tmp_path, processes)
    assert services["controller"]["depends_on"]["emulator"]["condition"] == "service_healthy"
    check = stack.healthcheck("emulator")
    _wait(
        lambda: subprocess.run(check, capture_output=True, timeout=10, check=False).returncode == 0,
        "the emulator's health check",
        processes,
    )

    controller = _start(stack, "controller", tmp_path, processes)
    base = f"http://{LOOPBACK}:{stack.ports['controller']}"
    _wait(lambda: _get(base + "/readyz")[0] == 200, "the controller's /readyz", processes)
    status, body = _get(base + "/readyz")
    assert status == 200
    assert json.loads(body) == {"ready": True, "reason": "ok", "leader": True}

    # The image's HEALTHCHECK, run as the container runtime would (its env: the port).
    final = [i for i in dockerfile_instructions() if i.keyword == "HEALTHCHECK"][-1]
    probe = json.loads(final.args[final.args.index("[") :])
    assert probe[0] == "python"
    done = subprocess.run(
        [sys.executable, *probe[1:]],
        env=stack.environment("controller"),
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    _, metrics = _get(base + "/metrics")
    text = metrics.decode()
    assert 'autoscaler_ticks_total{outcome="ok"} 1.0' in text
    assert "autoscaler_last_successful_tick_timestamp_seconds 0.0" not in text
    state = stack.host_path(image_env()["AUTOSCALER_STATE_DIR"])
    assert (state / "history.sqlite3").is_file()

    # docker compose stop: SIGTERM, then SIGKILL after stop_grace_period.
    grace = float(str(services["controller"]["stop_grace_period"]).rstrip("s"))
    started = time.monotonic()
    controller.send_signal(signal.SIGTERM)
    assert controller.wait(timeout=grace) == 0
    assert time.monotonic() - started < grace


def _docker_compose() -> list[str]:
    """``docker compose`` (plugin) or ``docker-compose``; skips without an engine."""
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False).returncode
    ):
        pytest.skip("no Docker engine on this machine")
    plugin = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if plugin.returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy is None:
        pytest.skip("a Docker engine but neither docker compose nor docker-compose")
    return [legacy]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_docker_compose_up_reaches_ready() -> None:
    base = [*_docker_compose(), "-f", str(COMPOSE), "-p", "autoscaler-deploy-test"]
    try:
        subprocess.run([*base, "up", "--build", "--detach", "controller"], check=True, timeout=900)
        deadline = time.monotonic() + 120
        while _get("http://127.0.0.1:9464/readyz")[0] != 200:
            if time.monotonic() > deadline:
                pytest.fail("the compose controller never became ready")
            time.sleep(1)
    finally:
        subprocess.run([*base, "down", "--volumes"], timeout=300, check=False)
