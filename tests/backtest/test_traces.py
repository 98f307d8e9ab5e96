"""Trace loading: every format, every refusal (with file, line, column), gaps, stretches."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from autoscaler.backtest.sessions import SessionPlan
from autoscaler.backtest.traces import (
    ConcurrencyTrace,
    TraceFormat,
    describe_gaps,
    detect_format,
    list_series,
    longest_stretch,
    read_concurrency,
    read_trace,
    split_at_gaps,
)
from autoscaler.domain.errors import ConfigError

H = 3600.0
T0 = 1_760_000_400.0  # 2025-10-09T09:00:00Z


def iso(t: float) -> str:
    return np.datetime_as_string(np.datetime64(int(t), "s"), unit="s") + "Z"


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def problems_of(path: Path, series: str | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        read_trace(path, series)
    assert info.value.source == str(path)
    return "\n".join(info.value.problems)


# ---- formats ---------------------------------------------------------------------------------


def test_wide_picks_the_named_series(tmp_path: Path) -> None:
    rows = "\n".join(f"{iso(T0 + i * H)},{10 + i},{100 - i}" for i in range(5))
    p = write(tmp_path, f"timestamp,Rust,Dota 2\n{rows}\n")
    tr = read_concurrency(p, "Dota 2")
    assert tr.series == "Dota 2"
    assert tr.name == "t"
    np.testing.assert_array_equal(tr.values, [100, 99, 98, 97, 96])
    np.testing.assert_array_equal(tr.times, T0 + H * np.arange(5))
    assert tr.step_s == H
    assert tr.gaps == ()
    assert list_series(p) == ["Rust", "Dota 2"]


def test_arrays_are_read_only(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,a\n{iso(T0)},1\n{iso(T0 + H)},2\n")
    tr = read_concurrency(p)
    with pytest.raises(ValueError, match="read-only"):
        tr.values[0] = 5


def test_single_series_with_offsets_is_converted_to_utc(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "timestamp,players\n2025-10-09T11:00:00+02:00,5\n2025-10-09T10:00:00Z,6\n"
        "2025-10-09T11:00:00,7\n",
    )
    tr = read_concurrency(p)
    assert tr.series == "players"
    np.testing.assert_array_equal(tr.times, [T0, T0 + H, T0 + 2 * H])


def test_epoch_seconds_timestamps(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,x\n{T0:.0f},1\n{T0 + 600:.0f},2\n{T0 + 1200:.1f},3\n")
    tr = read_concurrency(p)
    np.testing.assert_array_equal(tr.times, [T0, T0 + 600, T0 + 1200])
    assert tr.step_s == 600


def test_long_without_resolution(tmp_path: Path) -> None:
    lines = [f"{iso(T0 + i * H)},A,{i}" for i in range(3)]
    lines += [f"{iso(T0 + i * H)},B,{50 + i}" for i in range(4)]
    p = write(tmp_path, "timestamp,series,value\n" + "\n".join(lines) + "\n")
    tr = read_concurrency(p, "B")
    np.testing.assert_array_equal(tr.values, [50, 51, 52, 53])
    assert list_series(p) == ["A", "B"]


def test_long_prefers_finer_rows_and_ignores_daily_peaks(tmp_path: Path) -> None:
    hourly = [f"{iso(T0 + i * H)},G,{1000 + i},60" for i in range(10)]  # 0h..9h
    fine = [f"{iso(T0 + 3 * H + i * 600)},G,{i},10" for i in range(13)]  # 3h..5h every 10 min
    daily = [f"{iso(T0)},G,999999,1440", f"{iso(T0 + 24 * H)},G,999999,1440"]
    other = [f"{iso(T0 + i * H)},Other,7,60" for i in range(3)]
    body = "\n".join(hourly + fine + daily + other)
    p = write(tmp_path, f"timestamp,series,value,resolution_min\n{body}\n")
    tr = read_concurrency(p, "G")
    assert tr.values.max() < 999999  # daily peaks never enter the intraday series
    # hourly rows at 3h, 4h, 5h are inside the 10-minute window and give way to it
    expected_t = np.concatenate(
        (T0 + H * np.arange(3), T0 + 3 * H + 600 * np.arange(13), T0 + H * np.arange(6, 10))
    )
    np.testing.assert_array_equal(tr.times, expected_t)
    np.testing.assert_array_equal(tr.values[3:16], np.arange(13))
    assert tr.gaps == ()  # 60-min spacing next to 60-min rows is not a hole


def test_session_log_returns_sessions(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "arrival,duration_s,location\n"
        f"{iso(T0 + 60)},120,eu-central-1\n{iso(T0)},30,us-east-1\n{iso(T0 + 30)},0,us-east-1\n",
    )
    plan = read_trace(p)
    assert isinstance(plan, SessionPlan)
    np.testing.assert_array_equal(plan.arrival_s, [0, 30, 60])
    np.testing.assert_array_equal(plan.duration_s, [30, 0, 120])
    assert plan.locations == ("us-east-1", "eu-central-1")
    np.testing.assert_array_equal(plan.location, [0, 0, 1])
    assert plan.t0_epoch_s == T0
    assert plan.horizon_s == 180
    with pytest.raises(ConfigError, match="session log"):
        read_concurrency(p)


def test_session_log_without_location_uses_the_default(tmp_path: Path) -> None:
    p = write(tmp_path, f"arrival,duration_s\n{T0:.0f},10\n{T0 + 5:.0f},10\n")
    plan = read_trace(p)
    assert isinstance(plan, SessionPlan)
    assert plan.locations == ("us-east-1",)


def test_detect_format() -> None:
    assert detect_format(["timestamp", "a", "b"]) is TraceFormat.WIDE
    assert detect_format(["Timestamp", "a"]) is TraceFormat.SINGLE
    assert detect_format(["timestamp", "series", "value"]) is TraceFormat.LONG
    assert detect_format(["arrival", "duration_s", "location"]) is TraceFormat.SESSION_LOG
    with pytest.raises(ConfigError, match="only a 'timestamp' column"):
        detect_format(["timestamp"])


# ---- refusals --------------------------------------------------------------------------------


def test_missing_timestamp_column_lists_available(tmp_path: Path) -> None:
    p = write(tmp_path, "time,players\n1,2\n")
    msg = problems_of(p)
    assert str(p) in msg
    assert "line 1" in msg
    assert "no 'timestamp' column (columns: 'time', 'players')" in msg


def test_unknown_series_lists_available(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,Rust,DayZ\n{iso(T0)},1,2\n{iso(T0 + H)},1,2\n")
    assert "unknown series 'Dota' (available: 'Rust', 'DayZ')" in problems_of(p, "Dota")
    assert "choose one with --series (available: 'Rust', 'DayZ')" in problems_of(p)


def test_unknown_series_in_long_format(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,series,value\n{iso(T0)},A,1\n{iso(T0)},B,1\n")
    assert "unknown series 'C' (available: 'A', 'B')" in problems_of(p, "C")


def test_non_monotonic_timestamps_name_the_rows(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        f"timestamp,x\n{iso(T0)},1\n{iso(T0 + 2 * H)},1\n{iso(T0 + H)},1\n{iso(T0 + 3 * H)},1\n",
    )
    msg = problems_of(p)
    assert "column 'timestamp'" in msg
    assert "line 4 is earlier than line 3" in msg
    assert "ascending time order" in msg


def test_duplicate_timestamps_are_an_error(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,x\n{iso(T0)},1\n{iso(T0 + H)},1\n{iso(T0 + H)},2\n")
    msg = problems_of(p)
    assert "duplicate timestamps on lines 3 and 4" in msg


def test_duplicates_in_long_format_are_per_series(tmp_path: Path) -> None:
    body = f"{iso(T0)},A,1\n{iso(T0)},B,1\n{iso(T0 + H)},A,1\n{iso(T0 + H)},A,3\n"
    p = write(tmp_path, "timestamp,series,value\n" + body)
    assert "series 'A': duplicate timestamps on lines 4 and 5" in problems_of(p, "A")


def test_negative_and_non_numeric_values_name_line_column_value(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        f"timestamp,players\n{iso(T0)},1\n{iso(T0 + H)},-3\n{iso(T0 + 2 * H)},lots\n"
        f"{iso(T0 + 3 * H)},inf\n",
    )
    msg = problems_of(p)
    assert f"{p}, line 3, column 'players': value '-3' is negative" in msg
    assert f"{p}, lines 4, 5, column 'players': value 'lots' is not a number" in msg
    assert "expected a non-negative count of concurrent players" in msg


def test_bad_timestamp_names_line_and_value(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,x\n{iso(T0)},1\nyesterday,2\n{iso(T0 + H)},3\n")
    msg = problems_of(p)
    assert f"{p}, line 3, column 'timestamp': value 'yesterday' is not a time" in msg
    assert "ISO 8601" in msg


def test_line_numbers_count_blank_lines(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,x\n{iso(T0)},1\n\n{iso(T0 + H)},oops\n")
    assert "line 4, column 'x'" in problems_of(p)


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,x\nnope,1\n{iso(T0)},-1\n{iso(T0 + H)},1\n")
    with pytest.raises(ConfigError) as info:
        read_trace(p)
    assert len(info.value.problems) == 2


def test_empty_file(tmp_path: Path) -> None:
    p = write(tmp_path, "")
    assert "the file is empty" in problems_of(p)


def test_header_only(tmp_path: Path) -> None:
    p = write(tmp_path, "timestamp,x\n")
    assert "no data rows" in problems_of(p)


def test_fewer_than_two_points(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,x,y\n{iso(T0)},1,1\n{iso(T0 + H)},,2\n")
    assert "series 'x': 1 data point(s) with a value; a trace needs at least 2" in problems_of(
        p, "x"
    )


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in problems_of(tmp_path / "nope.csv")


def test_duplicate_column_names(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,a,a\n{iso(T0)},1,2\n")
    assert "duplicate column names: 'a'" in problems_of(p, "a")


def test_session_log_bad_rows(tmp_path: Path) -> None:
    p = write(tmp_path, f"arrival,duration_s,location\n{iso(T0)},-5,us-east-1\n{iso(T0)},10,\n")
    msg = problems_of(p)
    assert "line 2, column 'duration_s': value '-5' is negative" in msg
    assert "line 3, column 'location': empty location" in msg


def test_bad_resolution_value(tmp_path: Path) -> None:
    p = write(tmp_path, f"timestamp,series,value,resolution_min\n{iso(T0)},A,1,hourly\n")
    assert "line 2, column 'resolution_min': value 'hourly' is not a number" in problems_of(p)


# ---- gaps and stretches ----------------------------------------------------------------------


def _with_hole(tmp_path: Path) -> Path:
    # hourly 0..9 h, blank values 10..14 h (a hole in a wide export), then 15..40 h, then a
    # missing 3 h stretch of rows (41, 42 absent), 43..50 h
    rows = []
    for i in range(51):
        if i in (41, 42):
            continue
        value = "" if 10 <= i <= 14 else str(100 + i)
        rows.append(f"{iso(T0 + i * H)},{value},1")
    return write(tmp_path, "timestamp,g,other\n" + "\n".join(rows) + "\n")


def test_gaps_are_reported_not_errors(tmp_path: Path) -> None:
    tr = read_concurrency(_with_hole(tmp_path), "g")
    assert tr.gaps == ((T0 + 9 * H, T0 + 15 * H), (T0 + 40 * H, T0 + 43 * H))
    report = describe_gaps(tr)
    assert (
        report[0]
        == "g: no data from 2025-10-09T18:00:00+00:00 to 2025-10-10T00:00:00+00:00 (6.0 h)"
    )


def test_gap_factor_sets_what_counts_as_a_gap(tmp_path: Path) -> None:
    tr = read_concurrency(_with_hole(tmp_path), "g", gap_factor=4.0)
    assert tr.gaps == ((T0 + 9 * H, T0 + 15 * H),)


def test_split_and_longest_stretch(tmp_path: Path) -> None:
    tr = read_concurrency(_with_hole(tmp_path), "g")
    pieces = split_at_gaps(tr, max_gap=2 * H)
    assert [(p.start, p.end) for p in pieces] == [
        (T0, T0 + 9 * H),
        (T0 + 15 * H, T0 + 40 * H),
        (T0 + 43 * H, T0 + 50 * H),
    ]
    best = longest_stretch(tr, max_gap=2 * H)
    assert (best.start, best.end) == (T0 + 15 * H, T0 + 40 * H)
    assert best.gaps == ()
    # a 3 h hole is tolerated at max_gap 3 h: the last two pieces join
    joined = longest_stretch(tr, max_gap=3 * H)
    assert (joined.start, joined.end) == (T0 + 15 * H, T0 + 50 * H)
    assert joined.gaps == ((T0 + 40 * H, T0 + 43 * H),)


# ---- the real traces (optional) --------------------------------------------------------------


def traces_dir() -> Path:
    env = os.environ.get("AUTOSCALER_TRACES_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "traces"


def real(name: str) -> Path:
    path = traces_dir() / name
    if not path.is_file():
        pytest.skip(f"real trace {name} not found in {traces_dir()} (set AUTOSCALER_TRACES_DIR)")
    return path


def test_real_20_games_hourly() -> None:
    p = real("steamdb_20games_hourly_2025-09-20_2025-11-21.csv")
    assert len(list_series(p)) == 20
    tr = read_concurrency(p, "Rust")
    assert tr.step_s == H
    (hole,) = tr.gaps  # the documented 96 h hole: 10-21T00 .. 10-24T23 blank
    assert hole[1] - hole[0] == 97 * H
    best = longest_stretch(tr, max_gap=3 * H)
    assert 27 <= best.duration_s / 86400 <= 31


def test_real_20_games_native_prefers_ten_minutes() -> None:
    p = real("steamdb_20games_native_2025-09-20_2025-11-21.csv")
    tr = read_concurrency(p, "Apex Legends")
    spacing = set(np.unique(np.diff(tr.times)).tolist())
    assert {600.0, 3600.0} <= spacing
    assert len(tr.gaps) == 1


def test_real_single_and_hypixel() -> None:
    sar = read_concurrency(real("super_animal_royale_hourly_2025-04-20_2025-12-16.csv"))
    assert isinstance(sar, ConcurrencyTrace)
    assert sar.values.min() >= 117
    assert sar.values.max() <= 2365
    hyp = real("hypixel_by_gamemode_2025-03-08_2025-05-01.csv")
    assert len(list_series(hyp)) == 27
    assert read_concurrency(hyp, "SKYBLOCK").gaps


def test_a_column_without_a_name_is_refused_unless_it_holds_nothing(tmp_path: Path) -> None:
    named = "timestamp,g,\n2025-01-01T00:00:00Z,1,2\n2025-01-01T01:00:00Z,1,2\n"
    assert "column(s) 3 have no name" in problems_of(write(tmp_path, named))
    # a trailing comma on every line: an empty column, left out
    trailing = "timestamp,g,\n2025-01-01T00:00:00Z,1,\n2025-01-01T01:00:00Z,3,\n"
    trace = read_trace(write(tmp_path, trailing, "trailing.csv"), "g")
    assert isinstance(trace, ConcurrencyTrace)
    assert list(trace.values) == [1.0, 3.0]


def test_a_long_row_without_a_series_name_is_refused_with_its_line(tmp_path: Path) -> None:
    text = "timestamp,series,value\n2025-01-01T00:00:00Z,a,1\n2025-01-01T01:00:00Z, ,2\n"
    assert "column 'series': no series name on line(s) 3" in problems_of(write(tmp_path, text))


def test_a_folder_given_as_the_trace_says_so(tmp_path: Path) -> None:
    assert "is a directory; give the trace's CSV file" in problems_of(tmp_path)
