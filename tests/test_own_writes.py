"""The controller's own writes are never read back as a hand-made change (drift).

Drift is "the service shows something other than what we last applied"; a change made by hand
is then respected for ``driftCooldownSeconds`` (30 min), during which the location is held,
even as demand climbs past the maximum. Three ways an update of ours can land without the
controller seeing it confirmed, each of which used to freeze the location:

- the update lands but its reply is lost (a read timeout);
- the tick is cancelled mid-write (SIGTERM past the grace, the tick timeout) and the process
  restarts on the same store;
- high availability: replica A leads, B takes over and changes capacity, A leads again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from autoscaler.controller import Controller, ControllerOptions
from autoscaler.domain.clock import ManualClock
from autoscaler.domain.errors import ServiceUnavailableError
from autoscaler.domain.models import CapacitySetting, TickReport
from autoscaler.guard import GuardMemory
from autoscaler.policy.config import load_policy_file
from autoscaler.policy.plugin import PluginRegistry
from autoscaler.store import HistoryStore
from autoscaler.testing import FakeGameLiftStreams

GROUP = "sg-1"
LOCATION = "us-west-2"
START = CapacitySetting(always_on=2, target_idle=0, maximum=4)

POLICY = f"""\
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata:
  name: climb
spec:
  streamGroups:
    ids: [{GROUP}]
  defaults:
    minCapacity: 0
    maxCapacity: 60
  policy:
    plugin: target-tracking
    params:
      targetUtilization: 0.7
      minIdle: 2
"""


class Service(FakeGameLiftStreams):
    """The fake service, with an update that lands and then loses its reply or hangs."""

    lose_reply = False
    hang = False

    async def update_stream_group(
        self, group_id: str, settings: dict[str, CapacitySetting]
    ) -> object:
        state = await super().update_stream_group(group_id, settings)
        if self.lose_reply:
            self.lose_reply = False
            raise ServiceUnavailableError("UpdateStreamGroup: Read timeout on endpoint URL")
        if self.hang:
            await asyncio.sleep(3600)
        return state


def _world(clock: ManualClock) -> Service:
    service = Service()
    service.add_group(GROUP, {LOCATION: START}, stream_class="gen4n_ultra")
    return service


def _players(service: Service, clock: ManualClock, n: int) -> None:
    for _ in range(n):
        service.add_session(
            GROUP, status="CONNECTED", created_at=clock.now() - 30, location=LOCATION
        )


def _controller(
    tmp_path: Path,
    service: Service,
    store: HistoryStore,
    clock: ManualClock,
    **kw: object,
) -> Controller:
    registry = PluginRegistry()
    path = tmp_path / "climb.yaml"
    path.write_text(POLICY)
    policy = load_policy_file(path, resolve_params=registry.validate_params)
    return Controller(
        reader=service,
        writer=service,
        store=store,
        policies=[policy],
        plugins=registry,
        clock=clock,
        options=ControllerOptions(store_in_thread=False),
        **kw,  # type: ignore[arg-type]
    )


def _drift(report: TickReport) -> list[str]:
    decision = report.groups[0].decision
    assert decision is not None
    return [v.reason for v in decision.vetoes if v.guard == "drift"]


def _keeps_up(report: TickReport) -> None:
    """No drift veto, and the decision covers the sessions in use."""
    assert _drift(report) == []
    decision = report.groups[0].decision
    assert decision is not None
    d = decision.locations[0]
    assert d.decided.ceiling >= d.in_use, d


async def _lose_a_reply(controller: Controller, service: Service, clock: ManualClock) -> TickReport:
    """A first tick that applies a change, then demand rises and the next update lands but
    its reply is lost."""
    _players(service, clock, 4)
    await controller.tick()
    clock.advance(60)
    _players(service, clock, 6)
    service.lose_reply = True
    return await controller.tick()


async def test_a_lost_reply_is_not_read_as_drift(tmp_path: Path) -> None:
    clock = ManualClock()
    service = _world(clock)
    with HistoryStore(":memory:", retention_s=1e6) as store:
        controller = _controller(tmp_path, service, store, clock)
        lost = await _lose_a_reply(controller, service, clock)
        assert lost.groups[0].actuation is not None
        assert not lost.groups[0].actuation.applied  # the controller saw a failure...
        landed = service.state(GROUP).locations[0].setting
        decision = lost.groups[0].decision
        assert decision is not None
        assert landed == decision.locations[0].decided  # ...but the update landed
        for _ in range(4):
            clock.advance(60)
            _players(service, clock, 5)
            _keeps_up(await controller.tick())


async def test_a_hand_made_change_is_still_respected(tmp_path: Path) -> None:
    """The other side: a change nobody in the controller sent is drift, as before, even
    right after a lost reply."""
    clock = ManualClock()
    service = _world(clock)
    with HistoryStore(":memory:", retention_s=1e6) as store:
        controller = _controller(tmp_path, service, store, clock)
        await _lose_a_reply(controller, service, clock)
        by_hand = CapacitySetting(always_on=30, target_idle=2, maximum=40)
        await FakeGameLiftStreams.update_stream_group(service, GROUP, {LOCATION: by_hand})
        clock.advance(60)
        report = await controller.tick()
        assert any("changed outside the controller" in r for r in _drift(report))
        decision = report.groups[0].decision
        assert decision is not None
        assert decision.locations[0].decided == by_hand


async def test_a_write_cancelled_mid_flight_then_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    service = _world(clock)
    db = tmp_path / "history.sqlite3"
    with HistoryStore(db, retention_s=1e6) as store:
        controller = _controller(tmp_path, service, store, clock)
        _players(service, clock, 4)
        first = await controller.tick()
        assert first.groups[0].actuation is not None
        assert first.groups[0].actuation.applied  # something to read drift against
        before = service.state(GROUP).locations[0].setting
        clock.advance(60)
        _players(service, clock, 6)
        service.hang = True
        tick = asyncio.create_task(controller.tick())
        for _ in range(50):  # until the update has reached the service
            await asyncio.sleep(0)
            if service.state(GROUP).locations[0].setting != before:
                break
        tick.cancel()  # the shutdown grace is over, or the tick timed out
        with pytest.raises(asyncio.CancelledError):
            await tick
        assert service.state(GROUP).locations[0].setting != before  # it landed
    service.hang = False
    with HistoryStore(db, retention_s=1e6) as store:  # the restarted process
        restarted = _controller(tmp_path, service, store, clock)
        for _ in range(4):
            clock.advance(60)
            _players(service, clock, 5)
            _keeps_up(await restarted.tick())


async def test_failback_to_a_replica_that_led_before(tmp_path: Path) -> None:
    clock = ManualClock()
    service = _world(clock)
    leader = {"name": "a"}

    def replica(name: str, store: HistoryStore) -> Controller:
        return _controller(
            tmp_path,
            service,
            store,
            clock,
            fencing=lambda: leader["name"] == name,
            leading=lambda: leader["name"] == name,
        )

    with (
        HistoryStore(":memory:", retention_s=1e6) as store_a,
        HistoryStore(":memory:", retention_s=1e6) as store_b,
    ):
        a, b = replica("a", store_a), replica("b", store_b)
        _players(service, clock, 4)
        for step, holder in enumerate("aabbbaaaa"):
            leader["name"] = holder
            if step >= 2:
                _players(service, clock, 5)
            reports = {"a": await a.tick(), "b": await b.tick()}
            _keeps_up(reports[holder])
            clock.advance(60)
        assert service.state(GROUP).locations[0].setting.ceiling >= 39


def test_memory_written_before_the_sent_settings_were_kept_still_loads() -> None:
    memory = GuardMemory(last_applied={(GROUP, LOCATION): START})
    doc = memory.to_json().replace(',"sent":[]', "")
    assert '"sent"' not in doc
    assert GuardMemory.from_json(doc) == memory
    sent = GuardMemory(sent={(GROUP, LOCATION): START})
    assert GuardMemory.from_json(sent.to_json()) == sent
