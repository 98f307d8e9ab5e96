"""The service model behind the controller's ports, in the same process (no HTTP).

Backtests run the controller's real pipeline against this instead of the aiobotocore adapter:
same ports (``StreamGroupReader`` / ``StreamGroupWriter``), same domain types and errors, but
each call is a direct method call on the model in virtual time. The methods are ``async`` only
to satisfy the ports; none of them awaits anything.

``InProcessReader`` has the read methods only: a dry-run controller built on it has no way to
change capacity, by construction. ``counts`` tallies calls per AWS operation name, like the
calls-per-tick metric of the real adapter: a ListStreamSessions listing counts its pages
(100 sessions each, at least one), as the paginated HTTP adapter sends them.

Speed (a backtest lists every session every simulated minute): the session listing comes from
``ServiceModel.list_session_summaries``, which hands out domain summaries directly and reuses a
session's summary until it changes, instead of building a ``SessionView`` and converting it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from autoscaler.domain.classes import stream_class_info
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupState,
    GroupSummary,
    LocationState,
    SessionSummary,
)
from autoscaler.twin.model import (
    LocationConfigInput,
    LocationView,
    ServiceModel,
    SessionView,
    StreamGroupView,
)

# Sessions per ListStreamSessions page, as the HTTP adapter requests them.
SESSIONS_PER_PAGE: Final = 100


def setting_of(view: LocationView) -> CapacitySetting:
    """The domain setting of a location: legacy iff OnDemand is set."""
    if view.on_demand is not None:
        return CapacitySetting(always_on=view.always_on, on_demand=view.on_demand)
    return CapacitySetting(
        always_on=view.always_on,
        target_idle=view.target_idle or 0,
        maximum=view.maximum or 0,
    )


def group_state_of(view: StreamGroupView) -> GroupState:
    legacy = any(loc.on_demand is not None for loc in view.locations)
    return GroupState(
        group_id=view.group_id,
        arn=view.arn,
        status=view.status,
        stream_class=view.stream_class,
        tenancy=stream_class_info(view.stream_class).tenancy,
        capacity_model=CapacityModel.LEGACY if legacy else CapacityModel.CURRENT,
        locations=tuple(
            LocationState(
                name=loc.name,
                status=loc.status,
                setting=setting_of(loc),
                requested=loc.requested,
                allocated=loc.allocated,
                idle=loc.idle,
            )
            for loc in view.locations
        ),
        primary_location=view.primary_location,
        description=view.description,
        status_reason=view.status_reason,
        created_at=view.created_at,
        last_updated_at=view.last_updated_at,
        expires_at=view.expires_at,
        tags=dict(view.tags),
    )


def session_summary_of(view: SessionView) -> SessionSummary:
    return SessionSummary(
        arn=view.arn,
        status=view.status,
        location=view.location,
        created_at=view.created_at,
        last_updated_at=view.last_updated_at,
        status_reason=view.status_reason,
    )


def config_of(location: str, setting: CapacitySetting) -> LocationConfigInput:
    """What UpdateStreamGroup carries: the full triple, or the legacy pair."""
    if setting.on_demand is not None:
        return LocationConfigInput(
            location, always_on=setting.always_on, on_demand=setting.on_demand
        )
    return LocationConfigInput(
        location,
        always_on=setting.always_on,
        target_idle=setting.target_idle,
        maximum=setting.maximum,
    )


class InProcessReader:
    """``StreamGroupReader`` over a ``ServiceModel``: reads only."""

    def __init__(self, model: ServiceModel, region: str) -> None:
        self._model = model
        self.region = region
        self.counts: dict[str, int] = {}

    def _count(self, operation: str, calls: int = 1) -> None:
        self.counts[operation] = self.counts.get(operation, 0) + calls

    async def list_stream_groups(self) -> list[GroupSummary]:
        self._count("ListStreamGroups")
        return [
            GroupSummary(
                group_id=g.group_id,
                arn=g.arn,
                status=g.status,
                stream_class=g.stream_class,
                description=g.description,
            )
            for g in self._model.list_stream_groups()
            if g.primary_location == self.region
        ]

    async def get_stream_group(self, group_id: str) -> GroupState:
        self._count("GetStreamGroup")
        return self._model.group_state(group_id)  # == group_state_of(get_stream_group(...))

    async def list_tags(self, arn: str) -> dict[str, str]:
        self._count("ListTagsForResource")
        return self._model.list_tags(arn)

    async def list_stream_sessions(
        self, group_id: str, status: str | None = None
    ) -> list[SessionSummary]:
        try:
            sessions = self._model.list_session_summaries(group_id, status)
        except Exception:
            self._count("ListStreamSessions")  # the first page was sent and refused
            raise
        # Pages of the paginated listing: an empty listing is still one request.
        self._count("ListStreamSessions", max(1, -(-len(sessions) // SESSIONS_PER_PAGE)))
        return sessions


class InProcessGameLiftStreams(InProcessReader):
    """``StreamGroupReader`` and ``StreamGroupWriter`` over a ``ServiceModel``."""

    async def update_stream_group(
        self, group_id: str, settings: Mapping[str, CapacitySetting]
    ) -> GroupState:
        self._count("UpdateStreamGroup")
        view = self._model.update_stream_group(
            group_id, locations=[config_of(name, s) for name, s in settings.items()]
        )
        return group_state_of(view)

    async def add_stream_group_locations(
        self, group_id: str, settings: Mapping[str, CapacitySetting]
    ) -> GroupState:
        self._count("AddStreamGroupLocations")
        view = self._model.add_stream_group_locations(
            group_id, [config_of(name, s) for name, s in settings.items()]
        )
        return group_state_of(view)

    async def remove_stream_group_locations(self, group_id: str, locations: Sequence[str]) -> None:
        self._count("RemoveStreamGroupLocations")
        self._model.remove_stream_group_locations(group_id, list(locations))
