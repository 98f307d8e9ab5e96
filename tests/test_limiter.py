"""The per-operation limiter under virtual time: rates, bursts, FIFO order, unlimited ops."""

from __future__ import annotations

import asyncio
import heapq

import pytest

from autoscaler.limiter import DEFAULT_RATES, RateLimiter


class VirtualTime:
    """A time source and a sleep that only move when ``run`` moves them (no wall time)."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, self._seq, fut))
        self._seq += 1
        await fut

    async def run(self, *tasks: asyncio.Task[None]) -> None:
        while not all(t.done() for t in tasks):
            for _ in range(10):  # let every runnable task reach its next sleep
                await asyncio.sleep(0)
            if self._sleepers:
                when, _, fut = heapq.heappop(self._sleepers)
                self.now = max(self.now, when)
                if not fut.done():  # a cancelled sleeper's future is already done
                    fut.set_result(None)
            elif not all(t.done() for t in tasks):
                raise AssertionError("tasks blocked on something other than virtual sleep")


async def test_rate_is_respected_and_requests_are_evenly_spaced() -> None:
    vt = VirtualTime()
    limiter = RateLimiter({"GetStreamGroup": 5.0}, time=vt.time, sleep=vt.sleep)
    granted: list[float] = []

    async def one() -> None:
        async with limiter.acquire("GetStreamGroup"):
            granted.append(vt.now)

    tasks = [asyncio.create_task(one()) for _ in range(6)]
    await vt.run(*tasks)
    assert granted == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert limiter.granted["GetStreamGroup"] == 6
    assert limiter.waited_s["GetStreamGroup"] == pytest.approx(0.2 + 0.4 + 0.6 + 0.8 + 1.0)


async def test_waiters_are_served_first_in_first_out() -> None:
    vt = VirtualTime()
    limiter = RateLimiter({"UpdateStreamGroup": 2.0}, time=vt.time, sleep=vt.sleep)
    order: list[int] = []

    async def one(i: int) -> None:
        async with limiter.acquire("UpdateStreamGroup"):
            order.append(i)

    tasks = []
    for i in range(8):
        tasks.append(asyncio.create_task(one(i)))
        await asyncio.sleep(0)  # each task calls acquire in creation order
    await vt.run(*tasks)
    assert order == list(range(8))
    assert vt.now == pytest.approx(3.5)


async def test_idle_period_refills_only_up_to_the_burst() -> None:
    vt = VirtualTime()
    limiter = RateLimiter({"ListStreamSessions": 10.0}, burst=3, time=vt.time, sleep=vt.sleep)
    for _ in range(3):
        await limiter.wait("ListStreamSessions")
    assert vt.sleeps == []  # a burst of 3 goes at once
    vt.now = 100.0  # a long idle period does not bank more than the burst
    granted: list[float] = []

    async def one() -> None:
        await limiter.wait("ListStreamSessions")
        granted.append(vt.now)

    tasks = [asyncio.create_task(one()) for _ in range(5)]
    await vt.run(*tasks)
    assert granted == pytest.approx([100.0, 100.0, 100.0, 100.1, 100.2])


async def test_operations_have_independent_buckets() -> None:
    vt = VirtualTime()
    limiter = RateLimiter(time=vt.time, sleep=vt.sleep)
    await limiter.wait("GetStreamGroup")
    await limiter.wait("ListStreamSessions")  # different bucket: no wait
    assert vt.sleeps == []


async def test_zero_or_none_rate_is_unlimited_and_unknown_ops_get_the_default() -> None:
    vt = VirtualTime()
    limiter = RateLimiter(
        {"GetStreamGroup": 0, "ListStreamGroups": None}, time=vt.time, sleep=vt.sleep
    )
    for _ in range(50):
        await limiter.wait("GetStreamGroup")
        await limiter.wait("ListStreamGroups")
    assert vt.sleeps == []
    assert limiter.rate("GetStreamGroup") is None
    assert limiter.rate("SomeFutureOperation") == 1.0
    assert limiter.rate("UpdateStreamGroup") == DEFAULT_RATES["UpdateStreamGroup"] == 2.5


async def test_cancelled_waiter_does_not_let_others_exceed_the_rate() -> None:
    vt = VirtualTime()
    limiter = RateLimiter({"GetStreamGroup": 1.0}, time=vt.time, sleep=vt.sleep)
    await limiter.wait("GetStreamGroup")  # t=0
    victim = asyncio.create_task(limiter.wait("GetStreamGroup"))  # slot t=1
    await asyncio.sleep(0)
    victim.cancel()
    granted: list[float] = []

    async def after() -> None:
        await limiter.wait("GetStreamGroup")
        granted.append(vt.now)

    task = asyncio.create_task(after())
    await vt.run(task)
    assert granted == [2.0]  # the cancelled slot stays spent


async def test_default_time_source_is_the_event_loop() -> None:
    limiter = RateLimiter({"GetStreamGroup": 200.0})
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(5):
        await limiter.wait("GetStreamGroup")
    assert loop.time() - start >= 4 / 200.0 * 0.9


def test_negative_rates_are_rejected() -> None:
    with pytest.raises(ValueError, match="GetStreamGroup"):
        RateLimiter({"GetStreamGroup": -1.0})
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(burst=0.5)
