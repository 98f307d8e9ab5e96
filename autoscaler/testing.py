"""In-memory fakes of the GameLift Streams ports, for unit tests (ours and users').

``FakeGameLiftStreams`` implements both ``StreamGroupReader`` and ``StreamGroupWriter`` over a
few dicts. It is deliberately small: it stores what a test puts in, applies capacity updates
literally, counts calls and fails on request. It does not simulate hosts, provisioning or
placement; that is the service model's job (``autoscaler.twin``), which the HTTP emulator and
the in-process adapter run. Prefer this fake over mocks: it keeps the port's contract (errors
from ``autoscaler.domain.errors``, all-or-nothing listings, copies instead of shared state).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from autoscaler.domain.classes import stream_class_info
from autoscaler.domain.errors import ConflictError, NotFoundError, ServiceError, ValidationError
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupState,
    GroupSummary,
    LocationState,
    SessionSummary,
)

FAKE_ACCOUNT = "123456789012"


@dataclass(slots=True)
class _FakeGroup:
    state: GroupState
    sessions: list[SessionSummary] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)


class FakeGameLiftStreams:
    """Both ports in memory.

    ``calls`` counts every call per AWS operation name (failed ones too); ``writes`` records
    each mutating call as ``(operation, group_id, payload)``; ``latency_s`` makes every call
    sleep (to observe concurrency: ``max_in_flight``).
    """

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self._groups: dict[str, _FakeGroup] = {}
        self._failures: defaultdict[str, deque[ServiceError]] = defaultdict(deque)
        self.calls: Counter[str] = Counter()
        self.writes: list[tuple[str, str, object]] = []
        self.latency_s = latency_s
        self.in_flight = 0
        self.max_in_flight = 0

    # --- test set-up ----------------------------------------------------------------------
    def add_group(
        self,
        group_id: str,
        locations: Mapping[str, CapacitySetting],
        *,
        stream_class: str = "gen4n_high",
        status: str = "ACTIVE",
        primary_location: str | None = None,
        tags: Mapping[str, str] | None = None,
        description: str = "",
    ) -> GroupState:
        """A group whose locations are ACTIVE with nothing allocated (see ``set_location``)."""
        if not locations:
            raise ValueError("a stream group has at least its primary location")
        primary = primary_location or next(iter(locations))
        models = {s.model for s in locations.values()}
        state = GroupState(
            group_id=group_id,
            arn=f"arn:aws:gameliftstreams:{primary}:{FAKE_ACCOUNT}:streamgroup/{group_id}",
            status=status,
            stream_class=stream_class,
            tenancy=stream_class_info(stream_class).tenancy,
            capacity_model=CapacityModel.LEGACY
            if CapacityModel.LEGACY in models
            else CapacityModel.CURRENT,
            locations=tuple(
                LocationState(name=n, status="ACTIVE", setting=s, requested=s.always_on)
                for n, s in locations.items()
            ),
            primary_location=primary,
            description=description,
        )
        self._groups[group_id] = _FakeGroup(state=state, tags=dict(tags or {}))
        return state

    def set_location(self, group_id: str, location: str, **changes: object) -> None:
        """Change fields of one ``LocationState`` (status, allocated, idle, setting, …)."""
        group = self._group(group_id)
        locs = tuple(
            replace(loc, **changes)  # type: ignore[arg-type]
            if loc.name == location
            else loc
            for loc in group.state.locations
        )
        group.state = replace(group.state, locations=locs)

    def set_group_status(self, group_id: str, status: str) -> None:
        group = self._group(group_id)
        group.state = replace(group.state, status=status)

    def add_session(
        self,
        group_id: str,
        *,
        status: str,
        created_at: float,
        location: str | None = None,
        last_updated_at: float | None = None,
        status_reason: str | None = None,
    ) -> SessionSummary:
        group = self._group(group_id)
        n = len(group.sessions)
        session = SessionSummary(
            arn=f"{group.state.arn.replace(':streamgroup/', ':streamsession/')}/ss-{n:06d}",
            status=status,
            location=location,
            created_at=created_at,
            last_updated_at=created_at if last_updated_at is None else last_updated_at,
            status_reason=status_reason,
        )
        group.sessions.append(session)
        return session

    def fail_next(self, op: str, error: ServiceError, times: int = 1) -> None:
        """The next ``times`` calls of ``op`` (AWS name, e.g. "ListStreamSessions") raise."""
        for _ in range(times):
            self._failures[op].append(error)

    def state(self, group_id: str) -> GroupState:
        return self._group(group_id).state

    # --- internals ------------------------------------------------------------------------
    def _group(self, group_id: str) -> _FakeGroup:
        for key, group in self._groups.items():
            if group_id in (key, group.state.arn):
                return group
        raise NotFoundError(f"stream group {group_id} not found")

    async def _enter(self, op: str) -> None:
        self.calls[op] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        if self._failures[op]:
            raise self._failures[op].popleft()

    def _require_active(self, group: _FakeGroup, op: str) -> None:
        if group.state.status != "ACTIVE":
            raise ConflictError(f"{op}: stream group is {group.state.status}, not ACTIVE")

    # --- StreamGroupReader ----------------------------------------------------------------
    async def list_stream_groups(self) -> list[GroupSummary]:
        await self._enter("ListStreamGroups")
        return [
            GroupSummary(
                group_id=g.state.group_id,
                arn=g.state.arn,
                status=g.state.status,
                stream_class=g.state.stream_class,
                description=g.state.description,
            )
            for g in self._groups.values()
        ]

    async def get_stream_group(self, group_id: str) -> GroupState:
        await self._enter("GetStreamGroup")
        return self._group(group_id).state

    async def list_tags(self, arn: str) -> dict[str, str]:
        await self._enter("ListTagsForResource")
        return dict(self._group(arn).tags)

    async def list_stream_sessions(
        self, group_id: str, status: str | None = None
    ) -> list[SessionSummary]:
        await self._enter("ListStreamSessions")
        sessions = self._group(group_id).sessions
        return [s for s in sessions if status is None or s.status == status]

    # --- StreamGroupWriter ----------------------------------------------------------------
    async def update_stream_group(
        self, group_id: str, settings: Mapping[str, CapacitySetting]
    ) -> GroupState:
        await self._enter("UpdateStreamGroup")
        group = self._group(group_id)
        self._require_active(group, "UpdateStreamGroup")
        names = {loc.name for loc in group.state.locations}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ValidationError(f"locations not in the stream group: {', '.join(unknown)}")
        self.writes.append(("UpdateStreamGroup", group.state.group_id, dict(settings)))
        group.state = replace(
            group.state,
            locations=tuple(
                replace(loc, setting=settings[loc.name], requested=settings[loc.name].always_on)
                if loc.name in settings
                else loc
                for loc in group.state.locations
            ),
        )
        return group.state

    async def add_stream_group_locations(
        self, group_id: str, settings: Mapping[str, CapacitySetting]
    ) -> GroupState:
        await self._enter("AddStreamGroupLocations")
        group = self._group(group_id)
        self._require_active(group, "AddStreamGroupLocations")
        self.writes.append(("AddStreamGroupLocations", group.state.group_id, dict(settings)))
        names = {loc.name for loc in group.state.locations}
        added = tuple(
            LocationState(name=n, status="ACTIVATING", setting=s, requested=s.always_on)
            for n, s in settings.items()
            if n not in names
        )
        group.state = replace(group.state, locations=group.state.locations + added)
        return group.state

    async def remove_stream_group_locations(self, group_id: str, locations: Sequence[str]) -> None:
        await self._enter("RemoveStreamGroupLocations")
        group = self._group(group_id)
        if group.state.primary_location in locations:
            raise ValidationError("the primary location of a stream group cannot be removed")
        self.writes.append(("RemoveStreamGroupLocations", group.state.group_id, list(locations)))
        group.state = replace(
            group.state,
            locations=tuple(
                replace(loc, status="REMOVING") if loc.name in locations else loc
                for loc in group.state.locations
            ),
        )
