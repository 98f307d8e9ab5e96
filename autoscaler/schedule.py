"""Cron schedules in IANA time zones, evaluated on wall-clock time and safe across DST.

Shared by the ``scheduled``/``chain``/``max`` plugins and the location lifecycle: the rule for
a start in a skipped or repeated hour must be the same everywhere a schedule is read.
"""

from __future__ import annotations

import difflib
import zoneinfo
from datetime import UTC, datetime, timedelta

from croniter import CroniterError, croniter

# Largest UTC offset change of any real DST transition, plus room: within this distance of a
# transition, wall-clock cron times are not monotone in UTC and need a wider search.
_DST_MARGIN = timedelta(hours=3)
_MAX_CRON_STEPS = 2000
_CRON_MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_CRON_HELP = (
    "expected 5 fields 'minute hour day-of-month month day-of-week' (e.g. '0 18 * * 1-5': "
    "18:00 Monday to Friday) or one of " + ", ".join(_CRON_MACROS)
)
_CRON_REFERENCE = datetime(2000, 1, 1)  # naive: cron reads wall-clock time


def check_time_zone(name: str) -> str:
    """``name`` if it is an IANA time zone known to zoneinfo, else a ValueError saying what is
    valid (with the closest names)."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown time zone {name!r}: use an IANA name such as UTC, Europe/Berlin or "
            f"America/New_York{hint}"
        ) from None
    return name


def check_cron(expr: str) -> str:
    """``expr`` normalised if it is a standard cron expression that fires at all, else a
    ValueError saying what is valid."""
    text = " ".join(expr.split())
    macro = text.startswith("@")
    if (macro and text not in _CRON_MACROS) or (not macro and len(text.split()) != 5):
        raise ValueError(f"invalid cron expression {expr!r}: {_CRON_HELP}")
    if not croniter.is_valid(text):
        raise ValueError(f"invalid cron expression {expr!r}: {_CRON_HELP}")
    try:
        croniter(text, _CRON_REFERENCE).get_next(datetime)
    except CroniterError:
        raise ValueError(f"cron expression {expr!r} never fires (e.g. 30 February)") from None
    return text


def _wall_to_epoch(wall: datetime, tz: zoneinfo.ZoneInfo) -> float:
    # fold=0: an ambiguous time (fall back) is its first occurrence; a time in the skipped hour
    # (spring forward) is read with the offset before the change, i.e. one hour later on the
    # wall clock (02:30 → 03:30). One wall-clock match is one start: never two, never none.
    return wall.replace(tzinfo=tz, fold=0).timestamp()


def latest_cron_start(expr: str, tz: zoneinfo.ZoneInfo, t: float) -> float | None:
    """The latest start of ``expr`` (evaluated in ``tz``'s wall-clock time) at or before
    epoch ``t``; None if it never fired before."""
    latest = _latest_fire(expr, tz, t)
    return None if latest is None else latest[0]


def latest_cron_window(
    expr: str, tz: zoneinfo.ZoneInfo, duration_s: float, t: float
) -> tuple[float, float] | None:
    """``(start, end)`` of the latest window of ``expr`` started at or before epoch ``t`` and
    lasting ``duration_s``; None if it never started before.

    A window ends ``duration_s`` after its start, or at its cron time plus ``duration_s`` on
    the wall clock if that is later. Why: on the 25-hour autumn day a 24-hour window from
    00:00 ended at 23:00 and back-to-back hourly windows left the repeated hour uncovered;
    users write a window as "from 02:00 to 06:00 local". Never shorter than ``duration_s``
    (on the 23-hour spring day the next window starts an hour before this one ends, and
    overlapping windows combine, as any overlap does)."""
    latest = _latest_fire(expr, tz, t)
    if latest is None:
        return None
    start, fire = latest
    try:
        wall_end = _wall_to_epoch(fire + timedelta(seconds=duration_s), tz)
    except (OverflowError, ValueError):  # past year 9999, or infinite: it never ends anyway
        return start, start + duration_s
    return start, max(start + duration_s, wall_end)


def _latest_fire(expr: str, tz: zoneinfo.ZoneInfo, t: float) -> tuple[float, datetime] | None:
    """The latest start at or before ``t`` as epoch seconds and as the cron's own wall-clock
    time (naive), which differ in the skipped spring hour."""
    wall = datetime.fromtimestamp(t, tz).replace(tzinfo=None)
    near_change = _near_change(t, tz)
    start = wall + (_DST_MARGIN if near_change else timedelta(0)) + timedelta(seconds=1)
    # Near a change, wall-clock fires are not in epoch order: search the whole margin.
    search_until = wall - _DST_MARGIN if near_change else None
    try:
        it = croniter(expr, start)
        best: tuple[float, datetime] | None = None
        for _ in range(_MAX_CRON_STEPS):
            fire = it.get_prev(datetime)
            at = _wall_to_epoch(fire, tz)
            if at <= t:
                if best is None or at > best[0]:
                    best = (at, fire)
                if search_until is None:
                    # The latest fire on the wall clock, unless a change near it moved an
                    # earlier one (in a skipped stretch) past it: in a zone whose change is
                    # not a whole hour (Lord Howe's 30 min), 02:15 skipped lands after 02:30.
                    if not _near_change(at, tz):
                        return best
                    search_until = fire - _DST_MARGIN
                elif fire < search_until:
                    return best
    except CroniterError:  # no earlier fire at all
        return best
    return best


def _near_change(t: float, tz: zoneinfo.ZoneInfo) -> bool:
    """Whether ``tz``'s UTC offset changes within ``_DST_MARGIN`` of epoch ``t``."""
    moment = datetime.fromtimestamp(t, UTC)
    before = (moment - _DST_MARGIN).astimezone(tz).utcoffset()
    return before != (moment + _DST_MARGIN).astimezone(tz).utcoffset()


def cron_starts(expr: str, tz: zoneinfo.ZoneInfo, t0: float, t1: float) -> list[float]:
    """Every distinct start of ``expr`` in ``[t0, t1)``, sorted (for reports and tests)."""
    it = croniter(expr, datetime.fromtimestamp(t0, tz).replace(tzinfo=None) - _DST_MARGIN)
    found: set[float] = set()
    for _ in range(1_000_000):
        fire = it.get_next(datetime)
        at = _wall_to_epoch(fire, tz)
        if t0 <= at < t1:
            found.add(at)
        if at >= t1 + _DST_MARGIN.total_seconds():
            break
    return sorted(found)
