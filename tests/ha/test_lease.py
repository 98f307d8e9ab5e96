"""The DynamoDB lease and the elector against moto's DynamoDB over HTTP.

Time is injected where a test needs a leader "paused" past its lease (a clock the test moves);
the partition tests cut the real connection (a dead port, or the moto process killed)."""

from __future__ import annotations

import asyncio

import pytest

from autoscaler.aws.lease import open_dynamodb_lease
from autoscaler.ha import LeaderElector, LeaseTiming, LeaseUnavailableError
from tests.ha.conftest import REGION, TABLE, Moto, create_lease_table, free_port

TIMING = LeaseTiming(duration_s=30.0, renew_every_s=10.0, clock_skew_s=1.0)


class Time:
    """Wall and monotonic time moved by the test (a pause is a jump)."""

    def __init__(self) -> None:
        self.wall = 1_767_225_600.0
        self.mono = 1000.0

    def now(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds


async def test_acquire_renew_refuse_takeover(lease_table: str) -> None:
    async with open_dynamodb_lease(
        REGION, table=TABLE, name="ctl", endpoint_url=lease_table
    ) as lease:
        assert await lease.read() is None
        a = await lease.acquire("a", 100.0, 30.0)
        assert a is not None
        assert (a.holder, a.token, a.expires_at) == ("a", 1, 130.0)
        assert await lease.acquire("b", 110.0, 30.0) is None  # unexpired, not b's
        renewed = await lease.renew("a", 1, 120.0, 30.0)
        assert renewed is not None
        assert (renewed.token, renewed.expires_at) == (1, 150.0)
        assert await lease.acquire("b", 149.0, 30.0) is None
        taken = await lease.acquire("b", 151.0, 30.0)  # expired: takeover, next term
        assert taken is not None
        assert (taken.holder, taken.token) == ("b", 2)
        assert await lease.renew("a", 1, 152.0, 30.0) is None  # a's term is over
        assert await lease.release("a", 1) is False
        assert await lease.release("b", 2) is True
        again = await lease.acquire("a", 153.0, 30.0)  # released: free at once
        assert again is not None
        assert again.token == 3
        assert await lease.read() == again


async def test_separate_names_are_separate_leases(lease_table: str) -> None:
    async with (
        open_dynamodb_lease(REGION, table=TABLE, name="x", endpoint_url=lease_table) as x,
        open_dynamodb_lease(REGION, table=TABLE, name="y", endpoint_url=lease_table) as y,
    ):
        assert await x.acquire("a", 0.0, 30.0) is not None
        assert await y.acquire("b", 0.0, 30.0) is not None


async def test_paused_leader_is_fenced_and_the_standby_takes_over(lease_table: str) -> None:
    t = Time()
    events: list[tuple[str, bool]] = []
    async with (
        open_dynamodb_lease(REGION, table=TABLE, name="ctl", endpoint_url=lease_table) as la,
        open_dynamodb_lease(REGION, table=TABLE, name="ctl", endpoint_url=lease_table) as lb,
    ):
        a = LeaderElector(
            la,
            holder="a",
            timing=TIMING,
            wall=t,
            monotonic=t.monotonic,
            on_change=lambda v: events.append(("a", v)),
        )
        b = LeaderElector(
            lb,
            holder="b",
            timing=TIMING,
            wall=t,
            monotonic=t.monotonic,
            on_change=lambda v: events.append(("b", v)),
        )
        assert await a.step() is True
        assert await b.step() is False
        assert a.fence()
        assert a.token == 1
        assert not b.fence()
        t.advance(10)
        assert await a.step()
        assert await b.step() is False
        # a is paused (no renewals) past its lease: its own check refuses first...
        t.advance(28.9)
        assert a.fence()  # 28.9 s after the renewal was sent: still inside 30 - 1 s skew
        t.advance(0.1)
        assert not a.fence()
        token_after_pause: int | None = a.token
        assert token_after_pause is None
        assert await b.step() is False  # ...before anyone else may see it expired
        t.advance(1.2)
        assert await b.step() is True
        assert b.token == 2
        # a wakes up: it is not the leader, writes nothing, and stays standby
        assert await a.step() is False
        assert not a.fence()
        assert b.fence()
        assert events == [("a", True), ("a", False), ("b", True)]
        assert b.take_fenced_tokens() == [2]
        assert b.take_fenced_tokens() == []


async def test_leader_partitioned_from_the_table_stops_at_its_deadline(
    own_moto: Moto,
) -> None:
    await create_lease_table(own_moto.url)
    t = Time()
    async with open_dynamodb_lease(
        REGION, table=TABLE, name="ctl", endpoint_url=own_moto.url, timeout_s=0.5
    ) as lease:
        a = LeaderElector(lease, holder="a", timing=TIMING, wall=t, monotonic=t.monotonic)
        assert await a.step()
        own_moto.stop()  # the table is gone from a's point of view
        t.advance(10)
        assert await a.step() is True  # renewal failed, deadline not reached: still leads
        assert a.last_error is not None
        assert a.fence()
        assert a.next_delay() < TIMING.renew_every_s  # retries sooner
        t.advance(18.9)
        assert await a.step() is True
        assert a.fence()
        t.advance(0.2)  # 29.1 s: past 30 - 1 s skew
        assert await a.step() is False
        assert not a.fence()
        assert not a.leader
        with pytest.raises(LeaseUnavailableError):
            await lease.read()


async def test_a_replica_that_cannot_reach_the_table_never_leads() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with open_dynamodb_lease(
        REGION, table=TABLE, name="ctl", endpoint_url=dead, timeout_s=0.5
    ) as lease:
        a = LeaderElector(lease, holder="a", timing=TIMING)
        assert await a.step() is False
        assert not a.fence()
        assert a.last_error is not None
        assert "UpdateItem" in a.last_error


async def test_run_loops_elect_one_leader_and_hand_over_on_release(lease_table: str) -> None:
    timing = LeaseTiming(duration_s=1.5, renew_every_s=0.3, clock_skew_s=0.2)
    async with (
        open_dynamodb_lease(REGION, table=TABLE, name="ctl", endpoint_url=lease_table) as la,
        open_dynamodb_lease(REGION, table=TABLE, name="ctl", endpoint_url=lease_table) as lb,
    ):
        a = LeaderElector(la, holder="a", timing=timing)
        b = LeaderElector(lb, holder="b", timing=timing)
        stop_a, stop_b = asyncio.Event(), asyncio.Event()
        run_a = asyncio.create_task(a.run(stop_a))
        run_b = asyncio.create_task(b.run(stop_b))
        leaders: list[int] = []
        for _ in range(20):  # 2 s: longer than one lease, so renewals happened
            await asyncio.sleep(0.1)
            leaders.append(int(a.fence()) + int(b.fence()))
        assert max(leaders) == 1
        assert leaders[-1] == 1
        first, second, stop_first = (a, b, stop_a) if a.leader else (b, a, stop_b)
        stop_first.set()
        await asyncio.sleep(0.05)
        assert not first.fence()
        loop = asyncio.get_running_loop()
        released_at = loop.time()
        while not second.fence() and loop.time() - released_at < 1.0:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        # released, so well before the 1.5 s lease could have run out
        assert second.fence()
        assert loop.time() - released_at < 0.6
        stop_a.set()
        stop_b.set()
        await asyncio.gather(run_a, run_b)
        record = await la.read()
        assert record is not None
        assert record.expires_at == 0.0
