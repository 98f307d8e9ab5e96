"""The daemon's settings: one validated, frozen object built at start-up.

Sources, highest precedence first: keyword overrides (the CLI's flags) > environment variables
(``AUTOSCALER_*``, plus the AWS SDK's own ``AWS_*`` names for AWS settings) > a ``.env`` file >
the YAML settings file (``--config`` or ``AUTOSCALER_CONFIG``) > the defaults below. This is the
usual twelve-factor order: a file holds the site's baseline, the environment adjusts a
deployment, a flag wins for one run.

Credentials are deliberately absent: the AWS default credential chain (environment, profile,
SSO, instance or task role) finds them, and a settings file or ``repr`` can then never leak
them. The one secret field (``http_token``) is a ``SecretStr``.

``load_settings`` turns every pydantic or YAML problem into one ``ConfigError`` that names the
source of each bad value (file and line, environment variable, or flag) and the field.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, cast
from urllib.parse import urlsplit

import pydantic
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from autoscaler.domain.errors import ConfigError
from autoscaler.policy.yamlsource import YamlDocument, YamlError, read_yaml_file
from autoscaler.sampling import INSTANT_START_S

ENV_PREFIX = "AUTOSCALER_"
CONFIG_ENV = "AUTOSCALER_CONFIG"

# Requests per second per account and region (shared/docs/gameliftstreams.md). The controller
# shares them with the game backend; ``ApiBudget`` says which fraction it may use.
AWS_QUOTAS_PER_SECOND: Mapping[str, float] = MappingProxyType(
    {
        "ListStreamSessions": 20.0,
        "GetStreamGroup": 10.0,
        "ListStreamGroups": 10.0,
        "UpdateStreamGroup": 5.0,
        "AddStreamGroupLocations": 5.0,
        "RemoveStreamGroupLocations": 5.0,
    }
)

# Keys that look like credentials: refused in a settings file with a pointer to the right place.
_CREDENTIAL_KEYS = frozenset(
    {"aws_access_key_id", "aws_secret_access_key", "aws_session_token", "credentials"}
)

_REGION_RE = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")

Fraction = Annotated[float, Field(gt=0, le=1)]


class ApiBudget(BaseModel):
    """Share of each GameLift Streams API quota the controller may use (0 < x ≤ 1).

    Default 0.5 each: half stays for the game backend (StartStreamSession's callers, consoles,
    other tools), which matters more than a controller that can wait for its next tick.
    Environment: ``AUTOSCALER_API_BUDGET__GET_STREAM_GROUP=0.3``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    list_stream_sessions: Fraction = 0.5
    get_stream_group: Fraction = 0.5
    list_stream_groups: Fraction = 0.5
    update_stream_group: Fraction = 0.5
    add_stream_group_locations: Fraction = 0.5
    remove_stream_group_locations: Fraction = 0.5

    def rates(self) -> dict[str, float]:
        """Requests per second per operation, ready for ``autoscaler.limiter.RateLimiter``."""
        fractions = {
            "ListStreamSessions": self.list_stream_sessions,
            "GetStreamGroup": self.get_stream_group,
            "ListStreamGroups": self.list_stream_groups,
            "UpdateStreamGroup": self.update_stream_group,
            "AddStreamGroupLocations": self.add_stream_group_locations,
            "RemoveStreamGroupLocations": self.remove_stream_group_locations,
        }
        return {op: AWS_QUOTAS_PER_SECOND[op] * share for op, share in fractions.items()}


class Settings(BaseSettings):
    """Every knob of the daemon. Units are in the names (``_s`` = seconds)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        case_sensitive=False,
        extra="forbid",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        validate_default=True,
    )
    # The parsed YAML settings file of this class (set on the per-file subclass only).
    yaml_document: ClassVar[YamlDocument | None] = None

    # -- what to manage -------------------------------------------------------------------------
    config: Path | None = Field(
        default=None,
        description="The YAML settings file these settings were read from (None: none).",
    )
    policy_paths: Annotated[list[Path], NoDecode] = Field(
        default_factory=lambda: [Path("policies")],
        description=(
            "Policy files and directories of *.yaml/*.yml. Environment: separated by "
            f"'{os.pathsep}' (like PATH) or a JSON list. Default: ./policies."
        ),
    )

    # -- the tick -------------------------------------------------------------------------------
    interval_s: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Seconds between ticks. 60: CloudWatch and billing are per minute and new capacity "
            "takes minutes, so deciding more often buys nothing but API calls."
        ),
    )
    tick_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Seconds a tick may take before it is abandoned (its writes not sent). "
            "None: interval_s, so ticks never overlap."
        ),
    )
    plugin_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description=(
            "Wall seconds every policy plugin of a tick may take together. A plugin that is "
            "late holds its group's capacity for that tick (it never blocks the others)."
        ),
    )
    dry_run: bool = Field(
        default=False,
        description="Plan and report but apply nothing, whatever the policies say.",
    )
    instant_start_s: float = Field(
        default=INSTANT_START_S,
        gt=0,
        le=600,
        description=(
            "A session whose start (StartStreamSession → ACTIVE or CONNECTED) took longer "
            "than this waited for capacity: it is counted as a late start, the measured "
            "complement of the instant share (metrics, the slo policy's feedback). Set it "
            "above your application's own launch time; 10 s fits the emulator (7 s)."
        ),
    )
    once: bool = Field(default=False, description="Run one tick, print its report and exit.")

    # -- state ----------------------------------------------------------------------------------
    state_dir: Path = Field(
        default=Path(".autoscaler"),
        description="Directory for the history database and audit log (created if missing).",
    )
    database_path: Path | None = Field(
        default=None,
        description="SQLite history database. None: state_dir/history.sqlite3.",
    )
    history_retention_s: float = Field(
        default=35 * 86400.0,
        gt=0,
        description=(
            "Seconds of samples kept. 35 days: five weekly cycles, above the policies' "
            "default 14-day history window, with room for a month-over-month look."
        ),
    )
    audit_log: Path | None = Field(
        default=None,
        description="JSON-lines audit log of every decision. None: state_dir/audit.jsonl.",
    )

    # -- HTTP (metrics, health) -----------------------------------------------------------------
    http_host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Listen address of /metrics and /healthz. Loopback: expose it on purpose.",
    )
    http_port: int = Field(
        default=9464,
        ge=0,
        le=65535,
        description="Listen port; 0 picks a free one. 9464: the usual Prometheus exporter port.",
    )
    http_token: SecretStr | None = Field(
        default=None,
        description=(
            "Bearer token the daemon's write endpoints (pause/resume) require. None: they are "
            "disabled. Never printed."
        ),
    )

    # -- logs -----------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] | None = Field(
        default=None,
        description="None: console when stderr is a terminal, json otherwise.",
    )

    # -- AWS ------------------------------------------------------------------------------------
    max_concurrency: int = Field(
        default=8,
        ge=1,
        le=256,
        description=(
            "AWS reads in flight at once. 8: with per-operation budgets of 5-10 requests/s "
            "more parallelism only queues on the rate limiter."
        ),
    )
    api_budget: ApiBudget = Field(default_factory=ApiBudget)
    api_rate_limits: bool = Field(
        default=True,
        description=(
            "Budget every GameLift Streams call with the client-side limiter (api_budget). "
            "False only for an emulator on a scaled clock, where real-time quotas make no "
            "sense (the demo); never against AWS."
        ),
    )
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AUTOSCALER_AWS_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
        description="None: the SDK's own resolution (the profile's region).",
    )
    aws_profile: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AUTOSCALER_AWS_PROFILE", "AWS_PROFILE"),
        min_length=1,
        description="Named profile of ~/.aws/config. None: the default credential chain.",
    )
    aws_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices(
            "AUTOSCALER_AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_GAMELIFTSTREAMS", "AWS_ENDPOINT_URL"
        ),
        description="GameLift Streams endpoint (e.g. the local emulator). None: AWS's.",
    )
    aws_retry_mode: Literal["standard", "adaptive"] = Field(
        default="adaptive",
        validation_alias=AliasChoices("AUTOSCALER_AWS_RETRY_MODE", "AWS_RETRY_MODE"),
        description=(
            "botocore retry mode. adaptive: also slows down client-side after throttling, "
            "which is right when the quota is shared with the game backend."
        ),
    )
    aws_max_attempts: int = Field(
        default=3,
        ge=1,
        le=20,
        validation_alias=AliasChoices("AUTOSCALER_AWS_MAX_ATTEMPTS", "AWS_MAX_ATTEMPTS"),
        description=(
            "Attempts per AWS call, first included. 3: a failed read is retried on the next "
            "tick anyway; more attempts only make this tick late."
        ),
    )

    # -- high availability (autoscaler.ha) -------------------------------------------------
    lease_backend: Literal["none", "dynamodb"] = Field(
        default="none",
        description=(
            "none: this replica always leads (run one). dynamodb: active/standby by a lease "
            "in lease_table; only the holder writes, standbys sample and serve /readyz 503."
        ),
    )
    lease_table: str | None = Field(
        default=None,
        min_length=3,
        max_length=255,
        description="DynamoDB table of the lease (partition key 'name', string).",
    )
    lease_name: str = Field(
        default="autoscaler",
        min_length=1,
        description="The lease's key: replicas with the same name elect one leader.",
    )
    lease_duration_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds a lease lasts unless renewed: the longest a dead leader blocks takeover."
        ),
    )
    lease_renew_every_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between renewals: three tries before a 30 s lease runs out.",
    )
    lease_clock_skew_s: float = Field(
        default=1.0,
        ge=0,
        description=(
            "Allowance for wall-clock differences between replicas: the holder stops "
            "writing this long before its lease ends."
        ),
    )
    lease_holder: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        min_length=1,
        description="This replica's name in the lease. Default: hostname-pid (unique).",
    )
    lease_endpoint_url: str | None = Field(
        default=None,
        description="DynamoDB endpoint (e.g. a local stand-in). None: the SDK's resolution.",
    )
    cloudwatch_backfill: bool = Field(
        default=True,
        description=(
            "On start with an empty history store, import history from CloudWatch "
            "(ActiveCapacity - IdleCapacity per minute) so forecasts work from the first tick."
        ),
    )
    backfill_window_s: float | None = Field(
        default=None,
        gt=0,
        description="Seconds of history to import. None: the policies' longest history window.",
    )
    cloudwatch_endpoint_url: str | None = Field(
        default=None,
        description="CloudWatch endpoint (e.g. a local stand-in). None: the SDK's resolution.",
    )
    config_poll_s: float = Field(
        default=5.0,
        ge=0,
        description=(
            "Seconds between checks of the settings and policy files for changes (reloaded "
            "like on SIGHUP). 0: only SIGHUP reloads."
        ),
    )

    @field_validator("policy_paths", mode="before")
    @classmethod
    def _split_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part for part in text.split(os.pathsep) if part.strip()]
        return value

    @field_validator("policy_paths")
    @classmethod
    def _some_paths(cls, value: list[Path]) -> list[Path]:
        if not value:
            raise ValueError("give at least one policy file or directory")
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("aws_region")
    @classmethod
    def _region_name(cls, value: str | None) -> str | None:
        if value is not None and not _REGION_RE.fullmatch(value):
            raise ValueError("expected an AWS region name such as us-east-2")
        return value

    @field_validator("aws_endpoint_url", "lease_endpoint_url", "cloudwatch_endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("expected an http:// or https:// URL, e.g. http://127.0.0.1:8080")
        if parts.username or parts.password:
            raise ValueError("credentials do not belong in the endpoint URL")
        return value

    @pydantic.model_validator(mode="after")
    def _timeout_within_interval(self) -> Settings:
        if self.tick_timeout_s is not None and self.tick_timeout_s > self.interval_s:
            raise ValueError(
                f"tick_timeout_s ({self.tick_timeout_s}) must not exceed interval_s "
                f"({self.interval_s}): ticks never overlap"
            )
        return self

    @pydantic.model_validator(mode="after")
    def _lease_timing(self) -> Settings:
        if self.lease_backend == "dynamodb" and not self.lease_table:
            raise ValueError("lease_backend dynamodb needs lease_table (the DynamoDB table)")
        usable = self.lease_duration_s - self.lease_clock_skew_s
        if self.lease_renew_every_s >= usable:
            raise ValueError(
                f"lease_renew_every_s ({self.lease_renew_every_s}) must be below "
                f"lease_duration_s - lease_clock_skew_s ({usable}): the lease must be "
                "renewed before the holder has to stop writing"
            )
        return self

    # -- derived values ---------------------------------------------------------------------
    @property
    def effective_tick_timeout_s(self) -> float:
        return self.tick_timeout_s if self.tick_timeout_s is not None else self.interval_s

    @property
    def effective_database_path(self) -> Path:
        return self.database_path or self.state_dir / "history.sqlite3"

    @property
    def effective_audit_log(self) -> Path:
        return self.audit_log or self.state_dir / "audit.jsonl"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Secrets directories are not used: no field is read from one.
        return (init_settings, env_settings, dotenv_settings, _YamlSource(settings_cls))


class _YamlSource(PydanticBaseSettingsSource):
    """The YAML settings file, keyed the way the other sources key fields (the first alias
    for aliased fields) so the precedence merge sees one key per field."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the whole file at once

    def __call__(self) -> dict[str, Any]:
        doc = cast(type[Settings], self.settings_cls).yaml_document
        if doc is None or doc.data is None:
            return {}
        out: dict[str, Any] = {}
        for key, value in doc.data.items():
            out[_canonical_key(self.settings_cls, key)] = value
        return out


def _canonical_key(settings_cls: type[BaseSettings], key: str) -> str:
    info = settings_cls.model_fields.get(key)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        first = info.validation_alias.choices[0]
        return first if isinstance(first, str) else key
    return key


def _field_of(key: str | int) -> str:
    """A field name from an error location's first part (which may be an alias)."""
    if isinstance(key, int):
        return str(key)
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices) and key in alias.choices:
            return name
    return key


def _env_names(name: str) -> list[str]:
    info = Settings.model_fields.get(name)
    if info is not None and isinstance(info.validation_alias, AliasChoices):
        return [c for c in info.validation_alias.choices if isinstance(c, str)]
    return [ENV_PREFIX + name.upper()]


def load_settings(
    config_file: Path | None = None,
    *,
    env_file: Path | None = Path(".env"),
    **overrides: Any,
) -> Settings:
    """Build the settings. ``config_file`` None: ``AUTOSCALER_CONFIG`` (environment, then the
    ``.env`` file) names it, or there is none. ``overrides`` are field values from the command
    line (None values are dropped, so unset flags do not override anything).

    Raises ``ConfigError`` listing every problem, each naming where the bad value came from.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    dotenv = _read_dotenv(env_file)
    if config_file is None:
        named = os.environ.get(CONFIG_ENV) or dotenv.get(CONFIG_ENV)
        config_file = Path(named) if named else None

    doc: YamlDocument | None = None
    if config_file is not None:
        try:
            doc = read_yaml_file(config_file)
        except YamlError as error:
            raise ConfigError(str(config_file), error.problems) from None
        problems = _yaml_shape_problems(doc)
        if problems:
            raise ConfigError(str(config_file), problems)
        given.setdefault("config", config_file)

    cls: type[Settings] = Settings
    if doc is not None:
        # A subclass per file: pydantic-settings builds sources from the class, not the call.
        cls = cast(
            type[Settings],
            type("Settings", (Settings,), {"yaml_document": doc, "__module__": __name__}),
        )
    try:
        return cls(_env_file=env_file, **given)
    except SettingsError as error:  # a value that is not valid JSON for a list/mapping field
        raise ConfigError("settings", [str(error)]) from None
    except pydantic.ValidationError as error:
        source = str(config_file) if config_file is not None else "settings"
        problems = [
            _settings_problem(item, given=given, dotenv=dotenv, doc=doc, env_file=env_file)
            for item in error.errors(include_url=False)
        ]
        raise ConfigError(source, problems) from None


def _read_dotenv(env_file: Path | None) -> dict[str, str]:
    if env_file is None or not env_file.is_file():
        return {}
    from dotenv import dotenv_values  # noqa: PLC0415  (pydantic-settings' own dependency)

    return {k.upper(): v for k, v in dotenv_values(env_file).items() if v is not None}


def _yaml_shape_problems(doc: YamlDocument) -> list[str]:
    if doc.data is None:
        return []
    if not isinstance(doc.data, dict):
        return [f"{doc.source}: expected a mapping of setting names to values"]
    problems = []
    for key in doc.data:
        if str(key).lower() in _CREDENTIAL_KEYS:
            problems.append(
                f"{doc.where([key])}: {key}: credentials never go in the settings file; "
                "use the AWS credential chain (AWS_PROFILE, SSO, instance or task role)"
            )
        elif key == "config":
            problems.append(
                f"{doc.where([key])}: config: the settings file cannot name another one"
            )
    return problems


def _settings_problem(
    item: Mapping[str, Any],
    *,
    given: Mapping[str, Any],
    dotenv: Mapping[str, str],
    doc: YamlDocument | None,
    env_file: Path | None,
) -> str:
    loc = tuple(item["loc"])
    if not loc:  # a rule across fields (model validator): its message names them
        return f"settings: {item['msg'].removeprefix('Value error, ')}"
    field = _field_of(loc[0])
    path = ".".join(str(p) for p in (field, *loc[1:]) if p != "")
    origin = _origin(field, loc, given=given, dotenv=dotenv, doc=doc, env_file=env_file)
    if item["type"] == "extra_forbidden":
        valid = ", ".join(sorted(Settings.model_fields))
        if loc[1:]:
            valid = ", ".join(sorted(ApiBudget.model_fields))
        message = f"unknown setting; valid: {valid}"
    elif item["type"] == "missing":
        message = "required"
    else:
        shown = "'**********'" if field == "http_token" else repr(item.get("input"))
        message = f"{item['msg'].removeprefix('Value error, ')} (got {shown})"
    return f"{origin}: {path or '(settings)'}: {message}"


def _origin(
    field: str,
    loc: tuple[str | int, ...],
    *,
    given: Mapping[str, Any],
    dotenv: Mapping[str, str],
    doc: YamlDocument | None,
    env_file: Path | None,
) -> str:
    """Where the winning value of ``field`` came from, by the same precedence as the sources."""
    if not field:
        return "settings"
    if field in given:
        return "command line"
    names = _env_names(field)
    nested = [f"{n}__{'__'.join(str(p) for p in loc[1:])}".upper() for n in names if loc[1:]]
    for name in (*nested, *names):
        if name.upper() in {k.upper() for k in os.environ}:
            return f"environment variable {name}"
    for name in (*nested, *names):
        if name.upper() in dotenv:
            return f"{env_file} ({name})"
    if doc is not None and isinstance(doc.data, dict) and field in doc.data:
        return doc.where([field, *loc[1:]])
    return "default"
