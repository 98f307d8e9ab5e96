"""The model's cached session summaries always equal freshly converted views.

Why: ``list_session_summaries`` reuses a session's summary until the model time it was valid
for has passed (the next ACTIVATING → ACTIVE → CONNECTED step) or the session changes (placed,
terminated, ended). A summary kept one tick too long would make the backtest's sampler count a
session in the wrong state, so any interleaving of starts, short sessions, terminations,
capacity changes and waits (exactly on and around the phase boundaries) is checked against
the uncached views.

The unfiltered listing is also incremental: it recomputes only the sessions marked stale (new,
placed, terminated, ended) and those whose summary's hold time has passed (a heap), so it is
compared with summaries computed from scratch after interleavings that include purges,
filtered listings and listings far apart.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.domain.clock import ManualClock
from autoscaler.domain.models import SessionSummary
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


def _world(capacity: int, *, seed: int = 5) -> tuple[ManualClock, ServiceModel, str, str]:
    clock = ManualClock()
    model = ServiceModel(clock=clock, seed=seed, params=PARAMS)
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


def _from_scratch(model: ServiceModel, gid: str) -> list[SessionSummary]:
    """Every listed session's summary computed now, with no cache (the plain rules)."""
    group = model._group(gid)
    now = model._now
    out = []
    for s in group.sessions.values():
        status, reason, updated, _ = model._status_until(s, now)
        out.append(SessionSummary(s.arn, status, s.loc.name, s.created_at, updated, reason))
    return out


_KINDS = ("start", "start_short", "terminate", "wait", "wait_exact", "wait_long", "resize")
_LISTING_ACTIONS = st.lists(
    st.tuples(
        st.sampled_from((*_KINDS, "list", "list", "filter")),
        st.integers(0, 40),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=_LISTING_ACTIONS, capacity=st.sampled_from([0, 2, 4]))
def test_incremental_listing_equals_summaries_from_scratch(
    actions: list[tuple[str, int]], capacity: int
) -> None:
    clock, model, gid, app_id = _world(capacity, seed=7)
    for action, number in actions:
        if action == "start":
            model.start_stream_session(gid, application_identifier=app_id)
        elif action == "start_short":
            model.start_stream_session(gid, application_identifier=app_id, end_after_s=number + 1)
        elif action == "terminate":
            live = [s for s in model._group(gid).live.values() if s.terminating_at is None]
            if live:
                model.terminate_stream_session(gid, live[number % len(live)].sid)
        elif action == "resize":
            config = LocationConfigInput(REGION, always_on=2 * (number % 3), maximum=8)
            model.update_stream_group(gid, locations=[config])
        elif action == "wait_exact":  # phase boundaries are whole seconds here
            clock.advance(float(number % 6))
            model.advance()
        elif action == "wait":
            clock.advance(number / 4)
            model.advance()
        elif action == "wait_long":  # past a host's provisioning or a session's end
            clock.advance(float(number))
            model.advance()
        elif action == "filter":  # a filtered listing refreshes some summaries on its own
            model.list_session_summaries(gid, ("ACTIVATING", "CONNECTED")[number % 2])
        else:
            got = model.list_session_summaries(gid)
            assert got == _from_scratch(model, gid)
            assert got == [session_summary_of(v) for v in model.list_stream_sessions(gid)]
    got = model.list_session_summaries(gid)
    assert got == _from_scratch(model, gid)
    # a caller may keep or edit its list: the next listing is a new list
    got.clear()
    assert model.list_session_summaries(gid) == _from_scratch(model, gid)


def test_a_waiting_session_listed_then_placed_is_listed_placed() -> None:
    """Listed while it waits (no capacity), then placed when capacity arrives, then active,
    connected, terminated and ended: each listing shows its state at that moment."""
    clock, model, gid, app_id = _world(0, seed=7)
    sid, wait = model.start_session(gid, application_identifier=app_id)
    assert wait is None
    seen = [model.list_session_summaries(gid)]
    model.update_stream_group(gid, locations=[LocationConfigInput(REGION, always_on=2)])
    for step in (21.0, 5.0, 3.0):  # provisioned and placed; active; connected
        clock.advance(step)
        model.advance()
        seen.append(model.list_session_summaries(gid))
    model.terminate_stream_session(gid, sid)
    seen.append(model.list_session_summaries(gid))
    clock.advance(10.0)
    model.advance()
    seen.append(model.list_session_summaries(gid))
    assert seen[-1] == _from_scratch(model, gid)
    statuses = [listing[0].status for listing in seen]
    assert statuses == [
        "ACTIVATING",
        "ACTIVATING",
        "ACTIVE",
        "CONNECTED",
        "TERMINATING",
        "TERMINATED",
    ]
    assert seen[0][0].last_updated_at < seen[1][0].last_updated_at  # placed: updated
