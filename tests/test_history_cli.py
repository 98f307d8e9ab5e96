"""``autoscaler history``: the daemon's recorded demand, listed and exported as a trace the
backtest reads, without writing to the database (it may be in use by a running daemon)."""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest

import autoscaler.cli as cli
from autoscaler.backtest.traces import read_concurrency
from autoscaler.commands import history as history_command
from autoscaler.domain.models import CapacitySetting, LocationSample
from autoscaler.store import HistoryStore

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z
GROUP = "sg-1AbC"


def _sample(
    location: str, minute: int, in_use: int, waiting: int, *, complete: bool = True
) -> LocationSample:
    return LocationSample(
        group_id=GROUP,
        location=location,
        at=T0 + 60.0 * minute,
        status="ACTIVE",
        setting=CapacitySetting(2, 2, 40),
        allocated=in_use + 2,
        idle=2,
        in_use=in_use,
        waiting=waiting,
        oldest_waiting_s=0.0,
        arrivals=1,
        placement_failures=0,
        departures=1,
        complete=complete,
    )


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "state" / "history.sqlite3"
    with HistoryStore(path, retention_s=35 * 86400.0) as store:
        for minute, (in_use, waiting) in enumerate([(3, 0), (5, 1), (9, 2), (7, 0)]):
            store.append_samples([_sample("us-east-1", minute, in_use, waiting)])
        # a tick whose listing failed: its zero is not a measurement
        store.append_samples([_sample("us-east-1", 4, 0, 0, complete=False)])
        for minute, in_use in enumerate([1, 2]):
            store.append_samples([_sample("eu-central-1", minute, in_use, 0)])
        # a location whose only tick failed: listed, never exported
        store.append_samples([_sample("ap-northeast-1", 0, 0, 0, complete=False)])
        # imported from CloudWatch before the daemon's first tick
        store.backfill(GROUP, "eu-central-1", [(T0 - 60.0, 4, 6, 2)])
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_export_writes_the_measured_demand_as_a_trace_the_backtest_reads(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _digest(database)
    beside = sorted(p.name for p in database.parent.iterdir())
    trace = tmp_path / "trace.csv"
    assert cli.main(["history", "--database", str(database), "--export", str(trace)]) == 0
    out = capsys.readouterr().out
    assert f"wrote 7 points of 2 series to {trace} (demand)" in out
    assert f"autoscaler backtest --trace {trace} --series {GROUP}/us-east-1 --peak recorded" in out
    with trace.open() as lines:
        rows = list(csv.reader(lines))
    assert rows[0] == ["timestamp", "series", "value"]
    assert rows[1:] == [
        ["2026-09-21T14:12:20Z", f"{GROUP}/eu-central-1", "4"],
        ["2026-09-21T14:13:20Z", f"{GROUP}/eu-central-1", "1"],
        ["2026-09-21T14:14:20Z", f"{GROUP}/eu-central-1", "2"],
        ["2026-09-21T14:13:20Z", f"{GROUP}/us-east-1", "3"],
        ["2026-09-21T14:14:20Z", f"{GROUP}/us-east-1", "6"],  # 5 in use + 1 waiting
        ["2026-09-21T14:15:20Z", f"{GROUP}/us-east-1", "11"],
        ["2026-09-21T14:16:20Z", f"{GROUP}/us-east-1", "7"],
    ]  # the incomplete tick (minute 4) is left out
    series = read_concurrency(trace, f"{GROUP}/us-east-1")
    assert list(series.values) == [3, 6, 11, 7]
    assert series.times[0] == T0
    assert _digest(database) == before  # read-only: not migrated, not written
    assert sorted(p.name for p in database.parent.iterdir()) == beside  # no -shm, no -wal
    again = tmp_path / "again.csv"
    argv = ["history", "--database", str(database), "--export", str(again), "--output", "json"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["export"] == {"path": str(again), "points": 7, "series": 2}
    assert len(report["series"]) == 3
    assert again.read_bytes() == trace.read_bytes()


def test_listing_says_what_each_location_holds(
    database: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["history", "--database", str(database), "--output", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["value"] == "demand"
    east = next(s for s in listing["series"] if s["location"] == "us-east-1")
    assert east == {
        "series": f"{GROUP}/us-east-1",
        "group_id": GROUP,
        "location": "us-east-1",
        "first": "2026-09-21T14:13:20Z",
        "last": "2026-09-21T14:17:20Z",
        "days": 0.0,
        "samples": 5,
        "incomplete": 1,
        "imported": 0,
        "peak": 11,
    }
    central = next(s for s in listing["series"] if s["location"] == "eu-central-1")
    assert (central["samples"], central["imported"], central["peak"]) == (3, 1, 4)
    tokyo = next(s for s in listing["series"] if s["location"] == "ap-northeast-1")
    assert (tokyo["samples"], tokyo["incomplete"], tokyo["peak"]) == (1, 1, 0)
    assert "export" not in listing
    assert cli.main(["history", "--database", str(database), "--value", "in-use"]) == 0
    table = capsys.readouterr().out
    assert "recorded in-use per stream group and location" in table
    assert f"{GROUP}/us-east-1" in table


def test_filters_and_the_settings_state_dir(
    database: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_text(f"state_dir: {database.parent}\n")
    monkeypatch.chdir(tmp_path)
    trace = tmp_path / "east.csv"
    argv = ["history", "--config", str(settings), "--location", "us-east-1", "--export", str(trace)]
    since = ["--since", "2026-09-21T14:15Z", "--until", "2026-09-21 14:16:20", "--value", "in-use"]
    assert cli.main([*argv, *since]) == 0
    capsys.readouterr()
    with trace.open() as lines:
        rows = list(csv.reader(lines))[1:]
    assert rows == [
        ["2026-09-21T14:15:20Z", f"{GROUP}/us-east-1", "9"],
        ["2026-09-21T14:16:20Z", f"{GROUP}/us-east-1", "7"],
    ]


def test_the_export_reads_beside_a_running_writer(database: Path, tmp_path: Path) -> None:
    with HistoryStore(database, retention_s=35 * 86400.0) as store:
        store.append_samples([_sample("us-east-1", 9, 4, 0)])
        trace = tmp_path / "live.csv"
        assert cli.main(["history", "--database", str(database), "--export", str(trace)]) == 0
    assert "2026-09-21T14:22:20Z" in trace.read_text()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--group", "sg-other"], "no samples for --group sg-other: nothing to show"),
        (["--since", "last tuesday"], "'last tuesday' is not a date or time (ISO 8601"),
        (["--since", "2026-09-22", "--until", "2026-09-21"], "is not after --since"),
        (["--export", "FOLDER"], "is a folder; give a file name such as"),
        (["--database", "MISSING"], "no history database here"),
        (["--database", "NOT_A_DB"], "not a readable autoscaler history database"),
        (["--database", "NEWER"], "schema version 99 is not one this software reads"),
        (["--location", "ap-northeast-1"], "listing failed: nothing to export"),
        (["--export", "THE_DB"], "is the history database itself; name a new file"),
        (["--group", "sg-other", "--export", "NEW_FOLDER"], "no samples for --group sg-other"),
    ],
)
def test_bad_input_is_a_clear_error_and_writes_nothing(
    database: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    needle: str,
) -> None:
    newer = tmp_path / "newer.sqlite3"
    newer.write_bytes(database.read_bytes())
    with sqlite3.connect(newer) as conn:
        conn.execute("INSERT INTO schema_version (version) VALUES (99)")
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("timestamp,series,value\n")
    stand_ins = {
        "FOLDER": str(tmp_path),
        "MISSING": str(tmp_path / "nowhere.sqlite3"),
        "NOT_A_DB": str(not_a_db),
        "NEWER": str(newer),
        "THE_DB": str(database),
        "NEW_FOLDER": str(tmp_path / "new" / "sub" / "out.csv"),  # made only to write into
    }
    extra = [stand_ins.get(a, a) for a in extra]
    before = sorted(p.name for p in tmp_path.iterdir())
    argv = ["history", "--database", str(database), *extra]
    if "--export" not in extra:
        argv += ["--export", str(tmp_path / "out.csv")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file, no partial file
    assert sorted(p.name for p in database.parent.iterdir()) == ["history.sqlite3"]


def test_names_in_the_hint_are_text_and_quoted(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "my traces" / "out[bold].csv"
    assert cli.main(["history", "--database", str(database), "--export", str(trace)]) == 0
    assert trace.is_file()
    out = capsys.readouterr().out
    assert f"--trace '{trace}' --series {GROUP}/us-east-1" in out


def test_times_keep_their_fraction_of_a_second() -> None:
    assert history_command._iso(T0) == "2026-09-21T14:13:20Z"
    assert history_command._iso(T0 + 0.25) == "2026-09-21T14:13:20.250000Z"


def test_export_to_stdout_keeps_stdout_for_the_trace(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``kubectl exec … autoscaler history --export - > trace.csv``: the trace alone on stdout."""
    trace = tmp_path / "trace.csv"
    assert cli.main(["history", "--database", str(database), "--export", str(trace)]) == 0
    capsys.readouterr()
    assert cli.main(["history", "--database", str(database), "--export", "-"]) == 0
    out, err = capsys.readouterr()
    assert out == trace.read_text()
    assert "wrote 7 points of 2 series to stdout (demand)" in err
    assert "--trace trace.csv --series" in err
    argv = ["history", "--database", str(database), "--export", "-", "--output", "json"]
    assert cli.main(argv) == 2
    assert "export to a file, or drop --output json" in capsys.readouterr().err
