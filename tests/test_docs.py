"""The configuration reference documents every setting, and the README's commands exist."""

from __future__ import annotations

from pathlib import Path

from autoscaler.cli import build_parser
from autoscaler.policy.plugin import PluginRegistry
from autoscaler.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    missing = [name for name in Settings.model_fields if f"`{name}" not in doc]
    assert missing == [], f"add these settings to docs/configuration.md: {missing}"


def test_every_subcommand_in_the_readme_exists() -> None:
    readme = (ROOT / "README.md").read_text()
    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr,arg-type]
    for command in ("run", "plan", "validate", "backtest", "demo", "emulator"):
        assert command in commands
        assert f"autoscaler {command}" in readme


def test_every_plugin_parameter_is_documented() -> None:
    """Each built-in plugin's params, by their YAML key, in the plugin's own section."""
    doc = (ROOT / "docs" / "configuration.md").read_text()
    registry = PluginRegistry()
    missing: list[str] = []
    for name in registry.names():
        head = f"### `{name}`\n"
        assert head in doc, f"docs/configuration.md has no section {head.strip()}"
        section = doc.split(head, 1)[1].split("\n### ", 1)[0]
        params = registry.get(name).Params
        for field_name, info in params.model_fields.items():
            key = info.alias or field_name
            if f"| `{key}` |" not in section:
                missing.append(f"{name}.{key}")
    assert missing == [], f"add these plugin parameters to docs/configuration.md: {missing}"
