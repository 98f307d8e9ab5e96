"""The HTTP emulator of Amazon GameLift Streams, on the shared service model.

Neither moto nor LocalStack implements ``gameliftstreams``, yet the controller, the demo and
the contract tests need something the real aiobotocore client and the real AWS CLI can talk
to through ``endpoint_url``. This module is that server: aiohttp in front, the rest-json
protocol compiled from botocore's service model (``twin/protocol.py``) in the middle, and the
deterministic ``ServiceModel`` (``twin/model.py``) behind. It adds what a test of a
controller needs and AWS does not offer: a settable clock, fault injection (throttling like
AWS's quotas, 5xx, latency, forced ERROR statuses) and admin endpoints under ``/_emulator/``
for the billing meter and call counts.

Embed it with ``async with Emulator(clock=ManualClock()) as emulator: ...`` (``emulator.url``),
or run it as a process with ``autoscaler emulator`` (``serve_forever``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import signal
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import attrgetter
from types import TracebackType
from typing import Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from autoscaler.domain.clock import Clock, ManualClock, ScaledClock, WallClock
from autoscaler.domain.errors import ConfigError, ConflictError, ServiceError, ValidationError
from autoscaler.domain.policy import DEFAULT_PRICES_PER_SLOT_HOUR, FALLBACK_PRICE_PER_SLOT_HOUR
from autoscaler.twin.model import (
    Application,
    LocationConfigInput,
    LocationView,
    ModelParams,
    ServiceModel,
    SessionView,
    StreamGroupView,
)
from autoscaler.twin.protocol import (
    Operation,
    Response,
    ServiceSpec,
    WireBody,
    decode_cursor_token,
    encode_cursor_token,
    paginate,
    region_from_authorization,
)

log = logging.getLogger(__name__)

ADMIN_PREFIX = "/_emulator"
UNKNOWN_OPERATION = "UnknownOperation"
ALL_OPERATIONS = "*"
IDEMPOTENCY_MEMORY = 10_000  # ClientTokens remembered (oldest forgotten first)

# AWS's default per-account, per-region quotas (requests per second); ``--aws-rate-limits``.
AWS_RATE_LIMITS: Mapping[str, float] = {
    "ListStreamSessions": 20.0,
    "GetStreamSession": 20.0,
    "StartStreamSession": 20.0,
    "GetStreamGroup": 10.0,
    "ListStreamGroups": 10.0,
    "UpdateStreamGroup": 5.0,
    "AddStreamGroupLocations": 5.0,
    "RemoveStreamGroupLocations": 5.0,
    "CreateStreamGroup": 1.0,
}

ClockKind = Literal["wall", "scaled", "manual"]


# --- fault injection ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FaultSettings:
    """What goes wrong on purpose. Maps are keyed by operation name or ``"*"`` (every one).

    Rate limits are token buckets on the emulator's clock (simulated seconds), so a
    controller running on the same scaled clock meets AWS's quotas in its own time.
    """

    throttle_probability: Mapping[str, float] = field(default_factory=dict)  # 0..1
    error_probability: Mapping[str, float] = field(default_factory=dict)  # 0..1, HTTP 500
    # 0..1: the call is carried out, then answered HTTP 500 as if the reply were lost on the
    # way back (a dropped connection after the service acted): the SDK retries a call that
    # already landed, which a non-idempotent one (AddStreamGroupLocations) then refuses.
    lost_reply_probability: Mapping[str, float] = field(default_factory=dict)
    latency_s: Mapping[str, float] = field(default_factory=dict)  # added wall seconds
    rate_limits: Mapping[str, float] = field(default_factory=dict)  # requests per second
    aws_rate_limits: bool = False  # AWS's quotas for operations not in ``rate_limits``

    def lookup(self, table: Mapping[str, float], operation: str) -> float:
        value = table.get(operation)
        if value is None:
            value = table.get(ALL_OPERATIONS, 0.0)
        return value

    def rate_limit(self, operation: str) -> float | None:
        value = self.rate_limits.get(operation) or self.rate_limits.get(ALL_OPERATIONS)
        if value is None and self.aws_rate_limits:
            value = AWS_RATE_LIMITS.get(operation)
        return value

    def to_json(self) -> dict[str, Any]:
        return {
            "throttle_probability": dict(self.throttle_probability),
            "error_probability": dict(self.error_probability),
            "lost_reply_probability": dict(self.lost_reply_probability),
            "latency_s": dict(self.latency_s),
            "rate_limits": dict(self.rate_limits),
            "aws_rate_limits": self.aws_rate_limits,
            "effective_rate_limits": (
                {**AWS_RATE_LIMITS, **self.rate_limits}
                if self.aws_rate_limits
                else dict(self.rate_limits)
            ),
        }


_Probability = float | dict[str, float]


class _ForceStatusBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    group: str = Field(min_length=1)
    location: str | None = None
    status: str = Field(min_length=1)
    reason: str | None = None


class _FaultsBody(BaseModel):
    """``PUT /_emulator/faults``: every field given replaces that setting; ``force`` acts."""

    model_config = ConfigDict(extra="forbid")

    throttle_probability: _Probability | None = None
    error_probability: _Probability | None = None
    lost_reply_probability: _Probability | None = None
    latency_s: float | dict[str, float] | None = None
    rate_limits: dict[str, float] | None = None
    aws_rate_limits: bool | None = None
    force: list[_ForceStatusBody] = Field(default_factory=list)


def _per_operation(
    name: str,
    value: float | Mapping[str, float],
    operations: Collection[str],
    *,
    high: float | None,
    positive: bool = False,
) -> dict[str, float]:
    table = {ALL_OPERATIONS: float(value)} if isinstance(value, int | float) else dict(value)
    problems: list[str] = []
    for operation, number in table.items():
        if operation != ALL_OPERATIONS and operation not in operations:
            problems.append(f"{name}: unknown operation {operation!r}")
        if (
            not math.isfinite(number)
            or number < 0
            or (positive and number == 0)
            or (high is not None and number > high)
        ):
            bound = f"in (0, {high}]" if positive else f"in [0, {high if high else 'inf'}]"
            problems.append(f"{name}[{operation}]: {number} is not {bound}")
    if problems:
        raise ValidationError("; ".join(problems))
    return table


def parse_faults(
    data: Any, operations: Collection[str], base: FaultSettings | None = None
) -> tuple[FaultSettings, list[_ForceStatusBody]]:
    """Validate a faults JSON document over ``base``; ``ValidationError`` names the field."""
    try:
        body = _FaultsBody.model_validate(data)
    except PydanticValidationError as error:
        problems = [
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
        ]
        raise ValidationError("; ".join(problems)) from None
    current = base or FaultSettings()
    return (
        FaultSettings(
            throttle_probability=current.throttle_probability
            if body.throttle_probability is None
            else _per_operation(
                "throttle_probability", body.throttle_probability, operations, high=1.0
            ),
            error_probability=current.error_probability
            if body.error_probability is None
            else _per_operation("error_probability", body.error_probability, operations, high=1.0),
            lost_reply_probability=current.lost_reply_probability
            if body.lost_reply_probability is None
            else _per_operation(
                "lost_reply_probability", body.lost_reply_probability, operations, high=1.0
            ),
            latency_s=current.latency_s
            if body.latency_s is None
            else _per_operation("latency_s", body.latency_s, operations, high=None),
            rate_limits=current.rate_limits
            if body.rate_limits is None
            else _per_operation(
                "rate_limits", body.rate_limits, operations, high=None, positive=True
            ),
            aws_rate_limits=current.aws_rate_limits
            if body.aws_rate_limits is None
            else body.aws_rate_limits,
        ),
        body.force,
    )


@dataclass(slots=True)
class _Bucket:
    """A token bucket: ``rate`` tokens per second, burst ``max(1, rate)``."""

    rate: float
    tokens: float
    last: float

    def take(self, now: float) -> bool:
        elapsed = max(0.0, now - self.last)
        self.last = max(self.last, now)
        self.tokens = min(max(1.0, self.rate), self.tokens + elapsed * self.rate)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


Verdict = Literal["ok", "throttled", "failed"]


class FaultInjector:
    """Decides, per call, whether to throttle or fail it. Seeded: runs repeat exactly."""

    def __init__(self, settings: FaultSettings, *, clock: Clock, seed: int = 0) -> None:
        self.settings = settings
        self._clock = clock
        self._rng = random.Random(seed)  # noqa: S311  (simulation, not security)
        self._buckets: dict[str, _Bucket] = {}

    def update(self, settings: FaultSettings) -> None:
        self.settings = settings
        self._buckets.clear()  # new limits start with full buckets

    def latency(self, operation: str) -> float:
        return self.settings.lookup(self.settings.latency_s, operation)

    def check(self, operation: str) -> Verdict:
        settings = self.settings
        rate = settings.rate_limit(operation)
        if rate is not None:
            now = self._clock.now()
            bucket = self._buckets.get(operation)
            if bucket is None or bucket.rate != rate:
                bucket = _Bucket(rate=rate, tokens=max(1.0, rate), last=now)
                self._buckets[operation] = bucket
            if not bucket.take(now):
                return "throttled"
        probability = settings.lookup(settings.throttle_probability, operation)
        if probability > 0 and self._rng.random() < probability:
            return "throttled"
        probability = settings.lookup(settings.error_probability, operation)
        if probability > 0 and self._rng.random() < probability:
            return "failed"
        return "ok"

    def reply_lost(self, operation: str) -> bool:
        """Whether the reply to a call that was carried out is lost (answered 500)."""
        probability = self.settings.lookup(self.settings.lost_reply_probability, operation)
        return probability > 0 and self._rng.random() < probability


# --- call counters -------------------------------------------------------------------------------
@dataclass(slots=True)
class OperationCalls:
    accepted: int = 0  # passed fault injection and reached the service model
    throttled: int = 0  # rejected with ThrottlingException (rate limit or probability)
    injected_errors: int = 0  # rejected with an injected InternalServerException
    lost_replies: int = 0  # carried out, then answered with an injected 500 (reply lost)
    errors: int = 0  # accepted, but answered with an error (validation, not found, …)

    @property
    def rejected(self) -> int:
        return self.throttled + self.injected_errors

    def to_json(self) -> dict[str, int]:
        return {
            "total": self.accepted + self.rejected,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "throttled": self.throttled,
            "injected_errors": self.injected_errors,
            "lost_replies": self.lost_replies,
            "errors": self.errors,
        }


class CallCounter:
    """API calls per operation name, throttled ones included."""

    def __init__(self) -> None:
        self.by_operation: dict[str, OperationCalls] = {}

    def __getitem__(self, operation: str) -> OperationCalls:
        calls = self.by_operation.get(operation)
        if calls is None:
            calls = self.by_operation[operation] = OperationCalls()
        return calls

    def reset(self) -> None:
        self.by_operation.clear()

    def to_json(self) -> dict[str, Any]:
        total = OperationCalls()
        for calls in self.by_operation.values():
            total.accepted += calls.accepted
            total.throttled += calls.throttled
            total.injected_errors += calls.injected_errors
            total.lost_replies += calls.lost_replies
            total.errors += calls.errors
        return {
            "operations": {
                name: calls.to_json() for name, calls in sorted(self.by_operation.items())
            },
            "total": total.to_json(),
        }


# --- model views -> output members --------------------------------------------------------------
def _location_state(location: LocationView) -> dict[str, Any]:
    return {
        "LocationName": location.name,
        "Status": location.status,
        "AlwaysOnCapacity": location.always_on,
        "TargetIdleCapacity": location.target_idle,
        "MaximumCapacity": location.maximum,
        "OnDemandCapacity": location.on_demand,
        "RequestedCapacity": location.requested,
        "AllocatedCapacity": location.allocated,
        "IdleCapacity": location.idle,
    }


def _session_summary(session: SessionView) -> dict[str, Any]:
    return {
        "Arn": session.arn,
        "UserId": session.user_id,
        "Status": session.status,
        "StatusReason": session.status_reason,
        "Protocol": session.protocol,
        "LastUpdatedAt": session.last_updated_at,
        "CreatedAt": session.created_at,
        "ApplicationArn": session.application_arn,
        "Location": session.location,
    }


# StreamSessionSummary member -> SessionView attribute (what ``_session_summary`` fills in)
_SUMMARY_ATTRIBUTES: Mapping[str, str] = {
    "Arn": "arn",
    "UserId": "user_id",
    "Status": "status",
    "StatusReason": "status_reason",
    "Protocol": "protocol",
    "LastUpdatedAt": "last_updated_at",
    "CreatedAt": "created_at",
    "ApplicationArn": "application_arn",
    "Location": "location",
}


def _session_output(session: SessionView) -> dict[str, Any]:
    out = _session_summary(session)
    out["Description"] = session.description or None
    out["StreamGroupId"] = session.group_id
    out["ConnectionTimeoutSeconds"] = session.connection_timeout_s
    out["SessionLengthSeconds"] = session.session_length_s
    return out


def _application_output(app: Application) -> dict[str, Any]:
    return {
        "Arn": app.arn,
        "Id": app.app_id,
        "Description": app.description or None,
        "RuntimeEnvironment": dict(app.runtime),
        "ExecutablePath": app.executable_path,
        "ApplicationSourceUri": app.source_uri,
        "Status": app.status,
        "CreatedAt": app.created_at,
        "LastUpdatedAt": app.last_updated_at,
    }


def _location_inputs(items: list[dict[str, Any]] | None) -> list[LocationConfigInput] | None:
    if items is None:
        return None
    return [
        LocationConfigInput(
            name=item["LocationName"],
            always_on=item.get("AlwaysOnCapacity"),
            target_idle=item.get("TargetIdleCapacity"),
            maximum=item.get("MaximumCapacity"),
            on_demand=item.get("OnDemandCapacity"),
        )
        for item in items
    ]


# (created at, id): the page key of each listing; attrgetter keeps the per-page scan in C
_group_key: Callable[[StreamGroupView], tuple[float, str]] = attrgetter("created_at", "group_id")
_application_key: Callable[[Application], tuple[float, str]] = attrgetter("created_at", "app_id")


Handler = Callable[[str, dict[str, Any]], dict[str, Any] | None]
_Page = tuple[list[SessionView], int | None]
# (status, after, limit) -> one page of sessions and the cursor of the next
_SessionListing = Callable[[str | None, int | None, int], _Page]
SESSION_PAGE_DEFAULT = 25  # MaxResults when a ListStreamSessions call omits it


class _Api:
    """One function per implemented operation: input members in, output members out."""

    def __init__(self, model: ServiceModel, spec: ServiceSpec) -> None:
        self.model = model
        items = spec.service.operation_model("ListStreamSessions").output_shape.members["Items"]
        # SessionView -> wire StreamSessionSummary in one pass (the listing's hot path)
        self._summary = spec.object_serializer(items.member.name, _SUMMARY_ATTRIBUTES)
        self.stream_classes: dict[str, str] = {}  # group id -> class, kept for billing
        self.handlers: dict[str, Handler] = {
            "CreateApplication": self.create_application,
            "GetApplication": self.get_application,
            "ListApplications": self.list_applications,
            "CreateStreamGroup": self.create_stream_group,
            "GetStreamGroup": self.get_stream_group,
            "ListStreamGroups": self.list_stream_groups,
            "UpdateStreamGroup": self.update_stream_group,
            "DeleteStreamGroup": self.delete_stream_group,
            "AddStreamGroupLocations": self.add_stream_group_locations,
            "RemoveStreamGroupLocations": self.remove_stream_group_locations,
            "AssociateApplications": self.associate_applications,
            "StartStreamSession": self.start_stream_session,
            "GetStreamSession": self.get_stream_session,
            "ListStreamSessions": self.list_stream_sessions,
            "ListStreamSessionsByAccount": self.list_stream_sessions_by_account,
            "TerminateStreamSession": self.terminate_stream_session,
            "TagResource": self.tag_resource,
            "UntagResource": self.untag_resource,
            "ListTagsForResource": self.list_tags_for_resource,
        }

    def _group(self, view: StreamGroupView, *, locations: bool = True) -> dict[str, Any]:
        self.stream_classes[view.group_id] = view.stream_class
        out: dict[str, Any] = {
            "Arn": view.arn,
            "Id": view.group_id,
            "Description": view.description or None,
            "StreamClass": view.stream_class,
            "Status": view.status,
            "StatusReason": view.status_reason,
            "CreatedAt": view.created_at,
            "LastUpdatedAt": view.last_updated_at,
            "ExpiresAt": view.expires_at,
        }
        if view.default_application_id:
            default: dict[str, Any] = {"Id": view.default_application_id}
            with contextlib.suppress(ServiceError):  # deleted since: the id alone stays true
                default["Arn"] = self.model.get_application(view.default_application_id).arn
            out["DefaultApplication"] = default
        if locations:
            out["LocationStates"] = [_location_state(loc) for loc in view.locations]
            out["AssociatedApplications"] = list(view.associated_application_arns)
        return out

    # --- applications ----------------------------------------------------------------------
    def create_application(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        app = self.model.create_application(
            region=region,
            description=p["Description"],
            runtime=dict(p["RuntimeEnvironment"]),
            executable_path=p["ExecutablePath"],
            source_uri=p["ApplicationSourceUri"],
            tags=p.get("Tags"),
        )
        return _application_output(app)

    def get_application(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        app = self.model.get_application(p["Identifier"])
        out = _application_output(app)
        out["AssociatedStreamGroups"] = [
            group.arn
            for group in self.model.list_stream_groups()
            if app.arn in group.associated_application_arns
        ]
        return out

    def list_applications(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        page, token = paginate(
            self.model.list_applications(),
            _application_key,
            scope="ListApplications",
            token=p.get("NextToken"),
            max_results=p.get("MaxResults"),
        )
        return {"Items": [_application_output(app) for app in page], "NextToken": token}

    # --- stream groups ---------------------------------------------------------------------
    def create_stream_group(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        view = self.model.create_stream_group(
            region=region,
            description=p["Description"],
            stream_class=p["StreamClass"],
            default_application_id=p.get("DefaultApplicationIdentifier"),
            locations=_location_inputs(p.get("LocationConfigurations")),
            tags=p.get("Tags"),
        )
        return self._group(view)

    def get_stream_group(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        return self._group(self.model.get_stream_group(p["Identifier"]))

    def list_stream_groups(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        page, token = paginate(
            self.model.list_stream_groups(),
            _group_key,
            scope="ListStreamGroups",
            token=p.get("NextToken"),
            max_results=p.get("MaxResults"),
        )
        return {"Items": [self._group(g, locations=False) for g in page], "NextToken": token}

    def update_stream_group(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        view = self.model.update_stream_group(
            p["Identifier"],
            locations=_location_inputs(p.get("LocationConfigurations")),
            description=p.get("Description"),
            default_application_id=p.get("DefaultApplicationIdentifier"),
        )
        return self._group(view)

    def delete_stream_group(self, region: str, p: dict[str, Any]) -> None:
        self.model.delete_stream_group(p["Identifier"])

    def add_stream_group_locations(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        inputs = _location_inputs(p["LocationConfigurations"]) or []
        view = self.model.add_stream_group_locations(p["Identifier"], inputs)
        added = {item.name for item in inputs}
        return {
            "Identifier": view.arn,
            "Locations": [_location_state(loc) for loc in view.locations if loc.name in added],
        }

    def remove_stream_group_locations(self, region: str, p: dict[str, Any]) -> None:
        self.model.remove_stream_group_locations(p["Identifier"], list(p["Locations"]))

    def associate_applications(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        arns = self.model.associate_applications(p["Identifier"], list(p["ApplicationIdentifiers"]))
        group = self.model.get_stream_group(p["Identifier"])
        return {"Arn": group.arn, "ApplicationArns": arns}

    # --- sessions --------------------------------------------------------------------------
    def start_stream_session(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        session = self.model.start_stream_session(
            p["Identifier"],
            application_identifier=p["ApplicationIdentifier"],
            protocol=p["Protocol"],
            signal_request=p["SignalRequest"],
            locations=p.get("Locations"),
            user_id=p.get("UserId"),
            description=p.get("Description") or "",
            connection_timeout_s=p.get("ConnectionTimeoutSeconds") or 120,
            session_length_s=p.get("SessionLengthSeconds") or 43200,
        )
        out = _session_output(session)
        out["SignalRequest"] = p["SignalRequest"]
        return out

    def get_stream_session(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        session = self.model.get_stream_session(p["Identifier"], p["StreamSessionIdentifier"])
        return _session_output(session)

    def _session_page(
        self, listing: _SessionListing, scope: str, p: dict[str, Any]
    ) -> dict[str, Any]:
        """One page through the model's paged listing: only the page's views are built."""
        status = p.get("Status")
        scope = f"{scope}|{status}|{p.get('ExportFilesStatus')}"
        token = p.get("NextToken")
        after = None if token is None else decode_cursor_token(token, scope)
        if p.get("ExportFilesStatus") is not None:
            return {"Items": []}  # the emulator exports no files: no session has that status
        max_results = p.get("MaxResults")
        limit = SESSION_PAGE_DEFAULT if max_results is None else max_results
        views, cursor = listing(status, after, limit)
        summary = self._summary
        return WireBody(
            Items=[summary(s) for s in views],
            NextToken=None if cursor is None else encode_cursor_token(scope, cursor),
        )

    def list_stream_sessions(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        identifier: str = p["Identifier"]

        def listing(status: str | None, after: int | None, limit: int) -> _Page:
            return self.model.list_stream_sessions_page(
                identifier, status, after=after, limit=limit
            )

        return self._session_page(listing, f"ListStreamSessions|{identifier}", p)

    def list_stream_sessions_by_account(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        def listing(status: str | None, after: int | None, limit: int) -> _Page:
            return self.model.list_stream_sessions_by_account_page(status, after=after, limit=limit)

        return self._session_page(listing, "ListStreamSessionsByAccount", p)

    def terminate_stream_session(self, region: str, p: dict[str, Any]) -> None:
        self.model.terminate_stream_session(p["Identifier"], p["StreamSessionIdentifier"])

    # --- tags ------------------------------------------------------------------------------
    def tag_resource(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        self.model.tag_resource(p["ResourceArn"], dict(p["Tags"]))
        return {}

    def untag_resource(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        self.model.untag_resource(p["ResourceArn"], list(p["TagKeys"]))
        return {}

    def list_tags_for_resource(self, region: str, p: dict[str, Any]) -> dict[str, Any]:
        return {"Tags": self.model.list_tags(p["ResourceArn"])}


# --- clock control ------------------------------------------------------------------------------
class _ClockBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance: float | None = Field(default=None, ge=0)
    now: float | None = None
    scale: float | None = Field(default=None, gt=0)


def clock_kind(clock: Clock) -> str:
    if isinstance(clock, ManualClock):
        return "manual"
    if isinstance(clock, ScaledClock):
        return "scaled"
    if isinstance(clock, WallClock):
        return "wall"
    return type(clock).__name__


def make_clock(kind: ClockKind | None = None, time_scale: float = 1.0) -> Clock:
    """``wall`` at scale 1, ``scaled`` otherwise, unless ``kind`` says (``manual``: 2026-01-01)."""
    if kind is None:
        kind = "wall" if time_scale == 1.0 else "scaled"
    if kind == "manual":
        return ManualClock()
    if kind == "scaled":
        return ScaledClock(scale=time_scale)
    if time_scale != 1.0:
        raise ConfigError("--clock", ["a wall clock runs at --time-scale 1 only"])
    return WallClock()


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, tz=UTC).isoformat().replace("+00:00", "Z")


# --- the emulator -----------------------------------------------------------------------------
class Emulator:
    """The emulator as an embeddable object: ``await start()`` → base URL, ``await stop()``."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        time_scale: float = 1.0,
        seed: int = 0,
        params: ModelParams | None = None,
        model: ServiceModel | None = None,
        faults: FaultSettings | None = None,
        prices: Mapping[str, float] | None = None,
        spec: ServiceSpec | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else make_clock(None, time_scale)
        self.model = (
            model if model is not None else ServiceModel(clock=self.clock, seed=seed, params=params)
        )
        self.spec = spec if spec is not None else ServiceSpec.load()
        self.faults = FaultInjector(faults or FaultSettings(), clock=self.clock, seed=seed)
        self.calls = CallCounter()
        self.prices: dict[str, float] = {**DEFAULT_PRICES_PER_SLOT_HOUR, **(prices or {})}
        self._api = _Api(self.model, self.spec)
        self._request_seq = 0
        self._seed = seed
        self._idempotent: dict[tuple[str, str], tuple[dict[str, Any], Response]] = {}
        self._runner: web.AppRunner | None = None
        self.url: str | None = None
        for op in self.spec.operations.values():
            if op.request_uri.startswith(ADMIN_PREFIX):
                raise ValueError(f"{op.name} collides with the admin prefix {ADMIN_PREFIX}")
        self.app = self._build_app()

    @property
    def implemented_operations(self) -> frozenset[str]:
        return frozenset(self._api.handlers)

    # --- lifecycle -------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except BaseException:  # a taken port: release what setup() made
            await runner.cleanup()
            raise
        self._runner = runner
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}"
        return self.url

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Emulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- runtime controls (also behind the admin endpoints) ----------------------------------
    def set_faults(self, data: Mapping[str, Any]) -> FaultSettings:
        """Merge a faults document (same form as ``PUT /_emulator/faults``) and apply it."""
        settings, force = parse_faults(dict(data), self.spec.operations, self.faults.settings)
        for item in force:
            if item.location is None:
                self.model.force_group_status(item.group, item.status, item.reason)
            else:
                self.model.force_location_status(item.group, item.location, item.status)
        self.faults.update(settings)
        return settings

    def clock_json(self) -> dict[str, Any]:
        now = self.clock.now()
        out: dict[str, Any] = {"kind": clock_kind(self.clock), "now": now, "iso": _iso(now)}
        if isinstance(self.clock, ScaledClock):
            out["scale"] = self.clock.scale
        return out

    def set_clock(self, data: Mapping[str, Any]) -> dict[str, Any]:
        try:
            body = _ClockBody.model_validate(dict(data))
        except PydanticValidationError as error:
            raise ValidationError(str(error)) from None
        clock = self.clock
        if body.advance is not None or body.now is not None:
            if not isinstance(clock, ManualClock):
                raise ValidationError(f"a {clock_kind(clock)} clock cannot be moved by hand")
            if body.now is not None:
                clock.set(body.now)
            if body.advance is not None:
                clock.advance(body.advance)
        if body.scale is not None:
            if not isinstance(clock, ScaledClock):
                raise ValidationError(f"a {clock_kind(clock)} clock has no scale")
            clock.set_scale(body.scale)
        self.model.advance()
        return self.clock_json()

    def usage_json(self) -> dict[str, Any]:
        """The billing meter: slot-seconds, slot-hours, cost and session outcomes."""
        usage = self.model.usage()
        classes = dict(self._api.stream_classes)
        classes.update({g.group_id: g.stream_class for g in self.model.list_stream_groups()})
        totals = _UsageTotals()
        groups: dict[str, Any] = {}
        for group_id, locations in sorted(usage.items()):
            stream_class = classes.get(group_id)
            price = self.prices.get(stream_class or "", FALLBACK_PRICE_PER_SLOT_HOUR)
            group_totals = _UsageTotals()
            out_locations: dict[str, Any] = {}
            for name, meter in sorted(locations.items()):
                row = _UsageTotals(
                    allocated_slot_s=meter.allocated_slot_s,
                    in_use_slot_s=meter.in_use_slot_s,
                    kept_empty_slot_s=meter.kept_empty_slot_s,
                    held_empty_slot_s=meter.held_empty_slot_s,
                    cost=meter.allocated_slot_s / 3600.0 * price,
                    instant=meter.instant,
                    cold=meter.cold,
                    failed=meter.failed,
                )
                out_locations[name] = row.to_json()
                group_totals.add(row)
            totals.add(group_totals)
            groups[group_id] = {
                "stream_class": stream_class,
                "price_per_slot_hour": price,
                "locations": out_locations,
                "total": group_totals.to_json(),
            }
        return {
            "now": self.clock.now(),
            "prices_per_slot_hour": dict(self.prices),
            "groups": groups,
            "total": totals.to_json(),
        }

    # --- HTTP -----------------------------------------------------------------------------
    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        admin = ADMIN_PREFIX
        app.router.add_get(f"{admin}/usage", self._admin_usage)
        app.router.add_get(f"{admin}/calls", self._admin_calls)
        app.router.add_post(f"{admin}/calls/reset", self._admin_calls_reset)
        app.router.add_get(f"{admin}/faults", self._admin_faults)
        app.router.add_put(f"{admin}/faults", self._admin_faults)
        app.router.add_get(f"{admin}/clock", self._admin_clock)
        app.router.add_put(f"{admin}/clock", self._admin_clock)
        app.router.add_route("*", "/{tail:.*}", self._handle_api)
        return app

    def _request_id(self) -> str:
        self._request_seq += 1
        return f"{self._request_seq:08x}-0000-4000-8000-{self._seed & 0xFFFFFFFFFFFF:012x}"

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        request_id = self._request_id()
        url = request.rel_url
        query = url.query
        matched = self.spec.match(request.method, url.raw_path, tuple(query.keys()))
        if matched is None:
            self.calls[UNKNOWN_OPERATION].accepted += 1
            self.calls[UNKNOWN_OPERATION].errors += 1
            message = f"no GameLift Streams operation is {request.method} {url.raw_path}"
            return _send(self.spec.error("UnknownOperationException", message, request_id, 404))
        op, labels = matched
        calls = self.calls[op.name]
        delay = self.faults.latency(op.name)
        if delay > 0:
            await asyncio.sleep(delay)
        verdict = self.faults.check(op.name)
        if verdict == "throttled":
            calls.throttled += 1
            return _send(self.spec.error("ThrottlingException", "Rate exceeded", request_id))
        if verdict == "failed":
            calls.injected_errors += 1
            message = "We encountered an internal error. Please try again. (injected)"
            return _send(self.spec.error("InternalServerException", message, request_id))
        calls.accepted += 1
        body = await request.read() if op.has_body else b""
        try:
            response = self._call(
                op=op,
                labels=labels,
                query=query,
                headers=request.headers,
                body=body,
                request_id=request_id,
            )
        except ServiceError as error:
            calls.errors += 1
            status = self.spec.error_status.get(error.code, error.http_status)
            response = self.spec.error(error.code, error.message, request_id, status)
        except Exception as error:
            log.exception("emulator bug while serving %s", op.name)
            calls.errors += 1
            message = f"the emulator failed: {type(error).__name__}: {error}"
            response = self.spec.error("InternalServerException", message, request_id, 500)
        else:
            if self.faults.reply_lost(op.name):
                calls.lost_replies += 1
                message = "We encountered an internal error. Please try again. (reply lost)"
                response = self.spec.error("InternalServerException", message, request_id)
        return _send(response)

    def _call(
        self,
        *,
        op: Operation,
        labels: Mapping[str, str],
        query: Any,
        headers: Mapping[str, str],
        body: bytes,
        request_id: str,
    ) -> Response:
        handler = self._api.handlers.get(op.name)
        if handler is None:
            raise ValidationError(f"operation {op.name} is not implemented by the emulator")
        params = self.spec.parse(
            op, labels, {key: query.getall(key) for key in query}, headers, body
        )
        token = params.get(op.idempotency_member) if op.idempotency_member else None
        if isinstance(token, str):
            key = (op.name, token)
            previous = self._idempotent.get(key)
            if previous is not None:
                if previous[0] != params:
                    raise ConflictError(
                        f"ClientToken {token} was already used with different parameters"
                    )
                return previous[1]
        region = region_from_authorization(headers.get("Authorization"))
        response = self.spec.response(op, handler(region, params), request_id)
        if isinstance(token, str):
            if len(self._idempotent) >= IDEMPOTENCY_MEMORY:
                del self._idempotent[next(iter(self._idempotent))]  # forget the oldest
            self._idempotent[(op.name, token)] = (params, response)
        return response

    async def _admin_usage(self, request: web.Request) -> web.StreamResponse:
        return _admin(self.usage_json)

    async def _admin_calls(self, request: web.Request) -> web.StreamResponse:
        return _admin(self.calls.to_json)

    async def _admin_calls_reset(self, request: web.Request) -> web.StreamResponse:
        self.calls.reset()
        return _admin(self.calls.to_json)

    async def _admin_faults(self, request: web.Request) -> web.StreamResponse:
        if request.method == "PUT":
            data = await _json_object(request)
            return _admin(lambda: self.set_faults(_require_object(data)).to_json())
        return _admin(self.faults.settings.to_json)

    async def _admin_clock(self, request: web.Request) -> web.StreamResponse:
        if request.method == "PUT":
            data = await _json_object(request)
            return _admin(lambda: self.set_clock(_require_object(data)))
        return _admin(self.clock_json)


@dataclass(slots=True)
class _UsageTotals:
    allocated_slot_s: float = 0.0
    in_use_slot_s: float = 0.0
    kept_empty_slot_s: float = 0.0
    held_empty_slot_s: float = 0.0
    cost: float = 0.0
    instant: int = 0
    cold: int = 0
    failed: int = 0

    def add(self, other: _UsageTotals) -> None:
        self.allocated_slot_s += other.allocated_slot_s
        self.in_use_slot_s += other.in_use_slot_s
        self.kept_empty_slot_s += other.kept_empty_slot_s
        self.held_empty_slot_s += other.held_empty_slot_s
        self.cost += other.cost
        self.instant += other.instant
        self.cold += other.cold
        self.failed += other.failed

    def to_json(self) -> dict[str, Any]:
        return {
            "allocated_slot_seconds": self.allocated_slot_s,
            "in_use_slot_seconds": self.in_use_slot_s,
            "allocated_slot_hours": self.allocated_slot_s / 3600.0,
            "in_use_slot_hours": self.in_use_slot_s / 3600.0,
            # Of the idle slot-hours, those on empty hosts: kept by the targets, or surplus
            # held until released; the rest are free slots on partly used hosts.
            "kept_empty_slot_hours": self.kept_empty_slot_s / 3600.0,
            "held_empty_slot_hours": self.held_empty_slot_s / 3600.0,
            "cost_usd": self.cost,
            "sessions": {"instant": self.instant, "cold": self.cold, "failed": self.failed},
        }


def _send(response: Response) -> web.Response:
    return web.Response(body=response.body, status=response.status, headers=response.headers)


async def _json_object(request: web.Request) -> dict[str, Any] | None:
    try:
        data = await request.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _require_object(data: dict[str, Any] | None) -> dict[str, Any]:
    if data is None:
        raise ValidationError("the request body must be a JSON object")
    return data


def _admin(produce: Callable[[], Any]) -> web.Response:
    try:
        return web.json_response(produce())
    except ServiceError as error:
        return web.json_response({"message": error.message, "code": error.code}, status=400)


# --- process entry point ------------------------------------------------------------------------
def serve_forever(
    host: str = "127.0.0.1",
    port: int = 0,
    time_scale: float = 1.0,
    seed: int = 0,
    *,
    clock: ClockKind | None = None,
    faults: Mapping[str, Any] | None = None,
    prices: Mapping[str, float] | None = None,
) -> int:
    """Run the emulator until SIGINT/SIGTERM; print its URL once it accepts requests."""
    return asyncio.run(
        _serve(
            host=host,
            port=port,
            clock=make_clock(clock, time_scale),
            seed=seed,
            faults=dict(faults or {}),
            prices=prices,
        )
    )


async def _serve(
    *,
    host: str,
    port: int,
    clock: Clock,
    seed: int,
    faults: dict[str, Any],
    prices: Mapping[str, float] | None,
) -> int:
    emulator = Emulator(clock=clock, seed=seed, prices=prices)
    try:
        emulator.set_faults(faults)
    except ValidationError as error:
        raise ConfigError("emulator faults", [error.message]) from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        try:
            url = await emulator.start(host, port)
        except OSError as error:  # the port is taken, the address is not this machine's
            raise ConfigError(
                "--host/--port", [f"cannot listen on {host}:{port}: {error.strerror or error}"]
            ) from None
        print(f"emulator listening on {url}", flush=True)  # noqa: T201  (the CLI's output)
        await stop.wait()
    finally:
        await emulator.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    return 0
