"""Prometheus sink of tick reports. The only module that imports prometheus_client.

Every metric lives in a registry owned by the ``MetricsSink`` instance (no process-global
registry), so two controllers in one process (tests, the demo) never collide.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from autoscaler.domain.models import GroupReport, TickReport

_GL = ("group_id", "location")


class MetricsSink:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ticks = Counter("autoscaler_ticks", "Ticks completed", ["outcome"], registry=r)
        self.tick_duration = Histogram(
            "autoscaler_tick_duration_seconds",
            "Wall time of one tick",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.last_tick = Gauge(
            "autoscaler_last_tick_timestamp_seconds", "When the last tick ended", registry=r
        )
        self.last_success = Gauge(
            "autoscaler_last_successful_tick_timestamp_seconds",
            "When the last fully successful tick ended",
            registry=r,
        )
        self.api_calls = Counter(
            "autoscaler_api_calls", "GameLift Streams calls made", ["operation"], registry=r
        )
        self.in_use = Gauge(
            "autoscaler_sessions_in_use", "Sessions holding a slot", _GL, registry=r
        )
        self.waiting = Gauge(
            "autoscaler_sessions_waiting",
            "Sessions ACTIVATING (waiting for a slot)",
            _GL,
            registry=r,
        )
        self.allocated = Gauge(
            "autoscaler_capacity_allocated", "Allocated slots (streaming + idle)", _GL, registry=r
        )
        self.idle = Gauge("autoscaler_capacity_idle", "Idle allocated slots", _GL, registry=r)
        self.setting = Gauge(
            "autoscaler_capacity_setting",
            "Configured capacity after this tick's decision",
            [*_GL, "field"],
            registry=r,
        )
        self.forecast = Gauge(
            "autoscaler_forecast_in_use", "Forecast in-use slots at the lead time", _GL, registry=r
        )
        self.placement_failures = Counter(
            "autoscaler_placement_failures",
            "Sessions that failed with placementTimeout",
            _GL,
            registry=r,
        )
        self.session_requests = Counter(
            "autoscaler_session_requests",
            "Sessions requested (StartStreamSession calls seen in the listing)",
            _GL,
            registry=r,
        )
        self.late_starts = Counter(
            "autoscaler_late_starts",
            "Sessions that started streaming only after waiting for capacity "
            "(start slower than instant_start_s)",
            _GL,
            registry=r,
        )
        self.vetoes = Counter(
            "autoscaler_guard_vetoes", "Guard interventions", ["group_id", "guard"], registry=r
        )
        self.updates = Counter(
            "autoscaler_capacity_updates", "Capacity changes applied", ["group_id"], registry=r
        )
        self.errors = Counter(
            "autoscaler_actuation_errors", "Failed mutating calls", ["group_id"], registry=r
        )
        self.policy_failures = Counter(
            "autoscaler_policy_failures",
            "Ticks on which a group's policy failed: a plugin error held a location, or a "
            "fallback (a webhook's, a chain entry's) answered in its place",
            ["group_id"],
            registry=r,
        )
        self.incomplete = Counter(
            "autoscaler_incomplete_samples",
            "Ticks where a group's data was partial or missing",
            ["group_id"],
            registry=r,
        )
        self.leader = Gauge(
            "autoscaler_leader",
            "1 while this replica holds the lease (or runs without one), 0 on a standby",
            registry=r,
        )
        self.leader.set(1)
        # Per group, the locations whose gauges were set: a location the group no longer has
        # must leave the export, or a dashboard summing them counts it forever.
        self._published: dict[str, set[str]] = {}
        self.expires_in = Gauge(
            "autoscaler_group_expires_in_seconds",
            "Seconds until the stream group expires",
            ["group_id"],
            registry=r,
        )

    def observe(self, report: TickReport, *, ended_at: float) -> None:
        self.ticks.labels("ok" if report.ok else "partial").inc()
        self.tick_duration.observe(report.duration_s)
        self.last_tick.set(ended_at)
        if report.ok:
            self.last_success.set(ended_at)
        for op, n in report.calls.items():
            self.api_calls.labels(op).inc(n)
        for group in report.groups:
            gid = group.group_id
            sample = group.sample
            if not sample.complete:
                self.incomplete.labels(gid).inc()
            if group.policy_problems:
                self.policy_failures.labels(gid).inc()
            if sample.state is not None and sample.state.expires_at is not None:
                self.expires_in.labels(gid).set(sample.state.expires_at - report.at)
            for ls in sample.locations:
                if not ls.complete:
                    continue  # never publish partial data as if it were demand
                labels = (gid, ls.location)
                self.in_use.labels(*labels).set(ls.in_use)
                self.waiting.labels(*labels).set(ls.waiting)
                self.allocated.labels(*labels).set(ls.allocated)
                self.idle.labels(*labels).set(ls.idle)
                if ls.placement_failures:
                    self.placement_failures.labels(*labels).inc(ls.placement_failures)
                if ls.arrivals:
                    self.session_requests.labels(*labels).inc(ls.arrivals)
                if ls.late_starts:
                    self.late_starts.labels(*labels).inc(ls.late_starts)
            if group.decision is not None:
                for veto in group.decision.vetoes:
                    self.vetoes.labels(gid, veto.guard).inc()
                for d in group.decision.locations:
                    s = d.decided
                    self.setting.labels(gid, d.location, "always_on").set(s.always_on)
                    if s.on_demand is not None:
                        self.setting.labels(gid, d.location, "on_demand").set(s.on_demand)
                    else:
                        self.setting.labels(gid, d.location, "target_idle").set(s.target_idle)
                        self.setting.labels(gid, d.location, "maximum").set(s.maximum)
                    if d.forecast_in_use is not None:
                        self.forecast.labels(gid, d.location).set(d.forecast_in_use)
            if sample.state is not None:  # the group was read: its locations are known
                self._forget_removed(gid, {loc.name for loc in sample.state.locations}, group)
            if group.actuation is not None:
                if group.actuation.applied:
                    self.updates.labels(gid).inc()
                if group.actuation.error:
                    self.errors.labels(gid).inc()

    def _forget_removed(self, gid: str, present: set[str], group: GroupReport) -> None:
        published = self._published.setdefault(gid, set())
        published.update(ls.location for ls in group.sample.locations if ls.complete)
        if group.decision is not None:
            published.update(d.location for d in group.decision.locations)
        for location in published - present:
            for gauge in (self.in_use, self.waiting, self.allocated, self.idle, self.forecast):
                with contextlib.suppress(KeyError):  # never set here (older clients raise)
                    gauge.remove(gid, location)
            for name in ("always_on", "on_demand", "target_idle", "maximum"):
                with contextlib.suppress(KeyError):
                    self.setting.remove(gid, location, name)
        published &= present

    def render(self) -> bytes:
        return generate_latest(self.registry)
