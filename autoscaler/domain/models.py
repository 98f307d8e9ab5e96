"""Plain typed data that flows between the stages (sample → store → forecast → plan → guard →
actuate → report). Frozen and slotted: a stage can never change what another one produced.

Times are epoch seconds (float, UTC). Capacities are slot counts (not hosts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class CapacityModel(StrEnum):
    """How a location's capacity is expressed (chosen per stream group)."""

    CURRENT = "current"  # AlwaysOn + TargetIdle + Maximum
    LEGACY = "legacy"  # AlwaysOn + OnDemand (deprecated 2025-12-17)


# Session statuses that hold a slot on a host (the session was placed).
SLOT_HOLDING_STATUSES = frozenset(
    {"ACTIVE", "CONNECTED", "PENDING_CLIENT_RECONNECTION", "RECONNECTING", "TERMINATING"}
)
# Session statuses that are over.
ENDED_STATUSES = frozenset({"TERMINATED", "ERROR"})


@dataclass(frozen=True, slots=True)
class CapacitySetting:
    """A location's configured capacity.

    Current model: ``always_on``, ``target_idle``, ``maximum``; ``on_demand`` is None.
    Legacy model: ``always_on`` and ``on_demand``; it behaves like maximum = always_on +
    on_demand and target_idle = 0, which ``ceiling`` and ``idle_target`` express.
    """

    always_on: int
    target_idle: int = 0
    maximum: int = 0
    on_demand: int | None = None

    @property
    def model(self) -> CapacityModel:
        return CapacityModel.LEGACY if self.on_demand is not None else CapacityModel.CURRENT

    @property
    def ceiling(self) -> int:
        """Most slots the service may allocate."""
        if self.on_demand is not None:
            return self.always_on + self.on_demand
        return max(self.maximum, self.always_on)

    @property
    def idle_target(self) -> int:
        return 0 if self.on_demand is not None else self.target_idle

    def describe(self) -> str:
        if self.on_demand is not None:
            return f"always-on {self.always_on}, on-demand {self.on_demand}"
        return f"always-on {self.always_on}, target-idle {self.target_idle}, max {self.maximum}"


@dataclass(frozen=True, slots=True)
class LocationState:
    """One location of a stream group as GetStreamGroup reports it."""

    name: str
    status: str  # ACTIVATING | ACTIVE | ERROR | REMOVING (or a future value)
    setting: CapacitySetting
    requested: int = 0
    allocated: int = 0
    idle: int = 0

    @property
    def in_use(self) -> int:
        return max(0, self.allocated - self.idle)


@dataclass(frozen=True, slots=True)
class GroupState:
    """A stream group as GetStreamGroup reports it."""

    group_id: str
    arn: str
    status: str
    stream_class: str
    tenancy: int
    capacity_model: CapacityModel
    locations: tuple[LocationState, ...]
    primary_location: str
    description: str = ""
    status_reason: str | None = None
    created_at: float | None = None
    last_updated_at: float | None = None
    expires_at: float | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def location(self, name: str) -> LocationState | None:
        for loc in self.locations:
            if loc.name == name:
                return loc
        return None


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One entry of ListStreamSessions, reduced to what capacity decisions need."""

    arn: str
    status: str
    location: str | None
    created_at: float
    last_updated_at: float
    status_reason: str | None = None


@dataclass(frozen=True, slots=True)
class LocationSample:
    """Demand and capacity observed at one location at one tick."""

    group_id: str
    location: str
    at: float
    status: str
    setting: CapacitySetting
    allocated: int
    idle: int
    in_use: int  # sessions holding a slot
    waiting: int  # sessions ACTIVATING (asked for a slot, not yet streaming)
    oldest_waiting_s: float  # age of the oldest ACTIVATING session, 0 if none
    arrivals: int  # sessions created since the previous sample
    placement_failures: int  # sessions that ended in ERROR/placementTimeout since then
    departures: int  # sessions that ended (any way) since then
    complete: bool = True  # False: part of the reads failed; never read as zero demand
    # Sessions that started streaming since then after waiting for capacity (their start took
    # longer than the instant-start threshold); None: not measured (the listing failed, or a
    # sample older than the measurement). With placement_failures: the sessions not instant.
    late_starts: int | None = None
    # The miss budget in force since the previous sample (Recommendation's, as the controller
    # applied it at the previous tick); None: none in force or not known.
    miss_budget: float | None = None


@dataclass(frozen=True, slots=True)
class GroupSample:
    """Everything read about one stream group at one tick."""

    at: float
    group_id: str
    state: GroupState | None  # None: GetStreamGroup failed
    locations: tuple[LocationSample, ...]
    complete: bool
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LocationHistory:
    """A location's stored samples, oldest first, as numpy columns (one row per tick)."""

    at: FloatArray
    in_use: FloatArray
    waiting: FloatArray
    arrivals: FloatArray
    placement_failures: FloatArray
    departures: FloatArray
    allocated: FloatArray
    idle: FloatArray
    complete: npt.NDArray[np.bool_]
    # LocationSample.late_starts per row, NaN where not measured; None: no row measured it.
    late_starts: FloatArray | None = None
    # LocationSample.miss_budget per row, NaN where none was in force; None: no row.
    miss_budget: FloatArray | None = None

    @staticmethod
    def empty() -> LocationHistory:
        z = np.zeros(0, dtype=np.float64)
        return LocationHistory(z, z, z, z, z, z, z, z, np.zeros(0, dtype=np.bool_), z, z)

    def __len__(self) -> int:
        return int(self.at.shape[0])


@dataclass(frozen=True, slots=True)
class LocationBounds:
    """Per-location limits from the policy file (slots)."""

    min_capacity: int = 0
    max_capacity: int = 1_000_000


@dataclass(frozen=True, slots=True)
class Recommendation:
    """What a policy plugin wants for one location (before the guards)."""

    setting: CapacitySetting
    reason: str
    forecast_in_use: float | None = None  # forecast concurrency at the lead time
    forecast_arrivals_per_s: float | None = None
    # The share of sessions a closed-loop policy sized its buffer to let miss (in its own
    # units, e.g. before an hour-of-day spread). The controller records it with the next
    # sample while the decision is in force, so the policy can later read which budget
    # produced the misses it measures (an integral loop that survives restarts and policy
    # edits). None: the policy has no feedback.
    miss_budget: float | None = None
    # Set when this is not the policy's own answer: its model failed (a webhook that did not
    # answer, a chain entry that raised) and a fallback answered instead; says why. Reports
    # and backtests count these, so a policy that never worked is not scored as if it had.
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class LocationChange:
    """Add or remove a location (the plan's location lifecycle part)."""

    location: str
    action: str  # "add" | "remove"
    setting: CapacitySetting | None
    reason: str


@dataclass(frozen=True, slots=True)
class Veto:
    """A guard changed or blocked part of a plan; reports carry every one of these."""

    guard: str
    location: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class LocationDecision:
    """Proposed (by the policy) and decided (after the guards) capacity for one location."""

    location: str
    current: CapacitySetting
    proposed: CapacitySetting
    decided: CapacitySetting
    in_use: int
    reason: str
    forecast_in_use: float | None = None

    @property
    def changed(self) -> bool:
        return self.decided != self.current


@dataclass(frozen=True, slots=True)
class GroupDecision:
    """The guarded plan for one stream group at one tick."""

    group_id: str
    at: float
    capacity_model: CapacityModel
    locations: tuple[LocationDecision, ...]
    location_changes: tuple[LocationChange, ...] = ()
    vetoes: tuple[Veto, ...] = ()
    frozen: bool = False  # True: the guards hold capacity as it is (stale data, pause, …)

    @property
    def changed_locations(self) -> tuple[LocationDecision, ...]:
        return tuple(d for d in self.locations if d.changed)


@dataclass(frozen=True, slots=True)
class Actuation:
    """What the actuator did for one group."""

    group_id: str
    applied: bool  # a mutating call succeeded
    dry_run: bool
    calls: tuple[str, ...] = ()  # operation names sent (or that would have been sent)
    error: str | None = None
    retry_later: bool = False
    # The calls that succeeded: with ``error`` set, a plan may have landed only in part
    # (an UpdateStreamGroup throttled while AddStreamGroupLocations went through).
    succeeded: tuple[str, ...] = ()

    @property
    def capacity_updated(self) -> bool:
        """The decision's capacity settings were sent and accepted (UpdateStreamGroup)."""
        return "UpdateStreamGroup" in self.succeeded


@dataclass(frozen=True, slots=True)
class GroupReport:
    """One record per tick and group: inputs, plan, vetoes, what was applied."""

    group_id: str
    at: float
    sample: GroupSample
    decision: GroupDecision | None
    actuation: Actuation | None
    skipped: str | None = None  # why the group was not planned at all
    # This tick's policy failures: plugin errors (those locations held) and fallbacks that
    # answered in the policy's place (``Recommendation.fallback``).
    policy_problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TickReport:
    at: float
    duration_s: float
    groups: tuple[GroupReport, ...]
    calls: Mapping[str, int] = field(default_factory=dict)  # API calls made this tick
    ok: bool = True


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """One entry of ListStreamGroups."""

    group_id: str
    arn: str
    status: str
    stream_class: str
    description: str = ""
