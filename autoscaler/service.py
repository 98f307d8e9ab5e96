"""The daemon's moving parts that are not the decision pipeline: the tick loop on an
apscheduler schedule, the HTTP endpoints (/metrics, /healthz, /readyz), and shutdown.

Only this module imports apscheduler; it knows nothing about AWS. It runs any
``tick() -> TickReport`` coroutine, never two at once, and coalesces missed runs.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.interval import IntervalTrigger

from autoscaler.actuate import ADD, REMOVE
from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import TickReport
from autoscaler.metrics import MetricsSink

log = logging.getLogger(__name__)

TickFn = Callable[[], Awaitable[TickReport]]
EXPIRY_WARNING_S = 14 * 86400.0  # same threshold as the GroupExpiringSoon alert


@dataclass(slots=True)
class Health:
    """What /healthz and /readyz answer from. Updated only by the tick loop."""

    started_at: float
    interval_s: float  # wall seconds between ticks
    last_tick_at: float | None = None
    last_ok_at: float | None = None
    ticks: int = 0
    leader: bool = True
    last_error: str | None = None

    def ready(self, now: float) -> tuple[bool, str]:
        if not self.leader:
            return False, "standby: not the leader"
        if self.last_ok_at is None:
            return False, "no successful tick yet"
        age = now - self.last_ok_at
        if age > 3 * self.interval_s + 30:
            return False, f"last successful tick {age:.0f}s ago"
        return True, "ok"


class TickLoop:
    """Runs ``tick`` on an interval; one at a time; a tick that overruns is not overlapped."""

    def __init__(
        self,
        tick: TickFn,
        *,
        interval_s: float,
        timeout_s: float,
        metrics: MetricsSink,
        health: Health,
        on_report: Callable[[TickReport], None] | None = None,
    ) -> None:
        self._tick = tick
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.metrics = metrics
        self.health = health
        self._on_report = on_report
        self._lock = asyncio.Lock()
        self._scheduler: AsyncIOScheduler | None = None
        self._current: asyncio.Task[TickReport | None] | None = None
        self._expiry_warned: dict[str, float] = {}
        self._last_start: float | None = None  # event-loop (monotonic) time of the last tick
        self._watchdog: asyncio.Task[None] | None = None
        self.restarts = 0  # times the watchdog found the schedule stalled

    async def run_once(self) -> TickReport | None:
        self._last_start = asyncio.get_running_loop().time()
        if self._lock.locked():
            log.warning("previous tick still running; skipping this one")
            return None
        async with self._lock:
            try:
                report = await asyncio.wait_for(self._tick(), timeout=self.timeout_s)
            except TimeoutError:
                self.health.last_error = f"tick exceeded {self.timeout_s:.0f}s"
                log.error("tick timed out", extra={"timeout_s": self.timeout_s})
                return None
            except Exception as error:  # a bug in a stage must not kill the daemon
                self.health.last_error = repr(error)
                log.exception("tick failed")
                return None
            ended = time.time()
            self.health.ticks += 1
            self.health.last_tick_at = ended
            if report.ok:
                self.health.last_ok_at = ended
                self.health.last_error = None
            self.metrics.observe(report, ended_at=ended)
            log_report(report)
            self._warn_expiring(report)
            if self._on_report is not None:
                self._on_report(report)
            return report

    def _warn_expiring(self, report: TickReport) -> None:
        """Groups expire 365 days after creation (AWS recommends recreating them every few
        weeks); warn, at most once a day per group, when one is within the warning window."""
        for group in report.groups:
            state = group.sample.state
            if state is None or state.expires_at is None:
                continue
            left = state.expires_at - report.at
            last = self._expiry_warned.get(group.group_id)
            if left <= EXPIRY_WARNING_S and (last is None or report.at - last >= 86400.0):
                self._expiry_warned[group.group_id] = report.at
                log.warning(
                    "stream group expires soon",
                    extra={"group_id": group.group_id, "expires_in_days": round(left / 86400, 1)},
                )

    def run_now(self) -> asyncio.Task[TickReport | None]:
        """A tick started at once in a task of its own: ``stop`` gives it the same grace as a
        scheduled one (the daemon's first tick, which SIGTERM may interrupt)."""
        task = asyncio.create_task(self.run_once())
        self._current = task

        def forget(done: asyncio.Task[TickReport | None]) -> None:
            if self._current is done:
                self._current = None

        task.add_done_callback(forget)
        return task

    async def _scheduled(self) -> None:
        # The tick runs in a task of our own: stopping cancels that task, never the
        # scheduler's job future (apscheduler 3 reports a cancelled job future as an error).
        task = self.run_now()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # the scheduler is shutting down; ``stop`` decides what happens to the tick
            log.debug("scheduled tick job cancelled at shutdown")

    def start(self) -> None:
        if self._last_start is None:
            self._last_start = asyncio.get_running_loop().time()
        self._start_scheduler()
        if self._watchdog is None:
            self._watchdog = asyncio.create_task(self._watch(), name="tick-watchdog")

    def _start_scheduler(self) -> None:
        scheduler = AsyncIOScheduler()
        scheduler.add_job(
            self._scheduled,
            IntervalTrigger(seconds=self.interval_s),
            id="tick",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self.interval_s)),
        )
        scheduler.start()
        self._scheduler = scheduler

    async def _watch(self) -> None:
        """Restart the schedule when it has stalled.

        apscheduler 3 keeps its schedule in wall-clock time: after the wall clock steps back
        (an NTP correction, a VM restored from a snapshot) it waits until the clock catches up
        with the next run time it had computed, an hour of no ticks for an hour's step, while
        /healthz still says ok. Checked on the event loop's monotonic clock: no tick started
        for two intervals and none running means the schedule is stuck, and a fresh one runs
        the next tick one interval from now.
        """
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval_s)
            scheduler = self._scheduler
            if scheduler is None or scheduler.state != STATE_RUNNING:
                continue  # stopping or paused on purpose
            if self._lock.locked() or self._last_start is None:
                continue  # a tick is running (a slow one skips runs by design)
            idle = loop.time() - self._last_start
            if idle <= 2 * self.interval_s:
                continue
            log.warning(
                "no tick for %.1f s (interval %g s): the schedule stalled, restarting it"
                " (did the wall clock step back?)",
                idle,
                self.interval_s,
            )
            self.restarts += 1
            scheduler.shutdown(wait=False)
            self._last_start = loop.time()
            self._start_scheduler()

    async def stop(self, grace_s: float) -> None:
        """Stop scheduling; let an in-flight tick finish for ``grace_s``, then cancel it."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._scheduler is not None:
            self._scheduler.pause()
        current = self._current
        if current is not None and not current.done():
            done, _ = await asyncio.wait({current}, timeout=grace_s)
            if not done:
                log.warning("abandoning the in-flight tick after %.1fs", grace_s)
                current.cancel()
                await asyncio.wait({current}, timeout=1.0)
        for _ in range(3):  # let the job coroutine see its task end
            await asyncio.sleep(0)
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None


def log_report(report: TickReport) -> None:
    """The structured-log view of a report: one line per tick, one per change or problem."""
    changed = 0
    for group in report.groups:
        if group.skipped:
            log.warning("group skipped", extra={"group_id": group.group_id, "why": group.skipped})
        for problem in group.sample.problems:
            log.warning("incomplete sample", extra={"group_id": group.group_id, "why": problem})
        actuation = group.actuation
        if group.decision is None or actuation is None:
            continue
        if actuation.error:
            log.error(
                "capacity change failed",
                extra={
                    "group_id": group.group_id,
                    "error": actuation.error,
                    "retry_later": actuation.retry_later,
                },
            )
        for c in group.decision.location_changes:
            sent = ADD if c.action == "add" else REMOVE
            log.info(
                f"location {c.action} applied"
                if sent in actuation.succeeded
                else f"location {c.action} planned",
                extra={
                    "group_id": group.group_id,
                    "location": c.location,
                    "dry_run": actuation.dry_run,
                    "reason": c.reason,
                },
            )
        for d in group.decision.changed_locations:
            changed += 1
            log.info(
                "capacity change applied"
                if actuation.capacity_updated
                else "capacity change planned",
                extra={
                    "group_id": group.group_id,
                    "location": d.location,
                    "from": d.current.describe(),
                    "to": d.decided.describe(),
                    "in_use": d.in_use,
                    "dry_run": actuation.dry_run,
                    "reason": d.reason,
                },
            )
    log.info(
        "tick",
        extra={
            "groups": len(report.groups),
            "changes": changed,
            "ok": report.ok,
            "duration_s": round(report.duration_s, 4),
            "calls": dict(report.calls),
        },
    )


class PauseControl(Protocol):
    def is_paused(self, group_id: str | None = None) -> bool: ...
    def pause_state(self) -> dict[str, object]: ...
    def set_paused(self, paused: bool, group_id: str | None = None) -> None: ...


def build_http_app(
    metrics: MetricsSink,
    health: Health,
    *,
    control: PauseControl | None = None,
    token: str | None = None,
) -> web.Application:
    """/metrics, /healthz, /readyz; and, only when a ``token`` is configured, POST /pause and
    POST /resume (``?group=ID`` for one group) with ``Authorization: Bearer <token>``."""

    async def metrics_handler(_: web.Request) -> web.Response:
        metrics.leader.set(1 if health.leader else 0)
        return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive", "ticks": health.ticks})

    async def readyz(_: web.Request) -> web.Response:
        ready, why = health.ready(time.time())
        body = {"ready": ready, "reason": why, "leader": health.leader}
        return web.json_response(body, status=200 if ready else 503)

    def authorised(request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        return token is not None and hmac.compare_digest(given.encode(), expected.encode())

    def pause_handler(paused: bool) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handler(request: web.Request) -> web.Response:
            if control is None or token is None:
                return web.json_response({"error": "pause endpoints are disabled"}, status=404)
            if not authorised(request):
                return web.json_response({"error": "unauthorised"}, status=401)
            group = request.query.get("group") or None
            control.set_paused(paused, group)
            return web.json_response(control.pause_state())

        return handler

    async def pause_status(_: web.Request) -> web.Response:
        if control is None:
            return web.json_response({"error": "no controller"}, status=404)
        return web.json_response(control.pause_state())

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/pause", pause_status)
    app.router.add_post("/pause", pause_handler(True))
    app.router.add_post("/resume", pause_handler(False))
    return app


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as error:  # the port is taken, or the address is not this machine's
        await runner.cleanup()
        raise ConfigError(
            "http_host/http_port (AUTOSCALER_HTTP_HOST/AUTOSCALER_HTTP_PORT)",
            [f"cannot listen on {host}:{port}: {error.strerror or error}"],
        ) from None
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    return runner, bound
