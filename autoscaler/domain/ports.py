"""What the core needs from GameLift Streams, and nothing more.

Two adapters implement these: ``autoscaler.aws`` (aiobotocore over HTTP, for AWS and the
emulator) and ``autoscaler.twin.inprocess`` (the service model in the same process, for
backtests). Errors are the ``autoscaler.domain.errors.ServiceError`` tree; AWS dicts never
leave an adapter.

Dry-run is enforced by construction: a dry-run controller is given only a ``StreamGroupReader``
and there is no method on it that could change anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from autoscaler.domain.models import CapacitySetting, GroupState, GroupSummary, SessionSummary


class StreamGroupReader(Protocol):
    async def list_stream_groups(self) -> list[GroupSummary]:
        """Every stream group of the account in this region (all pages)."""
        ...

    async def get_stream_group(self, group_id: str) -> GroupState:
        """Capacity state of one group (raises NotFoundError when it is gone)."""
        ...

    async def list_tags(self, arn: str) -> dict[str, str]:
        """Tags of a resource (for tag selectors)."""
        ...

    async def list_stream_sessions(
        self, group_id: str, status: str | None = None
    ) -> list[SessionSummary]:
        """All sessions of a group (all pages), optionally only those in ``status``.

        Raises on any failed page: a partial listing is never returned as if it were whole.
        """
        ...


class StreamGroupWriter(Protocol):
    async def update_stream_group(
        self, group_id: str, settings: Mapping[str, CapacitySetting]
    ) -> GroupState:
        """One UpdateStreamGroup carrying every given location (the full triple, or the legacy
        pair, per location)."""
        ...

    async def add_stream_group_locations(
        self, group_id: str, settings: Mapping[str, CapacitySetting]
    ) -> GroupState: ...

    async def remove_stream_group_locations(
        self, group_id: str, locations: Sequence[str]
    ) -> None: ...
