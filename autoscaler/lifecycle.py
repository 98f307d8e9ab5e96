"""Location lifecycle: when to add a location to a stream group, and when to remove it.

Why a stage of its own: adding a location is slow (the service replicates the application's
content there first: ~600 s ACTIVATING, ``LocationLifecycle.activation_s``) and removing one
ends every stream in it. Capacity plugins think one tick ahead (their lead time); a location
has to be asked for minutes earlier, and removed only once nobody has used it for a long time.
So the policy file's ``spec.locationLifecycle`` names candidate locations, and this pure
function (called by the planner, whatever the capacity plugin) proposes ``LocationChange``s
that then pass the guards like any plan (``autoscaler.guard.guard_location_changes``).

Rules, for each candidate (locations not listed are never touched):

- **Add** when the candidate is not part of the group and a trigger fires within the *add
  lead* = ``activation_s`` + the capacity lead time (provisioning at a high quantile plus one
  interval), so the location is ACTIVE and its first hosts ready when the demand comes:
  - a window (cron in an IANA time zone + duration) overlaps ``[now, now + add lead]``
    (an already running window counts too: late is better than never);
  - the group's demand forecast (every location's history summed; peak over the add lead at
    ``forecast_quantile``) reaches ``forecast_above`` slots.
  The candidate's ``capacity`` is the location's first setting (the guards round it to the
  tenancy, clamp it to the bounds and the budget).
- **Remove at once** a candidate (not the primary) whose location is in ERROR with no session
  in it: a failed location serves nobody, and the group is ACTIVE_WITH_ERRORS, frozen, until
  it is removed (the service's documented remedy: remove, then add again); a trigger that
  still fires adds it back once the group is ACTIVE.
- **Remove** when the candidate is part of the group, is not the primary location, is ACTIVE
  (or ERROR), no trigger fires within the add lead (it would be added straight back), and it
  has been *idle* for ``remove_after_idle_s``: every stored sample since then is complete and
  shows zero in use, zero waiting and zero arrivals, the current sample too, the samples have
  no hole longer than ``max_gap_s`` (the planner passes three tick intervals: a stretch the
  controller did not see, an outage of its reads or of the controller itself, is not known to
  be idle), and the location was present all that time. Presence is read against the
  primary location's samples (every location of a group is sampled at the same ticks): a
  tick with a primary sample and none of this location means the location was not there, so
  a location re-added after an earlier removal starts a fresh idle clock instead of
  inheriting the old one.

No clock, no I/O: ``now`` and the histories come in as data, so a backtest replays it.
"""

from __future__ import annotations

import math
import zoneinfo
from collections.abc import Mapping
from datetime import datetime

import numpy as np
from croniter import CroniterError, croniter

from autoscaler.domain.models import (
    FloatArray,
    GroupState,
    LocationChange,
    LocationHistory,
    LocationSample,
)
from autoscaler.domain.policy import LifecycleWindow, LocationCandidate, LocationLifecycle
from autoscaler.forecast import SeasonalForecaster
from autoscaler.schedule import latest_cron_window

# Wall-clock offsets change by at most this much at a DST transition (search margin).
REMOVABLE_STATUSES = frozenset({"ACTIVE", "ERROR"})


def check_cron(expr: str) -> str:
    """``expr`` normalised if it is a 5-field cron expression that fires, else ValueError."""
    text = " ".join(expr.split())
    if len(text.split()) != 5 or not croniter.is_valid(text):
        raise ValueError(
            f"invalid cron expression {expr!r}: use 5 fields, minute hour day-of-month month "
            "day-of-week (e.g. '0 18 * * 1-5')"
        )
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        raise ValueError(f"cron expression {expr!r} never fires") from None
    return text


def check_time_zone(name: str) -> str:
    """``name`` if zoneinfo knows it, else ValueError."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC, Europe/Berlin or "
            "America/New_York"
        ) from None
    return name


def window_overlap(window: LifecycleWindow, t0: float, t1: float) -> float | None:
    """The start of a ``window`` occurrence that overlaps ``[t0, t1]``, or None.

    The latest start at or before ``t1`` overlaps iff its end is after ``t0``; if it does
    not, no earlier one does either (occurrences last the same, but for an hour at a DST
    change: ``latest_cron_window``).
    """
    tz = zoneinfo.ZoneInfo(window.time_zone)
    latest = latest_cron_window(window.cron, tz, window.duration_s, t1)
    if latest is not None and latest[1] > t0:
        return latest[0]
    return None


def merge_histories(histories: Mapping[str, LocationHistory]) -> LocationHistory:
    """One history for the whole group: rows at the same time summed (a location without a
    row at that time adds nothing), complete only where every row there is complete."""
    parts = [h for h in histories.values() if len(h)]
    if not parts:
        return LocationHistory.empty()
    if len(parts) == 1:
        return parts[0]
    at_all = np.concatenate([h.at for h in parts])
    times, inverse = np.unique(at_all, return_inverse=True)

    def column(h: LocationHistory, name: str) -> FloatArray:
        values: FloatArray | None = getattr(h, name)
        return np.full(len(h), np.nan) if values is None else values

    def summed(name: str) -> FloatArray:
        out = np.zeros(times.shape[0], dtype=np.float64)
        np.add.at(out, inverse, np.concatenate([column(h, name) for h in parts]))
        return out

    incomplete = np.zeros(times.shape[0], dtype=np.int64)
    np.add.at(incomplete, inverse, (~np.concatenate([h.complete for h in parts])).astype(np.int64))
    return LocationHistory(
        at=times,
        in_use=summed("in_use"),
        waiting=summed("waiting"),
        arrivals=summed("arrivals"),
        placement_failures=summed("placement_failures"),
        departures=summed("departures"),
        allocated=summed("allocated"),
        idle=summed("idle"),
        complete=incomplete == 0,
        # NaN (not measured) wherever one location's row is: a partial count is no count.
        late_starts=None if all(h.late_starts is None for h in parts) else summed("late_starts"),
    )


def idle_seconds(
    history: LocationHistory,
    primary_history: LocationHistory | None,
    sample: LocationSample | None,
    now: float,
    *,
    max_gap_s: float,
) -> float:
    """How long the location has been present and unused up to ``now``, as history shows.

    0 when the current ``sample`` is missing, incomplete or shows any demand. Incomplete rows
    and rows with NaN count as use, and so does a hole of more than ``max_gap_s`` between
    rows or after the last one (unknown is never idle).
    """
    if sample is None or not sample.complete:
        return 0.0
    if sample.in_use > 0 or sample.waiting > 0 or sample.arrivals > 0:
        return 0.0
    n = int(np.searchsorted(history.at, now, side="right"))
    if n == 0:
        return 0.0
    at = history.at[:n]
    demand = history.in_use[:n] + history.waiting[:n] + history.arrivals[:n]
    used = ~history.complete[:n] | ~np.isfinite(demand) | (demand > 0)
    since = float(at[0])
    if used.any():
        since = float(at[int(np.flatnonzero(used)[-1])])
    if now - float(at[-1]) > max_gap_s:
        return 0.0
    holes = np.flatnonzero(np.diff(at) > max_gap_s)
    if holes.size:  # idle at most since the first row after the last hole
        since = max(since, float(at[int(holes[-1]) + 1]))
    if primary_history is not None and len(primary_history):
        p_at = primary_history.at[: int(np.searchsorted(primary_history.at, now, side="right"))]
        absent = np.flatnonzero(~np.isin(p_at, at))
        if absent.size:
            last_absent = int(absent[-1])
            # Present again from the first primary tick after the last one it missed.
            back = float(p_at[last_absent + 1]) if last_absent + 1 < p_at.size else now
            since = max(since, back)
    return max(0.0, now - since)


def _fmt(t: float) -> str:
    return datetime.fromtimestamp(t, zoneinfo.ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%SZ")


def _trigger(
    candidate: LocationCandidate,
    *,
    now: float,
    add_lead_s: float,
    group_history: LocationHistory | None,
    forecaster: SeasonalForecaster,
) -> str | None:
    """Why the candidate is wanted within the add lead, or None."""
    for w in candidate.windows:
        start = window_overlap(w, now, now + add_lead_s)
        if start is None:
            continue
        what = f"window '{w.cron}' {w.time_zone} ({w.duration_s:g} s)"
        if start > now:
            return f"{what} starts at {_fmt(start)}, in {start - now:.0f} s"
        return f"{what} running since {_fmt(start)}"
    if candidate.forecast_above is not None and group_history is not None and len(group_history):
        q = candidate.forecast_quantile
        fc = forecaster.forecast(group_history, now, [add_lead_s], quantiles=(q,))
        peak = float(fc.in_use_peak_quantiles[0, 0])
        if math.isfinite(peak) and peak >= candidate.forecast_above:
            return (
                f"group demand forecast p{q * 100:g} peaks at {peak:.1f} slots within"
                f" {add_lead_s:.0f} s (≥ {candidate.forecast_above:g})"
            )
    return None


def plan_locations(
    *,
    state: GroupState,
    samples: Mapping[str, LocationSample],
    histories: Mapping[str, LocationHistory],
    lifecycle: LocationLifecycle,
    now: float,
    lead_time_s: float,
    max_gap_s: float,
    forecaster: SeasonalForecaster | None = None,
) -> tuple[LocationChange, ...]:
    """The adds and removals ``lifecycle`` asks for at ``now`` (rules in the module docstring).

    ``samples`` and ``histories`` are keyed by location (this tick's samples; stored history,
    oldest first, possibly including this tick). ``lead_time_s`` is the capacity lead time
    (``autoscaler.policy.plugin.lead_time_s``); ``max_gap_s`` the longest hole between
    samples still read as watched.
    """
    add_lead = lifecycle.activation_s + lead_time_s
    fc = forecaster if forecaster is not None else SeasonalForecaster()
    group_history: LocationHistory | None = None
    if any(c.forecast_above is not None for c in lifecycle.candidates):
        # Every location's history, removed ones too: the demand a candidate served while it
        # was part of the group is the group's demand (after its removal, its players show
        # up at the remaining locations, whose rows then carry it).
        group_history = merge_histories(histories)
    primary_history = histories.get(state.primary_location)
    lead_note = f"activation {lifecycle.activation_s:g} s + lead {lead_time_s:.0f} s"
    changes: list[LocationChange] = []
    for cand in lifecycle.candidates:
        name = cand.location
        loc = state.location(name)
        why = _trigger(
            cand, now=now, add_lead_s=add_lead, group_history=group_history, forecaster=fc
        )
        if loc is None:
            if why is not None:
                reason = f"lifecycle: add {name}: {why} ({lead_note})"
                changes.append(LocationChange(name, "add", cand.capacity, reason))
            continue
        if name == state.primary_location:
            continue
        if loc.status == "ERROR" and loc.in_use <= 0:
            reason = (
                f"lifecycle: remove {name}: the location is in ERROR, which holds the group"
                " frozen until it is removed"
                + (f"; added again once the group is ACTIVE ({why})" if why is not None else "")
            )
            changes.append(LocationChange(name, "remove", None, reason))
            continue
        if why is not None:
            continue
        if loc.status not in REMOVABLE_STATUSES or loc.in_use > 0:
            continue
        idle = idle_seconds(
            histories.get(name, LocationHistory.empty()),
            primary_history if name != state.primary_location else None,
            samples.get(name),
            now,
            max_gap_s=max_gap_s,
        )
        if idle >= lifecycle.remove_after_idle_s:
            reason = (
                f"lifecycle: remove {name}: no sessions, waits or arrivals for {idle:.0f} s"
                f" (≥ {lifecycle.remove_after_idle_s:g} s) and no window or forecast within"
                f" {add_lead:.0f} s"
            )
            changes.append(LocationChange(name, "remove", None, reason))
    return tuple(changes)
