"""The controller's memory: sample history, the applied-change journal, and small state.

Why SQLite: the history must survive restarts and crashes (a forecaster that starts cold after
every deploy buys capacity blind), the journal must prove that a change applied before a crash
is not applied again, and both must work with no server to run. One file, stdlib only.

How it stays consistent:

- WAL journal, ``synchronous=NORMAL``: a killed process (kill -9, OOM) loses nothing that was
  committed, and every logical write below is exactly one transaction, so a reader after a
  crash sees each write entirely or not at all. On power loss NORMAL may drop the last few
  sample commits (never corrupting the file); journal writes switch to ``synchronous=FULL`` so
  an intent or outcome, once recorded, is on disk before the mutating call is made.
- Migrations are applied on open, each in its own transaction, and recorded in
  ``schema_version``; a file from newer software is refused rather than misread.
- Foreign keys are on: a sample cannot name an unknown location, an outcome cannot exist
  without its intent.

Reading fast: the forecaster reads ~14 days per location every tick, and turning 20k SQLite
rows into Python objects costs ~60 ms. So each location's samples are also kept packed, per
6-hour bucket, as float64 column blobs (table ``segments``); a read joins a few dozen blobs
with numpy and reads only the open bucket row by row (~2 ms for 14 days of one-minute ticks).
Segments are derived data: a write deletes the segments it touches in its own transaction,
and appends and reads re-pack missing ones, so they always equal the rows. They roughly
double the file size.

Reading faster still (opt-in, ``cache_columns=True``; backtests use it): each location's
columns are also kept in memory, append-only, so ``history`` is a slice with no SQL at all.
SQLite stays the source of truth: the memory copy is filled from it on first read, extended
only by this store's own in-order appends once they are committed, and dropped whenever it
could differ (a backfill, a prune, an append at or before its newest row, or a commit by any
other connection, detected with ``PRAGMA data_version`` before every read of a file). It
costs ~80 bytes per sample row held (≈1.6 MB per location for 14 days of one-minute ticks),
which is why the daemon, with thousands of locations, leaves it off.

A database in memory (backtests) is private to its connection, which saves statements that
could not change anything there: no ``data_version`` check, no ``synchronous=FULL`` switch
around journal writes (no disk), and no packed-bucket delete for a row after the newest one
(a bucket is packed only once a newer bucket has a row). With the column cache it also
defers sample INSERTs: a tick's samples extend the memory copy at once and reach SQLite in
one batch before anything reads or writes the samples table (see ``_defer``).

The API is synchronous. The controller calls it from a worker thread (``asyncio.to_thread``);
one connection is shared under a lock, so any thread may call, one at a time.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Final, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from autoscaler.domain.errors import AutoscalerError
from autoscaler.domain.models import CapacitySetting, LocationHistory, LocationSample

FloatMatrix = npt.NDArray[np.float64]

# Each migration is a list of statements run in one transaction; index + 1 is its version.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE locations (
            id INTEGER PRIMARY KEY,
            group_id TEXT NOT NULL,
            location TEXT NOT NULL,
            UNIQUE (group_id, location)
        )""",
        # WITHOUT ROWID: rows are stored in (loc_id, at) order, so one location's window is a
        # single contiguous range scan.
        """CREATE TABLE samples (
            loc_id INTEGER NOT NULL REFERENCES locations (id) ON DELETE CASCADE,
            at REAL NOT NULL,
            status TEXT,
            always_on INTEGER,
            target_idle INTEGER,
            maximum INTEGER,
            on_demand INTEGER,
            allocated REAL NOT NULL,
            idle REAL NOT NULL,
            in_use REAL NOT NULL,
            waiting REAL NOT NULL,
            oldest_waiting_s REAL NOT NULL,
            arrivals REAL NOT NULL,
            placement_failures REAL NOT NULL,
            departures REAL NOT NULL,
            complete INTEGER NOT NULL CHECK (complete IN (0, 1)),
            backfilled INTEGER NOT NULL DEFAULT 0 CHECK (backfilled IN (0, 1)),
            PRIMARY KEY (loc_id, at)
        ) WITHOUT ROWID""",
        # Sealed buckets of samples as packed float64 columns: the fast read path. Derived
        # data: every write to a bucket deletes its segment in the same transaction, and a
        # read rebuilds missing ones, so a segment always equals the rows it was built from.
        """CREATE TABLE segments (
            loc_id INTEGER NOT NULL REFERENCES locations (id) ON DELETE CASCADE,
            bucket INTEGER NOT NULL,
            n INTEGER NOT NULL,
            data BLOB NOT NULL,
            PRIMARY KEY (loc_id, bucket)
        ) WITHOUT ROWID""",
        """CREATE TABLE intents (
            decision_id TEXT PRIMARY KEY,
            group_id TEXT NOT NULL,
            at REAL NOT NULL,
            payload TEXT NOT NULL
        )""",
        "CREATE INDEX intents_group_at ON intents (group_id, at)",
        """CREATE TABLE outcomes (
            decision_id TEXT PRIMARY KEY REFERENCES intents (decision_id) ON DELETE CASCADE,
            status TEXT NOT NULL CHECK (status IN ('applied', 'failed', 'abandoned')),
            detail TEXT NOT NULL
        )""",
        """CREATE TABLE state (
            key TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    ),
    (
        # Sessions that started after waiting for capacity; NULL where not measured (every
        # row written before this column, backfilled rows): unknown, never zero.
        "ALTER TABLE samples ADD COLUMN late_starts REAL",
        # The packed columns gained one: every segment is rebuilt from its rows on read.
        "DELETE FROM segments",
    ),
    (
        # The policy's miss budget in force over each row's interval; NULL where none was
        # (open-loop policies, dry runs, standbys, rows written before this column).
        "ALTER TABLE samples ADD COLUMN miss_budget REAL",
        "DELETE FROM segments",
    ),
)

SCHEMA_VERSION: Final = len(_MIGRATIONS)

# Columns of ``history`` in LocationHistory field order (after ``at``; ``complete`` last).
_HISTORY_COLUMNS: Final = (
    "at",
    "in_use",
    "waiting",
    "arrivals",
    "placement_failures",
    "departures",
    "allocated",
    "idle",
    "late_starts",
    "miss_budget",
    "complete",
)
_FRAME_COLUMNS: Final = (
    "at",
    "status",
    "always_on",
    "target_idle",
    "maximum",
    "on_demand",
    "allocated",
    "idle",
    "in_use",
    "waiting",
    "oldest_waiting_s",
    "arrivals",
    "placement_failures",
    "departures",
    "late_starts",
    "miss_budget",
    "complete",
    "backfilled",
)
_INSERT_SAMPLE: Final = (
    "INSERT OR REPLACE INTO samples (loc_id, at, status, always_on, target_idle, maximum,"
    " on_demand, allocated, idle, in_use, waiting, oldest_waiting_s, arrivals,"
    " placement_failures, departures, late_starts, miss_budget, complete, backfilled)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"
)
_INSERT_BACKFILL: Final = (
    "INSERT OR IGNORE INTO samples (loc_id, at, status, always_on, target_idle, maximum,"
    " on_demand, allocated, idle, in_use, waiting, oldest_waiting_s, arrivals,"
    " placement_failures, departures, late_starts, miss_budget, complete, backfilled)"
    " VALUES (?, ?, NULL, NULL, NULL, NULL, NULL, ?, ?, ?, 0, 0, ?, 0, ?, NULL, NULL, 1, 1)"
)
_HISTORY_SELECT: Final = ", ".join(_HISTORY_COLUMNS)
_NCOL: Final = len(_HISTORY_COLUMNS)
# Segment width: 6 h keeps the unsealed tail (read row by row) short at any tick interval.
_SEGMENT_S: Final = 21_600.0


# Deferred sample rows inserted at once when this many are waiting (bounds the memory held
# outside SQLite; a new bucket's first row flushes them anyway).
_DEFER_MAX_ROWS: Final = 4096


# ``_INSERT_SAMPLE``'s parameters: loc_id, at, status, the setting, then the counts.
_SampleRow = tuple[
    int,
    float,
    str,
    int,
    int,
    int,
    int | None,
    int,
    int,
    int,
    int,
    float,
    int,
    int,
    int,
    int | None,
    float | None,
    int,
]


def _sample_row(loc_id: int, s: LocationSample) -> _SampleRow:
    """The ``_INSERT_SAMPLE`` parameters of one sample."""
    setting = s.setting
    return (
        loc_id,
        float(s.at),
        s.status,
        setting.always_on,
        setting.target_idle,
        setting.maximum,
        setting.on_demand,
        s.allocated,
        s.idle,
        s.in_use,
        s.waiting,
        float(s.oldest_waiting_s),
        s.arrivals,
        s.placement_failures,
        s.departures,
        s.late_starts,
        s.miss_budget,
        int(s.complete),
    )


def _column_row(s: LocationSample) -> tuple[float, ...]:
    """One sample in ``_HISTORY_COLUMNS`` order, as SQLite's REAL columns hold it."""
    return (
        float(s.at),
        float(s.in_use),
        float(s.waiting),
        float(s.arrivals),
        float(s.placement_failures),
        float(s.departures),
        float(s.allocated),
        float(s.idle),
        math.nan if s.late_starts is None else float(s.late_starts),
        math.nan if s.miss_budget is None else float(s.miss_budget),
        float(int(s.complete)),
    )


def _bucket(at: float) -> int:
    return int(at // _SEGMENT_S)


def _empty_columns() -> FloatMatrix:
    return np.zeros((_NCOL, 0), dtype=np.float64)


def _history_of(table: FloatMatrix, complete: npt.NDArray[np.bool_]) -> LocationHistory:
    """A history over the rows of ``table`` (columns in ``_HISTORY_COLUMNS`` order)."""
    return LocationHistory(
        at=table[0],
        in_use=table[1],
        waiting=table[2],
        arrivals=table[3],
        placement_failures=table[4],
        departures=table[5],
        allocated=table[6],
        idle=table[7],
        complete=complete,
        late_starts=table[8],
        miss_budget=table[9],
    )


def _rows_to_columns(rows: list[tuple[float, ...]]) -> FloatMatrix:
    """Rows of ``_HISTORY_COLUMNS`` to a C-contiguous (columns, rows) float64 matrix."""
    if not rows:
        return _empty_columns()
    return np.ascontiguousarray(np.array(rows, dtype=np.float64).T)


class _Columns:
    """One location's history in memory: columns ``data[:, :n]`` (``_HISTORY_COLUMNS``, ``at``
    ascending) and ``complete[:n]``, in buffers with room to append."""

    __slots__ = ("complete", "data", "n")

    def __init__(self, table: FloatMatrix) -> None:
        n = int(table.shape[1])
        cap = max(64, n + n // 2)
        self.data: FloatMatrix = np.zeros((_NCOL, cap), dtype=np.float64)
        self.data[:, :n] = table
        self.complete: npt.NDArray[np.bool_] = np.zeros(cap, dtype=np.bool_)
        self.complete[:n] = table[_NCOL - 1] != 0.0
        self.n = n

    @property
    def last_at(self) -> float:
        return float(self.data[0, self.n - 1]) if self.n else -np.inf

    def append(self, row: Sequence[float]) -> None:
        """Add a row (values in ``_HISTORY_COLUMNS`` order) after the newest one."""
        n = self.n
        if n == self.data.shape[1]:  # full: grow by half, copying once
            cap = n + n // 2
            data = np.zeros((_NCOL, cap), dtype=np.float64)
            data[:, :n] = self.data[:, :n]
            complete = np.zeros(cap, dtype=np.bool_)
            complete[:n] = self.complete[:n]
            self.data, self.complete = data, complete
        self.data[:, n] = row
        self.complete[n] = row[_NCOL - 1] != 0.0
        self.n = n + 1

    def history(self, since: float, until: float | None) -> LocationHistory:
        """Rows with ``since <= at <= until``: read-only views, no copy."""
        n = self.n
        at = self.data[0, :n]
        i = int(at.searchsorted(since, "left"))
        j = n if until is None else int(at.searchsorted(until, "right"))
        if j <= i:
            return LocationHistory.empty()
        t = self.data[:, i:j]
        t.flags.writeable = False  # views of t inherit it: nobody can edit the cache
        complete = self.complete[i:j]
        complete.flags.writeable = False
        return _history_of(t, complete)


class StoreError(AutoscalerError):
    """The store file cannot be used (newer schema, corrupt, or misuse of the journal)."""


class Outcome(StrEnum):
    APPLIED = "applied"
    FAILED = "failed"
    ABANDONED = "abandoned"


@dataclass(frozen=True, slots=True)
class PendingIntent:
    """An intent recorded before a mutating call whose outcome was never recorded."""

    decision_id: str
    group_id: str
    at: float
    payload_json: str


@dataclass(frozen=True, slots=True)
class BackfillRow:
    """One imported observation (e.g. a CloudWatch minute: ActiveCapacity, IdleCapacity)."""

    at: float
    in_use: float
    allocated: float
    idle: float


class HistoryStore:
    """SQLite-backed history, decision journal and key-value state (see the module docstring).

    ``path`` is a file (created with its directory if missing) or ``":memory:"``.
    ``retention_s`` is how much sample history ``prune`` keeps. ``busy_timeout_s`` is how
    long a write waits for another process's write transaction before failing.
    ``cache_columns`` keeps each location's history in memory too (see the module docstring).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        retention_s: float,
        busy_timeout_s: float = 5.0,
        cache_columns: bool = False,
    ) -> None:
        if retention_s <= 0:
            raise ValueError("retention_s must be positive")
        self.retention_s = float(retention_s)
        self.path = path if path == ":memory:" else Path(path)
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction is exactly
        # one logical write and nothing is committed implicitly.
        self._conn: sqlite3.Connection | None = sqlite3.connect(
            str(self.path),
            isolation_level=None,
            check_same_thread=False,
            timeout=busy_timeout_s,
        )
        self._loc_ids: dict[tuple[str, str], int] = {}
        self._pending_loc_ids: dict[tuple[str, str], int] = {}
        self._sealed_before: dict[int, int] = {}  # loc_id -> bucket whose predecessor is packed
        # loc_id -> its history in memory; None: no memory copy at all
        self._columns: dict[int, _Columns] | None = {} if cache_columns else None
        self._data_version: int | None = None  # PRAGMA data_version when _columns was checked
        # A database in memory has no disk to sync: the journal's synchronous=FULL switch
        # would be two statements per write that change nothing.
        self._sync_journal = self.path != ":memory:"
        # Nobody else can open a database in memory: see ``_after_newest``.
        self._private = self.path == ":memory:"
        # Sample rows appended to the memory copy but not yet inserted (private cached store
        # only, see ``_defer``); every SQL use of the samples table inserts them first.
        self._deferred: list[_SampleRow] = []
        try:
            self._configure()
            self._migrate()
        except BaseException:
            self._conn.close()
            self._conn = None
            raise

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            return int(row[0])

    @property
    def journal_mode(self) -> str:
        with self._lock:
            return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    # -- samples ---------------------------------------------------------------------------

    def append_samples(self, samples: Sequence[LocationSample]) -> None:
        """Store one tick's samples in one transaction; a repeated (group, location, at)
        replaces the earlier row."""
        if not samples:
            return
        if self._columns is not None and self._private:
            with self._lock:
                if self._defer(samples):
                    return
        self._flush_deferred()
        with self._write() as cur:
            rows = [_sample_row(self._loc_id(cur, s.group_id, s.location), s) for s in samples]
            cur.executemany(_INSERT_SAMPLE, rows)
            self._invalidate_segments(
                cur, ((r[0], r[1]) for r in rows if not self._after_newest(r[0], r[1]))
            )
            # A tick in a new bucket packs the previous one, so reads after a restart are
            # fast too (at most one lookup per location and bucket).
            newest: dict[int, int] = {}
            sealed: dict[int, int] = {}
            for r in rows:
                newest[r[0]] = max(newest.get(r[0], -(2**62)), _bucket(r[1]))
            for loc_id, bucket in newest.items():
                if self._sealed_before.get(loc_id) != bucket:
                    self._seal_in(cur, loc_id, bucket - 1, bucket - 1)
                    sealed[loc_id] = bucket
        # Remembered only once committed; it merely skips a lookup, reads re-pack if needed.
        self._sealed_before.update(sealed)
        if self._columns is not None:
            with self._lock:
                self._extend_columns(zip((r[0] for r in rows), samples, strict=True))

    def backfill(
        self,
        group_id: str,
        location: str,
        rows: Iterable[BackfillRow | tuple[float, float, float, float]],
    ) -> int:
        """Import history (``at, in_use, allocated, idle``) as complete rows; returns how many
        were new.

        Rows never overwrite a stored sample at the same time (the controller's own samples
        know more). Imported data carries no session flows, so arrivals and departures are
        set to the net change of ``in_use`` since the previous row (stored or imported), a
        lower bound on the true flows; waiting and placement failures are 0. Rows already
        stored keep their flows.
        """
        # Last row wins within the batch; stored rows win over the batch.
        batch = {
            float(r.at): r
            for r in (r if isinstance(r, BackfillRow) else BackfillRow(*r) for r in rows)
        }
        if not batch:
            return 0
        first, last = min(batch), max(batch)
        self._flush_deferred()
        with self._write() as cur:
            loc_id = self._loc_id(cur, group_id, location)
            before = cur.execute(
                "SELECT in_use FROM samples WHERE loc_id = ? AND at < ? ORDER BY at DESC LIMIT 1",
                (loc_id, first),
            ).fetchone()
            stored = {
                float(at): float(in_use)
                for at, in_use in cur.execute(
                    "SELECT at, in_use FROM samples WHERE loc_id = ? AND at BETWEEN ? AND ?",
                    (loc_id, first, last),
                ).fetchall()
            }
            # Flows come from the merged sequence: stored rows count as the neighbours.
            prev = float(before[0]) if before is not None else float(batch[first].in_use)
            values = []
            for at in sorted(batch.keys() | stored.keys()):
                if at in stored:
                    prev = stored[at]
                    continue
                r = batch[at]
                delta = float(r.in_use) - prev
                prev = float(r.in_use)
                values.append(
                    (
                        loc_id,
                        at,
                        float(r.allocated),
                        float(r.idle),
                        float(r.in_use),
                        max(0.0, delta),
                        max(0.0, -delta),
                    )
                )
            cur.executemany(_INSERT_BACKFILL, values)
            self._invalidate_segments(cur, ((loc_id, v[1]) for v in values))
        if self._columns is not None and values:
            with self._lock:
                self._columns.pop(loc_id, None)  # rows inside its range: re-read on demand
        return len(values)

    def history(
        self, group_id: str, location: str, since: float, until: float | None = None
    ) -> LocationHistory:
        """Samples with ``since <= at <= until`` (no upper bound if None), oldest first.

        Fast path: sealed 6-hour buckets come back as packed column blobs (one row per bucket
        instead of one Python object per value); only the newest, open bucket is read row by
        row. Buckets not yet packed are packed here, once.
        """
        with self._lock:
            loc_id = self._known_loc_id(group_id, location)
            if loc_id is None:
                return LocationHistory.empty()
            if self._columns is not None:
                return self._cached_columns(loc_id).history(
                    float(since), None if until is None else float(until)
                )
            table = self._read_columns(loc_id, float(since), until)
        if table.shape[1] == 0:
            return LocationHistory.empty()
        return _history_of(table, table[_NCOL - 1] != 0.0)

    def history_frame(
        self, group_id: str, location: str, since: float, until: float | None = None
    ) -> pd.DataFrame:
        """Every stored column for plots and users, indexed by a UTC DatetimeIndex named
        ``time``; setting columns are nullable integers (absent on imported rows)."""
        with self._lock:
            self._flush_deferred()
            loc_id = self._known_loc_id(group_id, location)
            rows: list[tuple[object, ...]] = []
            if loc_id is not None:
                sql, params = self._range_sql(", ".join(_FRAME_COLUMNS), loc_id, since, until)
                rows = self._db.execute(sql, params).fetchall()
        frame = pd.DataFrame.from_records(rows, columns=list(_FRAME_COLUMNS))
        frame["at"] = frame["at"].astype("float64")
        for col in ("always_on", "target_idle", "maximum", "on_demand"):
            frame[col] = frame[col].astype("Int64")
        for col in (
            "allocated",
            "idle",
            "in_use",
            "waiting",
            "oldest_waiting_s",
            "arrivals",
            "placement_failures",
            "departures",
            "late_starts",
            "miss_budget",
        ):
            frame[col] = frame[col].astype("float64")
        for col in ("complete", "backfilled"):
            frame[col] = frame[col].astype("bool")
        frame["status"] = frame["status"].astype("string")
        frame.index = pd.DatetimeIndex(pd.to_datetime(frame["at"], unit="s", utc=True), name="time")
        return frame

    def latest_sample(self, group_id: str, location: str) -> LocationSample | None:
        """The newest sample the controller itself stored (not imported) for a location."""
        with self._lock:
            self._flush_deferred()
            loc_id = self._known_loc_id(group_id, location)
            if loc_id is None:
                return None
            row = self._db.execute(
                "SELECT at, status, always_on, target_idle, maximum, on_demand, allocated,"
                " idle, in_use, waiting, oldest_waiting_s, arrivals, placement_failures,"
                " departures, complete, late_starts, miss_budget"
                " FROM samples WHERE loc_id = ? AND backfilled = 0"
                " ORDER BY at DESC LIMIT 1",
                (loc_id,),
            ).fetchone()
        if row is None:
            return None
        return LocationSample(
            group_id=group_id,
            location=location,
            at=float(row[0]),
            status=str(row[1]),
            setting=CapacitySetting(
                always_on=int(row[2]),
                target_idle=int(row[3]),
                maximum=int(row[4]),
                on_demand=None if row[5] is None else int(row[5]),
            ),
            allocated=int(row[6]),
            idle=int(row[7]),
            in_use=int(row[8]),
            waiting=int(row[9]),
            oldest_waiting_s=float(row[10]),
            arrivals=int(row[11]),
            placement_failures=int(row[12]),
            departures=int(row[13]),
            complete=bool(row[14]),
            late_starts=None if row[15] is None else int(row[15]),
            miss_budget=None if row[16] is None else float(row[16]),
        )

    def locations(self) -> list[tuple[str, str]]:
        """Known (group_id, location) pairs that have at least one stored sample, sorted."""
        with self._lock:
            self._flush_deferred()
            rows = self._db.execute(
                "SELECT group_id, location FROM locations l"
                " WHERE EXISTS (SELECT 1 FROM samples s WHERE s.loc_id = l.id)"
                " ORDER BY group_id, location"
            ).fetchall()
        return [(str(g), str(loc)) for g, loc in rows]

    def latest_sample_time(self, group_id: str) -> float | None:
        """Time of the newest sample of any location of the group (imported ones included)."""
        with self._lock:
            self._flush_deferred()
            loc_ids = [
                int(r[0])
                for r in self._db.execute(
                    "SELECT id FROM locations WHERE group_id = ?", (group_id,)
                ).fetchall()
            ]
            # One indexed MAX per location instead of a scan of the group's rows.
            times = [
                row[0]
                for loc_id in loc_ids
                if (
                    row := self._db.execute(
                        "SELECT MAX(at) FROM samples WHERE loc_id = ?", (loc_id,)
                    ).fetchone()
                )[0]
                is not None
            ]
        return float(max(times)) if times else None

    def prune(self, now: float) -> int:
        """Delete samples older than ``now - retention_s`` and journal entries of finished
        decisions as old, keeping each group's last applied decision and every pending
        intent. Returns the number of samples deleted. Meant to run about once an hour."""
        cutoff = now - self.retention_s
        self._flush_deferred()
        with self._write() as cur:
            deleted = 0
            for (loc_id,) in cur.execute("SELECT id FROM locations").fetchall():
                cur.execute("DELETE FROM samples WHERE loc_id = ? AND at < ?", (loc_id, cutoff))
                deleted += cur.rowcount
                # The cutoff's bucket lost rows; older ones are empty now.
                cur.execute(
                    "DELETE FROM segments WHERE loc_id = ? AND bucket <= ?",
                    (loc_id, _bucket(cutoff)),
                )
            if self._columns is not None:
                self._columns.clear()  # dropped even if the transaction rolls back: re-read
            # Location rows stay (a few bytes each): ids are never reused, so an id cached by
            # any connection stays right. ``locations()`` lists only those with samples.
            cur.execute(
                "DELETE FROM intents WHERE at < ?"
                " AND decision_id IN (SELECT decision_id FROM outcomes)"
                " AND decision_id NOT IN (SELECT decision_id FROM ("
                "   SELECT i.decision_id, ROW_NUMBER() OVER ("
                "     PARTITION BY i.group_id ORDER BY i.at DESC, i.rowid DESC) AS n"
                "   FROM intents i JOIN outcomes o USING (decision_id)"
                "   WHERE o.status = 'applied') WHERE n = 1)",
                (cutoff,),
            )
            return deleted

    # -- decision journal ------------------------------------------------------------------

    def record_intent(self, group_id: str, at: float, decision_id: str, payload_json: str) -> bool:
        """Record a decision before the mutating call that applies it. Returns False (and
        changes nothing) when ``decision_id`` is already recorded."""
        with self._write(durable=True) as cur:
            cur.execute(
                "INSERT OR IGNORE INTO intents (decision_id, group_id, at, payload)"
                " VALUES (?, ?, ?, ?)",
                (decision_id, group_id, float(at), payload_json),
            )
            return cur.rowcount == 1

    def record_outcome(self, decision_id: str, status: Outcome | str, detail: str = "") -> bool:
        """Record how a recorded intent ended. An outcome is final: recording the same status
        again is a no-op (returns False); a different one raises ``StoreError``."""
        outcome = Outcome(status)
        insert = "INSERT INTO outcomes (decision_id, status, detail) VALUES (?, ?, ?)"
        with self._write(durable=True) as cur:
            # The usual case first: the insert passes its foreign key (the intent exists) and
            # primary key (no outcome yet). Otherwise it changes nothing and the checks below
            # say which rule it broke.
            with suppress(sqlite3.IntegrityError):
                cur.execute(insert, (decision_id, outcome.value, detail))
                return True
            if (
                cur.execute(
                    "SELECT 1 FROM intents WHERE decision_id = ?", (decision_id,)
                ).fetchone()
                is None
            ):
                raise StoreError(f"no intent recorded for decision {decision_id!r}")
            prior = cur.execute(
                "SELECT status FROM outcomes WHERE decision_id = ?", (decision_id,)
            ).fetchone()
            if prior is not None:
                if prior[0] != outcome.value:
                    raise StoreError(
                        f"decision {decision_id!r} already {prior[0]}, cannot become {outcome}"
                    )
                return False
            cur.execute(insert, (decision_id, outcome.value, detail))  # raises what it broke
            return True

    def pending_intents(self) -> list[PendingIntent]:
        """Intents without an outcome (a crash between intent and outcome), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT i.decision_id, i.group_id, i.at, i.payload FROM intents i"
                " WHERE NOT EXISTS (SELECT 1 FROM outcomes o WHERE o.decision_id = i.decision_id)"
                " ORDER BY i.at, i.rowid"
            ).fetchall()
        return [PendingIntent(str(d), str(g), float(a), str(p)) for d, g, a, p in rows]

    def outcome(self, decision_id: str) -> tuple[Outcome, str] | None:
        """The recorded outcome of a decision and its detail, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT status, detail FROM outcomes WHERE decision_id = ?", (decision_id,)
            ).fetchone()
        return None if row is None else (Outcome(row[0]), str(row[1]))

    def last_applied(self, group_id: str) -> tuple[float, str] | None:
        """(at, payload_json) of the group's newest applied decision."""
        with self._lock:
            row = self._db.execute(
                "SELECT i.at, i.payload FROM intents i JOIN outcomes o USING (decision_id)"
                " WHERE i.group_id = ? AND o.status = 'applied'"
                " ORDER BY i.at DESC, i.rowid DESC LIMIT 1",
                (group_id,),
            ).fetchone()
        return None if row is None else (float(row[0]), str(row[1]))

    # -- key-value state -------------------------------------------------------------------

    def get_state(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def put_state(self, key: str, value: str) -> None:
        self.put_states({key: value})

    def put_states(self, values: Mapping[str, str]) -> None:
        """Write several keys in one transaction (all or none)."""
        with self._write() as cur:
            cur.executemany(
                "INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", list(values.items())
            )

    def delete_state(self, key: str) -> None:
        with self._write() as cur:
            cur.execute("DELETE FROM state WHERE key = ?", (key,))

    # -- internals -------------------------------------------------------------------------

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the history store is closed")
        return self._conn

    def _configure(self) -> None:
        db = self._db
        mode = str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
        if mode not in ("wal", "memory"):  # ":memory:" databases cannot use WAL
            raise StoreError(f"{self.path}: cannot switch to WAL journal mode (got {mode})")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        if db.execute("PRAGMA foreign_keys").fetchone()[0] != 1:
            raise StoreError("this SQLite build cannot enforce foreign keys")

    def _migrate(self) -> None:
        with self._write() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY)")
            current = cur.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {current} is newer than this software's "
                f"{SCHEMA_VERSION}; upgrade the controller"
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self._write() as cur:
                # Re-check inside the write lock: another process may have migrated meanwhile.
                done = cur.execute(
                    "SELECT 1 FROM schema_version WHERE version = ?", (version,)
                ).fetchone()
                if done is not None:
                    continue
                for statement in _MIGRATIONS[version - 1]:
                    cur.execute(statement)
                cur.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Cursor]:
        """One write transaction: BEGIN IMMEDIATE … COMMIT, rolled back on any error."""
        durable = durable and self._sync_journal
        with self._lock:
            db = self._db
            if durable:
                db.execute("PRAGMA synchronous = FULL")
            self._pending_loc_ids = {}
            cur = db.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                try:
                    yield cur
                    cur.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.rollback()
                    raise
                self._loc_ids.update(self._pending_loc_ids)
            finally:
                cur.close()
                self._pending_loc_ids = {}
                if durable:
                    db.execute("PRAGMA synchronous = NORMAL")

    def _loc_id(self, cur: sqlite3.Cursor, group_id: str, location: str) -> int:
        """Id of a location, created if new (inside the caller's write transaction)."""
        key = (group_id, location)
        cached = self._loc_ids.get(key)
        if cached is None:
            cached = self._pending_loc_ids.get(key)
        if cached is not None:
            return cached
        cur.execute("INSERT OR IGNORE INTO locations (group_id, location) VALUES (?, ?)", key)
        row = cur.execute(
            "SELECT id FROM locations WHERE group_id = ? AND location = ?", key
        ).fetchone()
        loc_id = int(row[0])
        # Cached only once the transaction commits (a rollback may un-create it).
        self._pending_loc_ids[key] = loc_id
        return loc_id

    def _known_loc_id(self, group_id: str, location: str) -> int | None:
        key = (group_id, location)
        cached = self._loc_ids.get(key)
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT id FROM locations WHERE group_id = ? AND location = ?", key
        ).fetchone()
        if row is None:
            return None
        self._loc_ids[key] = int(row[0])
        return int(row[0])

    def _read_columns(self, loc_id: int, since: float, until: float | None) -> FloatMatrix:
        """(len(_HISTORY_COLUMNS), n) float64 columns of one location's samples in
        [since, until] (caller locks)."""
        self._flush_deferred()
        db = self._db
        # Two queries: SQLite's MIN/MAX index shortcut only applies to a lone aggregate.
        lo = db.execute("SELECT MIN(at) FROM samples WHERE loc_id = ?", (loc_id,)).fetchone()[0]
        hi = db.execute("SELECT MAX(at) FROM samples WHERE loc_id = ?", (loc_id,)).fetchone()[0]
        if lo is None:
            return _empty_columns()
        upper = float(hi) if until is None else min(float(until), float(hi))
        start = max(since, float(lo))
        if upper < start:
            return _empty_columns()
        # Buckets before the newest sample's bucket are sealed (packable); the open one is not.
        first, last = _bucket(start), min(_bucket(upper), _bucket(float(hi)) - 1)
        if last >= first:
            have = db.execute(
                "SELECT COUNT(*) FROM segments WHERE loc_id = ? AND bucket BETWEEN ? AND ?",
                (loc_id, first, last),
            ).fetchone()[0]
            if have < last - first + 1:
                # Packing is an optimisation: if another writer holds the file, read rows.
                with suppress(sqlite3.OperationalError):
                    self._seal(loc_id, first, last)
        parts: list[FloatMatrix] = []
        db.execute("BEGIN")  # one snapshot for the segments and the tail
        try:
            tail_from = start
            if last >= first:
                segs = db.execute(
                    "SELECT n, data FROM segments WHERE loc_id = ? AND bucket BETWEEN ? AND ?"
                    " ORDER BY bucket",
                    (loc_id, first, last),
                ).fetchall()
                if len(segs) == last - first + 1:
                    parts = [
                        np.frombuffer(data, dtype=np.float64).reshape(_NCOL, int(n))
                        for n, data in segs
                    ]
                    tail_from = (last + 1) * _SEGMENT_S
                # else: another process wrote meanwhile; read the whole range as rows.
            sql, params = self._range_sql(_HISTORY_SELECT, loc_id, tail_from, upper)
            parts.append(_rows_to_columns(db.execute(sql, params).fetchall()))
        finally:
            db.execute("COMMIT")
        table = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        at = table[0]
        i, j = np.searchsorted(at, start, "left"), np.searchsorted(at, upper, "right")
        return table[:, i:j]  # each row (column of the history) stays contiguous

    def _cached_columns(self, loc_id: int) -> _Columns:
        """The memory copy of a location (caller locks), read from SQLite if missing or if
        another connection has committed since the last check."""
        assert self._columns is not None
        if not self._private:  # in memory, no other connection can commit
            version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            if version != self._data_version:
                self._columns.clear()
                self._data_version = version
        cols = self._columns.get(loc_id)
        if cols is None:
            cols = _Columns(self._read_columns(loc_id, -np.inf, None))
            self._columns[loc_id] = cols
        return cols

    def _extend_columns(self, stored: Iterable[tuple[int, LocationSample]]) -> None:
        """Append committed samples (with their location ids) to the memory copies they
        extend; drop the copy of a location a sample lands inside of (a replacement or an
        out-of-order write). Values as SQLite's REAL columns hold them."""
        assert self._columns is not None
        for loc_id, s in stored:
            cols = self._columns.get(loc_id)
            if cols is None:
                continue
            if float(s.at) > cols.last_at:
                cols.append(_column_row(s))
            else:
                del self._columns[loc_id]

    def _defer(self, samples: Sequence[LocationSample]) -> bool:
        """Append ``samples`` to the memory copies now and to SQLite later (caller locks), if
        each one extends its location's copy within the open bucket; else change nothing and
        return False (the caller takes the SQL path).

        Why: in a private in-memory store the memory copy answers every history read, so the
        per-tick INSERT transaction (~50 µs, most of a backtest's store cost) only has to
        happen before something reads the samples table. Every such read, and every other
        write to it, calls ``_flush_deferred`` first, so SQL sees the same rows in the same
        order, inserted in one transaction per batch: all of a tick's samples or none. The
        open bucket is never packed, so no segment can be stale meanwhile."""
        assert self._columns is not None
        columns = self._columns
        known = self._loc_ids
        sealed_before = self._sealed_before
        accepted: list[tuple[int, _Columns, LocationSample]] = []
        newest: dict[int, float] = {}
        for s in samples:
            loc_id = known.get((s.group_id, s.location))
            cols = columns.get(loc_id) if loc_id is not None else None
            if loc_id is None or cols is None:
                return False
            at = float(s.at)
            if not at > newest.get(loc_id, cols.last_at) or sealed_before.get(loc_id) != _bucket(
                at
            ):
                return False
            newest[loc_id] = at
            accepted.append((loc_id, cols, s))
        deferred = self._deferred
        for loc_id, cols, s in accepted:
            deferred.append(_sample_row(loc_id, s))
            cols.append(_column_row(s))
        if len(deferred) >= _DEFER_MAX_ROWS:
            self._flush_deferred()
        return True

    def _flush_deferred(self) -> None:
        """Insert the deferred sample rows (one transaction); a no-op when there are none."""
        with self._lock:
            if not self._deferred:
                return
            with self._write() as cur:
                cur.executemany(_INSERT_SAMPLE, self._deferred)
            self._deferred = []

    def _seal(self, loc_id: int, first: int, last: int) -> None:
        """Pack every missing bucket in [first, last] (one write transaction)."""
        with self._write() as cur:
            self._seal_in(cur, loc_id, first, last)

    @staticmethod
    def _seal_in(cur: sqlite3.Cursor, loc_id: int, first: int, last: int) -> None:
        """Pack every missing bucket in [first, last] inside the caller's transaction."""
        have = {
            int(b)
            for (b,) in cur.execute(
                "SELECT bucket FROM segments WHERE loc_id = ? AND bucket BETWEEN ? AND ?",
                (loc_id, first, last),
            ).fetchall()
        }
        missing = [b for b in range(first, last + 1) if b not in have]
        if not missing:
            return
        lo, hi = missing[0] * _SEGMENT_S, (missing[-1] + 1) * _SEGMENT_S
        table = _rows_to_columns(
            cur.execute(
                f"SELECT {_HISTORY_SELECT} FROM samples"  # noqa: S608
                " WHERE loc_id = ? AND at >= ? AND at < ? ORDER BY at",
                (loc_id, lo, hi),
            ).fetchall()
        )
        # Missing buckets need not be adjacent: cut each one by its own edges.
        bounds = np.array(missing, dtype=np.float64) * _SEGMENT_S
        starts = np.searchsorted(table[0], bounds, "left")
        ends = np.searchsorted(table[0], bounds + _SEGMENT_S, "left")
        cur.executemany(
            "INSERT OR REPLACE INTO segments (loc_id, bucket, n, data) VALUES (?, ?, ?, ?)",
            [
                (
                    loc_id,
                    b,
                    int(ends[k] - starts[k]),
                    np.ascontiguousarray(table[:, starts[k] : ends[k]]).tobytes(),
                )
                for k, b in enumerate(missing)
            ],
        )

    def _after_newest(self, loc_id: int, at: float) -> bool:
        """Whether a row at ``at`` is known to come after every stored row of the location,
        so no packed bucket can hold it: a bucket is packed only once a newer bucket has a
        row. Known only for a private (in-memory) database whose memory copy of the location
        exists (it then holds every row); otherwise False (the caller deletes the segment)."""
        if not self._private or self._columns is None:
            return False
        cols = self._columns.get(loc_id)
        return cols is not None and at > cols.last_at

    @staticmethod
    def _invalidate_segments(cur: sqlite3.Cursor, keys: Iterable[tuple[int, float]]) -> None:
        """Drop the packed buckets that the rows at these (loc_id, at) fall into."""
        buckets = sorted({(loc_id, _bucket(at)) for loc_id, at in keys})
        if buckets:
            cur.executemany("DELETE FROM segments WHERE loc_id = ? AND bucket = ?", buckets)

    @staticmethod
    def _range_sql(
        columns: str, loc_id: int, since: float, until: float | None
    ) -> tuple[str, tuple[float, ...]]:
        if until is None:
            return (
                f"SELECT {columns} FROM samples WHERE loc_id = ? AND at >= ? ORDER BY at",  # noqa: S608
                (loc_id, float(since)),
            )
        return (
            f"SELECT {columns} FROM samples WHERE loc_id = ? AND at >= ? AND at <= ?"  # noqa: S608
            " ORDER BY at",
            (loc_id, float(since), float(until)),
        )


def read_demand_samples(
    path: Path,
    *,
    since: float | None = None,
    until: float | None = None,
    group_id: str | None = None,
    location: str | None = None,
) -> pd.DataFrame:
    """Every location's stored sessions in use and waiting, for ``autoscaler history``: read
    through a read-only connection, so a running daemon's file is never migrated or written.
    Columns ``group_id, location, at, in_use, waiting, complete, backfilled``, sorted by
    location then time. A missing, foreign or newer file is a ``StoreError``."""
    if not path.is_file():
        raise StoreError(f"{path}: no history database here (the daemon's state_dir holds it)")
    conditions: list[str] = []
    params: list[float | str] = []
    if since is not None:
        conditions.append("s.at >= ?")
        params.append(float(since))
    if until is not None:
        conditions.append("s.at <= ?")
        params.append(float(until))
    if group_id is not None:
        conditions.append("l.group_id = ?")
        params.append(group_id)
    if location is not None:
        conditions.append("l.location = ?")
        params.append(location)
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    columns = ["group_id", "location", "at", "in_use", "waiting", "complete", "backfilled"]
    # A WAL database with no -wal file has no connection open (SQLite removes it when the
    # last one closes): read it as immutable, which takes no lock and creates no -shm/-wal
    # beside it (a read-only folder is fine). With one, a daemon may be writing: a read-only
    # connection then shares its -shm and sees every committed tick.
    in_use_by_a_writer = path.with_name(path.name + "-wal").exists()
    mode = "mode=ro" if in_use_by_a_writer else "immutable=1"
    try:
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)) as conn:
            version = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]
            if version is None or int(version) > SCHEMA_VERSION:
                raise StoreError(
                    f"{path}: schema version {version} is not one this software reads "
                    f"(1 to {SCHEMA_VERSION}); upgrade the controller"
                )
            rows = conn.execute(
                "SELECT l.group_id, l.location, s.at, s.in_use, s.waiting, s.complete,"  # noqa: S608
                f" s.backfilled FROM samples s JOIN locations l ON l.id = s.loc_id{where}"
                " ORDER BY l.group_id, l.location, s.at",
                params,
            ).fetchall()
    except sqlite3.OperationalError as error:
        if in_use_by_a_writer and "unable to open" in str(error):
            raise StoreError(
                f"{path}: cannot read it beside the running daemon without write access to its "
                "folder (SQLite shares the daemon's -shm file): run this as the daemon's user, "
                "or copy the database and its -wal file elsewhere and give --database the copy"
            ) from None
        raise StoreError(f"{path}: not a readable autoscaler history database ({error})") from None
    except sqlite3.DatabaseError as error:
        raise StoreError(f"{path}: not a readable autoscaler history database ({error})") from None
    return pd.DataFrame.from_records(rows, columns=columns).astype(
        {
            "group_id": "string",
            "location": "string",
            "at": "float64",
            "in_use": "float64",
            "waiting": "float64",
            "complete": "bool",
            "backfilled": "bool",
        }
    )
