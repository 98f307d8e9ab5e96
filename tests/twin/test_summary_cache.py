"""The model's cached session summaries always equal freshly converted views.

Why: ``list_session_summaries`` reuses a session's summary until the model time it was valid
for has passed (the next ACTIVATING → ACTIVE → CONNECTED step) or the session changes (placed,
terminated, ended). A summary kept one tick too long would make the backtest's sampler count a
session in the wrong state, so any interleaving of starts, short sessions, terminations,
capacity changes and waits (exactly on and around the phase boundaries) is checked against
the uncached views.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.domain.clock import ManualClock
from autoscaler.twin.inprocess import session_summary_of
from autoscaler.twin.model import LocationConfigInput, ModelParams, ServiceModel

REGION = "us-east-1"
STATUSES = (None, "ACTIVATING", "ACTIVE", "CONNECTED", "TERMINATING", "TERMINATED", "ERROR")
PARAMS = ModelParams(
    provisioning_sigma=0.0,
    provisioning_median_linux_s=20.0,
    ended_session_retention_s=30.0,
    session_start_s=5.0,
    client_connect_s=3.0,
)


def _world(capacity: int) -> tuple[ManualClock, ServiceModel, str, str]:
    clock = ManualClock()
    model = ServiceModel(clock=clock, seed=5, params=PARAMS)
    app = model.create_application(
        region=REGION,
        description="game",
        runtime={"Type": "PROTON", "Version": "20241007"},
        executable_path="game.exe",
        source_uri="s3://bucket/game",
    )
    config = LocationConfigInput(REGION, always_on=capacity, target_idle=0, maximum=capacity + 4)
    gid = model.create_stream_group(
        region=REGION,
        description="test",
        stream_class="gen4n_high",
        default_application_id=app.app_id,
        locations=[config],
    ).group_id
    clock.advance(PARAMS.group_activation_s + 60)
    model.advance()
    return clock, model, gid, app.app_id


_ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["start", "start_short", "terminate", "wait", "wait_exact", "resize"]),
        st.integers(0, 40),
    ),
    min_size=1,
    max_size=50,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=_ACTIONS, capacity=st.sampled_from([0, 2, 4]))
def test_cached_summaries_equal_the_views_after_any_history(
    actions: list[tuple[str, int]], capacity: int
) -> None:
    clock, model, gid, app_id = _world(capacity)
    for action, number in actions:
        if action == "start":
            model.start_stream_session(gid, application_identifier=app_id)
        elif action == "start_short":
            model.start_stream_session(gid, application_identifier=app_id, end_after_s=number + 1)
        elif action == "terminate":
            live = [v for v in model.list_stream_sessions(gid) if v.status != "TERMINATED"]
            if live:
                model.terminate_stream_session(gid, live[number % len(live)].session_id)
        elif action == "resize":
            model.update_stream_group(
                gid,
                locations=[
                    LocationConfigInput(
                        REGION, always_on=2 * (number % 3), target_idle=0, maximum=8
                    )
                ],
            )
        elif action == "wait_exact":  # land on whole seconds: phase boundaries are whole here
            clock.advance(float(number % 6))
            model.advance()
        else:
            clock.advance(number / 4)
            model.advance()
        for status in STATUSES:
            views = model.list_stream_sessions(gid, status)
            assert model.list_session_summaries(gid, status) == [
                session_summary_of(v) for v in views
            ]
