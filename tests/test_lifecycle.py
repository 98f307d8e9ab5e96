"""Location lifecycle, pure: when a candidate location is added and when it is removed, the
cron windows across DST, the idle clock read from history, and the planner's wiring."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict

from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupSample,
    GroupState,
    LocationHistory,
    LocationSample,
    LocationState,
    Recommendation,
)
from autoscaler.domain.policy import (
    Budget,
    GroupSelector,
    LifecycleWindow,
    LocationCandidate,
    LocationLifecycle,
    Policy,
)
from autoscaler.lifecycle import (
    idle_seconds,
    merge_histories,
    plan_locations,
    window_overlap,
)
from autoscaler.planner import month_start, plan_group, spent_usd
from autoscaler.policy.config import load_policy_file
from autoscaler.policy.plugin import PolicyContext
from autoscaler.schedule import latest_cron_start as latest_start

PRIMARY = "us-east-2"
EXTRA = "eu-central-1"
CAP = CapacitySetting(always_on=0, target_idle=2, maximum=20)
LEAD = 168.0  # lead time of a Linux class at 60 s ticks
MAX_GAP = 180.0  # three 60 s ticks, as the planner passes
# Monday 2025-06-02 18:00 Europe/Berlin (CEST, UTC+2) = 16:00 UTC.
WINDOW_START = datetime(2025, 6, 2, 16, 0, tzinfo=UTC).timestamp()
EVENING = LifecycleWindow(cron="0 18 * * 1-5", duration_s=4 * 3600.0, time_zone="Europe/Berlin")


def _state(*extra: tuple[str, str, int]) -> GroupState:
    """The group with its primary and ``(name, status, in_use)`` extra locations."""
    locs = [LocationState(PRIMARY, "ACTIVE", CapacitySetting(always_on=2, maximum=10))]
    locs += [
        LocationState(name, status, CAP, allocated=in_use, idle=0) for name, status, in_use in extra
    ]
    return GroupState(
        group_id="sg-1",
        arn="arn:sg-1",
        status="ACTIVE",
        stream_class="gen4n_high",
        tenancy=2,
        capacity_model=CapacityModel.CURRENT,
        locations=tuple(locs),
        primary_location=PRIMARY,
    )


def _sample(location: str, at: float, **kw: Any) -> LocationSample:
    base: dict[str, Any] = {
        "group_id": "sg-1",
        "location": location,
        "at": at,
        "status": "ACTIVE",
        "setting": CAP,
        "allocated": 0,
        "idle": 0,
        "in_use": 0,
        "waiting": 0,
        "oldest_waiting_s": 0.0,
        "arrivals": 0,
        "placement_failures": 0,
        "departures": 0,
    }
    base.update(kw)
    return LocationSample(**base)


def _history(at: np.ndarray, **columns: np.ndarray) -> LocationHistory:
    n = at.shape[0]
    z = np.zeros(n, dtype=np.float64)
    return LocationHistory(
        at=at.astype(np.float64),
        in_use=columns.get("in_use", z),
        waiting=columns.get("waiting", z),
        arrivals=columns.get("arrivals", z),
        placement_failures=z,
        departures=z,
        allocated=columns.get("allocated", z),
        idle=z,
        complete=columns.get("complete", np.ones(n, dtype=np.bool_)),
    )


def _ticks(now: float, seconds: float, step: float = 60.0) -> np.ndarray:
    return np.arange(now - seconds, now + 1.0, step)


def _lifecycle(**kw: Any) -> LocationLifecycle:
    cand: dict[str, Any] = {"location": EXTRA, "capacity": CAP, "windows": (EVENING,)}
    cand.update(kw.pop("candidate", {}))
    return LocationLifecycle(candidates=(LocationCandidate(**cand),), **kw)


def _plan(state: GroupState, now: float, lifecycle: LocationLifecycle, **kw: Any) -> Any:
    samples = kw.pop("samples", {loc.name: _sample(loc.name, now) for loc in state.locations})
    return plan_locations(
        state=state,
        samples=samples,
        histories=kw.pop("histories", {}),
        lifecycle=lifecycle,
        now=now,
        lead_time_s=LEAD,
        max_gap_s=kw.pop("max_gap_s", MAX_GAP),
        **kw,
    )


# --------------------------------------------------------------------------- windows


def test_window_is_found_only_within_the_horizon() -> None:
    assert window_overlap(EVENING, WINDOW_START - 700, WINDOW_START - 700 + 768) == WINDOW_START
    assert window_overlap(EVENING, WINDOW_START - 800, WINDOW_START - 800 + 768) is None
    # running windows overlap too, until they end
    assert window_overlap(EVENING, WINDOW_START + 3600, WINDOW_START + 3700) == WINDOW_START
    end = WINDOW_START + 4 * 3600
    assert window_overlap(EVENING, end, end + 60) is None
    # Saturday: no window (1-5 = Monday to Friday)
    saturday = WINDOW_START + 5 * 86400
    assert window_overlap(EVENING, saturday - 600, saturday + 600) is None


def test_cron_is_read_on_the_wall_clock_across_dst() -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    # 18:00 local is 17:00 UTC in winter and 16:00 UTC in summer
    winter = datetime(2025, 1, 6, 20, 0, tzinfo=UTC).timestamp()
    assert (
        latest_start("0 18 * * *", berlin, winter)
        == datetime(2025, 1, 6, 17, 0, tzinfo=UTC).timestamp()
    )
    assert latest_start("0 18 * * *", berlin, WINDOW_START + 10) == WINDOW_START
    # 02:30 does not exist on 2025-03-30 in Berlin: the start is 03:30 CEST (01:30 UTC)
    after = datetime(2025, 3, 30, 3, 0, tzinfo=UTC).timestamp()
    assert (
        latest_start("30 2 * * *", berlin, after)
        == datetime(2025, 3, 30, 1, 30, tzinfo=UTC).timestamp()
    )
    # 02:30 happens twice on 2025-10-26: the first one (CEST, 00:30 UTC) only
    fall = datetime(2025, 10, 26, 1, 45, tzinfo=UTC).timestamp()
    assert (
        latest_start("30 2 * * *", berlin, fall)
        == datetime(2025, 10, 26, 0, 30, tzinfo=UTC).timestamp()
    )


def test_a_window_ends_at_its_local_end_time_on_the_long_autumn_day() -> None:
    # 22:00-06:00 Berlin on the night of 2025-10-26 is 9 hours: the window still covers
    # 05:30 local (04:30 UTC), which 8 hours from 22:00 CEST (20:00 UTC) would not.
    night = LifecycleWindow(cron="0 22 * * *", duration_s=8 * 3600.0, time_zone="Europe/Berlin")
    started = datetime(2025, 10, 25, 20, 0, tzinfo=UTC).timestamp()
    at_0530 = datetime(2025, 10, 26, 4, 30, tzinfo=UTC).timestamp()
    assert window_overlap(night, at_0530, at_0530 + 60) == started
    at_0600 = datetime(2025, 10, 26, 5, 0, tzinfo=UTC).timestamp()
    assert window_overlap(night, at_0600, at_0600 + 60) is None


# --------------------------------------------------------------------------- adds


def test_add_comes_activation_plus_lead_before_the_window() -> None:
    add_lead = 600 + LEAD
    early = _plan(_state(), WINDOW_START - add_lead - 30, _lifecycle())
    assert early == ()
    (change,) = _plan(_state(), WINDOW_START - add_lead + 30, _lifecycle())
    assert (change.location, change.action, change.setting) == (EXTRA, "add", CAP)
    assert "starts at 2025-06-02 16:00:00Z" in change.reason
    assert "activation 600 s + lead 168 s" in change.reason


def test_activation_time_is_configurable() -> None:
    now = WINDOW_START - 1500
    assert _plan(_state(), now, _lifecycle()) == ()
    (change,) = _plan(_state(), now, _lifecycle(activation_s=1400.0))
    assert change.action == "add"


def test_late_add_during_a_running_window() -> None:
    (change,) = _plan(_state(), WINDOW_START + 600, _lifecycle())
    assert change.action == "add"
    assert "running since" in change.reason


def test_nothing_is_added_twice_or_for_a_candidate_without_trigger() -> None:
    now = WINDOW_START - 60
    assert _plan(_state((EXTRA, "ACTIVATING", 0)), now, _lifecycle()) == ()
    assert _plan(_state(), now, _lifecycle(candidate={"windows": ()})) == ()


def _flat_primary(now: float, level: float) -> dict[str, LocationHistory]:
    at = _ticks(now, 6 * 3600)
    return {PRIMARY: _history(at, in_use=np.full(at.shape[0], level))}


def test_the_group_forecast_counts_a_removed_location_s_demand() -> None:
    """Last week's demand at the candidate, removed since, is the group's demand: summed
    with the primary's, the forecast brings the candidate back ahead of the same hour."""
    saturday = WINDOW_START + 86400 * 5  # no window
    before = saturday - 600  # ten minutes before the evening (16:00 UTC)
    cand = {"windows": (), "forecast_above": 25.0}
    at = _ticks(before, 8 * 86400, 300.0)
    hour = (at % 86400) / 3600.0
    evening = (hour >= 16.0) & (hour < 22.0)
    was_there = at < before - 86400  # removed at the end of yesterday's evening
    primary = _history(at, in_use=np.where(evening, 8.0, 2.0))
    extra = _history(at[was_there], in_use=np.where(evening, 34.0, 0.0)[was_there])
    alone = {PRIMARY: primary}
    assert _plan(_state(), before, _lifecycle(candidate=cand), histories=alone) == ()
    both = {PRIMARY: primary, EXTRA: extra}
    (change,) = _plan(_state(), before, _lifecycle(candidate=cand), histories=both)
    assert (change.location, change.action) == (EXTRA, "add")


def test_forecast_crossing_adds_the_location() -> None:
    now = WINDOW_START + 86400 * 5  # a Saturday: no window
    cand = {"windows": (), "forecast_above": 40.0}
    (change,) = _plan(_state(), now, _lifecycle(candidate=cand), histories=_flat_primary(now, 50.0))
    assert change.action == "add"
    assert "forecast p90" in change.reason
    assert _plan(_state(), now, _lifecycle(candidate=cand), histories=_flat_primary(now, 5.0)) == ()


# --------------------------------------------------------------------------- removals


def _idle_world(now: float, span: float) -> dict[str, LocationHistory]:
    at = _ticks(now, span)
    return {PRIMARY: _history(at), EXTRA: _history(at)}


QUIET = WINDOW_START + 86400 * 5 + 12 * 3600  # Saturday noon UTC: no window for days


def test_idle_location_is_removed_after_the_idle_time() -> None:
    lc = _lifecycle(remove_after_idle_s=3600.0)
    state = _state((EXTRA, "ACTIVE", 0))
    assert _plan(state, QUIET, lc, histories=_idle_world(QUIET, 1800)) == ()
    (change,) = _plan(state, QUIET, lc, histories=_idle_world(QUIET, 2 * 3600))
    assert (change.location, change.action, change.setting) == (EXTRA, "remove", None)
    assert "for 7200 s" in change.reason


def test_recent_arrival_or_incomplete_row_keeps_it() -> None:
    lc = _lifecycle(remove_after_idle_s=3600.0)
    state = _state((EXTRA, "ACTIVE", 0))
    for column in ("arrivals", "waiting", "in_use"):
        histories = _idle_world(QUIET, 2 * 3600)
        h = histories[EXTRA]
        values = np.zeros(len(h))
        values[-31] = 1.0  # 30 minutes ago
        histories[EXTRA] = _history(h.at, **{column: values})
        assert _plan(state, QUIET, lc, histories=histories) == (), column
    histories = _idle_world(QUIET, 2 * 3600)
    complete = np.ones(len(histories[EXTRA]), dtype=np.bool_)
    complete[-10] = False
    histories[EXTRA] = _history(histories[EXTRA].at, complete=complete)
    assert _plan(state, QUIET, lc, histories=histories) == ()


def test_live_sessions_now_or_bad_status_keep_it() -> None:
    lc = _lifecycle(remove_after_idle_s=3600.0)
    histories = _idle_world(QUIET, 2 * 3600)
    assert _plan(_state((EXTRA, "ACTIVE", 3)), QUIET, lc, histories=histories) == ()
    busy = {PRIMARY: _sample(PRIMARY, QUIET), EXTRA: _sample(EXTRA, QUIET, waiting=1)}
    state = _state((EXTRA, "ACTIVE", 0))
    assert _plan(state, QUIET, lc, histories=histories, samples=busy) == ()
    partial = {PRIMARY: _sample(PRIMARY, QUIET), EXTRA: _sample(EXTRA, QUIET, complete=False)}
    assert _plan(state, QUIET, lc, histories=histories, samples=partial) == ()
    for status in ("ACTIVATING", "REMOVING"):
        assert _plan(_state((EXTRA, status, 0)), QUIET, lc, histories=histories) == ()


def test_a_location_in_error_is_removed_at_once_whatever_its_triggers() -> None:
    """A failed location holds the group ACTIVE_WITH_ERRORS (frozen): removing it is the
    documented remedy, at once, not after an hour of idleness or once its window ends."""
    lc = _lifecycle(remove_after_idle_s=3600.0)
    inside = WINDOW_START + 3600  # its window runs: it is wanted
    no_history: dict[str, LocationHistory] = {}
    (change,) = _plan(_state((EXTRA, "ERROR", 0)), inside, lc, histories=no_history)
    assert (change.location, change.action) == (EXTRA, "remove")
    assert "in ERROR" in change.reason
    assert "added again once the group is ACTIVE (window" in change.reason
    # ... but never with a session still in it, and never the primary
    assert _plan(_state((EXTRA, "ERROR", 2)), inside, lc, histories=no_history) == ()
    primary = _lifecycle(candidate={"location": PRIMARY, "windows": ()})
    failed_primary = replace(_state(), locations=(replace(_state().locations[0], status="ERROR"),))
    assert _plan(failed_primary, QUIET, primary, histories=no_history) == ()


def test_upcoming_window_keeps_an_idle_location() -> None:
    lc = _lifecycle(remove_after_idle_s=3600.0)
    state = _state((EXTRA, "ACTIVE", 0))
    now = WINDOW_START - 700
    assert _plan(state, now, lc, histories=_idle_world(now, 3 * 3600)) == ()
    inside = WINDOW_START + 3 * 3600
    assert _plan(state, inside, lc, histories=_idle_world(inside, 3 * 3600)) == ()


def test_primary_is_never_removed_even_as_a_candidate() -> None:
    lc = _lifecycle(remove_after_idle_s=60.0, candidate={"location": PRIMARY, "windows": ()})
    assert _plan(_state(), QUIET, lc, histories=_idle_world(QUIET, 86400)) == ()


def test_a_stretch_nobody_watched_is_not_idle() -> None:
    """An hour without samples (reads throttled, the controller down) then one quiet tick: the
    location's last session may have ended seconds ago, so its idle clock starts after the
    hole, not before it."""
    lc = _lifecycle(remove_after_idle_s=3600.0)
    state = _state((EXTRA, "ACTIVE", 0))
    at = _ticks(QUIET, 3 * 3600)
    seen = (at <= QUIET - 3600 - 60) | (at >= QUIET - 120)  # nothing stored for an hour
    histories = {PRIMARY: _history(at[seen]), EXTRA: _history(at[seen])}
    assert _plan(state, QUIET, lc, histories=histories) == ()
    idle = idle_seconds(
        histories[EXTRA], histories[PRIMARY], _sample(EXTRA, QUIET), QUIET, max_gap_s=MAX_GAP
    )
    assert idle == 120
    # the same stretch watched throughout: removed
    full = {PRIMARY: _history(at), EXTRA: _history(at)}
    (change,) = _plan(state, QUIET, lc, histories=full)
    assert change.action == "remove"
    # a hole of up to the allowed gap (two missed ticks) is still watched
    short = (at <= QUIET - 1800) | (at >= QUIET - 1800 + MAX_GAP)
    patchy = {PRIMARY: _history(at[short]), EXTRA: _history(at[short])}
    (change,) = _plan(state, QUIET, lc, histories=patchy)
    assert change.action == "remove"
    # and the newest row must be recent: history that stops short of now is not watching
    stale = {PRIMARY: _history(at[at <= QUIET - 600]), EXTRA: _history(at[at <= QUIET - 600])}
    assert _plan(state, QUIET, lc, histories=stale) == ()


def test_readded_location_starts_a_fresh_idle_clock() -> None:
    """Old rows from before an earlier removal do not count: the primary's ticks show the
    location was absent until 10 minutes ago."""
    at = _ticks(QUIET, 6 * 3600)
    present = (at <= QUIET - 4 * 3600) | (at >= QUIET - 600)
    histories = {PRIMARY: _history(at), EXTRA: _history(at[present])}
    idle = idle_seconds(
        histories[EXTRA], histories[PRIMARY], _sample(EXTRA, QUIET), QUIET, max_gap_s=MAX_GAP
    )
    assert idle == 600
    lc = _lifecycle(remove_after_idle_s=3600.0)
    assert _plan(_state((EXTRA, "ACTIVE", 0)), QUIET, lc, histories=histories) == ()


@settings(max_examples=60, deadline=None)
@given(
    in_use=st.lists(st.integers(0, 3), min_size=5, max_size=40),
    primary_in_use=st.integers(0, 5),
    idle_s=st.floats(60.0, 7200.0),
)
def test_never_removes_the_primary_or_a_used_location(
    in_use: list[int], primary_in_use: int, idle_s: float
) -> None:
    at = _ticks(QUIET, 60.0 * (len(in_use) - 1))
    values = np.array(in_use, dtype=np.float64)
    histories = {PRIMARY: _history(at), EXTRA: _history(at, in_use=values)}
    lc = LocationLifecycle(
        candidates=(
            LocationCandidate(EXTRA, CAP),
            LocationCandidate(PRIMARY, CAP),
        ),
        remove_after_idle_s=idle_s,
    )
    state = _state((EXTRA, "ACTIVE", in_use[-1]))
    samples = {
        PRIMARY: _sample(PRIMARY, QUIET, in_use=primary_in_use),
        EXTRA: _sample(EXTRA, QUIET, in_use=in_use[-1]),
    }
    changes = _plan(state, QUIET, lc, histories=histories, samples=samples)
    for c in changes:
        assert c.location != PRIMARY
        assert c.action == "remove"
        used = at[values > 0]
        assert used.size == 0 or QUIET - float(used[-1]) >= idle_s


# --------------------------------------------------------------------------- histories


def test_merge_histories_sums_rows_at_the_same_tick() -> None:
    a = _history(np.array([0.0, 60.0, 120.0]), in_use=np.array([1.0, 2.0, 3.0]))
    b = _history(
        np.array([60.0, 120.0]),
        in_use=np.array([10.0, 20.0]),
        complete=np.array([True, False]),
    )
    m = merge_histories({"a": a, "b": b})
    assert m.at.tolist() == [0.0, 60.0, 120.0]
    assert m.in_use.tolist() == [1.0, 12.0, 23.0]
    assert m.complete.tolist() == [True, True, False]


def test_spent_usd_bills_each_allocation_until_the_next_row() -> None:
    h = _history(np.array([0.0, 3600.0, 7200.0]), allocated=np.array([2.0, 4.0, 0.0]))
    assert spent_usd(h, 1.5, 0.0, 7200.0) == 2 * 1.5 + 4 * 1.5
    assert spent_usd(h, 1.0, 1800.0, 5400.0) == 2 * 0.5 + 4 * 0.5
    assert spent_usd(h, 1.0, 0.0, 9000.0) == 6.0  # the last row (0 slots) holds to the end
    h2 = _history(np.array([0.0]), allocated=np.array([3.0]))
    assert spent_usd(h2, 1.0, 0.0, 1800.0) == 1.5  # the last row holds until `until`
    assert spent_usd(LocationHistory.empty(), 1.0, 0.0, 1.0) == 0.0


def test_month_start_is_utc_calendar_month() -> None:
    t = datetime(2025, 3, 17, 5, 0, tzinfo=UTC).timestamp()
    assert month_start(t) == datetime(2025, 3, 1, tzinfo=UTC).timestamp()


# --------------------------------------------------------------------------- planner wiring


class _NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class _Hold:
    name: str = "hold"
    Params: ClassVar[type[BaseModel]] = _NoParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        return Recommendation(ctx.current, "hold")


def _policy(**kw: Any) -> Policy:
    return Policy(
        name="p",
        source="p.yaml",
        selector=GroupSelector(ids=("sg-1",)),
        plugin="hold",
        plugin_params=_NoParams(),
        prices={"gen4n_high": 1.0},
        **kw,
    )


def test_planner_asks_the_lifecycle_whatever_the_plugin() -> None:
    now = WINDOW_START - 600
    state = _state()
    sample = GroupSample(now, "sg-1", state, (_sample(PRIMARY, now),), complete=True)
    kw: dict[str, Any] = {
        "state": state,
        "sample": sample,
        "histories": {},
        "plugin": _Hold(),
        "params": _NoParams(),
        "now": now,
        "interval_s": 60.0,
    }
    assert plan_group(policy=_policy(), **kw).location_changes == ()
    plan = plan_group(policy=_policy(location_lifecycle=_lifecycle()), **kw)
    assert [(c.location, c.action) for c in plan.location_changes] == [(EXTRA, "add")]
    assert plan.month_spent_usd is None
    budget = Budget(max_cost_per_month=1000.0)
    at = np.array([month_start(now) - 3600, now - 3600, now])
    hist = {PRIMARY: _history(at, allocated=np.array([1.0, 2.0, 2.0]))}
    plan = plan_group(policy=_policy(budget=budget), **{**kw, "histories": hist})
    # 1 slot from the month start to an hour ago, then 2 slots for an hour, at $1/slot-hour
    expected = (now - 3600 - month_start(now)) / 3600 + 2.0
    assert plan.month_spent_usd is not None
    assert abs(plan.month_spent_usd - expected) < 1e-6
    # A location removed earlier this month billed until then: its history still counts.
    gone = {EXTRA: _history(at[:2], allocated=np.array([3.0, 0.0]))}
    plan = plan_group(policy=_policy(budget=budget), **{**kw, "histories": {**hist, **gone}})
    assert plan.month_spent_usd is not None
    assert (
        abs(plan.month_spent_usd - expected - 3.0 * (now - 3600 - month_start(now)) / 3600) < 1e-6
    )


# --------------------------------------------------------------------------- the policy file

POLICY_FILE = """\
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: lc}
spec:
  streamGroups: {ids: [sg-1]}
  policy: {plugin: target-tracking}
  budget: {maxCostPerMonth: 5000}
  locationLifecycle:
    removeAfterIdleSeconds: 7200
    candidates:
      - location: eu-central-1
        capacity: {alwaysOn: 2, targetIdle: 2, maximum: 20}
        addWhen:
          schedules:
            - {cron: "0 18 * * 1-5", timeZone: Europe/Berlin, durationSeconds: 14400}
          forecastAbove: {slots: 40}
      - location: ap-northeast-1
        capacity: {maximum: 8}
"""


def _load(tmp_path: Path, text: str) -> Policy:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return load_policy_file(path, resolve_params=lambda name, raw: None)


def test_policy_file_block_becomes_the_domain_lifecycle(tmp_path: Path) -> None:
    policy = _load(tmp_path, POLICY_FILE)
    assert policy.budget.max_cost_per_month == 5000.0
    lc = policy.location_lifecycle
    assert lc == LocationLifecycle(
        candidates=(
            LocationCandidate(
                "eu-central-1",
                CapacitySetting(always_on=2, target_idle=2, maximum=20),
                windows=(EVENING,),
                forecast_above=40.0,
                forecast_quantile=0.9,
            ),
            LocationCandidate("ap-northeast-1", CapacitySetting(always_on=0, maximum=8)),
        ),
        remove_after_idle_s=7200.0,
        activation_s=600.0,
    )
    no_block = POLICY_FILE.split("  locationLifecycle:", maxsplit=1)[0]
    assert _load(tmp_path, no_block).location_lifecycle is None


def test_policy_file_block_errors_name_the_line(tmp_path: Path) -> None:
    bad = (
        POLICY_FILE.replace('"0 18 * * 1-5"', '"0 25 * * *"')
        .replace("Europe/Berlin", "Europe/Berlim")
        .replace("alwaysOn: 2, targetIdle: 2, maximum: 20", "alwaysOn: 30, maximum: 20")
        .replace("location: ap-northeast-1", "location: eu-central-1")
    )
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, bad)
    path = tmp_path / "p.yaml"
    base = "spec.locationLifecycle.candidates"
    assert err.value.problems == [
        f"{path}:17: {base}[1]: 'eu-central-1' is listed twice",
        f"{path}:12: {base}[0].capacity.alwaysOn: alwaysOn 30 is greater than maximum 20;"
        " need alwaysOn <= maximum",
        f"{path}:15: {base}[0].addWhen.schedules[0].cron: invalid cron expression '0 25 * * *':"
        " use 5 fields, minute hour day-of-month month day-of-week (e.g. '0 18 * * 1-5')",
        f"{path}:15: {base}[0].addWhen.schedules[0].timeZone: unknown time zone 'Europe/Berlim':"
        " use an IANA name such as UTC, Europe/Berlin or America/New_York",
    ]
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, POLICY_FILE.replace("removeAfterIdleSeconds", "removeAfterIdle"))
    assert "unknown field 'removeAfterIdle'; valid fields here: candidates," in str(err.value)
