"""Settings that name something unusable (an AWS profile that does not exist, a state folder
that cannot be made, a database path that is a folder, an audit log that cannot be written)
stop ``autoscaler run`` / ``plan`` at start-up with the setting named, exit 2, no traceback,
and nothing written."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "example",
        "AWS_CONFIG_FILE": str(tmp_path / "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "AUTOSCALER_AWS_REGION": "us-west-2",
        "AUTOSCALER_AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # never reached
        "AUTOSCALER_STATE_DIR": str(tmp_path / "state"),
    }
    args = [command, "--policy", str(REPO / "policies" / "default.yaml")]
    if command == "run":
        args.append("--once")
    return subprocess.run(
        [sys.executable, "-m", "autoscaler", *args],
        env={**base, **env},
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


@pytest.mark.parametrize(
    ("setting", "value", "named"),
    [
        ("AWS_PROFILE", "no-such-profile", "aws_profile (AWS_PROFILE"),
        ("AUTOSCALER_STATE_DIR", "/proc/no-such-folder", "state_dir (AUTOSCALER_STATE_DIR)"),
        ("AUTOSCALER_DATABASE_PATH", "{tmp}", "database_path (AUTOSCALER_DATABASE_PATH)"),
        ("AUTOSCALER_AUDIT_LOG", "/proc/no-such/audit.jsonl", "audit_log (AUTOSCALER_AUDIT_LOG)"),
    ],
)
@pytest.mark.parametrize("command", ["run", "plan"])
def test_an_unusable_setting_is_named_at_start_up(
    tmp_path: Path, command: str, setting: str, value: str, named: str
) -> None:
    if command == "plan" and setting == "AUTOSCALER_AUDIT_LOG":
        pytest.skip("plan writes no audit log")
    done = _run(tmp_path, command, {setting: value.format(tmp=tmp_path)})
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert named in done.stderr
    assert value.format(tmp=tmp_path) in done.stderr or setting == "AWS_PROFILE"
    assert (
        not (tmp_path / "state" / "history.sqlite3").exists() or setting == "AUTOSCALER_AUDIT_LOG"
    )
