"""Contract: the real AWS CLI against the emulator, one family of operations per test (each
CLI start costs about a second, so the calls here are few and each one counts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.emulator import Emulator

pytestmark = [pytest.mark.cli, pytest.mark.slow]

Check = Callable[..., dict[str, Any]]
SERVICE_ERROR_EXIT = (254, 255)  # AWS CLI v2, v1
US = "LocationName=us-west-2,AlwaysOnCapacity=2,TargetIdleCapacity=2,MaximumCapacity=10"


async def ok(aws_cli: Any, *args: str) -> Any:
    result = await aws_cli(*args)
    assert result.code == 0, result.stderr
    return result.json()


async def test_groups_locations_and_sessions(
    aws_cli: Any, clock: ManualClock, emulator: Emulator, check_output: Check
) -> None:
    app = await ok(
        aws_cli,
        "create-application",
        "--description",
        "game",
        "--runtime-environment",
        "Type=PROTON,Version=20241007",
        "--executable-path",
        "bin/game",
        "--application-source-uri",
        "s3://bucket/game",
    )
    check_output("CreateApplication", app, cli=True)
    group = await ok(
        aws_cli,
        "create-stream-group",
        "--description",
        "group",
        "--stream-class",
        "gen4n_high",
        "--default-application-identifier",
        app["Id"],
        "--location-configurations",
        US,
    )
    check_output("CreateStreamGroup", group, cli=True)
    assert group["Status"] == "ACTIVATING"
    gid = group["Id"]
    clock.advance(600)

    updated = await ok(
        aws_cli,
        "update-stream-group",
        "--identifier",
        gid,
        "--location-configurations",
        US.replace("AlwaysOnCapacity=2", "AlwaysOnCapacity=4"),
    )
    check_output("UpdateStreamGroup", updated, cli=True)
    assert updated["LocationStates"][0]["AlwaysOnCapacity"] == 4

    added = await ok(
        aws_cli,
        "add-stream-group-locations",
        "--identifier",
        gid,
        "--location-configurations",
        "LocationName=eu-central-1,AlwaysOnCapacity=0,TargetIdleCapacity=2,MaximumCapacity=4",
    )
    check_output("AddStreamGroupLocations", added, cli=True)
    assert added["Locations"][0]["Status"] == "ACTIVATING"
    clock.advance(1200)

    session = await ok(
        aws_cli,
        "start-stream-session",
        "--identifier",
        gid,
        "--application-identifier",
        app["Id"],
        "--protocol",
        "WebRTC",
        "--signal-request",
        "offer",
        "--locations",
        "eu-central-1",
        "us-west-2",
    )
    check_output("StartStreamSession", session, cli=True)
    for _ in range(2):
        emulator.model.start_stream_session(gid, application_identifier=app["Id"])
    # --page-size 1: the CLI follows NextToken itself, three requests for three sessions
    listed = await ok(aws_cli, "list-stream-sessions", "--identifier", gid, "--page-size", "1")
    check_output("ListStreamSessions", listed, cli=True)
    assert len({s["Arn"] for s in listed["Items"]}) == 3
    assert emulator.calls["ListStreamSessions"].accepted == 3

    deleted = await aws_cli("delete-stream-group", "--identifier", gid)
    assert (deleted.code, deleted.stdout.strip()) == (0, "")
    assert emulator.model.get_stream_group(gid).status == "DELETING"


async def test_tags_and_errors(
    aws_cli: Any, clock: ManualClock, emulator: Emulator, check_output: Check
) -> None:
    group = emulator.model.create_stream_group(
        region="us-west-2", description="g", stream_class="gen4n_high"
    )
    tagged = await aws_cli("tag-resource", "--resource-arn", group.arn, "--tags", "team=a,env=dev")
    assert tagged.code == 0, tagged.stderr
    tags = await ok(aws_cli, "list-tags-for-resource", "--resource-arn", group.arn)
    check_output("ListTagsForResource", tags, cli=True)
    assert tags["Tags"] == {"team": "a", "env": "dev"}

    missing = await aws_cli("get-stream-group", "--identifier", "sg-missing")
    assert missing.code in SERVICE_ERROR_EXIT
    assert "(ResourceNotFoundException)" in missing.stderr
    assert "sg-missing" in missing.stderr

    # a status rule: the group is still ACTIVATING
    conflict = await aws_cli(
        "update-stream-group", "--identifier", group.group_id, "--description", "new"
    )
    assert conflict.code in SERVICE_ERROR_EXIT
    assert "(ConflictException)" in conflict.stderr
    assert "ACTIVATING" in conflict.stderr

    emulator.set_faults({"throttle_probability": {"ListStreamGroups": 1.0}})
    throttled = await aws_cli("list-stream-groups")
    assert throttled.code in SERVICE_ERROR_EXIT
    assert "(ThrottlingException)" in throttled.stderr
