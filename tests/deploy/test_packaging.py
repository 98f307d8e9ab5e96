"""The wheel, as the container image installs it: built offline from a copy of the sources
(``pip wheel --no-build-isolation``, setuptools from the dev extra), it must carry the
shipped policies, which ``backtest`` and ``demo`` run when given no ``--policy``."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autoscaler.policy import config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(180)
def test_the_wheel_ships_every_policy_of_the_repository(tmp_path: Path) -> None:
    source = tmp_path / "src"  # built from a copy: an in-tree build would leave build/ behind
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for folder in ("autoscaler", "policies"):
        shutil.copytree(
            ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__")
        )
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*pip_wheel, "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("autoscaler-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            Path(n).name: archive.read(n)
            for n in archive.namelist()
            if "/data/share/autoscaler/policies/" in n
        }
    repository = {p.name: p.read_bytes() for p in (ROOT / "policies").glob("*.yaml")}
    assert shipped == repository


def test_the_shipped_policy_is_found_in_a_checkout_and_in_an_installed_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert config.shipped_policy() == ROOT / "policies" / "default.yaml"
    assert config.shipped_policy("legacy.yaml") == ROOT / "policies" / "legacy.yaml"
    # an installed wheel: no checkout beside the package, the data under the prefix
    monkeypatch.setattr(config, "CHECKOUT_POLICIES", tmp_path / "nowhere")
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(config.sysconfig, "get_path", lambda _name: str(tmp_path / "local"))
    installed = tmp_path / "venv" / "share" / "autoscaler" / "policies" / "default.yaml"
    installed.parent.mkdir(parents=True)
    installed.write_text("kind: Policy\n")
    assert config.shipped_policy() == installed
    # a system Python's pip (Debian: data under /usr/local, sys.prefix /usr)
    installed.unlink()
    local = tmp_path / "local" / "share" / "autoscaler" / "policies" / "default.yaml"
    local.parent.mkdir(parents=True)
    local.write_text("kind: Policy\n")
    assert config.shipped_policy() == local
    # nowhere at all: the checkout's path, so the error names what was looked for
    local.unlink()
    monkeypatch.setattr(config.site, "getuserbase", lambda: str(tmp_path / "user"))
    assert config.shipped_policy() == tmp_path / "nowhere" / "default.yaml"
