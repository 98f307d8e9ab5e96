"""Sampling: the pure counting rules, then the Sampler over the in-memory fake."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import pytest

from autoscaler.domain.clock import ManualClock
from autoscaler.domain.errors import AccessDeniedError, NotFoundError, ThrottledError
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    GroupSample,
    GroupState,
    GroupSummary,
    LocationSample,
    LocationState,
    SessionSummary,
)
from autoscaler.domain.policy import GroupSelector
from autoscaler.sampling import (
    PLACEMENT_TIMEOUT,
    CountedSessions,
    Sampler,
    derive_location_samples,
    discover,
)
from autoscaler.testing import FakeGameLiftStreams

NOW = 1_767_225_600.0
PREV = NOW - 60.0
SETTING = CapacitySetting(always_on=2, target_idle=2, maximum=10)


def group(*names: str) -> GroupState:
    return GroupState(
        group_id="sg-1",
        arn="arn:aws:gameliftstreams:us-east-1:123456789012:streamgroup/sg-1",
        status="ACTIVE",
        stream_class="gen4n_high",
        tenancy=2,
        capacity_model=CapacityModel.CURRENT,
        locations=tuple(
            LocationState(name=n, status="ACTIVE", setting=SETTING, allocated=6, idle=2)
            for n in names
        ),
        primary_location=names[0],
    )


def session(
    status: str,
    created_at: float,
    *,
    location: str | None = "us-east-1",
    updated: float | None = None,
    reason: str | None = None,
) -> SessionSummary:
    return SessionSummary(
        arn=f"arn:s/{status}/{created_at}",
        status=status,
        location=location,
        created_at=created_at,
        last_updated_at=created_at if updated is None else updated,
        status_reason=reason,
    )


def test_levels_and_flows_per_location() -> None:
    state = group("us-east-1", "eu-central-1")
    sessions = [
        session("CONNECTED", PREV - 600),
        session("ACTIVE", PREV + 10),  # arrival, in use
        session("PENDING_CLIENT_RECONNECTION", PREV - 100),
        session("TERMINATING", PREV - 900),
        session("ACTIVATING", NOW - 30),  # arrival, waiting 30 s
        session("ACTIVATING", NOW - 5),
        session("CONNECTED", PREV + 30, location="eu-central-1"),
    ]
    east, eu = derive_location_samples(state, sessions, PREV, NOW, complete=True)
    assert (east.location, east.in_use, east.waiting, east.arrivals) == ("us-east-1", 4, 2, 3)
    assert east.oldest_waiting_s == pytest.approx(30.0)
    assert (east.allocated, east.idle, east.setting, east.status) == (6, 2, SETTING, "ACTIVE")
    assert (east.at, east.complete, east.group_id) == (NOW, True, "sg-1")
    assert (eu.in_use, eu.waiting, eu.arrivals, eu.oldest_waiting_s) == (1, 0, 1, 0.0)


def test_arrival_window_is_left_open_right_closed() -> None:
    state = group("us-east-1")
    sessions = [
        session("CONNECTED", PREV),  # belongs to the previous window
        session("CONNECTED", PREV + 0.001),
        session("CONNECTED", NOW),
        session("CONNECTED", NOW + 1),  # created after the sample time: next window
    ]
    (s,) = derive_location_samples(state, sessions, PREV, NOW, complete=True)
    assert s.arrivals == 2
    assert s.in_use == 4


def test_first_sample_counts_no_flows() -> None:
    state = group("us-east-1")
    sessions = [
        session("CONNECTED", NOW - 10),
        session("TERMINATED", NOW - 20, updated=NOW - 5),
        session("ERROR", NOW - 100, updated=NOW - 10, reason="placementTimeout"),
    ]
    (s,) = derive_location_samples(state, sessions, None, NOW, complete=True)
    assert (s.arrivals, s.departures, s.placement_failures, s.in_use) == (0, 0, 0, 1)


def test_placement_failures_and_departures_only_inside_the_window() -> None:
    state = group("us-east-1")
    day = 86_400.0
    sessions = [
        session("ERROR", PREV - 40, updated=PREV + 35, reason="placementTimeout"),
        session("ERROR", PREV + 1, updated=PREV + 50, reason="internalError"),
        session("TERMINATED", PREV - 3600, updated=NOW - 1, reason="idleTimeout"),
        # Days old: listed by the service, but never demand nor departures now.
        session("ERROR", NOW - 3 * day, updated=NOW - 3 * day + 75, reason="placementTimeout"),
        session("TERMINATED", NOW - 2 * day, updated=NOW - day, reason="applicationExit"),
        session("ERROR", PREV - 100, updated=PREV, reason="placementTimeout"),  # edge: out
    ]
    (s,) = derive_location_samples(state, sessions, PREV, NOW, complete=True)
    assert s.placement_failures == 1
    assert s.departures == 3
    assert s.arrivals == 1  # the internalError one was created in the window
    assert (s.in_use, s.waiting) == (0, 0)


def test_sessions_without_location_go_to_the_primary_and_unknown_locations_are_dropped() -> None:
    state = group("eu-central-1", "us-east-1")  # primary is eu-central-1
    sessions = [
        session("ACTIVATING", NOW - 20, location=None),
        session("CONNECTED", NOW - 20, location=None),
        session("CONNECTED", NOW - 20, location="ap-northeast-1"),  # removed location
    ]
    eu, east = derive_location_samples(state, sessions, PREV, NOW, complete=True)
    assert (eu.waiting, eu.in_use, eu.arrivals) == (1, 1, 2)
    assert (east.waiting, east.in_use, east.arrivals) == (0, 0, 0)


def test_clock_going_back_gives_an_empty_window() -> None:
    (s,) = derive_location_samples(
        group("us-east-1"), [session("CONNECTED", NOW - 1)], NOW + 10, NOW, complete=True
    )
    assert s.arrivals == 0
    assert s.in_use == 1


def test_failed_listing_is_flagged_and_falls_back_to_allocated_minus_idle() -> None:
    (s,) = derive_location_samples(group("us-east-1"), (), PREV, NOW, complete=False)
    assert s.complete is False
    assert s.in_use == 4  # allocated 6 - idle 2, not a made-up zero
    assert (s.arrivals, s.waiting, s.departures) == (0, 0, 0)


def test_unknown_status_strings_pass_through_uncounted() -> None:
    (s,) = derive_location_samples(
        group("us-east-1"), [session("HIBERNATING", NOW - 5)], PREV, NOW, complete=True
    )
    assert (s.in_use, s.waiting, s.arrivals) == (0, 0, 1)


LATE_CASES = [
    # (status, created, last updated, late?)
    ("CONNECTED", PREV - 200, PREV + 20, True),  # waited 3 min, connected in the window
    ("ACTIVE", PREV + 1, PREV + 12, True),  # 11 s from request to ACTIVE: past 10 s
    ("CONNECTED", PREV + 10, PREV + 17, False),  # 7 s: an instant start
    ("CONNECTED", PREV - 300, PREV - 20, False),  # late, but started in an earlier window
    ("CONNECTED", PREV - 3000, PREV + 30, False),  # 50 min: a reconnect, not a start
    ("PENDING_CLIENT_RECONNECTION", PREV - 200, PREV + 20, False),  # not a start
    ("ACTIVATING", PREV - 200, PREV - 200, False),  # still waiting: counted when it starts
    ("TERMINATED", PREV - 200, PREV + 20, False),  # a departure
]


@pytest.mark.parametrize("locations", [("us-east-1",), ("us-east-1", "eu-central-1")])
@pytest.mark.parametrize(("status", "created", "updated", "late"), LATE_CASES)
def test_late_starts_are_sessions_that_started_in_the_window_after_waiting(
    locations: tuple[str, ...], status: str, created: float, updated: float, late: bool
) -> None:
    # One location takes the one-location loop, two the general one: same rules.
    sessions = [session(status, created, updated=updated)]
    first, *_ = derive_location_samples(group(*locations), sessions, PREV, NOW, complete=True)
    assert first.late_starts == int(late)


def test_late_start_threshold_is_a_parameter() -> None:
    sessions = [session("CONNECTED", PREV + 10, updated=PREV + 17)]  # 7 s from request
    (strict,) = derive_location_samples(
        group("us-east-1"), sessions, PREV, NOW, complete=True, instant_start_s=6.0
    )
    (default,) = derive_location_samples(group("us-east-1"), sessions, PREV, NOW, complete=True)
    assert (strict.late_starts, default.late_starts) == (1, 0)


def test_late_starts_are_unknown_not_zero_when_the_listing_failed() -> None:
    (s,) = derive_location_samples(group("us-east-1"), (), PREV, NOW, complete=False)
    assert s.late_starts is None


# --- Sampler over the fake ---------------------------------------------------------------


def fake_with_groups(n: int, *, latency_s: float = 0.0) -> FakeGameLiftStreams:
    fake = FakeGameLiftStreams(latency_s=latency_s)
    for i in range(n):
        gid = f"sg-{i}"
        fake.add_group(gid, {"us-east-1": SETTING})
        fake.set_location(gid, "us-east-1", allocated=4, idle=1)
        fake.add_session(gid, status="CONNECTED", created_at=NOW - 30)
        fake.add_session(gid, status="ACTIVATING", created_at=NOW - 10)
    return fake


async def test_sampler_reads_each_group_once_with_one_listing() -> None:
    fake = fake_with_groups(3)
    sampler = Sampler(fake, max_concurrency=2, clock=ManualClock(NOW))
    samples = await sampler.sample(["sg-0", "sg-1", "sg-2"], {"sg-0": PREV})
    assert [g.group_id for g in samples] == ["sg-0", "sg-1", "sg-2"]
    assert all(g.complete and g.problems == () and g.at == NOW for g in samples)
    (loc0,) = samples[0].locations
    assert (loc0.in_use, loc0.waiting, loc0.arrivals) == (1, 1, 2)
    assert samples[1].locations[0].arrivals == 0  # no previous sample: no window
    assert fake.calls == {"GetStreamGroup": 3, "ListStreamSessions": 3}


async def test_throttled_listing_marks_only_that_group_incomplete() -> None:
    fake = fake_with_groups(3)
    fake.fail_next("ListStreamSessions", ThrottledError("Rate exceeded"))
    samples = await Sampler(fake, max_concurrency=1, clock=ManualClock(NOW)).sample(
        ["sg-0", "sg-1", "sg-2"], {}
    )
    bad, ok1, ok2 = samples
    assert bad.complete is False
    assert bad.state is not None
    assert bad.state.group_id == "sg-0"
    assert bad.problems == ("ListStreamSessions failed: ThrottlingException: Rate exceeded",)
    (loc,) = bad.locations
    assert loc.complete is False
    assert loc.in_use == 3  # allocated - idle from the state that was read
    assert ok1.complete
    assert ok2.complete
    assert ok1.locations[0].complete


async def test_missing_group_and_failed_get_are_reported_not_raised() -> None:
    fake = fake_with_groups(2)
    fake.fail_next("GetStreamGroup", AccessDeniedError("not authorized"))
    samples = await Sampler(fake, clock=ManualClock(NOW)).sample(["sg-0", "sg-gone", "sg-1"], {})
    denied, gone, ok = samples
    assert (denied.state, denied.locations, denied.complete) == (None, (), False)
    assert denied.problems == ("GetStreamGroup failed: AccessDeniedException: not authorized",)
    assert (gone.state, gone.complete, gone.problems) == (None, False, ("group not found",))
    assert ok.complete
    assert fake.calls["ListStreamSessions"] == 1  # no listing after a failed Get


async def test_unexpected_exception_in_one_group_is_contained() -> None:
    class Broken(FakeGameLiftStreams):
        async def list_stream_sessions(
            self, group_id: str, status: str | None = None
        ) -> list[SessionSummary]:
            if group_id == "sg-1":
                raise KeyError("Items")
            return await super().list_stream_sessions(group_id, status)

    fake = Broken()
    fake.add_group("sg-0", {"us-east-1": SETTING})
    fake.add_group("sg-1", {"us-east-1": SETTING})
    ok, broken = await Sampler(fake, clock=ManualClock(NOW)).sample(["sg-0", "sg-1"], {})
    assert ok.complete
    assert not broken.complete
    assert broken.problems[0].startswith("ListStreamSessions failed unexpectedly: KeyError")


async def test_expired_group_is_not_listed_and_is_incomplete() -> None:
    fake = fake_with_groups(1)
    fake.set_group_status("sg-0", "EXPIRED")
    (g,) = await Sampler(fake, clock=ManualClock(NOW)).sample(["sg-0"], {})
    assert not g.complete
    assert "EXPIRED" in g.problems[0]
    assert fake.calls["ListStreamSessions"] == 0


async def test_concurrency_bound_is_respected() -> None:
    fake = fake_with_groups(8, latency_s=0.002)
    samples = await Sampler(fake, max_concurrency=3, clock=ManualClock(NOW)).sample(
        [f"sg-{i}" for i in range(8)], {}
    )
    assert len(samples) == 8
    assert fake.max_in_flight == 3


def test_max_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        Sampler(FakeGameLiftStreams(), max_concurrency=0, clock=ManualClock(NOW))


async def test_discover_reads_tags_only_when_ids_do_not_decide() -> None:
    fake = FakeGameLiftStreams()
    fake.add_group("sg-a", {"us-east-1": SETTING}, tags={"team": "arena"})
    fake.add_group("sg-b", {"us-east-1": SETTING}, tags={"team": "lobby"})
    fake.add_group("sg-c", {"us-east-1": SETTING})
    selector = GroupSelector(ids=("sg-c",), tags={"team": "arena"})

    def matches(summary: GroupSummary, tags: Mapping[str, str] | None) -> bool:
        return selector.matches(summary.group_id, summary.arn, tags)

    assert await discover(fake, matches, need_tags=True) == ["sg-a", "sg-c"]
    assert fake.calls["ListTagsForResource"] == 2  # not for sg-c, matched by id
    assert await discover(fake, matches, need_tags=False) == ["sg-c"]


async def test_discover_propagates_a_failed_listing() -> None:
    fake = FakeGameLiftStreams()
    fake.add_group("sg-a", {"us-east-1": SETTING})
    fake.fail_next("ListStreamGroups", ThrottledError("slow down"))
    with pytest.raises(ThrottledError):
        await discover(fake, lambda s, t: True, need_tags=False)
    fake.fail_next("GetStreamGroup", NotFoundError("x"))
    assert await discover(fake, lambda s, t: True, need_tags=False) == ["sg-a"]


async def test_one_group_samples_like_several() -> None:
    fake = fake_with_groups(2)
    clock = ManualClock(NOW)
    alone = await Sampler(fake, clock=clock).sample(["sg-0"], {"sg-0": PREV})
    together = await Sampler(fake, clock=clock).sample(["sg-0", "sg-1"], {"sg-0": PREV})
    assert alone == together[:1]


@pytest.mark.parametrize("groups", [1, 2])
async def test_a_bug_in_sampling_raises_the_same_way_for_one_group_or_many(groups: int) -> None:
    class Buggy(Sampler):
        async def _sample_group(
            self, group_id: str, previous_at: float | None, at: float
        ) -> GroupSample:
            raise ZeroDivisionError(group_id)

    fake = fake_with_groups(groups)
    with pytest.raises(ExceptionGroup) as caught:
        await Buggy(fake, clock=ManualClock(NOW)).sample([f"sg-{i}" for i in range(groups)], {})
    assert all(isinstance(e, ZeroDivisionError) for e in caught.value.exceptions)


async def test_a_launch_slower_than_the_threshold_is_warned_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every tick, sessions "start late" while idle slots are left and nobody waits: that is a
    # launch time above instant_start_s, not a capacity shortage.
    fake = FakeGameLiftStreams()
    fake.add_group("sg-0", {"us-east-1": SETTING})
    fake.set_location("sg-0", "us-east-1", allocated=6, idle=3)
    clock = ManualClock(NOW)
    sampler = Sampler(fake, clock=clock, instant_start_s=10.0)
    previous: dict[str, float] = {}
    late_counts = []
    with caplog.at_level(logging.WARNING, logger="autoscaler.sampling"):
        for _ in range(25):
            now = clock.now()
            fake.add_session(
                "sg-0", status="CONNECTED", created_at=now - 25.0, last_updated_at=now - 5.0
            )
            (g,) = await sampler.sample(["sg-0"], previous)
            late_counts.append(g.locations[0].late_starts)
            previous["sg-0"] = now
            clock.advance(60.0)
    assert late_counts[1:] == [1] * 24  # the first sample has no window
    warnings = [r for r in caplog.records if "raise instant_start_s" in r.getMessage()]
    assert len(warnings) == 1


@pytest.mark.parametrize("start_reads_s", [40.0, 2.0])
async def test_a_wait_the_start_time_does_not_show_makes_late_starts_unknown(
    caplog: pytest.LogCaptureFixture, start_reads_s: float
) -> None:
    # A session is seen waiting 30 s; a tick later it streams. Its start must then read as
    # longer than the threshold: 40 s does, and late starts stay measured; 2 s does not (a
    # service whose LastUpdatedAt does not move at the start), and from then on late starts
    # are unknown (None), never zero, so no feedback loosens on a count that misses waits.
    fake = FakeGameLiftStreams()
    fake.add_group("sg-0", {"us-east-1": SETTING})
    clock = ManualClock(NOW)
    sampler = Sampler(fake, clock=clock, instant_start_s=10.0)
    waiting = fake.add_session("sg-0", status="ACTIVATING", created_at=NOW - 30.0)
    (first,) = await sampler.sample(["sg-0"], {})
    assert first.locations[0].oldest_waiting_s == pytest.approx(30.0)
    sessions = fake._group("sg-0").sessions
    sessions[0] = dataclasses.replace(
        waiting, status="CONNECTED", last_updated_at=waiting.created_at + start_reads_s
    )
    clock.advance(60.0)
    with caplog.at_level(logging.ERROR, logger="autoscaler.sampling"):
        (second,) = await sampler.sample(["sg-0"], {"sg-0": NOW})
        clock.advance(60.0)
        (third,) = await sampler.sample(["sg-0"], {"sg-0": NOW + 60.0})
    if start_reads_s > 10.0:
        assert second.locations[0].late_starts == 1
        assert third.locations[0].late_starts == 0
        assert not caplog.records
    else:
        assert second.locations[0].late_starts is None
        assert third.locations[0].late_starts is None
        assert any("cannot be measured" in r.getMessage() for r in caplog.records)


# --- Each session counted once across windows (CountedSessions) ---------------------------


def _windows(
    listings: list[tuple[float | None, float, list[SessionSummary]]],
    *,
    names: tuple[str, ...] = ("us-east-1",),
    remember: bool = True,
) -> list[LocationSample]:
    """The first location's sample of each ``(previous_at, now, listing)`` in turn, with one
    memory across them (``remember``) or none, as before it existed."""
    counted = CountedSessions() if remember else None
    return [
        derive_location_samples(group(*names), listing, prev, now, True, counted=counted)[0]
        for prev, now, listing in listings
    ]


def _moved(s: SessionSummary, status: str, updated: float) -> SessionSummary:
    return dataclasses.replace(s, status=status, last_updated_at=updated)


@pytest.mark.parametrize("names", [("us-east-1",), ("us-east-1", "eu-central-1")])
def test_a_late_start_seen_active_then_connected_counts_once(names: tuple[str, ...]) -> None:
    # Waited 3 min, went ACTIVE just before a tick and CONNECTED 2 s later, after it: two
    # windows see it "start" (once per status); it is one late start.
    active = session("ACTIVE", PREV - 180, updated=NOW - 1)
    connected = _moved(active, "CONNECTED", NOW + 1)
    listings = [(PREV, NOW, [active]), (NOW, NOW + 60, [connected])]
    assert [s.late_starts for s in _windows(listings, names=names)] == [1, 0]
    assert [s.late_starts for s in _windows(listings, names=names, remember=False)] == [1, 1]


def test_a_reconnect_soon_after_an_instant_start_is_not_a_late_start() -> None:
    # Started at once (5 s), then the player's connection dropped and came back 8 minutes
    # after the request: CreatedAt → LastUpdatedAt reads 480 s, under the 900 s that marks
    # a reconnect by age alone, but the session was seen streaming already.
    started = session("CONNECTED", PREV + 10, updated=PREV + 15)
    reconnected = _moved(started, "CONNECTED", PREV + 490)
    listings = [
        (PREV, NOW, [started]),
        (NOW, NOW + 420, [_moved(started, "PENDING_CLIENT_RECONNECTION", NOW + 400)]),
        (NOW + 420, NOW + 480, [reconnected]),
    ]
    assert [s.late_starts for s in _windows(listings)] == [0, 0, 0]
    assert [s.late_starts for s in _windows(listings, remember=False)] == [0, 0, 1]


def test_sessions_streaming_in_a_first_listing_are_not_starts_when_they_reconnect() -> None:
    # The controller starts while a session streams; the session reconnects a minute later.
    streaming = session("CONNECTED", PREV - 200, updated=PREV - 190)
    listings = [
        (None, NOW, [streaming]),
        (NOW, NOW + 60, [_moved(streaming, "CONNECTED", NOW + 30)]),
    ]
    assert [s.late_starts for s in _windows(listings)] == [0, 0]


def test_a_session_the_previous_listing_missed_counts_in_the_next_window() -> None:
    # The controller's clock runs 5 s ahead of the service's (or the listing lags): a session
    # created at service time NOW - 3 was not yet listed at the tick stamped NOW. Its arrival
    # and its placement failure fall before the next window's lower edge, yet count there.
    late_listed = session("ACTIVATING", NOW - 3)
    failed = _moved(late_listed, "ERROR", NOW - 2)
    failed = dataclasses.replace(failed, status_reason=PLACEMENT_TIMEOUT)
    listings = [(PREV, NOW, []), (NOW, NOW + 60, [failed])]
    counts = [(s.arrivals, s.placement_failures, s.departures) for s in _windows(listings)]
    assert counts == [(0, 0, 0), (1, 1, 1)]
    before = [(s.arrivals, s.placement_failures) for s in _windows(listings, remember=False)]
    assert before == [(0, 0), (0, 0)]


def test_overlapping_windows_count_nothing_twice() -> None:
    arrived = session("CONNECTED", NOW - 10, updated=NOW - 5)
    ended = session("TERMINATED", PREV - 600, updated=NOW - 20)
    failed = session("ERROR", NOW - 40, updated=NOW - 30, reason=PLACEMENT_TIMEOUT)
    listing = [arrived, ended, failed]
    first, second, third = _windows(
        [(PREV, NOW, listing), (NOW, NOW + 60, listing), (NOW + 60, NOW + 120, listing)]
    )
    assert (first.arrivals, first.departures, first.placement_failures) == (2, 2, 1)
    for later in (second, third):
        assert (later.arrivals, later.departures, later.placement_failures) == (0, 0, 0)


@pytest.mark.parametrize("previous_after_first", [NOW, None])
def test_the_overlap_never_reaches_before_a_listing_that_opened_no_window(
    previous_after_first: float | None,
) -> None:
    # A first listing (or the first after a hole) counts no flows on purpose; the next
    # window's overlap must not count the sessions that listing left out either.
    before = session("CONNECTED", NOW - 30, updated=NOW - 25)
    after = session("CONNECTED", NOW + 20, updated=NOW + 25)
    listings = [(None, NOW, [before]), (previous_after_first, NOW + 60, [before, after])]
    first, second = _windows(listings)
    assert first.arrivals == 0
    assert second.arrivals == (1 if previous_after_first is not None else 0)


def test_a_clock_stepped_back_still_gives_an_empty_window_with_a_memory() -> None:
    s = session("CONNECTED", NOW - 10, updated=NOW - 5)
    (first, back) = _windows([(PREV, NOW, [s]), (NOW, NOW - 30, [s])])
    assert (first.arrivals, back.arrivals, back.late_starts) == (1, 0, 0)


async def test_the_sampler_counts_a_session_its_previous_listing_missed() -> None:
    # End to end through the Sampler: its clock is 5 s ahead of the fake service's times.
    fake = FakeGameLiftStreams()
    fake.add_group("sg-0", {"us-east-1": SETTING})
    clock = ManualClock(NOW)
    sampler = Sampler(fake, clock=clock)
    (first,) = await sampler.sample(["sg-0"], {"sg-0": PREV})
    fake.add_session("sg-0", status="CONNECTED", created_at=NOW - 3, last_updated_at=NOW + 2)
    clock.advance(60.0)
    (second,) = await sampler.sample(["sg-0"], {"sg-0": NOW})
    clock.advance(60.0)
    (third,) = await sampler.sample(["sg-0"], {"sg-0": NOW + 60})
    arrivals = [g.locations[0].arrivals for g in (first, second, third)]
    assert arrivals == [0, 1, 0]


def test_a_session_that_starts_while_the_first_listing_is_paged_is_counted_next() -> None:
    # The listing's time is read before its pages: a session that went ACTIVE (late) while
    # they were read shows an update after ``now``. The first listing counts nothing; it must
    # not hide that start from the next window either.
    active = session("ACTIVE", NOW - 120, updated=NOW + 2)
    listings = [(None, NOW, [active]), (NOW, NOW + 60, [_moved(active, "CONNECTED", NOW + 4)])]
    assert [s.late_starts for s in _windows(listings)] == [0, 1]


def test_trimming_the_memory_keeps_sessions_waiting_for_their_player_to_reconnect() -> None:
    # Sessions that ended unseen (failed listings while they ended) leave stale entries; the
    # trim that drops them must keep a session waiting to reconnect, or its reconnect would
    # count as a second late start.
    counted = CountedSessions()
    waiter = session("ACTIVE", PREV - 250, updated=PREV - 10)  # waited 4 min: late
    (first,) = derive_location_samples(
        group("us-east-1"), [waiter], PREV - 60, PREV, True, counted=counted
    )
    assert first.late_starts == 1
    counted.started.update(f"arn:s/gone/{i}" for i in range(200))  # ended, never seen ended
    pending = _moved(waiter, "PENDING_CLIENT_RECONNECTION", PREV + 5)
    derive_location_samples(group("us-east-1"), [pending], PREV, NOW, True, counted=counted)
    assert counted.started == {waiter.arn}
    back = _moved(waiter, "CONNECTED", NOW + 30)
    (later,) = derive_location_samples(
        group("us-east-1"), [back], NOW, NOW + 60, True, counted=counted
    )
    assert later.late_starts == 0


def test_the_window_after_a_first_listing_counts_what_that_listing_missed() -> None:
    # The controller's clock runs 20 s ahead: a session created 10 s after the first listing
    # in the service's time carries a CreatedAt before that listing's stamp. It was not in
    # that listing, so the next window counts it; one that was listed does not count.
    listed = session("CONNECTED", NOW - 40, updated=NOW - 35)
    missed = session("CONNECTED", NOW - 10, updated=NOW - 5, location="us-east-1")
    missed = dataclasses.replace(missed, arn="arn:s/missed")
    first, second = _windows([(None, NOW, [listed]), (NOW, NOW + 60, [listed, missed])])
    assert (first.arrivals, second.arrivals) == (0, 1)


async def test_the_sampler_forgets_groups_it_is_no_longer_asked_for() -> None:
    fake = fake_with_groups(3)
    sampler = Sampler(fake, clock=ManualClock(NOW))
    await sampler.sample(["sg-0", "sg-1", "sg-2"], {})
    assert set(sampler._counted) == {"sg-0", "sg-1", "sg-2"}
    await sampler.sample(["sg-1"], {})
    assert set(sampler._counted) == {"sg-1"}
