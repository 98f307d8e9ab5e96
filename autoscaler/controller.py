"""One tick of the controller: sample → store → forecast/plan → guard → actuate → report.

``Controller.tick()`` chains the stages for one cycle and returns a ``TickReport``; the
daemon, ``autoscaler plan``, the demo and the backtest all run exactly this code. Every stage
takes plain data and returns plain data; this module only wires them. Collaborators come in as
keyword arguments (the composition root builds them), time comes from the injected clock.

Safety rules kept here, not in a stage:
- a group whose GetStreamGroup failed is skipped with the reason (never planned blind);
- every mutating call is journaled (intent before, outcome after) in the store, so a restart
  after a crash knows what may have been in flight, and re-reads the truth instead of replaying;
- one group's failure never affects the others;
- policy plugins are third-party code: every group's plan runs in its own daemon thread, all
  started together and awaited with one per-tick deadline (``plugin_timeout_s``). A plan that
  is not back in time is a plugin error for that group (hold, fallback counts it); the others
  go on. Python cannot kill a thread, so a truly stuck plugin leaks its thread: the group is
  not planned again (held, with the reason) until that thread returns, which bounds the leak
  to one thread per group. Daemon threads, not ``asyncio.to_thread``: the default executor
  is shared with the store calls (a few stuck plugins would starve them) and is joined at
  exit (a stuck plugin would block shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from autoscaler.actuate import Actuator, landed, waiting_removal
from autoscaler.domain.clock import Clock
from autoscaler.domain.models import (
    Actuation,
    GroupDecision,
    GroupReport,
    GroupSample,
    GroupState,
    GroupSummary,
    LocationHistory,
    LocationSample,
    TickReport,
)
from autoscaler.domain.policy import Mode, Policy
from autoscaler.domain.ports import StreamGroupReader, StreamGroupWriter
from autoscaler.guard import (
    GuardMemory,
    budget_floor_per_hour,
    guard_group,
    worst_case_cost_per_hour,
)
from autoscaler.planner import WATCHED_TICKS, GroupPlan, hold_plan, plan_group
from autoscaler.policy.plugin import PluginRegistry, PolicyPlugin, UnknownPluginError
from autoscaler.report import AuditLog, setting_dict
from autoscaler.sampling import INSTANT_START_S, Sampler, discover
from autoscaler.store import HistoryStore, Outcome

log = logging.getLogger(__name__)

_P = ParamSpec("_P")
_R = TypeVar("_R")

MEMORY_KEY = "guard_memory"
PAUSE_KEY = "pause"


@dataclass(frozen=True, slots=True)
class ControllerOptions:
    interval_s: float = 60.0  # simulated seconds between ticks (enters the lead time)
    dry_run: bool = False  # never call a mutating operation (the writer is not even built)
    paused: bool = False  # global pause: hold every group's capacity
    paused_groups: frozenset[str] = field(default_factory=frozenset)
    max_concurrency: int = 8  # groups read at once
    discovery_interval_s: float = 300.0  # how often tag selectors re-list the groups
    # SQLite work and plugin calls off the event loop (False in backtests: all inline, so a
    # run in virtual time never depends on wall-clock deadlines)
    store_in_thread: bool = True
    plugin_timeout_s: float = 10.0  # wall seconds all plugin decisions of a tick may take
    # Guard memory is written to the store every this many ticks, and on every tick that
    # applied a change. 1 (the daemon): every tick, so a restart loses nothing. Backtests
    # raise it: their in-memory store is never reopened, and the JSON costs ~100 µs a tick.
    persist_memory_every: int = 1
    # Also write it on every tick that applied a change (the daemon: a restart then never
    # forgets a step or cooldown). A backtest, whose store is never reopened, turns it off:
    # with a policy that changes capacity every other tick it was one JSON dump per change.
    persist_memory_on_apply: bool = True
    # The store is pruned to its retention (samples, finished journal entries) this often,
    # in the tick that first finds it due; None never prunes (a backtest's in-memory store
    # lives for one run and never holds more than the run).
    prune_every_s: float | None = 3600.0
    # A session whose start took longer than this waited for capacity (a late start).
    instant_start_s: float = INSTANT_START_S


def _arn_group_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _in_daemon_thread(fn: Callable[[], _R], name: str) -> asyncio.Future[_R]:
    """Run ``fn`` in a new daemon thread; the future gets its result or exception. Anything
    that is not an ``Exception`` (SystemExit from a plugin) arrives as a RuntimeError so it can
    never stop the event loop. If the loop is gone when ``fn`` returns, the result is dropped."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_R] = loop.create_future()

    def deliver(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def work() -> None:
        ok: bool = True
        value: Any = None
        try:
            value = fn()
        except Exception as exc:
            ok, value = False, exc
        except BaseException as exc:  # must not escape into the loop
            ok, value = False, RuntimeError(f"{type(exc).__name__} raised: {exc}")
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(deliver, ok, value)

    threading.Thread(target=work, name=name, daemon=True).start()
    return future


class Controller:
    def __init__(
        self,
        *,
        reader: StreamGroupReader,
        writer: StreamGroupWriter | None,
        store: HistoryStore,
        policies: Sequence[Policy],
        plugins: PluginRegistry,
        clock: Clock,
        options: ControllerOptions | None = None,
        audit: AuditLog | None = None,
        fencing: Callable[[], bool] | None = None,
        leading: Callable[[], bool] | None = None,
        call_counts: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        self.options = options or ControllerOptions()
        self._reader = reader
        self._store = store
        self._policies = list(policies)
        self._plugins = plugins
        self._clock = clock
        self._audit = audit
        self._fencing = fencing
        # Whether this replica holds the lease now (None: no election, always); unlike
        # ``fencing`` it leaves no trace in the audit's token list.
        self._leading = leading
        self._call_counts = call_counts
        self._sampler = Sampler(
            reader,
            max_concurrency=self.options.max_concurrency,
            clock=clock,
            instant_start_s=self.options.instant_start_s,
        )
        # Dry-run by construction: without a writer the actuator cannot send anything.
        self._actuator = Actuator(None if self.options.dry_run else writer, clock=clock)
        self._assigned: dict[str, Policy] = {}
        self._latest_stored: dict[str, float] = {}  # newest stored sample time per group
        # Per group, the locations with stored samples (read from the store once, then kept
        # up to date): a location removed from a group still has a history, which the
        # month's spend and the lifecycle's group forecast must count.
        self._stored_locations: dict[str, set[str]] | None = None
        self._discovered_at: float | None = None
        self._memory = self._load_memory()
        self._persisted_memory: GuardMemory | None = None  # the memory last written
        self._ticks = 0
        self._pruned_at: float | None = None
        self._paused_all, self._paused_groups = self._load_pause()
        # group id → the planning of an earlier tick that missed its deadline, still running
        self._overdue: dict[str, asyncio.Future[GroupPlan]] = {}
        # group id → location → the miss budget of the decision in force (``_with_budget``)
        self._in_force: dict[str, dict[str, float]] = {}
        self._reconcile_pending()

    # ------------------------------------------------------------------ setup
    def _load_memory(self) -> GuardMemory:
        raw = self._store.get_state(MEMORY_KEY)
        if raw is None:
            return GuardMemory()
        try:
            return GuardMemory.from_json(raw)
        except ValueError as error:
            log.warning("discarding unreadable guard memory: %s", error)
            return GuardMemory()

    def _reconcile_pending(self) -> None:
        """Intents without an outcome were in flight when the process died. Their effect (if
        any) is visible in the next GetStreamGroup, so they are closed as abandoned rather than
        replayed: a decision is never applied twice."""
        for intent in self._store.pending_intents():
            log.warning(
                "closing decision %s of %s left in flight by a previous run",
                intent.decision_id,
                intent.group_id,
            )
            self._store.record_outcome(
                intent.decision_id, Outcome.ABANDONED, "process restarted; state re-read"
            )

    # ------------------------------------------------------------------ pause
    def _load_pause(self) -> tuple[bool, set[str]]:
        raw = self._store.get_state(PAUSE_KEY)
        paused_all = self.options.paused
        groups = set(self.options.paused_groups)
        if raw is not None:
            try:
                doc = json.loads(raw)
                paused_all = paused_all or bool(doc.get("all", False))
                groups |= {str(g) for g in doc.get("groups", [])}
            except (ValueError, AttributeError):
                log.warning("discarding unreadable pause state")
        return paused_all, groups

    def is_paused(self, group_id: str | None = None) -> bool:
        """Global pause, or this group's pause (a paused group's capacity is held)."""
        return self._paused_all or (group_id is not None and group_id in self._paused_groups)

    def pause_state(self) -> dict[str, object]:
        return {"all": self._paused_all, "groups": sorted(self._paused_groups)}

    def set_paused(self, paused: bool, group_id: str | None = None) -> None:
        """Pause or resume everything (``group_id`` None) or one group; survives restarts."""
        if group_id is None:
            self._paused_all = paused
        elif paused:
            self._paused_groups.add(group_id)
        else:
            self._paused_groups.discard(group_id)
        self._store.put_state(PAUSE_KEY, json.dumps(self.pause_state(), sort_keys=True))
        log.warning(
            "paused" if paused else "resumed", extra={"group_id": group_id or "(all groups)"}
        )

    def set_policies(self, policies: Sequence[Policy]) -> None:
        """Swap in a new, already validated configuration (config reload)."""
        self._policies = list(policies)
        self._discovered_at = None

    @property
    def policies(self) -> list[Policy]:
        return list(self._policies)

    def policy_for(self, group_id: str) -> Policy | None:
        """The policy that managed ``group_id`` in the last tick."""
        return self._assigned.get(group_id)

    # ------------------------------------------------------------------ discovery
    async def _assignments(self, now: float) -> tuple[dict[str, Policy], list[str]]:
        """Which group each policy manages. Id/ARN selectors need no call; tag selectors list
        the groups every ``discovery_interval_s``. A failed listing keeps the previous set."""
        problems: list[str] = []
        due = (
            self._discovered_at is None
            or now - self._discovered_at >= self.options.discovery_interval_s
        )
        if not due:
            return self._assigned, problems
        assigned: dict[str, Policy] = {}
        for policy in self._policies:
            explicit = [*policy.selector.ids, *(_arn_group_id(a) for a in policy.selector.arns)]
            for gid in explicit:
                assigned.setdefault(gid, policy)
            if policy.selector.tags:

                def matches(
                    summary: GroupSummary, tags: Mapping[str, str] | None, p: Policy = policy
                ) -> bool:
                    return p.selector.matches(summary.group_id, summary.arn, tags)

                try:
                    for gid in await discover(self._reader, matches, need_tags=True):
                        assigned.setdefault(gid, policy)
                except Exception as error:
                    problems.append(f"discovery for policy {policy.name!r} failed: {error}")
                    for gid, owner in self._assigned.items():
                        if owner.name == policy.name:
                            assigned.setdefault(gid, policy)
                    continue
        self._assigned = assigned
        if not problems:
            self._discovered_at = now
        return assigned, problems

    # ------------------------------------------------------------------ the tick
    async def tick(self) -> TickReport:
        started = time.perf_counter()
        calls_before = dict(self._call_counts()) if self._call_counts else {}
        now = self._clock.now()
        assigned, problems = await self._assignments(now)
        group_ids = list(assigned)

        previous = await self._store_call(self._previous_times, group_ids, now)
        samples = await self._sampler.sample(group_ids, previous)
        await self._store_call(self._store_samples, samples)

        plans = await self._plan_all(samples, assigned)
        reports: list[GroupReport] = []
        # A policy's budget covers all its groups: each group is decided with what the ones
        # before it took (their worst case) and what the ones after it cannot give up (their
        # floors), so the first cannot take the room the later ones need for their sessions.
        spent_per_policy: dict[str, float] = {}
        floors: dict[str, float] = {}
        for gid, planned in plans.items():
            policy = assigned[gid]
            if isinstance(planned, GroupPlan) and policy.budget.has_cap:
                floors[gid] = budget_floor_per_hour(planned, policy)
                spent_per_policy[policy.name] = spent_per_policy.get(policy.name, 0.0) + floors[gid]
        for sample in samples:
            policy = assigned[sample.group_id]
            plan = plans.get(sample.group_id)
            if sample.group_id in floors:  # its own floor is counted by its decision instead
                spent_per_policy[policy.name] -= floors[sample.group_id]
            reports.append(await self._decide_and_apply(sample, policy, plan, spent_per_policy))

        self._ticks += 1
        applied = any(r.actuation is not None and r.actuation.applied for r in reports)
        due = (applied and self.options.persist_memory_on_apply) or (
            self._ticks % max(1, self.options.persist_memory_every) == 0
        )
        if due:
            await self._persist_memory()
        await self._prune_if_due(now)
        calls: dict[str, int] = {}
        if self._call_counts is not None:
            after = self._call_counts()
            calls = {op: n - calls_before.get(op, 0) for op, n in after.items()}
            calls = {op: n for op, n in calls.items() if n}
        for problem in problems:
            log.warning(problem)
        ok = not problems and all(r.sample.complete for r in reports)
        tick_report = TickReport(
            at=now,
            duration_s=time.perf_counter() - started,
            groups=tuple(reports),
            calls=calls,
            ok=ok,
        )
        if self._audit is not None:
            await self._store_call(self._audit.write, tick_report)
        return tick_report

    async def _prune_if_due(self, now: float) -> None:
        """Keep the history and journal within the store's retention: without this a daemon's
        database grows by every sample it ever took. A failed prune is logged and retried at
        the next due time; it never fails the tick."""
        every = self.options.prune_every_s
        if every is None or (self._pruned_at is not None and now - self._pruned_at < every):
            return
        self._pruned_at = now
        try:
            deleted = await self._store_call(self._store.prune, now)
        except Exception:
            log.exception("pruning the history store failed; retrying in %.0fs", every)
            return
        if deleted:
            log.info("pruned the history store", extra={"samples_deleted": deleted})

    async def _plan_all(
        self, samples: Sequence[GroupSample], assigned: Mapping[str, Policy]
    ) -> dict[str, GroupPlan | str]:
        """Every plannable group's plan (or why it was skipped), the plugins asked in parallel
        under one deadline. Groups without a state are left out (the caller skips them)."""
        out: dict[str, GroupPlan | str] = {}
        running: dict[str, asyncio.Future[GroupPlan]] = {}
        timeout = self.options.plugin_timeout_s
        for sample in samples:
            gid, state = sample.group_id, sample.state
            if state is None:
                continue
            policy = assigned[gid]
            try:
                plugin = self._plugins.get(policy.plugin)
            except UnknownPluginError as unknown:
                out[gid] = str(unknown)
                continue
            overdue = self._overdue.get(gid)
            if overdue is not None:
                if not overdue.done():
                    why = (
                        f"policy {plugin.name!r}: a decision of an earlier tick is still running"
                        f" (it missed the {timeout:g} s deadline); not asked again until it"
                        " returns"
                    )
                    out[gid] = hold_plan(state, sample, why)
                    continue
                del self._overdue[gid]
                if not overdue.cancelled():
                    overdue.exception()  # retrieved: a late failure is not logged as lost
            histories = await self._store_call(self._histories, sample, policy)

            def plan(
                state: GroupState = state,
                sample: GroupSample = sample,
                histories: Mapping[str, LocationHistory] = histories,
                policy: Policy = policy,
                plugin: PolicyPlugin = plugin,
            ) -> GroupPlan:
                return plan_group(
                    state=state,
                    sample=sample,
                    histories=histories,
                    policy=policy,
                    plugin=plugin,
                    params=policy.plugin_params,
                    now=sample.at,
                    interval_s=self.options.interval_s,
                )

            if not self.options.store_in_thread:
                out[gid] = plan()
                continue
            running[gid] = _in_daemon_thread(plan, name=f"plan-{gid}")
        if running:
            try:
                await asyncio.wait(running.values(), timeout=timeout)
            except asyncio.CancelledError:  # the tick timed out: the threads run on
                self._overdue.update({g: f for g, f in running.items() if not f.done()})
                raise
        samples_by_id = {s.group_id: s for s in samples}
        for gid, future in running.items():
            sample = samples_by_id[gid]
            assert sample.state is not None
            name = assigned[gid].plugin
            if not future.done():
                self._overdue[gid] = future
                why = f"policy {name!r}: no decision within the {timeout:g} s deadline"
                log.error("planning %s: %s", gid, why)
                out[gid] = hold_plan(sample.state, sample, why)
            elif (exc := future.exception()) is not None:
                log.error("planning %s failed", gid, exc_info=exc)
                why = f"policy {name!r}: planning failed: {type(exc).__name__}: {exc}"
                out[gid] = hold_plan(sample.state, sample, why)
            else:
                out[gid] = future.result()
        return out

    async def _decide_and_apply(
        self,
        sample: GroupSample,
        policy: Policy,
        plan: GroupPlan | str | None,
        spent_per_policy: dict[str, float],
    ) -> GroupReport:
        gid = sample.group_id
        state = sample.state
        if state is None or plan is None:
            why = "; ".join(sample.problems) or "group state unavailable"
            return GroupReport(gid, sample.at, sample, None, None, skipped=why)
        if isinstance(plan, str):
            return GroupReport(gid, sample.at, sample, None, None, skipped=plan)
        paused = self.is_paused(gid)
        if self._leading is not None and not self._leading():
            # What the service shows is the leader's doing: were this replica to lead again
            # later, its own older settings must not make the leader's look like drift.
            self._memory = self._memory.adopt(
                gid, {lp.location: lp.current for lp in plan.locations}
            )
        decision, memory = guard_group(
            plan,
            state=state,
            sample=sample,
            policy=policy,
            memory=self._memory,
            now=self._clock.now(),
            paused=paused,
            budget_spent_elsewhere_per_hour=spent_per_policy.get(policy.name, 0.0),
            interval_s=self.options.interval_s,
        )
        self._memory = memory
        price = policy.price_for(state.stream_class)
        spent_per_policy[policy.name] = spent_per_policy.get(
            policy.name, 0.0
        ) + worst_case_cost_per_hour(decision, price)
        dry_run = self.options.dry_run or policy.dry_run or policy.mode is Mode.FORECAST_ONLY
        actuation = await self._actuate(decision, dry_run=dry_run)
        if actuation.applied and not decision.frozen:  # frozen: a removal at most, no capacity
            self._memory = self._memory.record_applied(landed(decision, actuation), sample.at)
        # A standby records nothing: the budget in force is the leader's, which its own
        # (from its own history) need not equal, and a loop that learnt from the wrong
        # budget would carry the error through a fail-over.
        leads = self._leading is None or self._leading()
        if not dry_run and not decision.frozen and actuation.error is None and leads:
            budgets = {
                lp.location: lp.miss_budget for lp in plan.locations if lp.miss_budget is not None
            }
            if budgets:
                self._in_force[gid] = budgets
        return GroupReport(
            gid, sample.at, sample, decision, actuation, policy_problems=plan.policy_problems
        )

    async def _actuate(self, decision: GroupDecision, *, dry_run: bool) -> Actuation:
        wants_change = bool(decision.changed_locations or decision.location_changes)
        if dry_run or not wants_change:
            return await self._actuator.apply(decision, dry_run=dry_run, fencing=self._fencing)
        decision_id = uuid.uuid4().hex
        payload = json.dumps(
            {
                "locations": {
                    d.location: setting_dict(d.decided) for d in decision.changed_locations
                },
                "location_changes": [
                    {"location": c.location, "action": c.action} for c in decision.location_changes
                ],
            },
            sort_keys=True,
        )
        await self._store_call(
            self._store.record_intent, decision.group_id, decision.at, decision_id, payload
        )
        # The update may land even if its reply never comes (a timeout, a cancelled tick, a
        # killed process): remembered as sent, its setting is not read back as drift. Stored
        # before the call, so a restart after the process died mid-write knows it too.
        self._memory = self._memory.record_sent(decision)
        if self.options.persist_memory_on_apply:
            await self._persist_memory()
        try:
            actuation = await self._actuator.apply(decision, dry_run=False, fencing=self._fencing)
        except asyncio.CancelledError:
            await self._store_call(
                self._store.record_outcome, decision_id, Outcome.ABANDONED, "tick cancelled"
            )
            raise
        detail = actuation.error or ""
        if actuation.error is None and actuation.applied:
            status = Outcome.APPLIED
            if waiting_removal(decision, actuation):
                detail = "the removal waits for the locations being added"
        else:
            status = Outcome.FAILED
            if actuation.succeeded:
                detail = f"partly applied ({', '.join(actuation.succeeded)} went through): {detail}"
        await self._store_call(self._store.record_outcome, decision_id, status, detail)
        return actuation

    # ------------------------------------------------------------------ store helpers
    async def _persist_memory(self) -> None:
        if self._memory is not self._persisted_memory:
            memory = self._memory
            await self._store_call(self._store.put_state, MEMORY_KEY, memory.to_json())
            self._persisted_memory = memory

    async def _store_call(self, fn: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self.options.store_in_thread:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def _previous_times(self, group_ids: Sequence[str], now: float) -> dict[str, float]:
        """Where each group's flow window (arrivals, failures, departures, late starts since
        the previous sample) starts; no window after a hole of more than ``WATCHED_TICKS``
        intervals (a restart after downtime, reads failing for a while): an outage's flows in
        one row would read as a burst, so the first row after it counts none, like a first
        start."""
        # The store is asked once per group (after a restart, or for a new group); from then
        # on the newest sample time is the one this controller stored itself.
        for gid in group_ids:
            if gid not in self._latest_stored:
                at = self._store.latest_sample_time(gid)
                if at is not None:
                    self._latest_stored[gid] = at
        longest = WATCHED_TICKS * self.options.interval_s
        return {
            gid: at
            for gid in group_ids
            if (at := self._latest_stored.get(gid)) is not None and now - at <= longest
        }

    def _with_budget(self, sample: GroupSample) -> list[LocationSample]:
        """``sample``'s locations, each with the miss budget in force since the previous tick
        (stored with it), so the policy can later tell which budget produced the misses this
        sample counts.

        In force means decided by the policy at the previous tick and acted on by this
        replica: not a dry run (nothing applied), not a frozen or paused group, not a failed
        update (the old capacity stayed), not a standby (see ``_decide_and_apply``). Anything
        else leaves the row without a budget, which the policy reads as "unknown" rather than
        learning from a budget that never acted."""
        budgets = self._in_force.pop(sample.group_id, None)
        if not budgets:
            return list(sample.locations)
        return [
            ls
            if (found := budgets.get(ls.location)) is None
            else dataclasses.replace(ls, miss_budget=found)
            for ls in sample.locations
        ]

    def _store_samples(self, samples: Sequence[GroupSample]) -> None:
        rows: list[LocationSample] = [ls for s in samples for ls in self._with_budget(s)]
        if rows:
            self._store.append_samples(rows)
        for ls in rows:  # the store keeps the newest time per group: so do we
            known = self._latest_stored.get(ls.group_id)
            if known is None or ls.at > known:
                self._latest_stored[ls.group_id] = ls.at
            if self._stored_locations is not None:
                self._stored_locations.setdefault(ls.group_id, set()).add(ls.location)

    def _histories(self, sample: GroupSample, policy: Policy) -> dict[str, LocationHistory]:
        """The stored history of each location sampled this tick, and of each location the
        group had within the policy's history window but has no more (removed: its spend
        this month and the demand it served still count)."""
        gid = sample.group_id
        since = sample.at - policy.history_window_s
        out = {
            ls.location: self._store.history(gid, ls.location, since=since)
            for ls in sample.locations
        }
        if self._stored_locations is None:
            stored: dict[str, set[str]] = {}
            for group_id, location in self._store.locations():
                stored.setdefault(group_id, set()).add(location)
            self._stored_locations = stored
        for location in self._stored_locations.get(gid, ()):
            if location not in out:
                gone = self._store.history(gid, location, since=since)
                if len(gone):
                    out[location] = gone
        return out
