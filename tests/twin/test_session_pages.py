"""The model's paged session listings: the emulator serves ListStreamSessions from them.

A page must hold exactly what the full listing holds at that moment, in creation order, and a
walk of cursors must see every session exactly once while sessions start, end and are purged
between pages: a controller that misses or double-counts a session misjudges demand.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.domain.clock import ManualClock
from autoscaler.domain.errors import NotFoundError, ValidationError
from autoscaler.twin.inprocess import session_summary_of
from autoscaler.twin.model import LocationConfigInput, ModelParams, ServiceModel, SessionView

REGION = "us-east-1"
STATUSES = (None, "ACTIVATING", "ACTIVE", "CONNECTED", "TERMINATING", "TERMINATED", "ERROR")


class World:
    """A model with one application and ACTIVE groups of 2-slot hosts, on a manual clock."""

    def __init__(self, *, retention_s: float = 3600.0, capacity: int = 4, groups: int = 1) -> None:
        self.clock = ManualClock()
        params = ModelParams(provisioning_sigma=0.0, ended_session_retention_s=retention_s)
        self.model = ServiceModel(clock=self.clock, seed=3, params=params)
        app = self.model.create_application(
            region=REGION,
            description="game",
            runtime={"Type": "PROTON", "Version": "20241007"},
            executable_path="game.exe",
            source_uri="s3://bucket/game",
        )
        self.app_id = app.app_id
        config = LocationConfigInput(REGION, always_on=capacity, target_idle=0, maximum=capacity)
        self.gids = [
            self.model.create_stream_group(
                region=REGION,
                description="test",
                stream_class="gen4n_high",
                default_application_id=app.app_id,
                locations=[config],
            ).group_id
            for _ in range(groups)
        ]
        self.gid = self.gids[0]
        self.wait(params.group_activation_s + 60)  # ACTIVE, every host ready

    def wait(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.model.advance()

    def start(self, gid: str | None = None, end_after_s: float | None = None) -> str:
        view = self.model.start_stream_session(
            gid or self.gid, application_identifier=self.app_id, end_after_s=end_after_s
        )
        return view.session_id

    def walk(self, status: str | None = None, limit: int = 3) -> list[SessionView]:
        out: list[SessionView] = []
        after: int | None = None
        while True:
            page, after = self.model.list_stream_sessions_page(
                self.gid, status, after=after, limit=limit
            )
            assert len(page) <= limit
            out.extend(page)
            if after is None:
                return out
            assert len(page) == limit  # only the last page may be short


def ids(views: list[SessionView]) -> list[str]:
    return [v.session_id for v in views]


def mixed(world: World) -> None:
    """Sessions in every status: ended (both ways), terminating, connected, active,
    placed-but-activating, waiting."""
    w = world
    w.start(end_after_s=5)  # TERMINATED applicationExit
    w.wait(10)
    for _ in range(4):  # fills the 4 slots; the fifth waits and times out
        w.start()
    w.start()
    w.wait(100)  # ERROR placementTimeout; the 4 are CONNECTED
    w.model.terminate_stream_session(
        w.gid, w.model.list_stream_sessions(w.gid, "CONNECTED")[0].session_id
    )
    w.wait(2)  # one slot free: TERMINATED apiTerminated
    w.model.terminate_stream_session(
        w.gid, w.model.list_stream_sessions(w.gid, "CONNECTED")[0].session_id
    )
    w.start()  # placed on the free slot: ACTIVATING
    w.start()  # waiting: ACTIVATING


def test_pages_hold_the_full_listing_in_creation_order() -> None:
    w = World(capacity=40)
    for index in range(23):  # many at one instant: ids are random, creation order is not
        w.start()
        if index % 5 == 0:
            w.wait(1)
    everything = ids(w.model.list_stream_sessions(w.gid))
    assert len(everything) == 23
    for limit in (1, 4, 23, 100):
        assert ids(w.walk(limit=limit)) == everything
    created = [v.created_at for v in w.walk()]
    assert created == sorted(created)


def test_a_page_is_at_most_limit_and_a_walk_never_ends_on_an_empty_page() -> None:
    w = World(capacity=40)
    for _ in range(6):
        w.start()
    page, after = w.model.list_stream_sessions_page(w.gid, limit=6)
    assert (len(page), after) == (6, None)  # look-ahead: no token for an empty next page
    page, after = w.model.list_stream_sessions_page(w.gid, limit=5)
    assert len(page) == 5
    assert after is not None
    last, none = w.model.list_stream_sessions_page(w.gid, after=after, limit=5)
    assert (len(last), none) == (1, None)
    assert w.model.list_stream_sessions_page(w.gid, after=10**9) == ([], None)


@pytest.mark.parametrize("status", STATUSES)
def test_status_filter_matches_the_full_listing(status: str | None) -> None:
    w = World()
    mixed(w)
    w.wait(0.5)  # the TERMINATING one is still TERMINATING
    expected = w.model.list_stream_sessions(w.gid, status)
    for limit in (1, 2, 100):
        got = w.walk(status, limit=limit)
        assert set(ids(got)) == set(ids(expected))
        assert len(got) == len(expected)
        assert all(v.status == status for v in got if status is not None)
    assert sorted(ids(expected)) == sorted(ids(w.walk(status)))


def test_every_status_occurs_in_the_mixed_world() -> None:
    w = World()
    mixed(w)
    w.wait(0.5)
    seen = {v.status for v in w.model.list_stream_sessions(w.gid)}
    assert seen == set(STATUSES) - {None, "ACTIVE"}
    w.wait(5)  # the last two are placed and ACTIVE (CONNECTED 2 s later)
    assert "ACTIVE" in {v.status for v in w.model.list_stream_sessions(w.gid)}


def test_a_walk_sees_each_session_once_while_sessions_start_and_end_between_pages() -> None:
    w = World(capacity=200, retention_s=10.0)
    stable = [w.start() for _ in range(20)]
    doomed = [w.start(end_after_s=20) for _ in range(10)]  # purged before the walk gets there
    seen: list[str] = []
    started: list[str] = []
    after: int | None = None
    for round_ in range(100):
        page, after = w.model.list_stream_sessions_page(w.gid, after=after, limit=4)
        seen.extend(ids(page))
        if after is None:
            break
        started.append(w.start())  # the same instant as the page, yet after the cursor
        if round_ % 2:
            w.model.terminate_stream_session(w.gid, stable[round_])  # ends, already seen
        w.wait(7)
    else:
        pytest.fail("the walk did not end")
    assert seen == stable + started  # each once, in creation order
    assert not set(doomed) & set(seen)


def test_a_cursor_whose_session_was_purged_resumes_exactly() -> None:
    w = World(capacity=40, retention_s=60.0)
    first = [w.start(end_after_s=10) for _ in range(3)]
    rest = [w.start() for _ in range(5)]  # the same instant as the first three
    page, after = w.model.list_stream_sessions_page(w.gid, limit=3)
    assert ids(page) == first
    w.wait(100)  # the first three ended and are purged
    assert w.model.list_stream_sessions(w.gid, "TERMINATED") == []
    page, after = w.model.list_stream_sessions_page(w.gid, after=after, limit=10)
    assert (ids(page), after) == (rest, None)


def test_retention_hides_purged_sessions_and_compaction_keeps_the_order() -> None:
    w = World(capacity=4000, retention_s=10.0)
    for _ in range(1500):
        w.start(end_after_s=1)
    keep = [w.start() for _ in range(30)]
    w.wait(5)
    assert len(w.walk(limit=100)) == 1530  # ended, but retained
    assert len(w.walk("TERMINATED", limit=100)) == 1500
    w.wait(10)  # past retention: the next read purges 1,500, more than half the index
    assert ids(w.walk(limit=7)) == keep == ids(w.model.list_stream_sessions(w.gid))
    assert len(w.model._groups[w.gid].index) == 30  # compacted: memory stays bounded
    more = [w.start() for _ in range(3)]
    assert ids(w.walk(limit=7)) == keep + more


def test_account_pages_merge_groups_in_creation_order() -> None:
    w = World(groups=3, capacity=40)
    started = []
    for index in range(20):
        started.append(w.start(w.gids[index % 3]))
        if index % 7 == 0:
            w.wait(1)
    views: list[SessionView] = []
    after: int | None = None
    while True:
        page, after = w.model.list_stream_sessions_by_account_page(after=after, limit=6)
        views.extend(page)
        if after is None:
            break
    assert ids(views) == started
    assert {v.group_id for v in views} == set(w.gids)
    full = w.model.list_stream_sessions_by_account()
    assert sorted(ids(full)) == sorted(started)
    w.model.force_group_status(w.gids[1], "EXPIRED")  # expired groups are not listed
    page, _ = w.model.list_stream_sessions_by_account_page(limit=100)
    assert ids(page) == [sid for i, sid in enumerate(started) if i % 3 != 1]
    connected, _ = w.model.list_stream_sessions_by_account_page("CONNECTED", limit=100)
    assert connected == []  # all still ACTIVATING at this model time


def test_page_arguments_and_group_errors() -> None:
    w = World()
    with pytest.raises(ValidationError):
        w.model.list_stream_sessions_page(w.gid, limit=0)
    with pytest.raises(ValidationError):
        w.model.list_stream_sessions_by_account_page(limit=0)
    with pytest.raises(NotFoundError):
        w.model.list_stream_sessions_page("sg-nope")
    arn = w.model.get_stream_group(w.gid).arn
    sid = w.start()
    assert ids(w.model.list_stream_sessions_page(arn)[0]) == [sid]  # an ARN works as well
    w.model.force_group_status(w.gid, "EXPIRED")
    with pytest.raises(ValidationError):
        w.model.list_stream_sessions_page(w.gid)


@pytest.mark.parametrize("status", STATUSES)
def test_summaries_equal_the_views_converted(status: str | None) -> None:
    w = World()
    mixed(w)
    w.wait(0.5)
    for _ in range(4):  # statuses move on between calls: no stale summary is reused
        views = w.model.list_stream_sessions(w.gid, status)
        summaries = w.model.list_session_summaries(w.gid, status)
        assert summaries == [session_summary_of(v) for v in views]
        w.wait(3)


_ACTIONS = st.lists(
    st.tuples(
        st.sampled_from(["start", "start_short", "terminate", "wait", "page"]), st.integers(0, 50)
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions=_ACTIONS, status=st.sampled_from(STATUSES), limit=st.integers(1, 5))
def test_any_history_pages_like_the_full_listing(
    actions: list[tuple[str, int]], status: str | None, limit: int
) -> None:
    w = World(capacity=6, retention_s=40.0)
    for action, number in actions:
        if action == "start":
            w.start()
        elif action == "start_short":
            w.start(end_after_s=number + 1)
        elif action == "terminate":
            live = w.model.list_stream_sessions(w.gid)
            if live:
                w.model.terminate_stream_session(w.gid, live[number % len(live)].session_id)
        elif action == "wait":
            w.wait(number / 2)
        expected = w.model.list_stream_sessions(w.gid, status)
        got = w.walk(status, limit=limit)
        assert sorted(ids(got)) == sorted(ids(expected))
        assert len(got) == len(expected)
        if status is None:
            assert ids(got) == ids(expected)  # the full listing is in creation order too
        summaries = w.model.list_session_summaries(w.gid, status)  # reused ones still true
        assert summaries == [session_summary_of(v) for v in expected]
