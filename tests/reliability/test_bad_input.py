"""Bad input is refused clearly (traces: ``ConfigError`` naming file, line, column and what is
valid; exit code 2 through the CLI) or handled and logged once (unexpected API responses: a new
stream class, an unknown status, missing fields), never a crash loop. The table of cases is in
docs/bad-input.md."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from autoscaler import cli
from autoscaler.backtest.traces import read_trace
from autoscaler.domain.errors import ConfigError
from tests.reliability.conftest import REGION, FaultProxy, World, group_report, open_rig

T0 = "2025-01-01T00:00:00Z"
TRACES: dict[str, tuple[str, str]] = {
    "empty-file": ("", "the file is empty"),
    "header-only": ("timestamp,players\n", "a header but no data rows"),
    "missing-column": (f"time,players\n{T0},5\n", "no 'timestamp' column"),
    "non-monotonic": (
        "timestamp,players\n2025-01-01T00:10:00Z,5\n2025-01-01T00:00:00Z,6\n",
        "timestamps go backwards: line 3 is earlier than line 2",
    ),
    "duplicate-timestamps": (
        f"timestamp,players\n{T0},5\n{T0},6\n",
        "duplicate timestamps on lines 2 and 3",
    ),
    "negative": (f"timestamp,players\n{T0},-5\n2025-01-01T00:10:00Z,6\n", "'-5' is negative"),
    "non-numeric": (f"timestamp,players\n{T0},abc\n2025-01-01T00:10:00Z,6\n", "is not a number"),
    "bad-time": ("timestamp,players\nyesterday,5\n2025-01-01T00:10:00Z,6\n", "is not a time"),
}


@pytest.mark.parametrize("case", sorted(TRACES))
def test_bad_trace_is_refused_with_the_reason(tmp_path: Path, case: str) -> None:
    text, expected = TRACES[case]
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        read_trace(path)
    message = "; ".join(caught.value.problems)
    assert expected in message
    assert str(path) in message


def test_gaps_are_reported_not_repaired(tmp_path: Path) -> None:
    path = tmp_path / "gap.csv"
    rows = [T0, "2025-01-01T00:10:00Z", "2025-01-01T00:20:00Z", "2025-01-03T00:20:00Z"]
    path.write_text("timestamp,players\n" + "".join(f"{t},5\n" for t in rows))
    trace: Any = read_trace(path)
    assert len(trace.gaps) == 1
    assert len(trace.values) == 4  # nothing invented in the hole


def test_bad_trace_through_the_cli_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if "autoscaler.commands.backtest" not in cli.COMMAND_MODULES:
        pytest.skip("the backtest command is not registered in autoscaler.cli.COMMAND_MODULES")
    path = tmp_path / "neg.csv"
    path.write_text(TRACES["negative"][0])
    assert cli.main(["backtest", "--trace", str(path)]) == 2
    err = capsys.readouterr().err
    assert "'-5' is negative" in err
    assert "Traceback" not in err
    # the file heads the list once; its problems name the line, not the file again
    assert err.count(str(path)) == 1
    assert "  - line 2, column 'players': value '-5' is negative" in err


def test_a_whole_file_problem_is_listed_once_under_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "two.csv"
    path.write_text(f"timestamp,a,b\n{T0},1,2\n2025-01-01T00:10:00Z,3,4\n")
    assert cli.main(["backtest", "--trace", str(path), "--series", "c"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}:\n  - unknown series 'c' (available: 'a', 'b')")
    assert err.count(str(path)) == 1


# --------------------------------------------------------------------------- API responses


def _edit_group(body: dict[str, Any]) -> dict[str, Any]:
    body["StreamClass"] = "gen9x_mega"  # a class launched after this release
    for loc in body.get("LocationStates") or []:
        if loc.get("LocationName") == REGION:
            loc.pop("MaximumCapacity", None)  # a field gone missing
    return body


def _edit_sessions(body: dict[str, Any]) -> dict[str, Any]:
    for i, item in enumerate(body.get("Items") or []):
        if i == 0:
            item["Status"] = "QUEUED"  # a status this release does not know
        if i == 1:
            item.pop("CreatedAt", None)
    return body


async def test_unexpected_responses_are_handled_and_logged_once(
    world: World, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    group_path = f"/streamgroups/{world.group_b}"

    def edit(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == group_path:
            return _edit_group(body)
        if path == group_path + "/streamsessions":
            return _edit_sessions(body)
        return body

    proxy.edit = edit
    world.start_sessions(world.group_b, 6)
    world.start_sessions(world.group_a, 6)
    policy = world.policy_file()
    caplog.set_level(logging.WARNING, logger="autoscaler")
    async with open_rig(world, [policy], endpoint_url=proxy.url) as rig:
        for _ in range(4):
            report = await rig.tick(world)
            b = group_report(report, world.group_b)
            assert b.decision is not None  # handled: planned like any other group
            assert b.sample.complete
            assert b.sample.state is not None
            assert b.sample.state.tenancy == 1  # unknown class: the safe tenancy
            assert group_report(report, world.group_a).decision is not None
    warnings = [
        r.getMessage() for r in caplog.records if r.name == "autoscaler.aws.gameliftstreams"
    ]
    for needle in ("unknown stream class gen9x_mega", "MaximumCapacity", "CreatedAt missing"):
        assert sum(needle in w for w in warnings) == 1, warnings  # once, not every tick


async def test_unknown_group_status_freezes_the_group(world: World, proxy: FaultProxy) -> None:
    group_path = f"/streamgroups/{world.group_b}"

    def edit(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == group_path and "Status" in body:
            body["Status"] = "MIGRATING"
        return body

    proxy.edit = edit
    world.start_sessions(world.group_b, 6)
    async with open_rig(world, [world.policy_file()], endpoint_url=proxy.url) as rig:
        for _ in range(3):
            report = await rig.tick(world)
            b = group_report(report, world.group_b)
            assert b.decision is not None
            assert b.decision.frozen
            assert any("MIGRATING" in v.reason for v in b.decision.vetoes)
    assert world.location(world.group_b).always_on == 2


async def test_location_without_always_on_is_held_not_lowered(
    world: World, proxy: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    group_path = f"/streamgroups/{world.group_b}"

    def edit(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path == group_path:
            for loc in body.get("LocationStates") or []:
                loc.pop("AlwaysOnCapacity", None)
        return body

    proxy.edit = edit
    before = world.location(world.group_b)
    policy = world.policy_file()
    caplog.set_level(logging.WARNING, logger="autoscaler")
    async with open_rig(world, [policy], endpoint_url=proxy.url) as rig:
        for _ in range(3):
            report = await rig.tick(world)
            b = group_report(report, world.group_b)
            assert b.decision is not None
            for d in b.decision.locations:
                assert d.decided == d.current  # held: never planned on a guessed floor
    after = world.location(world.group_b)
    assert after.always_on == before.always_on
    warnings = [
        r.getMessage() for r in caplog.records if "AlwaysOnCapacity missing" in r.getMessage()
    ]
    assert len(warnings) == 1
