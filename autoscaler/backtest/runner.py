"""Replay a session plan through the controller's real pipeline, in virtual time.

Why it is built this way: a backtest is only worth something if what it scores is what the
daemon would do. So nothing here re-implements a decision: every tick is ``Controller.tick()``
(sample → store → plan → guard → actuate → report) reading and writing through the same ports
the daemon uses, with the policy's real plugin, against the in-process service model
(``twin.inprocess``) on a ``ManualClock``. The runner only owns the *world*: it creates the
stream group, injects each planned session at its arrival time with
``start_stream_session(end_after_s=duration)`` (the player quits after that long), moves the
clock, and reads the billing meter at the end. Baselines that are not controller policies
(static settings) run the same world with no controller.

Virtual time: the plan's t=0 is ``plan.t0_epoch_s`` (hour of day and weekday stay real for
seasonal policies). Before it, the group is created and warmed up so the run starts in steady
state: the plan's warm-start sessions (already in progress at t=0) are placed on capacity that
exists at t=0, and they are not scored (they did not arrive during the run). Every session that
arrives in ``[0, horizon)`` is scored: instant (placed on an idle slot at once), cold (waited,
then placed) or failed (``placementTimeout``, or refused because no requested location could
take it, e.g. ConflictException while the group is updating its locations). Cost is the
allocated slot-seconds metered over ``[0, horizon]``, the same window as the in-use bound;
after the horizon the world runs on (no new sessions, no ticks) until every session still
waiting has been placed or has failed, so late arrivals are scored too.

A controller-driven run starts where the policy's first decision puts capacity
(``first_decision``: one tick on a throwaway copy of the world), warmed up like a static
setting, so no policy is scored on the minutes its first buffer takes to provision.

Start waits are read per session from the model (``get_stream_session``; not an API call the
controller makes, so not counted) for the few sessions that did not start at once; a failed
session's wait is the time it waited before failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pydantic

from autoscaler.backtest import baselines
from autoscaler.backtest.scoring import (
    Aggregate,
    Result,
    aggregate,
    idle_split,
    in_use_bound,
    score,
)
from autoscaler.backtest.sessions import SessionPlan, most_in_progress, plan_sessions
from autoscaler.backtest.traces import longest_stretch, read_trace
from autoscaler.controller import Controller, ControllerOptions
from autoscaler.domain.classes import (
    STREAM_CLASSES,
    round_up_to_tenancy,
    stream_class_info,
    unknown_stream_class,
)
from autoscaler.domain.clock import ManualClock
from autoscaler.domain.errors import ConfigError, ConflictError
from autoscaler.domain.models import CapacityModel, CapacitySetting
from autoscaler.domain.policy import GroupSelector, Mode, Policy, Slo
from autoscaler.outfiles import check_destination, require_drawing
from autoscaler.policy.config import LoadedPolicy, load_policy_file, shipped_policy
from autoscaler.policy.plugin import ENTRY_POINT_GROUP, PluginRegistry, UnknownPluginError
from autoscaler.store import HistoryStore
from autoscaler.twin.inprocess import InProcessGameLiftStreams, config_of
from autoscaler.twin.model import ModelParams, ServiceModel

if TYPE_CHECKING:
    from autoscaler.backtest.parallel import RunPool

FloatArray = npt.NDArray[np.float64]

UPDATE_OPERATION = "UpdateStreamGroup"
_APP_RUNTIME = {"Type": "PROTON", "Version": "20241007"}
# How long before t=0 the group is created: activation plus many provisioning medians, so the
# warm-up capacity is ready at t=0 with certainty (sigma 0.35: 10 medians is z ≈ 6.6).
_WARMUP_MEDIANS = 10.0

log = logging.getLogger(__name__)


class WarmupError(RuntimeError):
    """The warm-up capacity was not ready at t=0 (model parameters far from the defaults)."""


@dataclass(frozen=True, slots=True)
class LocationTimeline:
    """Per tick (``RunOutcome.timeline_t``) counts of one location, for plots."""

    demand: FloatArray  # sessions in use + waiting
    in_use: FloatArray
    allocated: FloatArray
    always_on: FloatArray
    target_idle: FloatArray
    ceiling: FloatArray  # maximum (legacy: always-on + on-demand)
    failures: FloatArray  # sessions that failed in the interval ending at this tick


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one run did, before scoring. Times in seconds since the plan's t=0."""

    label: str
    params: Mapping[str, Any]
    stream_class: str
    tenancy: int
    capacity_model: CapacityModel
    allocated_slot_s: float  # billed over [0, horizon]
    kept_empty_slot_s: float  # of which, empty hosts the targets kept
    held_empty_slot_s: float  # of which, surplus empty hosts awaiting release
    instant: int
    cold: int
    failed: int
    refused: int  # of ``failed``: StartStreamSession refused (no ACTIVE requested location)
    waits_s: FloatArray  # one per scored session (instant 0)
    updates: int  # UpdateStreamGroup calls sent
    decisions: int  # controller ticks (0 for a static run)
    skipped_ticks: int  # ticks whose group report says it was not planned
    sessions: int  # scored sessions (instant + cold + failed)
    wall_s: float
    timeline_t: FloatArray | None = None
    timeline: Mapping[str, LocationTimeline] | None = None
    # Ticks on which the policy failed somewhere (a plugin error held a location, or a
    # fallback answered in its place), and the first such problem: the run then scores
    # the fallback as much as the policy.
    fallback_ticks: int = 0
    fallback_reason: str | None = None


@dataclass(slots=True)
class World:
    """The simulated account of one run: a model on a manual clock with one stream group."""

    clock: ManualClock
    model: ServiceModel
    group_id: str
    app_id: str
    region: str
    locations: tuple[str, ...]
    stream_class: str
    tenancy: int
    capacity_model: CapacityModel
    t0: float


def _setting_for(model: CapacityModel, always_on: int, idle: int, ceiling: int) -> CapacitySetting:
    if model is CapacityModel.LEGACY:
        return CapacitySetting(always_on=always_on, on_demand=max(0, ceiling - always_on))
    return CapacitySetting(always_on=always_on, target_idle=idle, maximum=max(ceiling, always_on))


def warm_counts(plan: SessionPlan) -> dict[str, int]:
    """Warm-start sessions per location."""
    idx = np.asarray(plan.location[: plan.warm_start])
    counts = np.bincount(idx, minlength=len(plan.locations))
    return {name: int(counts[i]) for i, name in enumerate(plan.locations)}


def peak_concurrency(plan: SessionPlan) -> dict[str, int]:
    """Most sessions in progress at once per location, if each started on arrival."""
    out: dict[str, int] = {}
    for i, name in enumerate(plan.locations):
        mine = plan.location == i
        out[name] = most_in_progress(plan.arrival_s[mine], plan.duration_s[mine])
    return out


def build_world(
    plan: SessionPlan,
    *,
    stream_class: str,
    capacity_model: CapacityModel,
    seed: int,
    initial: Mapping[str, CapacitySetting],
    params: ModelParams | None = None,
) -> World:
    """Create the group before t=0, warm it up, place the plan's warm-start sessions at t=0
    and leave the group at ``initial``."""
    info = stream_class_info(stream_class)
    p = params or ModelParams()
    median = p.provisioning_median_windows_s if info.windows else p.provisioning_median_linux_s
    t0 = plan.t0_epoch_s
    clock = ManualClock(t0 - p.group_activation_s - _WARMUP_MEDIANS * median)
    model = ServiceModel(clock=clock, seed=seed, params=p)
    region = plan.locations[0]
    app = model.create_application(
        region=region,
        description="backtest",
        runtime=dict(_APP_RUNTIME),
        executable_path="game",
        source_uri="s3://backtest/game",
    )
    warm = warm_counts(plan)
    configs = []
    for name in plan.locations:
        want = initial[name]
        # Warm-up: enough ready hosts for the warm sessions plus the initial idle buffer.
        slots = max(
            want.always_on, round_up_to_tenancy(warm[name] + want.idle_target, info.tenancy)
        )
        setting = _setting_for(capacity_model, slots, 0, max(slots, want.ceiling))
        configs.append(config_of(name, setting))
    group = model.create_stream_group(
        region=region,
        description="backtest",
        stream_class=stream_class,
        default_application_id=app.app_id,
        locations=configs,
    )
    clock.set(t0)
    model.advance(t0)
    for snap in model.location_snapshots(group.group_id):
        if snap.status != "ACTIVE" or snap.provisioning:
            raise WarmupError(
                f"location {snap.name} not ready at t=0 ({snap.status}, "
                f"{snap.provisioning} slots still provisioning)"
            )
    # Warm-start sessions (in progress at t=0) take their slots before the initial setting
    # applies, so a setting below them never releases hosts they are about to use.
    requested = [[name] for name in plan.locations]
    for k, duration in zip(
        plan.location[: plan.warm_start].tolist(),
        plan.duration_s[: plan.warm_start].tolist(),
        strict=True,
    ):
        model.start_stream_session(
            group.group_id,
            application_identifier=app.app_id,
            locations=requested[k],
            end_after_s=duration,
        )
    model.update_stream_group(
        group.group_id, locations=[config_of(n, initial[n]) for n in plan.locations]
    )
    return World(
        clock=clock,
        model=model,
        group_id=group.group_id,
        app_id=app.app_id,
        region=region,
        locations=plan.locations,
        stream_class=stream_class,
        tenancy=info.tenancy,
        capacity_model=capacity_model,
        t0=t0,
    )


def _settle_s(params: ModelParams) -> float:
    return (
        max(
            params.placement_timeout_always_on_s,
            params.placement_timeout_on_demand_linux_s,
            params.placement_timeout_on_demand_windows_s,
        )
        + 1.0
    )


@dataclass(slots=True)
class _Tally:
    instant: int = 0
    cold: int = 0
    failed: int = 0
    refused: int = 0
    waits: list[float] = field(default_factory=list)
    fail_times: list[tuple[float, int]] = field(default_factory=list)  # (t, location index)


def _resolve(world: World, pending: list[tuple[str, float, int]], tally: _Tally) -> None:
    """Score the sessions that were waiting and have since been placed or have failed; keep
    the others. Called at least once per ``ended_session_retention_s`` of model time, so an
    ended session is read before the model forgets it."""
    model = world.model
    still: list[tuple[str, float, int]] = []
    for sid, created, loc_index in pending:
        view = model.get_stream_session(world.group_id, sid)
        if view.wait_s is not None:
            tally.cold += 1
            tally.waits.append(view.wait_s)
        elif view.status in ("ERROR", "TERMINATED"):
            tally.failed += 1
            tally.waits.append(view.last_updated_at - created)
            tally.fail_times.append((view.last_updated_at - world.t0, loc_index))
        else:
            still.append((sid, created, loc_index))
    pending[:] = still


async def replay(
    world: World,
    plan: SessionPlan,
    *,
    tick: Callable[[], Awaitable[Any]] | None,
    interval_s: float = 60.0,
    timeline: bool = False,
    label: str = "run",
    params: Mapping[str, Any] | None = None,
    update_count: Callable[[], int] | None = None,
    progress: Callable[[float], None] | None = None,
) -> RunOutcome:
    """Drive ``world`` through ``plan``: sessions at their arrival times, ``tick()`` every
    ``interval_s`` from t=0 (none if ``tick`` is None), the meter read at the horizon.

    ``tick`` is any awaitable callable, usually ``Controller.tick`` (in-process or over HTTP);
    its result is inspected only for skipped groups. ``progress`` gets the fraction done.
    """
    started = time.perf_counter()
    model, clock, gid, app_id = world.model, world.clock, world.group_id, world.app_id
    t0 = world.t0
    horizon = plan.horizon_s
    arrivals: list[float] = plan.arrival_s.tolist()
    durations: list[float] = plan.duration_s.tolist()
    loc_index: list[int] = plan.location.tolist()
    requested = [[name] for name in plan.locations]
    n = len(arrivals)
    start = model.start_session
    i = plan.warm_start  # the warm-start sessions were placed by build_world, not scored
    base = model.usage()[gid]
    billed_before = sum(u.allocated_slot_s for u in base.values())
    kept_before = sum(u.kept_empty_slot_s for u in base.values())
    held_before = sum(u.held_empty_slot_s for u in base.values())

    tally = _Tally()
    pending: list[tuple[str, float, int]] = []
    settle = _settle_s(model.params)
    decisions = 0
    skipped = 0
    fallback_ticks = 0
    fallback_reason: str | None = None
    tick_times: list[float] = []
    rows: dict[str, list[list[float]]] = {name: [] for name in plan.locations}
    name_index = {name: k for k, name in enumerate(plan.locations)}

    def inject_until(t_rel: float) -> None:
        nonlocal i
        waits = tally.waits
        while i < n and arrivals[i] < t_rel:
            at = t0 + arrivals[i]
            clock.set(at)
            k = loc_index[i]
            try:
                session_id, wait_s = start(
                    gid,
                    application_identifier=app_id,
                    locations=requested[k],
                    end_after_s=durations[i],
                )
            except ConflictError:
                tally.failed += 1
                tally.refused += 1
                waits.append(0.0)
                tally.fail_times.append((arrivals[i], k))
            else:
                if wait_s is None:
                    pending.append((session_id, at, k))
                else:
                    tally.instant += 1
                    waits.append(0.0)
            i += 1

    def record(t_rel: float) -> None:
        tick_times.append(t_rel)
        for snap in model.location_snapshots(gid):
            if snap.name in rows:
                rows[snap.name].append(
                    [
                        snap.in_use + snap.waiting,
                        snap.in_use,
                        snap.allocated,
                        snap.always_on,
                        snap.idle_target,
                        snap.ceiling,
                    ]
                )

    # Static runs step through the same instants: waiting sessions are resolved each step.
    ticks = math.floor(horizon / interval_s + 1e-9) + 1
    for k in range(ticks):
        t_rel = k * interval_s
        inject_until(t_rel)
        clock.set(t0 + t_rel)
        model.advance(t0 + t_rel)
        if pending:
            _resolve(world, pending, tally)
        if tick is not None:
            report = await tick()
            decisions += 1
            groups = getattr(report, "groups", ())
            if any(getattr(g, "skipped", None) for g in groups):
                skipped += 1
            for g in groups:
                problems = getattr(g, "policy_problems", ())
                if problems:
                    fallback_ticks += 1
                    if fallback_reason is None:
                        fallback_reason = problems[0]
                        # Said now, not only in the report: a webhook that times out makes
                        # every later decision wait for it, and the run may last hours.
                        log.warning(
                            "backtest %s: the policy failed at decision %s of %s, so a"
                            " fallback or a hold decided instead (%s); the report will say"
                            " on how many decisions. Ctrl-C stops and prints what finished.",
                            label,
                            f"{decisions:,}",
                            f"{ticks:,}",
                            fallback_reason,
                        )
                    break
        if timeline:
            record(t_rel)
        if progress is not None and k % 1440 == 0:
            progress(t_rel / horizon if horizon > 0 else 1.0)
    inject_until(horizon)
    clock.set(t0 + horizon)
    model.advance(t0 + horizon)
    end = model.usage()[gid]
    billed = sum(u.allocated_slot_s for u in end.values()) - billed_before
    kept = sum(u.kept_empty_slot_s for u in end.values()) - kept_before
    held = sum(u.held_empty_slot_s for u in end.values()) - held_before
    # Let every session still waiting be placed or fail (no ticks, no new sessions).
    step = min(interval_s, model.params.ended_session_retention_s / 2)
    after = 0.0
    while pending:
        _resolve(world, pending, tally)
        if after > settle:  # pragma: no cover - the model guarantees an outcome by then
            raise AssertionError(f"{len(pending)} sessions still waiting after the horizon")
        after += step
        clock.set(t0 + horizon + after)
        model.advance(t0 + horizon + after)
    if progress is not None:
        progress(1.0)

    updates = update_count() if update_count is not None else 0
    timeline_out: dict[str, LocationTimeline] | None = None
    timeline_t: FloatArray | None = None
    if timeline:
        timeline_t = np.asarray(tick_times, dtype=np.float64)
        timeline_out = {}
        for name, data in rows.items():
            table = np.asarray(data, dtype=np.float64).reshape(-1, 6)
            fails = np.zeros(len(tick_times))
            times = [t for t, li in tally.fail_times if li == name_index[name]]
            if times and tick_times:
                slot = np.searchsorted(timeline_t, np.asarray(times), side="left")
                np.add.at(fails, np.minimum(slot, len(tick_times) - 1), 1.0)
            timeline_out[name] = LocationTimeline(
                demand=table[:, 0],
                in_use=table[:, 1],
                allocated=table[:, 2],
                always_on=table[:, 3],
                target_idle=table[:, 4],
                ceiling=table[:, 5],
                failures=fails,
            )
    return RunOutcome(
        label=label,
        params=dict(params or {}),
        stream_class=world.stream_class,
        tenancy=world.tenancy,
        capacity_model=world.capacity_model,
        allocated_slot_s=billed,
        kept_empty_slot_s=kept,
        held_empty_slot_s=held,
        instant=tally.instant,
        cold=tally.cold,
        failed=tally.failed,
        refused=tally.refused,
        waits_s=np.asarray(tally.waits, dtype=np.float64),
        updates=updates,
        decisions=decisions,
        skipped_ticks=skipped,
        sessions=tally.instant + tally.cold + tally.failed,
        wall_s=time.perf_counter() - started,
        timeline_t=timeline_t,
        timeline=timeline_out,
        fallback_ticks=fallback_ticks,
        fallback_reason=fallback_reason,
    )


def fit_policy(policy: Policy, group_id: str, max_capacity: int) -> Policy:
    """The policy pointed at the simulated group, with the fleet's bounds.

    A policy file names real groups and carries bounds and budgets sized for them; a backtest
    at another scale keeps everything that shapes decisions (plugin, params, behaviour, SLO,
    fallback, staleness, drift) and replaces the selector, the per-location bounds (one
    default: the file's minimum, a maximum of at least ``max_capacity``) and the budget caps
    (none: a cap sized for another fleet would make any scale look bad)."""
    default = policy.default_bounds
    bounds = dataclasses.replace(default, max_capacity=max(default.max_capacity, max_capacity))
    return dataclasses.replace(
        policy,
        selector=GroupSelector(ids=(group_id,)),
        default_bounds=bounds,
        location_bounds={},
        budget=dataclasses.replace(policy.budget, max_cost_per_hour=None, max_cost_per_month=None),
        # A backtest scores what the policy would do, so it must act: a dry run or a
        # ForecastOnly policy (a shadow deployment's file) is scored as if it applied.
        dry_run=False,
        mode=Mode.FORECAST_AND_SCALE,
        paused=False,
    )


def high_maximum(plan: SessionPlan, tenancy: int) -> dict[str, int]:
    """A maximum no sensible run reaches: twice the plan's peak concurrency (+ one host)."""
    return {
        name: round_up_to_tenancy(2 * peak + tenancy, tenancy)
        for name, peak in peak_concurrency(plan).items()
    }


def controller_initial(
    plan: SessionPlan, tenancy: int, capacity_model: CapacityModel
) -> dict[str, CapacitySetting]:
    """Where a controller-driven run starts: always-on covering the sessions in progress at
    t=0, burst room up to ``high_maximum``; the first tick then sets what the policy wants."""
    warm = warm_counts(plan)
    top = high_maximum(plan, tenancy)
    return {
        name: _setting_for(capacity_model, round_up_to_tenancy(warm[name], tenancy), 0, top[name])
        for name in plan.locations
    }


def _controller_for(
    world: World,
    plan: SessionPlan,
    policy: Policy,
    adapter: InProcessGameLiftStreams,
    *,
    interval_s: float,
    registry: PluginRegistry | None,
) -> tuple[HistoryStore, Controller]:
    """A controller managing ``world``'s group with ``policy``, on an in-memory store."""
    top = max(high_maximum(plan, world.tenancy).values(), default=world.tenancy)
    fitted = fit_policy(policy, world.group_id, top)
    # In memory, with the column cache: history reads are slices (same rows as SQLite's).
    store = HistoryStore(
        ":memory:", retention_s=fitted.history_window_s + 86400.0, cache_columns=True
    )
    controller = Controller(
        reader=adapter,
        writer=adapter,
        store=store,
        policies=[fitted],
        plugins=registry or PluginRegistry(),
        clock=world.clock,
        # Guard memory: written hourly only (never re-read here).
        options=ControllerOptions(
            interval_s=interval_s,
            store_in_thread=False,
            persist_memory_every=60,
            persist_memory_on_apply=False,
            prune_every_s=None,
            instant_start_s=instant_start_threshold(world.model.params),
        ),
    )
    return store, controller


def instant_start_threshold(params: ModelParams) -> float:
    """The controller's late-start threshold for a run on a model with ``params``: its launch
    time (request → ACTIVE → CONNECTED, the same for every session) plus 50 ms.

    Why so tight: the scoring counts every session placed from the wait queue as cold, even
    one that waited 0.2 s for a slot a departure freed (a third of the cold starts at peak 400
    on Linux waited under 1.3 s), and a model without launch jitter lets the sampler see those
    too. A real deployment sets ``instant_start_s`` above its own launch time's spread."""
    return params.session_start_s + (params.client_connect_s or 0.0) + 0.05


def first_decision(
    plan: SessionPlan,
    *,
    policy: Policy,
    stream_class: str,
    capacity_model: CapacityModel,
    seed: int,
    interval_s: float = 60.0,
    params: ModelParams | None = None,
    registry: PluginRegistry | None = None,
) -> dict[str, CapacitySetting]:
    """Where a controller-driven run starts: the setting the policy's first tick applies at
    t=0, asked of a throwaway copy of the world started at ``controller_initial``.

    Why: a run that started at the bare warm-start capacity would score every policy on the
    minutes its first buffer takes to provision (on Windows legacy, those sessions wait with
    the 75 s always-on timeout and fail), an artefact of the harness that the static
    baselines, warmed up to their own setting, do not pay. Starting where the first decision
    puts capacity is a controller that was already running when the window opens."""
    tenancy = stream_class_info(stream_class).tenancy
    world = build_world(
        plan,
        stream_class=stream_class,
        capacity_model=capacity_model,
        seed=seed,
        initial=controller_initial(plan, tenancy, capacity_model),
        params=params,
    )
    adapter = InProcessGameLiftStreams(world.model, world.region)

    async def probe() -> None:
        store, controller = _controller_for(
            world, plan, policy, adapter, interval_s=interval_s, registry=registry
        )
        try:
            await controller.tick()
        finally:
            store.close()

    asyncio.run(probe())
    state = world.model.group_state(world.group_id)
    return {loc.name: loc.setting for loc in state.locations}


def run_policy(
    plan: SessionPlan,
    *,
    policy: Policy | None,
    stream_class: str,
    capacity_model: CapacityModel,
    seed: int,
    interval_s: float = 60.0,
    params: ModelParams | None = None,
    initial: Mapping[str, CapacitySetting] | None = None,
    timeline: bool = False,
    registry: PluginRegistry | None = None,
    label: str | None = None,
    label_params: Mapping[str, Any] | None = None,
    progress: Callable[[float], None] | None = None,
    instrument: Callable[[Controller, InProcessGameLiftStreams, HistoryStore], None] | None = None,
) -> RunOutcome:
    """One run of ``plan``: with ``policy`` through a real ``Controller`` (in-process adapter,
    in-memory history store, no store thread), or with ``policy`` None as static capacity
    ``initial`` (required then). Deterministic for a given plan, seed and policy.

    ``instrument`` (benchmarks only) sees the controller, adapter and store before the first
    tick, e.g. to time their methods; it must not change what they do."""
    if initial is None:
        if policy is None:
            raise ValueError("a static run (policy None) needs its capacity in 'initial'")
        initial = first_decision(
            plan,
            policy=policy,
            stream_class=stream_class,
            capacity_model=capacity_model,
            seed=seed,
            interval_s=interval_s,
            params=params,
            registry=registry,
        )
    world = build_world(
        plan,
        stream_class=stream_class,
        capacity_model=capacity_model,
        seed=seed,
        initial=initial,
        params=params,
    )
    name = label or (policy.name if policy is not None else "static")
    if policy is None:
        return asyncio.run(
            replay(
                world,
                plan,
                tick=None,
                interval_s=interval_s,
                timeline=timeline,
                label=name,
                params=label_params,
                progress=progress,
            )
        )
    adapter = InProcessGameLiftStreams(world.model, world.region)

    async def go() -> RunOutcome:
        store, controller = _controller_for(
            world, plan, policy, adapter, interval_s=interval_s, registry=registry
        )
        try:
            if instrument is not None:
                instrument(controller, adapter, store)
            return await replay(
                world,
                plan,
                tick=controller.tick,
                interval_s=interval_s,
                timeline=timeline,
                label=name,
                params=label_params,
                update_count=lambda: adapter.counts.get(UPDATE_OPERATION, 0),
                progress=progress,
            )
        finally:
            store.close()

    return asyncio.run(go())


def score_outcome(
    outcome: RunOutcome,
    plan: SessionPlan,
    *,
    price_per_slot_hour: float,
    slo: Slo | None = None,
    bound_slot_h: float | None = None,
) -> Result:
    """The scored result of a run (``scoring.score`` against the plan's in-use bound)."""
    bound = bound_slot_h if bound_slot_h is not None else in_use_bound(plan, outcome.tenancy)
    return score(
        policy=outcome.label,
        params=outcome.params,
        allocated_slot_s=outcome.allocated_slot_s,
        kept_empty_slot_s=outcome.kept_empty_slot_s,
        held_empty_slot_s=outcome.held_empty_slot_s,
        bound_slot_h=bound,
        price_per_slot_hour=price_per_slot_hour,
        instant=outcome.instant,
        cold=outcome.cold,
        failed=outcome.failed,
        waits_s=outcome.waits_s,
        updates=outcome.updates,
        wall_s=outcome.wall_s,
        slo=slo,
        decisions=outcome.decisions,
        fallback_decisions=outcome.fallback_ticks,
        fallback_reason=outcome.fallback_reason,
    )


def static_run(
    plan: SessionPlan,
    settings: Mapping[str, CapacitySetting],
    *,
    stream_class: str,
    capacity_model: CapacityModel,
    seed: int,
    label: str,
    label_params: Mapping[str, Any],
    params: ModelParams | None = None,
    timeline: bool = False,
) -> RunOutcome:
    """Shorthand for a run with fixed capacity and no controller."""
    return run_policy(
        plan,
        policy=None,
        stream_class=stream_class,
        capacity_model=capacity_model,
        seed=seed,
        params=params,
        initial=settings,
        timeline=timeline,
        label=label,
        label_params=label_params,
    )


# ---------------------------------------------------------------------------------------------
# A whole backtest: our policy and the baselines on the same plans, scored and summarised.

BUILTIN_PLUGINS = {
    "target-tracking": "autoscaler.policy.builtin.target_tracking:TargetTrackingPolicy",
    "buffer": "autoscaler.policy.builtin.buffer:BufferPolicy",
    "slo": "autoscaler.policy.builtin.slo:SloPolicy",
    "predictive": "autoscaler.policy.builtin.predictive:PredictivePolicy",
}
# The shipped recommended policy (a source checkout keeps policies/ next to the package).
DEFAULT_POLICY_FILE = shipped_policy()
MAX_INTERP_GAP_S = 3 * 3600.0
DEFAULT_PEAK = 400.0  # a concurrency trace's peak when none is given (the benchmark's larger)
# ``--peak recorded``: replay a concurrency trace at its own scale (a studio's own history).
AS_RECORDED = "recorded"
# The largest fleet a backtest simulates: it holds every session of the window in memory
# (about 9,000 sessions per day and 100 sessions of peak), and 4,000 is benchmark.md's "large".
MAX_PEAK = 20_000.0
SILENCE_NOTE_S = 86400.0  # a session log's longest silence the report's window notes
Peak = float | Literal["recorded"]


def backtest_registry() -> PluginRegistry:
    """Installed plugins, the built-ins even where the installed metadata predates them, and
    the ``hourly-predictive`` baseline."""
    installed = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    declared = [
        EntryPoint(name=name, value=target, group=ENTRY_POINT_GROUP)
        for name, target in BUILTIN_PLUGINS.items()
        if name not in installed
    ]
    registry = PluginRegistry(declared=declared)
    registry.register(baselines.HOURLY_PREDICTIVE, baselines.HourlyPredictivePolicy)
    return registry


def model_params(interval_s: float) -> ModelParams:
    """The benchmark's model parameters, except that ended sessions stay listed for two
    decision intervals instead of an hour. The sampler counts only sessions that ended in the
    last interval, so every decision is unchanged (tests/backtest/test_runner.py checks it);
    each tick's listing is ~2.5× shorter at steady state (C live + ~1.5 C ended in an hour
    with 40-minute sessions)."""
    return ModelParams(ended_session_retention_s=max(2.0 * interval_s, 120.0))


def load_plans(
    trace: str | Path,
    series: str | None,
    *,
    peak: Peak | None,
    days: float | None,
    seeds: Sequence[int],
) -> tuple[list[SessionPlan], str]:
    """One plan per seed from a trace file: a concurrency series is cut to its longest stretch
    without a hole longer than 3 h and scaled to ``peak`` (default ``DEFAULT_PEAK``;
    ``AS_RECORDED``: not scaled, the window's own peak); a session
    log is replayed as recorded, its first ``days`` if given (every seed gets the same
    sessions; the model's seed still differs), and cannot be scaled: a ``peak`` for it is an
    error rather than a setting silently ignored. Returns the plans and the series name."""
    loaded = read_trace(trace, series)
    if isinstance(loaded, SessionPlan):
        if peak is not None and peak != AS_RECORDED:
            raise ConfigError(
                str(trace),
                [
                    "--peak scales a concurrency trace; a session log is replayed as recorded "
                    f"(this one peaks at {loaded.peak_in_progress()} sessions in progress): "
                    "leave --peak out"
                ],
            )
        plan = loaded if days is None else loaded.first_days(days)
        return [plan for _ in seeds], series or "sessions"
    stretch = longest_stretch(loaded, MAX_INTERP_GAP_S)
    if stretch.duration_s <= 0:
        raise ConfigError(
            str(trace),
            [
                f"series {loaded.series!r} has no usable stretch: no two points with a value "
                f"at most {MAX_INTERP_GAP_S / 3600:g} h apart (a longer hole is never "
                "interpolated; timestamps in epoch milliseconds read as seconds look like "
                "that: give ISO 8601 or epoch seconds)"
            ],
        )
    scale_to = DEFAULT_PEAK if peak is None else None if peak == AS_RECORDED else float(peak)
    try:
        plans = [
            plan_sessions(
                stretch, peak=scale_to, seed=seed, days=days, max_interp_gap_s=MAX_INTERP_GAP_S
            )
            for seed in seeds
        ]
    except ConfigError as error:  # named by the file the user gave, not the series' stem
        raise ConfigError(str(trace), error.problems) from None
    return plans, loaded.series


def replayed_window(plan: SessionPlan, days: float | None) -> dict[str, Any]:
    """What stretch of the trace a backtest replayed (UTC, ISO 8601), so a report says which
    month it priced: a concurrency trace is cut to its longest stretch without a hole, and
    ``--days`` longer than that gets what there is, with a ``note`` saying so."""
    start = dt.datetime.fromtimestamp(plan.t0_epoch_s, dt.UTC)
    replayed_days = plan.horizon_s / 86400.0
    window: dict[str, Any] = {
        "start": start.isoformat(timespec="seconds"),
        "end": (start + dt.timedelta(seconds=plan.horizon_s)).isoformat(timespec="seconds"),
        "days": replayed_days,
    }
    notes: list[str] = []
    # An hour's slack: a stretch's end is its last data point, not a whole day's edge.
    if days is not None and days * 86400.0 > plan.horizon_s + 3600.0:
        notes.append(
            f"asked for {days:g} days; the trace's usable stretch holds {replayed_days:.1f}, "
            "all of it replayed"
        )
    if plan.step_s == 0.0 and len(plan.arrival_s) > 1:
        # A session log is replayed as recorded, silences included: say so when one is long
        # enough to weigh on the cost (a concurrency trace is cut at holes instead).
        silences = np.diff(plan.arrival_s)
        longest = int(np.argmax(silences))
        if silences[longest] >= SILENCE_NOTE_S:
            begin = start + dt.timedelta(seconds=float(plan.arrival_s[longest]))
            notes.append(
                f"the log has no arrival for {silences[longest] / 86400.0:.1f} days from "
                f"{begin.isoformat(timespec='seconds')}; its capacity counts in the cost "
                "(cut the log to leave it out)"
            )
    if notes:
        window["note"] = "; ".join(notes)
    return window


@dataclass(slots=True)
class Scored:
    candidate: baselines.Candidate
    aggregate: Aggregate
    results: list[Result]


@dataclass(slots=True)
class Backtest:
    """The runs of one backtest (plans per seed, scoring, sweeps). Build with ``prepare``."""

    plans: list[SessionPlan]
    seeds: list[int]
    stream_class: str
    capacity_model: CapacityModel
    slo: Slo
    price: float
    registry: PluginRegistry
    interval_s: float = 60.0
    params: ModelParams | None = None
    progress: Callable[[str], None] | None = None
    tenancy: int = 1
    bounds: list[float] = field(default_factory=list)
    fleets: list[baselines.Fleet] = field(default_factory=list)
    runs: int = 0
    # Runs in worker processes (``autoscaler backtest --jobs``); None: in this process.
    pool: RunPool | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.tenancy = stream_class_info(self.stream_class).tenancy
        self.bounds = [in_use_bound(p, self.tenancy) for p in self.plans]
        self.fleets = [
            baselines.Fleet(
                locations=p.locations,
                peak=peak_concurrency(p),
                maximum=high_maximum(p, self.tenancy),
                tenancy=self.tenancy,
                capacity_model=self.capacity_model,
                slo=self.slo,
            )
            for p in self.plans
        ]

    def run_one(
        self,
        index: int,
        candidate: baselines.Candidate,
        label: str,
        *,
        progress: Callable[[float], None] | None = None,
    ) -> Result:
        """Run ``candidate`` on seed ``index``'s plan and score it (in this process)."""
        outcome = run_policy(
            self.plans[index],
            policy=candidate.policy,
            stream_class=self.stream_class,
            capacity_model=self.capacity_model,
            seed=self.seeds[index],
            interval_s=self.interval_s,
            params=self.params,
            initial=candidate.static,
            registry=self.registry,
            label=label,
            label_params=candidate.params,
            progress=progress,
        )
        return score_outcome(
            outcome,
            self.plans[index],
            price_per_slot_hour=self.price,
            slo=self.slo,
            bound_slot_h=self.bounds[index],
        )

    def evaluate(
        self, label: str, make: Callable[[baselines.Fleet], baselines.Candidate]
    ) -> Scored:
        """Run one candidate on every seed's plan and score it."""
        return self.evaluate_many(label, [make])[0]

    def evaluate_many(
        self, label: str, makes: Sequence[Callable[[baselines.Fleet], baselines.Candidate]]
    ) -> list[Scored]:
        """``evaluate`` for each of ``makes``; with a ``pool``, every run is handed to it
        before the first result is awaited (the runs are independent)."""
        per_make = [[make(fleet) for fleet in self.fleets] for make in makes]
        pool = self.pool
        if pool is None:
            return [
                self._scored(cs, [self._run_here(label, c, i) for i, c in enumerate(cs)])
                for cs in per_make
            ]
        # Every run handed over first, then the results collected in order.
        futures = [[pool.submit(c, i, label) for i, c in enumerate(cs)] for cs in per_make]
        return [
            self._scored(cs, [self._collect(label, c, i, fs[i]) for i, c in enumerate(cs)])
            for cs, fs in zip(per_make, futures, strict=True)
        ]

    def _run_here(self, label: str, candidate: baselines.Candidate, index: int) -> Result:
        """One run in this process, told to ``progress`` as it starts."""
        self._tell(label, candidate, index)
        result = self.run_one(index, candidate, label)
        self._count()
        return result

    def _collect(
        self, label: str, candidate: baselines.Candidate, index: int, future: Future[Result]
    ) -> Result:
        """One pooled run's result, told to ``progress`` once it has ended."""
        result = future.result()
        self._count()
        self._tell(label, candidate, index)
        return result

    def _tell(self, label: str, candidate: baselines.Candidate, index: int) -> None:
        """Tell ``progress`` of a run (as it starts in this process; as it ends in a pool,
        whose results several threads collect)."""
        if self.progress is not None:
            with self._lock:
                self.progress(f"{label} {dict(candidate.params)} seed {self.seeds[index]}")

    def _count(self) -> None:
        with self._lock:
            self.runs += 1

    @staticmethod
    def _scored(candidates: list[baselines.Candidate], results: list[Result]) -> Scored:
        return Scored(candidates[-1], aggregate(results), results)

    def sweep(self, label: str, candidates: Sequence[baselines.Candidate]) -> Scored:
        """Every candidate; the cheapest meeting the SLO on every seed, else the one with the
        best instant share (reported as missing the SLO)."""
        scored = self.evaluate_many(label, [constant_candidate(c) for c in candidates])
        return pick_cheapest(scored, grid=[dict(c.params) for c in candidates])

    def utilization_grid(
        self, which: str, grid: Sequence[float]
    ) -> list[baselines.Candidate] | baselines.Unavailable:
        """``which`` (target-tracking or hourly-predictive) at each target of ``grid``."""
        if which == baselines.TARGET_TRACKING:
            return baselines.target_tracking(self.fleets[0], self.registry, grid)
        return baselines.hourly_predictive(self.fleets[0], grid)

    def sweep_utilization(self, which: str) -> Scored | baselines.Unavailable:
        """The grid of targets, then bisection to ``UTILIZATION_STEP`` above the best one
        (``baselines.next_utilization``); the cheapest meeting the SLO on every seed."""
        grid = self.utilization_grid(which, baselines.UTILIZATION_GRID)
        if isinstance(grid, baselines.Unavailable):
            return grid
        scored = self.evaluate_many(which, [constant_candidate(c) for c in grid])
        scored += refine_utilization(self, which, scored)
        return pick_cheapest(scored, grid=[dict(s.candidate.params) for s in scored])

    def native_idle(self) -> Scored | baselines.Unavailable:
        first = baselines.native_idle(self.fleets[0], self.tenancy)
        if isinstance(first, baselines.Unavailable):
            return first
        seen: dict[int, Scored] = {}

        def meets(k: int) -> bool:
            def make(fleet: baselines.Fleet) -> baselines.Candidate:
                c = baselines.native_idle(fleet, k)
                assert isinstance(c, baselines.Candidate)
                return c

            seen[k] = self.evaluate(baselines.NATIVE_IDLE, make)
            return seen[k].aggregate.meets_slo

        upper = max(max(f.peak.values(), default=0) for f in self.fleets) + self.tenancy
        best, tried = baselines.smallest_meeting(
            meets, step=self.tenancy, upper=round_up_to_tenancy(upper, self.tenancy)
        )
        return pick_cheapest(
            list(seen.values()), grid=[{"target_idle": k} for k in tried], prefer=best
        )


def constant_candidate(
    candidate: baselines.Candidate,
) -> Callable[[baselines.Fleet], baselines.Candidate]:
    return lambda _fleet: candidate


def refine_utilization(bt: Backtest, which: str, scored: Sequence[Scored]) -> list[Scored]:
    """The runs that bisect a utilization family's best grid target to ``UTILIZATION_STEP``
    (``baselines.next_utilization``), each made with ``bt.evaluate``."""
    met = {float(s.candidate.params["targetUtilization"]): s.aggregate.meets_slo for s in scored}
    more: list[Scored] = []
    while (u := baselines.next_utilization(met)) is not None:
        grid = bt.utilization_grid(which, [u])
        assert not isinstance(grid, baselines.Unavailable)  # the grid itself was available
        (candidate,) = grid
        more.append(bt.evaluate(which, constant_candidate(candidate)))
        met[u] = more[-1].aggregate.meets_slo
    return more


def pick_cheapest(
    scored: Sequence[Scored], *, grid: list[dict[str, Any]], prefer: int | None = None
) -> Scored:
    meeting = [s for s in scored if s.aggregate.meets_slo]
    if prefer is not None:
        chosen = next(s for s in scored if s.candidate.params.get("target_idle") == prefer)
    elif meeting:
        chosen = min(meeting, key=lambda s: s.aggregate["cost"].mean)
    else:
        chosen = max(scored, key=lambda s: (s.aggregate["instant"].mean, -s.aggregate["cost"].mean))
    params = {**chosen.candidate.params, "tuned_over": grid}
    agg = dataclasses.replace(chosen.aggregate, params=params)
    return Scored(chosen.candidate, agg, chosen.results)


def result_row(agg: Aggregate) -> dict[str, Any]:
    """One entry of ``results``: the mean over seeds of every field (fractions 0–1)."""
    row: dict[str, Any] = {"policy": agg.policy, "params": dict(agg.params)}
    for name in ("cost", "bound", "cost_ratio", "instant", "cold", "failed"):
        row[name] = agg[name].mean
    row["p95_wait_s"] = agg["p95_wait_s"].mean
    row["p99_wait_s"] = agg["p99_wait_s"].mean
    row["updates"] = agg["updates"].mean
    row["meets_slo"] = agg.meets_slo
    row["wall_s"] = agg["wall_s"].mean
    row["idle"] = idle_split(agg["idle_kept"].mean, agg["idle_held"].mean, agg["idle_partial"].mean)
    row["decisions"] = agg["decisions"].mean
    row["fallback_decisions"] = agg["fallback_decisions"].mean
    row["fallback_reason"] = agg.fallback_reason
    return row


SPREAD_FIELDS = ("cost", "cost_ratio", "instant", "failed")


def spread_row(agg: Aggregate, results: Sequence[Result] = ()) -> dict[str, Any]:
    """How a row's seeds differ: std, min and max of the scored fields, the share of seeds
    that met the SLO and, given the runs, each seed's own figures (``per_seed``, in seed
    order), so that two policies can be compared seed by seed on the same demand."""
    out: dict[str, Any] = {
        name: {"std": agg[name].std, "min": agg[name].min, "max": agg[name].max}
        for name in SPREAD_FIELDS
    } | {"meets_slo_share": agg.meets_slo_share}
    if results:
        per_seed: dict[str, list[Any]] = {
            name: [float(getattr(r, name)) for r in results] for name in SPREAD_FIELDS
        }
        per_seed["meets_slo"] = [bool(r.meets_slo) for r in results]
        out["per_seed"] = per_seed
    return out


def reported(scored: Scored, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``scored`` as a report shows it under ``name``: its row (means over the seeds) and its
    spread (with each seed's figures)."""
    agg = dataclasses.replace(scored.aggregate, policy=name)
    return result_row(agg), spread_row(agg, scored.results)


def seed_ratios(report: Mapping[str, Any], baseline: str) -> list[float]:
    """Ours' cost over ``baseline``'s on each seed (the same demand), from the report's
    per-seed figures; empty when either has none."""
    spreads: Mapping[str, Any] = report.get("spread") or {}
    ours = (spreads.get("ours") or {}).get("per_seed", {}).get("cost")
    theirs = (spreads.get(baseline) or {}).get("per_seed", {}).get("cost")
    if not ours or not theirs or len(ours) != len(theirs):
        return []
    return [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The cheapest baseline meeting the SLO and our cost relative to it (None when either
    is missing)."""
    ours = next((r for r in rows if r["policy"] == "ours"), None)
    meeting = [r for r in rows if r["policy"] != "ours" and r["meets_slo"]]
    best = min(meeting, key=lambda r: r["cost"]) if meeting else None
    ratio = None
    if ours is not None and best is not None and best["cost"] > 0:
        ratio = ours["cost"] / best["cost"]
    return {
        "cheapest_baseline": None if best is None else best["policy"],
        "cheapest_baseline_cost": None if best is None else best["cost"],
        "ours_meets_slo": None if ours is None else ours["meets_slo"],
        "ours_vs_cheapest": ratio,
    }


@dataclass(frozen=True, slots=True)
class _Options:
    policy: Policy
    model: CapacityModel
    baselines: tuple[str, ...]
    as_is: CapacitySetting | None


def _checked_options(
    source: Path,
    registry: PluginRegistry,
    *,
    peak: Peak | None,
    stream_class: str,
    capacity_model: CapacityModel | str | None,
    days: float | None,
    seeds: int,
    baselines_to_run: Sequence[str] | str,
    plot: str | Path | None,
    jobs: int,
    as_is: str | None,
) -> _Options:
    """``backtest``'s options and policy file, checked before any work: every problem at once
    (``ConfigError`` on ``autoscaler backtest``, one line per option; the policy file's own
    problems named by file and line)."""
    problems: list[str] = []
    if jobs < 1:
        problems.append(f"--jobs: need at least 1 job, got {jobs}")
    if seeds < 1:
        problems.append(f"--seeds: need at least 1 seed, got {seeds}")
    if peak is not None and peak != AS_RECORDED:
        if not (isinstance(peak, float | int) and math.isfinite(peak) and peak > 0):
            problems.append(f"--peak: peak must be a number > 0 or {AS_RECORDED!r}, got {peak!r}")
        elif peak > MAX_PEAK:
            problems.append(
                f"--peak: at most {MAX_PEAK:.0f} sessions (a backtest keeps every session of "
                f"the window in memory; benchmark.md's large fleet is 4000), got {peak:g}"
            )
    if days is not None and not days > 0:
        problems.append(f"--days: must be > 0, got {days:g}")
    if stream_class not in STREAM_CLASSES:
        problems.append(f"--stream-class: {unknown_stream_class(stream_class)}")
    model: CapacityModel | None = None
    if capacity_model is not None:
        try:
            model = CapacityModel(capacity_model)
        except ValueError:
            problems.append(f"--capacity-model: {capacity_model!r} is not one of: current, legacy")
    chosen: tuple[str, ...] = ()
    if isinstance(baselines_to_run, str):
        try:
            chosen = baselines.parse_baselines(baselines_to_run)
        except ValueError as error:
            problems.append(f"--baselines: {error}")
    else:
        chosen = tuple(baselines_to_run)
        problems += [
            f"--baselines: unknown baseline {b!r}"
            for b in chosen
            if b not in baselines.BASELINE_IDS
        ]
    if plot is not None:
        try:
            require_drawing("--plot")
            check_destination(plot, "--plot", suffix=".png")
        except ConfigError as error:
            problems += [f"--plot: {p}" for p in error.problems]
    policy: LoadedPolicy | None = None
    try:
        policy = load_policy_file(source, resolve_params=registry.validate_params)
    except ConfigError as error:
        problems += error.problems
    except (UnknownPluginError, pydantic.ValidationError) as error:  # pragma: no cover
        problems.append(f"{source}: {error}")
    pinned = policy.capacity_model if policy is not None else None
    if model is None:
        model = pinned or CapacityModel.CURRENT
    elif pinned is not None and pinned is not model:
        problems.append(
            f"--capacity-model {model.value}: the policy file {source} pins capacityModel: "
            f"{pinned.value}, so ours would run on the {pinned.value} model and the baselines "
            f"on {model.value}; give --capacity-model {pinned.value}, or set capacityModel: "
            "auto in a copy of the file"
        )
    setting: CapacitySetting | None = None
    if as_is is not None and stream_class in STREAM_CLASSES:
        try:
            setting = baselines.parse_as_is(as_is, model, stream_class_info(stream_class).tenancy)
        except ValueError as error:
            problems.append(f"--as-is: {as_is!r}: {error}")
    if problems or policy is None:
        raise ConfigError("autoscaler backtest", problems)
    return _Options(policy, model, chosen, setting)


def backtest(
    trace: str | Path,
    series: str | None = None,
    *,
    policy_file: str | Path | None = None,
    peak: Peak | None = None,
    stream_class: str = "gen4n_high",
    capacity_model: CapacityModel | str | None = None,
    days: float | None = None,
    seeds: int = 3,
    baselines_to_run: Sequence[str] | str = baselines.BASELINE_IDS,
    interval_s: float = 60.0,
    progress: Callable[[str], None] | None = None,
    on_row: Callable[[Mapping[str, Any]], None] | None = None,
    plot: str | Path | None = None,
    jobs: int = 1,
    as_is: str | None = None,
) -> dict[str, Any]:
    """Our policy (``policy_file``, default ``policies/default.yaml``, run with its shipped
    parameters) and the chosen baselines on ``seeds`` session plans of ``trace``; with
    ``as_is`` (``baselines.parse_as_is``: the capacity the user runs today), that setting too,
    replayed unchanged as the ``as-is`` row and weighed like a baseline.

    Returns the report (see ``docs``/the issue for the shape): ``results`` holds the mean over
    seeds per policy; ``spread`` their spread; ``summary`` the cheapest baseline meeting the
    SLO and our ratio to it. Bad input raises ``ConfigError``. Ctrl-C stops the runs and
    returns what finished with ``"interrupted": true``.

    ``jobs`` > 1 runs on that many worker processes (``parallel.RunPool``): ours and every
    baseline are driven at once, each handing its runs to the pool, so a sweep, the seeds and
    the baselines all share the cores. Every run is the same deterministic run as with one
    job, so the report is the same but for wall times.
    """
    registry = backtest_registry()
    source = Path(policy_file) if policy_file is not None else DEFAULT_POLICY_FILE
    options = _checked_options(
        source,
        registry,
        peak=peak,
        stream_class=stream_class,
        capacity_model=capacity_model,
        days=days,
        seeds=seeds,
        baselines_to_run=baselines_to_run,
        plot=plot,
        jobs=jobs,
        as_is=as_is,
    )
    policy, model, setting = options.policy, options.model, options.as_is
    seed_list = list(range(1, seeds + 1))
    plans, series_name = load_plans(trace, series, peak=peak, days=days, seeds=seed_list)
    price = policy.price_for(stream_class)
    bt = Backtest(
        plans=plans,
        seeds=seed_list,
        stream_class=stream_class,
        capacity_model=model,
        slo=policy.slo,
        price=price,
        registry=registry,
        interval_s=interval_s,
        params=model_params(interval_s),
        progress=progress,
    )
    report: dict[str, Any] = {
        "trace": str(trace),
        "series": series_name,
        # what the concurrency was scaled to; a session log's own peak in progress
        "peak": plans[0].peak if plans[0].peak is not None else plans[0].peak_in_progress(),
        "stream_class": stream_class,
        "capacity_model": model.value,
        "slo": {"instant": policy.slo.instant, "failed": policy.slo.failed},
        "results": [],
        "window": replayed_window(plans[0], days),
    }
    spreads: dict[str, Any] = {}
    unavailable: dict[str, str] = {}
    rows: list[dict[str, Any]] = report["results"]

    def keep(scored: Scored, name: str) -> None:
        row, spreads[name] = reported(scored, name)
        rows.append(row)
        if on_row is not None:
            on_row(row)

    interrupted = False
    ours = baselines.Candidate(
        "ours", {"file": str(source), "plugin": policy.plugin}, policy=policy
    )
    fixed = [("ours", ours)]
    if setting is not None:
        fixed.append((baselines.AS_IS, baselines.as_is(bt.fleets[0], setting)))
    try:
        results = (
            _run_all(bt, fixed, options.baselines)
            if jobs == 1
            else _run_all_pooled(bt, fixed, options.baselines, jobs=jobs)
        )
        # Closed on the way out whatever happens (an error in ``on_row``, Ctrl-C in
        # ``keep``), so a pool is stopped at once rather than when the generator is freed.
        with contextlib.closing(results):
            for name, got in results:
                if isinstance(got, baselines.Unavailable):
                    unavailable[name] = got.reason
                else:
                    keep(got, name)
        if plot is not None:
            from autoscaler.backtest.plot import plot_timeline  # noqa: PLC0415

            outcome = run_policy(
                plans[0],
                policy=policy,
                stream_class=stream_class,
                capacity_model=model,
                seed=seed_list[0],
                interval_s=interval_s,
                params=bt.params,
                registry=registry,
                timeline=True,
                label="ours",
            )
            try:
                plot_timeline(outcome, plot, title=f"{trace} {series_name}: ours ({policy.plugin})")
            except ConfigError as error:  # a disk that filled meanwhile: keep the report
                report["plot_error"] = list(error.problems)
    except KeyboardInterrupt:
        interrupted = True
    report["seeds"] = seeds
    report["spread"] = spreads
    report["unavailable"] = unavailable
    report["summary"] = summarise(rows)
    report["runs"] = bt.runs
    if interrupted:
        report["interrupted"] = True
    return report


def _run_all(
    bt: Backtest,
    fixed: Sequence[tuple[str, baselines.Candidate]],
    chosen: Sequence[str],
) -> Generator[tuple[str, Scored | baselines.Unavailable], None, None]:
    """The ``fixed`` candidates (ours, the user's own setting), then each of ``chosen``, one
    run after another in this process."""
    for name, candidate in fixed:
        yield name, bt.evaluate(name, constant_candidate(candidate))
    for b in chosen:
        yield b, _run_baseline(bt, b)


def _run_all_pooled(
    bt: Backtest,
    fixed: Sequence[tuple[str, baselines.Candidate]],
    chosen: Sequence[str],
    *,
    jobs: int,
) -> Generator[tuple[str, Scored | baselines.Unavailable], None, None]:
    """What ``_run_all`` gives, in its order, but computed at once on a
    pool of ``jobs`` processes. Each is driven by a thread of this process that only hands
    runs to the pool and waits (so a baseline's own search, such as native-idle's bisection,
    keeps its order while the others fill the cores).

    Ctrl-C (or an error, or the caller closing the generator): the pool stops (queued runs
    are dropped, running ones end at their next simulated day, a driver's next run is
    refused); after Ctrl-C every policy whose runs all finished is still yielded, in order
    (the rest are left out, so the report may have gaps where ``jobs`` = 1 stops at a
    prefix). The drivers block SIGINT and SIGTERM, so the workers they start inherit them
    blocked until they ignore them (``parallel.block_stop_signals``: a signal to the whole
    process group while a worker is still starting would otherwise hang this process)."""
    from autoscaler.backtest.parallel import RunPool, block_stop_signals  # noqa: PLC0415

    pool = RunPool(bt, jobs=jobs)
    bt.pool = pool
    try:
        with ThreadPoolExecutor(
            max_workers=len(fixed) + len(chosen),
            thread_name_prefix="backtest-driver",
            initializer=block_stop_signals,
        ) as drivers:
            tasks: list[tuple[str, Future[Scored | baselines.Unavailable]]] = [
                (name, drivers.submit(bt.evaluate, name, constant_candidate(candidate)))
                for name, candidate in fixed
            ]
            tasks += [(b, drivers.submit(_run_baseline, bt, b)) for b in chosen]
            given = 0
            try:
                for name, task in tasks:
                    yield name, task.result()
                    given += 1
            except KeyboardInterrupt:
                pool.stop()  # before the drivers are joined: they end on the refused runs
                drivers.shutdown(wait=True)
                for name, task in tasks[given:]:  # what finished meanwhile, in order
                    if not task.cancelled() and task.exception() is None:
                        yield name, task.result()
                raise
            except BaseException:  # an error, or the caller closed the generator
                pool.stop()
                raise
    finally:
        bt.pool = None  # only once no driver can reach it any more
        pool.close()


def _run_baseline(bt: Backtest, which: str) -> Scored | baselines.Unavailable:
    fleet = bt.fleets[0]
    if which == baselines.STATIC_PEAK:
        # One level for every seed: the highest of the seeds' peaks (so params agree).
        top = {name: max(f.peak[name] for f in bt.fleets) for name in bt.fleets[0].locations}
        return bt.evaluate(
            which, constant_candidate(baselines.static_peak(replace(fleet, peak=top)))
        )
    if which == baselines.NATIVE_IDLE:
        return bt.native_idle()
    if which in (baselines.BUFFER, baselines.BUFFER_IDLE):
        grid = baselines.buffer(fleet, bt.registry, which=which)
        if isinstance(grid, baselines.Unavailable):
            return grid
        return bt.sweep(which, grid)
    return bt.sweep_utilization(which)
