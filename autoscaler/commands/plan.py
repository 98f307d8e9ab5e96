"""``autoscaler plan``: one dry-run tick, shown as a table (or JSON). Never mutates."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from autoscaler.commands.run import add_common_flags, overrides_from
from autoscaler.domain.models import CapacitySetting, TickReport
from autoscaler.report import setting_dict, tick_record


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "plan", help="show what the controller would do now (one dry-run tick, no changes)"
    )
    add_common_flags(parser)
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.set_defaults(func=run)


def expected_slots(setting: CapacitySetting, in_use: int) -> int:
    """Slots the service would hold for this setting at this load (what is billed)."""
    return min(max(setting.always_on, in_use + setting.idle_target), setting.ceiling)


def _fmt(setting: CapacitySetting) -> str:
    return " / ".join(str(v) for v in setting_dict(setting).values())


def plan_rows(report: TickReport, prices: dict[str, float]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for group in report.groups:
        price = prices.get(group.group_id, 0.0)
        if group.decision is None:
            rows.append({"group": group.group_id, "location": "-", "skipped": group.skipped})
            continue
        forecasts = {d.location: d.forecast_in_use for d in group.decision.locations}
        vetoes = {v.location: v.reason for v in group.decision.vetoes}
        for d in group.decision.locations:
            now_slots = expected_slots(d.current, d.in_use)
            new_slots = expected_slots(d.decided, d.in_use)
            reason = d.reason
            if d.location in vetoes:
                reason += f" [guard: {vetoes[d.location]}]"
            if None in vetoes:
                reason += f" [guard: {vetoes[None]}]"
            rows.append(
                {
                    "group": group.group_id,
                    "location": d.location,
                    "current": setting_dict(d.current),
                    "in_use": d.in_use,
                    "forecast_in_use": forecasts.get(d.location),
                    "proposed": setting_dict(d.proposed),
                    "decided": setting_dict(d.decided),
                    "delta_always_on": d.decided.always_on - d.current.always_on,
                    "hourly_cost_change": round((new_slots - now_slots) * price, 4),
                    "reason": reason,
                }
            )
    return rows


def run(args: argparse.Namespace) -> int:
    from autoscaler.runtime import build_controller  # noqa: PLC0415
    from autoscaler.settings import load_settings  # noqa: PLC0415

    settings = load_settings(args.config, **overrides_from(args))

    async def one_tick() -> tuple[TickReport, dict[str, float]]:
        async with build_controller(settings, dry_run=True, write_audit=False) as built:
            report = await built.controller.tick()
            prices: dict[str, float] = {}
            for group in report.groups:
                policy = built.controller.policy_for(group.group_id)
                state = group.sample.state
                if policy is not None and state is not None:
                    prices[group.group_id] = policy.price_for(state.stream_class)
            return report, prices

    report, prices = asyncio.run(one_tick())
    rows = plan_rows(report, prices)
    if args.output == "json":
        print(json.dumps({"tick": tick_record(report), "plan": rows}, indent=2))
        return 0
    table = Table(title="autoscaler plan (dry run: nothing was changed)")
    for column in (
        "group",
        "location",
        "current",
        "in use",
        "forecast",
        "proposed",
        "decided",
        "delta",
        "$/h",
        "reason",
    ):
        table.add_column(column, overflow="fold")
    for row in rows:
        if "skipped" in row:
            table.add_row(
                row["group"], "-", "", "", "", "", "", "", "", escape(f"skipped: {row['skipped']}")
            )
            continue
        forecast = row["forecast_in_use"]
        table.add_row(
            row["group"],
            row["location"],
            " / ".join(str(v) for v in row["current"].values()),
            str(row["in_use"]),
            "-" if forecast is None else f"{forecast:.1f}",
            " / ".join(str(v) for v in row["proposed"].values()),
            " / ".join(str(v) for v in row["decided"].values()),
            f"{row['delta_always_on']:+d}",
            f"{row['hourly_cost_change']:+.2f}",
            escape(row["reason"]),
        )
    console = Console(width=160)
    console.print(table)
    console.print(
        "capacity: always-on / target-idle / maximum (legacy: always-on / on-demand); "
        "proposed = the policy's answer, decided = after the guards"
    )
    return 0
