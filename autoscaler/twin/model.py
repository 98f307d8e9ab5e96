"""The service model of GameLift Streams capacity: pure, deterministic, clock-injected.

The signatures and docstrings of the public classes below are the contract between the model,
the HTTP emulator (``twin/emulator.py``) and the in-process adapter (``twin/inprocess.py``).

Time: the model never reads a clock by itself except through the injected ``Clock``. Every
public method first calls ``self.advance()`` which processes every timed event (host ready,
placement timeout, host release, status transitions, session end) up to ``clock.now()`` in
time order. ``advance(until)`` may also be called directly (the backtest drives virtual time).
Model time never goes backwards: a clock that jumps back is ignored until it catches up.

Errors: raise the ``autoscaler.domain.errors`` classes (ValidationError, NotFoundError,
ConflictError, QuotaExceededError, …) with AWS-like messages; the emulator maps them to HTTP.

Why it is built this way: the backtest drives ~270k sessions through it in seconds, so it is
event-driven (one heap of timed events, integer slot counts per location, hosts bucketed by free
slots so "fullest host with a free slot" is O(tenancy)), and everything that is a pure function
of time (a session's ACTIVATING → ACTIVE → CONNECTED) is computed when read instead of being
an event. Only what changes slot counts is an event: host ready, host release, placement
timeout, session end, plus the rare lifecycle transitions. The billing meter integrates the
piecewise-constant allocated and in-use slot counts exactly at each change.

Decisions where the service is undocumented (the emulator and its users rely on these):

Capacity fields (every value ≥ 0 and a multiple of the class tenancy, else ValidationException
naming field, value and tenancy; OnDemand with TargetIdle or Maximum in one configuration is a
ValidationException; after defaults, AlwaysOn ≤ Maximum and TargetIdle ≤ Maximum or
ValidationException):

- A configuration carrying ``on_demand`` makes the location legacy: AlwaysOn (omitted → 0) and
  OnDemand; it behaves like Maximum = AlwaysOn + OnDemand, TargetIdle = 0.
- Otherwise the location is current model. Omitted fields are NOT "unchanged": they take the
  service's internal defaults, AlwaysOn → 0, TargetIdle → 0, Maximum → AlwaysOn (on create/add:
  max(AlwaysOn, class default)). This is why clients must send all three on every update.
- Exception: an update carrying only AlwaysOn for a legacy location keeps its OnDemand.
- A configuration with no capacity field at all: on create/add it gets the class default as
  Maximum (2 for tenancy-2 "high" classes, 1 otherwise, rounded up to the tenancy) with
  AlwaysOn 0 and TargetIdle 0 (streams start on demand, nothing is billed idle); on update it
  changes nothing. The primary location is created like that when ``locations`` omits it.

Status rules: UpdateStreamGroup and AddStreamGroupLocations need the group ACTIVE,
RemoveStreamGroupLocations ACTIVE or ACTIVE_WITH_ERRORS (ConflictException otherwise); an
EXPIRED group raises ValidationException instead (it never becomes writable again, so retrying
is pointless) for everything except GetStreamGroup, ListStreamGroups, tags and
DeleteStreamGroup (deleting an expired group is the way to clean it up). A location's capacity
changes only while it is ACTIVE (ConflictException naming the location); the primary location
cannot be removed (ValidationException); an unknown location in an update or removal is a
ValidationException. StartStreamSession needs the group ACTIVE (ConflictException); every
requested location must exist (ValidationException); locations that are not ACTIVE are skipped
and if none is ACTIVE it is a ConflictException. Locations in ERROR get no new sessions and no
refills; a group with a location in ERROR shows ACTIVE_WITH_ERRORS.

Allocation: ``allocated`` counts ready hosts only (a host being provisioned is neither
allocated nor billed); ``idle`` = allocated − slots held by sessions. Per ACTIVE location the
service aims at hosts for needed = clamp(in-use + waiting + TargetIdle, AlwaysOn, ceiling),
rounded up to whole hosts, provisioning the missing ones (log-normal delay). Hosts are never
cancelled or released to reach a lower target except: a surplus host is released when it has
been empty for ``host_release_idle_s`` (oldest-empty first), where surplus means ready hosts
beyond the need (hosts still provisioning for an earlier, higher target are neither cancelled
nor a reason to release a ready one: allocated stays ≥ AlwaysOn); hosts above the ceiling itself
(after a lowering update) are released as soon as they are empty, and hosts still provisioning
above the ceiling are cancelled. So setting everything to 0 releases the idle hosts only and
never ends a session. New groups and added locations start provisioning when the location
becomes ACTIVE.

Placement: a session takes an idle slot (fullest ready host first) in the first ACTIVE
requested location that has one: "instant". Otherwise it waits (ACTIVATING) in the first
location that can still grow (in-use + waiting < ceiling), else in the first one; it is placed
first-come first-served when a slot frees or a host becomes ready ("cold"), or fails with
ERROR/placementTimeout. Its timeout is chosen at request time: 75 s when in-use + waiting
(itself included) is within AlwaysOn (it waits for always-on capacity), otherwise 90 s (Linux)
or 600 s (Windows) on-demand.

Sessions: placed → ACTIVE after ``session_start_s`` (ACTIVATING until then) → CONNECTED after
``client_connect_s`` (if that is None or longer than ConnectionTimeoutSeconds: TERMINATED
connectionTimeout). ``end_after_s`` counts from placement (the slot is held exactly that long)
and ends the session as TERMINATED/applicationExit (the player quit the game);
SessionLengthSeconds counts from ACTIVE (TERMINATED/maxSessionLengthTimeout).
TerminateStreamSession: TERMINATING for 1 s, then TERMINATED/apiTerminated (a waiting session
ends at once). A slot is held from placement until TERMINATED. Removing a location, deleting or
expiring a group ends its sessions at once (placed: TERMINATED/apiTerminated; waiting:
ERROR/internalError, not counted as a placement failure). Ended sessions stay listed
``ended_session_retention_s``. Paged listings (``list_stream_sessions_page``, what the
emulator's ListStreamSessions serves) are in creation order and resume at a creation ordinal,
so a walk of pages sees each session once however sessions start and end between pages.

Lifecycle: a new group and the locations given at creation are ACTIVATING for
``group_activation_s``; an added location is ACTIVATING for ``location_activation_s`` and the
group UPDATING_LOCATIONS meanwhile; a removed location is REMOVING for ``location_removal_s``
(billed until gone); a deleted group is DELETING for ``group_deletion_s`` then gone; a group
becomes EXPIRED at ``created + group_lifetime_s`` and then holds no capacity.
Applications are READY at once (no INITIALIZED phase is modelled).
"""

from __future__ import annotations

import heapq
import itertools
import math
import string
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import numpy as np

from autoscaler.domain.classes import STREAM_CLASSES, StreamClassInfo, stream_class_info
from autoscaler.domain.clock import Clock
from autoscaler.domain.errors import ConflictError, NotFoundError, ValidationError
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupState,
    LocationState,
    SessionSummary,
)


@dataclass(frozen=True, slots=True)
class ModelParams:
    """The model's parameters; defaults are the benchmark's (shared/docs/benchmark.md)."""

    provisioning_median_linux_s: float = 60.0
    provisioning_median_windows_s: float = 240.0
    provisioning_sigma: float = 0.35  # log-normal sigma of a host's provisioning delay
    placement_timeout_always_on_s: float = 75.0
    placement_timeout_on_demand_linux_s: float = 90.0
    placement_timeout_on_demand_windows_s: float = 600.0
    host_release_idle_s: float = 300.0  # a surplus host is released after this long empty
    group_activation_s: float = 120.0  # ACTIVATING → ACTIVE for a new group
    location_activation_s: float = 600.0  # content replication when a location is added
    location_removal_s: float = 120.0  # REMOVING → gone
    group_deletion_s: float = 60.0
    session_start_s: float = 5.0  # placed → ACTIVE (application launch)
    client_connect_s: float | None = 2.0  # ACTIVE → CONNECTED automatically; None = never
    ended_session_retention_s: float = 3600.0  # ended sessions stay listed this long
    group_lifetime_s: float = 365 * 86400.0
    account_id: str = "123456789012"


@dataclass(slots=True)
class Application:
    app_id: str
    arn: str
    description: str
    runtime: dict[str, str]
    executable_path: str
    source_uri: str
    status: str
    created_at: float
    last_updated_at: float
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class LocationView:
    """Read view of one location (what LocationState carries)."""

    name: str
    status: str
    always_on: int
    target_idle: int | None  # None in the legacy model
    maximum: int | None  # None in the legacy model
    on_demand: int | None  # None in the current model
    requested: int
    allocated: int
    idle: int


@dataclass(slots=True)
class StreamGroupView:
    """Read view of one stream group (what GetStreamGroup returns)."""

    group_id: str
    arn: str
    description: str
    stream_class: str
    status: str
    status_reason: str | None
    default_application_id: str | None
    primary_location: str
    created_at: float
    last_updated_at: float
    expires_at: float
    locations: list[LocationView]
    associated_application_arns: list[str]
    tags: dict[str, str]


@dataclass(slots=True)
class SessionView:
    """Read view of one stream session (what GetStreamSession returns)."""

    session_id: str
    arn: str
    group_id: str
    application_arn: str
    user_id: str | None
    status: str
    status_reason: str | None
    location: str | None  # where it was placed (or the first requested while waiting)
    protocol: str
    description: str
    created_at: float
    last_updated_at: float
    connection_timeout_s: int
    session_length_s: int
    wait_s: float | None  # how long it waited for a slot (None while waiting)


@dataclass(slots=True)
class LocationUsage:
    allocated_slot_s: float = 0.0
    in_use_slot_s: float = 0.0
    instant: int = 0  # placed at once on an idle slot
    cold: int = 0  # waited for new capacity, then started
    failed: int = 0  # ERROR placementTimeout
    waits_s: list[float] = field(default_factory=list)  # wait of every placed session
    # Of the allocated slot-seconds, those on ready hosts with no session, split by why the
    # host is there: the targets keep it (AlwaysOn, TargetIdle, a legacy floor), or it is a
    # surplus host the service holds until its release delay runs out. The rest of the idle
    # slot-seconds are free slots on partly used hosts.
    kept_empty_slot_s: float = 0.0
    held_empty_slot_s: float = 0.0


@dataclass(slots=True)
class LocationConfigInput:
    """One LocationConfiguration as sent by a caller (None = field omitted)."""

    name: str
    always_on: int | None = None
    target_idle: int | None = None
    maximum: int | None = None
    on_demand: int | None = None


@dataclass(frozen=True, slots=True)
class LocationSnapshot:
    """Internal counts of one location (not part of the API): for tests, plots and the
    emulator's admin endpoints."""

    name: str
    status: str
    tenancy: int
    ceiling: int  # most slots the service may allocate
    idle_target: int
    always_on: int
    allocated: int  # slots on ready hosts
    in_use: int  # slots held by sessions
    waiting: int  # sessions waiting for a slot here
    provisioning: int  # slots on hosts being provisioned
    hosts: int  # ready hosts
    empty_hosts: int  # ready hosts with every slot free


# --- statuses -------------------------------------------------------------------------------
_ACTIVE = "ACTIVE"
_ACTIVATING = "ACTIVATING"
_UPDATING = "UPDATING_LOCATIONS"
_WITH_ERRORS = "ACTIVE_WITH_ERRORS"
_ERROR = "ERROR"
_DELETING = "DELETING"
_EXPIRED = "EXPIRED"
_REMOVING = "REMOVING"
_GROUP_STATUSES = frozenset(
    {_ACTIVATING, _UPDATING, _ACTIVE, _WITH_ERRORS, _ERROR, _DELETING, _EXPIRED}
)
_LOCATION_STATUSES = frozenset({_ACTIVATING, _ACTIVE, _ERROR, _REMOVING})
_TERMINATED = "TERMINATED"
_TERMINATING_S = 1.0  # TerminateStreamSession: TERMINATING this long before TERMINATED

# --- event kinds (heap entries are (time, seq, kind, subject, token)) ----------------------
_EV_HOST_READY = 0
_EV_SESSION_END = 1
_EV_PLACEMENT_TIMEOUT = 2
_EV_RELEASE_CHECK = 3
_EV_GROUP_ACTIVE = 4
_EV_LOCATION_ACTIVE = 5
_EV_LOCATION_GONE = 6
_EV_GROUP_GONE = 7
_EV_GROUP_EXPIRE = 8

_ID_ALPHABET = string.ascii_letters + string.digits  # 62 symbols
_SESSION_ALPHABET = string.ascii_uppercase + string.digits  # 36 symbols
_BATCH = 4096
_PURGE_EVERY_S = 60.0  # model time between two purges of every group's ended sessions
_COMPACT_MIN = 1024  # purged entries a group's listing index tolerates before compaction

SessionCursor = int
"""Where a paged session listing resumes: the creation ordinal of the last session served.
Ordinals are model-wide and only grow, so a cursor stays exact when sessions are created at
the same instant (a manual clock) and after the session it names has been purged."""

_ordinal: Any = attrgetter("ordinal")

_FIELD_NAMES = (
    ("AlwaysOnCapacity", "always_on"),
    ("TargetIdleCapacity", "target_idle"),
    ("MaximumCapacity", "maximum"),
    ("OnDemandCapacity", "on_demand"),
)


def _class_default(tenancy: int) -> int:
    """Capacity of a location added without any: 2 for "high" (tenancy 2) classes, else 1,
    rounded up to the tenancy."""
    default = 2 if tenancy == 2 else 1
    return -(-default // tenancy) * tenancy


class _Host:
    __slots__ = ("cancelled", "empty_since", "free", "hid")

    def __init__(self, hid: int) -> None:
        self.hid = hid
        self.free = 0
        self.empty_since = 0.0
        self.cancelled = False


class _Location:
    __slots__ = (
        "alloc",
        "always_on",
        "buckets",
        "ceil",
        "gen",
        "gone",
        "group",
        "in_use",
        "maximum",
        "meter_t",
        "n_prov",
        "n_ready",
        "n_waiting",
        "name",
        "on_demand",
        "prov",
        "queue",
        "release_check_at",
        "status",
        "target_idle",
        "tenancy",
        "tidle",
        "usage",
        "windows",
    )

    def __init__(
        self, group: _Group, name: str, info: StreamClassInfo, usage: LocationUsage, now: float
    ) -> None:
        self.group = group
        self.name = name
        self.status = _ACTIVATING
        self.gen = 0
        self.gone = False
        self.tenancy = info.tenancy
        self.windows = info.windows
        self.always_on = 0
        self.target_idle: int | None = 0
        self.maximum: int | None = 0
        self.on_demand: int | None = None
        self.ceil = 0
        self.tidle = 0
        # buckets[f]: ready hosts with f free slots, in the order they got there
        self.buckets: list[dict[int, _Host]] = [{} for _ in range(info.tenancy + 1)]
        self.prov: dict[int, _Host] = {}
        self.n_ready = 0
        self.n_prov = 0
        self.alloc = 0
        self.in_use = 0
        self.n_waiting = 0
        self.queue: deque[_Session] = deque()
        self.usage = usage
        self.meter_t = now
        self.release_check_at: float | None = None

    def configure(
        self, always_on: int, target_idle: int | None, maximum: int | None, on_demand: int | None
    ) -> None:
        self.always_on = always_on
        self.target_idle = target_idle
        self.maximum = maximum
        self.on_demand = on_demand
        if on_demand is not None:
            self.ceil = always_on + on_demand
            self.tidle = 0
        else:
            self.ceil = max(maximum or 0, always_on)
            self.tidle = target_idle or 0

    def meter(self, t: float) -> None:
        dt = t - self.meter_t
        if dt > 0:
            usage = self.usage
            usage.allocated_slot_s += dt * self.alloc
            usage.in_use_slot_s += dt * self.in_use
            if self.buckets[self.tenancy]:
                self.meter_empty(dt)
            self.meter_t = t

    def meter_empty(self, dt: float) -> None:
        """Meter ``dt`` seconds of the empty ready hosts: as many as the targets ask for
        beyond the hosts in use are kept, the rest are held until released."""
        tenancy = self.tenancy
        empty = len(self.buckets[tenancy])
        needed = self.in_use + self.n_waiting + self.tidle
        if needed < self.always_on:  # noqa: PLR1730  (the clamp of _reconcile, inlined)
            needed = self.always_on
        if needed > self.ceil:  # noqa: PLR1730
            needed = self.ceil
        kept = -(-needed // tenancy) - (self.n_ready - empty)
        if kept < 0:
            kept = 0
        elif kept > empty:
            kept = empty
        usage = self.usage
        usage.kept_empty_slot_s += dt * kept * tenancy
        usage.held_empty_slot_s += dt * (empty - kept) * tenancy


class _Group:
    __slots__ = (
        "apps",
        "arn",
        "created_at",
        "default_app_id",
        "description",
        "ended",
        "expires_at",
        "expiries",
        "expiry_seq",
        "gen",
        "gid",
        "index",
        "index_dead",
        "info",
        "last_updated_at",
        "listing",
        "listing_ord",
        "live",
        "locations",
        "reason",
        "recent",
        "region",
        "session_arn_prefix",
        "sessions",
        "stale",
        "status",
        "tags",
    )

    def __init__(
        self,
        *,
        gid: str,
        arn: str,
        region: str,
        description: str,
        info: StreamClassInfo,
        now: float,
        lifetime_s: float,
        tags: dict[str, str],
    ) -> None:
        self.gid = gid
        self.arn = arn
        self.region = region
        self.description = description
        self.info = info
        self.status = _ACTIVATING
        self.reason: str | None = None
        self.gen = 0
        self.default_app_id: str | None = None
        self.created_at = now
        self.last_updated_at = now
        self.expires_at = now + lifetime_s
        self.locations: dict[str, _Location] = {}
        self.apps: list[str] = []
        self.tags = tags
        self.sessions: dict[str, _Session] = {}  # every listed session (live + retained ended)
        self.live: dict[str, _Session] = {}
        self.ended: deque[_Session] = deque()  # in end order
        self.recent: deque[_Session] = deque()  # placed, maybe still ACTIVATING (placement order)
        # the group's sessions in creation (ordinal) order, append-only: the paged listing's
        # index; purged sessions stay in it (``listed`` False) until a compaction drops them
        self.index: list[_Session] = []
        self.index_dead = 0
        # What keeps the unfiltered summary listing incremental (list_session_summaries):
        # sessions whose summary may be out of date (``summary_until`` reset to -inf, or new),
        # and the finite ``summary_until`` of the others as a heap of (until, seq, session).
        self.stale: set[_Session] = set()
        self.expiries: list[tuple[float, int, _Session]] = []
        self.expiry_seq = itertools.count()
        # every listed session's last summary (None: not computed yet), in ``sessions`` order,
        # and the sessions' ordinals (ascending: sessions are added in ordinal order)
        self.listing: list[SessionSummary | None] = []
        self.listing_ord: list[int] = []
        self.session_arn_prefix = arn.replace(":streamgroup/", ":streamsession/") + "/"


class _Session:
    __slots__ = (
        "active_at",
        "app_arn",
        "arn",
        "conn_timeout",
        "connected_at",
        "created_at",
        "description",
        "end_after_s",
        "end_reason",
        "end_status",
        "ended_at",
        "gen",
        "group",
        "host",
        "length_s",
        "listed",
        "loc",
        "ordinal",
        "placed_at",
        "protocol",
        "sid",
        "summary",
        "summary_until",
        "terminating_at",
        "user_id",
        "waiting",
    )

    def __init__(
        self,
        *,
        sid: str,
        arn: str,
        group: _Group,
        app_arn: str,
        user_id: str | None,
        protocol: str,
        description: str,
        created_at: float,
        conn_timeout: int,
        length_s: int,
        end_after_s: float | None,
        loc: _Location,
        ordinal: int,
    ) -> None:
        self.sid = sid
        self.arn = arn
        self.group = group
        self.app_arn = app_arn
        self.user_id = user_id
        self.protocol = protocol
        self.description = description
        self.created_at = created_at
        self.conn_timeout = conn_timeout
        self.length_s = length_s
        self.end_after_s = end_after_s
        self.loc = loc
        self.ordinal = ordinal
        self.host: _Host | None = None
        self.placed_at: float | None = None
        self.active_at = 0.0
        self.connected_at: float | None = None
        self.terminating_at: float | None = None
        self.ended_at: float | None = None
        self.end_status = ""
        self.end_reason: str | None = None
        self.gen = 0
        self.waiting = False
        self.listed = True  # False once purged (ended longer than the retention ago)
        self.summary: SessionSummary | None = None  # list_session_summaries' last one
        # ``summary`` holds while model time is before this; a change of the session's fields
        # (placement, terminate, end) resets it through ``summary_changed``
        self.summary_until = -math.inf

    def summary_changed(self) -> None:
        """The fields a summary shows changed: recompute it on the next listing (and the
        unfiltered listing learns of it through the group's stale set)."""
        self.summary_until = -math.inf
        self.group.stale.add(self)


class ServiceModel:
    def __init__(self, *, clock: Clock, seed: int = 0, params: ModelParams | None = None) -> None:
        self._clock = clock
        self._p = params if params is not None else ModelParams()
        self._rng = np.random.default_rng(seed)
        self._now = clock.now()
        self._heap: list[tuple[float, int, int, Any, int]] = []
        self._seq = itertools.count()
        self._host_ids = itertools.count(1)
        self._ordinals = itertools.count()
        self._groups: dict[str, _Group] = {}
        self._group_arns: dict[str, _Group] = {}
        self._apps: dict[str, Application] = {}
        self._app_arns: dict[str, Application] = {}
        self._usage: dict[str, dict[str, LocationUsage]] = {}
        self._normals: list[float] = []
        self._normal_i = 0
        self._draws: list[int] = []
        self._draw_i = 0
        self._events = 0
        self._start_s = self._p.session_start_s
        self._connect_s = self._p.client_connect_s
        self._next_purge = self._now
        self._sid_draws: list[int] = []
        self._sid_i = 0
        self._triplets: list[str] = []

    @property
    def events_processed(self) -> int:
        """Timed events processed so far (for benchmarks)."""
        return self._events

    @property
    def now(self) -> float:
        """Model time: the latest time processed (never goes backwards)."""
        return self._now

    @property
    def params(self) -> ModelParams:
        return self._p

    # --- time -------------------------------------------------------------------------
    def advance(self, until: float | None = None) -> None:
        """Process every event due at or before ``until`` (default ``clock.now()``)."""
        t_end = self._clock.now() if until is None else until
        heap = self._heap
        if (not heap or heap[0][0] > t_end) and t_end < self._next_purge:
            self._now = max(self._now, t_end)
            return
        pop = heapq.heappop
        processed = 0
        while heap and heap[0][0] <= t_end:
            t, _, kind, subject, token = pop(heap)
            self._now = t
            processed += 1
            if kind == _EV_SESSION_END:
                self._on_session_end(subject, token, t)
            elif kind == _EV_HOST_READY:
                self._on_host_ready(subject, token, t)
            elif kind == _EV_PLACEMENT_TIMEOUT:
                self._on_placement_timeout(subject, token, t)
            elif kind == _EV_RELEASE_CHECK:
                loc: _Location = subject
                if loc.release_check_at == t:
                    loc.release_check_at = None
                if not loc.gone:
                    self._reconcile(loc, t)
            elif kind == _EV_GROUP_ACTIVE:
                self._on_group_active(subject, token, t)
            elif kind == _EV_LOCATION_ACTIVE:
                self._on_location_active(subject, token, t)
            elif kind == _EV_LOCATION_GONE:
                self._on_location_gone(subject, token, t)
            elif kind == _EV_GROUP_GONE:
                self._on_group_gone(subject, t)
            elif kind == _EV_GROUP_EXPIRE:
                group: _Group = subject
                if self._groups.get(group.gid) is group and group.status not in (
                    _EXPIRED,
                    _DELETING,
                ):
                    self._expire(group, t)
        self._now = max(self._now, t_end)
        self._events += processed
        if self._now >= self._next_purge:  # bounds memory; readers purge their group exactly
            self._next_purge = self._now + _PURGE_EVERY_S
            for group in self._groups.values():
                self._purge(group, self._now)

    def _at(self, t: float, kind: int, subject: Any, token: int = 0) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), kind, subject, token))

    def _purge(self, group: _Group, now: float) -> None:
        """Forget ended sessions past retention and trim the recently-placed index."""
        horizon = now - self._p.ended_session_retention_s
        ended = group.ended
        while ended:
            s = ended[0]
            if s.ended_at is None or s.ended_at > horizon:
                break
            ended.popleft()
            if group.sessions.pop(s.sid, None) is not None:
                k = bisect_left(group.listing_ord, s.ordinal)
                del group.listing_ord[k]
                del group.listing[k]
            group.stale.discard(s)
            s.listed = False
            group.index_dead += 1
        if group.index_dead > _COMPACT_MIN and group.index_dead * 2 > len(group.index):
            group.index = [s for s in group.index if s.listed]
            group.index_dead = 0
        recent = group.recent
        while recent and (recent[0].active_at <= now or recent[0].ended_at is not None):
            recent.popleft()

    # --- randomness -------------------------------------------------------------------
    def _normal(self) -> float:
        i = self._normal_i
        if i >= len(self._normals):
            self._normals = self._rng.standard_normal(_BATCH).tolist()
            i = 0
        self._normal_i = i + 1
        return self._normals[i]

    def _random_chars(self, alphabet: str, n: int) -> str:
        """``n`` characters of ``alphabet`` (always the 62-symbol one: group and app ids)."""
        i = self._draw_i
        if i + n > len(self._draws):
            self._draws = self._rng.integers(0, len(alphabet), _BATCH).tolist()
            i = 0
        self._draw_i = i + n
        return "".join([alphabet[d] for d in self._draws[i : i + n]])

    def _session_id(self) -> str:
        """9 characters of [A-Z0-9] from one draw (the hot path of StartStreamSession)."""
        i = self._sid_i
        if i >= len(self._sid_draws):
            self._sid_draws = self._rng.integers(0, 36**9, _BATCH).tolist()
            i = 0
            if not self._triplets:
                self._triplets = [
                    a + b + c
                    for a in _SESSION_ALPHABET
                    for b in _SESSION_ALPHABET
                    for c in _SESSION_ALPHABET
                ]
        self._sid_i = i + 1
        x = self._sid_draws[i]
        table = self._triplets
        return table[x // 36**6] + table[(x // 46656) % 46656] + table[x % 46656]

    def _provision_delay(self, loc: _Location) -> float:
        p = self._p
        median = p.provisioning_median_windows_s if loc.windows else p.provisioning_median_linux_s
        return median * math.exp(p.provisioning_sigma * self._normal())

    # --- identifiers ------------------------------------------------------------------
    def _arn(self, region: str, resource: str) -> str:
        return f"arn:aws:gameliftstreams:{region}:{self._p.account_id}:{resource}"

    def _group(self, identifier: str) -> _Group:
        group = self._groups.get(identifier) or self._group_arns.get(identifier)
        if group is None:
            raise NotFoundError(f"Stream group {identifier!r} was not found")
        return group

    def _app(self, identifier: str) -> Application:
        app = self._apps.get(identifier) or self._app_arns.get(identifier)
        if app is None:
            raise NotFoundError(f"Application {identifier!r} was not found")
        return app

    def _session(self, group: _Group, identifier: str) -> _Session:
        s = group.sessions.get(identifier)
        if s is None and identifier.startswith("arn:"):
            prefix = self._arn(group.region, f"streamsession/{group.gid}/")
            if identifier.startswith(prefix):
                s = group.sessions.get(identifier[len(prefix) :])
        if s is None:
            raise NotFoundError(
                f"Stream session {identifier!r} was not found in stream group {group.gid}"
            )
        return s

    # --- applications -----------------------------------------------------------------
    def create_application(
        self,
        *,
        region: str,
        description: str,
        runtime: dict[str, str],
        executable_path: str,
        source_uri: str,
        tags: dict[str, str] | None = None,
    ) -> Application:
        self.advance()
        app_id = "a-" + self._unique_id(self._apps)
        now = self._now
        app = Application(
            app_id=app_id,
            arn=self._arn(region, f"application/{app_id}"),
            description=description,
            runtime=dict(runtime),
            executable_path=executable_path,
            source_uri=source_uri,
            status="READY",
            created_at=now,
            last_updated_at=now,
            tags=dict(tags or {}),
        )
        self._apps[app_id] = app
        self._app_arns[app.arn] = app
        return app

    def get_application(self, identifier: str) -> Application:
        self.advance()
        return self._app(identifier)

    def list_applications(self) -> list[Application]:
        self.advance()
        return list(self._apps.values())

    def _unique_id(self, taken: dict[str, Any], prefix: str = "") -> str:
        while True:
            candidate = self._random_chars(_ID_ALPHABET, 9)
            if prefix + candidate not in taken:
                return candidate

    # --- stream groups ----------------------------------------------------------------
    def create_stream_group(
        self,
        *,
        region: str,
        description: str,
        stream_class: str,
        default_application_id: str | None = None,
        locations: list[LocationConfigInput] | None = None,
        tags: dict[str, str] | None = None,
    ) -> StreamGroupView:
        """The primary location is ``region``; it is created even if not listed."""
        self.advance()
        info = STREAM_CLASSES.get(stream_class)
        if info is None:
            raise ValidationError(
                f"Value {stream_class!r} at 'StreamClass' failed to satisfy constraint: "
                f"Member must satisfy enum value set: [{', '.join(sorted(STREAM_CLASSES))}]"
            )
        app = self._app(default_application_id) if default_application_id else None
        configs = list(locations or [])
        self._check_unique_names([c.name for c in configs])
        if region not in {c.name for c in configs}:
            configs.insert(0, LocationConfigInput(name=region))
        resolved = [(c.name, self._resolve(info, c, None)) for c in configs]
        gid = "sg-" + self._unique_id(self._groups, "sg-")
        now = self._now
        group = _Group(
            gid=gid,
            arn=self._arn(region, f"streamgroup/{gid}"),
            region=region,
            description=description,
            info=info,
            now=now,
            lifetime_s=self._p.group_lifetime_s,
            tags=dict(tags or {}),
        )
        if app is not None:
            group.default_app_id = app.app_id
            group.apps.append(app.arn)
        usages = self._usage.setdefault(gid, {})
        # primary first, then the others in the order given
        resolved.sort(key=lambda item: item[0] != region)
        for name, config in resolved:
            assert config is not None  # create always resolves to a configuration
            loc = _Location(group, name, info, usages.setdefault(name, LocationUsage()), now)
            loc.configure(*config)
            group.locations[name] = loc
        self._groups[gid] = group
        self._group_arns[group.arn] = group
        self._at(now + self._p.group_activation_s, _EV_GROUP_ACTIVE, group, group.gen)
        self._at(group.expires_at, _EV_GROUP_EXPIRE, group)
        return self._group_view(group)

    def get_stream_group(self, identifier: str) -> StreamGroupView:
        """``identifier`` is an id or an ARN."""
        self.advance()
        return self._group_view(self._group(identifier))

    def group_state(self, identifier: str) -> GroupState:
        """``get_stream_group`` as the domain's ``GroupState`` (exactly what
        ``inprocess.group_state_of`` makes of the view), built straight from the model: the
        backtest reads its group every simulated minute."""
        self.advance()
        group = self._group(identifier)
        legacy = False
        locations: list[LocationState] = []
        for loc in group.locations.values():
            if loc.on_demand is not None:
                legacy = True
                setting = CapacitySetting(always_on=loc.always_on, on_demand=loc.on_demand)
            else:
                setting = CapacitySetting(
                    always_on=loc.always_on,
                    target_idle=loc.target_idle or 0,
                    maximum=loc.maximum or 0,
                )
            locations.append(
                LocationState(
                    name=loc.name,
                    status=loc.status,
                    setting=setting,
                    requested=loc.always_on,
                    allocated=loc.alloc,
                    idle=loc.alloc - loc.in_use,
                )
            )
        return GroupState(
            group_id=group.gid,
            arn=group.arn,
            status=group.status,
            stream_class=group.info.name,
            tenancy=stream_class_info(group.info.name).tenancy,
            capacity_model=CapacityModel.LEGACY if legacy else CapacityModel.CURRENT,
            locations=tuple(locations),
            primary_location=group.region,
            description=group.description,
            status_reason=group.reason,
            created_at=group.created_at,
            last_updated_at=group.last_updated_at,
            expires_at=group.expires_at,
            tags=dict(group.tags),
        )

    def list_stream_groups(self) -> list[StreamGroupView]:
        """Stable order (creation order) so NextToken pagination is well defined."""
        self.advance()
        return [self._group_view(g) for g in self._groups.values()]

    def update_stream_group(
        self,
        identifier: str,
        *,
        locations: list[LocationConfigInput] | None = None,
        description: str | None = None,
        default_application_id: str | None = None,
    ) -> StreamGroupView:
        self.advance()
        group = self._group(identifier)
        self._require_status(group, (_ACTIVE,), "UpdateStreamGroup")
        configs = list(locations or [])
        self._check_unique_names([c.name for c in configs])
        changes: list[tuple[_Location, tuple[int, int | None, int | None, int | None]]] = []
        for c in configs:
            loc = group.locations.get(c.name)
            if loc is None:
                raise ValidationError(
                    f"Location {c.name} is not a location of stream group {group.gid}"
                )
            if loc.status != _ACTIVE:
                raise ConflictError(
                    f"Location {c.name} of stream group {group.gid} is {loc.status}; its "
                    "capacity can be changed only while it is ACTIVE"
                )
            config = self._resolve(group.info, c, loc)
            if config is not None:
                changes.append((loc, config))
        app = self._app(default_application_id) if default_application_id else None
        now = self._now
        for loc, config in changes:
            loc.meter(now)  # the old targets decided which empty hosts were kept until now
            loc.configure(*config)
            self._reconcile(loc, now)
        if description is not None:
            group.description = description
        if app is not None:
            group.default_app_id = app.app_id
            if app.arn not in group.apps:
                group.apps.append(app.arn)
        group.last_updated_at = now
        return self._group_view(group)

    def delete_stream_group(self, identifier: str) -> None:
        self.advance()
        group = self._group(identifier)
        if group.status == _DELETING:
            raise ConflictError(f"Stream group {group.gid} is already being deleted")
        self._begin_delete(group, self._now)

    def add_stream_group_locations(
        self, identifier: str, locations: list[LocationConfigInput]
    ) -> StreamGroupView:
        self.advance()
        group = self._group(identifier)
        self._require_status(group, (_ACTIVE,), "AddStreamGroupLocations")
        if not locations:
            raise ValidationError("LocationConfigurations must contain at least 1 item")
        self._check_unique_names([c.name for c in locations])
        resolved = []
        for c in locations:
            if c.name in group.locations:
                raise ValidationError(
                    f"Location {c.name} is already a location of stream group {group.gid}"
                )
            config = self._resolve(group.info, c, None)
            assert config is not None
            resolved.append((c.name, config))
        now = self._now
        usages = self._usage.setdefault(group.gid, {})
        for name, config in resolved:
            loc = _Location(group, name, group.info, usages.setdefault(name, LocationUsage()), now)
            loc.configure(*config)
            group.locations[name] = loc
            self._at(now + self._p.location_activation_s, _EV_LOCATION_ACTIVE, loc, loc.gen)
        group.last_updated_at = now
        self._refresh_group_status(group, now)
        return self._group_view(group)

    def remove_stream_group_locations(self, identifier: str, locations: list[str]) -> None:
        self.advance()
        group = self._group(identifier)
        self._require_status(group, (_ACTIVE, _WITH_ERRORS), "RemoveStreamGroupLocations")
        if not locations:
            raise ValidationError("Locations must contain at least 1 item")
        self._check_unique_names(locations)
        targets = []
        for name in locations:
            if name == group.region:
                raise ValidationError(
                    f"Location {name} is the primary location of stream group {group.gid} and "
                    "cannot be removed"
                )
            loc = group.locations.get(name)
            if loc is None:
                raise ValidationError(
                    f"Location {name} is not a location of stream group {group.gid}"
                )
            if loc.status in (_ACTIVATING, _REMOVING):
                raise ConflictError(
                    f"Location {name} of stream group {group.gid} is {loc.status} and cannot "
                    "be removed now"
                )
            targets.append(loc)
        now = self._now
        for loc in targets:
            self._begin_removal(loc, now)
        group.last_updated_at = now
        self._refresh_group_status(group, now)

    def associate_applications(self, identifier: str, application_ids: list[str]) -> list[str]:
        """Returns the associated application ARNs."""
        self.advance()
        group = self._group(identifier)
        if group.status == _EXPIRED:
            raise ValidationError(f"Stream group {group.gid} has expired")
        if group.status == _DELETING:
            raise ConflictError(f"Stream group {group.gid} is being deleted")
        apps = [self._app(i) for i in application_ids]
        for app in apps:
            if app.arn not in group.apps:
                group.apps.append(app.arn)
        group.last_updated_at = self._now
        return [app.arn for app in apps]

    # --- sessions ---------------------------------------------------------------------
    def start_stream_session(
        self,
        group_identifier: str,
        *,
        application_identifier: str,
        protocol: str = "WebRTC",
        signal_request: str = "",
        locations: list[str] | None = None,
        user_id: str | None = None,
        description: str = "",
        connection_timeout_s: int = 120,
        session_length_s: int = 43200,
        end_after_s: float | None = None,
    ) -> SessionView:
        """``end_after_s`` (not part of the API) schedules a client-side end, used by load
        generators and backtests instead of a later TerminateStreamSession call."""
        s = self._start(
            group_identifier,
            application_identifier=application_identifier,
            protocol=protocol,
            locations=locations,
            user_id=user_id,
            description=description,
            connection_timeout_s=connection_timeout_s,
            session_length_s=session_length_s,
            end_after_s=end_after_s,
        )
        return self._session_view(s, self._now)

    def start_session(
        self,
        group_identifier: str,
        *,
        application_identifier: str,
        locations: list[str] | None = None,
        end_after_s: float | None = None,
    ) -> tuple[str, float | None]:
        """``start_stream_session`` with the defaults, returning only (session id, wait):
        the wait is 0 when placed at once and None while waiting. For load generators and
        backtests, which start hundreds of thousands of sessions and read nothing else."""
        s = self._start(
            group_identifier,
            application_identifier=application_identifier,
            protocol="WebRTC",
            locations=locations,
            user_id=None,
            description="",
            connection_timeout_s=120,
            session_length_s=43200,
            end_after_s=end_after_s,
        )
        placed_at = s.placed_at
        return s.sid, None if placed_at is None else placed_at - s.created_at

    def _start(
        self,
        group_identifier: str,
        *,
        application_identifier: str,
        protocol: str,
        locations: list[str] | None,
        user_id: str | None,
        description: str,
        connection_timeout_s: int,
        session_length_s: int,
        end_after_s: float | None,
    ) -> _Session:
        self.advance()
        group = self._group(group_identifier)
        if group.status == _EXPIRED:
            raise ValidationError(f"Stream group {group.gid} has expired")
        if group.status != _ACTIVE:
            raise ConflictError(
                f"Stream group {group.gid} is {group.status}; StartStreamSession requires ACTIVE"
            )
        app = self._app(application_identifier)
        if app.arn not in group.apps:
            raise ValidationError(
                f"Application {app.app_id} is not associated with stream group {group.gid}"
            )
        if (
            protocol != "WebRTC"
            or not 1 <= connection_timeout_s <= 3600
            or not 1 <= session_length_s <= 86400
        ):
            self._check_session_args(protocol, connection_timeout_s, session_length_s)
        candidates: list[_Location] = []
        for name in locations or (group.region,):
            loc = group.locations.get(name)
            if loc is None:
                raise ValidationError(
                    f"Location {name} is not a location of stream group {group.gid}"
                )
            if loc.status == _ACTIVE:
                candidates.append(loc)
        if not candidates:
            raise ConflictError(
                f"None of the requested locations of stream group {group.gid} is ACTIVE"
            )
        sid = self._session_id()
        while sid in group.sessions:
            sid = self._session_id()
        now = self._now
        s = _Session(
            sid=sid,
            arn=group.session_arn_prefix + sid,
            group=group,
            app_arn=app.arn,
            user_id=user_id,
            protocol=protocol,
            description=description,
            created_at=now,
            conn_timeout=connection_timeout_s,
            length_s=session_length_s,
            end_after_s=end_after_s,
            loc=candidates[0],
            ordinal=next(self._ordinals),
        )
        group.sessions[sid] = s
        group.stale.add(s)  # no summary yet
        group.listing.append(None)
        group.listing_ord.append(s.ordinal)
        group.live[sid] = s
        group.index.append(s)
        for loc in candidates:
            if loc.alloc > loc.in_use:
                loc.usage.instant += 1
                self._place(s, loc, now)
                # a placement only raises what is needed: reconcile only if it outgrew supply
                if loc.in_use + loc.n_waiting + loc.tidle > (loc.n_ready + loc.n_prov) * (
                    loc.tenancy
                ):
                    self._reconcile(loc, now)
                break
        else:
            target = candidates[0]
            for loc in candidates:
                if loc.in_use + loc.n_waiting < loc.ceil:
                    target = loc
                    break
            s.loc = target
            s.waiting = True
            s.summary_changed()
            target.meter(now)
            target.queue.append(s)
            target.n_waiting += 1
            p = self._p
            if target.in_use + target.n_waiting <= target.always_on:
                timeout = p.placement_timeout_always_on_s
            elif target.windows:
                timeout = p.placement_timeout_on_demand_windows_s
            else:
                timeout = p.placement_timeout_on_demand_linux_s
            self._at(now + timeout, _EV_PLACEMENT_TIMEOUT, s, s.gen)
            self._reconcile(target, now)
        return s

    @staticmethod
    def _check_session_args(
        protocol: str, connection_timeout_s: int, session_length_s: int
    ) -> None:
        if protocol != "WebRTC":
            raise ValidationError(f"Protocol {protocol!r} is not supported (WebRTC)")
        if not 1 <= connection_timeout_s <= 3600:
            raise ValidationError(
                f"ConnectionTimeoutSeconds ({connection_timeout_s}) must be between 1 and 3600"
            )
        raise ValidationError(
            f"SessionLengthSeconds ({session_length_s}) must be between 1 and 86400"
        )

    def get_stream_session(self, group_identifier: str, session_identifier: str) -> SessionView:
        self.advance()
        group = self._readable_group(group_identifier)
        return self._session_view(self._session(group, session_identifier), self._now)

    def list_stream_sessions(
        self, group_identifier: str, status: str | None = None
    ) -> list[SessionView]:
        """Sessions of a group still listed (ended ones for ``ended_session_retention_s``)."""
        self.advance()
        return self._list_sessions(self._readable_group(group_identifier), status)

    def list_stream_sessions_by_account(self, status: str | None = None) -> list[SessionView]:
        self.advance()
        out: list[SessionView] = []
        for group in self._groups.values():
            if group.status != _EXPIRED:
                self._purge(group, self._now)
                out.extend(self._list_sessions(group, status))
        return out

    def list_stream_sessions_page(
        self,
        group_identifier: str,
        status: str | None = None,
        *,
        after: SessionCursor | None = None,
        limit: int = 100,
    ) -> tuple[list[SessionView], SessionCursor | None]:
        """One page of the sessions ``list_stream_sessions`` would return, in creation order:
        at most ``limit`` sessions created after the one ``after`` names, and the cursor to
        pass as ``after`` for the next page (None when no further session matches).

        Only the page's views are built. A walk from ``after=None`` returns every session
        listed for the whole walk exactly once, whatever is created, ended or purged between
        pages; sessions created during the walk come last, so it sees those too.
        """
        if limit < 1:
            raise ValidationError(f"limit ({limit}) must be at least 1")
        self.advance()
        group = self._readable_group(group_identifier)
        if status == _ACTIVATING:
            source = self._activating_candidates(group)
            source.sort(key=_ordinal)
        else:
            source = group.index
        start = 0 if after is None else bisect_right(source, after, key=_ordinal)
        return self._page(itertools.islice(source, start, None), status, limit)

    def list_stream_sessions_by_account_page(
        self, status: str | None = None, *, after: SessionCursor | None = None, limit: int = 100
    ) -> tuple[list[SessionView], SessionCursor | None]:
        """``list_stream_sessions_by_account`` paged like ``list_stream_sessions_page``, in
        creation order across groups (the cursor is model-wide)."""
        if limit < 1:
            raise ValidationError(f"limit ({limit}) must be at least 1")
        self.advance()
        now = self._now
        sources: list[Iterator[_Session]] = []
        for group in self._groups.values():
            if group.status == _EXPIRED:
                continue
            self._purge(group, now)
            index = group.index
            start = 0 if after is None else bisect_right(index, after, key=_ordinal)
            if start < len(index):
                sources.append(itertools.islice(index, start, None))
        if len(sources) == 1:
            return self._page(sources[0], status, limit)
        return self._page(heapq.merge(*sources, key=_ordinal), status, limit)

    def _page(
        self, source: Iterator[_Session], status: str | None, limit: int
    ) -> tuple[list[SessionView], SessionCursor | None]:
        """Views of the first ``limit`` listed sessions of ``source`` with ``status``, and the
        cursor after the last one if one more follows (one look ahead, so a walk never ends
        on an empty page)."""
        now = self._now
        page: list[_Session] = []
        wanted = limit + 1
        if status is None:
            for s in source:
                if s.listed:
                    page.append(s)
                    if len(page) == wanted:
                        break
        else:
            status_of = self._status_of
            for s in source:
                if s.listed and status_of(s, now)[0] == status:
                    page.append(s)
                    if len(page) == wanted:
                        break
        view = self._session_view
        if len(page) <= limit:
            return [view(s, now) for s in page], None
        del page[limit:]
        return [view(s, now) for s in page], page[-1].ordinal

    def list_session_summaries(
        self, group_identifier: str, status: str | None = None
    ) -> list[SessionSummary]:
        """``list_stream_sessions`` as the domain's ``SessionSummary`` (same sessions, same
        order), built straight from the model: no ``SessionView`` in between, and a session's
        summary object is reused until its status or last-updated time changes (a backtest
        lists every group every simulated minute; most sessions have not changed since).

        A summary also carries the model time up to which it holds (``summary_until``: the
        next time-driven phase change; the mutations reset it), so an unchanged session costs
        one comparison instead of recomputing its status."""
        self.advance()
        group = self._readable_group(group_identifier)
        now = self._now
        if status is None:
            return self._all_summaries(group, now)
        out: list[SessionSummary] = []
        append = out.append
        for s in self._listing_source(group, status):
            summary = s.summary
            if now < s.summary_until and summary is not None:
                if summary.status == status:
                    append(summary)
                continue
            summary = self._refresh_summary(s, now)
            if summary.status == status:
                append(summary)
        return out

    def _all_summaries(self, group: _Group, now: float) -> list[SessionSummary]:
        """Every session's summary, in listing order, recomputing only the sessions whose
        summary may not hold at ``now``: the stale ones (new, or changed since: their
        ``summary_until`` is -inf) and those whose ``summary_until`` has passed (popped from
        the group's heap). Every other session has ``now < summary_until`` and a summary, so
        the per-session test of the plain loop would reuse it too. The summaries are kept in
        listing order as they change (``_Group.listing``), so the answer is a copy of that."""
        stale = group.stale
        expiries = group.expiries
        while expiries and expiries[0][0] <= now:
            stale.add(heapq.heappop(expiries)[2])
        if stale:
            refresh = self._refresh_summary
            for s in stale:
                if s.listed and not (now < s.summary_until and s.summary is not None):
                    refresh(s, now)
            stale.clear()
        return group.listing.copy()  # type: ignore[return-value]  # every slot is filled

    def _refresh_summary(self, s: _Session, now: float) -> SessionSummary:
        """Recompute ``s``'s summary at ``now`` (reusing the object if nothing it shows
        changed) and how long it holds; a finite hold goes on the group's expiry heap."""
        current, reason, updated, until = self._status_until(s, now)
        s.summary_until = until
        if until != math.inf:
            group = s.group
            heapq.heappush(group.expiries, (until, next(group.expiry_seq), s))
        summary = s.summary
        if (
            summary is None
            or summary.status != current
            or summary.last_updated_at != updated
            or summary.status_reason != reason
            or summary.location != s.loc.name
        ):
            summary = SessionSummary(s.arn, current, s.loc.name, s.created_at, updated, reason)
            s.summary = summary
            if s.listed:
                group = s.group
                ords = group.listing_ord
                k = bisect_left(ords, s.ordinal)
                if k < len(ords) and ords[k] == s.ordinal:
                    group.listing[k] = summary
        return summary

    @staticmethod
    def _status_until(s: _Session, now: float) -> tuple[str, str | None, float, float]:
        """``_status_of`` and the model time until which it holds if nothing else happens to
        the session (the next time-driven phase change, else +inf)."""
        if s.ended_at is not None:
            return s.end_status, s.end_reason, s.ended_at, math.inf
        if s.terminating_at is not None:
            return "TERMINATING", None, s.terminating_at, math.inf
        if s.placed_at is None:
            return _ACTIVATING, None, s.created_at, math.inf
        if now < s.active_at:
            return _ACTIVATING, None, s.placed_at, s.active_at
        connected_at = s.connected_at
        if connected_at is not None:
            if now >= connected_at:
                return "CONNECTED", None, connected_at, math.inf
            return _ACTIVE, None, s.active_at, connected_at
        return _ACTIVE, None, s.active_at, math.inf

    @staticmethod
    def _activating_candidates(group: _Group) -> list[_Session]:
        """Every session that may be ACTIVATING: waiting ones and those placed less than
        ``session_start_s`` ago (a superset: callers still check the status)."""
        out = [s for loc in group.locations.values() for s in loc.queue if s.waiting]
        out.extend(group.recent)
        return out

    def terminate_stream_session(self, group_identifier: str, session_identifier: str) -> None:
        self.advance()
        group = self._readable_group(group_identifier)
        s = self._session(group, session_identifier)
        now = self._now
        if s.ended_at is not None or s.terminating_at is not None:
            return
        if s.waiting:
            self._end_session(s, now, _TERMINATED, "apiTerminated")
            self._reconcile(s.loc, now)
            return
        s.terminating_at = now
        s.summary_changed()
        s.gen += 1
        s.end_status = _TERMINATED
        s.end_reason = "apiTerminated"
        self._at(now + _TERMINATING_S, _EV_SESSION_END, s, s.gen)

    # --- tags -------------------------------------------------------------------------
    def _tags_of(self, arn: str) -> dict[str, str]:
        group = self._group_arns.get(arn)
        if group is not None:
            return group.tags
        app = self._app_arns.get(arn)
        if app is not None:
            return app.tags
        raise NotFoundError(f"Resource {arn!r} was not found")

    def tag_resource(self, arn: str, tags: dict[str, str]) -> None:
        self.advance()
        self._tags_of(arn).update(tags)

    def untag_resource(self, arn: str, keys: list[str]) -> None:
        self.advance()
        current = self._tags_of(arn)
        for key in keys:
            current.pop(key, None)

    def list_tags(self, arn: str) -> dict[str, str]:
        self.advance()
        return dict(self._tags_of(arn))

    # --- fault injection and meters ---------------------------------------------------
    def force_group_status(self, identifier: str, status: str, reason: str | None = None) -> None:
        """Inject ERROR / ACTIVE_WITH_ERRORS / EXPIRED etc. (tests, fault injection)."""
        self.advance()
        group = self._group(identifier)
        if status not in _GROUP_STATUSES:
            raise ValidationError(f"Unknown stream group status {status!r}")
        now = self._now
        if status == _EXPIRED:
            self._expire(group, now)
        elif status == _DELETING:
            self._begin_delete(group, now)
        else:
            group.gen += 1  # cancels a pending ACTIVATING → ACTIVE
            group.status = status
            group.last_updated_at = now
        group.reason = reason

    def force_location_status(self, identifier: str, location: str, status: str) -> None:
        self.advance()
        group = self._group(identifier)
        loc = group.locations.get(location)
        if loc is None:
            raise NotFoundError(
                f"Location {location} is not a location of stream group {group.gid}"
            )
        if status not in _LOCATION_STATUSES:
            raise ValidationError(f"Unknown location status {status!r}")
        now = self._now
        if status == _REMOVING:
            self._begin_removal(loc, now)
        else:
            loc.gen += 1  # cancels a pending ACTIVATING → ACTIVE
            loc.status = status
            if status == _ACTIVE:
                self._serve(loc, now)
                self._reconcile(loc, now)
        self._refresh_group_status(group, now)

    def usage(self) -> dict[str, dict[str, LocationUsage]]:
        """Billing meter up to now: group id → location → usage."""
        self.advance()
        now = self._now
        for group in self._groups.values():
            for loc in group.locations.values():
                loc.meter(now)
        return {
            gid: {
                name: LocationUsage(
                    u.allocated_slot_s,
                    u.in_use_slot_s,
                    u.instant,
                    u.cold,
                    u.failed,
                    list(u.waits_s),
                    u.kept_empty_slot_s,
                    u.held_empty_slot_s,
                )
                for name, u in locs.items()
            }
            for gid, locs in self._usage.items()
        }

    def location_snapshots(self, identifier: str) -> list[LocationSnapshot]:
        """Internal per-location counts (not an API call): tests, plots, admin endpoints."""
        self.advance()
        group = self._group(identifier)
        return [
            LocationSnapshot(
                name=loc.name,
                status=loc.status,
                tenancy=loc.tenancy,
                ceiling=loc.ceil,
                idle_target=loc.tidle,
                always_on=loc.always_on,
                allocated=loc.alloc,
                in_use=loc.in_use,
                waiting=loc.n_waiting,
                provisioning=loc.n_prov * loc.tenancy,
                hosts=loc.n_ready,
                empty_hosts=len(loc.buckets[loc.tenancy]),
            )
            for loc in group.locations.values()
        ]

    # --- validation -------------------------------------------------------------------
    @staticmethod
    def _check_unique_names(names: list[str]) -> None:
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise ValidationError(f"Location {name} is listed more than once")
            seen.add(name)

    def _require_status(self, group: _Group, allowed: tuple[str, ...], operation: str) -> None:
        if group.status == _EXPIRED:
            raise ValidationError(
                f"Stream group {group.gid} has expired; {operation} is not allowed"
            )
        if group.status not in allowed:
            busy = [
                f"location {loc.name} is {loc.status}"
                for loc in group.locations.values()
                if loc.status in (_ACTIVATING, _REMOVING, _ERROR)
            ]
            detail = f" ({', '.join(busy)})" if busy else ""
            raise ConflictError(
                f"Stream group {group.gid} is {group.status}{detail}; {operation} requires "
                + " or ".join(allowed)
            )

    def _readable_group(self, identifier: str) -> _Group:
        group = self._group(identifier)
        if group.status == _EXPIRED:
            raise ValidationError(f"Stream group {group.gid} has expired")
        self._purge(group, self._now)
        return group

    @staticmethod
    def _resolve(
        info: StreamClassInfo, c: LocationConfigInput, existing: _Location | None
    ) -> tuple[int, int | None, int | None, int | None] | None:
        """The (always_on, target_idle, maximum, on_demand) a configuration sets, or None
        when it changes nothing (see the module docstring for the defaults)."""
        tenancy = info.tenancy
        for api_name, attr in _FIELD_NAMES:
            value = getattr(c, attr)
            if value is None:
                continue
            if value < 0:
                raise ValidationError(
                    f"{api_name} ({value}) of location {c.name} must be at least 0"
                )
            if value % tenancy:
                raise ValidationError(
                    f"{api_name} ({value}) of location {c.name} must be a multiple of "
                    f"{tenancy}, the tenancy of stream class {info.name}"
                )
        if c.on_demand is not None and (c.target_idle is not None or c.maximum is not None):
            raise ValidationError(
                f"OnDemandCapacity cannot be combined with TargetIdleCapacity or "
                f"MaximumCapacity in one location configuration (location {c.name})"
            )
        if (
            c.always_on is None
            and c.target_idle is None
            and c.maximum is None
            and c.on_demand is None
        ):
            if existing is not None:
                return None
            return (0, 0, _class_default(tenancy), None)
        always_on = c.always_on or 0
        if c.on_demand is not None:
            return (always_on, None, None, c.on_demand)
        if (
            existing is not None
            and existing.on_demand is not None
            and c.target_idle is None
            and c.maximum is None
        ):
            return (always_on, None, None, existing.on_demand)
        target_idle = c.target_idle or 0
        if c.maximum is not None:
            maximum = c.maximum
        elif existing is not None:
            maximum = always_on
        else:
            maximum = max(always_on, _class_default(tenancy))
        if always_on > maximum:
            raise ValidationError(
                f"AlwaysOnCapacity ({always_on}) of location {c.name} must not exceed "
                f"MaximumCapacity ({maximum})"
            )
        if target_idle > maximum:
            raise ValidationError(
                f"TargetIdleCapacity ({target_idle}) of location {c.name} must not exceed "
                f"MaximumCapacity ({maximum})"
            )
        return (always_on, target_idle, maximum, None)

    # --- allocation -------------------------------------------------------------------
    def _reconcile(self, loc: _Location, t: float) -> None:
        """Provision up to what is needed; release surplus empty hosts (drain only)."""
        if loc.status != _ACTIVE:
            return
        tenancy = loc.tenancy
        needed = loc.in_use + loc.n_waiting + loc.tidle
        if needed < loc.always_on:  # noqa: PLR1730  (hot path: no builtin call)
            needed = loc.always_on
        if needed > loc.ceil:  # noqa: PLR1730
            needed = loc.ceil
        need_hosts = -(-needed // tenancy)
        have = loc.n_ready + loc.n_prov
        if need_hosts > have:
            for _ in range(need_hosts - have):
                host = _Host(next(self._host_ids))
                loc.prov[host.hid] = host
                loc.n_prov += 1
                self._at(t + self._provision_delay(loc), _EV_HOST_READY, loc, host.hid)
        elif need_hosts < have:
            check = loc.release_check_at
            if have * tenancy <= loc.ceil and (
                loc.n_ready <= need_hosts
                or not loc.buckets[tenancy]
                or (check is not None and check > t)
            ):
                # no ready host beyond the need (the surplus is still provisioning), no empty
                # host, or none due before the pending check (oldest first)
                return
            self._shrink(loc, t, need_hosts)

    def _shrink(self, loc: _Location, t: float, need_hosts: int) -> None:
        tenancy = loc.tenancy
        over = loc.n_ready + loc.n_prov - loc.ceil // tenancy  # hosts above the hard ceiling
        while over > 0 and loc.prov:
            _, host = loc.prov.popitem()
            host.cancelled = True
            loc.n_prov -= 1
            over -= 1
        empty = loc.buckets[tenancy]
        while over > 0 and empty:
            self._release_host(loc, next(iter(empty.values())), t)
            over -= 1
        # Below the ceiling only ready hosts beyond the need are surplus. Hosts still being
        # provisioned for an earlier, higher target are not cancelled (they are released,
        # empty, after the delay once ready); releasing a ready host in their place would
        # leave allocated under AlwaysOn and idle under TargetIdle until they came.
        surplus = loc.n_ready - need_hosts
        delay = self._p.host_release_idle_s
        while surplus > 0 and empty:
            host = next(iter(empty.values()))  # empty the longest
            due = host.empty_since + delay
            if due > t:
                if loc.release_check_at is None or due < loc.release_check_at:
                    loc.release_check_at = due
                    self._at(due, _EV_RELEASE_CHECK, loc)
                return
            self._release_host(loc, host, t)
            surplus -= 1

    def _release_host(self, loc: _Location, host: _Host, t: float) -> None:
        loc.meter(t)
        del loc.buckets[loc.tenancy][host.hid]
        loc.n_ready -= 1
        loc.alloc -= loc.tenancy

    def _release_all(self, loc: _Location, t: float) -> None:
        loc.meter(t)
        for host in loc.prov.values():
            host.cancelled = True
        loc.prov.clear()
        loc.n_prov = 0
        for bucket in loc.buckets:
            bucket.clear()
        loc.n_ready = 0
        loc.alloc = 0

    def _on_host_ready(self, loc: _Location, hid: int, t: float) -> None:
        host = loc.prov.pop(hid, None)
        if host is None or host.cancelled or loc.gone:
            return
        loc.n_prov -= 1
        loc.meter(t)
        tenancy = loc.tenancy
        loc.n_ready += 1
        loc.alloc += tenancy
        host.free = tenancy
        host.empty_since = t
        loc.buckets[tenancy][hid] = host
        self._serve(loc, t)
        self._reconcile(loc, t)

    def _serve(self, loc: _Location, t: float) -> None:
        """Place waiting sessions (first come, first served) on free slots."""
        queue = loc.queue
        if loc.n_waiting:
            loc.meter(t)  # the waiting count is part of what the targets keep
        while loc.n_waiting and loc.alloc > loc.in_use and queue:
            s = queue.popleft()
            if not s.waiting:
                continue
            s.waiting = False
            loc.n_waiting -= 1
            loc.usage.cold += 1
            self._place(s, loc, t)

    def _place(self, s: _Session, loc: _Location, t: float) -> None:
        buckets = loc.buckets
        tenancy = loc.tenancy
        usage = loc.usage
        # Meter up to t before anything changes at t (inlined loc.meter(t): the hottest path).
        dt = t - loc.meter_t
        if dt > 0:
            usage.allocated_slot_s += dt * loc.alloc
            usage.in_use_slot_s += dt * loc.in_use
            if buckets[tenancy]:
                loc.meter_empty(dt)
            loc.meter_t = t
        for free in range(1, tenancy + 1):
            bucket = buckets[free]
            if bucket:
                hid, host = bucket.popitem()
                buckets[free - 1][hid] = host
                host.free = free - 1
                break
        else:  # pragma: no cover - callers check alloc > in_use first
            raise AssertionError("no free slot to place a session on")
        loc.in_use += 1
        s.loc = loc
        s.host = host
        s.placed_at = t
        s.summary_changed()
        usage.waits_s.append(t - s.created_at)
        active_at = t + self._start_s
        s.active_at = active_at
        end_t = active_at + s.length_s
        reason = "maxSessionLengthTimeout"
        connect = self._connect_s
        if connect is None or connect > s.conn_timeout:
            if active_at + s.conn_timeout < end_t:
                end_t = active_at + s.conn_timeout
                reason = "connectionTimeout"
        else:
            s.connected_at = active_at + connect
        if s.end_after_s is not None and t + s.end_after_s < end_t:
            end_t = t + s.end_after_s
            reason = "applicationExit"
        s.end_status = _TERMINATED
        s.end_reason = reason
        s.group.recent.append(s)
        self._at(end_t, _EV_SESSION_END, s, s.gen)

    # --- sessions ---------------------------------------------------------------------
    def _on_session_end(self, s: _Session, gen: int, t: float) -> None:
        if s.gen != gen or s.ended_at is not None:
            return
        loc = s.loc
        self._end_session(s, t, s.end_status, s.end_reason)
        self._serve(loc, t)
        self._reconcile(loc, t)

    def _on_placement_timeout(self, s: _Session, gen: int, t: float) -> None:
        if s.gen != gen or not s.waiting:
            return
        s.loc.usage.failed += 1
        self._end_session(s, t, _ERROR, "placementTimeout")
        self._reconcile(s.loc, t)

    def _end_session(self, s: _Session, t: float, status: str, reason: str | None) -> None:
        """Mark ``s`` ended and give back what it holds (slot or queue place)."""
        s.gen += 1
        loc = s.loc
        buckets = loc.buckets
        dt = t - loc.meter_t  # inlined loc.meter(t), before anything changes at t
        if dt > 0:
            usage = loc.usage
            usage.allocated_slot_s += dt * loc.alloc
            usage.in_use_slot_s += dt * loc.in_use
            if buckets[loc.tenancy]:
                loc.meter_empty(dt)
            loc.meter_t = t
        if s.waiting:
            s.waiting = False
            loc.n_waiting -= 1
        elif s.host is not None:
            host = s.host
            s.host = None
            free = host.free
            del buckets[free][host.hid]
            free += 1
            host.free = free
            buckets[free][host.hid] = host
            if free == loc.tenancy:
                host.empty_since = t
            loc.in_use -= 1
        s.ended_at = t
        s.end_status = status
        s.end_reason = reason
        s.summary_changed()
        group = s.group
        del group.live[s.sid]
        group.ended.append(s)

    def _end_all(self, sessions: list[_Session], t: float) -> None:
        for s in sessions:
            if s.waiting:
                self._end_session(s, t, _ERROR, "internalError")
            else:
                self._end_session(s, t, _TERMINATED, "apiTerminated")

    # --- lifecycle --------------------------------------------------------------------
    def _refresh_group_status(self, group: _Group, t: float) -> None:
        if group.status not in (_ACTIVE, _UPDATING, _WITH_ERRORS):
            return
        statuses = {loc.status for loc in group.locations.values()}
        if _ACTIVATING in statuses or _REMOVING in statuses:
            status = _UPDATING
        elif _ERROR in statuses:
            status = _WITH_ERRORS
        else:
            status = _ACTIVE
        if status != group.status:
            group.status = status
            group.last_updated_at = t

    def _on_group_active(self, group: _Group, gen: int, t: float) -> None:
        if self._groups.get(group.gid) is not group:
            return
        for loc in group.locations.values():
            if loc.status == _ACTIVATING and loc.gen == 0:
                loc.status = _ACTIVE
                self._reconcile(loc, t)
        if group.gen == gen and group.status == _ACTIVATING:
            group.status = _ACTIVE
            group.last_updated_at = t
            self._refresh_group_status(group, t)

    def _on_location_active(self, loc: _Location, gen: int, t: float) -> None:
        if loc.gone or loc.gen != gen or loc.status != _ACTIVATING:
            return
        loc.status = _ACTIVE
        self._reconcile(loc, t)
        self._refresh_group_status(loc.group, t)

    def _begin_removal(self, loc: _Location, t: float) -> None:
        loc.status = _REMOVING
        loc.gen += 1
        group = loc.group
        self._end_all([s for s in group.live.values() if s.loc is loc], t)
        self._at(t + self._p.location_removal_s, _EV_LOCATION_GONE, loc, loc.gen)

    def _on_location_gone(self, loc: _Location, gen: int, t: float) -> None:
        if loc.gone or loc.gen != gen:
            return
        self._release_all(loc, t)
        loc.gone = True
        group = loc.group
        if group.locations.get(loc.name) is loc:
            del group.locations[loc.name]
        group.last_updated_at = t
        self._refresh_group_status(group, t)

    def _begin_delete(self, group: _Group, t: float) -> None:
        group.status = _DELETING
        group.gen += 1
        group.last_updated_at = t
        self._end_all(list(group.live.values()), t)
        self._at(t + self._p.group_deletion_s, _EV_GROUP_GONE, group)

    def _on_group_gone(self, group: _Group, t: float) -> None:
        if self._groups.get(group.gid) is not group:
            return
        for loc in group.locations.values():
            self._release_all(loc, t)
            loc.gone = True
        del self._groups[group.gid]
        del self._group_arns[group.arn]

    def _expire(self, group: _Group, t: float) -> None:
        group.status = _EXPIRED
        group.gen += 1
        group.last_updated_at = t
        self._end_all(list(group.live.values()), t)
        for loc in group.locations.values():
            self._release_all(loc, t)

    # --- views ------------------------------------------------------------------------
    def _group_view(self, group: _Group) -> StreamGroupView:
        return StreamGroupView(
            group_id=group.gid,
            arn=group.arn,
            description=group.description,
            stream_class=group.info.name,
            status=group.status,
            status_reason=group.reason,
            default_application_id=group.default_app_id,
            primary_location=group.region,
            created_at=group.created_at,
            last_updated_at=group.last_updated_at,
            expires_at=group.expires_at,
            locations=[
                LocationView(
                    name=loc.name,
                    status=loc.status,
                    always_on=loc.always_on,
                    target_idle=loc.target_idle,
                    maximum=loc.maximum,
                    on_demand=loc.on_demand,
                    requested=loc.always_on,
                    allocated=loc.alloc,
                    idle=loc.alloc - loc.in_use,
                )
                for loc in group.locations.values()
            ],
            associated_application_arns=list(group.apps),
            tags=dict(group.tags),
        )

    @staticmethod
    def _status_of(s: _Session, now: float) -> tuple[str, str | None, float]:
        """(status, reason, last updated) of ``s`` at ``now``: the in-flight phases are a pure
        function of time."""
        if s.ended_at is not None:
            return s.end_status, s.end_reason, s.ended_at
        if s.terminating_at is not None:
            return "TERMINATING", None, s.terminating_at
        if s.placed_at is None or now < s.active_at:
            return _ACTIVATING, None, s.created_at if s.placed_at is None else s.placed_at
        if s.connected_at is not None and now >= s.connected_at:
            return "CONNECTED", None, s.connected_at
        return _ACTIVE, None, s.active_at

    def _session_view(self, s: _Session, now: float) -> SessionView:
        status, reason, updated = self._status_of(s, now)
        placed_at = s.placed_at
        # positional (field order of SessionView): measurably faster on the hot path
        return SessionView(
            s.sid,
            s.arn,
            s.group.gid,
            s.app_arn,
            s.user_id,
            status,
            reason,
            s.loc.name,
            s.protocol,
            s.description,
            s.created_at,
            updated,
            s.conn_timeout,
            s.length_s,
            None if placed_at is None else placed_at - s.created_at,
        )

    def _listing_source(self, group: _Group, status: str | None) -> list[_Session]:
        """The sessions ``list_stream_sessions`` considers for ``status``, in its order."""
        if status == _ACTIVATING:
            # only waiting sessions and those placed less than session_start_s ago qualify
            source = self._activating_candidates(group)
            source.sort(key=lambda s: s.created_at)
            return source
        if status in (_TERMINATED, _ERROR):
            return list(group.ended)
        return list(group.sessions.values())

    def _list_sessions(self, group: _Group, status: str | None) -> list[SessionView]:
        now = self._now
        source = self._listing_source(group, status)
        views = [self._session_view(s, now) for s in source]
        if status is not None:
            views = [v for v in views if v.status == status]
        return views
