"""Contract: every implemented operation through the real aiobotocore client, each response
checked against botocore's output shape, each error code and each status rule."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.emulator import Emulator

Check = Callable[..., dict[str, Any]]
RUNTIME = {"Type": "PROTON", "Version": "20241007"}


async def make_app(client: Any, description: str = "game") -> dict[str, Any]:
    result: dict[str, Any] = await client.create_application(
        Description=description,
        RuntimeEnvironment=RUNTIME,
        ExecutablePath="bin/game",
        ApplicationSourceUri="s3://bucket/game",
    )
    return result


async def make_group(
    client: Any,
    clock: ManualClock,
    app_id: str | None = None,
    *,
    capacity: tuple[int, int, int] = (2, 2, 10),
    activate: bool = True,
) -> dict[str, Any]:
    always_on, idle, maximum = capacity
    kwargs: dict[str, Any] = {
        "Description": "group",
        "StreamClass": "gen4n_high",
        "LocationConfigurations": [
            {
                "LocationName": "us-west-2",
                "AlwaysOnCapacity": always_on,
                "TargetIdleCapacity": idle,
                "MaximumCapacity": maximum,
            }
        ],
    }
    if app_id is not None:
        kwargs["DefaultApplicationIdentifier"] = app_id
    group: dict[str, Any] = await client.create_stream_group(**kwargs)
    if activate:
        clock.advance(600)  # group activation and the first hosts
    return group


async def expect_error(call: Any, code: str, status: int, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        await call(**kwargs)
    error = caught.value.response
    assert error["Error"]["Code"] == code
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    message: str = error["Error"]["Message"]
    assert message
    return message


# --- applications ------------------------------------------------------------------------------
async def test_applications(client: Any, clock: ManualClock, check_output: Check) -> None:
    app = check_output("CreateApplication", await make_app(client))
    assert app["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert app["Arn"].startswith("arn:aws:gameliftstreams:us-west-2:123456789012:application/")
    assert app["RuntimeEnvironment"] == RUNTIME
    clock.advance(1)
    await make_app(client, "second")
    got = check_output("GetApplication", await client.get_application(Identifier=app["Arn"]))
    assert (got["Id"], got["Status"]) == (app["Id"], "READY")
    paginator = client.get_paginator("list_applications")
    pages = [check_output("ListApplications", p) async for p in paginator.paginate(MaxResults=1)]
    assert [item["Description"] for p in pages for item in p["Items"]] == ["game", "second"]
    await expect_error(
        client.get_application, "ResourceNotFoundException", 404, Identifier="a-missing"
    )


# --- stream groups -----------------------------------------------------------------------------
async def test_stream_group_lifecycle(client: Any, clock: ManualClock, check_output: Check) -> None:
    app = await make_app(client)
    created = check_output(
        "CreateStreamGroup", await make_group(client, clock, app["Id"], activate=False)
    )
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert created["Status"] == "ACTIVATING"
    assert created["DefaultApplication"] == {"Id": app["Id"], "Arn": app["Arn"]}
    assert created["ExpiresAt"] > created["CreatedAt"]
    gid = created["Id"]
    clock.advance(600)
    group = check_output("GetStreamGroup", await client.get_stream_group(Identifier=gid))
    assert group["Status"] == "ACTIVE"
    [state] = group["LocationStates"]
    assert state["LocationName"] == "us-west-2"
    assert (state["AlwaysOnCapacity"], state["TargetIdleCapacity"]) == (2, 2)
    assert state["AllocatedCapacity"] >= 2
    assert group["AssociatedApplications"] == [app["Arn"]]

    updated = check_output(
        "UpdateStreamGroup",
        await client.update_stream_group(
            Identifier=group["Arn"],
            Description="renamed",
            LocationConfigurations=[
                {
                    "LocationName": "us-west-2",
                    "AlwaysOnCapacity": 4,
                    "TargetIdleCapacity": 2,
                    "MaximumCapacity": 12,
                }
            ],
        ),
    )
    assert updated["Description"] == "renamed"
    assert updated["LocationStates"][0]["AlwaysOnCapacity"] == 4

    listed = check_output("ListStreamGroups", await client.list_stream_groups())
    assert [item["Id"] for item in listed["Items"]] == [gid]

    deleted = await client.delete_stream_group(Identifier=gid)
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    again = await client.get_stream_group(Identifier=gid)
    assert again["Status"] == "DELETING"
    await expect_error(client.delete_stream_group, "ConflictException", 409, Identifier=gid)
    clock.advance(3600)
    await expect_error(client.get_stream_group, "ResourceNotFoundException", 404, Identifier=gid)


async def test_locations_add_scale_and_remove(
    client: Any, clock: ManualClock, check_output: Check
) -> None:
    gid = (await make_group(client, clock))["Id"]
    eu = {
        "LocationName": "eu-central-1",
        "AlwaysOnCapacity": 0,
        "TargetIdleCapacity": 2,
        "MaximumCapacity": 4,
    }
    added = check_output(
        "AddStreamGroupLocations",
        await client.add_stream_group_locations(Identifier=gid, LocationConfigurations=[eu]),
    )
    assert added["Identifier"].endswith(f"streamgroup/{gid}")
    assert [(s["LocationName"], s["Status"]) for s in added["Locations"]] == [
        ("eu-central-1", "ACTIVATING")
    ]
    # while a location is ACTIVATING the group is UPDATING_LOCATIONS: nothing can be scaled
    # (not that location, not the others), nor removed
    group = await client.get_stream_group(Identifier=gid)
    assert group["Status"] == "UPDATING_LOCATIONS"
    for location in (eu, {**eu, "LocationName": "us-west-2"}):
        message = await expect_error(
            client.update_stream_group,
            "ConflictException",
            409,
            Identifier=gid,
            LocationConfigurations=[location],
        )
        assert "UPDATING_LOCATIONS" in message
    await expect_error(
        client.remove_stream_group_locations,
        "ConflictException",
        409,
        Identifier=gid,
        Locations=["eu-central-1"],
    )
    clock.advance(1200)
    group = await client.get_stream_group(Identifier=gid)
    assert {s["LocationName"]: s["Status"] for s in group["LocationStates"]} == {
        "us-west-2": "ACTIVE",
        "eu-central-1": "ACTIVE",
    }
    await client.update_stream_group(Identifier=gid, LocationConfigurations=[eu])
    message = await expect_error(
        client.remove_stream_group_locations,
        "ValidationException",
        400,
        Identifier=gid,
        Locations=["us-west-2"],
    )
    assert "primary" in message
    removed = await client.remove_stream_group_locations(Identifier=gid, Locations=["eu-central-1"])
    assert removed["ResponseMetadata"]["HTTPStatusCode"] == 204
    group = await client.get_stream_group(Identifier=gid)
    states = {s["LocationName"]: s["Status"] for s in group["LocationStates"]}
    assert states["eu-central-1"] == "REMOVING"


async def test_updates_and_location_changes_require_an_active_group(
    client: Any, clock: ManualClock
) -> None:
    gid = (await make_group(client, clock, activate=False))["Id"]
    location = {"LocationName": "us-west-2", "AlwaysOnCapacity": 2}
    for call, kwargs in (
        (client.update_stream_group, {"LocationConfigurations": [location]}),
        (
            client.add_stream_group_locations,
            {"LocationConfigurations": [{"LocationName": "eu-west-1"}]},
        ),
        (client.remove_stream_group_locations, {"Locations": ["eu-west-1"]}),
    ):
        message = await expect_error(call, "ConflictException", 409, Identifier=gid, **kwargs)
        assert "ACTIVATING" in message


async def test_expired_groups_are_read_only(
    client: Any, clock: ManualClock, emulator: Emulator
) -> None:
    app = await make_app(client)
    gid = (await make_group(client, clock, app["Id"]))["Id"]
    emulator.model.force_group_status(gid, "EXPIRED")
    group = await client.get_stream_group(Identifier=gid)
    assert group["Status"] == "EXPIRED"
    await expect_error(
        client.update_stream_group, "ValidationException", 400, Identifier=gid, Description="x"
    )
    await expect_error(
        client.add_stream_group_locations,
        "ValidationException",
        400,
        Identifier=gid,
        LocationConfigurations=[{"LocationName": "eu-west-1"}],
    )
    await expect_error(
        client.start_stream_session,
        "ValidationException",
        400,
        Identifier=gid,
        ApplicationIdentifier=app["Id"],
        Protocol="WebRTC",
        SignalRequest="offer",
    )
    await expect_error(
        client.associate_applications,
        "ValidationException",
        400,
        Identifier=gid,
        ApplicationIdentifiers=[app["Id"]],
    )


async def test_associate_applications(client: Any, clock: ManualClock, check_output: Check) -> None:
    gid = (await make_group(client, clock))["Id"]
    apps = [await make_app(client, name) for name in ("one", "two")]
    result = check_output(
        "AssociateApplications",
        await client.associate_applications(
            Identifier=gid, ApplicationIdentifiers=[a["Id"] for a in apps]
        ),
    )
    assert result["ApplicationArns"] == [a["Arn"] for a in apps]
    assert result["Arn"].endswith(gid)
    got = await client.get_application(Identifier=apps[0]["Id"])
    assert got["AssociatedStreamGroups"] == [result["Arn"]]


# --- sessions ----------------------------------------------------------------------------------
async def test_sessions(client: Any, clock: ManualClock, check_output: Check) -> None:
    app = await make_app(client)
    gid = (await make_group(client, clock, app["Id"], capacity=(2, 0, 2)))["Id"]
    started = check_output(
        "StartStreamSession",
        await client.start_stream_session(
            Identifier=gid,
            ApplicationIdentifier=app["Id"],
            Protocol="WebRTC",
            SignalRequest="offer",
            UserId="player-1",
            Locations=["us-west-2"],
        ),
    )
    assert started["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert started["Status"] == "ACTIVATING"
    assert started["StreamGroupId"] == gid
    sid = started["Arn"].rsplit("/", 1)[1]
    clock.advance(30)
    got = check_output(
        "GetStreamSession",
        await client.get_stream_session(Identifier=gid, StreamSessionIdentifier=sid),
    )
    assert (got["Status"], got["Location"], got["UserId"]) == ("CONNECTED", "us-west-2", "player-1")

    for _ in range(3):  # two slots only: the third and fourth starts wait
        await client.start_stream_session(
            Identifier=gid, ApplicationIdentifier=app["Id"], Protocol="WebRTC", SignalRequest="o"
        )
    waiting = check_output(
        "ListStreamSessions",
        await client.list_stream_sessions(Identifier=gid, Status="ACTIVATING"),
    )
    assert [s["Status"] for s in waiting["Items"]] == ["ACTIVATING"] * 3
    everything = check_output(
        "ListStreamSessionsByAccount", await client.list_stream_sessions_by_account()
    )
    assert len(everything["Items"]) == 4
    exported = await client.list_stream_sessions(Identifier=gid, ExportFilesStatus="SUCCEEDED")
    assert exported["Items"] == []

    terminated = await client.terminate_stream_session(
        Identifier=gid, StreamSessionIdentifier=started["Arn"]
    )
    assert terminated["ResponseMetadata"]["HTTPStatusCode"] == 204
    clock.advance(120)  # TERMINATED frees a slot for one; the other times out
    ended = await client.list_stream_sessions(Identifier=gid, Status="TERMINATED")
    assert [s["StatusReason"] for s in ended["Items"]] == ["apiTerminated"]
    failed = await client.list_stream_sessions(Identifier=gid, Status="ERROR")
    assert [s["StatusReason"] for s in failed["Items"]] == ["placementTimeout"]
    await expect_error(
        client.get_stream_session,
        "ResourceNotFoundException",
        404,
        Identifier=gid,
        StreamSessionIdentifier="nope",
    )


async def test_session_pagination(
    client: Any, clock: ManualClock, emulator: Emulator, make_client: Any
) -> None:
    app = await make_app(client)
    gid = (await make_group(client, clock, app["Id"], capacity=(0, 0, 0)))["Id"]
    other = (await make_group(client, clock, app["Id"]))["Id"]
    for index in range(27):
        emulator.model.start_stream_session(gid, application_identifier=app["Id"])
        if index % 4 == 0:
            clock.advance(1)
    paginator = client.get_paginator("list_stream_sessions")
    pages = [p async for p in paginator.paginate(Identifier=gid, PaginationConfig={"PageSize": 5})]
    arns = [s["Arn"] for p in pages for s in p["Items"]]
    assert len(pages) == 6
    assert len(arns) == len(set(arns)) == 27
    first = await client.list_stream_sessions(Identifier=gid, MaxResults=5)
    token = first["NextToken"]
    for kwargs in (
        {"Identifier": other, "NextToken": token},  # a token of another listing
        {"Identifier": gid, "NextToken": token, "Status": "ACTIVE"},
        {"Identifier": gid, "NextToken": "not-a-token"},
    ):
        message = await expect_error(
            client.list_stream_sessions, "ValidationException", 400, **kwargs
        )
        assert "NextToken" in message
    default = await client.list_stream_sessions(Identifier=gid)
    assert len(default["Items"]) == 25  # the model's default MaxResults
    async with make_client(parameter_validation=False) as raw:
        for bad in (0, 101):
            message = await expect_error(
                raw.list_stream_sessions, "ValidationException", 400, Identifier=gid, MaxResults=bad
            )
            assert "MaxResults" in message


# --- tags ----------------------------------------------------------------------------------------
async def test_tags(client: Any, clock: ManualClock, check_output: Check) -> None:
    arn = (await make_group(client, clock, activate=False))["Arn"]
    check_output(
        "TagResource", await client.tag_resource(ResourceArn=arn, Tags={"team": "a", "env": "dev"})
    )
    check_output("UntagResource", await client.untag_resource(ResourceArn=arn, TagKeys=["env"]))
    tags = check_output("ListTagsForResource", await client.list_tags_for_resource(ResourceArn=arn))
    assert tags["Tags"] == {"team": "a"}
    missing = arn.replace("streamgroup/sg-", "streamgroup/sg-x")
    await expect_error(
        client.list_tags_for_resource, "ResourceNotFoundException", 404, ResourceArn=missing
    )


# --- protocol-level behaviour ------------------------------------------------------------------
async def test_region_comes_from_the_signature(
    make_client: Any, clock: ManualClock, check_output: Check
) -> None:
    async with make_client(region="eu-central-1") as frankfurt:
        app = await make_app(frankfurt)
        group = check_output("CreateStreamGroup", await make_group(frankfurt, clock, app["Id"]))
    assert ":eu-central-1:" in group["Arn"]
    assert group["LocationStates"][0]["LocationName"] == "eu-central-1"


async def test_server_side_validation_names_the_field(make_client: Any) -> None:
    async with make_client(parameter_validation=False) as raw:
        message = await expect_error(
            raw.create_stream_group,
            "ValidationException",
            400,
            Description="x" * 81,
            StreamClass="gen4n_high",
        )
    assert "'Description'" in message
    assert "length less than or equal to 80" in message


async def test_client_token_makes_creation_idempotent(client: Any) -> None:
    token = "t" * 40
    kwargs = {"Description": "g", "StreamClass": "gen4n_high", "ClientToken": token}
    first = await client.create_stream_group(**kwargs)
    second = await client.create_stream_group(**kwargs)
    assert first["Arn"] == second["Arn"]
    assert len((await client.list_stream_groups())["Items"]) == 1
    kwargs["Description"] = "other"
    await expect_error(client.create_stream_group, "ConflictException", 409, **kwargs)


async def test_an_operation_the_emulator_lacks_says_so(client: Any) -> None:
    message = await expect_error(
        client.get_stream_url,
        "ValidationException",
        400,
        Identifier="sg-1",
        StreamUrlIdentifier="u-1",
    )
    assert message == "operation GetStreamUrl is not implemented by the emulator"


async def test_throttling_and_server_errors_reach_the_client(
    client: Any, emulator: Emulator
) -> None:
    emulator.set_faults({"throttle_probability": {"ListStreamGroups": 1.0}})
    await expect_error(client.list_stream_groups, "ThrottlingException", 429)
    emulator.set_faults({"throttle_probability": {}, "error_probability": 1.0})
    await expect_error(client.list_stream_groups, "InternalServerException", 500)
