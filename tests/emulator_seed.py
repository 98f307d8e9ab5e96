"""What the suites that run the controller against a live emulator (e2e, reliability, ha) set
up the same way: fake AWS credentials, a game application, and stream groups of a fixed
shape. A plain module, not a conftest: each suite keeps its own fixtures (their names, clocks,
seeds and waits differ) and calls these."""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from autoscaler.twin.model import LocationConfigInput, ServiceModel


def fake_aws_env(
    monkeypatch: pytest.MonkeyPatch,
    *,
    unset: Iterable[str],
    key_id: str = "AKIDEXAMPLE",
    secret: str = "not-a-real-secret",
) -> None:
    """Credentials that only an emulator accepts, and no variable that could point the
    client anywhere else."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    for var in unset:
        monkeypatch.delenv(var, raising=False)


def create_game(model: ServiceModel, region: str) -> str:
    """A Proton application in ``region``; returns its id."""
    return model.create_application(
        region=region,
        description="game",
        runtime={"Type": "PROTON", "Version": "20241007"},
        executable_path="game.exe",
        source_uri="s3://bucket/game",
    ).app_id


def create_group(
    model: ServiceModel, region: str, app_id: str, description: str, *locations: str
) -> str:
    """A gen4n_high group with primary ``region`` and ``locations`` (``region`` alone if none
    are given), each at always-on 2, target-idle 0, maximum 40; returns its id."""
    return model.create_stream_group(
        region=region,
        description=description,
        stream_class="gen4n_high",
        default_application_id=app_id,
        locations=[
            LocationConfigInput(loc, always_on=2, target_idle=0, maximum=40)
            for loc in locations or (region,)
        ],
    ).group_id
