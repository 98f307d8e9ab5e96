"""The policy file: a small versioned YAML envelope around a policy plugin's parameters.

This is the boundary where user-written YAML becomes the plain frozen ``Policy`` the core
uses (``autoscaler.domain.policy``). Validation runs in two steps so every error points at a
file, a field and a line:

1. the envelope (``apiVersion``, ``kind``, ``metadata``, ``spec``) with strict pydantic models
   (unknown keys rejected, no string-to-number coercion), then the rules pydantic cannot
   express on one field (min ≤ max after inheritance, known stream classes, location names…);
2. the plugin's own parameters under ``spec.policy.params``, by the plugin's pydantic model,
   reached through ``resolve_params`` so this module does not depend on the plugin registry.

Every problem of every file is collected before anything is raised (``ConfigError``), so a
user fixes a file in one pass. Field names follow what users of HPA, KEDA and Agones know;
``docs/configuration.md`` is the reference.
"""

from __future__ import annotations

import importlib
import re
import site
import sys
import sysconfig
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from autoscaler.domain.classes import STREAM_CLASSES
from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import CapacityModel, CapacitySetting, LocationBounds
from autoscaler.domain.policy import (
    Behavior,
    Budget,
    DirectionBehavior,
    DriftAction,
    Fallback,
    FallbackBehavior,
    GroupSelector,
    LifecycleWindow,
    LocationCandidate,
    LocationLifecycle,
    Mode,
    Policy,
    RuleType,
    ScalingRule,
    SelectPolicy,
    Slo,
)
from autoscaler.lifecycle import check_cron, check_time_zone
from autoscaler.policy.yamlsource import (
    PathKey,
    YamlDocument,
    YamlError,
    format_path,
    read_yaml_file,
)

API_VERSION = "autoscaler.gameliftstreams/v1"
KIND = "CapacityPolicy"
POLICY_FILE_SUFFIXES = (".yaml", ".yml")

_T = TypeVar("_T")

# (plugin name, raw params) -> the plugin's validated params instance. Raises KeyError for an
# unknown plugin (``KeyError(name, known_names)`` lets messages list the known ones) and
# pydantic.ValidationError for bad params.
ResolveParams = Callable[[str, Mapping[str, Any]], Any]

# AWS patterns (botocore's gameliftstreams model: LocationName, Id, Arn).
_LOCATION_RE = re.compile(r"[a-zA-Z0-9-]{1,20}")
_GROUP_ID_RE = re.compile(r"[a-zA-Z0-9-]{1,32}")
_GROUP_ARN_RE = re.compile(
    r"arn:aws:gameliftstreams:[^: ]*:[0-9]{12}:streamgroup/(?P<id>[a-zA-Z0-9-]{1,32})"
)
# Kubernetes DNS-label rules: the name ends up in metric labels and log lines.
_NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# YAML spelling of what a budget may cut -> the domain's names.
_CUT_NAMES = {"targetIdle": "target_idle", "maximum": "maximum", "alwaysOn": "always_on"}


# ---------------------------------------------------------------------------------------------
# The envelope, as strict pydantic models (YAML spelling is camelCase, via the aliases).
# ``None`` means "not given": the domain dataclass's default applies, so defaults live in one
# place (autoscaler.domain.policy).


class _Strict(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
    )


Slots = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, Field(ge=0)]
PositiveSeconds = Annotated[float, Field(gt=0)]


class BoundsModel(_Strict):
    min_capacity: Slots | None = None
    max_capacity: Slots | None = None


class StreamGroupsModel(_Strict):
    ids: list[str] = []
    arns: list[str] = []
    tag_selector: dict[str, str] = {}


class PluginRefModel(_Strict):
    plugin: Annotated[str, Field(min_length=1)]
    params: dict[str, Any] = {}


class RuleModel(_Strict):
    type: Literal["Slots", "Percent"]
    value: Annotated[float, Field(gt=0)]
    period_seconds: PositiveSeconds


class DirectionModel(_Strict):
    stabilization_window_seconds: Seconds | None = None
    select_policy: Literal["Max", "Min", "Disabled"] | None = None
    policies: list[RuleModel] | None = None


class BehaviorModel(_Strict):
    scale_up: DirectionModel | None = None
    scale_down: DirectionModel | None = None
    tolerance: Annotated[float, Field(ge=0, lt=1)] | None = None
    cooldown_seconds: Seconds | None = None


class SloModel(_Strict):
    instant: Annotated[float, Field(gt=0, lt=1)] | None = None
    failed: Annotated[float, Field(ge=0, lt=1)] | None = None


CutName = Literal["targetIdle", "maximum", "alwaysOn"]


class BudgetModel(_Strict):
    max_cost_per_hour: Annotated[float, Field(gt=0)] | None = None
    max_cost_per_month: Annotated[float, Field(gt=0)] | None = None
    cut_order: Annotated[list[CutName], Field(min_length=1)] | None = None


class FallbackModel(_Strict):
    failure_threshold: Annotated[int, Field(ge=1)] | None = None
    behavior: Literal["hold", "static"] | None = None
    always_on: Slots | None = None
    target_idle: Slots | None = None
    maximum: Slots | None = None


class DriftModel(_Strict):
    action: Literal["respect", "revert"] | None = None
    cooldown_seconds: Seconds | None = None


class LifecycleScheduleModel(_Strict):
    cron: Annotated[str, Field(min_length=1)]
    time_zone: Annotated[str, Field(min_length=1)] = "UTC"
    duration_seconds: PositiveSeconds


class ForecastAboveModel(_Strict):
    slots: Annotated[float, Field(gt=0)]
    quantile: Annotated[float, Field(gt=0, lt=1)] | None = None


class AddWhenModel(_Strict):
    schedules: list[LifecycleScheduleModel] = []
    forecast_above: ForecastAboveModel | None = None


class CandidateCapacityModel(_Strict):
    always_on: Slots = 0
    target_idle: Slots = 0
    maximum: Slots


class CandidateModel(_Strict):
    location: Annotated[str, Field(min_length=1)]
    capacity: CandidateCapacityModel
    add_when: AddWhenModel | None = None


class LocationLifecycleModel(_Strict):
    candidates: Annotated[list[CandidateModel], Field(min_length=1)]
    remove_after_idle_seconds: PositiveSeconds | None = None
    activation_seconds: Seconds | None = None


class SpecModel(_Strict):
    stream_groups: StreamGroupsModel
    capacity_model: Literal["auto", "current", "legacy"] = "auto"
    locations: dict[str, BoundsModel] = {}
    defaults: BoundsModel | None = None
    policy: PluginRefModel
    behavior: BehaviorModel | None = None
    slo: SloModel | None = None
    budget: BudgetModel | None = None
    fallback: FallbackModel | None = None
    prices: dict[str, Annotated[float, Field(gt=0)]] = {}
    mode: Literal["ForecastOnly", "ForecastAndScale"] | None = None
    dry_run: bool | None = None
    paused: bool | None = None
    stale_after_seconds: PositiveSeconds | None = None
    drift: DriftModel | None = None
    history_window_seconds: PositiveSeconds | None = None
    location_lifecycle: LocationLifecycleModel | None = None


class MetadataModel(_Strict):
    name: Annotated[str, Field(min_length=1)]


class PolicyFileModel(_Strict):
    api_version: Literal["autoscaler.gameliftstreams/v1"]
    kind: Literal["CapacityPolicy"]
    metadata: MetadataModel
    spec: SpecModel


# ---------------------------------------------------------------------------------------------
# The result.


@dataclass(frozen=True, slots=True)
class LoadedPolicy(Policy):
    """``Policy`` plus what the domain type has no field for yet.

    ``capacity_model``: None = auto (follow each group's current configuration); ``current``
    moves legacy groups to AlwaysOn + TargetIdle + Maximum; ``legacy`` keeps AlwaysOn +
    OnDemand.
    """

    capacity_model: CapacityModel | None = None


@dataclass(slots=True)
class PolicySetReport:
    """The outcome of loading a set of policy files, kept per file for ``autoscaler validate``.

    ``problems`` maps each file (or each path argument, for a missing path or an empty
    directory) to its problems, in load order; a file with no entry is valid.
    """

    files: list[str] = field(default_factory=list)
    policies: list[LoadedPolicy] = field(default_factory=list)
    problems: dict[str, list[str]] = field(default_factory=dict)

    def add(self, source: str, problems: Iterable[str]) -> None:
        items = list(problems)
        if items:
            self.problems.setdefault(source, []).extend(items)

    @property
    def all_problems(self) -> list[str]:
        return [p for items in self.problems.values() for p in items]

    def valid_policies(self) -> list[LoadedPolicy]:
        return [p for p in self.policies if p.source not in self.problems]


def default_resolve_params(name: str, raw: Mapping[str, Any]) -> Any:
    """Validate ``raw`` with the installed plugin ``name`` (the plugin registry, imported on
    first use so this module loads without it)."""
    registry = importlib.import_module("autoscaler.policy.plugin")
    validate = typing.cast(ResolveParams, registry.validate_params)
    return validate(name, raw)


def load_policy_file(
    path: Path | str, *, resolve_params: ResolveParams = default_resolve_params
) -> LoadedPolicy:
    """Load and validate one policy file; ``ConfigError`` lists every problem in it."""
    source = str(path)
    policy, _, problems = _load_one(Path(path), resolve_params)
    if problems or policy is None:
        raise ConfigError(source, problems)
    return policy


def load_policies(
    paths: Sequence[Path | str], *, resolve_params: ResolveParams = default_resolve_params
) -> list[LoadedPolicy]:
    """Load every policy file under ``paths`` (files, or directories of ``*.yaml``/``*.yml``,
    sorted by name) and check them against each other: policy names are unique and no stream
    group id or ARN is claimed by two policies. Raises ``ConfigError`` with every problem of
    every file."""
    report = check_policies(paths, resolve_params=resolve_params)
    if report.problems:
        raise ConfigError(", ".join(str(p) for p in paths), report.all_problems)
    return report.policies


def check_policies(
    paths: Sequence[Path | str], *, resolve_params: ResolveParams = default_resolve_params
) -> PolicySetReport:
    """Like ``load_policies`` but returns the per-file outcome instead of raising."""
    report = PolicySetReport()
    docs: dict[str, YamlDocument] = {}
    if not paths:
        report.add("(no paths)", ["no policy files or directories given"])
    for path in expand_policy_paths(paths, report):
        source = str(path)
        report.files.append(source)
        policy, doc, problems = _load_one(path, resolve_params)
        report.add(source, problems)
        if policy is not None and doc is not None:
            report.policies.append(policy)
            docs[source] = doc
    for source, problem in _cross_file_problems(report.policies, docs):
        report.add(source, [problem])
    return report


def expand_policy_paths(paths: Sequence[Path | str], report: PolicySetReport) -> list[Path]:
    """Files as given; directories become their ``*.yaml``/``*.yml`` files, sorted (not
    recursive, hidden files skipped); a file reached twice is read once. Missing paths and
    empty directories are problems."""
    files: list[Path] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix in POLICY_FILE_SUFFIXES and p.is_file() and not p.name.startswith(".")
            )
            if not found:
                report.add(str(path), [f"{path}: no *.yaml or *.yml policy files in directory"])
            candidates = found
        elif path.exists():
            candidates = [path]
        else:
            report.add(str(path), [f"{path}: no such file or directory"])
            continue
        for candidate in candidates:
            key = candidate.resolve()
            if key not in seen:
                seen.add(key)
                files.append(candidate)
    return files


# ---------------------------------------------------------------------------------------------
# One file.


def _load_one(
    path: Path, resolve_params: ResolveParams
) -> tuple[LoadedPolicy | None, YamlDocument | None, list[str]]:
    source = str(path)
    try:
        doc = read_yaml_file(path)
    except YamlError as error:
        return None, None, error.problems
    if not isinstance(doc.data, dict):
        kind = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        return (
            None,
            doc,
            [
                f"{source}: the file is {kind}; expected a mapping with apiVersion: "
                f"{API_VERSION}, kind: {KIND}, metadata and spec"
            ],
        )

    problems: list[str] = []
    envelope: PolicyFileModel | None = None
    try:
        envelope = PolicyFileModel.model_validate(doc.data)
    except pydantic.ValidationError as error:
        problems.extend(_pydantic_problems(doc, error, (), PolicyFileModel))
    if envelope is not None:
        problems.extend(_rule_problems(doc, envelope))

    # Step 2 runs even when the envelope failed elsewhere, so one pass shows every problem.
    params, params_problems = _resolve_plugin_params(doc, resolve_params)
    problems.extend(params_problems)
    if problems or envelope is None:
        return None, doc, problems
    return _to_policy(envelope, source, params), doc, []


def _resolve_plugin_params(
    doc: YamlDocument, resolve_params: ResolveParams
) -> tuple[Any, list[str]]:
    spec = doc.data.get("spec")
    ref = spec.get("policy") if isinstance(spec, dict) else None
    if not isinstance(ref, dict):
        return None, []
    name = ref.get("plugin")
    raw = ref.get("params", {})
    if not isinstance(name, str) or not name or not isinstance(raw, dict):
        return None, []  # the envelope step reports these
    base: PathKey = ("spec", "policy", "params")
    try:
        return resolve_params(name, raw), []
    except KeyError as error:
        path: PathKey = ("spec", "policy", "plugin")
        return None, [_problem(doc, path, _unknown_plugin_message(name, error))]
    except pydantic.ValidationError as error:
        return None, _pydantic_problems(doc, error, base, None)
    except ImportError:
        raise  # the plugin registry itself is missing: an installation problem, not the file's
    except Exception as error:  # a plugin's own bug must not hide the file's other problems
        message = f"plugin {name!r} rejected its params: {type(error).__name__}: {error}"
        return None, [_problem(doc, base, message)]


def _unknown_plugin_message(name: str, error: KeyError) -> str:
    """The registry's own message when it has one (``UnknownPluginError`` lists the known
    plugins, ``PluginLoadError`` says why loading failed); else built from ``KeyError(name,
    known)``."""
    if type(error) is not KeyError and str(error):
        return str(error)
    known = error.args[1] if len(error.args) > 1 else None
    if isinstance(known, list | tuple | set | frozenset) and known:
        return f"unknown policy plugin {name!r} (known: {', '.join(sorted(known))})"
    return f"unknown policy plugin {name!r}"


def _problem(doc: YamlDocument, path: Sequence[str | int], message: str) -> str:
    return f"{doc.where(path)}: {format_path(path)}: {message}"


def _pydantic_problems(
    doc: YamlDocument,
    error: pydantic.ValidationError,
    base: PathKey,
    model: type[BaseModel] | None,
) -> list[str]:
    problems = []
    for item in error.errors(include_url=False):
        path, is_key = _data_path(doc.data, base, item["loc"])
        problems.append(_problem(doc, path, _describe(item, path, is_key, base, model)))
    return problems


def _data_path(data: Any, base: PathKey, loc: Sequence[str | int]) -> tuple[PathKey, bool]:
    """pydantic's ``loc`` reduced to keys that exist in the document (drops union member
    tags like ``function-after[...]``); ``[key]`` marks an error in a mapping key itself."""
    node = data
    for part in base:
        node = node.get(part) if isinstance(node, dict) else None
    path: list[str | int] = list(base)
    is_key = False
    for part in loc:
        if part == "[key]":
            is_key = True
            break
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and isinstance(part, str):
            path.append(part)  # a missing or extra field: name it, then stop
            break
        # anything else is a pydantic schema tag, not a place in the file
    return tuple(path), is_key


def _describe(
    item: Mapping[str, Any],
    path: PathKey,
    is_key: bool,
    base: PathKey,
    model: type[BaseModel] | None,
) -> str:
    kind = item["type"]
    value = item.get("input")
    if is_key:
        return f"invalid key {value!r}: {item['msg']}"
    if kind == "extra_forbidden":
        valid = _field_names(model, path[len(base) : -1]) if model is not None else None
        hint = f"; valid fields here: {', '.join(valid)}" if valid else ""
        return f"unknown field {path[-1]!r}{hint}"
    if kind == "missing":
        return "required field is missing"
    return f"{item['msg']} (got {_shown(path, value)})"


# A key naming a secret (or where one is often pasted by mistake, such as bearerTokenEnv):
# what was given is never echoed back.
_SECRET_KEY = re.compile(r"token|secret|password|passwd|credential|apikey|api_key", re.IGNORECASE)
_URL_USERINFO = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]*@")


def _shown(path: Sequence[str | int], value: Any) -> str:
    """``value`` as an error message may show it: not at all under a secret's key, and a
    URL without the user and password it carries."""
    key = next((p for p in reversed(path) if isinstance(p, str)), "")
    if _SECRET_KEY.search(key):
        return "a value not shown here: it may be a secret"
    if isinstance(value, str) and _URL_USERINFO.match(value):
        value = _URL_USERINFO.sub(r"\1***@", value)
    return _short(value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field_names(model: type[BaseModel], path: Sequence[str | int]) -> list[str] | None:
    """The YAML names valid in the mapping at ``path`` of ``model`` (None: not a model)."""
    annotation: Any = model
    for part in path:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            by_alias = {f.alias or n: f for n, f in annotation.model_fields.items()}
            if not isinstance(part, str) or part not in by_alias:
                return None
            annotation = by_alias[part].annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [f.alias or n for n, f in annotation.model_fields.items()]
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated[...]`` and ``X | None`` down to ``X``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


# ---------------------------------------------------------------------------------------------
# Rules across fields (each names the field to fix).


def _rule_problems(doc: YamlDocument, model: PolicyFileModel) -> list[str]:
    out: list[str] = []

    def bad(path: PathKey, message: str) -> None:
        out.append(_problem(doc, path, message))

    name = model.metadata.name
    if not _NAME_RE.fullmatch(name):
        bad(
            ("metadata", "name"),
            f"invalid name {name!r}: use 1-63 lowercase letters, digits and '-', starting and "
            "ending with a letter or digit (it labels metrics and logs)",
        )

    spec = model.spec
    groups = spec.stream_groups
    if not (groups.ids or groups.arns or groups.tag_selector):
        bad(
            ("spec", "streamGroups"),
            "select at least one stream group: give ids, arns or tagSelector",
        )
    for index, group_id in enumerate(groups.ids):
        if not _GROUP_ID_RE.fullmatch(group_id):
            bad(
                ("spec", "streamGroups", "ids", index),
                f"invalid stream group id {group_id!r}: 1-32 letters, digits or '-' "
                "(e.g. sg-1AB2C3De4)",
            )
    for index, arn in enumerate(groups.arns):
        if not _GROUP_ARN_RE.fullmatch(arn):
            bad(
                ("spec", "streamGroups", "arns", index),
                f"invalid stream group ARN {arn!r}: expected "
                "arn:aws:gameliftstreams:REGION:ACCOUNT(12 digits):streamgroup/ID",
            )
    _check_unique(groups.ids, ("spec", "streamGroups", "ids"), bad)
    _check_unique(groups.arns, ("spec", "streamGroups", "arns"), bad)
    for key in groups.tag_selector:
        if not 1 <= len(key) <= 128:
            bad(("spec", "streamGroups", "tagSelector", key), "tag keys are 1-128 characters")

    defaults = spec.defaults or BoundsModel()
    base_bounds = LocationBounds()
    default_min = _pick(defaults.min_capacity, base_bounds.min_capacity)
    default_max = _pick(defaults.max_capacity, base_bounds.max_capacity)
    if default_min > default_max:
        bad(
            ("spec", "defaults", "minCapacity"),
            f"minCapacity {default_min} is greater than maxCapacity {default_max}; "
            "need minCapacity <= maxCapacity",
        )
    for location, bounds in spec.locations.items():
        path: PathKey = ("spec", "locations", location)
        if not _LOCATION_RE.fullmatch(location):
            bad(
                path,
                f"invalid location name {location!r}: AWS location names are 1-20 letters, "
                "digits or '-' (e.g. us-east-2)",
            )
        low = _pick(bounds.min_capacity, default_min)
        high = _pick(bounds.max_capacity, default_max)
        if low > high:
            low_from = "" if bounds.min_capacity is not None else " (from spec.defaults)"
            high_from = "" if bounds.max_capacity is not None else " (from spec.defaults)"
            field_name = "minCapacity" if bounds.min_capacity is not None else "maxCapacity"
            bad(
                (*path, field_name),
                f"minCapacity {low}{low_from} is greater than maxCapacity {high}{high_from}; "
                "need minCapacity <= maxCapacity",
            )

    for stream_class in spec.prices:
        if stream_class not in STREAM_CLASSES:
            bad(
                ("spec", "prices", stream_class),
                f"unknown stream class {stream_class!r}; known classes: "
                + ", ".join(sorted(STREAM_CLASSES)),
            )

    if spec.behavior is not None:
        for direction in ("scaleUp", "scaleDown"):
            d = spec.behavior.scale_up if direction == "scaleUp" else spec.behavior.scale_down
            if d is not None and d.policies == [] and d.select_policy != "Disabled":
                bad(
                    ("spec", "behavior", direction, "policies"),
                    "empty list: give at least one policy, or set selectPolicy: Disabled to "
                    "forbid changes in this direction",
                )

    if spec.budget is not None and spec.budget.cut_order is not None:
        _check_unique(spec.budget.cut_order, ("spec", "budget", "cutOrder"), bad)

    if spec.fallback is not None:
        _fallback_problems(spec.fallback, bad)
    if spec.location_lifecycle is not None:
        _lifecycle_problems(spec.location_lifecycle, bad)
    return out


def _lifecycle_problems(lc: LocationLifecycleModel, bad: Callable[[PathKey, str], None]) -> None:
    base: PathKey = ("spec", "locationLifecycle", "candidates")
    _check_unique([c.location for c in lc.candidates], base, bad)
    for i, cand in enumerate(lc.candidates):
        path: PathKey = (*base, i)
        if not _LOCATION_RE.fullmatch(cand.location):
            bad(
                (*path, "location"),
                f"invalid location name {cand.location!r}: AWS location names are 1-20 "
                "letters, digits or '-' (e.g. us-east-2)",
            )
        cap = cand.capacity
        for key, value in (("alwaysOn", cap.always_on), ("targetIdle", cap.target_idle)):
            if value > cap.maximum:
                bad(
                    (*path, "capacity", key),
                    f"{key} {value} is greater than maximum {cap.maximum}; need {key} <= maximum",
                )
        for j, sched in enumerate(cand.add_when.schedules if cand.add_when else []):
            where: PathKey = (*path, "addWhen", "schedules", j)
            checks: tuple[tuple[str, Callable[[str], str], str], ...] = (
                ("cron", check_cron, sched.cron),
                ("timeZone", check_time_zone, sched.time_zone),
            )
            for field_name, check, text in checks:
                try:
                    check(text)
                except ValueError as error:
                    bad((*where, field_name), str(error))


def _fallback_problems(fb: FallbackModel, bad: Callable[[PathKey, str], None]) -> None:
    given = {
        "alwaysOn": fb.always_on,
        "targetIdle": fb.target_idle,
        "maximum": fb.maximum,
    }
    if fb.behavior != "static":
        for key, value in given.items():
            if value is not None:
                bad(
                    ("spec", "fallback", key),
                    f"{key} applies only with behavior: static (behavior is "
                    f"{fb.behavior or 'hold'}: capacity is held as it is)",
                )
        return
    values = {k: v or 0 for k, v in given.items()}
    if not any(values.values()):
        bad(
            ("spec", "fallback", "behavior"),
            "behavior static needs alwaysOn, targetIdle or maximum above 0 "
            "(use behavior: hold to keep capacity as it is)",
        )
    for key in ("alwaysOn", "targetIdle"):
        if values[key] > values["maximum"]:
            bad(
                ("spec", "fallback", key),
                f"{key} {values[key]} is greater than maximum {values['maximum']}; "
                f"need {key} <= maximum",
            )


def _check_unique(
    values: Sequence[str], path: PathKey, bad: Callable[[PathKey, str], None]
) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            bad((*path, index), f"{value!r} is listed twice")
        seen.add(value)


def _pick(value: _T | None, default: _T) -> _T:
    return default if value is None else value


# ---------------------------------------------------------------------------------------------
# Across files.


def _cross_file_problems(
    policies: Sequence[LoadedPolicy], docs: Mapping[str, YamlDocument]
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    names: dict[str, LoadedPolicy] = {}
    claims: dict[str, tuple[LoadedPolicy, str]] = {}  # group id -> (policy, how it was named)
    for policy in policies:
        doc = docs[policy.source]
        first = names.get(policy.name)
        if first is not None:
            message = f"policy name {policy.name!r} is already used by {first.source}"
            out.append((policy.source, _problem(doc, ("metadata", "name"), message)))
        else:
            names[policy.name] = policy
        entries = [("ids", i, v, v) for i, v in enumerate(policy.selector.ids)]
        for i, arn in enumerate(policy.selector.arns):
            match = _GROUP_ARN_RE.fullmatch(arn)
            entries.append(("arns", i, arn, match.group("id") if match else arn))
        for list_name, index, shown, group_id in entries:
            claim = claims.get(group_id)
            if claim is not None and claim[0] is not policy:
                owner, how = claim
                message = (
                    f"stream group {shown!r} is already managed by policy {owner.name!r} "
                    f"({owner.source}, as {how!r}); a group belongs to one policy only"
                )
                path: PathKey = ("spec", "streamGroups", list_name, index)
                out.append((policy.source, _problem(doc, path, message)))
            elif claim is None:
                claims[group_id] = (policy, shown)
    return out


# ---------------------------------------------------------------------------------------------
# Envelope -> domain.


def _direction(model: DirectionModel | None, default: DirectionBehavior) -> DirectionBehavior:
    if model is None:
        return default
    rules = default.rules
    if model.policies is not None:
        rules = tuple(
            ScalingRule(RuleType(rule.type), rule.value, rule.period_seconds)
            for rule in model.policies
        )
    return DirectionBehavior(
        stabilization_window_s=_pick(
            model.stabilization_window_seconds, default.stabilization_window_s
        ),
        rules=rules,
        select_policy=SelectPolicy(model.select_policy)
        if model.select_policy is not None
        else default.select_policy,
    )


def _to_policy(model: PolicyFileModel, source: str, params: Any) -> LoadedPolicy:
    spec = model.spec
    base_bounds = LocationBounds()
    defaults = spec.defaults or BoundsModel()
    default_bounds = LocationBounds(
        min_capacity=_pick(defaults.min_capacity, base_bounds.min_capacity),
        max_capacity=_pick(defaults.max_capacity, base_bounds.max_capacity),
    )
    location_bounds = {
        name: LocationBounds(
            min_capacity=_pick(b.min_capacity, default_bounds.min_capacity),
            max_capacity=_pick(b.max_capacity, default_bounds.max_capacity),
        )
        for name, b in spec.locations.items()
    }

    behavior = Behavior()
    if spec.behavior is not None:
        b = spec.behavior
        behavior = Behavior(
            scale_up=_direction(b.scale_up, behavior.scale_up),
            scale_down=_direction(b.scale_down, behavior.scale_down),
            tolerance=_pick(b.tolerance, behavior.tolerance),
            cooldown_s=_pick(b.cooldown_seconds, behavior.cooldown_s),
        )

    slo = Slo()
    if spec.slo is not None:
        slo = Slo(
            instant=_pick(spec.slo.instant, slo.instant), failed=_pick(spec.slo.failed, slo.failed)
        )

    budget = Budget()
    if spec.budget is not None:
        budget = Budget(
            max_cost_per_hour=spec.budget.max_cost_per_hour,
            max_cost_per_month=spec.budget.max_cost_per_month,
            cut_order=tuple(_CUT_NAMES[c] for c in spec.budget.cut_order)
            if spec.budget.cut_order is not None
            else budget.cut_order,
        )

    fallback = Fallback()
    if spec.fallback is not None:
        fb = spec.fallback
        fallback = Fallback(
            failure_threshold=_pick(fb.failure_threshold, fallback.failure_threshold),
            behavior=FallbackBehavior(fb.behavior) if fb.behavior else fallback.behavior,
            always_on=_pick(fb.always_on, fallback.always_on),
            target_idle=_pick(fb.target_idle, fallback.target_idle),
            maximum=_pick(fb.maximum, fallback.maximum),
        )

    defaults_policy = _POLICY_DEFAULTS
    drift = spec.drift or DriftModel()
    lifecycle = _lifecycle(spec.location_lifecycle) if spec.location_lifecycle else None
    capacity_model = None if spec.capacity_model == "auto" else CapacityModel(spec.capacity_model)
    return LoadedPolicy(
        name=model.metadata.name,
        source=source,
        selector=GroupSelector(
            ids=tuple(spec.stream_groups.ids),
            arns=tuple(spec.stream_groups.arns),
            tags=dict(spec.stream_groups.tag_selector),
        ),
        plugin=spec.policy.plugin,
        plugin_params=params,
        default_bounds=default_bounds,
        location_bounds=location_bounds,
        behavior=behavior,
        slo=slo,
        budget=budget,
        fallback=fallback,
        prices=dict(spec.prices),
        mode=Mode(spec.mode) if spec.mode is not None else defaults_policy.mode,
        dry_run=_pick(spec.dry_run, defaults_policy.dry_run),
        paused=_pick(spec.paused, defaults_policy.paused),
        stale_after_s=_pick(spec.stale_after_seconds, defaults_policy.stale_after_s),
        drift=DriftAction(drift.action) if drift.action else defaults_policy.drift,
        drift_cooldown_s=_pick(drift.cooldown_seconds, defaults_policy.drift_cooldown_s),
        history_window_s=_pick(spec.history_window_seconds, defaults_policy.history_window_s),
        location_lifecycle=lifecycle,
        capacity_model=capacity_model,
    )


def _lifecycle(model: LocationLifecycleModel) -> LocationLifecycle:
    base = LocationLifecycle()
    quantile = LocationCandidate("", CapacitySetting(always_on=0)).forecast_quantile
    candidates = []
    for c in model.candidates:
        when = c.add_when or AddWhenModel()
        above = when.forecast_above
        candidates.append(
            LocationCandidate(
                location=c.location,
                capacity=CapacitySetting(
                    always_on=c.capacity.always_on,
                    target_idle=c.capacity.target_idle,
                    maximum=c.capacity.maximum,
                ),
                windows=tuple(
                    LifecycleWindow(
                        cron=check_cron(w.cron),
                        duration_s=w.duration_seconds,
                        time_zone=w.time_zone,
                    )
                    for w in when.schedules
                ),
                forecast_above=above.slots if above is not None else None,
                forecast_quantile=_pick(above.quantile if above else None, quantile),
            )
        )
    return LocationLifecycle(
        candidates=tuple(candidates),
        remove_after_idle_s=_pick(model.remove_after_idle_seconds, base.remove_after_idle_s),
        activation_s=_pick(model.activation_seconds, base.activation_s),
    )


# The domain's defaults for the top-level policy fields, read once from the dataclass itself.
_POLICY_DEFAULTS = Policy(
    name="", source="", selector=GroupSelector(), plugin="", plugin_params=None
)


CHECKOUT_POLICIES = Path(__file__).resolve().parents[2] / "policies"


def shipped_policy(name: str = "default.yaml") -> Path:
    """A policy file the project ships (``policies/`` in the repository), wherever it is:
    beside the package in a checkout or editable install, else where a wheel installs its
    data (``<prefix>/share/autoscaler/policies``: the environment's prefix, the scheme's
    data path, or the user base for ``pip install --user``).
    When none exists, the checkout's path, so the error names the file that was looked for."""
    checkout = CHECKOUT_POLICIES / name
    # sys.prefix: a virtualenv (the container image); sysconfig's data path: a system
    # Python whose pip installs under /usr/local (Debian); the user base: pip install --user.
    prefixes = (sys.prefix, sysconfig.get_path("data"), site.getuserbase())
    installed = (Path(prefix) / "share" / "autoscaler" / "policies" / name for prefix in prefixes)
    for candidate in (checkout, *installed):
        if candidate.is_file():
            return candidate
    return checkout
