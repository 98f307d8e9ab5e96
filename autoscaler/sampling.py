"""The sampling stage: read each managed group's capacity and sessions, and turn them into
per-location demand samples.

Two halves. ``derive_location_samples`` is pure (plain data in, plain data out) so every
counting rule is tested without I/O. ``Sampler`` does the reads through the narrow
``StreamGroupReader`` port, with bounded concurrency, and never raises: a failed read makes
that group's sample incomplete (with the reason), which the guards treat as "hold, do not
scale down", instead of zeros that would look like no demand.

Call budget per group and tick: one GetStreamGroup and one *unfiltered* ListStreamSessions
(all pages, 100 per page). Why not per-status filters (the design's first idea): every count
we need spans statuses. Arrivals are sessions *created* in the window, whatever their status
now (a session may be created and ended between two ticks); placement failures and departures
need the ERROR and TERMINATED listings, which contain the same old ended sessions an unfiltered
listing does. Filtered listing therefore needs one call per status (8 with the slot-holding
ones) and ``Σ ceil(n_s/100) ≥ ceil(Σ n_s/100)`` pages: never fewer calls than one unfiltered
listing, usually 8 times more. Old ended sessions are ignored by time, not by filter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
from collections.abc import Callable, Mapping, Sequence

from autoscaler.domain.clock import Clock
from autoscaler.domain.errors import NotFoundError, ServiceError
from autoscaler.domain.models import (
    ENDED_STATUSES,
    SLOT_HOLDING_STATUSES,
    GroupSample,
    GroupState,
    GroupSummary,
    LocationSample,
    SessionSummary,
)
from autoscaler.domain.ports import StreamGroupReader

logger = logging.getLogger(__name__)

WAITING_STATUS = "ACTIVATING"
PLACEMENT_TIMEOUT = "placementTimeout"
# Group statuses whose sessions cannot be listed (gameliftstreams.md, lifecycle table).
SESSIONS_UNREADABLE_STATUSES = frozenset({"EXPIRED"})
# What derive_location_samples does with a session, by status (one dict lookup per session).
_HOLDING, _WAITING, _ENDED = 1, 2, 3
_STATUS_KIND: dict[str, int] = {
    **dict.fromkeys(SLOT_HOLDING_STATUSES, _HOLDING),
    WAITING_STATUS: _WAITING,
    **dict.fromkeys(ENDED_STATUSES, _ENDED),
}
# A session whose start (request → ACTIVE, or CONNECTED a moment later) took longer than this
# waited for capacity: the emulator launches in 5 s and connects 2 s later; a real application
# may launch slower (the ``instant_start_s`` setting).
INSTANT_START_S = 10.0
# A "start" later than the longest placement timeout (10 min, Windows on-demand) plus launch is
# a later update of a session that started long ago (a reconnect), not a start.
_LATEST_START_S = 900.0
_STARTED_SET = frozenset({"ACTIVE", "CONNECTED"})
_SEEN_WAITING_MAX = 10_000  # waiting sessions remembered per group for the start-time check
_SLOW_LAUNCH_TICKS = 10  # ticks in a row of late starts beside idle slots: a launch-time setting
# A window also looks this far back past its lower edge for sessions the previous listing did
# not show (a listing that lags, a controller clock a little ahead of the service's): they
# count now, and those counted before are recognised by ARN (``CountedSessions``).
WINDOW_OVERLAP_S = 60.0
# The same classes as sets, for the one-location loop (membership tests, no call per session).
_HOLDING_SET = frozenset(k for k, v in _STATUS_KIND.items() if v == _HOLDING)
_WAITING_SET = frozenset(k for k, v in _STATUS_KIND.items() if v == _WAITING)
_ENDED_SET = frozenset(k for k, v in _STATUS_KIND.items() if v == _ENDED)


@dataclasses.dataclass(slots=True)
class CountedSessions:
    """What one group's earlier windows counted, so that a session counts once however the
    windows and its updates fall. ``derive_location_samples`` updates it in place.

    - ``started``: sessions seen streaming. A later update of one is not a start: CONNECTED
      a moment after ACTIVE in the next window, or a reconnect minutes later, would otherwise
      read as a second late start.
    - ``arrived`` / ``ended``: ARN → CreatedAt / LastUpdatedAt of the arrivals and
      departures counted, kept while they can fall in a later window's overlap.
    - ``floor``: nothing at or before it is counted: the lower edge of the first window this
      memory saw (a previous process counted what came before), or ``WINDOW_OVERLAP_S``
      before a listing that opened no window (a first one, the first after a hole), whose own
      sessions are remembered as counted, so that only what it missed counts next.

    Kept per process: after a restart, a late session's ACTIVE before it and CONNECTED after
    it still count twice, as without this memory.
    """

    started: set[str] = dataclasses.field(default_factory=set)
    arrived: dict[str, float] = dataclasses.field(default_factory=dict)
    ended: dict[str, float] = dataclasses.field(default_factory=dict)
    floor: float | None = None

    def window_start(self, previous_at: float | None, now: float) -> float:
        """The lower edge (exclusive) of the window ending at ``now``; +inf for none."""
        if previous_at is None or now <= previous_at:
            if previous_at is None:
                self.floor = now - WINDOW_OVERLAP_S
            return math.inf
        if self.floor is None:
            self.floor = previous_at
        lo = max(previous_at - WINDOW_OVERLAP_S, self.floor)
        # What can no longer fall in a window (lower edges only move forward) is forgotten.
        if self.arrived:
            self.arrived = {k: t for k, t in self.arrived.items() if t > lo}
        if self.ended:
            self.ended = {k: t for k, t in self.ended.items() if t > lo}
        return lo

    def first_arrival(self, arn: str, created_at: float) -> bool:
        if arn in self.arrived:
            return False
        self.arrived[arn] = created_at
        return True

    def first_departure(self, arn: str, updated_at: float) -> bool:
        self.started.discard(arn)
        if arn in self.ended:
            return False
        self.ended[arn] = updated_at
        return True

    def first_start(self, arn: str) -> bool:
        if arn in self.started:
            return False
        self.started.add(arn)
        return True

    def remember_listing(self, sessions: Sequence[SessionSummary], now: float) -> None:
        """``sessions`` (a listing that opened no window) as counted: its arrivals and
        departures within the overlap, and its sessions holding a slot as started."""
        lo = now - WINDOW_OVERLAP_S
        for s in sessions:
            if lo < s.created_at <= now:
                self.arrived[s.arn] = s.created_at
            if s.status in _ENDED_SET and lo < s.last_updated_at <= now:
                self.ended[s.arn] = s.last_updated_at
        self.remember_started(sessions, now)

    def remember_started(self, sessions: Sequence[SessionSummary], now: float) -> None:
        """``started`` becomes the sessions of ``sessions`` that hold a slot (streaming, or
        waiting for their player to reconnect) and were last updated by ``now``: those
        updated after it (while the listing was paged) are the next window's to count."""
        self.started = {
            s.arn for s in sessions if s.status in _HOLDING_SET and s.last_updated_at <= now
        }


def derive_location_samples(
    state: GroupState,
    sessions: Sequence[SessionSummary],
    previous_at: float | None,
    now: float,
    complete: bool,
    *,
    instant_start_s: float = INSTANT_START_S,
    counted: CountedSessions | None = None,
) -> tuple[LocationSample, ...]:
    """One ``LocationSample`` per location of ``state``, counting ``sessions``.

    Rules (all times epoch seconds; the window is ``(previous_at, now]``):

    - in_use: sessions in ``SLOT_HOLDING_STATUSES``; waiting: sessions ACTIVATING;
      oldest_waiting_s: age at ``now`` of the oldest ACTIVATING session.
    - arrivals: sessions created in the window, whatever their status now.
    - placement_failures: ERROR / placementTimeout sessions last updated in the window.
    - departures: ended sessions (TERMINATED or ERROR, placement failures included) last
      updated in the window. Ended sessions older than the window never count.
    - late_starts: ACTIVE or CONNECTED sessions last updated in the window whose start took
      more than ``instant_start_s`` (and at most ``_LATEST_START_S``, past which the update
      is a reconnect): they waited for capacity. Without ``counted``, a session that went
      ACTIVE and CONNECTED in two windows counts twice when late, and a reconnect within that
      age counts; one that waited and ended before any sample saw it streaming is not
      counted.
    - ``previous_at`` None (first sample of a group): no window, so 0 arrivals, failures and
      departures; a first listing is not a burst of new demand. A window with
      ``now <= previous_at`` (clock jumped back) is empty too.
    - A session with no location is attributed to the group's primary location; a session in a
      location the group no longer has is not counted anywhere.
    - ``complete=False`` with no sessions (the listing failed): in_use falls back to the
      service's own ``allocated - idle`` for that location, the flows are 0, and every sample
      says ``complete=False`` so nothing downstream reads them as real zeros.
    - With ``counted`` (the group's memory of earlier windows, updated here): the window
      reaches ``WINDOW_OVERLAP_S`` further back, and a session counts as an arrival, a
      departure or a start only once (by ARN), so one the previous listing missed counts now
      and none counts twice; a session already seen streaming never counts as a late start
      again (its CONNECTED after ACTIVE, a reconnect).
    """
    # One pass over the listing (it holds every live session, each tick): per location the
    # counts [in_use, waiting, arrivals, placement_failures, departures, late_starts] and the
    # oldest wait.
    counts: dict[str, list[int]] = {loc.name: [0, 0, 0, 0, 0, 0] for loc in state.locations}
    oldest: dict[str, float] = dict.fromkeys(counts, 0.0)
    primary = state.primary_location
    # No window: a lower edge of +inf puts every time outside (lo < t is never true).
    fresh = False
    if counted is not None:
        fresh = counted.floor is None
        lo = counted.window_start(previous_at, now)
    else:
        lo = previous_at if previous_at is not None else math.inf
    if len(counts) == 1:
        # One location (a backtest's group, most groups): the same rules without a lookup
        # of the location's counters or of the status's kind per session.
        (only,) = counts
        counts[only], oldest[only] = _count_one(
            sessions,
            only,
            primary == only,
            lo,
            now,
            instant_start_s=instant_start_s,
            counted=counted,
        )
        sessions_left: Sequence[SessionSummary] = ()
    else:
        sessions_left = sessions
    kind_of = _STATUS_KIND.get
    get_counts = counts.get
    for s in sessions_left:
        name = s.location
        if name is None:
            name = primary
        c = get_counts(name)
        if c is None:
            continue
        kind = kind_of(s.status)
        if kind == _HOLDING:
            c[0] += 1
            if lo < s.last_updated_at <= now and s.status in _STARTED_SET:
                c[5] += _late_start(s, instant_start_s, counted)
        elif kind == _WAITING:
            c[1] += 1
            age = now - s.created_at
            oldest[name] = max(oldest[name], age)  # from 0.0: never negative, NaN never wins
        elif (
            kind == _ENDED
            and lo < s.last_updated_at <= now
            and (counted is None or counted.first_departure(s.arn, s.last_updated_at))
        ):
            c[4] += 1
            if s.status == "ERROR" and s.status_reason == PLACEMENT_TIMEOUT:
                c[3] += 1
        if lo < s.created_at <= now and (
            counted is None or counted.first_arrival(s.arn, s.created_at)
        ):
            c[2] += 1

    if counted is not None:
        if lo == math.inf:
            counted.remember_listing(sessions, now)
        elif fresh or len(counted.started) > 2 * sum(c[0] for c in counts.values()) + 64:
            # The sessions holding a slot in the first window this memory sees started before
            # it (their later updates are not starts); and sessions that ended unseen (gone
            # from the listing) leave ``started`` over time.
            counted.remember_started(sessions, now)
    samples: list[LocationSample] = []
    for loc in state.locations:
        in_use, waiting, arrivals, failures, departures, late = counts[loc.name]
        late_starts: int | None = late
        if not complete and not sessions:
            in_use = loc.in_use
            late_starts = None
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
                waiting=waiting,
                oldest_waiting_s=oldest[loc.name],
                arrivals=arrivals,
                placement_failures=failures,
                departures=departures,
                complete=complete,
                late_starts=late_starts,
            )
        )
    return tuple(samples)


def _late_start(s: SessionSummary, instant_start_s: float, counted: CountedSessions | None) -> int:
    """1 if streaming session ``s``, updated in the window, started there after waiting."""
    if counted is not None and not counted.first_start(s.arn):
        return 0
    took = s.last_updated_at - s.created_at
    return 1 if instant_start_s < took <= _LATEST_START_S else 0


def _count_one(
    sessions: Sequence[SessionSummary],
    only: str,
    none_is_only: bool,
    lo: float,
    now: float,
    *,
    instant_start_s: float,
    counted: CountedSessions | None,
) -> tuple[list[int], float]:
    """``derive_location_samples``'s counters ``[in_use, waiting, arrivals,
    placement_failures, departures, late_starts]`` and oldest wait for a group with the one
    location ``only`` (sessions elsewhere are skipped; with no location they count if ``only``
    is the primary): the general loop's rules, test for test."""
    in_use = waiting = arrivals = failures = departures = late = 0
    old = 0.0
    for s in sessions:
        name = s.location
        if name != only and (name is not None or not none_is_only):
            continue
        status = s.status
        if status in _HOLDING_SET:
            in_use += 1
            if lo < s.last_updated_at <= now and status in _STARTED_SET:
                late += _late_start(s, instant_start_s, counted)
        elif status in _WAITING_SET:
            waiting += 1
            old = max(old, now - s.created_at)  # from 0.0: never negative, NaN never wins
        elif (
            status in _ENDED_SET
            and lo < s.last_updated_at <= now
            and (counted is None or counted.first_departure(s.arn, s.last_updated_at))
        ):
            departures += 1
            if status == "ERROR" and s.status_reason == PLACEMENT_TIMEOUT:
                failures += 1
        if lo < s.created_at <= now and (
            counted is None or counted.first_arrival(s.arn, s.created_at)
        ):
            arrivals += 1
    return [in_use, waiting, arrivals, failures, departures, late], old


def _describe(op: str, exc: BaseException) -> str:
    if isinstance(exc, NotFoundError):
        return "group not found"
    if isinstance(exc, ServiceError):
        return f"{op} failed: {exc}"
    return f"{op} failed unexpectedly: {type(exc).__name__}: {exc}"


class Sampler:
    """Reads groups through a ``StreamGroupReader``; at most ``max_concurrency`` groups at once.

    ``sample`` returns one ``GroupSample`` per requested id, in the order given, all stamped
    with the same ``at`` (read from ``clock`` once, before any request), so that consecutive
    windows ``(previous[g], at]`` tile time without gaps or overlaps.
    """

    def __init__(
        self,
        reader: StreamGroupReader,
        *,
        max_concurrency: int = 8,
        clock: Clock,
        instant_start_s: float = INSTANT_START_S,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        self._instant_start_s = instant_start_s
        self._warned_slow_launch: set[str] = set()
        self._slow_launch_streak: dict[str, int] = {}
        # Per group: sessions seen still waiting past instant_start_s, whose start must then
        # read as late; and the groups where one did not (late starts unmeasurable there).
        self._seen_waiting: dict[str, set[str]] = {}
        self._late_unmeasurable: set[str] = set()
        # Per group: the sessions its windows counted (overlapping windows, counted once).
        self._counted: dict[str, CountedSessions] = {}
        self._reader = reader
        self._max_concurrency = max_concurrency
        self._clock = clock

    async def sample(
        self, group_ids: Sequence[str], previous: Mapping[str, float]
    ) -> tuple[GroupSample, ...]:
        """``previous`` maps a group id to the ``at`` of its last stored sample.

        The memory kept per group (sessions counted, seen waiting) is dropped for groups not
        asked for: a daemon whose groups come and go must not keep every one it ever saw (a
        group that returns starts afresh, as after a restart)."""
        at = self._clock.now()
        if len(self._counted) > len(group_ids):  # every per-group memory's keys are in it
            self._forget_all_but(group_ids)
        if len(group_ids) == 1:
            # One group needs no task (a backtest samples one group per tick, and a task is an
            # event-loop round trip each time); errors surface as the task group raises them.
            group_id = group_ids[0]
            try:
                sample = await self._sample_group(group_id, previous.get(group_id), at)
            except Exception as exc:
                raise ExceptionGroup("unhandled errors in a TaskGroup", [exc]) from None
            return (sample,)
        semaphore = asyncio.Semaphore(self._max_concurrency)

        async def one(group_id: str) -> GroupSample:
            async with semaphore:
                return await self._sample_group(group_id, previous.get(group_id), at)

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(one(g)) for g in group_ids]
        return tuple(t.result() for t in tasks)

    async def _sample_group(
        self, group_id: str, previous_at: float | None, at: float
    ) -> GroupSample:
        try:
            state = await self._reader.get_stream_group(group_id)
        except Exception as exc:  # one group's failure must never affect another
            self._log_failure(group_id, "GetStreamGroup", exc)
            return GroupSample(
                at=at,
                group_id=group_id,
                state=None,
                locations=(),
                complete=False,
                problems=(_describe("GetStreamGroup", exc),),
            )

        if state.status in SESSIONS_UNREADABLE_STATUSES:
            problem = f"group is {state.status}: its sessions cannot be listed"
            return self._incomplete(state, previous_at, at, problem)
        try:
            sessions = await self._reader.list_stream_sessions(group_id)
        except Exception as exc:
            self._log_failure(group_id, "ListStreamSessions", exc)
            return self._incomplete(state, previous_at, at, _describe("ListStreamSessions", exc))
        locations = derive_location_samples(
            state,
            sessions,
            previous_at,
            at,
            complete=True,
            instant_start_s=self._instant_start_s,
            counted=self._counted.setdefault(group_id, CountedSessions()),
        )
        self._check_launch_time(group_id, locations)
        locations = self._check_start_times(group_id, sessions, locations, at)
        return GroupSample(
            at=at, group_id=group_id, state=state, locations=locations, complete=True
        )

    def _forget_all_but(self, group_ids: Sequence[str]) -> None:
        keep = set(group_ids)
        for memory in (self._counted, self._seen_waiting, self._slow_launch_streak):
            for gone in [g for g in memory if g not in keep]:
                del memory[gone]

    def _check_start_times(
        self,
        group_id: str,
        sessions: Sequence[SessionSummary],
        locations: tuple[LocationSample, ...],
        at: float,
    ) -> tuple[LocationSample, ...]:
        """Late starts count only if the listing's times mean what the count assumes: a
        session seen ACTIVATING longer than ``instant_start_s`` must, once streaming, show a
        start (CreatedAt → LastUpdatedAt) longer than that too. If one does not (a service
        whose LastUpdatedAt does not move at the start), late starts are unmeasurable for the
        group: from then on they are reported as unknown (None), never as zero, so the slo
        policy's feedback cannot loosen the buffer on a count that misses every wait.

        Cheap on the usual tick: nothing to do unless a session waits or was seen waiting."""
        seen = self._seen_waiting.get(group_id)
        threshold = self._instant_start_s
        if group_id not in self._late_unmeasurable and (
            seen or any(ls.oldest_waiting_s > threshold for ls in locations)
        ):
            seen = seen if seen is not None else set()
            for s in sessions:
                status = s.status
                if status == WAITING_STATUS:
                    if at - s.created_at > threshold:
                        seen.add(s.arn)
                elif s.arn in seen:
                    seen.discard(s.arn)
                    if status in _STARTED_SET and s.last_updated_at - s.created_at <= threshold:
                        self._late_unmeasurable.add(group_id)
                        logger.error(
                            "sampling %s: session %s waited over %.1f s, yet its start reads "
                            "%.1f s (CreatedAt → LastUpdatedAt): late starts cannot be "
                            "measured for this group and are reported as unknown",
                            group_id,
                            s.arn,
                            threshold,
                            s.last_updated_at - s.created_at,
                        )
                        break
            if len(seen) > _SEEN_WAITING_MAX:  # sessions that vanished unseen: start over
                seen = set()
            self._seen_waiting[group_id] = seen
        if group_id in self._late_unmeasurable:
            return tuple(dataclasses.replace(ls, late_starts=None) for ls in locations)
        return locations

    def _check_launch_time(self, group_id: str, locations: Sequence[LocationSample]) -> None:
        """Warn once per group when sessions start late tick after tick although idle
        capacity was left and nobody waited: the application's own launch is then slower than
        ``instant_start_s``, every session reads as a cold start, and the slo policy's
        feedback would over-buy. A burst of real cold starts does not last that long with
        idle slots to spare."""
        if group_id in self._warned_slow_launch:
            return
        suspicious = any(
            (ls.late_starts or 0) > 0 and ls.idle >= (ls.late_starts or 0) and ls.waiting == 0
            for ls in locations
        )
        streak = self._slow_launch_streak.get(group_id, 0) + 1 if suspicious else 0
        self._slow_launch_streak[group_id] = streak
        if streak >= _SLOW_LAUNCH_TICKS:
            self._warned_slow_launch.add(group_id)
            logger.warning(
                "sampling %s: sessions started later than instant_start_s (%.1f s) in %d "
                "ticks in a row with idle capacity left and none waiting: if the "
                "application's own launch takes longer, raise instant_start_s, or every "
                "session counts as a cold start",
                group_id,
                self._instant_start_s,
                streak,
            )

    @staticmethod
    def _incomplete(
        state: GroupState, previous_at: float | None, at: float, problem: str
    ) -> GroupSample:
        return GroupSample(
            at=at,
            group_id=state.group_id,
            state=state,
            locations=derive_location_samples(state, (), previous_at, at, complete=False),
            complete=False,
            problems=(problem,),
        )

    @staticmethod
    def _log_failure(group_id: str, op: str, exc: Exception) -> None:
        if isinstance(exc, ServiceError):
            logger.warning("sampling %s: %s failed: %s", group_id, op, exc)
        else:
            logger.error("sampling %s: %s failed unexpectedly", group_id, op, exc_info=exc)


async def discover(
    reader: StreamGroupReader,
    selector_matches: Callable[[GroupSummary, Mapping[str, str] | None], bool],
    need_tags: bool,
) -> list[str]:
    """Ids of the groups ``selector_matches`` accepts, in listing order.

    ``selector_matches(summary, tags)`` is first asked with ``tags=None`` (id/ARN selectors
    decide without a call); only if it says no and ``need_tags`` is set are the group's tags
    read (one ListTagsForResource each) and it is asked again. Errors propagate: a partial
    discovery would silently drop groups, so the caller keeps its previous set instead.
    """
    found: list[str] = []
    for summary in await reader.list_stream_groups():
        matched = selector_matches(summary, None)
        if not matched and need_tags:
            matched = selector_matches(summary, await reader.list_tags(summary.arn))
        if matched:
            found.append(summary.group_id)
    return found
