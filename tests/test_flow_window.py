"""The first sample after a hole (a restart after downtime, reads failing for a while) counts
no flows: before, its window reached back to the last stored sample, hours earlier, and every
placement failure and arrival of the outage landed in that one row, which the forecaster read
as a burst of demand."""

from __future__ import annotations

from pathlib import Path

from autoscaler.controller import Controller, ControllerOptions
from autoscaler.domain.clock import ManualClock
from autoscaler.domain.models import CapacitySetting
from autoscaler.policy.config import load_policy_file
from autoscaler.policy.plugin import PluginRegistry
from autoscaler.sampling import PLACEMENT_TIMEOUT
from autoscaler.store import HistoryStore
from autoscaler.testing import FakeGameLiftStreams

GROUP = "sg-1"
LOCATION = "us-west-2"
POLICY = f"""\
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata:
  name: hold
spec:
  streamGroups:
    ids: [{GROUP}]
  policy:
    plugin: buffer
    params: {{bufferSize: 2, minReplicas: 2, maxReplicas: 20}}
"""


def _controller(
    tmp_path: Path, service: FakeGameLiftStreams, store: HistoryStore, clock: ManualClock
) -> Controller:
    registry = PluginRegistry()
    path = tmp_path / "hold.yaml"
    path.write_text(POLICY)
    return Controller(
        reader=service,
        writer=service,
        store=store,
        policies=[load_policy_file(path, resolve_params=registry.validate_params)],
        plugins=registry,
        clock=clock,
        options=ControllerOptions(store_in_thread=False),
    )


async def test_a_restart_after_downtime_counts_no_flows_in_its_first_row(tmp_path: Path) -> None:
    clock = ManualClock()
    service = FakeGameLiftStreams()
    service.add_group(GROUP, {LOCATION: CapacitySetting(always_on=2, target_idle=2, maximum=20)})
    db = tmp_path / "history.sqlite3"
    with HistoryStore(db, retention_s=1e6) as store:
        await _controller(tmp_path, service, store, clock).tick()
    outage = 6 * 3600.0
    for k in range(120):  # placement timeouts during the six hours nobody watched
        created = clock.now() + 60.0 + k * 150.0
        service.add_session(
            GROUP,
            status="ERROR",
            status_reason=PLACEMENT_TIMEOUT,
            created_at=created,
            last_updated_at=created + 90.0,
            location=LOCATION,
        )
    clock.advance(outage)
    fresh = clock.now() - 30.0  # one arrival inside the normal window
    service.add_session(GROUP, status="CONNECTED", created_at=fresh, location=LOCATION)
    with HistoryStore(db, retention_s=1e6) as store:
        restarted = _controller(tmp_path, service, store, clock)
        first = (await restarted.tick()).groups[0].sample.locations[0]
        assert (first.arrivals, first.placement_failures, first.departures) == (0, 0, 0)
        assert first.in_use == 1  # the level is read as always
        clock.advance(60.0)
        service.add_session(
            GROUP, status="CONNECTED", created_at=clock.now() - 10.0, location=LOCATION
        )
        second = (await restarted.tick()).groups[0].sample.locations[0]
        assert second.arrivals == 1  # the window is back to one tick
