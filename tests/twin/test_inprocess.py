"""The in-process adapter: domain types out, full capacity triples in, errors passed through."""

from __future__ import annotations

import pytest

from autoscaler.domain.clock import ManualClock
from autoscaler.domain.errors import ConflictError, NotFoundError, ValidationError
from autoscaler.domain.models import CapacityModel, CapacitySetting
from autoscaler.domain.ports import StreamGroupReader, StreamGroupWriter
from autoscaler.twin.inprocess import InProcessGameLiftStreams, InProcessReader
from autoscaler.twin.model import LocationConfigInput, ModelParams, ServiceModel

REGION = "us-east-1"
OTHER = "eu-central-1"


def _world(
    locations: list[LocationConfigInput], stream_class: str = "gen4n_high"
) -> tuple[ServiceModel, ManualClock, str, str]:
    clock = ManualClock()
    model = ServiceModel(clock=clock, seed=1, params=ModelParams(provisioning_sigma=0.0))
    app = model.create_application(
        region=REGION, description="", runtime={}, executable_path="g", source_uri="s3://b/g"
    )
    group = model.create_stream_group(
        region=REGION,
        description="d",
        stream_class=stream_class,
        default_application_id=app.app_id,
        locations=locations,
        tags={"team": "a"},
    )
    clock.advance(200)  # active, floor provisioned
    return model, clock, group.group_id, app.app_id


async def test_group_state_conversion_current_model() -> None:
    model, _, gid, _ = _world([LocationConfigInput(REGION, always_on=4, target_idle=2, maximum=10)])
    api = InProcessGameLiftStreams(model, REGION)
    state = await api.get_stream_group(gid)
    assert state.group_id == gid
    assert (state.status, state.tenancy, state.stream_class) == ("ACTIVE", 2, "gen4n_high")
    assert state.capacity_model is CapacityModel.CURRENT
    assert state.primary_location == REGION
    assert state.tags == {"team": "a"}
    assert state.expires_at is not None
    (loc,) = state.locations
    assert loc.setting == CapacitySetting(always_on=4, target_idle=2, maximum=10)
    assert loc.setting.on_demand is None
    # the floor (4) already leaves 4 ≥ target-idle (2) idle: no extra host
    assert (loc.requested, loc.allocated, loc.idle, loc.in_use) == (4, 4, 4, 0)
    summaries = await api.list_stream_groups()
    assert [(s.group_id, s.status) for s in summaries] == [(gid, "ACTIVE")]
    assert await InProcessReader(model, "ap-south-1").list_stream_groups() == []
    assert await api.list_tags(state.arn) == {"team": "a"}


async def test_legacy_detection_and_legacy_update_sends_the_pair() -> None:
    model, _, gid, _ = _world([LocationConfigInput(REGION, always_on=2, on_demand=4)])
    api = InProcessGameLiftStreams(model, REGION)
    state = await api.get_stream_group(gid)
    assert state.capacity_model is CapacityModel.LEGACY
    assert state.locations[0].setting == CapacitySetting(always_on=2, on_demand=4)
    assert state.locations[0].setting.ceiling == 6
    state = await api.update_stream_group(gid, {REGION: CapacitySetting(always_on=4, on_demand=2)})
    assert state.locations[0].setting == CapacitySetting(always_on=4, on_demand=2)
    assert state.capacity_model is CapacityModel.LEGACY


async def test_update_sends_the_full_triple() -> None:
    model, _, gid, _ = _world([LocationConfigInput(REGION, always_on=2, target_idle=2, maximum=8)])
    api = InProcessGameLiftStreams(model, REGION)
    setting = CapacitySetting(always_on=4, target_idle=4, maximum=12)
    state = await api.update_stream_group(gid, {REGION: setting})
    assert state.locations[0].setting == setting
    view = model.get_stream_group(gid).locations[0]
    assert (view.always_on, view.target_idle, view.maximum, view.on_demand) == (4, 4, 12, None)
    assert api.counts == {"UpdateStreamGroup": 1}


async def test_add_and_remove_locations() -> None:
    model, clock, gid, _ = _world([LocationConfigInput(REGION, always_on=2, maximum=2)])
    api = InProcessGameLiftStreams(model, REGION)
    state = await api.add_stream_group_locations(
        gid, {OTHER: CapacitySetting(always_on=0, target_idle=2, maximum=4)}
    )
    assert state.status == "UPDATING_LOCATIONS"
    other = state.location(OTHER)
    assert other is not None
    assert other.status == "ACTIVATING"
    assert other.setting == CapacitySetting(always_on=0, target_idle=2, maximum=4)
    clock.advance(600)
    await api.remove_stream_group_locations(gid, [OTHER])
    state = await api.get_stream_group(gid)
    removing = state.location(OTHER)
    assert removing is not None
    assert removing.status == "REMOVING"
    assert api.counts == {
        "AddStreamGroupLocations": 1,
        "RemoveStreamGroupLocations": 1,
        "GetStreamGroup": 1,
    }


async def test_sessions_are_summarised() -> None:
    model, _, gid, app_id = _world([LocationConfigInput(REGION, always_on=2, maximum=2)])
    started = model.start_stream_session(gid, application_identifier=app_id)
    api = InProcessReader(model, REGION)
    (summary,) = await api.list_stream_sessions(gid)
    assert summary.arn == started.arn
    assert (summary.status, summary.location, summary.status_reason) == (
        "ACTIVATING",
        REGION,
        None,
    )
    assert summary.created_at == started.created_at
    assert await api.list_stream_sessions(gid, "CONNECTED") == []
    assert api.counts == {"ListStreamSessions": 2}


async def test_domain_errors_pass_through() -> None:
    model, _, gid, _ = _world([LocationConfigInput(REGION, always_on=2, maximum=2)])
    api = InProcessGameLiftStreams(model, REGION)
    with pytest.raises(NotFoundError):
        await api.get_stream_group("sg-missing00")
    with pytest.raises(ValidationError, match="multiple of 2"):
        await api.update_stream_group(gid, {REGION: CapacitySetting(always_on=3, maximum=4)})
    with pytest.raises(ValidationError, match="primary"):
        await api.remove_stream_group_locations(gid, [REGION])
    model.force_group_status(gid, "ERROR", "internalError")
    with pytest.raises(ConflictError):
        await api.update_stream_group(gid, {REGION: CapacitySetting(always_on=2, maximum=2)})


def test_reader_has_no_mutating_attribute_and_both_satisfy_the_ports() -> None:
    model = ServiceModel(clock=ManualClock())
    reader = InProcessReader(model, REGION)
    for name in (
        "update_stream_group",
        "add_stream_group_locations",
        "remove_stream_group_locations",
    ):
        assert not hasattr(reader, name)
        assert callable(getattr(InProcessGameLiftStreams(model, REGION), name))
    # mypy checks these assignments against the Protocols (structural typing)
    as_reader: StreamGroupReader = reader
    writer: StreamGroupWriter = InProcessGameLiftStreams(model, REGION)
    also_reader: StreamGroupReader = InProcessGameLiftStreams(model, REGION)
    assert {type(as_reader), type(writer), type(also_reader)} == {
        InProcessReader,
        InProcessGameLiftStreams,
    }
