"""Read a demand trace (CSV) into a clean concurrency series, or a session log into sessions.

A backtest is only as honest as its input: a silently re-sorted, de-duplicated or half-parsed
trace produces a plausible-looking score on demand nobody observed. So this loader refuses bad
input with every problem at once (file, line, column, value, and what would be valid) and never
repairs it quietly. Missing values are the one thing it accepts: real exports have holes, so a
blank cell is a missing point, and the holes are *reported* as gaps for the caller to decide
(``sessions`` interpolates short ones and splits the trace at long ones).

Formats, detected from the header (column names are matched after stripping spaces;
``timestamp``, ``series``, ``value``, ``resolution_min``, ``arrival``, ``duration_s`` and
``location`` case-insensitively):

- session log: ``arrival,duration_s[,location]`` → a :class:`~autoscaler.backtest.sessions.
  SessionPlan` directly (no conversion; rows may be in any order, they are sorted by arrival);
- long: ``timestamp,series,value[,resolution_min]`` → the rows of one ``series``. Rows whose
  ``resolution_min`` is 1440 or more are daily peak aggregates and are ignored. When a series
  has rows at several resolutions (SteamDB: 60-minute history, 10-minute recent windows) the
  finest wins where it exists: coarser rows that fall inside a stretch covered by finer rows
  (from its first to its last finer row, a stretch ending where finer rows are further apart
  than the coarser step) are dropped, coarser rows outside are kept;
- single series: ``timestamp,<name>``;
- wide: ``timestamp`` and one column per series; pick one with ``series``.

Timestamps are UTC ISO 8601 (``Z`` or an offset; a time without an offset is taken as UTC) or
epoch seconds (every timestamp of the file a plain number). "Line" in messages is the line of
the file, the header being line 1 (a quoted field spanning lines would shift the count).

Gaps: a spacing larger than ``gap_factor`` × the nominal step around it (the row's resolution in
the long format when given, else the median spacing) is reported in ``ConcurrencyTrace.gaps``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from autoscaler.backtest.sessions import DEFAULT_LOCATION, SessionPlan
from autoscaler.domain.errors import ConfigError

_MAX_EXAMPLES = 5  # rows quoted per kind of problem; the rest are counted
_DAILY_MIN = 1440.0
_NUMBER = re.compile(r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$")
_ISO_HINT = "a UTC ISO 8601 time such as 2025-10-20T23:00:00Z (or an offset), or epoch seconds"


class TraceFormat(StrEnum):
    WIDE = "wide"
    LONG = "long"
    SINGLE = "single"
    SESSION_LOG = "session-log"


@dataclass(frozen=True, slots=True, eq=False)
class ConcurrencyTrace:
    """One series of concurrent players; ``times`` epoch seconds ascending, both arrays read-only.

    ``step_s`` is the median spacing; ``gaps`` are (last point before, first point after) of
    every hole larger than the loader's gap threshold, in epoch seconds.
    """

    name: str
    series: str
    times: NDArray[np.float64]
    values: NDArray[np.float64]
    step_s: float
    gaps: tuple[tuple[float, float], ...]

    @property
    def start(self) -> float:
        return float(self.times[0])

    @property
    def end(self) -> float:
        return float(self.times[-1])

    @property
    def duration_s(self) -> float:
        return self.end - self.start


def _frozen(a: NDArray[np.float64]) -> NDArray[np.float64]:
    out = np.ascontiguousarray(a, dtype=np.float64)
    out.flags.writeable = False
    return out


def _rows(lines: list[int]) -> str:
    """'line 7' or 'lines 7, 9 (and 3 more)'."""
    shown = ", ".join(str(n) for n in lines[:_MAX_EXAMPLES])
    more = len(lines) - _MAX_EXAMPLES
    return (
        ("line " if len(lines) == 1 else "lines ")
        + shown
        + (f" (and {more} more)" if more > 0 else "")
    )


def _quote_some(items: list[str]) -> str:
    return ", ".join(repr(s) for s in items)


def detect_format(columns: list[str], source: str = "<trace>") -> TraceFormat:
    """The format of a header; ``ConfigError`` saying what was expected when none fits."""
    fmt = _detect(columns)
    if isinstance(fmt, TraceFormat):
        return fmt
    raise ConfigError(source, [f"{source}, line 1: {fmt}"])


def _detect(columns: list[str]) -> TraceFormat | str:
    low = [c.strip().lower() for c in columns]
    if "arrival" in low and "duration_s" in low:
        return TraceFormat.SESSION_LOG
    if "timestamp" not in low:
        return (
            f"no 'timestamp' column (columns: {_quote_some(columns)}); expected 'timestamp' "
            "plus series columns, 'timestamp,series,value[,resolution_min]', or a session log "
            "'arrival,duration_s[,location]'"
        )
    if "series" in low and "value" in low:
        return TraceFormat.LONG
    if len(columns) == 2:
        return TraceFormat.SINGLE
    if len(columns) < 2:
        return "only a 'timestamp' column: no series to read (add one column per series)"
    return TraceFormat.WIDE


def _read_csv(path: Path) -> pd.DataFrame:
    src = str(path)
    if path.is_dir():
        raise ConfigError(src, [f"{src}: is a directory; give the trace's CSV file"])
    if not path.is_file():
        raise ConfigError(src, [f"{src}: no such file"])
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False)
    except pd.errors.EmptyDataError:
        raise ConfigError(
            src, [f"{src}: the file is empty (expected a header line such as 'timestamp,<name>')"]
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(src, [f"{src}: not a readable CSV: {exc}"]) from None
    df.columns = [str(c).strip() for c in df.columns]
    # pandas names a column with an empty header "Unnamed: N": a series needs a name. One with
    # no value at all (a trailing comma on every line) holds nothing to name and is left out.
    nameless = [c for c in df.columns if c == "" or c.startswith("Unnamed: ")]
    empty = [c for c in nameless if (df[c].str.strip() == "").all()]
    df = df.drop(columns=empty)
    unnamed = [i + 1 for i, c in enumerate(df.columns) if c in nameless]
    if unnamed:
        listed = ", ".join(str(i) for i in unnamed)
        raise ConfigError(
            src, [f"{src}, line 1: column(s) {listed} have no name (name every series)"]
        )
    # pandas renames a repeated column "x" to "x.1": report it instead of reading two series
    mangled = [c for c in df.columns if re.fullmatch(r".+\.\d+", c) and c.rsplit(".", 1)[0] in df]
    if mangled:
        names = [c.rsplit(".", 1)[0] for c in mangled]
        raise ConfigError(src, [f"{src}, line 1: duplicate column names: {_quote_some(names)}"])
    df["__line"] = np.arange(2, len(df) + 2)
    data_cols = [c for c in df.columns if c != "__line"]
    blank = (df[data_cols].apply(lambda s: s.str.strip()) == "").all(axis=1)
    out: pd.DataFrame = df.loc[~blank].reset_index(drop=True)
    return out


def _col(df: pd.DataFrame, name: str) -> str:
    for c in df.columns:
        if c.lower() == name:
            return str(c)
    raise KeyError(name)


def _parse_times(
    src: str, raw: pd.Series, lines: NDArray[np.int64], column: str, problems: list[str]
) -> NDArray[np.float64]:
    """Epoch seconds; NaN (and a problem) where a cell is not a time."""
    text = raw.astype(str).str.strip()
    n = len(text)
    out = np.full(n, np.nan)
    empty = (text == "").to_numpy()
    numeric = text.str.fullmatch(_NUMBER.pattern).to_numpy(dtype=bool)
    if n and numeric[~empty].all():
        out[~empty] = pd.to_numeric(text[~empty]).to_numpy(dtype=np.float64)
    else:
        parsed = pd.to_datetime(text.where(~numeric), utc=True, format="ISO8601", errors="coerce")
        ok = parsed.notna().to_numpy()
        secs = (parsed[ok] - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
        out[ok] = np.asarray(secs, dtype=np.float64)
    bad = np.isnan(out) & ~empty
    if empty.any():
        problems.append(
            f"{src}, {_rows(lines[empty].tolist())}, column {column!r}: empty time "
            f"(expected {_ISO_HINT})"
        )
    if bad.any():
        first = text[bad].iloc[0]
        problems.append(
            f"{src}, {_rows(lines[bad].tolist())}, column {column!r}: value {first!r} is "
            f"not a time (expected {_ISO_HINT}; every timestamp of a file must be ISO or every "
            "one epoch seconds)"
        )
    return out


def _parse_counts(
    src: str,
    raw: pd.Series,
    lines: NDArray[np.int64],
    column: str,
    problems: list[str],
    *,
    blank_ok: bool,
    what: str = "a non-negative count of concurrent players",
) -> NDArray[np.float64]:
    """Floats; NaN where a cell is blank (a missing point) or bad (then a problem)."""
    text = raw.astype(str).str.strip()
    empty = (text == "").to_numpy()
    num = pd.to_numeric(text.where(~empty), errors="coerce").to_numpy(dtype=np.float64, copy=True)
    non_numeric = ~empty & ~np.isfinite(num)
    negative = np.isfinite(num) & (num < 0)
    if non_numeric.any():
        first = text[non_numeric].iloc[0]
        problems.append(
            f"{src}, {_rows(lines[non_numeric].tolist())}, column {column!r}: value "
            f"{first!r} is not a number (expected {what})"
        )
    if negative.any():
        first = text[negative].iloc[0]
        problems.append(
            f"{src}, {_rows(lines[negative].tolist())}, column {column!r}: value {first!r} "
            f"is negative (expected {what})"
        )
    if not blank_ok and empty.any():
        problems.append(
            f"{src}, {_rows(lines[empty].tolist())}, column {column!r}: empty value "
            f"(expected {what})"
        )
    num[non_numeric | negative] = np.nan
    return num


def _check_order(
    src: str,
    *,
    times: NDArray[np.float64],
    lines: NDArray[np.int64],
    column: str,
    problems: list[str],
    where: str = "",
) -> None:
    """Duplicates and backward steps are errors (never silently sorted or dropped)."""
    ok = np.isfinite(times)
    t, ln = times[ok], lines[ok]
    if len(t) < 2:
        return
    d = np.diff(t)
    dup = np.flatnonzero(d == 0)
    back = np.flatnonzero(d < 0)
    if dup.size:
        pairs = [f"{ln[i]} and {ln[i + 1]}" for i in dup[:_MAX_EXAMPLES]]
        more = f" (and {dup.size - _MAX_EXAMPLES} more)" if dup.size > _MAX_EXAMPLES else ""
        problems.append(
            f"{src}, column {column!r}{where}: duplicate timestamps on lines "
            f"{'; '.join(pairs)}{more} (each time may appear once per series)"
        )
    if back.size:
        pairs = [f"line {ln[i + 1]} is earlier than line {ln[i]}" for i in back[:_MAX_EXAMPLES]]
        more = f" (and {back.size - _MAX_EXAMPLES} more)" if back.size > _MAX_EXAMPLES else ""
        problems.append(
            f"{src}, column {column!r}{where}: timestamps go backwards: {'; '.join(pairs)}{more} "
            "(rows must be in ascending time order)"
        )


def _find_gaps(
    times: NDArray[np.float64], nominal: NDArray[np.float64], gap_factor: float
) -> tuple[tuple[float, float], ...]:
    if len(times) < 2:
        return ()
    d = np.diff(times)
    limit = gap_factor * np.maximum(nominal[:-1], nominal[1:])
    idx = np.flatnonzero(d > limit)
    return tuple((float(times[i]), float(times[i + 1])) for i in idx)


def _finish(
    src: str,
    *,
    name: str,
    series: str,
    times: NDArray[np.float64],
    values: NDArray[np.float64],
    nominal: NDArray[np.float64] | None,
    gap_factor: float,
) -> ConcurrencyTrace:
    keep = np.isfinite(values)
    times, values = times[keep], values[keep]
    if len(times) < 2:
        raise ConfigError(
            src,
            [
                f"{src}, series {series!r}: {len(times)} data point(s) with a value; a trace "
                "needs at least 2"
            ],
        )
    step = float(np.median(np.diff(times)))
    nom = np.full(len(times), step) if nominal is None else nominal[keep]
    return ConcurrencyTrace(
        name=name,
        series=series,
        times=_frozen(times),
        values=_frozen(values),
        step_s=step,
        gaps=_find_gaps(times, nom, gap_factor),
    )


def _unknown_series(src: str, series: str | None, available: list[str]) -> ConfigError:
    if series is None:
        msg = f"{src}: {len(available)} series in the file; choose one with --series (available: "
    else:
        msg = f"{src}: unknown series {series!r} (available: "
    return ConfigError(src, [msg + _quote_some(available) + ")"])


def _prefer_finest(times: NDArray[np.float64], res_s: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Mask of the rows to keep: finer rows everywhere, coarser rows only outside their cover."""
    keep = np.zeros(len(times), dtype=bool)
    levels = np.unique(res_s)
    finer_t = np.empty(0)
    for level in levels:  # finest first
        mine = res_s == level
        t = times[mine]
        inside = np.zeros(len(t), dtype=bool)
        if finer_t.size:
            ft = np.sort(finer_t)
            breaks = np.flatnonzero(np.diff(ft) > level)
            starts = np.concatenate(([ft[0]], ft[breaks + 1]))
            ends = np.concatenate((ft[breaks], [ft[-1]]))
            k = np.searchsorted(starts, t, side="right") - 1
            inside = (k >= 0) & (t <= ends[np.maximum(k, 0)])
        idx = np.flatnonzero(mine)
        keep[idx[~inside]] = True
        finer_t = np.concatenate((finer_t, t[~inside]))
    return keep


def _load_long(
    src: str, name: str, df: pd.DataFrame, series: str | None, gap_factor: float
) -> ConcurrencyTrace:
    ts_c, se_c, va_c = _col(df, "timestamp"), _col(df, "series"), _col(df, "value")
    names = df[se_c].astype(str).str.strip()
    nameless = df["__line"].to_numpy()[(names == "").to_numpy()]
    if len(nameless):
        shown = ", ".join(str(n) for n in nameless[:5]) + (" …" if len(nameless) > 5 else "")
        raise ConfigError(src, [f"{src}, column {se_c!r}: no series name on line(s) {shown}"])
    available = list(dict.fromkeys(names.tolist()))
    if series is None and len(available) == 1:
        series = available[0]
    if series is None or series not in available:
        raise _unknown_series(src, series, available)
    rows = df.loc[(names == series).to_numpy()]
    lines = rows["__line"].to_numpy(dtype=np.int64)
    problems: list[str] = []
    times = _parse_times(src, rows[ts_c], lines, ts_c, problems)
    values = _parse_counts(src, rows[va_c], lines, va_c, problems, blank_ok=True)
    try:
        rs_c: str | None = _col(df, "resolution_min")
    except KeyError:
        rs_c = None
    res = np.full(len(rows), np.nan)
    if rs_c is not None:
        res = _parse_counts(
            src,
            rows[rs_c],
            lines,
            rs_c,
            problems,
            blank_ok=False,
            what="a positive number of minutes (e.g. 10, 60; 1440 marks a daily peak)",
        )
        zero = res == 0
        if zero.any():
            problems.append(
                f"{src}, {_rows(lines[zero].tolist())}, column {rs_c!r}: value '0' "
                "(expected a positive number of minutes)"
            )
    where = f", series {series!r}"
    if rs_c is None:
        _check_order(src, times=times, lines=lines, column=ts_c, problems=problems, where=where)
    else:
        for level in np.unique(res[np.isfinite(res)]):
            m = res == level
            _check_order(
                src,
                times=times[m],
                lines=lines[m],
                column=ts_c,
                problems=problems,
                where=f"{where}, resolution {level:g}",
            )
    if problems:
        raise ConfigError(src, problems)
    if rs_c is None:
        return _finish(
            src,
            name=name,
            series=series,
            times=times,
            values=values,
            nominal=None,
            gap_factor=gap_factor,
        )
    intraday = res < _DAILY_MIN
    times, values, res = times[intraday], values[intraday], res[intraday] * 60.0
    keep = _prefer_finest(times, res)
    times, values, res = times[keep], values[keep], res[keep]
    order = np.argsort(times, kind="stable")
    times, values, res = times[order], values[order], res[order]
    if np.any(np.diff(times) == 0):  # same time at two resolutions, both outside a finer cover
        i = int(np.flatnonzero(np.diff(times) == 0)[0])
        raise ConfigError(
            src, [f"{src}{where}: time {times[i]:.0f} appears at two resolutions (keep one)"]
        )
    return _finish(
        src,
        name=name,
        series=series,
        times=times,
        values=values,
        nominal=res,
        gap_factor=gap_factor,
    )


def _load_columns(
    src: str, name: str, df: pd.DataFrame, series: str | None, gap_factor: float
) -> ConcurrencyTrace:
    ts_c = _col(df, "timestamp")
    available = [c for c in df.columns if c not in (ts_c, "__line")]
    if series is None and len(available) == 1:
        series = available[0]
    if series is None or series not in available:
        raise _unknown_series(src, series, available)
    lines = df["__line"].to_numpy(dtype=np.int64)
    problems: list[str] = []
    times = _parse_times(src, df[ts_c], lines, ts_c, problems)
    values = _parse_counts(src, df[series], lines, series, problems, blank_ok=True)
    _check_order(src, times=times, lines=lines, column=ts_c, problems=problems)
    if problems:
        raise ConfigError(src, problems)
    return _finish(
        src,
        name=name,
        series=series,
        times=times,
        values=values,
        nominal=None,
        gap_factor=gap_factor,
    )


def _load_session_log(src: str, df: pd.DataFrame) -> SessionPlan:
    ar_c, du_c = _col(df, "arrival"), _col(df, "duration_s")
    lines = df["__line"].to_numpy(dtype=np.int64)
    problems: list[str] = []
    arrivals = _parse_times(src, df[ar_c], lines, ar_c, problems)
    durations = _parse_counts(
        src, df[du_c], lines, du_c, problems, blank_ok=False, what="a duration in seconds ≥ 0"
    )
    try:
        lo_c: str | None = _col(df, "location")
    except KeyError:
        lo_c = None
    if lo_c is None:
        loc_names = np.full(len(df), DEFAULT_LOCATION, dtype=object)
    else:
        loc_names = df[lo_c].astype(str).str.strip().to_numpy(dtype=object)
        empty = loc_names == ""
        if empty.any():
            problems.append(
                f"{src}, {_rows(lines[empty].tolist())}, column {lo_c!r}: empty location "
                "(expected a location name such as us-east-1, or drop the column)"
            )
    if len(df) == 0:
        problems.append(f"{src}: the session log has a header but no sessions")
    if problems:
        raise ConfigError(src, problems)
    order = np.argsort(arrivals, kind="stable")
    arrivals, durations, loc_names = arrivals[order], durations[order], loc_names[order]
    locations = tuple(dict.fromkeys(loc_names.tolist()))
    index = {n: i for i, n in enumerate(locations)}
    loc = np.fromiter((index[n] for n in loc_names), dtype=np.int32, count=len(loc_names))
    t0 = float(arrivals[0])
    rel = arrivals - t0
    return SessionPlan.build(
        arrival_s=rel,
        duration_s=durations,
        location=loc,
        locations=locations,
        t0_epoch_s=t0,
        horizon_s=float(np.max(rel + durations)),
        source=src,
    )


def list_series(path: str | Path) -> list[str]:
    """The series a trace file offers (for a CLI's ``--series`` help); [] for a session log."""
    p = Path(path)
    df = _read_csv(p)
    fmt = detect_format([c for c in df.columns if c != "__line"], str(p))
    if fmt is TraceFormat.SESSION_LOG:
        return []
    if fmt is TraceFormat.LONG:
        return list(dict.fromkeys(df[_col(df, "series")].astype(str).str.strip().tolist()))
    ts_c = _col(df, "timestamp")
    return [c for c in df.columns if c not in (ts_c, "__line")]


def read_trace(
    path: str | Path, series: str | None = None, *, gap_factor: float = 2.0
) -> ConcurrencyTrace | SessionPlan:
    """Load ``path``; a concurrency series (``series`` picks one when the file has several) or,
    for a session log, the sessions themselves. Raises ``ConfigError`` listing every problem."""
    if gap_factor <= 1.0:
        raise ValueError(f"gap_factor must be > 1, got {gap_factor}")
    p = Path(path)
    src = str(p)
    df = _read_csv(p)
    columns = [c for c in df.columns if c != "__line"]
    fmt = detect_format(columns, src)
    if fmt is TraceFormat.SESSION_LOG:
        return _load_session_log(src, df)
    if len(df) == 0:
        raise ConfigError(src, [f"{src}: a header but no data rows; a trace needs at least 2"])
    if fmt is TraceFormat.LONG:
        return _load_long(src, p.stem, df, series, gap_factor)
    return _load_columns(src, p.stem, df, series, gap_factor)


def read_concurrency(
    path: str | Path, series: str | None = None, *, gap_factor: float = 2.0
) -> ConcurrencyTrace:
    """Like :func:`read_trace` but a session log is a ``ConfigError`` (a series was expected)."""
    out = read_trace(path, series, gap_factor=gap_factor)
    if isinstance(out, SessionPlan):
        raise ConfigError(
            str(path),
            [
                f"{path}: a session log (arrival,duration_s), not a concurrency series "
                "(expected 'timestamp' plus series columns)"
            ],
        )
    return out


def _sub(trace: ConcurrencyTrace, lo: int, hi: int) -> ConcurrencyTrace:
    """Points ``lo..hi`` inclusive, keeping only the gaps inside."""
    t0, t1 = float(trace.times[lo]), float(trace.times[hi])
    t = trace.times[lo : hi + 1]
    return ConcurrencyTrace(
        name=trace.name,
        series=trace.series,
        times=_frozen(t),
        values=_frozen(trace.values[lo : hi + 1]),
        step_s=float(np.median(np.diff(t))) if len(t) > 1 else trace.step_s,
        gaps=tuple(g for g in trace.gaps if g[0] >= t0 and g[1] <= t1),
    )


def split_at_gaps(trace: ConcurrencyTrace, max_gap: float) -> list[ConcurrencyTrace]:
    """The hole-free pieces: the trace cut wherever two points are more than ``max_gap`` s
    apart. A piece may be a single point (then ``step_s`` is the parent's)."""
    cuts = np.flatnonzero(np.diff(trace.times) > max_gap)
    starts = np.concatenate(([0], cuts + 1))
    ends = np.concatenate((cuts, [len(trace.times) - 1]))
    return [_sub(trace, int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def longest_stretch(series: ConcurrencyTrace, max_gap: float) -> ConcurrencyTrace:
    """The longest (in time) piece of ``series`` with no two points more than ``max_gap`` s
    apart; the earliest one on a tie."""
    pieces = split_at_gaps(series, max_gap)
    best = max(range(len(pieces)), key=lambda i: (pieces[i].duration_s, -i))
    return pieces[best]


def describe_gaps(trace: ConcurrencyTrace) -> list[str]:
    """Human-readable gap report, e.g. for a CLI warning."""
    out = []
    for a, b in trace.gaps:
        ta = pd.Timestamp(a, unit="s", tz="UTC").isoformat()
        tb = pd.Timestamp(b, unit="s", tz="UTC").isoformat()
        out.append(f"{trace.series}: no data from {ta} to {tb} ({(b - a) / 3600.0:.1f} h)")
    return out
