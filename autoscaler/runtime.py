"""The composition root: settings → adapters → controller → daemon.

Everything is built here from ``Settings`` and nothing below knows how: the controller gets a
reader (and a writer only when not in dry-run), a store, the policies and a clock. The daemon
then runs ticks on a schedule, serves /metrics /healthz /readyz, reloads its configuration on
SIGHUP and when the settings or policy files change (keeping the last good one if the new one
is invalid) and stops within a bounded time on SIGTERM/SIGINT.

High availability (``lease_backend: dynamodb``): the daemon runs the leader election of
``autoscaler.ha`` beside the ticks and gives the controller the elector's ``fence`` as its
fencing check; a standby keeps sampling (its history stays warm) but every write is refused
with "not leader", and /readyz answers 503. On start with an empty store it imports history
from CloudWatch so the forecasters work from the first tick.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.aws import check_profile
from autoscaler.aws.cloudwatch import open_cloudwatch
from autoscaler.aws.gameliftstreams import open_gameliftstreams
from autoscaler.aws.lease import open_dynamodb_lease
from autoscaler.controller import Controller, ControllerOptions
from autoscaler.domain.clock import Clock, WallClock
from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import GroupSummary, TickReport
from autoscaler.domain.policy import Policy
from autoscaler.domain.ports import StreamGroupReader
from autoscaler.ha import LeaderElector, LeaseTiming
from autoscaler.limiter import RateLimiter
from autoscaler.metrics import MetricsSink
from autoscaler.policy.config import load_policies
from autoscaler.policy.plugin import PluginRegistry
from autoscaler.report import AuditLog
from autoscaler.sampling import discover
from autoscaler.service import Health, TickLoop, build_http_app, start_http
from autoscaler.settings import Settings, load_settings
from autoscaler.store import HistoryStore

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 10.0  # an in-flight tick gets this long to finish on SIGTERM
PRUNE_EVERY_S = 3600.0
BACKFILL_TIMEOUT_S = 120.0  # a slow CloudWatch must not keep the daemon from starting


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
    reader: StreamGroupReader | None = None


class LeaseAuditLog(AuditLog):
    """The audit log with this replica's lease on every record: its holder id, whether it
    led when the record was written, and the fencing tokens that passed the check during the
    tick (so every applied change names the leadership term it was made in)."""

    def __init__(self, path: Path, elector: LeaderElector) -> None:
        super().__init__(path)
        self._elector = elector

    def extra_fields(self) -> dict[str, Any]:
        return {
            "lease": {
                "holder": self._elector.holder,
                "leader": self._elector.leader,
                "fenced_tokens": self._elector.take_fenced_tokens(),
            }
        }


@contextlib.asynccontextmanager
async def build_controller(
    settings: Settings,
    *,
    clock: Clock | None = None,
    dry_run: bool | None = None,
    interval_s: float | None = None,
    policies: Sequence[Policy] | None = None,
    write_audit: bool = True,
    elector: LeaderElector | None = None,
) -> AsyncIterator[Built]:
    """Everything a tick needs, opened, and closed again on exit.

    ``dry_run`` True opens the AWS client read-only: the controller has no writer at all.
    ``elector``: every write is fenced by its lease, and the audit records carry it.
    """
    loaded: list[Policy] = (
        list(policies) if policies is not None else list(load_policies(settings.policy_paths))
    )
    region = require_region(settings)
    check_profile(settings.aws_profile)
    dry = settings.dry_run if dry_run is None else dry_run
    limiter = RateLimiter(settings.api_budget.rates()) if settings.api_rate_limits else None
    make_state_dir(settings)
    audit: AuditLog | None = None
    if write_audit:  # checked before the store is made: a refusal leaves nothing behind
        audit = open_audit(settings.effective_audit_log, elector)
    store = open_store(settings)
    try:
        async with open_gameliftstreams(
            region,
            endpoint_url=settings.aws_endpoint_url,
            profile=settings.aws_profile,
            retry_mode=settings.aws_retry_mode,
            max_attempts=settings.aws_max_attempts,
            limiter=limiter,
            read_only=dry,
            fence=None if elector is None else elector.fence,
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
                    plugin_timeout_s=settings.plugin_timeout_s,
                    instant_start_s=settings.instant_start_s,
                ),
                audit=audit,
                fencing=None if elector is None else elector.fence,
                leading=None if elector is None else (lambda: elector.token is not None),
                call_counts=lambda: dict(gls.calls),
            )
            yield Built(controller=controller, store=store, policies=loaded, reader=gls.reader)
    finally:
        store.close()


def make_state_dir(settings: Settings) -> None:
    """The state folder, created; ConfigError naming the setting when it cannot be (a
    read-only file system, a parent that does not exist)."""
    try:
        settings.state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            "state_dir (AUTOSCALER_STATE_DIR)",
            [
                f"cannot create {settings.state_dir}: {error.strerror or error}; give a "
                "writable folder (in a container: a mounted volume)"
            ],
        ) from None


def open_store(settings: Settings) -> HistoryStore:
    """The history database; ConfigError naming the setting when it cannot be opened (a path
    that is a folder, a file that is no database, no write permission)."""
    path = settings.effective_database_path
    try:
        return HistoryStore(path, retention_s=settings.history_retention_s)
    except (sqlite3.Error, OSError) as error:
        raise ConfigError(
            "database_path (AUTOSCALER_DATABASE_PATH)",
            [
                f"cannot open the history database {path}: {error}; give the path of a "
                "writable file, new or written by autoscaler (default: "
                "<state_dir>/history.sqlite3)"
            ],
        ) from None


def open_audit(path: Path, elector: LeaderElector | None) -> AuditLog:
    """The audit log (with the lease's fields under an election), its file opened for
    appending once now: a path that cannot be written is a ConfigError at start-up, not a
    failure at the first tick that changes something."""
    try:
        audit = AuditLog(path) if elector is None else LeaseAuditLog(path, elector)
        os.close(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640))
    except OSError as error:
        raise ConfigError(
            "audit_log (AUTOSCALER_AUDIT_LOG)",
            [
                f"cannot write the audit log {path}: {error.strerror or error}; give the path "
                "of a writable file (default: <state_dir>/audit.jsonl)"
            ],
        ) from None
    return audit


async def run_daemon(
    settings: Settings,
    *,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    wall_interval_s: float | None = None,
    on_report: Callable[[TickReport], None] | None = None,
    on_ready: Callable[[int], None] | None = None,
    reload_settings: Callable[[], Settings] | None = None,
) -> int:
    """Run until ``stop`` is set or SIGTERM/SIGINT arrives. Returns the exit code.

    ``wall_interval_s`` is the wall time between ticks (default ``settings.interval_s``); the
    demo runs a scaled clock and passes interval_s / time_scale here. ``on_ready`` receives the
    bound HTTP port. ``reload_settings`` builds the settings again on a reload (the CLI passes
    one that re-applies its flags); default: the same settings file, with the fields a flag
    can set kept as they are.
    """
    stop = stop or asyncio.Event()
    interval_wall = wall_interval_s if wall_interval_s is not None else settings.interval_s
    loop_time = asyncio.get_running_loop().time
    health = Health(started_at=loop_time(), interval_s=interval_wall)
    # Signals from the very start: a SIGTERM during start-up (the CloudWatch backfill may take
    # two minutes) stops cleanly instead of killing the process; a SIGHUP before the
    # configuration watcher exists has nothing to reload yet.
    on_hup: list[Callable[[], object]] = [lambda: log.info("SIGHUP during start-up: ignored")]

    def hangup() -> None:
        on_hup[0]()  # looked up at each signal: ``_serve`` swaps in the reload

    installed = _install_signals(stop, hangup)
    try:
        return await _serve(
            settings,
            clock=clock,
            stop=stop,
            health=health,
            interval_wall=interval_wall,
            on_report=on_report,
            on_ready=on_ready,
            reload_settings=reload_settings,
            on_hup=on_hup,
        )
    finally:
        _remove_signals(installed)


async def _serve(
    settings: Settings,
    *,
    clock: Clock | None,
    stop: asyncio.Event,
    health: Health,
    interval_wall: float,
    on_report: Callable[[TickReport], None] | None,
    on_ready: Callable[[int], None] | None,
    reload_settings: Callable[[], Settings] | None,
    on_hup: list[Callable[[], object]],
) -> int:
    loop_time = asyncio.get_running_loop().time
    async with contextlib.AsyncExitStack() as stack:
        elector: LeaderElector | None = None
        if settings.lease_backend == "dynamodb":
            elector = await _open_elector(settings, stack, health)
        built = await stack.enter_async_context(
            build_controller(settings, clock=clock, elector=elector)
        )
        controller = built.controller
        if not await _unless_stopped(
            stop, _backfill_if_empty(settings, built, clock or WallClock())
        ):
            log.info("stopped during start-up")
            return 0
        if elector is not None:
            await elector.step()  # lead (or not) from the first tick on
        metrics = MetricsSink()
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
            build_http_app(
                metrics,
                health,
                control=controller,
                token=(
                    settings.http_token.get_secret_value()
                    if settings.http_token is not None
                    else None
                ),
            ),
            settings.http_host,
            settings.http_port,
        )
        log.info(
            "controller started",
            extra={
                "http": f"http://{settings.http_host}:{port}",
                "policies": [p.name for p in built.policies],
                "dry_run": controller.options.dry_run,
                "interval_s": interval_wall,
                "lease": None if elector is None else elector.holder,
                "leader": health.leader,
            },
        )
        if on_ready is not None:
            on_ready(port)
        watcher = ConfigWatcher(
            settings, controller, reload_settings or _default_reloader(settings)
        )
        on_hup[0] = lambda: watcher.reload("SIGHUP")
        tasks: list[asyncio.Task[None]] = []
        # The lease outlives the ticks on the way out: released only once no tick can write.
        lease_stop = asyncio.Event()
        if elector is not None:
            tasks.append(asyncio.create_task(elector.run(lease_stop), name="lease"))
        if settings.config_poll_s > 0:
            tasks.append(
                asyncio.create_task(watcher.watch(stop, settings.config_poll_s), name="config")
            )
        try:
            # The first tick at once, then on the schedule; a SIGTERM during the first gives
            # it the same grace as any other tick (``ticks.stop`` below), not its whole timeout.
            if not stop.is_set():
                await _unless_stopped(stop, ticks.run_now(), cancel=False)
            if not stop.is_set():
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
            stop.set()
            await ticks.stop(SHUTDOWN_GRACE_S)
            lease_stop.set()  # the lease loop releases the lease on its way out
            if tasks:
                await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S)
            await runner.cleanup()
    return 0


async def _unless_stopped(
    stop: asyncio.Event, work: Awaitable[object], *, cancel: bool = True
) -> bool:
    """Await ``work`` until it ends or ``stop`` is set, whichever comes first; True when it
    ended. On a stop it is cancelled (``cancel``) or left running for its owner to settle."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if task.done():
        task.result()
        return True
    if cancel:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return False


async def _open_elector(
    settings: Settings, stack: contextlib.AsyncExitStack, health: Health
) -> LeaderElector:
    assert settings.lease_table is not None  # checked by Settings
    check_profile(settings.aws_profile)
    lease = await stack.enter_async_context(
        open_dynamodb_lease(
            require_region(settings),
            table=settings.lease_table,
            name=settings.lease_name,
            endpoint_url=settings.lease_endpoint_url,
            profile=settings.aws_profile,
        )
    )
    health.leader = False  # a standby until the lease is ours

    def on_change(leader: bool) -> None:
        health.leader = leader

    # The lease's expires_at is wall time whatever clock the ticks run on (the demo's is
    # scaled): replicas compare it with their own wall clocks.
    return LeaderElector(
        lease,
        holder=settings.lease_holder,
        timing=LeaseTiming(
            duration_s=settings.lease_duration_s,
            renew_every_s=settings.lease_renew_every_s,
            clock_skew_s=settings.lease_clock_skew_s,
        ),
        on_change=on_change,
    )


def controller_now(clock: Clock | None) -> float:
    return (clock or WallClock()).now()


# -- history from CloudWatch ---------------------------------------------------------------


async def managed_locations(
    reader: StreamGroupReader, policies: Sequence[Policy]
) -> list[tuple[str, str]]:
    """(group id, location) of every group the policies select, as the service lists them."""
    group_ids: list[str] = []
    for policy in policies:
        group_ids += [*policy.selector.ids, *(a.rsplit("/", 1)[-1] for a in policy.selector.arns)]
        if policy.selector.tags:

            def matches(
                summary: GroupSummary, tags: Mapping[str, str] | None, p: Policy = policy
            ) -> bool:
                return p.selector.matches(summary.group_id, summary.arn, tags)

            group_ids += await discover(reader, matches, need_tags=True)
    targets: list[tuple[str, str]] = []
    for gid in dict.fromkeys(group_ids):
        state = await reader.get_stream_group(gid)
        targets += [(gid, loc.name) for loc in state.locations]
    return targets


async def backfill_history(
    settings: Settings,
    store: HistoryStore,
    targets: Sequence[tuple[str, str]],
    *,
    now: float,
    window_s: float,
) -> int:
    """Import ``window_s`` of per-minute capacity history from CloudWatch into ``store``.
    Returns the number of rows added."""
    async with open_cloudwatch(
        require_region(settings),
        endpoint_url=settings.cloudwatch_endpoint_url,
        profile=settings.aws_profile,
        max_attempts=settings.aws_max_attempts,
    ) as cloudwatch:
        history = await cloudwatch.history(targets, now - window_s, now)
    added = 0
    for (gid, location), rows in history.items():
        added += await asyncio.to_thread(store.backfill, gid, location, rows)
    return added


async def _backfill_if_empty(settings: Settings, built: Built, clock: Clock) -> None:
    """On a first start (empty store), fill the forecasters' window from CloudWatch. Skipped
    against a GameLift Streams stand-in (``aws_endpoint_url``) unless CloudWatch has one too:
    the real account's metrics would not describe the stand-in's groups."""
    if not settings.cloudwatch_backfill or built.reader is None:
        return
    if settings.aws_endpoint_url is not None and settings.cloudwatch_endpoint_url is None:
        return
    if await asyncio.to_thread(built.store.locations):
        return
    window = settings.backfill_window_s or max(
        (p.history_window_s for p in built.policies), default=0.0
    )
    if window <= 0:
        return
    try:
        async with asyncio.timeout(BACKFILL_TIMEOUT_S):
            targets = await managed_locations(built.reader, built.policies)
            added = await backfill_history(
                settings, built.store, targets, now=clock.now(), window_s=window
            )
    except Exception as error:  # history is an optimisation: start cold rather than not at all
        log.warning("CloudWatch backfill failed; starting with an empty history: %s", error)
        return
    log.info(
        "history backfilled from CloudWatch",
        extra={"locations": len(targets), "rows": added, "window_s": window},
    )


# -- configuration reload --------------------------------------------------------------------

# Fields a command-line flag can set: a default reload keeps their running values.
_FLAG_FIELDS = ("policy_paths", "aws_endpoint_url", "aws_region", "dry_run", "http_port")
# Fields a reload applies to the running daemon; any other change waits for a restart.
_LIVE_FIELDS = frozenset({"policy_paths"})


def _default_reloader(settings: Settings) -> Callable[[], Settings]:
    def reload() -> Settings:
        if settings.config is None:
            return settings
        pinned: dict[str, Any] = {name: getattr(settings, name) for name in _FLAG_FIELDS}
        return load_settings(settings.config, **pinned)

    return reload


class ConfigWatcher:
    """Reloads the settings file and the policies on SIGHUP and when a file changes.

    A new configuration is validated whole before anything is swapped in; an invalid one is
    rejected with every problem logged, and the last good one keeps running. Of the settings
    only ``policy_paths`` applies live; other changed fields are logged as needing a restart.
    """

    def __init__(
        self, settings: Settings, controller: Controller, load: Callable[[], Settings]
    ) -> None:
        self.settings = settings
        self._controller = controller
        self._load = load
        self._seen = self.fingerprint()
        self.reloads = 0
        self.rejections = 0

    def watched_files(self) -> list[Path]:
        """The settings file, every policy file, and the policy directories themselves (a
        file added to or removed from a directory changes its mtime)."""
        paths: list[Path] = [] if self.settings.config is None else [self.settings.config]
        for path in self.settings.policy_paths:
            paths.append(path)
            if path.is_dir():
                paths += sorted(
                    p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()
                )
        return paths

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        marks: list[tuple[str, int, int]] = []
        for path in self.watched_files():
            try:
                st = path.stat()
            except OSError:
                marks.append((str(path), -1, -1))  # missing: its return is a change too
                continue
            marks.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(marks)

    def poll(self) -> bool:
        """Reload if any watched file changed since the last look. Returns whether it did."""
        seen = self.fingerprint()
        if seen == self._seen:
            return False
        self._seen = seen
        self.reload("file change")
        return True

    async def watch(self, stop: asyncio.Event, every_s: float) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)
            if not stop.is_set():
                try:
                    await asyncio.to_thread(self.poll)
                except Exception:  # a watcher bug must not stop the daemon
                    log.exception("config watch failed")

    def reload(self, why: str) -> bool:
        """Validate and apply the configuration; False (and nothing changed) if invalid."""
        try:
            settings = self._load()
            policies = load_policies(settings.policy_paths)
        except ConfigError as error:
            self.rejections += 1
            log.error(
                "config reload rejected; keeping the last good configuration",
                extra={"trigger": why, "source": error.source, "problems": error.problems},
            )
            return False
        old = self.settings.model_dump()
        changed = sorted(k for k, v in settings.model_dump().items() if old.get(k) != v)
        later = [k for k in changed if k not in _LIVE_FIELDS]
        if later:
            log.warning(
                "settings changed that take effect on restart only", extra={"fields": later}
            )
        self.settings = settings
        self._controller.set_policies(policies)
        self._seen = self.fingerprint()
        self.reloads += 1
        log.info("config reloaded", extra={"trigger": why, "policies": [p.name for p in policies]})
        return True


def _install_signals(stop: asyncio.Event, reload: Callable[[], object]) -> list[signal.Signals]:
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
