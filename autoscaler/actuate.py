"""The actuation stage: turn one guarded ``GroupDecision`` into the fewest GameLift Streams
writes, or (dry-run) into the list of writes that would have been sent.

Per group and tick at most two or three calls, in this order:

1. ``UpdateStreamGroup``: one call carrying every changed existing location (the full
   AlwaysOn/TargetIdle/Maximum triple, or the legacy AlwaysOn/OnDemand pair). First because
   resizing the locations that serve players now matters most.
2. ``AddStreamGroupLocations``: new locations with explicit capacities. Runs even if 1 failed:
   adding capacity is never harmful, and a quota error on a new location must not block the
   resizing of existing ones on every tick.
3. ``RemoveStreamGroupLocations``: only when the capacity update succeeded (or there was
   none), so capacity is never shed while the resizing is not in place (removal disconnects
   streams), and not in a tick whose add went through (below).

``fencing`` is checked before every write (a deposed leader must not write). Nothing here
raises: service errors become ``Actuation.error`` with ``retry_later`` set for the retryable
ones (throttling, conflict, 5xx, timeouts). ``Actuation.succeeded`` names the calls that went
through, so a partly applied plan is recorded as such.

A frozen decision sends nothing but the removals the guards let through a frozen group: the
documented way out of ACTIVE_WITH_ERRORS is removing the failed location, and a group
frozen until then would stay frozen for good.

An add and a removal are never sent in the same tick: once the add is accepted the group
is UPDATING_LOCATIONS and refuses the removal, so the removal waits for the next tick the
group is ACTIVE; if the add fails, the removal goes ahead (an add refused for good, a quota,
must not keep an idle location billed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from autoscaler.domain.clock import Clock
from autoscaler.domain.errors import RetryableServiceError, ServiceError
from autoscaler.domain.models import Actuation, CapacitySetting, GroupDecision
from autoscaler.domain.ports import StreamGroupWriter

logger = logging.getLogger(__name__)

UPDATE = "UpdateStreamGroup"
ADD = "AddStreamGroupLocations"
REMOVE = "RemoveStreamGroupLocations"
NOT_LEADER = "not leader"


def setting_problem(location: str, s: CapacitySetting) -> str | None:
    """Why ``s`` must not be sent (client-side checks of gameliftstreams.md), or None."""
    values = (s.always_on, s.target_idle, s.maximum, s.on_demand or 0)
    if min(values) < 0:
        return f"{location}: negative capacity in {s.describe()}"
    if s.on_demand is None and (s.always_on > s.maximum or s.target_idle > s.maximum):
        return f"{location}: always-on and target-idle must not exceed maximum ({s.describe()})"
    return None


def landed(decision: GroupDecision, actuation: Actuation) -> GroupDecision:
    """``decision`` as far as ``actuation`` carried out its capacity changes: without a
    successful UpdateStreamGroup the changed locations are left out (what the service shows
    for them is read next tick; an update whose reply was lost is remembered as sent)."""
    if actuation.capacity_updated or not decision.changed_locations:
        return decision
    return replace(decision, locations=tuple(d for d in decision.locations if not d.changed))


def waiting_removal(decision: GroupDecision, actuation: Actuation) -> bool:
    """True when ``decision``'s removals were held back because its add went through."""
    return (
        ADD in actuation.succeeded
        and REMOVE not in actuation.calls
        and any(c.action == "remove" for c in decision.location_changes)
    )


class Actuator:
    """Applies decisions through a ``StreamGroupWriter``; with no writer it can only dry-run.

    ``clock`` (optional) times the writes of a group for the log line.
    """

    def __init__(self, writer: StreamGroupWriter | None, *, clock: Clock | None = None) -> None:
        self._writer = writer
        self._clock = clock

    async def apply(
        self,
        decision: GroupDecision,
        *,
        dry_run: bool,
        fencing: Callable[[], bool] | None = None,
    ) -> Actuation:
        gid = decision.group_id
        if decision.frozen and not any(c.action == "remove" for c in decision.location_changes):
            return Actuation(group_id=gid, applied=False, dry_run=dry_run or self._writer is None)
        if not decision.location_changes and not any(d.changed for d in decision.locations):
            # Nothing to send (most ticks): what the general path below returns for no calls.
            if dry_run or self._writer is None:
                return Actuation(group_id=gid, applied=False, dry_run=True)
            return Actuation(group_id=gid, applied=False, dry_run=False)

        removes = [c.location for c in decision.location_changes if c.action == "remove"]
        adds: dict[str, CapacitySetting | None] = {}
        updates: dict[str, CapacitySetting] = {}
        if not decision.frozen:  # frozen: the removals alone (module docstring)
            adds = {c.location: c.setting for c in decision.location_changes if c.action == "add"}
            updates = {
                d.location: d.decided
                for d in decision.changed_locations
                if d.location not in adds and d.location not in removes
            }
        problems = [
            f"{c.location}: unknown location change action {c.action!r}"
            for c in decision.location_changes
            if c.action not in ("add", "remove")
        ]
        problems += [f"{n}: add without a capacity setting" for n, s in adds.items() if s is None]
        to_send = [*updates.items(), *((n, s) for n, s in adds.items() if s is not None)]
        problems += [p for n, s in to_send if (p := setting_problem(n, s)) is not None]
        planned = tuple(
            op for op, todo in ((UPDATE, updates), (ADD, adds), (REMOVE, removes)) if todo
        )
        if ADD in planned and REMOVE in planned:
            planned = planned[:-1]  # what a dry run shows: the removal waits (docstring)
        if problems:
            error = "refused: " + "; ".join(problems)
            logger.error("actuation %s %s", gid, error)
            return Actuation(group_id=gid, applied=False, dry_run=dry_run, error=error)
        if dry_run or self._writer is None:
            return Actuation(group_id=gid, applied=False, dry_run=True, calls=planned)
        if not planned:
            return Actuation(group_id=gid, applied=False, dry_run=False)
        return await self._send(
            gid, self._writer, updates=updates, adds=adds, removes=removes, fencing=fencing
        )

    async def _send(
        self,
        gid: str,
        writer: StreamGroupWriter,
        *,
        updates: dict[str, CapacitySetting],
        adds: dict[str, CapacitySetting | None],
        removes: list[str],
        fencing: Callable[[], bool] | None,
    ) -> Actuation:
        started = self._clock.now() if self._clock is not None else None
        sent: list[str] = []
        succeeded: list[str] = []
        errors: list[str] = []
        retry_later = False

        async def call(op: str, target: str) -> bool:
            nonlocal retry_later
            if fencing is not None and not fencing():
                errors.append(NOT_LEADER)
                return False
            sent.append(op)
            try:
                if op == UPDATE:
                    await writer.update_stream_group(gid, updates)
                elif op == ADD:
                    await writer.add_stream_group_locations(
                        gid, {k: v for k, v in adds.items() if v is not None}
                    )
                else:
                    await writer.remove_stream_group_locations(gid, removes)
            except RetryableServiceError as exc:
                errors.append(f"{op} {target}: {exc}")
                retry_later = True
                return False
            except ServiceError as exc:
                errors.append(f"{op} {target}: {exc}")
                return False
            except Exception as exc:  # a bug in an adapter must not stop the other groups
                logger.exception("actuation %s: %s raised unexpectedly", gid, op)
                errors.append(f"{op} {target}: unexpected {type(exc).__name__}: {exc}")
                return False
            succeeded.append(op)
            return True

        updated = True
        if updates:
            updated = await call(UPDATE, ",".join(sorted(updates)))
        added = False
        if adds and NOT_LEADER not in errors:
            added = await call(ADD, ",".join(sorted(adds)))
        if removes and NOT_LEADER not in errors:
            if added:
                # Not an error: the group is UPDATING_LOCATIONS until the new location is
                # ACTIVE, and the removal is proposed again then.
                logger.info("actuation %s: %s waits for the locations being added", gid, REMOVE)
            elif updated:
                await call(REMOVE, ",".join(sorted(removes)))
            else:
                errors.append(f"{REMOVE} skipped: the capacity update of the plan failed")

        error = "; ".join(errors) if errors else None
        took = ""
        if started is not None and self._clock is not None:
            took = f" in {self._clock.now() - started:.2f}s"
        if error is None:
            logger.info("actuation %s: sent %s%s", gid, ", ".join(sent), took)
        else:
            logger.warning(
                "actuation %s: sent %s%s; %s", gid, ", ".join(sent) or "nothing", took, error
            )
        return Actuation(
            group_id=gid,
            applied=bool(succeeded),
            dry_run=False,
            calls=tuple(sent),
            error=error,
            retry_later=retry_later and NOT_LEADER not in errors,
            succeeded=tuple(succeeded),
        )
