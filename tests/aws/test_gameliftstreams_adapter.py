"""The aiobotocore adapter against the real HTTP emulator: real client, real wire protocol.

The emulator (``autoscaler.twin.emulator``) runs the shared service model behind aiohttp on a
manual clock; the adapter talks to it through ``endpoint_url`` with dummy credentials taken
from the environment (the default chain, as in production).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from autoscaler.aws.gameliftstreams import (
    AwsConverter,
    AwsGameLiftStreamsReader,
    GameLiftStreams,
    location_configuration,
    open_gameliftstreams,
    to_service_error,
)
from autoscaler.domain.clock import ManualClock
from autoscaler.domain.errors import (
    AccessDeniedError,
    ConflictError,
    FencedError,
    NotFoundError,
    QuotaExceededError,
    ServiceError,
    ServiceUnavailableError,
    ThrottledError,
    ValidationError,
)
from autoscaler.domain.models import CapacityModel, CapacitySetting
from autoscaler.limiter import RateLimiter
from autoscaler.sampling import Sampler
from autoscaler.twin.emulator import Emulator
from autoscaler.twin.model import LocationConfigInput, ServiceModel

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials through the default chain; no user config leaks in."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEMULATOR")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "emulator-secret")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    emu = Emulator(clock=ManualClock())
    await emu.start("127.0.0.1", 0)
    try:
        yield emu
    finally:
        await emu.stop()


def clock_of(emu: Emulator) -> ManualClock:
    assert isinstance(emu.clock, ManualClock)
    return emu.clock


def make_group(
    emu: Emulator,
    *,
    stream_class: str = "gen4n_high",
    locations: list[LocationConfigInput] | None = None,
) -> tuple[str, str]:
    """An ACTIVE group with a default application; returns (group id, application id)."""
    model: ServiceModel = emu.model
    app = model.create_application(
        region=REGION,
        description="game",
        runtime={"Type": "PROTON", "Version": "20241007"},
        executable_path="game.exe",
        source_uri="s3://bucket/game",
    )
    view = model.create_stream_group(
        region=REGION,
        description="arena",
        stream_class=stream_class,
        default_application_id=app.app_id,
        locations=locations
        or [LocationConfigInput(REGION, always_on=2, target_idle=2, maximum=10)],
        tags={"team": "arena"},
    )
    clock_of(emu).advance(900)  # group and extra locations activate, hosts provisioned
    model.advance()
    return view.group_id, app.app_id


async def test_get_stream_group_converts_to_domain_types(emulator: Emulator) -> None:
    gid, _ = make_group(
        emulator,
        locations=[
            LocationConfigInput(REGION, always_on=2, target_idle=2, maximum=10),
            LocationConfigInput("eu-central-1", always_on=0, target_idle=0, maximum=4),
        ],
    )
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url) as gls:
        state = await gls.reader.get_stream_group(gid)
        assert gls.calls == {"GetStreamGroup": 1}
    view = emulator.model.get_stream_group(gid)
    assert (state.group_id, state.arn, state.status) == (gid, view.arn, "ACTIVE")
    assert (state.stream_class, state.tenancy) == ("gen4n_high", 2)
    assert state.capacity_model is CapacityModel.CURRENT
    assert state.primary_location == REGION
    assert state.expires_at == pytest.approx(view.expires_at)
    assert state.created_at == pytest.approx(view.created_at)
    east = state.location(REGION)
    assert east is not None
    assert east.setting == CapacitySetting(always_on=2, target_idle=2, maximum=10)
    east_view = next(loc for loc in view.locations if loc.name == REGION)
    assert (east.status, east.allocated, east.idle) == (
        east_view.status,
        east_view.allocated,
        east_view.idle,
    )
    assert east.allocated >= 2
    eu = state.location("eu-central-1")
    assert eu is not None
    assert eu.setting == CapacitySetting(always_on=0, target_idle=0, maximum=4)


async def test_legacy_group_is_recognised_and_updated_with_the_pair(emulator: Emulator) -> None:
    gid, _ = make_group(emulator, locations=[LocationConfigInput(REGION, always_on=2, on_demand=4)])
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url, read_only=False) as gls:
        state = await gls.reader.get_stream_group(gid)
        assert state.capacity_model is CapacityModel.LEGACY
        assert state.locations[0].setting == CapacitySetting(always_on=2, on_demand=4)
        assert gls.writer is not None
        new = CapacitySetting(always_on=4, on_demand=6)
        after = await gls.writer.update_stream_group(gid, {REGION: new})
    assert after.locations[0].setting == new
    (loc,) = emulator.model.get_stream_group(gid).locations
    assert (loc.always_on, loc.on_demand, loc.maximum, loc.target_idle) == (4, 6, None, None)


async def test_update_sends_the_full_triple_for_every_location(emulator: Emulator) -> None:
    gid, _ = make_group(
        emulator,
        locations=[
            LocationConfigInput(REGION, always_on=2, target_idle=2, maximum=10),
            LocationConfigInput("eu-central-1", always_on=2, target_idle=0, maximum=4),
        ],
    )
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url, read_only=False) as gls:
        assert gls.writer is not None
        east = CapacitySetting(always_on=0, target_idle=4, maximum=8)
        eu = CapacitySetting(always_on=4, target_idle=2, maximum=6)
        state = await gls.writer.update_stream_group(gid, {REGION: east, "eu-central-1": eu})
        assert gls.calls == {"UpdateStreamGroup": 1}
    assert state.location(REGION).setting == east  # type: ignore[union-attr]
    views = {loc.name: loc for loc in emulator.model.get_stream_group(gid).locations}
    assert (views[REGION].always_on, views[REGION].target_idle, views[REGION].maximum) == (0, 4, 8)
    assert (views["eu-central-1"].always_on, views["eu-central-1"].maximum) == (4, 6)
    assert location_configuration("x", east) == {
        "LocationName": "x",
        "AlwaysOnCapacity": 0,
        "TargetIdleCapacity": 4,
        "MaximumCapacity": 8,
    }


async def test_add_and_remove_locations(emulator: Emulator) -> None:
    gid, _ = make_group(emulator)
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url, read_only=False) as gls:
        assert gls.writer is not None
        setting = CapacitySetting(always_on=0, target_idle=2, maximum=4)
        state = await gls.writer.add_stream_group_locations(gid, {"eu-central-1": setting})
        added = state.location("eu-central-1")
        assert added is not None
        assert added.status == "ACTIVATING"
        assert added.setting == setting
        assert gls.calls == {"AddStreamGroupLocations": 1, "GetStreamGroup": 1}
        with pytest.raises(ConflictError):  # still ACTIVATING: cannot be removed yet
            await gls.writer.remove_stream_group_locations(gid, ["eu-central-1"])
        clock_of(emulator).advance(900)
        await gls.writer.remove_stream_group_locations(gid, ["eu-central-1"])
        after = await gls.reader.get_stream_group(gid)
    gone = after.location("eu-central-1")
    assert gone is None or gone.status == "REMOVING"


async def test_a_retried_add_or_removal_that_had_landed_is_reported_landed(
    emulator: Emulator,
) -> None:
    """The reply to each call is lost after the service acted (a dropped connection): the SDK
    retries, the retry is refused (the group is updating its locations), yet the change is
    there. Without a client token on these calls, only reading the group back can tell."""
    gid, _ = make_group(emulator)
    emulator.set_faults(
        {
            "lost_reply_probability": {
                "AddStreamGroupLocations": 1.0,
                "RemoveStreamGroupLocations": 1.0,
            }
        }
    )
    setting = CapacitySetting(always_on=0, target_idle=2, maximum=4)
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url, read_only=False) as gls:
        assert gls.writer is not None
        state = await gls.writer.add_stream_group_locations(gid, {"eu-central-1": setting})
        added = state.location("eu-central-1")
        assert added is not None
        assert added.setting == setting
        assert gls.calls["AddStreamGroupLocations"] == 2  # the lost reply, the refused retry
        add_calls = emulator.calls["AddStreamGroupLocations"]
        assert (add_calls.lost_replies, add_calls.errors) == (1, 1)
        clock_of(emulator).advance(900)
        await gls.writer.remove_stream_group_locations(gid, ["eu-central-1"])
        assert gls.calls["RemoveStreamGroupLocations"] == 2
        assert emulator.calls["RemoveStreamGroupLocations"].lost_replies == 1
        assert emulator.calls.to_json()["total"]["lost_replies"] == 2
        after = await gls.reader.get_stream_group(gid)
    gone = after.location("eu-central-1")
    assert gone is None or gone.status == "REMOVING"


async def test_an_add_refused_for_a_location_set_otherwise_is_still_a_failure(
    emulator: Emulator,
) -> None:
    """Reading back only excuses a refusal when the group holds the location as asked: one
    added by someone else with other capacities is not our add."""
    gid, _ = make_group(emulator)
    other = LocationConfigInput("eu-central-1", always_on=2, target_idle=0, maximum=2)
    emulator.model.add_stream_group_locations(gid, [other])
    ours = CapacitySetting(always_on=0, target_idle=2, maximum=4)
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url, read_only=False) as gls:
        assert gls.writer is not None
        with pytest.raises(ConflictError):  # the group is still updating its locations
            await gls.writer.add_stream_group_locations(gid, {"eu-central-1": ours})
        clock_of(emulator).advance(900)
        with pytest.raises(ValidationError, match="already a location"):
            await gls.writer.add_stream_group_locations(gid, {"eu-central-1": ours})
        # A removal is judged by its outcome alike: a location the group does not have is
        # refused by the service, and is as removed as asked.
        await gls.writer.remove_stream_group_locations(gid, ["ap-northeast-1"])
        assert emulator.calls["RemoveStreamGroupLocations"].errors == 1


async def test_an_add_whose_last_reply_was_lost_is_reported_landed(emulator: Emulator) -> None:
    """No retry left (max_attempts 1): the 500 itself is the failure; the group tells."""
    gid, _ = make_group(emulator)
    emulator.set_faults({"lost_reply_probability": {"AddStreamGroupLocations": 1.0}})
    setting = CapacitySetting(always_on=0, target_idle=2, maximum=4)
    async with open_gameliftstreams(
        REGION, endpoint_url=emulator.url, read_only=False, max_attempts=1
    ) as gls:
        assert gls.writer is not None
        state = await gls.writer.add_stream_group_locations(gid, {"eu-central-1": setting})
        assert gls.calls["AddStreamGroupLocations"] == 1
    added = state.location("eu-central-1")
    assert added is not None
    assert added.setting == setting


async def test_an_add_refused_while_the_location_is_being_removed_is_a_failure(
    emulator: Emulator,
) -> None:
    """Same name, same capacities, but REMOVING: the add did not land."""
    gid, _ = make_group(emulator)
    setting = CapacitySetting(always_on=0, target_idle=2, maximum=4)
    config = LocationConfigInput("eu-central-1", always_on=0, target_idle=2, maximum=4)
    emulator.model.add_stream_group_locations(gid, [config])
    clock_of(emulator).advance(900)
    emulator.model.remove_stream_group_locations(gid, ["eu-central-1"])
    removing = emulator.model.get_stream_group(gid)
    assert [loc.status for loc in removing.locations if loc.name == "eu-central-1"] == ["REMOVING"]
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url, read_only=False) as gls:
        assert gls.writer is not None
        with pytest.raises(ConflictError):
            await gls.writer.add_stream_group_locations(gid, {"eu-central-1": setting})


async def test_a_refused_add_whose_group_cannot_be_read_keeps_its_own_error(
    emulator: Emulator,
) -> None:
    gid, _ = make_group(emulator)
    emulator.model.add_stream_group_locations(
        gid, [LocationConfigInput("eu-central-1", always_on=2, target_idle=0, maximum=2)]
    )
    clock_of(emulator).advance(900)
    emulator.set_faults({"error_probability": {"GetStreamGroup": 1.0}})
    ours = CapacitySetting(always_on=0, target_idle=2, maximum=4)
    async with open_gameliftstreams(
        REGION, endpoint_url=emulator.url, read_only=False, max_attempts=1
    ) as gls:
        assert gls.writer is not None
        with pytest.raises(ValidationError, match=r"AddStreamGroupLocations: .*already a location"):
            await gls.writer.add_stream_group_locations(gid, {"eu-central-1": ours})
        assert gls.calls["GetStreamGroup"] == 1  # it tried to read the group back


async def test_sessions_are_paginated_and_converted(emulator: Emulator) -> None:
    gid, app = make_group(emulator)
    for _ in range(130):
        emulator.model.start_stream_session(gid, application_identifier=app)
    clock_of(emulator).advance(10)
    limiter = RateLimiter(time=lambda: 0.0, sleep=_no_sleep)
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url, limiter=limiter) as gls:
        sessions = await gls.reader.list_stream_sessions(gid)
        assert gls.calls == {"ListStreamSessions": 2}  # 100 + 30
        assert limiter.granted["ListStreamSessions"] == 2  # one token per page
        waiting = await gls.reader.list_stream_sessions(gid, status="ACTIVATING")
    assert len(sessions) == 130
    assert len({s.arn for s in sessions}) == 130
    statuses = {s.status for s in sessions}
    assert statuses <= {"ACTIVATING", "ACTIVE", "CONNECTED", "ERROR"}
    assert waiting
    assert all(s.status == "ACTIVATING" for s in waiting)
    assert all(s.location == REGION for s in sessions if s.status == "CONNECTED")
    assert all(s.created_at > 1_700_000_000 for s in sessions)


async def _no_sleep(_: float) -> None:
    return None


async def test_list_groups_and_tags(emulator: Emulator) -> None:
    gid, _ = make_group(emulator)
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url) as gls:
        (summary,) = await gls.reader.list_stream_groups()
        tags = await gls.reader.list_tags(summary.arn)
    assert (summary.group_id, summary.status, summary.stream_class) == (gid, "ACTIVE", "gen4n_high")
    assert tags == {"team": "arena"}


async def test_errors_are_mapped_to_the_domain_tree(emulator: Emulator) -> None:
    gid, _ = make_group(emulator)
    async with open_gameliftstreams(
        REGION, endpoint_url=emulator.url, max_attempts=1, read_only=False
    ) as gls:
        with pytest.raises(NotFoundError, match="GetStreamGroup"):
            await gls.reader.get_stream_group("sg-doesnotexist")
        assert gls.writer is not None
        with pytest.raises(ValidationError, match="multiple of 2"):
            await gls.writer.update_stream_group(
                gid, {REGION: CapacitySetting(always_on=3, target_idle=0, maximum=10)}
            )
        emulator.set_faults({"throttle_probability": {"ListStreamSessions": 1.0}})
        with pytest.raises(ThrottledError):
            await gls.reader.list_stream_sessions(gid)
        emulator.set_faults({"error_probability": {"GetStreamGroup": 1.0}})
        with pytest.raises(ServiceUnavailableError):
            await gls.reader.get_stream_group(gid)


async def test_retries_take_tokens_and_are_counted(emulator: Emulator) -> None:
    gid, _ = make_group(emulator)
    emulator.set_faults({"throttle_probability": {"GetStreamGroup": 1.0}})
    limiter = RateLimiter(time=lambda: 0.0, sleep=_no_sleep)
    async with open_gameliftstreams(
        REGION, endpoint_url=emulator.url, max_attempts=2, limiter=limiter
    ) as gls:
        with pytest.raises(ThrottledError):
            await gls.reader.get_stream_group(gid)
        assert gls.calls == {"GetStreamGroup": 2}
    assert limiter.granted["GetStreamGroup"] == 2


async def test_unreachable_endpoint_is_service_unavailable(emulator: Emulator) -> None:
    url = emulator.url
    await emulator.stop()
    async with open_gameliftstreams(
        REGION, endpoint_url=url, max_attempts=1, connect_timeout_s=1.0
    ) as gls:
        with pytest.raises(ServiceUnavailableError):
            await gls.reader.get_stream_group("sg-1")


async def test_read_only_has_no_writer_and_the_reader_no_way_to_write(emulator: Emulator) -> None:
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url) as gls:
        assert isinstance(gls, GameLiftStreams)
        assert gls.writer is None
        reader = gls.reader
        names = {n for n in dir(reader) if not n.startswith("__")}
        assert not {n for n in names if any(w in n for w in ("update", "add", "remove"))}
        assert "_client" not in names
        with pytest.raises(ValueError, match="not a read-only"):
            reader._ops.get_paginator("list_applications")


async def test_sampler_end_to_end_over_http(emulator: Emulator) -> None:
    gid, app = make_group(emulator)
    clock = clock_of(emulator)
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url) as gls:
        sampler = Sampler(gls.reader, max_concurrency=4, clock=clock)
        (first,) = await sampler.sample([gid], {})
        clock.advance(1)  # created at first.at exactly would belong to the first window
        for _ in range(3):
            emulator.model.start_stream_session(gid, application_identifier=app)
        clock.advance(29)
        (second,) = await sampler.sample([gid], {gid: first.at})
        (missing,) = await sampler.sample(["sg-nothere1"], {})
    assert first.complete
    assert second.complete
    (loc,) = second.locations
    assert loc.arrivals == 3
    assert loc.in_use + loc.waiting == 3
    assert missing.problems == ("group not found",)
    assert gls.calls == {"GetStreamGroup": 3, "ListStreamSessions": 2}


def test_converter_tolerates_missing_fields_and_unknown_values(
    caplog: pytest.LogCaptureFixture,
) -> None:
    convert = AwsConverter()
    raw = {
        "Arn": "arn:aws:gameliftstreams:eu-west-1:123456789012:streamgroup/sg-X",
        "StreamClass": "gen9z_mega",
        "Status": "HIBERNATING",
        "LocationStates": [
            {"LocationName": "eu-west-1", "Status": "NEWSTATE", "AlwaysOnCapacity": 2},
            {"LocationName": "us-east-1", "AlwaysOnCapacity": 1, "OnDemandCapacity": 3},
        ],
    }
    with caplog.at_level("WARNING"):
        state = convert.group(raw)
        convert.group(raw)
    assert (state.group_id, state.status, state.tenancy) == ("sg-X", "HIBERNATING", 1)
    assert state.primary_location == "eu-west-1"
    assert state.capacity_model is CapacityModel.LEGACY
    first, second = state.locations
    assert (first.status, first.setting) == ("NEWSTATE", CapacitySetting(2, 0, 2))
    assert second.setting == CapacitySetting(always_on=1, on_demand=3)
    assert sum("gen9z_mega" in r.getMessage() for r in caplog.records) == 1  # once per class
    session = convert.session({"Arn": "s", "Status": "ACTIVE"})
    assert (session.created_at, session.last_updated_at, session.location) == (0.0, 0.0, None)


def test_reader_constructed_directly_exposes_only_reads() -> None:
    class Client:
        def get_stream_group(self) -> None: ...
        def list_tags_for_resource(self) -> None: ...
        def get_paginator(self, name: str) -> str:
            return name

        def update_stream_group(self) -> None: ...

    reader = AwsGameLiftStreamsReader(Client())
    assert not hasattr(reader, "update_stream_group")
    assert reader._ops.get_paginator("list_stream_sessions") == "list_stream_sessions"


async def test_a_failed_second_page_fails_the_whole_listing(emulator: Emulator) -> None:
    gid, app = make_group(emulator)
    for _ in range(120):
        emulator.model.start_stream_session(gid, application_identifier=app)
    # one request per (frozen) simulated second: page 1 passes, page 2 is throttled
    emulator.set_faults({"rate_limits": {"ListStreamSessions": 1.0}})
    async with open_gameliftstreams(REGION, endpoint_url=emulator.url, max_attempts=1) as gls:
        with pytest.raises(ThrottledError):
            await gls.reader.list_stream_sessions(gid)
        assert gls.calls == {"ListStreamSessions": 2}


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": "msg"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "GetStreamGroup")


def test_error_mapping_by_code_then_status() -> None:
    cases: list[tuple[BaseException, type[ServiceError]]] = [
        (_client_error("ConflictException", 409), ConflictError),
        (_client_error("ServiceQuotaExceededException", 402), QuotaExceededError),
        (_client_error("UnrecognizedClientException", 403), AccessDeniedError),
        (_client_error("SomethingNew", 429), ThrottledError),
        (_client_error("SomethingNew", 502), ServiceUnavailableError),
        (NoCredentialsError(), AccessDeniedError),
        (TimeoutError(), ServiceUnavailableError),
        (EndpointConnectionError(endpoint_url="http://x"), ServiceUnavailableError),
    ]
    for exc, expected in cases:
        mapped = to_service_error("GetStreamGroup", exc)
        assert type(mapped) is expected, exc
        assert mapped.message.startswith("GetStreamGroup")


async def test_a_retry_after_the_lease_is_lost_is_not_sent(emulator: Emulator) -> None:
    """HA fencing on every attempt: the actuator checks the lease once, but botocore retries a
    5xx (or a read timeout) seconds later, when the lease may have passed to another replica.
    Each attempt of a write is checked as it leaves; reads are never fenced."""
    gid, _ = make_group(emulator)
    emulator.set_faults({"error_probability": {"UpdateStreamGroup": 1.0}})
    leading = {"checks_left": 1}

    def fence() -> bool:
        leading["checks_left"] -= 1
        return leading["checks_left"] >= 0

    setting = {REGION: CapacitySetting(always_on=4, target_idle=2, maximum=10)}
    async with open_gameliftstreams(
        REGION, endpoint_url=emulator.url, max_attempts=3, read_only=False, fence=fence
    ) as gls:
        assert gls.writer is not None
        with pytest.raises(FencedError, match="not sent"):
            await gls.writer.update_stream_group(gid, setting)
        assert gls.calls == {"UpdateStreamGroup": 1}  # the first attempt only
        await gls.reader.get_stream_group(gid)  # a read passes whatever the lease
    # without a fence the same client sends all three attempts
    async with open_gameliftstreams(
        REGION, endpoint_url=emulator.url, max_attempts=3, read_only=False
    ) as gls:
        assert gls.writer is not None
        with pytest.raises(ServiceUnavailableError):
            await gls.writer.update_stream_group(gid, setting)
        assert gls.calls == {"UpdateStreamGroup": 3}


async def test_a_session_listed_on_two_pages_counts_once() -> None:
    """The service lists in no particular order: a session whose status changed during the
    walk may come back on a later page; it is one session, the newer entry wins."""
    pages = [
        {"Items": [{"Arn": "s1", "Status": "ACTIVATING", "LastUpdatedAt": 10.0}]},
        {
            "Items": [
                {"Arn": "s2", "Status": "CONNECTED", "LastUpdatedAt": 11.0},
                {"Arn": "s1", "Status": "CONNECTED", "LastUpdatedAt": 12.0},
            ]
        },
    ]

    class Pages:
        def paginate(self, **params: Any) -> Any:
            async def walk() -> Any:
                for page in pages:
                    yield page

            return walk()

    class Client:
        def get_stream_group(self) -> None: ...
        def list_tags_for_resource(self) -> None: ...
        def get_paginator(self, name: str) -> Pages:
            return Pages()

    listed = await AwsGameLiftStreamsReader(Client()).list_stream_sessions("sg-1")
    assert sorted((s.arn, s.status) for s in listed) == [("s1", "CONNECTED"), ("s2", "CONNECTED")]
