"""Settings: sources and their precedence, AWS environment names, secrets, error messages."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pydantic
import pytest

from autoscaler.domain.errors import ConfigError
from autoscaler.settings import AWS_QUOTAS_PER_SECOND, ApiBudget, Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No AUTOSCALER_* / AWS_* variables from the machine, and a fresh working directory (so
    a developer's .env never leaks into a test)."""
    for name in list(os.environ):
        if name.upper().startswith(("AUTOSCALER_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def problems(**kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)  # type: ignore[arg-type]
    return caught.value.problems


def test_defaults() -> None:
    s = load_settings()
    assert s.config is None
    assert s.policy_paths == [Path("policies")]
    assert (s.interval_s, s.tick_timeout_s, s.effective_tick_timeout_s) == (60.0, None, 60.0)
    assert (s.dry_run, s.once) == (False, False)
    assert s.effective_database_path == Path(".autoscaler/history.sqlite3")
    assert s.effective_audit_log == Path(".autoscaler/audit.jsonl")
    assert (s.http_host, s.http_port, s.http_token) == ("127.0.0.1", 9464, None)
    assert (s.log_level, s.log_format) == ("INFO", None)
    assert (s.aws_region, s.aws_profile, s.aws_endpoint_url) == (None, None, None)
    assert (s.aws_retry_mode, s.aws_max_attempts) == ("adaptive", 3)
    assert s.api_budget == ApiBudget()
    assert s.api_budget.rates() == {op: q / 2 for op, q in AWS_QUOTAS_PER_SECOND.items()}
    assert AWS_QUOTAS_PER_SECOND == {
        "ListStreamSessions": 20.0,
        "GetStreamGroup": 10.0,
        "ListStreamGroups": 10.0,
        "UpdateStreamGroup": 5.0,
        "AddStreamGroupLocations": 5.0,
        "RemoveStreamGroupLocations": 5.0,
    }


def test_precedence_overrides_env_dotenv_yaml_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(
        tmp_path / "settings.yaml",
        """\
        interval_s: 10
        http_port: 1010
        max_concurrency: 10
        log_level: debug
        api_budget: {get_stream_group: 0.1, list_stream_groups: 0.1}
        """,
    )
    write(
        tmp_path / ".env",
        """\
        AUTOSCALER_INTERVAL_S=20
        AUTOSCALER_HTTP_PORT=2020
        AUTOSCALER_API_BUDGET__GET_STREAM_GROUP=0.2
        """,
    )
    monkeypatch.setenv("AUTOSCALER_INTERVAL_S", "30")
    s = load_settings(config, interval_s=40)
    assert s.config == config
    assert s.interval_s == 40  # override > env
    s = load_settings(config, interval_s=None)  # an unset CLI flag overrides nothing
    assert s.interval_s == 30  # env > .env
    assert s.http_port == 2020  # .env > YAML
    assert s.max_concurrency == 10  # YAML > default
    assert s.log_level == "DEBUG"
    assert s.api_budget.get_stream_group == 0.2  # nested: .env > YAML, field by field
    assert s.api_budget.list_stream_groups == 0.1
    assert s.api_budget.update_stream_group == 0.5
    assert s.api_budget.rates()["GetStreamGroup"] == pytest.approx(2.0)


def test_config_file_from_environment_and_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = write(tmp_path / "a.yaml", "interval_s: 11\n")
    b = write(tmp_path / "b.yaml", "interval_s: 22\n")
    write(tmp_path / ".env", f"AUTOSCALER_CONFIG={b}\n")
    assert load_settings().interval_s == 22
    monkeypatch.setenv("AUTOSCALER_CONFIG", str(a))
    assert load_settings().interval_s == 11
    assert load_settings(b).interval_s == 22  # --config wins


def test_region_prefers_aws_region_over_aws_default_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert load_settings().aws_region == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    assert load_settings().aws_region == "us-east-2"
    monkeypatch.setenv("AUTOSCALER_AWS_REGION", "ap-south-1")
    assert load_settings().aws_region == "ap-south-1"
    assert load_settings(aws_region="ca-central-1").aws_region == "ca-central-1"


def test_region_from_yaml_loses_to_aws_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "s.yaml", "aws_region: eu-central-1\naws_profile: ops\n")
    assert load_settings(config).aws_region == "eu-central-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_PROFILE", "dev")
    s = load_settings(config)
    assert (s.aws_region, s.aws_profile) == ("us-west-2", "dev")


def test_endpoint_service_specific_over_global_and_flag_over_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://global:1")
    assert load_settings().aws_endpoint_url == "http://global:1"
    monkeypatch.setenv("AWS_ENDPOINT_URL_GAMELIFTSTREAMS", "http://127.0.0.1:8080")
    assert load_settings().aws_endpoint_url == "http://127.0.0.1:8080"
    flag = load_settings(aws_endpoint_url="http://localhost:9999")
    assert flag.aws_endpoint_url == "http://localhost:9999"


def test_retry_settings_follow_aws_env_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_RETRY_MODE", "standard")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
    s = load_settings()
    assert (s.aws_retry_mode, s.aws_max_attempts) == ("standard", 5)


def test_policy_paths_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSCALER_POLICY_PATHS", f"a.yaml{os.pathsep}dir")
    assert load_settings().policy_paths == [Path("a.yaml"), Path("dir")]
    monkeypatch.setenv("AUTOSCALER_POLICY_PATHS", '["x.yaml", "y"]')
    assert load_settings().policy_paths == [Path("x.yaml"), Path("y")]


def test_secret_never_in_repr_str_or_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSCALER_HTTP_TOKEN", "hunter2-very-secret")
    s = load_settings()
    assert s.http_token is not None
    assert s.http_token.get_secret_value() == "hunter2-very-secret"
    for text in (repr(s), str(s), s.model_dump_json(), repr(s.model_dump())):
        assert "hunter2" not in text
    # the AWS credential chain's variables never become settings
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI")
    assert "wJalrXUtnFEMI" not in repr(load_settings())


def test_bad_secret_is_masked_in_errors(tmp_path: Path) -> None:
    config = write(tmp_path / "s.yaml", "http_token: [hunter2]\n")
    assert problems(config_file=config) == [
        f"{config}:1: http_token: Input should be a valid string (got '**********')"
    ]


def test_credentials_in_the_settings_file_are_refused(tmp_path: Path) -> None:
    config = write(tmp_path / "s.yaml", "interval_s: 5\naws_secret_access_key: abc\n")
    assert problems(config_file=config) == [
        f"{config}:2: aws_secret_access_key: credentials never go in the settings file; use "
        "the AWS credential chain (AWS_PROFILE, SSO, instance or task role)"
    ]


def test_errors_name_their_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(
        tmp_path / "s.yaml",
        """\
        interval_s: 60
        http_port: 70000
        api_budget:
          get_stream_group: 2
        typo: 1
        """,
    )
    write(tmp_path / ".env", "AUTOSCALER_LOG_FORMAT=xml\n")
    monkeypatch.setenv("AWS_REGION", "Mars")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, max_concurrency=0)
    assert caught.value.source == str(config)
    assert caught.value.problems == [
        f"{config}:2: http_port: Input should be less than or equal to 65535 (got 70000)",
        ".env (AUTOSCALER_LOG_FORMAT): log_format: Input should be 'json' or 'console' (got 'xml')",
        "command line: max_concurrency: Input should be greater than or equal to 1 (got 0)",
        f"{config}:4: api_budget.get_stream_group: Input should be less than or equal to 1 (got 2)",
        "environment variable AWS_REGION: aws_region: expected an AWS region name such as "
        "us-east-2 (got 'Mars')",
        f"{config}:5: typo: unknown setting; valid: " + ", ".join(sorted(Settings.model_fields)),
    ]


def test_cross_field_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSCALER_INTERVAL_S", "30")
    assert problems(tick_timeout_s=45) == [
        "settings: tick_timeout_s (45.0) must not exceed interval_s (30.0): ticks never overlap"
    ]


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    config = write(tmp_path / "s.yaml", "interval_s: [1\n")
    assert problems(config_file=config) == [
        f"{config}:2:1: invalid YAML: while parsing a flow sequence, did not find expected "
        "',' or ']'"
    ]
    missing = tmp_path / "nope.yaml"
    assert problems(config_file=missing) == [f"{missing}: file not found"]
    listing = write(tmp_path / "l.yaml", "- 1\n")
    assert problems(config_file=listing) == [
        f"{listing}: expected a mapping of setting names to values"
    ]


def test_endpoint_url_must_be_http(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "localhost:8080")
    assert problems() == [
        "environment variable AWS_ENDPOINT_URL: aws_endpoint_url: expected an http:// or "
        "https:// URL, e.g. http://127.0.0.1:8080 (got 'localhost:8080')"
    ]


def test_settings_are_frozen() -> None:
    s = load_settings()
    with pytest.raises(pydantic.ValidationError):
        s.interval_s = 1  # type: ignore[misc]
    assert isinstance(s, Settings)
