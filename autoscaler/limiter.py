"""Client-side rate limiter: one token bucket per API operation.

The controller shares GameLift Streams' per-account request quotas with the game backend and
consoles of the same account, so it spends well under them: by default half of each AWS quota.
Every HTTP request (every page, every retry) takes a token before it is sent.

Implementation: the generic cell rate algorithm (a token bucket expressed as a "theoretical
arrival time"). Each ``acquire`` reserves the next free slot at once, in call order, then
sleeps until that slot: waiters are served strictly first-in first-out, and a waiter that is
cancelled while sleeping simply leaves its slot unused (conservative, never over the rate).

It lives outside ``autoscaler.aws`` on purpose: it imports no AWS SDK and is reused by any
adapter (and by the emulator's tests).
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from types import MappingProxyType

# Requests per second: half of the documented per-account quotas (shared/docs/gameliftstreams.md).
DEFAULT_RATES: Mapping[str, float] = MappingProxyType(
    {
        "ListStreamSessions": 10.0,
        "GetStreamSession": 10.0,
        "StartStreamSession": 10.0,
        "GetStreamGroup": 5.0,
        "ListStreamGroups": 5.0,
        "UpdateStreamGroup": 2.5,
        "AddStreamGroupLocations": 2.5,
        "RemoveStreamGroupLocations": 2.5,
        "CreateStreamGroup": 0.5,
        # Tag reads serve tag selectors only (once per discovery); no published quota.
        "ListTagsForResource": 5.0,
    }
)
DEFAULT_UNKNOWN_RATE = 1.0


class _Bucket:
    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, rate: float, burst: float) -> None:
        self.interval = 1.0 / rate
        self.tolerance = (max(burst, 1.0) - 1.0) * self.interval
        self.tat = float("-inf")  # theoretical arrival time of the next request

    def reserve(self, now: float) -> float:
        """Reserve the next slot; returns when it may be used (≥ ``now``)."""
        allowed_at = max(now, self.tat - self.tolerance)
        self.tat = max(self.tat, allowed_at) + self.interval
        return allowed_at


class RateLimiter:
    """Per-operation token buckets.

    ``rates`` overrides ``DEFAULT_RATES`` per operation; a rate of 0 or None means unlimited.
    Operations not named anywhere get ``unknown_rate``. ``burst`` is how many requests may go
    back to back after an idle period (1 = evenly spaced). ``time`` and ``sleep`` default to the
    running event loop's monotonic time and ``asyncio.sleep``; tests inject virtual ones.
    """

    def __init__(
        self,
        rates: Mapping[str, float | None] | None = None,
        *,
        unknown_rate: float | None = DEFAULT_UNKNOWN_RATE,
        burst: float = 1.0,
        time: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        merged: dict[str, float | None] = dict(DEFAULT_RATES)
        if rates is not None:
            merged.update(rates)
        for op, rate in merged.items():
            if rate is not None and rate < 0:
                raise ValueError(f"rate of {op} must be >= 0 (0 = unlimited), got {rate}")
        if unknown_rate is not None and unknown_rate < 0:
            raise ValueError(f"unknown_rate must be >= 0 (0 = unlimited), got {unknown_rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self._rates = merged
        self._unknown_rate = unknown_rate
        self._burst = burst
        self._time = time
        self._sleep: Callable[[float], Awaitable[None]] = sleep or asyncio.sleep
        self._buckets: dict[str, _Bucket | None] = {}
        self.waited_s: defaultdict[str, float] = defaultdict(
            float
        )  # total time spent waiting, per operation
        self.granted: Counter[str] = Counter()  # tokens handed out, per operation

    def rate(self, op: str) -> float | None:
        """Requests per second allowed for ``op`` (None: unlimited)."""
        rate = self._rates.get(op, self._unknown_rate)
        return rate if rate else None

    def _now(self) -> float:
        if self._time is not None:
            return self._time()
        return asyncio.get_running_loop().time()

    def _bucket(self, op: str) -> _Bucket | None:
        if op not in self._buckets:
            rate = self.rate(op)
            self._buckets[op] = None if rate is None else _Bucket(rate, self._burst)
        return self._buckets[op]

    async def wait(self, op: str) -> None:
        """Take one token for ``op``, sleeping until one is free (FIFO among waiters)."""
        bucket = self._bucket(op)
        self.granted[op] += 1
        if bucket is None:
            return
        now = self._now()
        delay = bucket.reserve(now) - now
        if delay > 0:
            self.waited_s[op] += delay
            await self._sleep(delay)

    @asynccontextmanager
    async def acquire(self, op: str) -> AsyncIterator[None]:
        """``async with limiter.acquire("GetStreamGroup"): <one request>``."""
        await self.wait(op)
        yield
