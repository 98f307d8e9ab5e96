"""``ServiceModel.start_session`` is ``start_stream_session`` without building the view.

Why: the backtest starts every planned session through it; two models with the same seed fed
the same starts must stay identical (ids, waits, listings, the bill), or a backtest would
replay a different world than the emulator serves.
"""

from __future__ import annotations

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.model import LocationConfigInput, ModelParams, ServiceModel

REGION = "us-east-1"


def _world() -> tuple[ManualClock, ServiceModel, str, str]:
    clock = ManualClock()
    model = ServiceModel(clock=clock, seed=9, params=ModelParams(ended_session_retention_s=60.0))
    app = model.create_application(
        region=REGION,
        description="game",
        runtime={"Type": "PROTON", "Version": "20241007"},
        executable_path="game.exe",
        source_uri="s3://bucket/game",
    )
    config = LocationConfigInput(REGION, always_on=4, target_idle=2, maximum=12)
    gid = model.create_stream_group(
        region=REGION,
        description="test",
        stream_class="gen4n_high",
        default_application_id=app.app_id,
        locations=[config],
    ).group_id
    clock.advance(ModelParams().group_activation_s + 120)
    model.advance()
    return clock, model, gid, app.app_id


def test_start_session_matches_start_stream_session() -> None:
    clock_a, a, gid_a, app_a = _world()
    clock_b, b, gid_b, app_b = _world()
    assert gid_a == gid_b
    placed_later = 0
    for i in range(60):
        view = a.start_stream_session(
            gid_a, application_identifier=app_a, locations=[REGION], end_after_s=30.0 + i
        )
        sid, wait = b.start_session(
            gid_b, application_identifier=app_b, locations=[REGION], end_after_s=30.0 + i
        )
        assert (sid, wait) == (view.session_id, view.wait_s)
        placed_later += wait is None
        for clock in (clock_a, clock_b):
            clock.advance(1.5 + (i % 4))
        a.advance()
        b.advance()
        assert a.list_stream_sessions(gid_a) == b.list_stream_sessions(gid_b)
    assert placed_later  # some sessions waited: both branches of the wait were compared
    assert a.usage() == b.usage()
