"""A policy's hourly budget covers all its groups, decided one after the other in a tick.

Before, each group saw only what the groups decided before it had taken: the first could
grow into the whole cap, and a later one, which the guard never cuts below its sessions in
use, then pushed the policy over it ($26/h against a $20/h cap below). Now each group is
decided with the floors of the groups still to come counted as spent."""

from __future__ import annotations

from pathlib import Path

from autoscaler.controller import Controller, ControllerOptions
from autoscaler.domain.clock import ManualClock
from autoscaler.domain.models import CapacitySetting
from autoscaler.guard import worst_case_cost_per_hour
from autoscaler.policy.config import load_policy_file
from autoscaler.policy.plugin import PluginRegistry
from autoscaler.store import HistoryStore
from autoscaler.testing import FakeGameLiftStreams

LOCATION = "us-west-2"
PRICE = 1.0  # USD per slot-hour
CAP = 20.0

POLICY = f"""\
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata:
  name: capped
spec:
  streamGroups:
    ids: [sg-a, sg-b]
  defaults:
    minCapacity: 0
    maxCapacity: 60
  prices:
    gen4n_ultra: {PRICE}
  budget:
    maxCostPerHour: {CAP}
  policy:
    plugin: target-tracking
    params:
      targetUtilization: 0.6
      minIdle: 2
"""


async def test_the_first_group_cannot_take_the_room_the_next_one_needs(tmp_path: Path) -> None:
    clock = ManualClock()
    service = FakeGameLiftStreams()
    for gid in ("sg-a", "sg-b"):  # sg-a is decided first
        service.add_group(
            gid,
            {LOCATION: CapacitySetting(always_on=10, target_idle=0, maximum=10)},
            stream_class="gen4n_ultra",
        )
        for _ in range(10):
            service.add_session(
                gid, status="CONNECTED", created_at=clock.now() - 30, location=LOCATION
            )
    registry = PluginRegistry()
    path = tmp_path / "capped.yaml"
    path.write_text(POLICY)
    policy = load_policy_file(path, resolve_params=registry.validate_params)
    with HistoryStore(":memory:", retention_s=1e6) as store:
        controller = Controller(
            reader=service,
            writer=service,
            store=store,
            policies=[policy],
            plugins=registry,
            clock=clock,
            options=ControllerOptions(store_in_thread=False),
        )
        report = await controller.tick()
    decisions = {g.group_id: g.decision for g in report.groups}
    assert set(decisions) == {"sg-a", "sg-b"}
    total = 0.0
    for decision in decisions.values():
        assert decision is not None
        d = decision.locations[0]
        assert d.decided.ceiling >= d.in_use == 10  # never below the sessions in use
        total += worst_case_cost_per_hour(decision, PRICE)
    assert total <= CAP + 1e-9  # both fit: 10 + 10 slots at $1
    first = decisions["sg-a"]
    assert first is not None
    assert any(v.guard == "budget" for v in first.vetoes)  # held to what sg-b leaves
