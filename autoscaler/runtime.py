"""The composition root: settings → adapters → controller → daemon.

Everything is built here from ``Settings`` and nothing below knows how: the controller gets a
reader (and a writer only when not in dry-run), a store, the policies and a clock. The daemon
then runs ticks on a schedule, serves /metrics /healthz /readyz, reloads policies on SIGHUP
(keeping the last good ones if the new ones are invalid) and stops within a bounded time on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from autoscaler.aws.gameliftstreams import open_gameliftstreams
from autoscaler.controller import Controller, ControllerOptions
from autoscaler.domain.clock import Clock, WallClock
from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import TickReport
from autoscaler.domain.policy import Policy
from autoscaler.limiter import RateLimiter
from autoscaler.metrics import MetricsSink
from autoscaler.policy.config import load_policies
from autoscaler.policy.plugin import PluginRegistry
from autoscaler.report import AuditLog
from autoscaler.service import Health, TickLoop, build_http_app, start_http
from autoscaler.settings import Settings
from autoscaler.store import HistoryStore

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0  # an in-flight tick gets this long to finish on SIGTERM
PRUNE_EVERY_S = 3600.0


def require_region(settings: Settings) -> str:
    if settings.aws_region:
        return settings.aws_region
    raise ConfigError(
        "settings",
        [
            "aws_region: no AWS region is set; set AWS_REGION (or AWS_DEFAULT_REGION, "
            "AUTOSCALER_AWS_REGION, or aws_region in the settings file), e.g. us-west-2"
        ],
    )


@dataclass(slots=True)
class Built:
    controller: Controller
    store: HistoryStore
    policies: list[Policy]


@contextlib.asynccontextmanager
async def build_controller(
    settings: Settings,
    *,
    clock: Clock | None = None,
    dry_run: bool | None = None,
    interval_s: float | None = None,
    policies: Sequence[Policy] | None = None,
    write_audit: bool = True,
) -> AsyncIterator[Built]:
    """Everything a tick needs, opened, and closed again on exit.

    ``dry_run`` True opens the AWS client read-only: the controller has no writer at all.
    """
    loaded: list[Policy] = (
        list(policies) if policies is not None else list(load_policies(settings.policy_paths))
    )
    region = require_region(settings)
    dry = settings.dry_run if dry_run is None else dry_run
    limiter = RateLimiter(settings.api_budget.rates()) if settings.api_rate_limits else None
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    store = HistoryStore(settings.effective_database_path, retention_s=settings.history_retention_s)
    try:
        async with open_gameliftstreams(
            region,
            endpoint_url=settings.aws_endpoint_url,
            profile=settings.aws_profile,
            retry_mode=settings.aws_retry_mode,
            max_attempts=settings.aws_max_attempts,
            limiter=limiter,
            read_only=dry,
        ) as gls:
            controller = Controller(
                reader=gls.reader,
                writer=gls.writer,
                store=store,
                policies=loaded,
                plugins=PluginRegistry(),
                clock=clock or WallClock(),
                options=ControllerOptions(
                    interval_s=interval_s if interval_s is not None else settings.interval_s,
                    dry_run=dry,
                    max_concurrency=settings.max_concurrency,
                ),
                audit=AuditLog(settings.effective_audit_log) if write_audit else None,
                call_counts=lambda: dict(gls.calls),
            )
            yield Built(controller=controller, store=store, policies=loaded)
    finally:
        store.close()


async def run_daemon(
    settings: Settings,
    *,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    wall_interval_s: float | None = None,
    on_report: Callable[[TickReport], None] | None = None,
    on_ready: Callable[[int], None] | None = None,
) -> int:
    """Run until ``stop`` is set or SIGTERM/SIGINT arrives. Returns the exit code.

    ``wall_interval_s`` is the wall time between ticks (default ``settings.interval_s``); the
    demo runs a scaled clock and passes interval_s / time_scale here. ``on_ready`` receives the
    bound HTTP port.
    """
    stop = stop or asyncio.Event()
    interval_wall = wall_interval_s if wall_interval_s is not None else settings.interval_s
    async with build_controller(settings, clock=clock) as built:
        controller = built.controller
        metrics = MetricsSink()
        loop_time = asyncio.get_running_loop().time
        health = Health(started_at=loop_time(), interval_s=interval_wall)
        # A tick may take at most one wall interval (the daemon never overlaps ticks).
        timeout = settings.tick_timeout_s if settings.tick_timeout_s is not None else interval_wall
        ticks = TickLoop(
            controller.tick,
            interval_s=interval_wall,
            timeout_s=timeout,
            metrics=metrics,
            health=health,
            on_report=on_report,
        )
        runner, port = await start_http(
            build_http_app(metrics, health), settings.http_host, settings.http_port
        )
        log.info(
            "controller started",
            extra={
                "http": f"http://{settings.http_host}:{port}",
                "policies": [p.name for p in built.policies],
                "dry_run": controller.options.dry_run,
                "interval_s": interval_wall,
            },
        )
        if on_ready is not None:
            on_ready(port)
        installed = _install_signals(stop, lambda: _reload(settings, controller))
        try:
            await ticks.run_once()  # first tick at once, then on the schedule
            ticks.start()
            last_prune = loop_time()
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=min(interval_wall, 5.0))
                if loop_time() - last_prune > PRUNE_EVERY_S:
                    await asyncio.to_thread(built.store.prune, controller_now(clock))
                    last_prune = loop_time()
        finally:
            log.info("stopping")
            await ticks.stop(SHUTDOWN_GRACE_S)
            await runner.cleanup()
            _remove_signals(installed)
    return 0


def controller_now(clock: Clock | None) -> float:
    return (clock or WallClock()).now()


def _reload(settings: Settings, controller: Controller) -> None:
    """SIGHUP: load the policy files again; keep the running ones if the new ones are bad."""
    try:
        policies = load_policies(settings.policy_paths)
    except ConfigError as error:
        log.error(
            "config reload rejected; keeping the last good policies",
            extra={"problems": error.problems},
        )
        return
    controller.set_policies(policies)
    log.info("config reloaded", extra={"policies": [p.name for p in policies]})


def _install_signals(stop: asyncio.Event, reload: Callable[[], None]) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig, handler in (
        (signal.SIGTERM, stop.set),
        (signal.SIGINT, stop.set),
        (signal.SIGHUP, reload),
    ):
        try:
            loop.add_signal_handler(sig, handler)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            # not the main thread (tests, the demo's embedded daemon): the caller stops us
            continue
    return installed


def _remove_signals(installed: list[signal.Signals]) -> None:
    loop = asyncio.get_running_loop()
    for sig in installed:
        loop.remove_signal_handler(sig)


async def run_once(settings: Settings, *, dry_run: bool, clock: Clock | None = None) -> TickReport:
    """One tick (``autoscaler run --once`` and ``autoscaler plan``)."""
    async with build_controller(settings, clock=clock, dry_run=dry_run) as built:
        return await built.controller.tick()
