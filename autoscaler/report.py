"""Turning a tick's report into JSON-ready data, and the audit log (JSON lines).

Reports are the only thing metrics, logs and the audit trail consume: this module flattens a
``TickReport`` into plain dicts once, and the sinks take it from there.
"""

from __future__ import annotations

import json
import math
import os
import threading
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from autoscaler.domain.models import (
    CapacitySetting,
    GroupReport,
    LocationDecision,
    TickReport,
)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):  # NaN/inf are not JSON
        return None
    return value


def setting_dict(setting: CapacitySetting) -> dict[str, int | None]:
    if setting.on_demand is not None:
        return {"always_on": setting.always_on, "on_demand": setting.on_demand}
    return {
        "always_on": setting.always_on,
        "target_idle": setting.target_idle,
        "maximum": setting.maximum,
    }


def _location_decision(d: LocationDecision) -> dict[str, Any]:
    return {
        "location": d.location,
        "in_use": d.in_use,
        "current": setting_dict(d.current),
        "proposed": setting_dict(d.proposed),
        "decided": setting_dict(d.decided),
        "changed": d.changed,
        "forecast_in_use": d.forecast_in_use,
        "reason": d.reason,
    }


def group_record(report: GroupReport) -> dict[str, Any]:
    """One audit record: inputs, forecast, plan, every veto with its reason, what was applied."""
    sample = report.sample
    record: dict[str, Any] = {
        "at": iso(report.at),
        "group_id": report.group_id,
        "skipped": report.skipped,
        "sample": {
            "complete": sample.complete,
            "problems": list(sample.problems),
            "group_status": sample.state.status if sample.state else None,
            "locations": [
                {
                    "location": ls.location,
                    "status": ls.status,
                    "in_use": ls.in_use,
                    "waiting": ls.waiting,
                    "oldest_waiting_s": ls.oldest_waiting_s,
                    "arrivals": ls.arrivals,
                    "placement_failures": ls.placement_failures,
                    "departures": ls.departures,
                    "late_starts": ls.late_starts,
                    "allocated": ls.allocated,
                    "idle": ls.idle,
                    "complete": ls.complete,
                }
                for ls in sample.locations
            ],
        },
        "decision": None,
        "actuation": None,
    }
    if report.decision is not None:
        decision = report.decision
        record["decision"] = {
            "capacity_model": decision.capacity_model.value,
            "frozen": decision.frozen,
            "locations": [_location_decision(d) for d in decision.locations],
            "location_changes": _plain(list(decision.location_changes)),
            "vetoes": _plain(list(decision.vetoes)),
        }
    if report.actuation is not None:
        record["actuation"] = _plain(report.actuation)
    return record


def tick_record(report: TickReport) -> dict[str, Any]:
    return {
        "at": iso(report.at),
        "duration_s": round(report.duration_s, 6),
        "ok": report.ok,
        "calls": dict(report.calls),
        "groups": [group_record(g) for g in report.groups],
    }


class AuditLog:
    """Append-only JSON lines, one line per tick and group, flushed and fsync'd per tick.

    A line is written whole with one ``write`` call on an O_APPEND descriptor, so a crash leaves
    at most a truncated last line, which readers skip (``read_audit_log``).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def extra_fields(self) -> dict[str, Any]:
        """Fields added to every record of a tick (read once per tick); none by default."""
        return {}

    def write(self, report: TickReport) -> None:
        extra = self.extra_fields()
        lines = "".join(
            json.dumps({**group_record(g), **extra}, separators=(",", ":"), sort_keys=True) + "\n"
            for g in report.groups
        )
        if not lines:
            return
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, lines.encode())
                os.fsync(fd)
            finally:
                os.close(fd)


def read_audit_log(path: Path) -> list[dict[str, Any]]:
    """Every complete record; a torn last line (crash mid-write) is skipped."""
    records: list[dict[str, Any]] = []
    if not path.exists():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
