"""``autoscaler demo``: the whole product in one command, on the embedded emulator.

What runs, all real: the HTTP emulator on a free loopback port with a scaled clock; a load
generator that replays a day of player demand as StartStreamSession / TerminateStreamSession
calls through aiobotocore; and the controller daemon (``runtime.run_daemon``, the same code as
``autoscaler run``) with ``policies/default.yaml``, selecting its group by tag.

For comparison the same sessions also go, call for call, to a second stream group that uses
the service's own static idle buffer (AlwaysOn 0, TargetIdle k, Maximum high) — what a studio
gets without a controller. k is sized the way users size it: enough for the peak hour's
arrivals over the provisioning delay, held all day.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import signal
import tempfile
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiobotocore.session import AioSession
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from autoscaler.backtest.sessions import SessionPlan
from autoscaler.domain.classes import round_up_to_tenancy, stream_class_info
from autoscaler.domain.clock import ScaledClock
from autoscaler.domain.models import TickReport
from autoscaler.outfiles import PLOT_EXTRA, can_draw, save_png
from autoscaler.policy.config import shipped_policy
from autoscaler.runtime import run_daemon
from autoscaler.settings import load_settings
from autoscaler.twin.emulator import Emulator
from autoscaler.twin.model import LocationConfigInput

log = logging.getLogger(__name__)

PRIMARY = "us-west-2"
SECOND = "us-east-2"
LOCATIONS = (PRIMARY, SECOND)
DEMO_TAG = {"autoscaler-policy": "default"}  # what policies/default.yaml selects
SAMPLE_EVERY_S = 60.0  # simulated seconds between two points of the chart
WARM_FLOOR_S = 600.0  # the players already online at the start hold a floor this long
CONTROLLER_START_S = 120.0  # the controller starts once those players are placed


@dataclass
class DemoOptions:
    hours: float = 24.0
    time_scale: float = 720.0  # 24 simulated hours in 2 wall minutes
    peak: int = 40
    stream_class: str = "gen4n_high"
    seed: int = 7
    trace: Path | None = None
    series: str | None = None
    policy: Path = field(default_factory=shipped_policy)
    chart: Path | None = None
    interval_s: float = 60.0  # simulated seconds between controller ticks
    live: bool = True


@dataclass
class Timeline:
    """One row per SAMPLE_EVERY_S of simulated time, per group and location."""

    t: list[float] = field(default_factory=list)
    rows: dict[tuple[str, str], dict[str, list[float]]] = field(default_factory=dict)

    def add(self, key: tuple[str, str], **values: float) -> None:
        series = self.rows.setdefault(key, {})
        for name, value in values.items():
            series.setdefault(name, []).append(value)


@dataclass
class DemoState:
    started: int = 0
    start_failed: int = 0
    ended: int = 0
    decisions: deque[str] = field(default_factory=lambda: deque(maxlen=6))
    forecasts: dict[str, float] = field(default_factory=dict)
    ticks: int = 0
    applied_changes: int = 0


def demand_plan(options: DemoOptions) -> SessionPlan:
    """The sessions to replay: the user's trace, or the project's synthetic diurnal day."""
    from autoscaler.backtest import sessions, synthetic, traces  # noqa: PLC0415

    days = options.hours / 24.0
    if options.trace is not None:
        trace = traces.read_concurrency(options.trace, options.series)
    else:
        trace = synthetic.synthetic_trace(
            peak=float(options.peak), days=max(1.0, math.ceil(days)) + 1, seed=options.seed
        )
    return sessions.plan_sessions(
        trace,
        peak=float(options.peak),
        seed=options.seed,
        days=days,
        locations={PRIMARY: 0.6, SECOND: 0.4},
    )


def static_idle_buffer(plan: SessionPlan, tenancy: int, windows: bool) -> int:
    """What a user sets TargetIdle to without a controller: the peak hour's arrivals over
    the provisioning delay (p99 of a Poisson count), held all day."""
    if len(plan.arrival_s) == 0:
        return tenancy
    hours = max(1, math.ceil(plan.horizon_s / 3600.0))
    counts = [0] * hours
    for arrival in plan.arrival_s[plan.warm_start :]:
        counts[min(hours - 1, int(arrival // 3600.0))] += 1
    peak_rate = max(counts) / 3600.0
    lead = (240.0 if windows else 60.0) * 1.8
    mean = peak_rate * lead
    k = mean + 2.33 * math.sqrt(mean) + 1
    return max(tenancy, round_up_to_tenancy(math.ceil(k), tenancy))


async def _client(url: str) -> Any:
    session = AioSession()
    return session.create_client(
        "gameliftstreams",
        region_name=PRIMARY,
        endpoint_url=url,
        aws_access_key_id="demo",
        aws_secret_access_key="demo",  # noqa: S106  (the emulator accepts any credentials)
    )


@contextlib.asynccontextmanager
async def gameliftstreams(url: str) -> AsyncIterator[Any]:
    async with await _client(url) as client:
        yield client


async def _wait_until(clock: ScaledClock, when: float, stop: asyncio.Event) -> bool:
    while not stop.is_set():
        delay = (when - clock.now()) / clock.scale
        if delay <= 0:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=min(delay, 0.5))
    return False


async def load_generator(
    *,
    client: Any,
    clock: ScaledClock,
    plan: SessionPlan,
    group_ids: list[str],
    app_id: str,
    state: DemoState,
    stop: asyncio.Event,
    t0: float,
) -> None:
    """Start every session of ``plan`` in every group at its arrival; end it after its
    duration. Real API calls through aiobotocore."""
    ends: list[tuple[float, str, str]] = []  # (when, group, session arn)
    pending: set[asyncio.Task[None]] = set()

    async def start(gid: str, preferred: str, duration: float) -> None:
        other = SECOND if preferred == PRIMARY else PRIMARY
        try:
            response = await client.start_stream_session(
                Identifier=gid,
                ApplicationIdentifier=app_id,
                Protocol="WebRTC",
                SignalRequest="demo-offer",
                Locations=[preferred, other],
            )
        except Exception as error:  # a refused start is a failed player, not a crash
            log.debug("start refused: %s", error)
            state.start_failed += 1
            return
        state.started += 1
        ends.append((clock.now() + duration, gid, response["Arn"]))

    async def terminate(gid: str, arn: str) -> None:
        with contextlib.suppress(Exception):  # it may have failed placement meanwhile
            await client.terminate_stream_session(
                Identifier=gid, StreamSessionIdentifier=arn.rsplit("/", 1)[-1]
            )
        state.ended += 1

    for arrival, duration, loc in zip(plan.arrival_s, plan.duration_s, plan.location, strict=True):
        if not await _wait_until(clock, t0 + float(arrival), stop):
            break
        now = clock.now()
        due = [e for e in ends if e[0] <= now]
        if due:
            ends[:] = [e for e in ends if e[0] > now]
            for _, gid, arn in due:
                task = asyncio.create_task(terminate(gid, arn))
                pending.add(task)
                task.add_done_callback(pending.discard)
        for gid in group_ids:
            task = asyncio.create_task(start(gid, LOCATIONS[int(loc)], float(duration)))
            pending.add(task)
            task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending, timeout=10)


async def _setup(
    emulator: Emulator, options: DemoOptions, buffer_k: int, plan: SessionPlan
) -> tuple[str, str, str]:
    model = emulator.model
    app = model.create_application(
        region=PRIMARY,
        description="demo game",
        runtime={"Type": "PROTON", "Version": "20241007"},
        executable_path="bin/game",
        source_uri="s3://demo-bucket/game/",
    )
    info = stream_class_info(options.stream_class)
    high = round_up_to_tenancy(options.peak * 2, info.tenancy)
    # Players already streaming when the demo starts (the plan's warm start) get a floor, so
    # neither group starts the day with a flood of cold starts.
    warm = [0] * len(LOCATIONS)
    for loc in plan.location[: plan.warm_start]:
        warm[int(loc)] += 1
    floor = {
        name: round_up_to_tenancy(n, info.tenancy) for name, n in zip(LOCATIONS, warm, strict=True)
    }
    managed = model.create_stream_group(
        region=PRIMARY,
        description="managed by autoscaler (policies/default.yaml)",
        stream_class=options.stream_class,
        default_application_id=app.app_id,
        locations=[
            LocationConfigInput(loc, always_on=floor[loc], target_idle=buffer_k, maximum=high)
            for loc in LOCATIONS
        ],
        tags=dict(DEMO_TAG),
    )
    baseline = model.create_stream_group(
        region=PRIMARY,
        description="static idle buffer (no controller)",
        stream_class=options.stream_class,
        default_application_id=app.app_id,
        locations=[
            LocationConfigInput(loc, always_on=floor[loc], target_idle=buffer_k, maximum=high)
            for loc in LOCATIONS
        ],
        tags={"autoscaler-policy": "none"},
    )
    return app.app_id, managed.group_id, baseline.group_id


def _reset_floor(emulator: Emulator, group_id: str, options: DemoOptions, buffer_k: int) -> None:
    info = stream_class_info(options.stream_class)
    high = round_up_to_tenancy(options.peak * 2, info.tenancy)
    emulator.model.update_stream_group(
        group_id,
        locations=[
            LocationConfigInput(loc, always_on=0, target_idle=buffer_k, maximum=high)
            for loc in LOCATIONS
        ],
    )


async def _admin(url: str, path: str) -> dict[str, Any]:
    """Read one of the emulator's admin endpoints over HTTP, as any user could."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/_emulator/{path}") as response,
    ):
        response.raise_for_status()
        body: dict[str, Any] = await response.json()
        return body


def _summary_rows(usage: dict[str, Any], names: dict[str, str]) -> list[dict[str, Any]]:
    rows = []
    for gid, label in names.items():
        group = usage.get("groups", {}).get(gid, {})
        locations = group.get("locations", {})
        alloc = sum(float(v.get("allocated_slot_hours", 0.0)) for v in locations.values())
        in_use = sum(float(v.get("in_use_slot_hours", 0.0)) for v in locations.values())
        cost = sum(float(v.get("cost_usd", 0.0)) for v in locations.values())
        instant = sum(int(v.get("sessions", {}).get("instant", 0)) for v in locations.values())
        cold = sum(int(v.get("sessions", {}).get("cold", 0)) for v in locations.values())
        failed = sum(int(v.get("sessions", {}).get("failed", 0)) for v in locations.values())
        total = max(1, instant + cold + failed)
        rows.append(
            {
                "policy": label,
                "group_id": gid,
                "cost": cost,
                "allocated_slot_hours": alloc,
                "in_use_slot_hours": in_use,
                "cost_ratio": alloc / in_use if in_use > 0 else float("nan"),
                "instant": instant / total,
                "cold": cold / total,
                "failed": failed / total,
                "sessions": instant + cold + failed,
            }
        )
    return rows


def _summary_table(rows: list[dict[str, Any]], hours: float) -> Table:
    table = Table(title=f"demo summary: {hours:g} simulated hours, same demand for both")
    for col in ("policy", "cost $", "slot-h", "ratio to in-use", "instant", "cold", "failed"):
        table.add_column(col, justify="right" if col != "policy" else "left")
    for row in rows:
        table.add_row(
            row["policy"],
            f"{row['cost']:.2f}",
            f"{row['allocated_slot_hours']:.1f}",
            f"{row['cost_ratio']:.2f}",
            f"{100 * row['instant']:.1f}%",
            f"{100 * row['cold']:.1f}%",
            f"{100 * row['failed']:.2f}%",
        )
    return table


def _live_view(
    emulator: Emulator,
    names: dict[str, str],
    state: DemoState,
    progress: Progress,
) -> Group:
    table = Table(title="live: per group and location (slots)")
    for col in (
        "group",
        "location",
        "in use",
        "waiting",
        "idle",
        "always-on",
        "target-idle",
        "maximum",
        "forecast",
        "instant",
        "failed",
        "cost $",
    ):
        table.add_column(col, justify="right" if col not in ("group", "location") else "left")
    usage = emulator.usage_json().get("groups", {})
    for gid, label in names.items():
        view = emulator.model.get_stream_group(gid)
        snaps = {s.name: s for s in emulator.model.location_snapshots(gid)}
        for loc in view.locations:
            u = usage.get(gid, {}).get("locations", {}).get(loc.name, {})
            sessions = u.get("sessions", {})
            total = max(1, sum(int(sessions.get(k, 0)) for k in ("instant", "cold", "failed")))
            snap = snaps.get(loc.name)
            forecast = state.forecasts.get(f"{gid}/{loc.name}") if label == "autoscaler" else None
            table.add_row(
                label,
                loc.name,
                str(snap.in_use if snap else loc.allocated - loc.idle),
                str(snap.waiting if snap else 0),
                str(loc.idle),
                str(loc.always_on),
                str(loc.target_idle),
                str(loc.maximum),
                "-" if forecast is None else f"{forecast:.1f}",
                f"{100 * int(sessions.get('instant', 0)) / total:.1f}%",
                str(int(sessions.get("failed", 0))),
                f"{float(u.get('cost_usd', 0.0)):.2f}",
            )
    decisions = Table(title="last decisions of the controller", show_header=False)
    decisions.add_column("decision", overflow="fold")
    for line in state.decisions:
        decisions.add_row(line)
    return Group(progress, table, decisions)


def _record(emulator: Emulator, names: dict[str, str], timeline: Timeline, t: float) -> None:
    timeline.t.append(t)
    usage = emulator.usage_json().get("groups", {})
    for gid in names:
        view = emulator.model.get_stream_group(gid)
        snaps = {s.name: s for s in emulator.model.location_snapshots(gid)}
        for loc in view.locations:
            snap = snaps.get(loc.name)
            failed = usage.get(gid, {}).get("locations", {}).get(loc.name, {}).get("sessions", {})
            timeline.add(
                (gid, loc.name),
                in_use=float(snap.in_use if snap else 0),
                demand=float((snap.in_use + snap.waiting) if snap else 0),
                allocated=float(loc.allocated),
                always_on=float(loc.always_on),
                target_idle=float(loc.target_idle or 0),
                maximum=float(loc.maximum or 0),
                failed=float(failed.get("failed", 0)),
            )


def save_chart(timeline: Timeline, names: dict[str, str], path: Path) -> Path:
    """Demand, in use and the capacity layers over time, one panel per location, both groups."""
    import matplotlib  # noqa: PLC0415  (optional dependency, only for the chart)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    if not timeline.t:
        raise ValueError("nothing recorded")
    hours = [(t - timeline.t[0]) / 3600.0 for t in timeline.t]
    order = list(names)
    keys = sorted(timeline.rows, key=lambda k: (order.index(k[0]), k[1]))
    fig, axes = plt.subplots(len(keys), 1, figsize=(11, 3.2 * len(keys)), sharex=True)
    axes_list = list(axes) if len(keys) > 1 else [axes]
    for ax, key in zip(axes_list, keys, strict=True):
        gid, loc = key
        rows = timeline.rows[key]
        n = len(rows["in_use"])
        xs = hours[:n]
        ax.fill_between(xs, rows["allocated"], step="post", alpha=0.25, label="allocated (billed)")
        ax.step(xs, rows["always_on"], where="post", label="always-on", linewidth=1.2)
        ax.step(xs, rows["maximum"], where="post", label="maximum", linestyle=":", linewidth=1)
        ax.step(xs, rows["target_idle"], where="post", label="target idle", linewidth=1)
        ax.plot(xs, rows["demand"], label="demand (in use + waiting)", color="black", lw=1.2)
        failed = rows["failed"]
        new_failures = [max(0.0, failed[i] - (failed[i - 1] if i else 0.0)) for i in range(n)]
        fx = [x for x, f in zip(xs, new_failures, strict=True) if f > 0]
        if fx:
            ax.scatter(fx, [0] * len(fx), marker="x", color="red", label="placement failures")
        ax.set_title(f"{names[gid]} — {loc}")
        ax.set_ylabel("slots")
        ax.grid(alpha=0.3)
    axes_list[0].legend(loc="upper left", fontsize=8, ncols=3)
    axes_list[-1].set_xlabel("simulated hours")
    fig.tight_layout()
    return save_png(fig, path, "--chart", dpi=100)


async def run_demo(options: DemoOptions, console: Console | None = None) -> dict[str, Any]:
    """Run the demo; return the summary (also printed). Ctrl-C ends early, still summarised.

    The controller's state (its SQLite history) lives in a scratch folder removed at the
    end; the chart is kept (``options.chart``, else a folder of its own under the temp dir)."""
    with tempfile.TemporaryDirectory(prefix="autoscaler-demo-state-") as scratch:
        return await _run_demo(options, console, state_dir=Path(scratch))


async def _run_demo(
    options: DemoOptions, console: Console | None, *, state_dir: Path
) -> dict[str, Any]:
    console = console or Console(width=None if os.isatty(1) else 150)
    clock = ScaledClock(scale=options.time_scale)
    info = stream_class_info(options.stream_class)
    plan = demand_plan(options)
    t0 = clock.now() + 300.0  # demand starts once the groups are active
    buffer_k = static_idle_buffer(plan, info.tenancy, info.windows)
    state = DemoState()
    timeline = Timeline()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)

    async with Emulator(clock=clock, seed=options.seed) as emulator:
        assert emulator.url is not None
        app_id, managed, baseline = await _setup(emulator, options, buffer_k, plan)
        names = {managed: "autoscaler", baseline: f"static idle buffer k={buffer_k}"}
        settings = load_settings(
            None,
            env_file=None,
            policy_paths=[options.policy],
            aws_region=PRIMARY,
            aws_endpoint_url=emulator.url,
            state_dir=state_dir,
            http_port=0,
            interval_s=options.interval_s,
            log_level="WARNING",
            tick_timeout_s=10.0,
            api_rate_limits=False,  # a scaled clock: real-time quotas do not apply
        )

        def on_report(report: TickReport) -> None:
            state.ticks += 1
            for group in report.groups:
                if group.decision is None:
                    continue
                for d in group.decision.locations:
                    if d.forecast_in_use is not None:
                        state.forecasts[f"{group.group_id}/{d.location}"] = d.forecast_in_use
                    if (
                        d.changed
                        and group.actuation is not None
                        and group.actuation.capacity_updated
                    ):
                        state.applied_changes += 1
                        hours = (report.at - t0) / 3600.0
                        state.decisions.append(
                            f"h{hours:5.1f} {d.location}: {d.current.describe()} → "
                            f"{d.decided.describe()} — {d.reason}"
                        )

        os.environ.setdefault("AWS_ACCESS_KEY_ID", "demo")  # the emulator takes any key
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "demo")

        async def controller() -> int:
            # The players already online when the day starts (the plan's warm start) are
            # placed before the controller takes over, as in any real deployment: it starts
            # on a group that is already serving, not in the middle of a synthetic flood.
            if not await _wait_until(clock, t0 + CONTROLLER_START_S, stop):
                return 0
            return await run_daemon(
                settings,
                clock=clock,
                stop=stop,
                wall_interval_s=options.interval_s / options.time_scale,
                on_report=on_report,
            )

        daemon = asyncio.create_task(controller())
        end_at = t0 + options.hours * 3600.0
        progress = Progress(
            TextColumn("simulated day"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeRemainingColumn(),
        )
        task_id = progress.add_task("day", total=options.hours * 3600.0)
        async with gameliftstreams(emulator.url) as client:
            generator = asyncio.create_task(
                load_generator(
                    client=client,
                    clock=clock,
                    plan=plan,
                    group_ids=[managed, baseline],
                    app_id=app_id,
                    state=state,
                    stop=stop,
                    t0=t0,
                )
            )
            next_sample = clock.now()
            floor_reset = False
            with Live(
                _live_view(emulator, names, state, progress),
                console=console,
                refresh_per_second=4,
                transient=False,
                auto_refresh=options.live,
            ) as live:
                while not stop.is_set() and clock.now() < end_at and not daemon.done():
                    now = clock.now()
                    if not floor_reset and now >= t0 + WARM_FLOOR_S:
                        # the warm start is placed: the static group keeps only its buffer
                        _reset_floor(emulator, baseline, options, buffer_k)
                        floor_reset = True
                    if now >= next_sample:
                        _record(emulator, names, timeline, now)
                        next_sample = now + SAMPLE_EVERY_S
                    progress.update(task_id, completed=max(0.0, now - t0))
                    if options.live:
                        live.update(_live_view(emulator, names, state, progress))
                    await asyncio.sleep(min(0.25, SAMPLE_EVERY_S / options.time_scale))
                live.update(_live_view(emulator, names, state, progress))
            stop.set()
            await asyncio.wait({generator}, timeout=15)
        exit_code = await asyncio.wait_for(daemon, timeout=30)
        usage = await _admin(emulator.url, "usage")
        calls = await _admin(emulator.url, "calls")
        rows = _summary_rows(usage, names)
    chart_path: Path | None = None
    if not can_draw():
        console.print(f"chart: not drawn (matplotlib is not installed: {PLOT_EXTRA})", markup=False)
    elif len(timeline.t) >= 2:
        chart = options.chart or Path(tempfile.mkdtemp(prefix="autoscaler-demo-")) / "demo.png"
        chart_path = save_chart(timeline, names, chart)
    console.print()  # the live view leaves the cursor at the end of its last line
    console.print(_summary_table(rows, options.hours))
    console.print(
        f"sessions started {state.started}, refused {state.start_failed}; "
        f"controller ticks {state.ticks}; daemon exit {exit_code}"
    )
    if chart_path is not None:
        console.print(f"chart: {chart_path}", markup=False)
    return {
        "rows": rows,
        "chart": str(chart_path) if chart_path else None,
        "usage": usage,
        "calls": calls,
        "group_ids": {label: gid for gid, label in names.items()},
        "ticks": state.ticks,
        "sessions_started": state.started,
        "buffer_k": buffer_k,
        "daemon_exit": exit_code,
        "decisions": list(state.decisions),
        "applied_changes": state.applied_changes,
    }
