"""Policy files: every rule of the envelope, with the exact message users see.

A small in-test resolver stands in for the plugin registry (the loader's documented seam); one
test runs the real registry with the real ``target-tracking`` plugin.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field

from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import CapacityModel, LocationBounds
from autoscaler.domain.policy import (
    Behavior,
    Budget,
    DriftAction,
    Fallback,
    FallbackBehavior,
    Mode,
    RuleType,
    ScalingRule,
    SelectPolicy,
    Slo,
)
from autoscaler.policy.config import (
    default_resolve_params,
    load_policies,
    load_policy_file,
)
from autoscaler.policy.yamlsource import YamlError, parse_yaml


class DemoParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    targetUtilization: float = Field(default=0.7, gt=0, le=1)


def resolve(name: str, raw: Mapping[str, Any]) -> Any:
    if name != "demo":
        raise KeyError(name, ["demo", "slo"])
    return DemoParams.model_validate(dict(raw))


HEADER = """\
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata:
  name: {name}
spec:
  streamGroups:
    ids: [{group}]
  policy:
    plugin: demo
"""


def write(tmp_path: Path, text: str, name: str = "p.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def minimal(name: str = "p", group: str = "sg-1", extra: str = "", indent: str = "  ") -> str:
    """A valid file; ``extra`` is appended under ``spec`` (or deeper, with ``indent``)."""
    return HEADER.format(name=name, group=group) + textwrap.indent(textwrap.dedent(extra), indent)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path, resolve_params=resolve)
    assert caught.value.source == str(path)
    return caught.value.problems


# -- valid files ---------------------------------------------------------------------------


def test_minimal_file_takes_the_domain_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, minimal())
    policy = load_policy_file(path, resolve_params=resolve)
    assert policy.name == "p"
    assert policy.source == str(path)
    assert policy.selector.ids == ("sg-1",)
    assert policy.plugin == "demo"
    assert policy.plugin_params == DemoParams()
    assert policy.default_bounds == LocationBounds()
    assert policy.location_bounds == {}
    assert policy.behavior == Behavior()
    assert policy.slo == Slo()
    assert policy.budget == Budget()
    assert policy.fallback == Fallback()
    assert policy.mode is Mode.FORECAST_AND_SCALE
    assert policy.drift is DriftAction.RESPECT
    assert policy.capacity_model is None
    assert (policy.stale_after_s, policy.drift_cooldown_s) == (180.0, 1800.0)


def test_full_file_maps_every_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        apiVersion: autoscaler.gameliftstreams/v1
        kind: CapacityPolicy
        metadata: {name: full}
        spec:
          streamGroups:
            ids: [sg-1]
            arns: ["arn:aws:gameliftstreams:us-east-2:111122223333:streamgroup/sg-2"]
            tagSelector: {team: games}
          capacityModel: legacy
          locations:
            us-east-2: {minCapacity: 2}
            eu-central-1: {minCapacity: 1, maxCapacity: 40}
          defaults: {minCapacity: 0, maxCapacity: 100}
          policy: {plugin: demo, params: {targetUtilization: 0.5}}
          behavior:
            scaleUp: {stabilizationWindowSeconds: 30, selectPolicy: Min,
                      policies: [{type: Slots, value: 4, periodSeconds: 60}]}
            scaleDown: {selectPolicy: Disabled, policies: []}
            tolerance: 0.1
            cooldownSeconds: 120
          slo: {instant: 0.95}
          budget: {maxCostPerHour: 50, maxCostPerMonth: 20000, cutOrder: [maximum, targetIdle]}
          fallback: {failureThreshold: 5, behavior: static, alwaysOn: 2, targetIdle: 2, maximum: 10}
          prices: {gen4n_high: 0.7}
          mode: ForecastOnly
          dryRun: true
          paused: true
          staleAfterSeconds: 300
          drift: {action: revert, cooldownSeconds: 60}
          historyWindowSeconds: 86400
        """,
    )
    p = load_policy_file(path, resolve_params=resolve)
    assert p.selector.arns == ("arn:aws:gameliftstreams:us-east-2:111122223333:streamgroup/sg-2",)
    assert p.selector.tags == {"team": "games"}
    assert p.capacity_model is CapacityModel.LEGACY
    assert p.default_bounds == LocationBounds(0, 100)
    # a location inherits the fields it does not set from `defaults`
    assert p.bounds_for("us-east-2") == LocationBounds(2, 100)
    assert p.bounds_for("eu-central-1") == LocationBounds(1, 40)
    assert p.bounds_for("ap-south-1") == LocationBounds(0, 100)
    assert p.plugin_params == DemoParams(targetUtilization=0.5)
    up, down = p.behavior.scale_up, p.behavior.scale_down
    assert up.stabilization_window_s == 30
    assert up.select_policy is SelectPolicy.MIN
    assert up.rules == (ScalingRule(RuleType.SLOTS, 4.0, 60.0),)
    assert down.select_policy is SelectPolicy.DISABLED
    assert down.rules == ()
    assert down.stabilization_window_s == Behavior().scale_down.stabilization_window_s
    assert (p.behavior.tolerance, p.behavior.cooldown_s) == (0.1, 120)
    assert p.slo == Slo(instant=0.95, failed=Slo().failed)
    assert p.budget == Budget(50, 20000, ("maximum", "target_idle"))
    assert p.fallback == Fallback(5, FallbackBehavior.STATIC, 2, 2, 10)
    assert p.price_for("gen4n_high") == 0.7
    assert p.mode is Mode.FORECAST_ONLY
    assert (p.dry_run, p.paused) == (True, True)
    assert (p.stale_after_s, p.drift, p.drift_cooldown_s) == (300, DriftAction.REVERT, 60)
    assert p.history_window_s == 86400


def test_real_registry_validates_target_tracking_params(tmp_path: Path) -> None:
    good = write(
        tmp_path,
        minimal(extra="").replace("plugin: demo", "plugin: target-tracking")
        + "    params: {targetUtilization: 0.5}\n",
        "good.yaml",
    )
    policy = load_policy_file(good, resolve_params=default_resolve_params)
    assert type(policy.plugin_params).__name__ == "TargetTrackingParams"
    bad = write(
        tmp_path,
        minimal().replace("plugin: demo", "plugin: target-tracking")
        + "    params: {targetUtilization: 1.5}\n",
        "bad.yaml",
    )
    with pytest.raises(ConfigError) as caught:
        load_policy_file(bad, resolve_params=default_resolve_params)
    assert caught.value.problems == [
        f"{bad}:10: spec.policy.params.targetUtilization: "
        "Input should be less than or equal to 1 (got 1.5)"
    ]


def test_real_registry_names_the_known_plugins(tmp_path: Path) -> None:
    path = write(tmp_path, minimal().replace("plugin: demo", "plugin: no-such-plugin"))
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path, resolve_params=default_resolve_params)
    [problem] = caught.value.problems
    assert problem.startswith(
        f"{path}:9: spec.policy.plugin: unknown policy plugin 'no-such-plugin' (known: "
    )
    assert "target-tracking" in problem


# -- the envelope's rules ------------------------------------------------------------------


# The files that are invalid for one rule (or a few at once), and exactly the problems the
# loader reports for them: ``LINE: field: message``, each prefixed with the file's path.
INVALID_FILES = [
    pytest.param(
        minimal(
            extra="""\
              locations:
                us-east-2: {minCapacity: 50, maxCapacity: 40}
            """
        ),
        [
            "11: spec.locations.us-east-2.minCapacity: minCapacity 50 is greater than "
            "maxCapacity 40; need minCapacity <= maxCapacity"
        ],
        id="min_above_max_names_file_field_and_line",
    ),
    pytest.param(
        minimal(
            extra="""\
              defaults: {maxCapacity: 10}
              locations:
                us-east-2:
                  minCapacity: 12
            """
        ),
        [
            "13: spec.locations.us-east-2.minCapacity: minCapacity 12 is greater than "
            "maxCapacity 10 (from spec.defaults); need minCapacity <= maxCapacity"
        ],
        id="min_above_inherited_max",
    ),
    pytest.param(
        minimal(extra="  defaults: {minCapacity: 5, maxCapacity: 4}\n"),
        [
            "10: spec.defaults.minCapacity: minCapacity 5 is greater than maxCapacity 4; "
            "need minCapacity <= maxCapacity"
        ],
        id="defaults_min_above_max",
    ),
    pytest.param(
        minimal(
            extra="""\
              behavior:
                scaleUp:
                  stabilisationWindowSeconds: 10
              max_capacity: 3
            """
        ),
        [
            "12: spec.behavior.scaleUp.stabilisationWindowSeconds: unknown field "
            "'stabilisationWindowSeconds'; valid fields here: stabilizationWindowSeconds, "
            "selectPolicy, policies",
            "13: spec.max_capacity: unknown field 'max_capacity'; valid fields here: "
            "streamGroups, capacityModel, locations, defaults, policy, behavior, slo, budget, "
            "fallback, prices, mode, dryRun, paused, staleAfterSeconds, drift, "
            "historyWindowSeconds, locationLifecycle",
        ],
        id="unknown_keys_are_rejected_with_the_valid_ones",
    ),
    pytest.param(
        "status: {}\n" + minimal(),
        ["1: status: unknown field 'status'; valid fields here: apiVersion, kind, metadata, spec"],
        id="unknown_top_level_key",
    ),
    pytest.param(
        minimal()
        .replace("gameliftstreams/v1", "gameliftstreams/v2")
        .replace("kind: CapacityPolicy", "kind: Policy"),
        [
            "1: apiVersion: Input should be 'autoscaler.gameliftstreams/v1' "
            "(got 'autoscaler.gameliftstreams/v2')",
            "2: kind: Input should be 'CapacityPolicy' (got 'Policy')",
        ],
        id="wrong_api_version_and_kind_say_what_is_valid",
    ),
    pytest.param(
        minimal().replace("  policy:\n    plugin: demo\n", ""),
        ["5: spec.policy: required field is missing"],
        id="missing_required_field_points_at_its_parent",
    ),
    pytest.param(
        minimal(
            extra="""\
              capacityModel: modern
              mode: Forecast
              behavior:
                scaleDown:
                  policies: [{type: Slot, value: 1, periodSeconds: 60}]
            """
        ),
        [
            "10: spec.capacityModel: Input should be 'auto', 'current' or 'legacy' (got 'modern')",
            "14: spec.behavior.scaleDown.policies[0].type: Input should be 'Slots' or "
            "'Percent' (got 'Slot')",
            "11: spec.mode: Input should be 'ForecastOnly' or 'ForecastAndScale' (got 'Forecast')",
        ],
        id="enums_list_their_values",
    ),
    pytest.param(
        minimal().replace("plugin: demo", "plugin: dmeo"),
        ["9: spec.policy.plugin: unknown policy plugin 'dmeo' (known: demo, slo)"],
        id="unknown_plugin_lists_the_known_ones",
    ),
    pytest.param(
        minimal(
            extra="""\
                params:
                  targetUtilization: 2
                  target: 0.5
            """,
            indent="    ",
        ),
        [
            "11: spec.policy.params.targetUtilization: "
            "Input should be less than or equal to 1 (got 2)",
            "12: spec.policy.params.target: unknown field 'target'",
        ],
        id="plugin_params_errors_point_into_params",
    ),
    pytest.param(
        minimal(
            extra="""\
                  params: {targetUtilization: 0}
                paused: maybe
            """
        ),
        [
            "11: spec.paused: Input should be a valid boolean (got 'maybe')",
            "10: spec.policy.params.targetUtilization: Input should be greater than 0 (got 0)",
        ],
        id="envelope_and_params_errors_are_reported_together",
    ),
    pytest.param(
        minimal(extra="  prices: {gen4n_high: 0}\n"),
        ["10: spec.prices.gen4n_high: Input should be greater than 0 (got 0)"],
        id="prices_must_be_positive",
    ),
    pytest.param(
        minimal().replace("    ids: [sg-1]\n", "    ids: []\n"),
        ["6: spec.streamGroups: select at least one stream group: give ids, arns or tagSelector"],
        id="stream_groups_need_a_selector",
    ),
    pytest.param(
        minimal().replace(
            "    ids: [sg-1]\n",
            "    ids: [sg-1, sg_2, sg-1]\n"
            "    arns: ['arn:aws:gameliftstreams:us-east-2:111122223333:application/a-1']\n",
        ),
        [
            "7: spec.streamGroups.ids[1]: invalid stream group id 'sg_2': 1-32 letters, "
            "digits or '-' (e.g. sg-1AB2C3De4)",
            "8: spec.streamGroups.arns[0]: invalid stream group ARN "
            "'arn:aws:gameliftstreams:us-east-2:111122223333:application/a-1': expected "
            "arn:aws:gameliftstreams:REGION:ACCOUNT(12 digits):streamgroup/ID",
            "7: spec.streamGroups.ids[2]: 'sg-1' is listed twice",
        ],
        id="stream_group_ids_and_arns_are_checked",
    ),
    pytest.param(
        minimal(name="My_Policy"),
        [
            "4: metadata.name: invalid name 'My_Policy': use 1-63 lowercase letters, "
            "digits and '-', starting and ending with a letter or digit (it labels metrics and "
            "logs)"
        ],
        id="metadata_name_is_a_dns_label",
    ),
    pytest.param(
        minimal(
            extra="""\
              behavior:
                scaleDown: {policies: []}
                scaleUp:
                  policies: [{type: Percent, value: 0, periodSeconds: 60}]
                tolerance: 1.0
            """
        ),
        [
            "13: spec.behavior.scaleUp.policies[0].value: Input should be greater than 0 (got 0)",
            "14: spec.behavior.tolerance: Input should be less than 1 (got 1.0)",
        ],
        id="behavior_rules-value_and_tolerance",
    ),
    pytest.param(
        minimal(extra="  behavior:\n    scaleDown: {policies: []}\n"),
        [
            "11: spec.behavior.scaleDown.policies: empty list: give at least one policy, "
            "or set selectPolicy: Disabled to forbid changes in this direction"
        ],
        id="behavior_rules-empty_policies",
    ),
    pytest.param(
        minimal(extra="  slo: {instant: 1, failed: -0.1}\n"),
        [
            "10: spec.slo.instant: Input should be less than 1 (got 1)",
            "10: spec.slo.failed: Input should be greater than or equal to 0 (got -0.1)",
        ],
        id="slo_bounds",
    ),
    pytest.param(
        minimal(extra="  budget: {cutOrder: [maximum, maximum]}\n"),
        ["10: spec.budget.cutOrder[1]: 'maximum' is listed twice"],
        id="budget_cut_order-listed_twice",
    ),
    pytest.param(
        minimal(extra="  budget: {cutOrder: [idle]}\n"),
        [
            "10: spec.budget.cutOrder[0]: Input should be 'targetIdle', 'maximum' or "
            "'alwaysOn' (got 'idle')"
        ],
        id="budget_cut_order-unknown_name",
    ),
    pytest.param(
        minimal(extra="  fallback: {behavior: hold, alwaysOn: 2}\n"),
        [
            "10: spec.fallback.alwaysOn: alwaysOn applies only with behavior: static "
            "(behavior is hold: capacity is held as it is)"
        ],
        id="fallback_rules-hold_with_always_on",
    ),
    pytest.param(
        minimal(extra="  fallback: {behavior: static}\n"),
        [
            "10: spec.fallback.behavior: behavior static needs alwaysOn, targetIdle or "
            "maximum above 0 (use behavior: hold to keep capacity as it is)"
        ],
        id="fallback_rules-static_without_capacity",
    ),
    pytest.param(
        minimal(extra="  fallback: {behavior: static, targetIdle: 4, maximum: 2}\n"),
        [
            "10: spec.fallback.targetIdle: targetIdle 4 is greater than maximum 2; "
            "need targetIdle <= maximum"
        ],
        id="fallback_rules-idle_above_maximum",
    ),
]


@pytest.mark.parametrize(("text", "expected"), INVALID_FILES)
def test_invalid_file_reports_exactly_these_problems(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    assert problems_of(path) == [f"{path}:{problem}" for problem in expected]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "Input should be greater than or equal to 0 (got -1)"),
        ("1.5", "Input should be a valid integer (got 1.5)"),
        ('"5"', "Input should be a valid integer (got '5')"),
        ("true", "Input should be a valid integer (got True)"),
    ],
)
def test_capacity_is_a_non_negative_int(tmp_path: Path, value: str, message: str) -> None:
    path = write(
        tmp_path,
        minimal(
            extra=f"""\
              locations:
                us-east-2:
                  maxCapacity: {value}
            """
        ),
    )
    assert problems_of(path) == [f"{path}:12: spec.locations.us-east-2.maxCapacity: {message}"]


def test_prices_need_known_stream_classes(tmp_path: Path) -> None:
    path = write(tmp_path, minimal(extra="  prices: {gen4n_high: 0.6, gen9n_mega: 1.0}\n"))
    [problem] = problems_of(path)
    assert problem.startswith(
        f"{path}:10: spec.prices.gen9n_mega: unknown stream class 'gen9n_mega'; known classes: "
        "gen4n_high, gen4n_ultra, "
    )
    assert problem.endswith("gen6n_ultra_win2022")


@pytest.mark.parametrize("location", ["us_east_2", "a-very-long-location-name"])
def test_location_names_follow_the_aws_pattern(tmp_path: Path, location: str) -> None:
    path = write(tmp_path, minimal(extra=f"  locations:\n    {location}: {{maxCapacity: 4}}\n"))
    assert problems_of(path) == [
        f"{path}:11: spec.locations.{location}: invalid location name '{location}': AWS "
        "location names are 1-20 letters, digits or '-' (e.g. us-east-2)"
    ]


# -- YAML itself ---------------------------------------------------------------------------


def test_invalid_yaml_reports_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, minimal() + "  locations: {us-east-2: [1\n")
    assert problems_of(path) == [
        f"{path}:11:1: invalid YAML: while parsing a flow sequence, did not find expected ',' "
        "or ']'"
    ]


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    path = write(tmp_path, minimal(extra="  paused: false\n  paused: true\n"))
    assert problems_of(path) == [
        f"{path}:11: spec.paused: duplicate key (first defined on line 10); keep only one"
    ]


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object/apply:os.system [ls]", "tag:yaml.org,2002:python/object/apply:os.system"),
        ("!!python/name:os.system ''", "tag:yaml.org,2002:python/name:os.system"),
        ("!!set {a: null}", "tag:yaml.org,2002:set"),
        ("!custom {a: 1}", "!custom"),
    ],
)
def test_non_plain_tags_are_refused(tmp_path: Path, value: str, tag: str) -> None:
    path = write(tmp_path, minimal(extra=f"  paused: {value}\n"))
    assert problems_of(path) == [
        f"{path}:10:11: invalid YAML: could not determine a constructor for the tag {tag!r}"
    ]


def test_empty_and_non_mapping_files(tmp_path: Path) -> None:
    expected = (
        "expected a mapping with apiVersion: autoscaler.gameliftstreams/v1, kind: "
        "CapacityPolicy, metadata and spec"
    )
    empty = write(tmp_path, "# nothing\n", "empty.yaml")
    assert problems_of(empty) == [f"{empty}: the file is empty; {expected}"]
    listing = write(tmp_path, "- a\n", "list.yaml")
    assert problems_of(listing) == [f"{listing}: the file is a list; {expected}"]


def test_recursive_alias_and_alias_bombs_are_refused() -> None:
    with pytest.raises(YamlError) as caught:
        parse_yaml("a: &a [*a]\n", "f.yaml")
    assert caught.value.problems == ["f.yaml:1: an alias refers to itself (recursive)"]
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n"
        for i in range(5)
    )
    with pytest.raises(YamlError) as caught:
        parse_yaml(bomb, "f.yaml")
    assert "document expands to more than 100000 values" in caught.value.problems[0]


def test_merge_keys_resolve_like_safe_load() -> None:
    doc = parse_yaml("base: &b {x: 1}\nderived:\n  <<: *b\n  y: 2\n", "f.yaml")
    assert doc.data == {"base": {"x": 1}, "derived": {"x": 1, "y": 2}}
    assert doc.line_of(["derived", "y"]) == 4
    assert doc.line_of(["derived", "missing", "deeper"]) == 2


# -- several files -------------------------------------------------------------------------


def test_directories_are_read_sorted_and_only_yaml(tmp_path: Path) -> None:
    write(tmp_path, minimal(name="b", group="sg-2"), "b.yml")
    write(tmp_path, minimal(name="a", group="sg-1"), "a.yaml")
    write(tmp_path, "not: yaml policy", "notes.txt")
    write(tmp_path, minimal(name="hidden", group="sg-9"), ".hidden.yaml")
    policies = load_policies([tmp_path], resolve_params=resolve)
    assert [p.name for p in policies] == ["a", "b"]
    # a file named twice (directly and through its directory) is one policy, not a clash
    again = load_policies([tmp_path / "a.yaml", tmp_path], resolve_params=resolve)
    assert [p.name for p in again] == ["a", "b"]


def test_duplicate_names_and_groups_across_files(tmp_path: Path) -> None:
    a = write(tmp_path, minimal(name="same", group="sg-1"), "a.yaml")
    b = write(tmp_path, minimal(name="same", group="sg-2"), "b.yaml")
    c = write(
        tmp_path,
        minimal(name="c", group="sg-3").replace(
            "    ids: [sg-3]\n",
            "    arns: ['arn:aws:gameliftstreams:us-east-2:111122223333:streamgroup/sg-1']\n",
        ),
        "c.yaml",
    )
    with pytest.raises(ConfigError) as caught:
        load_policies([tmp_path], resolve_params=resolve)
    assert caught.value.source == str(tmp_path)
    assert caught.value.problems == [
        f"{b}:4: metadata.name: policy name 'same' is already used by {a}",
        f"{c}:7: spec.streamGroups.arns[0]: stream group "
        "'arn:aws:gameliftstreams:us-east-2:111122223333:streamgroup/sg-1' is already managed "
        f"by policy 'same' ({a}, as 'sg-1'); a group belongs to one policy only",
    ]


def test_every_problem_of_every_file_in_one_error(tmp_path: Path) -> None:
    good = write(tmp_path, minimal(name="good"), "good.yaml")
    bad = write(tmp_path, minimal(name="bad", group="sg-2", extra="  mode: Scale\n"), "bad.yaml")
    missing = tmp_path / "missing.yaml"
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    with pytest.raises(ConfigError) as caught:
        load_policies([good, bad, missing, empty_dir], resolve_params=resolve)
    assert caught.value.problems == [
        f"{missing}: no such file or directory",
        f"{empty_dir}: no *.yaml or *.yml policy files in directory",
        f"{bad}:10: spec.mode: Input should be 'ForecastOnly' or 'ForecastAndScale' (got 'Scale')",
    ]


def test_example_policies_are_valid_with_the_real_registry() -> None:
    examples = Path(__file__).resolve().parents[1] / "policies"
    names = ["target-tracking.yaml", "legacy.yaml", "dry-run.yaml"]
    policies = load_policies([examples / n for n in names])
    assert [(p.name, p.plugin) for p in policies] == [
        ("target-tracking", "target-tracking"),
        ("legacy-group", "slo"),
        ("shadow", "slo"),
    ]
    assert policies[1].capacity_model is CapacityModel.LEGACY
    assert policies[2].mode is Mode.FORECAST_ONLY


def test_default_example_envelope_is_valid_and_uses_slo() -> None:
    # The envelope is checked here with a resolver that accepts the `slo` plugin's params as
    # given; test_validate_cli checks them with the real plugin once it is installed.
    default = Path(__file__).resolve().parents[1] / "policies" / "default.yaml"
    seen: list[tuple[str, dict[str, Any]]] = []

    def accept(name: str, raw: Mapping[str, Any]) -> Any:
        seen.append((name, dict(raw)))
        return raw

    policy = load_policy_file(default, resolve_params=accept)
    assert policy.plugin == "slo"
    assert [name for name, _ in seen] == ["slo"]
    assert 0 < seen[0][1]["missBudgetShare"] <= 4
