"""The ``scheduled`` plugin: cron windows and one-off events, DST, precedence, pre-warm."""

from __future__ import annotations

import textwrap
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydantic
import pytest

from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    LocationBounds,
)
from autoscaler.policy.builtin.chain import ChainPolicy, MaxPolicy
from autoscaler.policy.builtin.scheduled import ScheduledParams, ScheduledPolicy, active_limits
from autoscaler.policy.config import load_policy_file
from autoscaler.policy.plugin import PluginRegistry, PolicyContext
from autoscaler.schedule import cron_starts, latest_cron_window
from tests.policy_context import by_model
from tests.policy_context import make_ctx as shared_ctx

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")
HOUR = 3600.0


def registry() -> PluginRegistry:
    reg = PluginRegistry()  # the installed plugins (target-tracking, …) plus ours
    for cls in (ScheduledPolicy, ChainPolicy, MaxPolicy):
        plugin = cls.for_registry(reg)
        reg.register(plugin.name, plugin)
    return reg


def make_ctx(
    now: float,
    *,
    location: str = "us-east-2",
    in_use: int = 2,
    tenancy: int = 1,
    model: CapacityModel = CapacityModel.CURRENT,
    setting: CapacitySetting | None = None,
    max_capacity: int = 1000,
    lead_time_s: float = 300.0,
) -> PolicyContext:
    return shared_ctx(
        None,
        now,
        location=location,
        primary_location="us-east-2",
        in_use=in_use,
        tenancy=tenancy,
        model=model,
        setting=setting
        or by_model(
            model,
            current=CapacitySetting(always_on=2, target_idle=2, maximum=6),
            legacy=CapacitySetting(always_on=2, on_demand=4),
        ),
        idle=1,
        bounds=LocationBounds(0, max_capacity),
        lead_time=lead_time_s,
    )


def params(raw: Mapping[str, Any]) -> ScheduledParams:
    p = registry().validate_params("scheduled", raw)
    assert isinstance(p, ScheduledParams)
    return p


def decide(raw: Mapping[str, Any], ctx: PolicyContext) -> CapacitySetting:
    return ScheduledPolicy.for_registry(registry()).decide(params(raw), ctx).setting


def at(tz: zoneinfo.ZoneInfo, y: int, m: int, d: int) -> float:
    return datetime(y, m, d, tzinfo=tz).timestamp()


def runs(
    raw: Mapping[str, Any], t0: float, t1: float, step: float = 600.0
) -> list[tuple[float, float]]:
    """Contiguous [start, end) intervals during which some window is active (step-sampled)."""
    p = params(raw)
    out: list[tuple[float, float]] = []
    t = t0
    start: float | None = None
    while t < t1:
        active = bool(active_limits(p, "us-east-2", t, 0.0))
        if active and start is None:
            start = t
        if not active and start is not None:
            out.append((start, t))
            start = None
        t += step
    assert start is None, "scan ended inside a window"
    return out


# ---------------------------------------------------------------------------------------------
# Validation.


@pytest.mark.parametrize(
    ("raw", "loc", "text"),
    [
        ({"timeZone": "Europe/Berlim"}, ("timeZone",), "did you mean Europe/Berlin"),
        ({"timeZone": "CEST+1"}, ("timeZone",), "IANA name"),
        (
            {"windows": [{"cron": "0 25 * * *", "durationSeconds": 60, "minAlwaysOn": 1}]},
            ("windows", 0, "cron"),
            "expected 5 fields",
        ),
        (
            {"windows": [{"cron": "0 0 * * * *", "durationSeconds": 60, "minAlwaysOn": 1}]},
            ("windows", 0, "cron"),
            "expected 5 fields",
        ),
        (
            {"windows": [{"cron": "0 0 30 2 *", "durationSeconds": 60, "minAlwaysOn": 1}]},
            ("windows", 0, "cron"),
            "never fires",
        ),
        (
            {"windows": [{"cron": "@daily", "durationSeconds": 60, "timeZone": "Mars/Base"}]},
            ("windows", 0, "timeZone"),
            "unknown time zone 'Mars/Base'",
        ),
        (
            {"events": [{"start": "2026-03-14T17:00:00", "end": "2026-03-15T01:00:00+01:00"}]},
            ("events", 0, "start"),
            "timezone info",
        ),
        (
            {
                "events": [
                    {
                        "start": "2026-03-14T17:00:00+01:00",
                        "end": "2026-03-14T16:00:00+01:00",
                        "alwaysOn": 3,
                    }
                ]
            },
            ("events", 0),
            "is not after start",
        ),
        (
            {"windows": [{"cron": "@daily", "durationSeconds": 60}]},
            ("windows", 0),
            "sets nothing",
        ),
        (
            {
                "windows": [
                    {"cron": "@daily", "durationSeconds": 60, "alwaysOn": 1, "minAlwaysOn": 2}
                ]
            },
            ("windows", 0),
            "cannot be combined",
        ),
        (
            {
                "windows": [
                    {"cron": "@daily", "durationSeconds": 60, "minMaximum": 9, "maxMaximum": 2}
                ]
            },
            ("windows", 0),
            "minMaximum 9 > maxMaximum 2",
        ),
        ({}, (), "at least one entry in windows or events"),
        (
            {"events": [], "windows": [], "base": {"plugin": "nope"}},
            ("base", "plugin"),
            "unknown policy plugin 'nope'",
        ),
    ],
)
def test_invalid_params_name_the_field_and_what_is_valid(
    raw: dict[str, Any], loc: tuple[str | int, ...], text: str
) -> None:
    if "events" not in raw and "windows" not in raw and loc and loc[0] == "timeZone":
        raw = {**raw, "events": [_event(alwaysOn=1)]}
    with pytest.raises(pydantic.ValidationError) as caught:
        params(raw)
    errors = caught.value.errors(include_url=False)
    assert any(e["loc"][: len(loc)] == loc and text in e["msg"] for e in errors), errors


def _event(**limits: Any) -> dict[str, Any]:
    return {"start": "2026-03-14T17:00:00+01:00", "end": "2026-03-15T01:00:00+01:00", **limits}


def test_policy_file_error_has_file_line_and_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent("""\
        apiVersion: autoscaler.gameliftstreams/v1
        kind: CapacityPolicy
        metadata: {name: bad}
        spec:
          streamGroups: {ids: [sg-1]}
          policy:
            plugin: scheduled
            params:
              windows:
                - cron: "0 18 * * 1-5"
                  durationSeconds: 3600
                  timeZone: Europe/Berlim
                  minAlwaysOn: 4
        """)
    )
    reg = registry()
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path, resolve_params=reg.validate_params)
    [problem] = caught.value.problems
    assert problem.startswith(f"{path}:12: spec.policy.params.windows[0].timeZone: ")
    assert "unknown time zone 'Europe/Berlim'" in problem


# ---------------------------------------------------------------------------------------------
# Time: DST-safe cron windows.


@pytest.mark.parametrize(
    ("tz", "days"),
    [
        (BERLIN, [(2026, 3, 27), (2026, 10, 23)]),  # DST ends/starts on the 29th / 25th
        (NEW_YORK, [(2026, 3, 6), (2026, 10, 30)]),  # 8 March / 1 November
    ],
)
def test_daily_window_keeps_local_time_across_both_transitions(
    tz: zoneinfo.ZoneInfo, days: list[tuple[int, int, int]]
) -> None:
    raw = {
        "windows": [
            {"cron": "0 9 * * *", "durationSeconds": 2 * HOUR, "timeZone": tz.key, "alwaysOn": 4}
        ]
    }
    for y, m, d in days:
        t0 = at(tz, y, m, d)
        found = runs(raw, t0, t0 + 5 * 86400, step=1200.0)
        assert len(found) == 5  # one per day: none lost, none doubled
        for start, end in found:
            local = datetime.fromtimestamp(start, tz)
            assert (local.hour, local.minute) == (9, 0)
            assert end - start == 2 * HOUR
        offsets = {datetime.fromtimestamp(s, tz).utcoffset() for s, _ in found}
        assert len(offsets) == 2  # the transition is inside the scanned days


@pytest.mark.parametrize(
    ("tz", "spring", "autumn"),
    [(BERLIN, (2026, 3, 29), (2026, 10, 25)), (NEW_YORK, (2026, 3, 8), (2026, 11, 1))],
)
def test_window_in_the_skipped_and_repeated_hour_happens_once(
    tz: zoneinfo.ZoneInfo, spring: tuple[int, int, int], autumn: tuple[int, int, int]
) -> None:
    raw = {
        "windows": [
            {"cron": "30 2 * * *", "durationSeconds": HOUR, "timeZone": tz.key, "maximum": 9}
        ]
    }
    # Spring forward: 02:30 does not exist; the window starts at 03:30 (one hour later).
    day = at(tz, *spring)
    found = runs(raw, day - 86400, day + 2 * 86400, step=1800.0)
    assert len(found) == 3
    start, end = found[1]
    assert datetime.fromtimestamp(start, tz).strftime("%H:%M") == "03:30"
    assert end - start == HOUR
    # Fall back: in Berlin 02:30 happens twice; the window starts once (the first time) and
    # ends at 03:30 local, as on every other day: two hours, across the repeated hour. (New
    # York repeats 01:00-02:00, so its 02:30 window is an ordinary hour.)
    day = at(tz, *autumn)
    found = runs(raw, day - 86400, day + 2 * 86400, step=1800.0)
    assert len(found) == 3
    start, end = found[1]
    local = datetime.fromtimestamp(start, tz)
    assert (local.strftime("%H:%M"), local.fold) == ("02:30", 0)
    assert datetime.fromtimestamp(end, tz).strftime("%H:%M") == "03:30"
    assert end - start == (2 * HOUR if tz is BERLIN else HOUR)
    starts = cron_starts("30 2 * * *", tz, day - 86400, day + 2 * 86400)
    assert [s for s, _ in found] == starts


@pytest.mark.parametrize(
    ("tz", "spring", "autumn"),
    [(BERLIN, (2026, 3, 29), (2026, 10, 25)), (NEW_YORK, (2026, 3, 8), (2026, 11, 1))],
)
@pytest.mark.parametrize(
    ("cron", "duration_s"),
    [("0 * * * *", HOUR), ("0 0 * * *", 24 * HOUR), ("0 */6 * * *", 6 * HOUR)],
)
def test_back_to_back_windows_leave_no_gap_across_either_transition(
    tz: zoneinfo.ZoneInfo,
    spring: tuple[int, int, int],
    autumn: tuple[int, int, int],
    cron: str,
    duration_s: float,
) -> None:
    # Windows that tile the day on the wall clock (hourly, daily, every 6 h) must tile it
    # on the 25-hour autumn day too: a window ends at its cron time plus its duration on the
    # wall clock (the repeated hour is covered), never sooner than its duration.
    raw = {"windows": [{"cron": cron, "durationSeconds": duration_s, "timeZone": tz.key}]}
    raw["windows"][0]["minAlwaysOn"] = 2
    for y, m, d in (spring, autumn):
        day = at(tz, y, m, d)
        t = day - 86400.0
        while t < day + 2 * 86400.0:
            assert active_limits(params(raw), "us-east-2", t, 0.0), datetime.fromtimestamp(t, tz)
            t += 300.0


def test_a_start_moved_past_a_later_one_by_a_half_hour_change_is_the_latest() -> None:
    # Lord Howe springs forward 30 minutes at 02:00: "15,30 2 * * *" starts at 02:30 and at
    # 02:45 (02:15 moved by the change). Hours later the 02:45 window must still be the one
    # in force, although 02:30 is the later time on the wall clock.
    tz = zoneinfo.ZoneInfo("Australia/Lord_Howe")
    t = datetime(2026, 10, 4, 10, 35, tzinfo=tz).timestamp()
    window = latest_cron_window("15,30 2 * * *", tz, 8 * HOUR, t)
    assert window is not None
    shown = [datetime.fromtimestamp(x, tz).strftime("%H:%M") for x in window]
    assert shown == ["02:45", "10:45"]


@pytest.mark.parametrize("duration_s", [3e11, float("inf")])
def test_a_window_too_long_for_the_calendar_never_ends(duration_s: float) -> None:
    raw = {"windows": [{"cron": "0 0 * * *", "durationSeconds": duration_s, "minAlwaysOn": 2}]}
    assert active_limits(params(raw), "us-east-2", 1_780_000_000.0, 0.0)


# ---------------------------------------------------------------------------------------------
# Precedence.

MON_18 = datetime(2026, 6, 1, 18, 30, tzinfo=UTC).timestamp()  # a Monday, 18:30 UTC


def _window(**limits: Any) -> dict[str, Any]:
    return {"cron": "0 18 * * 1", "durationSeconds": 2 * HOUR, **limits}


def _event_now(**limits: Any) -> dict[str, Any]:
    return {"start": "2026-06-01T18:00:00Z", "end": "2026-06-01T20:00:00+00:00", **limits}


def test_overrides_beat_floors_and_ceilings() -> None:
    raw = {"windows": [_window(minAlwaysOn=10, maxMaximum=3), _window(alwaysOn=4, maximum=20)]}
    assert decide(raw, make_ctx(MON_18)) == CapacitySetting(4, 2, 20)


def test_highest_floor_and_lowest_ceiling_win() -> None:
    raw = {
        "windows": [
            _window(minAlwaysOn=5, maxMaximum=20),
            _window(minAlwaysOn=8, maxMaximum=12),
            _window(minTargetIdle=3),
        ]
    }
    ctx = make_ctx(MON_18, setting=CapacitySetting(always_on=1, target_idle=1, maximum=40))
    assert decide(raw, ctx) == CapacitySetting(8, 3, 12)


def test_among_overrides_the_largest_wins() -> None:
    raw = {"windows": [_window(alwaysOn=3), _window(alwaysOn=7)]}
    assert decide(raw, make_ctx(MON_18)).always_on == 7


def test_one_off_events_beat_cron_windows() -> None:
    raw = {
        "windows": [_window(minAlwaysOn=10, maxMaximum=12)],
        "events": [_event_now(minAlwaysOn=3)],
    }
    s = decide(raw, make_ctx(MON_18))
    assert s.always_on == 3  # the event's lower floor, not the window's
    assert s.maximum == 6  # maximum: no event constrains it, so the window's ceiling applies
    raw = {"windows": [_window(maximum=30)], "events": [_event_now(maxMaximum=8)]}
    ctx = make_ctx(MON_18, setting=CapacitySetting(always_on=2, target_idle=2, maximum=40))
    assert decide(raw, ctx).maximum == 8  # the window's exact 30 loses to the event's ceiling


def test_a_floor_beats_a_contradicting_ceiling_and_maximum_follows_always_on() -> None:
    raw = {"windows": [_window(minAlwaysOn=10), _window(maxAlwaysOn=4, maxMaximum=5)]}
    assert decide(raw, make_ctx(MON_18)) == CapacitySetting(10, 2, 10)


def test_tenancy_rounds_floors_up_and_ceilings_down() -> None:
    raw = {"windows": [_window(minAlwaysOn=5, maxMaximum=10)]}
    ctx = make_ctx(MON_18, tenancy=4, setting=CapacitySetting(4, 4, 40))
    assert decide(raw, ctx) == CapacitySetting(8, 4, 8)


def test_locations_filter_and_the_location_bound_caps() -> None:
    raw = {"windows": [_window(minAlwaysOn=50, locations=["eu-central-1"])]}
    assert decide(raw, make_ctx(MON_18)).always_on == 2
    ctx = make_ctx(MON_18, location="eu-central-1", max_capacity=30)
    rec = ScheduledPolicy.for_registry(registry()).decide(params(raw), ctx)
    assert rec.setting == CapacitySetting(30, 2, 30)
    assert "capped at the location's maximum bound 30" in rec.reason


# ---------------------------------------------------------------------------------------------
# Pre-warm, base policy, legacy.


def test_floors_start_prewarm_seconds_early_ceilings_and_overrides_at_the_start() -> None:
    start = datetime(2026, 6, 1, 18, 0, tzinfo=UTC).timestamp()
    raw = {"prewarmSeconds": 600, "windows": [_window(minAlwaysOn=10, maxTargetIdle=1)]}
    policy = ScheduledPolicy.for_registry(registry())
    p = params(raw)
    assert policy.decide(p, make_ctx(start - 660)).setting == CapacitySetting(2, 2, 6)
    early = policy.decide(p, make_ctx(start - 540))
    assert early.setting == CapacitySetting(10, 2, 10)  # floor yes, ceiling not yet
    assert "(pre-warm)" in early.reason
    assert policy.decide(p, make_ctx(start + 60)).setting == CapacitySetting(10, 1, 10)
    end = start + 2 * HOUR
    assert policy.decide(p, make_ctx(end - 1)).setting.always_on == 10
    assert policy.decide(p, make_ctx(end)).setting.always_on == 2  # no lag at the end
    # Default pre-warm: the context's lead time.
    p = params({"windows": [_window(minAlwaysOn=10)]})
    assert policy.decide(p, make_ctx(start - 200, lead_time_s=300)).setting.always_on == 10
    assert policy.decide(p, make_ctx(start - 400, lead_time_s=300)).setting.always_on == 2


def test_events_prewarm_too() -> None:
    start = datetime(2026, 6, 1, 18, 0, tzinfo=UTC).timestamp()
    raw = {"events": [_event_now(minAlwaysOn=6, prewarmSeconds=900)]}
    assert decide(raw, make_ctx(start - 800)).always_on == 6
    assert decide(raw, make_ctx(start - 1000)).always_on == 2


def test_base_policy_decides_outside_windows_and_is_bent_inside() -> None:
    raw = {
        "windows": [_window(minAlwaysOn=30)],
        "base": {"plugin": "target-tracking", "params": {"targetUtilization": 0.5}},
    }
    outside = make_ctx(MON_18 - 3 * HOUR, in_use=5)
    rec = ScheduledPolicy.for_registry(registry()).decide(params(raw), outside)
    assert rec.setting.always_on == 10  # 5 / 0.5
    assert "no window or event active" in rec.reason
    assert "target-tracking" in rec.reason
    assert decide(raw, make_ctx(MON_18, in_use=5)).always_on == 30


def test_a_failing_base_holds_and_says_so() -> None:
    reg = registry()

    class Broken:
        name = "broken"
        Params = ScheduledParams.__base__  # CompositeParams: extra=forbid, no fields

        def decide(self, params: Any, ctx: PolicyContext) -> Any:
            raise RuntimeError("boom")

    reg.register("broken", Broken)
    policy = ScheduledPolicy.for_registry(reg)
    raw = {"windows": [_window(minAlwaysOn=4)], "base": {"plugin": "broken"}}
    p = reg.validate_params("scheduled", raw)
    rec = policy.decide(p, make_ctx(MON_18 - 3 * HOUR))
    assert rec.setting == CapacitySetting(2, 2, 6)
    assert "base failed (broken raised RuntimeError: boom)" in rec.reason


def test_legacy_target_idle_floor_raises_always_on_above_demand() -> None:
    raw = {"windows": [_window(minTargetIdle=3, minMaximum=20)]}
    ctx = make_ctx(MON_18, model=CapacityModel.LEGACY, in_use=5)
    assert decide(raw, ctx) == CapacitySetting(always_on=8, on_demand=12)
