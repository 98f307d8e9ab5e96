"""The configuration reference documents every setting, and the README's commands exist."""

from __future__ import annotations

from pathlib import Path

from autoscaler.cli import build_parser
from autoscaler.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{name}" not in doc]
    assert missing == [], f"add these settings to docs/configuration.md: {missing}"


def test_every_subcommand_in_the_readme_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for command in ("run", "plan", "validate", "backtest", "demo", "emulator"):
        assert command in commands
        assert f"autoscaler {command}" in readme
