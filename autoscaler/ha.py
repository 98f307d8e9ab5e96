"""Active/standby: one replica leads by holding a lease, the others wait and keep sampling.

Why a lease: two controllers writing one stream group would undo each other's changes and
double the API calls. The lease lives in a coordination service the deployment already has
(DynamoDB conditional writes, ``autoscaler.aws.lease``); this module is the backend-neutral
protocol and the election loop, so it imports no SDK.

The record is ``{name, holder, expires_at (epoch s), token (int)}``. Acquiring is one
conditional write: it succeeds if there is no record, the record has expired, or it is ours;
taking it from another holder (or after our own restart) increments ``token``, so every
leadership term has a number no earlier term had. Renewing is a conditional write on
``holder = me AND token = mine`` that pushes ``expires_at`` forward.

The fencing check (``LeaderElector.fence``, called by the Actuator before every mutating
call) answers "do I hold an unexpired lease with my token?" locally, without a network call:

- the local deadline is ``sent + duration - skew`` where ``sent`` is the monotonic time at
  which the winning acquire/renew request *left* (the service stamped ``expires_at`` later
  than that, so the local deadline is never after the real one) and ``skew`` is the
  allowance for another replica's wall clock running ahead (it judges ``expires_at`` with its
  own clock);
- time is ``CLOCK_BOOTTIME`` where the OS has it (it keeps counting while the process is
  stopped and while the machine is suspended), else ``time.monotonic``;
- renewals come every ``renew_every_s`` (< duration - skew), so a healthy leader's deadline is
  always at least ``duration - skew - renew_every_s`` ahead; a failed renewal is retried
  sooner, and a renewal the service refuses (someone else holds it) ends leadership at once.

Safety argument (what a paused or partitioned leader can and cannot do):

- It cannot *start* a write after its deadline: every write is preceded by ``fence()``, which
  reads the clock at that moment. A leader that was stopped (SIGSTOP, GC, VM freeze) for
  longer than its lease wakes up with the deadline behind it and refuses; its next loop
  iteration sees the lease taken (token changed) and becomes a standby.
- A leader cut off from the table keeps writing only until its local deadline, which is
  before any other replica can see the lease expired (skew allowance included), and then
  stops; ``Health.leader`` turns False at the deadline, so /readyz says 503.
- The check is made again by every *attempt* of a write as it leaves the process (the AWS
  client's ``before-sign`` hook, ``autoscaler.aws.gameliftstreams.instrument``), after any
  wait for a rate-limit token: the SDK retries a timeout or a 5xx seconds later, when the
  lease may have passed on, and such a retry is refused (``FencedError``), not sent. On
  shutdown the lease is released only after the last tick has ended.
- What it *can* do: an attempt that passed the check and was then paused before its HTTP
  request reached GameLift Streams may land after the deadline, and so may one that left
  before it and is still on the wire. GameLift Streams has no conditional write to carry a
  token into, so this window (between the check and the request arriving) cannot be closed;
  it is milliseconds unless the process is frozen exactly there or the network holds the
  request. Every write re-reads the group state first and sets
  absolute capacities (never increments), so such a late write is at worst one stale
  absolute setting that the new leader overwrites on its next tick.
- Tokens make terms distinguishable after the fact: the audit record of every applied change
  carries the token it was fenced with (``fenced_tokens``), so two leaders can never both
  claim a term.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from autoscaler.domain.clock import Clock, WallClock
from autoscaler.domain.errors import AutoscalerError

log = logging.getLogger(__name__)

# Retry a failed renewal this often (bounded by renew_every_s): several tries before the end.
_RETRY_FRACTION = 0.25


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    name: str
    holder: str
    expires_at: float  # epoch seconds, by the writer's clock
    token: int


class LeaseUnavailableError(AutoscalerError):
    """The lease backend could not be reached or answered with an error (not a refusal)."""


class LeaseBackend(Protocol):
    """A store for one lease record per name with conditional writes."""

    async def acquire(self, holder: str, now: float, duration_s: float) -> LeaseRecord | None:
        """Take the lease if it is absent, expired at ``now``, or held by ``holder``; the
        token is incremented. Returns the record written, or None if another holder has an
        unexpired lease. Raises ``LeaseUnavailableError`` when the backend cannot answer."""
        ...

    async def renew(
        self, holder: str, token: int, now: float, duration_s: float
    ) -> LeaseRecord | None:
        """Extend the lease if ``holder`` still holds it with ``token``. Returns the record,
        None if it does not (lost), raises ``LeaseUnavailableError`` if unknown."""
        ...

    async def release(self, holder: str, token: int) -> bool:
        """Expire our lease at once (clean shutdown: the standby need not wait it out).
        Returns False when it was not ours any more."""
        ...

    async def read(self) -> LeaseRecord | None:
        """The current record, if any (strongly consistent)."""
        ...


def boottime() -> float:
    """Seconds on a clock that never jumps and keeps counting while stopped or suspended."""
    clock_id = getattr(time, "CLOCK_BOOTTIME", None)
    if clock_id is not None:
        return time.clock_gettime(clock_id)
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    duration_s: float
    renew_every_s: float
    clock_skew_s: float = 1.0

    def __post_init__(self) -> None:
        if self.duration_s <= 0 or self.renew_every_s <= 0 or self.clock_skew_s < 0:
            raise ValueError("lease duration and renewal interval must be positive")
        if self.renew_every_s >= self.duration_s - self.clock_skew_s:
            raise ValueError("renew_every_s must be below duration_s - clock_skew_s")


class LeaderElector:
    """Holds (or waits for) the lease; ``fence()`` is the Actuator's fencing check.

    ``on_change(leader)`` is called whenever leadership starts or ends (the daemon flips
    ``Health.leader``). ``wall`` stamps ``expires_at``; ``monotonic`` measures the deadline.
    """

    def __init__(
        self,
        backend: LeaseBackend,
        *,
        holder: str,
        timing: LeaseTiming,
        wall: Clock | None = None,
        monotonic: Callable[[], float] = boottime,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.backend = backend
        self.holder = holder
        self.timing = timing
        self._wall = wall or WallClock()
        self._mono = monotonic
        self._on_change = on_change
        self._token: int | None = None
        self._deadline = float("-inf")  # monotonic; fence() is False from here on
        self._leader = False
        self._fenced: set[int] = set()
        self.last_error: str | None = None

    # -- what the rest of the daemon asks -------------------------------------------------

    @property
    def token(self) -> int | None:
        """The token of the current term, while its deadline has not passed."""
        if self._token is None or self._mono() >= self._deadline:
            return None
        return self._token

    @property
    def leader(self) -> bool:
        return self._leader

    def fence(self) -> bool:
        """True iff this replica holds an unexpired lease (locally judged, see the module
        docstring). Records the token of each passed check for the audit trail."""
        if self._token is None or self._mono() >= self._deadline:
            self._set_leader(False)
            return False
        self._fenced.add(self._token)
        return True

    def take_fenced_tokens(self) -> list[int]:
        """Tokens that passed ``fence()`` since the last call (for the audit record)."""
        tokens, self._fenced = sorted(self._fenced), set()
        return tokens

    def seconds_left(self) -> float:
        return max(0.0, self._deadline - self._mono()) if self._token is not None else 0.0

    # -- the protocol ----------------------------------------------------------------------

    async def step(self) -> bool:
        """One acquire or renew attempt. Returns whether this replica leads afterwards."""
        t = self.timing
        sent = self._mono()
        now = self._wall.now()
        try:
            if self._token is not None and sent < self._deadline:
                record = await self.backend.renew(self.holder, self._token, now, t.duration_s)
                if record is None:
                    log.warning(
                        "lease lost: another replica holds it", extra={"token": self._token}
                    )
                    self._lose()
                    record = await self.backend.acquire(self.holder, now, t.duration_s)
            else:
                if self._token is not None:
                    log.warning("lease deadline passed without renewal; re-acquiring")
                    self._lose()
                record = await self.backend.acquire(self.holder, now, t.duration_s)
                if record is not None:
                    # Read the winner back before leading: a store that does not serialise
                    # conditional writes (moto does not; DynamoDB does) could have let a
                    # second replica's acquire land on top of ours.
                    confirmed = await self.backend.read()
                    if (
                        confirmed is None
                        or confirmed.holder != self.holder
                        or confirmed.token != record.token
                    ):
                        log.warning("lease acquire was overwritten by another replica")
                        record = None
        except LeaseUnavailableError as error:
            self.last_error = str(error)
            log.warning("lease backend unavailable: %s", error)
            self.fence()  # flips leadership off if the deadline has passed meanwhile
            return self._leader
        self.last_error = None
        if record is None:
            self._lose()
            return False
        if record.token != self._token:
            log.info("became leader", extra={"token": record.token, "holder": self.holder})
        self._token = record.token
        self._deadline = sent + t.duration_s - t.clock_skew_s
        self._set_leader(self._mono() < self._deadline)
        return self._leader

    def next_delay(self) -> float:
        """Seconds until the next attempt: the renewal interval, sooner after a failure, and
        never past the deadline (so leadership ends on time even if nothing else runs)."""
        t = self.timing
        delay = t.renew_every_s
        if self.last_error is not None:
            delay = max(0.05, t.renew_every_s * _RETRY_FRACTION)
        if self._token is not None:
            delay = min(delay, max(0.0, self._deadline - self._mono()) + 0.01)
        return delay

    async def run(self, stop: asyncio.Event) -> None:
        """Acquire, renew and watch the deadline until ``stop``; release on the way out."""
        try:
            while not stop.is_set():
                await self.step()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.next_delay())
        finally:
            await self.release()

    async def release(self) -> None:
        token = self._token
        self._lose()
        if token is None:
            return
        try:
            released = await self.backend.release(self.holder, token)
        except LeaseUnavailableError as error:
            log.warning("could not release the lease (it will expire): %s", error)
            return
        if released:
            log.info("lease released", extra={"token": token})

    # -- internals -------------------------------------------------------------------------

    def _lose(self) -> None:
        self._token = None
        self._deadline = float("-inf")
        self._set_leader(False)

    def _set_leader(self, leader: bool) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        if not leader:
            log.warning("not the leader any more: no writes until the lease is held again")
        if self._on_change is not None:
            self._on_change(leader)
