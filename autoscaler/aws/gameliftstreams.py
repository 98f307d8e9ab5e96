"""GameLift Streams over aiobotocore: the HTTP adapter of the ``StreamGroupReader`` and
``StreamGroupWriter`` ports (for AWS, and for the local emulator through ``endpoint_url``).

AWS dicts stop here: every response becomes domain types, every failure a
``autoscaler.domain.errors.ServiceError``. Dry-run is enforced by construction: the reader
holds only the client's read operations (bound one by one), never the client, so no path from a
reader leads to a write; ``open_gameliftstreams(read_only=True)`` builds no writer at all.

Every HTTP request (each page, each retry attempt of botocore's retry handler) first takes a
token from the per-operation ``RateLimiter`` and is counted in ``calls``, through one async
``before-sign`` hook on the client: it runs once per attempt (retries included) and before
the SigV4 signature is made, so a long wait in the limiter cannot expire a signature.

Capacity model (decided here): a location is LEGACY
iff its LocationState carries ``OnDemandCapacity`` and no ``MaximumCapacity``; a group is
LEGACY iff any of its locations is. Writes follow each setting's own model: the full
AlwaysOn/TargetIdle/Maximum triple, or the AlwaysOn/OnDemand pair, never a mix.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from autoscaler.domain.classes import stream_class_info
from autoscaler.domain.errors import (
    SERVICE_ERRORS_BY_CODE,
    AccessDeniedError,
    ConflictError,
    FencedError,
    NotFoundError,
    ServiceError,
    ServiceUnavailableError,
    ThrottledError,
    ValidationError,
    service_error_from_code,
)
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupState,
    GroupSummary,
    LocationState,
    SessionSummary,
)
from autoscaler.limiter import RateLimiter

logger = logging.getLogger(__name__)

SERVICE = "gameliftstreams"
PAGE_SIZE = 100
_STATUS_FALLBACK: dict[int, type[ServiceError]] = {
    400: ValidationError,
    403: AccessDeniedError,
    404: NotFoundError,
    429: ThrottledError,
}

AwsDict = Mapping[str, Any]


# --- errors -------------------------------------------------------------------------------


def to_service_error(op: str, exc: BaseException) -> ServiceError:
    """The domain error for anything the SDK or the network raised during ``op``."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        message = f"{op}: {err.get('Message', '') or code}"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        fallback = _STATUS_FALLBACK.get(status) if isinstance(status, int) else None
        if fallback is not None and code not in SERVICE_ERRORS_BY_CODE:
            return fallback(message)
        return service_error_from_code(code, message)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDeniedError(f"{op}: no usable AWS credentials ({type(exc).__name__})")
    if isinstance(exc, ParamValidationError):
        return ValidationError(f"{op}: {exc}")
    if isinstance(exc, BotoCoreError | aiohttp.ClientError | asyncio.TimeoutError | OSError):
        return ServiceUnavailableError(f"{op}: {type(exc).__name__}: {exc}")
    return ServiceUnavailableError(f"{op}: unexpected {type(exc).__name__}: {exc}")


# --- AWS dicts -> domain ------------------------------------------------------------------


def _ts(value: object) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


def _region_of(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[0] == "arn" and parts[3] else None


# Status given to a location whose configured capacity could not be read from the response.
UNREADABLE_CAPACITY = "UNREADABLE_CAPACITY"


class AwsConverter:
    """Turns GameLift Streams response dicts into domain types, tolerating gaps.

    Unknown enum values pass through as strings; a missing field gets a safe default and one
    warning per (shape, field) for the converter's lifetime; an unknown stream class gets
    tenancy 1 and one warning per class.
    """

    def __init__(self) -> None:
        self._warned: set[tuple[str, str]] = set()

    def warn_once(self, shape: str, what: str, message: str) -> None:
        if (shape, what) not in self._warned:
            self._warned.add((shape, what))
            logger.warning("%s: %s", shape, message)

    def _get(self, d: AwsDict, shape: str, key: str, default: Any) -> Any:
        value = d.get(key)
        if value is None:
            self.warn_once(shape, key, f"field {key} missing; using {default!r}")
            return default
        return value

    def _int(self, d: AwsDict, key: str) -> int | None:
        value = d.get(key)
        return int(value) if isinstance(value, int | float) else None

    def setting(self, d: AwsDict) -> CapacitySetting:
        always_on = self._int(d, "AlwaysOnCapacity")
        on_demand = self._int(d, "OnDemandCapacity")
        maximum = self._int(d, "MaximumCapacity")
        target_idle = self._int(d, "TargetIdleCapacity")
        if always_on is None:
            self.warn_once(
                "LocationState",
                "AlwaysOnCapacity",
                f"AlwaysOnCapacity missing: location held as {UNREADABLE_CAPACITY}",
            )
            always_on = 0
        if on_demand is not None and maximum is None:
            return CapacitySetting(always_on=always_on, on_demand=on_demand)
        if maximum is None:
            self.warn_once(
                "LocationState", "MaximumCapacity", "no MaximumCapacity; using AlwaysOnCapacity"
            )
        return CapacitySetting(
            always_on=always_on,
            target_idle=target_idle or 0,
            maximum=always_on if maximum is None else maximum,
        )

    def location(self, d: AwsDict) -> LocationState:
        status = str(self._get(d, "LocationState", "Status", "UNKNOWN"))
        if self._int(d, "AlwaysOnCapacity") is None:
            # Without the configured floor the controller cannot tell a decrease from an
            # increase: the location is held (only ACTIVE locations are planned).
            status = UNREADABLE_CAPACITY
        return LocationState(
            name=str(self._get(d, "LocationState", "LocationName", "")),
            status=status,
            setting=self.setting(d),
            requested=self._int(d, "RequestedCapacity") or 0,
            allocated=self._int(d, "AllocatedCapacity") or 0,
            idle=self._int(d, "IdleCapacity") or 0,
        )

    def group(self, d: AwsDict) -> GroupState:
        arn = str(self._get(d, "StreamGroup", "Arn", ""))
        group_id = str(d.get("Id") or arn.rsplit("/", 1)[-1])
        stream_class = str(self._get(d, "StreamGroup", "StreamClass", "unknown"))
        info = stream_class_info(stream_class)
        if not info.known:
            self.warn_once(
                "StreamClass", stream_class, f"unknown stream class {stream_class}: tenancy 1"
            )
        locations = tuple(self.location(x) for x in d.get("LocationStates") or ())
        legacy = any(loc.setting.model is CapacityModel.LEGACY for loc in locations)
        primary = _region_of(arn)
        if primary is None:
            primary = locations[0].name if locations else ""
            self.warn_once(
                "StreamGroup", "Arn", f"no region in ARN {arn!r}; primary location {primary!r}"
            )
        return GroupState(
            group_id=group_id,
            arn=arn,
            status=str(self._get(d, "StreamGroup", "Status", "UNKNOWN")),
            stream_class=stream_class,
            tenancy=info.tenancy,
            capacity_model=CapacityModel.LEGACY if legacy else CapacityModel.CURRENT,
            locations=locations,
            primary_location=primary,
            description=str(d.get("Description") or ""),
            status_reason=d.get("StatusReason"),
            created_at=_ts(d.get("CreatedAt")),
            last_updated_at=_ts(d.get("LastUpdatedAt")),
            expires_at=_ts(d.get("ExpiresAt")),
        )

    def group_summary(self, d: AwsDict) -> GroupSummary:
        arn = str(self._get(d, "StreamGroupSummary", "Arn", ""))
        return GroupSummary(
            group_id=str(d.get("Id") or arn.rsplit("/", 1)[-1]),
            arn=arn,
            status=str(self._get(d, "StreamGroupSummary", "Status", "UNKNOWN")),
            stream_class=str(self._get(d, "StreamGroupSummary", "StreamClass", "unknown")),
            description=str(d.get("Description") or ""),
        )

    def session(self, d: AwsDict) -> SessionSummary:
        created = _ts(d.get("CreatedAt"))
        updated = _ts(d.get("LastUpdatedAt"))
        if created is None:
            # Epoch 0 is outside every sampling window: never miscounted as an arrival.
            self.warn_once("StreamSessionSummary", "CreatedAt", "CreatedAt missing; epoch 0")
        if updated is None:
            self.warn_once(
                "StreamSessionSummary", "LastUpdatedAt", "LastUpdatedAt missing; CreatedAt"
            )
        location = d.get("Location")
        return SessionSummary(
            arn=str(self._get(d, "StreamSessionSummary", "Arn", "")),
            status=str(self._get(d, "StreamSessionSummary", "Status", "UNKNOWN")),
            location=str(location) if location else None,
            created_at=created or 0.0,
            last_updated_at=updated if updated is not None else (created or 0.0),
            status_reason=d.get("StatusReason"),
        )


def location_configuration(name: str, s: CapacitySetting) -> dict[str, Any]:
    """One LocationConfiguration: the full current triple, or the legacy pair."""
    if s.on_demand is not None:
        return {
            "LocationName": name,
            "AlwaysOnCapacity": s.always_on,
            "OnDemandCapacity": s.on_demand,
        }
    return {
        "LocationName": name,
        "AlwaysOnCapacity": s.always_on,
        "TargetIdleCapacity": s.target_idle,
        "MaximumCapacity": s.maximum,
    }


# --- the two port implementations ---------------------------------------------------------

Call = Callable[..., Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _ReadOps:
    """The client's read operations, and nothing else (dry-run by construction)."""

    get_stream_group: Call
    list_tags_for_resource: Call
    get_paginator: Callable[[str], Any]

    @staticmethod
    def of(client: Any) -> _ReadOps:
        def paginator(name: str) -> Any:
            if name not in ("list_stream_groups", "list_stream_sessions"):
                raise ValueError(f"{name} is not a read-only listing")
            return client.get_paginator(name)

        return _ReadOps(client.get_stream_group, client.list_tags_for_resource, paginator)


async def _guard(op: str, call: Awaitable[Any]) -> Any:
    try:
        return await call
    except Exception as exc:
        raise to_service_error(op, exc) from exc


class AwsGameLiftStreamsReader:
    """``StreamGroupReader`` over an aiobotocore ``gameliftstreams`` client. Reads only."""

    def __init__(
        self,
        client: Any,
        *,
        calls: Counter[str] | None = None,
        converter: AwsConverter | None = None,
    ) -> None:
        self._ops = _ReadOps.of(client)
        self._convert = converter or AwsConverter()
        self.calls: Counter[str] = calls if calls is not None else Counter()

    async def _pages(self, op: str, name: str, **params: Any) -> list[AwsDict]:
        """Every item of every page; any failed page raises (never a partial list)."""
        items: list[AwsDict] = []

        async def collect() -> None:
            pages = self._ops.get_paginator(name).paginate(
                **params, PaginationConfig={"PageSize": PAGE_SIZE}
            )
            async for page in pages:
                items.extend(page.get("Items") or ())

        await _guard(op, collect())
        return items

    async def list_stream_groups(self) -> list[GroupSummary]:
        items = await self._pages("ListStreamGroups", "list_stream_groups")
        return [self._convert.group_summary(x) for x in items]

    async def get_stream_group(self, group_id: str) -> GroupState:
        response = await _guard("GetStreamGroup", self._ops.get_stream_group(Identifier=group_id))
        return self._convert.group(response)

    async def list_tags(self, arn: str) -> dict[str, str]:
        response = await _guard(
            "ListTagsForResource", self._ops.list_tags_for_resource(ResourceArn=arn)
        )
        return {str(k): str(v) for k, v in (response.get("Tags") or {}).items()}

    async def list_stream_sessions(
        self, group_id: str, status: str | None = None
    ) -> list[SessionSummary]:
        params: dict[str, Any] = {"Identifier": group_id}
        if status is not None:
            params["Status"] = status
        items = await self._pages("ListStreamSessions", "list_stream_sessions", **params)
        # The service lists in no particular order, so a session can show up on two pages of
        # one walk (its status changed meanwhile): counted twice it would be two sessions in
        # use. One entry per session, the most recently updated.
        unique: dict[str, SessionSummary] = {}
        for item in items:
            session = self._convert.session(item)
            seen = unique.get(session.arn)
            if seen is None or session.last_updated_at >= seen.last_updated_at:
                unique[session.arn] = session
        return list(unique.values())


class AwsGameLiftStreamsWriter:
    """``StreamGroupWriter`` over the same client as a reader."""

    def __init__(
        self,
        client: Any,
        *,
        calls: Counter[str] | None = None,
        converter: AwsConverter | None = None,
    ) -> None:
        self._client = client
        self._convert = converter or AwsConverter()
        self.calls: Counter[str] = calls if calls is not None else Counter()

    async def update_stream_group(
        self, group_id: str, settings: Mapping[str, CapacitySetting]
    ) -> GroupState:
        configs = [location_configuration(n, s) for n, s in settings.items()]
        response = await _guard(
            "UpdateStreamGroup",
            self._client.update_stream_group(Identifier=group_id, LocationConfigurations=configs),
        )
        return self._convert.group(response)

    async def add_stream_group_locations(
        self, group_id: str, settings: Mapping[str, CapacitySetting]
    ) -> GroupState:
        """Adds the locations, then reads the group back (the Add response carries only the
        locations, the port returns the whole group: one extra GetStreamGroup, adds are rare)."""
        configs = [location_configuration(n, s) for n, s in settings.items()]
        landed = await self._judged_by_outcome(
            "AddStreamGroupLocations",
            self._client.add_stream_group_locations(
                Identifier=group_id, LocationConfigurations=configs
            ),
            group_id,
            lambda group: _locations_as_asked(group, settings),
            f"the group holds {', '.join(settings)} as asked",
        )
        return landed if landed is not None else await self._read_group(group_id)

    async def remove_stream_group_locations(self, group_id: str, locations: Sequence[str]) -> None:
        await self._judged_by_outcome(
            "RemoveStreamGroupLocations",
            self._client.remove_stream_group_locations(
                Identifier=group_id, Locations=list(locations)
            ),
            group_id,
            lambda group: not any(_still_there(group, name) for name in locations),
            f"{', '.join(locations)} is gone or being removed",
        )

    async def _judged_by_outcome(
        self,
        op: str,
        call: Awaitable[Any],
        group_id: str,
        landed: Callable[[GroupState], bool],
        outcome: str,
    ) -> GroupState | None:
        """Send a location write; None when it succeeded. Neither location call takes a client
        token: when the reply to one that landed is lost (a 5xx, a dropped connection), the
        SDK's retry is refused (the group is updating its locations, or they are already
        there), or the last attempt's reply is lost too. So a failure that may hide a landed
        call is judged by the group read back: the group when ``landed`` says the change is
        there (reported as landed, not as a failure the next tick reads as someone else's
        change); otherwise, or if the group cannot be read, the call's own error stands."""
        try:
            await _guard(op, call)
        except _MAY_HAVE_LANDED as failure:
            group = await self._group_if_readable(group_id)
            if group is None or not landed(group):
                raise
            logger.info(
                "%s %s failed (%s), yet %s: it landed (a lost reply, a retry refused)",
                op,
                group_id,
                failure,
                outcome,
            )
            return group
        return None

    async def _read_group(self, group_id: str) -> GroupState:
        response = await _guard(
            "GetStreamGroup", self._client.get_stream_group(Identifier=group_id)
        )
        return self._convert.group(response)

    async def _group_if_readable(self, group_id: str) -> GroupState | None:
        """The group, or None when it cannot be read (the write's own error then stands)."""
        try:
            return await self._read_group(group_id)
        except ServiceError as unreadable:
            logger.debug("GetStreamGroup %s after a failed write: %s", group_id, unreadable)
            return None


# A location write may have landed although it failed: refused on a retry of a call whose
# reply was lost (no client token), or the last attempt's reply lost or throttled away. Not
# FencedError: no attempt was sent once this replica lost the lease.
_MAY_HAVE_LANDED = (ValidationError, ConflictError, ServiceUnavailableError, ThrottledError)
# A location as an add leaves it: activating, then active (or failed into ERROR, which the
# lifecycle removes); REMOVING, an unreadable setting or a status unknown to us is not.
_ADDED_STATUSES = frozenset({"ACTIVATING", "ACTIVE", "ERROR"})
_REMOVING = "REMOVING"


def _locations_as_asked(group: GroupState, settings: Mapping[str, CapacitySetting]) -> bool:
    """Every location of ``settings`` is in ``group``, added, with exactly that setting."""
    for name, setting in settings.items():
        location = group.location(name)
        if (
            location is None
            or location.status not in _ADDED_STATUSES
            or location.setting != setting
        ):
            return False
    return True


def _still_there(group: GroupState, name: str) -> bool:
    location = group.location(name)
    return location is not None and location.status != _REMOVING


# --- wiring -------------------------------------------------------------------------------


# The operations that change the service: fenced by the lease on every attempt.
WRITE_OPERATIONS = frozenset(
    {"UpdateStreamGroup", "AddStreamGroupLocations", "RemoveStreamGroupLocations"}
)


def instrument(
    client: Any,
    limiter: RateLimiter | None,
    calls: Counter[str],
    fence: Callable[[], bool] | None = None,
) -> None:
    """Make every HTTP request of ``client`` take a limiter token and count in ``calls``.

    ``fence`` (the lease's check) is asked again right before every attempt of a write leaves,
    after any wait for a token: the actuator asks it once per operation, but the SDK's retries
    (a read timeout, a 5xx) and the limiter may send an attempt seconds later, when another
    replica may lead. A refused attempt raises ``FencedError`` and is not sent.
    """

    async def before_sign(event_name: str, **_: Any) -> None:
        op = event_name.rsplit(".", 1)[-1]
        if limiter is not None:
            await limiter.wait(op)
        if fence is not None and op in WRITE_OPERATIONS and not fence():
            raise FencedError(f"{op}: not sent: this replica's lease ended before the attempt left")
        calls[op] += 1

    client.meta.events.register(f"before-sign.{SERVICE}", before_sign)


@dataclass(frozen=True, slots=True)
class GameLiftStreams:
    """What ``open_gameliftstreams`` yields. ``writer`` is None when opened read-only."""

    reader: AwsGameLiftStreamsReader
    writer: AwsGameLiftStreamsWriter | None
    calls: Counter[str]  # HTTP requests sent per operation (retries included)


@asynccontextmanager
async def open_gameliftstreams(
    region: str,
    *,
    endpoint_url: str | None = None,
    profile: str | None = None,
    retry_mode: str = "standard",
    max_attempts: int = 3,
    limiter: RateLimiter | None = None,
    read_only: bool = True,
    connect_timeout_s: float = 5.0,
    read_timeout_s: float = 15.0,
    max_pool_connections: int = 20,
    fence: Callable[[], bool] | None = None,
) -> AsyncIterator[GameLiftStreams]:
    """An instrumented client for ``region`` (or ``endpoint_url``: the emulator).

    ``max_attempts`` is the total number of tries of one request (1 = no retry), like
    ``AWS_MAX_ATTEMPTS``; ``retry_mode`` is botocore's ("standard", "adaptive", "legacy").
    ``fence``: every attempt of a write is checked against it as it leaves (``instrument``).

    Credentials come from botocore's default chain (environment, ``profile``, container and
    instance roles, IRSA web identity); they are never read or logged here.
    """
    session = AioSession(profile=profile)
    config = AioConfig(
        # total_max_attempts counts the first try (botocore's "max_attempts" key does not)
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        max_pool_connections=max_pool_connections,
    )
    calls: Counter[str] = Counter()
    converter = AwsConverter()
    async with session.create_client(
        SERVICE, region_name=region, endpoint_url=endpoint_url, config=config
    ) as client:
        instrument(client, limiter, calls, fence)
        yield GameLiftStreams(
            reader=AwsGameLiftStreamsReader(client, calls=calls, converter=converter),
            writer=None
            if read_only
            else AwsGameLiftStreamsWriter(client, calls=calls, converter=converter),
            calls=calls,
        )
