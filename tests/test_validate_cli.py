"""``autoscaler validate``: output, exit codes, and never a stack trace."""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from autoscaler import cli
from autoscaler.commands import validate
from autoscaler.policy.config import ResolveParams
from autoscaler.policy.plugin import default_registry

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "policies"


class DemoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    level: int = 1


def resolve(name: str, raw: Mapping[str, Any]) -> Any:
    if name != "demo":
        raise KeyError(name, ["demo"])
    return DemoParams.model_validate(dict(raw))


def policy_text(name: str, group: str, plugin: str = "demo", extra: str = "") -> str:
    return (
        textwrap.dedent(f"""\
        apiVersion: autoscaler.gameliftstreams/v1
        kind: CapacityPolicy
        metadata: {{name: {name}}}
        spec:
          streamGroups: {{ids: [{group}]}}
          policy: {{plugin: {plugin}}}
        """)
        + extra
    )


def run_validate(argv: list[str], resolver: ResolveParams = resolve) -> int:
    parser = argparse.ArgumentParser(prog="autoscaler")
    validate.register(parser.add_subparsers(dest="command", required=True), resolve_params=resolver)
    args = parser.parse_args(["validate", *argv])
    return int(args.func(args))


def test_all_valid_prints_ok_lines_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "b.yaml").write_text(policy_text("b", "sg-2"))
    (tmp_path / "a.yml").write_text(policy_text("a", "sg-1"))
    assert run_validate([str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        f"ok: {tmp_path / 'a.yml'} (policy a, plugin demo)",
        f"ok: {tmp_path / 'b.yaml'} (policy b, plugin demo)",
    ]
    assert err == ""


def test_invalid_files_print_every_problem_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(policy_text("good", "sg-1"))
    bad = tmp_path / "bad.yaml"
    bad.write_text(policy_text("bad", "sg-2", plugin="demoo", extra="  paused: 3\n"))
    clash = tmp_path / "clash.yaml"
    clash.write_text(policy_text("good", "sg-1"))
    missing = tmp_path / "missing.yaml"
    assert run_validate([str(good), str(bad), str(clash), str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == f"ok: {good} (policy good, plugin demo)\n"
    assert err.splitlines() == [
        f"error: {missing}:",
        f"  - {missing}: no such file or directory",
        f"error: {bad}:",
        f"  - {bad}:7: spec.paused: Input should be a valid boolean (got 3)",
        f"  - {bad}:6: spec.policy.plugin: unknown policy plugin 'demoo' (known: demo)",
        f"error: {clash}:",
        f"  - {clash}:3: metadata.name: policy name 'good' is already used by {good}",
        f"  - {clash}:5: spec.streamGroups.ids[0]: stream group 'sg-1' is already managed by "
        f"policy 'good' ({good}, as 'sg-1'); a group belongs to one policy only",
        "3 with problems, 1 valid",
    ]
    assert "Traceback" not in err


def test_missing_registry_is_reported_not_raised(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(name: str, raw: Mapping[str, Any]) -> Any:
        raise ModuleNotFoundError("No module named 'autoscaler.policy.plugin'")

    (tmp_path / "a.yaml").write_text(policy_text("a", "sg-1"))
    assert run_validate([str(tmp_path)], broken) == 2
    assert capsys.readouterr().err == (
        "error: the policy plugin registry is not available (No module named "
        "'autoscaler.policy.plugin'); reinstall autoscaler\n"
    )


def test_through_the_cli_with_the_real_registry(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert "autoscaler.commands.validate" in cli.COMMAND_MODULES
    examples = [str(EXAMPLES / n) for n in ("target-tracking.yaml", "legacy.yaml", "dry-run.yaml")]
    assert cli.main(["validate", *examples]) == 0
    assert capsys.readouterr().out.count("ok: ") == 3
    bad = tmp_path / "bad.yaml"
    bad.write_text(policy_text("bad", "sg-1", plugin="target-tracking"))
    bad.write_text(bad.read_text().replace("{plugin: target-tracking}", "{plugin: nope}"))
    assert cli.main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:6: spec.policy.plugin: unknown policy plugin 'nope' (known: " in err


def test_default_example_with_the_slo_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    if "slo" not in default_registry().names():
        pytest.skip("the slo plugin is not installed yet; policies/default.yaml needs it")
    assert cli.main(["validate", str(EXAMPLES / "default.yaml")]) == 0
    assert capsys.readouterr().out.startswith("ok: ")


def test_subprocess_exit_code_and_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: [\n")
    result = subprocess.run(
        [sys.executable, "-m", "autoscaler", "validate", str(EXAMPLES / "legacy.yaml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert result.stdout == f"ok: {EXAMPLES / 'legacy.yaml'} (policy legacy-group, plugin slo)\n"
    assert f"  - {bad}:2:1: invalid YAML:" in result.stderr
    assert "Traceback" not in result.stderr
