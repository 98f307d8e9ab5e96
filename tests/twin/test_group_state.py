"""``ServiceModel.group_state`` equals the view converted by ``inprocess.group_state_of``.

Why: the in-process adapter's GetStreamGroup builds the domain state straight from the model
(the backtest reads its group every tick); any field that drifted from the converted view
would change what the controller decides on. Checked through a group's life: activation,
legacy and current locations, capacity updates with sessions, an added and a removed
location, forced statuses, expiry.
"""

from __future__ import annotations

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.inprocess import group_state_of
from autoscaler.twin.model import LocationConfigInput, ModelParams, ServiceModel

REGION = "us-east-1"


def _same(model: ServiceModel, gid: str) -> None:
    assert model.group_state(gid) == group_state_of(model.get_stream_group(gid))


def test_group_state_equals_the_converted_view_through_a_groups_life() -> None:
    clock = ManualClock()
    params = ModelParams()
    model = ServiceModel(clock=clock, seed=4, params=params)
    app = model.create_application(
        region=REGION,
        description="game",
        runtime={"Type": "PROTON", "Version": "20241007"},
        executable_path="game.exe",
        source_uri="s3://bucket/game",
    )
    gid = model.create_stream_group(
        region=REGION,
        description="test",
        stream_class="gen4n_high",
        default_application_id=app.app_id,
        locations=[
            LocationConfigInput(REGION, always_on=4, target_idle=2, maximum=10),
            LocationConfigInput("eu-central-1", always_on=2, on_demand=4),
        ],
        tags={"team": "a"},
    ).group_id
    _same(model, gid)  # ACTIVATING, legacy location present
    clock.advance(params.group_activation_s + 300)
    _same(model, gid)
    for _ in range(5):
        model.start_stream_session(gid, application_identifier=app.app_id, end_after_s=600.0)
    model.update_stream_group(
        gid, locations=[LocationConfigInput(REGION, always_on=6, target_idle=0, maximum=8)]
    )
    _same(model, gid)
    model.add_stream_group_locations(
        gid, [LocationConfigInput("us-west-2", always_on=0, target_idle=2, maximum=4)]
    )
    _same(model, gid)  # UPDATING_LOCATIONS
    clock.advance(params.location_activation_s + 60)
    model.remove_stream_group_locations(gid, ["eu-central-1"])
    _same(model, gid)  # a location REMOVING, only current-model ones left soon
    clock.advance(params.location_removal_s + 60)
    _same(model, gid)
    model.force_location_status(gid, "us-west-2", "ERROR")
    _same(model, gid)
    model.force_group_status(gid, "EXPIRED", "lifetime over")
    _same(model, gid)
