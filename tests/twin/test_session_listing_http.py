"""ListStreamSessions(ByAccount) over HTTP, on the paged listing and the one-pass serializer.

The fast path must not change a byte of what the generic, model-derived serializer would
send, and a real aiobotocore walk must see each session once while sessions start and end
between pages.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.emulator import Emulator, _session_summary
from autoscaler.twin.model import LocationConfigInput
from autoscaler.twin.protocol import ServiceSpec, WireBody, _round_ms

RUNTIME = {"Type": "PROTON", "Version": "20241007"}


def _model_group(emulator: Emulator, clock: ManualClock, capacity: int = 40) -> tuple[str, str]:
    """(group id, application id) of an ACTIVE group with ``capacity`` ready slots."""
    model = emulator.model
    app = model.create_application(
        region="us-west-2",
        description="game",
        runtime=RUNTIME,
        executable_path="bin/game",
        source_uri="s3://bucket/game",
    )
    group = model.create_stream_group(
        region="us-west-2",
        description="group",
        stream_class="gen4n_high",
        default_application_id=app.app_id,
        locations=[LocationConfigInput("us-west-2", capacity, 0, capacity)],
    )
    clock.advance(600)
    return group.group_id, app.app_id


def test_the_one_pass_serializer_sends_what_the_generic_one_sends(spec: ServiceSpec) -> None:
    clock = ManualClock()
    emulator = Emulator(clock=clock, spec=spec)  # not started: no HTTP needed here
    gid, app_id = _model_group(emulator, clock)
    model = emulator.model
    model.start_stream_session(gid, application_identifier=app_id, user_id="p-1")
    clock.advance(0.123456)  # sub-millisecond times: rounded the same way
    model.start_stream_session(gid, application_identifier=app_id, end_after_s=3.3)
    clock.advance(10)  # CONNECTED and TERMINATED (StatusReason set)
    views, _ = model.list_stream_sessions_page(gid, limit=10)
    assert {v.status for v in views} == {"CONNECTED", "TERMINATED"}
    op = spec.operations["ListStreamSessions"]
    generic = spec.response(
        op, {"Items": [_session_summary(v) for v in views], "NextToken": "t"}, "r"
    )
    summary = emulator._api._summary
    fast = spec.response(op, WireBody(Items=[summary(v) for v in views], NextToken="t"), "r")
    assert fast == generic
    assert json.loads(fast.body)["Items"][0]["UserId"] == "p-1"
    with pytest.raises(ValueError, match="NoSuchMember"):
        spec.object_serializer("StreamSessionSummary", {"NoSuchMember": "arn"})


async def test_a_client_walk_sees_each_session_once_while_sessions_churn(
    client: Any, clock: ManualClock, emulator: Emulator, check_output: Any
) -> None:
    gid, app_id = _model_group(emulator, clock)
    model = emulator.model
    first = [
        model.start_stream_session(gid, application_identifier=app_id).session_id for _ in range(12)
    ]
    seen: list[str] = []
    started: list[str] = []
    token: str | None = None
    for _ in range(40):
        kwargs: dict[str, Any] = {"Identifier": gid, "MaxResults": 5}
        if token is not None:
            kwargs["NextToken"] = token
        page = check_output("ListStreamSessions", await client.list_stream_sessions(**kwargs))
        seen.extend(item["Arn"].rsplit("/", 1)[1] for item in page["Items"])
        token = page.get("NextToken")
        if token is None:
            break
        started.append(model.start_stream_session(gid, application_identifier=app_id).session_id)
        model.terminate_stream_session(gid, first[len(started)])  # ends; stays listed
        clock.advance(3)
    else:
        pytest.fail("the walk did not end")
    assert seen == first + started
    ended = await client.list_stream_sessions(Identifier=gid, Status="TERMINATED", MaxResults=2)
    assert len(ended["Items"]) == 2
    assert {item["StatusReason"] for item in ended["Items"]} == {"apiTerminated"}


async def test_account_listing_pages_across_groups(
    client: Any, clock: ManualClock, emulator: Emulator, check_output: Any
) -> None:
    groups = [_model_group(emulator, clock) for _ in range(3)]
    arns = [
        emulator.model.start_stream_session(gid, application_identifier=app_id).arn
        for _ in range(4)
        for gid, app_id in groups
    ]
    paginator = client.get_paginator("list_stream_sessions_by_account")
    pages = [
        check_output("ListStreamSessionsByAccount", page)
        async for page in paginator.paginate(PaginationConfig={"PageSize": 5})
    ]
    assert [len(page["Items"]) for page in pages] == [5, 5, 2]
    assert [item["Arn"] for page in pages for item in page["Items"]] == arns
    first = await client.list_stream_sessions_by_account(MaxResults=5)
    with pytest.raises(ClientError) as caught:  # a token is valid for its own listing only
        await client.list_stream_sessions(Identifier=groups[0][0], NextToken=first["NextToken"])
    assert caught.value.response["Error"]["Code"] == "ValidationException"


@given(st.floats(min_value=0.0, max_value=4e9, allow_nan=False, allow_infinity=False))
def test_timestamps_go_out_to_the_millisecond(seconds: float) -> None:
    sent = _round_ms(seconds)
    assert abs(sent - seconds) <= 0.0005 + 1e-6
    # At most a millisecond from round()'s answer (a half millisecond may go either way),
    # compared in whole milliseconds: at 2^23 s two doubles a millisecond apart differ by
    # 0.000999998, which no fixed tolerance on seconds accepts for every magnitude.
    assert abs(round(sent * 1000.0) - round(round(seconds, 3) * 1000.0)) <= 1
    decimals = repr(sent).split(".")[1]
    assert len(decimals) <= 3
