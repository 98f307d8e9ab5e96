"""The backtest's fast paths give exactly what the slow ones gave.

Each speed-up replaced a computation by a cheaper one that must be equal, not close:

- ``derive_location_samples`` counts in one pass: compared with the previous per-rule
  implementation (kept here as the reference) on generated listings.
- ``HistoryStore(cache_columns=True)`` answers ``history`` from memory: compared with a store
  without the cache (the SQLite read path) under any interleaving of appends (in order, out of
  order, replacements), backfills, prunes and writes by another connection to the same file.
- The in-process adapter lists summaries straight from the model and counts pages like the
  HTTP adapter.
- The controller writes guard memory every ``persist_memory_every`` ticks and on every tick
  that applied a change (every tick by default, as the daemon needs).
"""

from __future__ import annotations

import dataclasses
import math
import random
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.backtest.runner import (
    backtest_registry,
    build_world,
    controller_initial,
    fit_policy,
    high_maximum,
    model_params,
    replay,
)
from autoscaler.backtest.sessions import plan_sessions
from autoscaler.backtest.synthetic import synthetic_trace
from autoscaler.controller import MEMORY_KEY, Controller, ControllerOptions
from autoscaler.domain.clock import ManualClock
from autoscaler.domain.models import (
    ENDED_STATUSES,
    SLOT_HOLDING_STATUSES,
    CapacityModel,
    CapacitySetting,
    GroupState,
    LocationHistory,
    LocationSample,
    LocationState,
    SessionSummary,
    TickReport,
)
from autoscaler.guard import GuardMemory
from autoscaler.policy.config import load_policy_file
from autoscaler.sampling import (
    INSTANT_START_S,
    PLACEMENT_TIMEOUT,
    WAITING_STATUS,
    derive_location_samples,
)
from autoscaler.store import HistoryStore
from autoscaler.twin.inprocess import InProcessGameLiftStreams
from autoscaler.twin.model import LocationConfigInput, ModelParams, ServiceModel

NOW = 1_767_225_600.0
T0 = NOW
STATUSES = sorted(
    {*SLOT_HOLDING_STATUSES, *ENDED_STATUSES, WAITING_STATUS, "PENDING_CLIENT_RECONNECTION"}
)


# ------------------------------------------------------------------ derive_location_samples


def _in_window(t: float, previous_at: float | None, now: float) -> bool:
    return previous_at is not None and previous_at < t <= now


def reference_derive(
    state: GroupState,
    sessions: Sequence[SessionSummary],
    previous_at: float | None,
    now: float,
    complete: bool,
) -> tuple[LocationSample, ...]:
    """``derive_location_samples`` as it was before the one-pass rewrite."""
    by_location: dict[str, list[SessionSummary]] = {loc.name: [] for loc in state.locations}
    for s in sessions:
        name = s.location if s.location is not None else state.primary_location
        bucket = by_location.get(name)
        if bucket is not None:
            bucket.append(s)
    samples: list[LocationSample] = []
    for loc in state.locations:
        mine = by_location[loc.name]
        waiting = [s for s in mine if s.status == WAITING_STATUS]
        in_use = sum(1 for s in mine if s.status in SLOT_HOLDING_STATUSES)
        if not complete and not sessions:
            in_use = loc.in_use
        ended = [
            s
            for s in mine
            if s.status in ENDED_STATUSES and _in_window(s.last_updated_at, previous_at, now)
        ]
        samples.append(
            LocationSample(
                group_id=state.group_id,
                location=loc.name,
                at=now,
                status=loc.status,
                setting=loc.setting,
                allocated=loc.allocated,
                idle=loc.idle,
                in_use=in_use,
                waiting=len(waiting),
                oldest_waiting_s=max((max(0.0, now - s.created_at) for s in waiting), default=0.0),
                arrivals=sum(1 for s in mine if _in_window(s.created_at, previous_at, now)),
                placement_failures=sum(
                    1 for s in ended if s.status == "ERROR" and s.status_reason == PLACEMENT_TIMEOUT
                ),
                departures=len(ended),
                complete=complete,
                late_starts=None
                if not complete and not sessions
                else sum(
                    1
                    for s in mine
                    if s.status in {"ACTIVE", "CONNECTED"}
                    and _in_window(s.last_updated_at, previous_at, now)
                    and INSTANT_START_S < s.last_updated_at - s.created_at <= 900.0
                ),
            )
        )
    return tuple(samples)


def _state(names: Sequence[str]) -> GroupState:
    setting = CapacitySetting(always_on=2, target_idle=2, maximum=10)
    return GroupState(
        group_id="sg-1",
        arn="arn:aws:gameliftstreams:us-east-1:123456789012:streamgroup/sg-1",
        status="ACTIVE",
        stream_class="gen4n_high",
        tenancy=2,
        capacity_model=CapacityModel.CURRENT,
        locations=tuple(
            LocationState(name=n, status="ACTIVE", setting=setting, allocated=8, idle=3)
            for n in names
        ),
        primary_location=names[0],
    )


# Times on a coarse grid around the window (NOW - 60, NOW], so edges are hit exactly.
_times = st.sampled_from(
    [NOW - 1000, NOW - 200, NOW - 60.0, NOW - 59.5, NOW - 1, NOW, NOW + 1, NOW - 30]
)
_session = st.builds(
    SessionSummary,
    arn=st.just("arn:s"),
    status=st.sampled_from(STATUSES),
    location=st.sampled_from([None, "us-east-1", "eu-central-1", "ap-south-1"]),
    created_at=_times,
    last_updated_at=_times,
    status_reason=st.sampled_from([None, PLACEMENT_TIMEOUT, "apiTerminated"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sessions=st.lists(_session, max_size=30),
    previous_at=st.sampled_from([None, NOW - 60.0, NOW, NOW + 30.0]),
    complete=st.booleans(),
    names=st.sampled_from([("us-east-1",), ("us-east-1", "eu-central-1")]),
)
def test_one_pass_derivation_equals_the_reference(
    sessions: list[SessionSummary],
    previous_at: float | None,
    complete: bool,
    names: tuple[str, ...],
) -> None:
    state = _state(names)
    got = derive_location_samples(state, sessions, previous_at, NOW, complete)
    assert got == reference_derive(state, sessions, previous_at, NOW, complete)
    for sample in got:  # same types too (ints stay ints)
        assert type(sample.in_use) is int
        assert type(sample.oldest_waiting_s) is float


# ------------------------------------------------------------------ history column cache


def _sample(at: float, value: int, complete: bool = True) -> LocationSample:
    return LocationSample(
        group_id="sg-1",
        location="us-east-1",
        at=at,
        status="ACTIVE",
        setting=CapacitySetting(always_on=2, target_idle=1, maximum=10),
        allocated=value + 2,
        idle=2,
        in_use=value,
        waiting=value % 3,
        oldest_waiting_s=1.5,
        arrivals=value + 1,
        placement_failures=value % 2,
        departures=1,
        complete=complete,
        late_starts=None if value % 4 == 3 else value % 2,
    )


def _same(a: LocationHistory, b: LocationHistory) -> None:
    for f in dataclasses.fields(LocationHistory):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype, f.name
        assert x.tobytes() == y.tobytes(), f.name


_cache_op = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 60), st.integers(0, 9)),
    st.tuples(st.just("next"), st.integers(1, 3), st.integers(0, 9)),  # in order
    st.tuples(st.just("read"), st.integers(0, 60), st.integers(0, 60)),
    st.tuples(st.just("backfill"), st.integers(0, 60), st.integers(0, 9)),
    st.tuples(st.just("prune"), st.integers(0, 60), st.just(0)),
    st.tuples(st.just("other"), st.integers(0, 60), st.integers(0, 9)),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_cache_op, max_size=30))
def test_cached_history_equals_sqlite_under_any_writes(
    ops: list[tuple[str, int, int]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    step = 3600.0  # 6 per 6 h bucket: sealing and packed buckets are exercised too
    path = tmp_path_factory.mktemp("cache") / "state.sqlite"
    retention = 20 * step
    with (
        HistoryStore(path, retention_s=retention, cache_columns=True) as cached,
        HistoryStore(path, retention_s=retention) as plain,
    ):
        newest = 0
        for op, a, b in ops:
            if op == "next":
                newest += a
                cached.append_samples([_sample(T0 + newest * step, b, complete=b != 4)])
            elif op == "append":
                newest = max(newest, a)
                cached.append_samples([_sample(T0 + a * step, b)])
            elif op == "backfill":
                cached.backfill("sg-1", "us-east-1", [(T0 + a * step, float(b), b + 1.0, 1.0)])
            elif op == "prune":
                cached.prune(T0 + a * step)
            elif op == "other":  # another connection (process) writes the same file
                plain.append_samples([_sample(T0 + a * step, b)])
            else:
                since, until = T0 + min(a, b) * step, T0 + max(a, b) * step
                _same(
                    cached.history("sg-1", "us-east-1", since, until),
                    plain.history("sg-1", "us-east-1", since, until),
                )
            # The controller's read: everything since a time, no upper bound.
            _same(
                cached.history("sg-1", "us-east-1", since=T0 + 5 * step),
                plain.history("sg-1", "us-east-1", since=T0 + 5 * step),
            )


def test_cached_history_is_read_only_and_survives_growth() -> None:
    with HistoryStore(":memory:", retention_s=1e9, cache_columns=True) as store:
        store.append_samples([_sample(T0, 1)])
        first = store.history("sg-1", "us-east-1", since=0)
        with pytest.raises(ValueError, match="read-only"):
            first.in_use[0] = 5.0
        with pytest.raises(ValueError, match="read-only"):
            first.complete[0] = False
        for k in range(1, 500):  # past the first buffer: it grows, old views stay valid
            store.append_samples([_sample(T0 + 60.0 * k, k % 7, complete=k % 5 != 0)])
        assert first.in_use.tolist() == [1.0]
        h = store.history("sg-1", "us-east-1", since=T0 + 60.0, until=T0 + 600.0)
        assert h.at.tolist() == [T0 + 60.0 * k for k in range(1, 11)]
        assert h.complete.tolist() == [k % 5 != 0 for k in range(1, 11)]
        assert len(store.history("sg-1", "us-east-1", since=T0 + 1e6)) == 0
        assert len(store.history("sg-1", "elsewhere", since=0)) == 0


# ------------------------------------------------------------------ in-process adapter


async def test_session_listing_counts_pages_like_the_http_adapter() -> None:
    clock = ManualClock(T0)
    model = ServiceModel(clock=clock, seed=1, params=ModelParams(provisioning_sigma=0.0))
    app = model.create_application(
        region="us-east-1", description="", runtime={}, executable_path="g", source_uri="s3://b"
    )
    group = model.create_stream_group(
        region="us-east-1",
        description="d",
        stream_class="gen4n_ultra",  # tenancy 1
        default_application_id=app.app_id,
        locations=[LocationConfigInput("us-east-1", always_on=260, target_idle=0, maximum=260)],
    )
    clock.advance(3600.0)
    api = InProcessGameLiftStreams(model, "us-east-1")
    pages = []
    for total in (0, 100, 101, 250):
        while len(model.list_session_summaries(group.group_id)) < total:
            model.start_stream_session(
                group.group_id, application_identifier=app.app_id, locations=["us-east-1"]
            )
        before = api.counts.get("ListStreamSessions", 0)
        listed = await api.list_stream_sessions(group.group_id)
        assert len(listed) == total
        pages.append(api.counts["ListStreamSessions"] - before)
    assert pages == [1, 1, 2, 3]


# ------------------------------------------------------------------ guard memory persistence


TT_POLICY = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: tt}
spec:
  streamGroups: {ids: [sg-placeholder]}
  policy:
    plugin: target-tracking
    params: {targetUtilization: 0.7, minIdle: 2}
"""


async def _ticks(tmp: Path, persist_every: int, ticks: int) -> tuple[list[int], list[int]]:
    """Run ``ticks`` controller ticks on a small world; return the ticks (1-based) on which
    guard memory was written and those on which a capacity change was applied."""
    trace = synthetic_trace(peak=100, days=0.5, step_s=600, seed=2)
    plan = plan_sessions(trace, peak=20, seed=2, days=(ticks - 1) / 1440)
    world = build_world(
        plan,
        stream_class="gen4n_high",
        capacity_model=CapacityModel.CURRENT,
        seed=2,
        initial=controller_initial(plan, 2, CapacityModel.CURRENT),
        params=model_params(60.0),
    )
    path = tmp / "tt.yaml"
    path.write_text(textwrap.dedent(TT_POLICY))
    registry = backtest_registry()
    loaded = load_policy_file(path, resolve_params=registry.validate_params)
    policy = fit_policy(loaded, world.group_id, max(high_maximum(plan, 2).values()))
    adapter = InProcessGameLiftStreams(world.model, world.region)
    written: list[int] = []
    applied: list[int] = []
    with HistoryStore(":memory:", retention_s=1e6) as store:
        controller = Controller(
            reader=adapter,
            writer=adapter,
            store=store,
            policies=[policy],
            plugins=registry,
            clock=world.clock,
            options=ControllerOptions(store_in_thread=False, persist_memory_every=persist_every),
        )
        put = store.put_state

        def put_state(key: str, value: str) -> None:
            if key == MEMORY_KEY:
                written.append(len(applied_or_not) + 1)
            put(key, value)

        store.put_state = put_state  # type: ignore[method-assign]
        applied_or_not: list[bool] = []

        async def tick() -> TickReport:
            before = adapter.counts.get("UpdateStreamGroup", 0)
            report = await controller.tick()
            applied_or_not.append(adapter.counts.get("UpdateStreamGroup", 0) > before)
            if applied_or_not[-1]:
                applied.append(len(applied_or_not))
            return report

        out = await replay(world, plan, tick=tick, interval_s=60.0)
        assert out.decisions == ticks
        stored = store.get_state(MEMORY_KEY)
        assert stored is not None
        # Both runs end on a due tick: what is stored is the memory the controller holds.
        assert written[-1] == ticks
        assert GuardMemory.from_json(stored) == controller._memory
    return written, applied


async def test_guard_memory_is_written_every_tick_by_default(tmp_path: Path) -> None:
    written, applied = await _ticks(tmp_path, 1, 30)
    assert applied
    # every tick, and once more before each update is sent (the memory of what was sent)
    assert written == sorted([*range(1, 31), *applied])


async def test_guard_memory_every_n_ticks_and_on_applied_changes(tmp_path: Path) -> None:
    written, applied = await _ticks(tmp_path, 10, 30)
    assert applied  # the policy scales: the "on applied" rule is exercised
    assert sorted([*({10, 20, 30} | set(applied)), *applied]) == written


# ------------------------------------------------- derive_location_samples, one location


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(0, 400),
    previous_at=st.sampled_from([None, NOW - 60.0, NOW, NOW + 30.0]),
    primary=st.sampled_from(["us-east-1", "eu-central-1"]),
)
def test_one_location_loop_equals_the_reference(
    seed: int, n: int, previous_at: float | None, primary: str
) -> None:
    """The one-location loop (``_count_one``) against the per-rule reference on long random
    listings: every status, sessions with no location or another one (counted only when the
    group's primary is its one location), NaN and infinite times, window edges."""
    rng = random.Random(seed)
    statuses = [*STATUSES, "UNKNOWN_STATUS"]
    times = [NOW - 200, NOW - 60.0, NOW - 59.5, NOW - 1, NOW, NOW + 1, math.nan, -math.inf]
    sessions = [
        SessionSummary(
            arn=f"arn:s{i}",
            status=rng.choice(statuses),
            location=rng.choice([None, "us-east-1", "us-east-1", "ap-south-1"]),
            created_at=rng.choice(times) if rng.random() < 0.5 else NOW - rng.uniform(0, 300),
            last_updated_at=rng.choice(times),
            status_reason=rng.choice([None, PLACEMENT_TIMEOUT, "apiTerminated"]),
        )
        for i in range(n)
    ]
    state = dataclasses.replace(_state(("us-east-1",)), primary_location=primary)
    for complete in (True, False):
        got = derive_location_samples(state, sessions, previous_at, NOW, complete)
        assert got == reference_derive(state, sessions, previous_at, NOW, complete)
        assert [math.copysign(1.0, s.oldest_waiting_s) for s in got] == [1.0]
