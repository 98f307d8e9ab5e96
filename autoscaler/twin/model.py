"""The service model of GameLift Streams capacity: pure, deterministic, clock-injected.

CONTRACT STUB — the signatures and docstrings below are the contract between the model, the
HTTP emulator (``twin/emulator.py``) and the in-process adapter (``twin/inprocess.py``). The
implementation replaces the ``NotImplementedError`` bodies; it may add private helpers and
optional keyword arguments, but must not change what is here without updating every user.

Time: the model never reads a clock by itself except through the injected ``Clock``. Every
public method first calls ``self.advance()`` which processes every timed event (host ready,
placement timeout, host release, status transitions, session end) up to ``clock.now()`` in
time order. ``advance(until)`` may also be called directly (the backtest drives virtual time).

Errors: raise the ``autoscaler.domain.errors`` classes (ValidationError, NotFoundError,
ConflictError, QuotaExceededError, …) with AWS-like messages; the emulator maps them to HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.domain.clock import Clock


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


@dataclass(slots=True)
class LocationConfigInput:
    """One LocationConfiguration as sent by a caller (None = field omitted)."""

    name: str
    always_on: int | None = None
    target_idle: int | None = None
    maximum: int | None = None
    on_demand: int | None = None


class ServiceModel:
    def __init__(
        self, *, clock: Clock, seed: int = 0, params: ModelParams | None = None
    ) -> None:
        raise NotImplementedError

    # --- time -------------------------------------------------------------------------
    def advance(self, until: float | None = None) -> None:
        """Process every event due at or before ``until`` (default ``clock.now()``)."""
        raise NotImplementedError

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
        raise NotImplementedError

    def get_application(self, identifier: str) -> Application:
        raise NotImplementedError

    def list_applications(self) -> list[Application]:
        raise NotImplementedError

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
        raise NotImplementedError

    def get_stream_group(self, identifier: str) -> StreamGroupView:
        """``identifier`` is an id or an ARN."""
        raise NotImplementedError

    def list_stream_groups(self) -> list[StreamGroupView]:
        """Stable order (creation order) so NextToken pagination is well defined."""
        raise NotImplementedError

    def update_stream_group(
        self,
        identifier: str,
        *,
        locations: list[LocationConfigInput] | None = None,
        description: str | None = None,
        default_application_id: str | None = None,
    ) -> StreamGroupView:
        raise NotImplementedError

    def delete_stream_group(self, identifier: str) -> None:
        raise NotImplementedError

    def add_stream_group_locations(
        self, identifier: str, locations: list[LocationConfigInput]
    ) -> StreamGroupView:
        raise NotImplementedError

    def remove_stream_group_locations(self, identifier: str, locations: list[str]) -> None:
        raise NotImplementedError

    def associate_applications(self, identifier: str, application_ids: list[str]) -> list[str]:
        """Returns the associated application ARNs."""
        raise NotImplementedError

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
        raise NotImplementedError

    def get_stream_session(self, group_identifier: str, session_identifier: str) -> SessionView:
        raise NotImplementedError

    def list_stream_sessions(
        self, group_identifier: str, status: str | None = None
    ) -> list[SessionView]:
        """Sessions of a group still listed (ended ones for ``ended_session_retention_s``)."""
        raise NotImplementedError

    def list_stream_sessions_by_account(self, status: str | None = None) -> list[SessionView]:
        raise NotImplementedError

    def terminate_stream_session(self, group_identifier: str, session_identifier: str) -> None:
        raise NotImplementedError

    # --- tags -------------------------------------------------------------------------
    def tag_resource(self, arn: str, tags: dict[str, str]) -> None:
        raise NotImplementedError

    def untag_resource(self, arn: str, keys: list[str]) -> None:
        raise NotImplementedError

    def list_tags(self, arn: str) -> dict[str, str]:
        raise NotImplementedError

    # --- fault injection and meters ---------------------------------------------------
    def force_group_status(self, identifier: str, status: str, reason: str | None = None) -> None:
        """Inject ERROR / ACTIVE_WITH_ERRORS / EXPIRED etc. (tests, fault injection)."""
        raise NotImplementedError

    def force_location_status(self, identifier: str, location: str, status: str) -> None:
        raise NotImplementedError

    def usage(self) -> dict[str, dict[str, LocationUsage]]:
        """Billing meter up to now: group id → location → usage."""
        raise NotImplementedError
