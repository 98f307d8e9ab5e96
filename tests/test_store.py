"""HistoryStore: samples to numpy/pandas, retention, restart and crash safety, the decision
journal, key-value state, and use from two threads and two connections."""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.domain.models import CapacitySetting, LocationSample
from autoscaler.store import (
    _MIGRATIONS,
    SCHEMA_VERSION,
    BackfillRow,
    HistoryStore,
    Outcome,
    PendingIntent,
    StoreError,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0
REPO = Path(__file__).resolve().parents[1]


def sample(
    at: float,
    *,
    group: str = "sg-1",
    location: str = "us-east-1",
    in_use: int = 3,
    complete: bool = True,
    setting: CapacitySetting | None = None,
) -> LocationSample:
    return LocationSample(
        group_id=group,
        location=location,
        at=at,
        status="ACTIVE",
        setting=setting or CapacitySetting(always_on=2, target_idle=1, maximum=10),
        allocated=in_use + 2,
        idle=2,
        in_use=in_use,
        waiting=1,
        oldest_waiting_s=4.5,
        arrivals=in_use + 1,
        placement_failures=0,
        departures=1,
        complete=complete,
    )


@pytest.fixture
def store() -> HistoryStore:
    return HistoryStore(":memory:", retention_s=30 * DAY)


# -- samples -------------------------------------------------------------------------------


def test_history_round_trip_to_numpy(store: HistoryStore) -> None:
    # Appended newest first and mixed with another location: read back oldest first.
    store.append_samples(
        [sample(T0 + 60 * i, in_use=i, complete=i != 2) for i in reversed(range(5))]
    )
    store.append_samples([sample(T0 + 30, location="eu-central-1", in_use=99)])

    h = store.history("sg-1", "us-east-1", since=T0)

    assert len(h) == 5
    for name in (
        "at",
        "in_use",
        "waiting",
        "arrivals",
        "placement_failures",
        "departures",
        "allocated",
        "idle",
    ):
        col = getattr(h, name)
        assert col.dtype == np.float64, name
        assert not np.isnan(col).any(), name
    assert h.complete.dtype == np.bool_
    np.testing.assert_array_equal(h.at, T0 + 60 * np.arange(5))
    np.testing.assert_array_equal(h.in_use, np.arange(5.0))
    np.testing.assert_array_equal(h.allocated, np.arange(5.0) + 2)
    np.testing.assert_array_equal(h.arrivals, np.arange(5.0) + 1)
    np.testing.assert_array_equal(h.waiting, np.ones(5))
    np.testing.assert_array_equal(h.complete, [True, True, False, True, True])


def test_history_bounds_are_inclusive_and_unknown_location_is_empty(store: HistoryStore) -> None:
    store.append_samples([sample(T0 + 60 * i, in_use=i) for i in range(10)])

    h = store.history("sg-1", "us-east-1", since=T0 + 120, until=T0 + 300)
    np.testing.assert_array_equal(h.in_use, [2.0, 3.0, 4.0, 5.0])
    assert len(store.history("sg-1", "us-east-1", since=T0 + 601)) == 0
    assert len(store.history("sg-1", "us-east-1", since=T0, until=T0 - 1)) == 0
    assert len(store.history("sg-1", "nowhere", since=T0)) == 0
    assert len(store.history("sg-404", "us-east-1", since=T0)) == 0


def test_history_spanning_many_packed_buckets_matches_rows(store: HistoryStore) -> None:
    # Three days at one-minute ticks: twelve 6-hour buckets, eleven of them packed.
    n = 3 * 1440
    for i in range(n):
        store.append_samples([sample(T0 + 60 * i, in_use=i % 17)])
    since = T0 + 90.0  # mid-bucket start and end
    until = T0 + 60 * (n - 100) + 1

    h = store.history("sg-1", "us-east-1", since=since, until=until)

    expected_at = T0 + 60 * np.arange(2, n - 99)
    np.testing.assert_array_equal(h.at, expected_at)
    np.testing.assert_array_equal(h.in_use, np.arange(2, n - 99) % 17)
    assert h.at.flags.c_contiguous
    assert h.in_use.flags.c_contiguous


def test_write_into_a_packed_bucket_is_seen(store: HistoryStore) -> None:
    for i in range(2 * 1440):
        store.append_samples([sample(T0 + 60 * i, in_use=1)])
    store.history("sg-1", "us-east-1", since=T0)  # everything sealed is packed now

    # A late replacement and a late insert deep inside the first (packed) bucket.
    store.append_samples([sample(T0 + 600, in_use=50), sample(T0 + 630, in_use=60)])

    h = store.history("sg-1", "us-east-1", since=T0, until=T0 + 700)
    np.testing.assert_array_equal(
        h.at, T0 + np.array([0, 60, 120, 180, 240, 300, 360, 420, 480, 540, 600, 630, 660])
    )
    assert h.in_use[10] == 50.0
    assert h.in_use[11] == 60.0


def test_append_is_idempotent_and_replaces(store: HistoryStore) -> None:
    batch = [sample(T0), sample(T0, location="us-west-2"), sample(T0 + 60)]
    store.append_samples(batch)
    store.append_samples(batch)
    assert len(store.history("sg-1", "us-east-1", since=0)) == 2
    assert len(store.history("sg-1", "us-west-2", since=0)) == 1

    store.append_samples([sample(T0, in_use=7)])
    h = store.history("sg-1", "us-east-1", since=0)
    np.testing.assert_array_equal(h.in_use, [7.0, 3.0])
    store.append_samples([])  # nothing to do, no error


def test_history_frame(store: HistoryStore) -> None:
    legacy = CapacitySetting(always_on=4, on_demand=6)
    store.append_samples([sample(T0 + 120, setting=legacy), sample(T0 + 60, in_use=5)])
    store.backfill("sg-1", "us-east-1", [(T0, 2.0, 4.0, 2.0)])

    df = store.history_frame("sg-1", "us-east-1", since=T0)

    assert isinstance(df.index, pd.DatetimeIndex)
    assert str(df.index.tz) == "UTC"
    assert list(df.index) == [pd.Timestamp(T0 + k * 60, unit="s", tz="UTC") for k in range(3)]
    assert df.index[0] == pd.Timestamp("2026-01-01T00:00:00Z")
    assert df["in_use"].dtype == np.float64
    assert df["complete"].dtype == np.bool_
    assert df["on_demand"].dtype == "Int64"
    assert df["in_use"].tolist() == [2.0, 5.0, 3.0]
    assert df["backfilled"].tolist() == [True, False, False]
    assert df["always_on"].isna().tolist() == [True, False, False]
    assert df["on_demand"].iloc[2] == 6
    assert pd.isna(df["on_demand"].iloc[1])
    assert df["status"].iloc[1] == "ACTIVE"
    assert not df[["in_use", "idle", "allocated", "arrivals", "waiting"]].isna().any().any()

    empty = store.history_frame("sg-1", "nowhere", since=T0)
    assert len(empty) == 0
    assert isinstance(empty.index, pd.DatetimeIndex)


def test_locations_latest_time_and_latest_sample(store: HistoryStore) -> None:
    assert store.locations() == []
    assert store.latest_sample_time("sg-1") is None
    store.append_samples([sample(T0, location="us-west-2"), sample(T0 + 60)])
    store.append_samples([sample(T0 + 30, group="sg-2")])

    assert store.locations() == [
        ("sg-1", "us-east-1"),
        ("sg-1", "us-west-2"),
        ("sg-2", "us-east-1"),
    ]
    assert store.latest_sample_time("sg-1") == T0 + 60
    assert store.latest_sample_time("sg-2") == T0 + 30

    legacy = CapacitySetting(always_on=4, on_demand=6)
    store.append_samples([sample(T0 + 120, setting=legacy, complete=False)])
    store.backfill("sg-1", "us-east-1", [(T0 + 180, 1.0, 2.0, 1.0)])
    assert store.latest_sample_time("sg-1") == T0 + 180
    # The newest sample the controller itself took, restored exactly.
    assert store.latest_sample("sg-1", "us-east-1") == sample(
        T0 + 120, setting=legacy, complete=False
    )
    assert store.latest_sample("sg-1", "nowhere") is None


def test_prune_keeps_the_retention_window() -> None:
    with HistoryStore(":memory:", retention_s=DAY) as store:
        for i in range(3 * 24):  # hourly for three days, two locations
            store.append_samples(
                [sample(T0 + 3600 * i), sample(T0 + 3600 * i, location="us-west-2")]
            )
        store.append_samples([sample(T0, location="ap-northeast-1")])
        now = T0 + 3 * DAY

        deleted = store.prune(now)

        assert deleted == 2 * 48 + 1
        h = store.history("sg-1", "us-east-1", since=0)
        np.testing.assert_array_equal(h.at, T0 + 3600 * np.arange(48, 72))
        assert ("sg-1", "ap-northeast-1") not in store.locations()
        assert store.prune(now) == 0
        # The location comes back if sampled again.
        store.append_samples([sample(now, location="ap-northeast-1")])
        assert len(store.history("sg-1", "ap-northeast-1", since=0)) == 1


def test_backfill_marks_complete_derives_flows_and_never_overwrites(
    store: HistoryStore,
) -> None:
    store.append_samples([sample(T0 + 120, in_use=9)])
    rows: list[BackfillRow | tuple[float, float, float, float]] = [
        BackfillRow(at=T0 + 180, in_use=4.0, allocated=6.0, idle=2.0),
        (T0, 2.0, 4.0, 2.0),
        (T0 + 60, 5.0, 6.0, 1.0),
        (T0 + 120, 1.0, 1.0, 0.0),  # a live sample exists: kept
    ]

    assert store.backfill("sg-1", "us-east-1", rows) == 3
    assert store.backfill("sg-1", "us-east-1", rows) == 0

    h = store.history("sg-1", "us-east-1", since=0)
    np.testing.assert_array_equal(h.at, T0 + np.array([0, 60, 120, 180]))
    np.testing.assert_array_equal(h.in_use, [2.0, 5.0, 9.0, 4.0])
    assert h.complete.all()
    # Net change of in_use as lower-bound flows, next to the live row too (which keeps its
    # own flows: arrivals 10, departures 1).
    np.testing.assert_array_equal(h.arrivals, [0.0, 3.0, 10.0, 0.0])
    np.testing.assert_array_equal(h.departures, [0.0, 0.0, 1.0, 5.0])
    np.testing.assert_array_equal(h.waiting, [0.0, 0.0, 1.0, 0.0])
    assert store.backfill("sg-1", "us-east-1", []) == 0


_op = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 40), st.integers(0, 9)),
    st.tuples(st.just("backfill"), st.integers(0, 40), st.integers(0, 9)),
    st.tuples(st.just("read"), st.integers(0, 40), st.integers(0, 40)),
    st.tuples(st.just("prune"), st.integers(0, 40), st.just(0)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=25))
def test_history_equals_a_plain_model_under_any_writes(
    ops: list[tuple[str, int, int]],
) -> None:
    """Packed buckets are a cache: whatever the order of writes, reads equal the rows."""
    step = 7200.0  # 2 h: a 6 h bucket holds three slots; 41 slots span 14 buckets
    retention = 10 * step
    model: dict[float, float] = {}
    with HistoryStore(":memory:", retention_s=retention) as store:
        for op, a, b in ops:
            at = T0 + a * step
            if op == "append":
                store.append_samples([sample(at, in_use=b)])
                model[at] = float(b)
            elif op == "backfill":
                store.backfill("sg-1", "us-east-1", [(at, float(b), float(b), 0.0)])
                model.setdefault(at, float(b))
            elif op == "prune":
                store.prune(at)
                model = {k: v for k, v in model.items() if k >= at - retention}
            else:
                since, until = T0 + min(a, b) * step, T0 + max(a, b) * step
                h = store.history("sg-1", "us-east-1", since=since, until=until)
                want = sorted((k, v) for k, v in model.items() if since <= k <= until)
                assert h.at.tolist() == [k for k, _ in want]
                assert h.in_use.tolist() == [v for _, v in want]
        h = store.history("sg-1", "us-east-1", since=0)
        assert h.in_use.tolist() == [v for _, v in sorted(model.items())]


# -- files, restarts, crashes ---------------------------------------------------------------


def test_restart_persists_everything(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.sqlite"
    with HistoryStore(path, retention_s=DAY) as store:
        assert store.journal_mode == "wal"
        assert store.schema_version == SCHEMA_VERSION
        for i in range(800):  # crosses a bucket, so part is packed
            store.append_samples([sample(T0 + 60 * i, in_use=i % 5)])
        store.record_intent("sg-1", T0, "d-1", '{"always_on": 4}')
        store.record_outcome("d-1", "applied", "ok")
        store.record_intent("sg-1", T0 + 60, "d-2", '{"always_on": 6}')
        store.put_state("guard", '{"window": [1, 2]}')

    with HistoryStore(path, retention_s=DAY) as store:
        assert store.journal_mode == "wal"
        h = store.history("sg-1", "us-east-1", since=0)
        np.testing.assert_array_equal(h.in_use, np.arange(800) % 5)
        assert store.last_applied("sg-1") == (T0, '{"always_on": 4}')
        assert [p.decision_id for p in store.pending_intents()] == ["d-2"]
        assert store.get_state("guard") == '{"window": [1, 2]}'
        # Migrations ran once: reopening records no new version.
        rows = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchall()
        assert rows == [(v,) for v in range(1, SCHEMA_VERSION + 1)]


def test_late_starts_round_trip_and_unknown_reads_as_nan(store: HistoryStore) -> None:
    measured = dataclasses.replace(sample(T0), late_starts=2)
    unknown = sample(T0 + 60)  # late_starts None: not measured
    store.append_samples([measured, unknown])
    h = store.history("sg-1", "us-east-1", since=0)
    assert h.late_starts is not None
    assert h.late_starts[0] == 2.0
    assert np.isnan(h.late_starts[1])
    assert store.latest_sample("sg-1", "us-east-1") == unknown
    frame = store.history_frame("sg-1", "us-east-1", since=0)
    assert frame["late_starts"].iloc[0] == 2.0
    assert np.isnan(frame["late_starts"].iloc[1])


def test_a_version_1_file_gains_late_starts_as_unknown(tmp_path: Path) -> None:
    # A database written before late starts were measured: its rows must read as "not
    # measured" (NaN), never as "every session started at once", and its packed buckets (one
    # column fewer) must be rebuilt rather than misread.
    path = tmp_path / "v1.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)")
        for statement in _MIGRATIONS[0]:
            db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (1)")
        db.execute("INSERT INTO locations VALUES (1, 'sg-1', 'us-east-1')")
        for i in range(800):  # more than one 6-hour bucket
            db.execute(
                "INSERT INTO samples VALUES (1, ?, 'ACTIVE', 2, 1, 10, NULL, 5, 2, 3, 1, 4.5,"
                " 4, 0, 1, 1, 0)",
                (T0 + 60 * i,),
            )
        old_packed = np.zeros((9, 360)).tobytes()  # a v1 segment: 9 columns
        db.execute("INSERT INTO segments VALUES (1, ?, 360, ?)", (int(T0 // 21_600), old_packed))
    db.close()
    with HistoryStore(path, retention_s=30 * DAY) as store:
        assert store.schema_version == SCHEMA_VERSION
        h = store.history("sg-1", "us-east-1", since=0)
        assert len(h) == 800
        assert (h.in_use == 3.0).all()
        assert h.late_starts is not None
        assert np.isnan(h.late_starts).all()
        store.append_samples([dataclasses.replace(sample(T0 + 60 * 800), late_starts=1)])
        h = store.history("sg-1", "us-east-1", since=0)
        assert h.late_starts is not None
        assert h.late_starts[-1] == 1.0


@pytest.mark.parametrize("kind", ["file", "memory", "memory-cached"])
def test_miss_budgets_round_trip_through_every_read_path(kind: str, tmp_path: Path) -> None:
    # Rows over three 6-hour buckets, so packed buckets, the open tail, the column cache and
    # the deferred inserts all carry the budgets; None reads as NaN (none in force).
    path: Path | str = tmp_path / "f.sqlite" if kind == "file" else ":memory:"
    rows = [
        dataclasses.replace(
            sample(T0 + 60 * i),
            miss_budget=None if i % 7 == 0 else 0.005 + i / 1e6,
        )
        for i in range(1000)
    ]
    with HistoryStore(path, retention_s=30 * DAY, cache_columns=kind == "memory-cached") as st_:
        st_.append_samples(rows[:10])
        # A read now: a cached store then keeps the location's memory copy, which the
        # appends below extend (deferred inserts) instead of being filled from SQLite later.
        assert len(st_.history("sg-1", "us-east-1", since=0)) == 10
        for i in range(10, 1000, 10):  # ten rows per call, the tick shape
            st_.append_samples(rows[i : i + 10])
        h = st_.history("sg-1", "us-east-1", since=0)
        assert h.miss_budget is not None
        want = np.array([np.nan if r.miss_budget is None else r.miss_budget for r in rows])
        np.testing.assert_array_equal(h.miss_budget, want)
        latest = st_.latest_sample("sg-1", "us-east-1")
        assert latest == rows[-1]
        frame = st_.history_frame("sg-1", "us-east-1", since=0)
        np.testing.assert_array_equal(frame["miss_budget"].to_numpy(), want)


def test_a_version_2_file_gains_miss_budgets_as_unknown(tmp_path: Path) -> None:
    # A database written before budgets were recorded: its rows read as "no budget in force"
    # (NaN), and its packed buckets (one column fewer) are rebuilt rather than misread.
    path = tmp_path / "v2.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY)")
        for version in (1, 2):
            for statement in _MIGRATIONS[version - 1]:
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?)", (version,))
        db.execute("INSERT INTO locations VALUES (1, 'sg-1', 'us-east-1')")
        for i in range(800):
            db.execute(
                "INSERT INTO samples VALUES (1, ?, 'ACTIVE', 2, 1, 10, NULL, 5, 2, 3, 1, 4.5,"
                " 4, 0, 1, 1, 0, 0)",
                (T0 + 60 * i,),
            )
        old_packed = np.zeros((10, 360)).tobytes()  # a v2 segment: 10 columns
        db.execute("INSERT INTO segments VALUES (1, ?, 360, ?)", (int(T0 // 21_600), old_packed))
    db.close()
    with HistoryStore(path, retention_s=30 * DAY) as store:
        assert store.schema_version == SCHEMA_VERSION == 3
        h = store.history("sg-1", "us-east-1", since=0)
        assert len(h) == 800
        assert (h.in_use == 3.0).all()
        assert h.late_starts is not None
        assert (h.late_starts == 0.0).all()
        assert h.miss_budget is not None
        assert np.isnan(h.miss_budget).all()
        store.append_samples([dataclasses.replace(sample(T0 + 60 * 800), miss_budget=0.01)])
        h = store.history("sg-1", "us-east-1", since=0)
        assert h.miss_budget is not None
        assert h.miss_budget[-1] == 0.01


def test_a_file_from_newer_software_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    HistoryStore(path, retention_s=DAY).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    db.close()
    with pytest.raises(StoreError, match="newer"):
        HistoryStore(path, retention_s=DAY)


def test_connection_settings(store: HistoryStore, tmp_path: Path) -> None:
    # Foreign keys, busy timeout and synchronous are per connection: check ours.
    db = store._db
    assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    with pytest.raises(sqlite3.IntegrityError):
        db.execute("INSERT INTO outcomes VALUES ('no-such-intent', 'applied', '')")
    with HistoryStore(tmp_path / "s.sqlite", retention_s=DAY) as on_disk:
        assert on_disk._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        on_disk.record_intent("sg-1", T0, "d", "{}")
        assert on_disk._db.execute("PRAGMA synchronous").fetchone()[0] == 1  # back to NORMAL


def test_closed_store_refuses_use_and_bad_retention_is_rejected() -> None:
    store = HistoryStore(":memory:", retention_s=DAY)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.get_state("k")
    with pytest.raises(ValueError, match="retention_s"):
        HistoryStore(":memory:", retention_s=0)


def _child_script(path: Path, body: str) -> str:
    """A Python program that opens the store at ``path`` and then runs ``body``."""
    return textwrap.dedent(
        f"""
        import os, signal
        from autoscaler.domain.models import CapacitySetting, LocationSample
        from autoscaler.store import HistoryStore
        store = HistoryStore({str(path)!r}, retention_s=86400.0)
        def s(at, loc="us-east-1"):
            return LocationSample("sg-1", loc, at, "ACTIVE", CapacitySetting(2, 1, 10),
                                  5, 2, 3, 0, 0.0, 1, 0, 1)
        """
    ) + textwrap.dedent(body)


def _run_child(path: Path, body: str) -> subprocess.CompletedProcess[str]:
    script = _child_script(path, body)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_crash_after_intent_leaves_it_pending(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    done = _run_child(
        path,
        """
        store.record_intent("sg-1", 100.0, "d-ok", '{"a": 1}')
        store.record_outcome("d-ok", "applied", "")
        store.record_intent("sg-1", 160.0, "d-crash", '{"a": 2}')
        os._exit(0)  # dies between the intent and the mutating call: no close, no outcome
        """,
    )
    assert done.returncode == 0, done.stderr

    with HistoryStore(path, retention_s=DAY) as store:
        assert store.pending_intents() == [PendingIntent("d-crash", "sg-1", 160.0, '{"a": 2}')]
        assert store.last_applied("sg-1") == (100.0, '{"a": 1}')
        # The controller reconciles it; replaying the same intent changes nothing.
        assert store.record_intent("sg-1", 160.0, "d-crash", '{"a": 2}') is False
        assert store.record_outcome("d-crash", Outcome.ABANDONED, "state already matched")
        assert store.pending_intents() == []
        assert store.last_applied("sg-1") == (100.0, '{"a": 1}')


def test_sigkill_inside_a_transaction_rolls_it_back(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    # The batch's iterator kills the process after the transaction has begun and written.
    done = _run_child(
        path,
        """
        store.append_samples([s(0.0), s(0.0, "us-west-2")])
        store.put_state("k", "before")
        class Dying(list):
            def __iter__(self):
                yield from list.__iter__(self)
                os.kill(os.getpid(), signal.SIGKILL)
        store.append_samples(Dying([s(60.0), s(60.0, "us-west-2"), s(60.0, "eu-west-1")]))
        """,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr

    with HistoryStore(path, retention_s=DAY) as store:
        assert store.locations() == [("sg-1", "us-east-1"), ("sg-1", "us-west-2")]
        assert store.history("sg-1", "us-east-1", since=-1).at.tolist() == [0.0]
        assert store.get_state("k") == "before"
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_sigkill_during_continuous_writes_leaves_whole_ticks(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    script_body = """
        print("ready", flush=True)
        i = 0
        while True:
            store.append_samples([s(60.0 * i, loc) for loc in ("a", "b", "c", "d")])
            store.put_state("tick", str(i))
            i += 1
        """
    proc = subprocess.Popen(
        [sys.executable, "-c", _child_script(path, script_body)],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.4)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()

    with HistoryStore(path, retention_s=DAY) as store:
        assert store._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        per_loc = [store.history("sg-1", loc, since=-1).at.tolist() for loc in "abcd"]
        assert len(per_loc[0]) > 10
        assert per_loc[0] == per_loc[1] == per_loc[2] == per_loc[3]  # whole ticks only
        assert per_loc[0] == [60.0 * i for i in range(len(per_loc[0]))]
        # The state write after each tick is its own transaction: last or one behind.
        assert int(store.get_state("tick") or -1) in (len(per_loc[0]) - 2, len(per_loc[0]) - 1)


# -- decision journal ------------------------------------------------------------------------


def test_journal_intents_outcomes_and_last_applied(store: HistoryStore) -> None:
    assert store.last_applied("sg-1") is None
    assert store.record_intent("sg-1", T0, "a", '{"n": 1}') is True
    assert store.record_intent("sg-1", T0, "a", '{"n": "other"}') is False  # replay: no-op
    store.record_intent("sg-1", T0 + 60, "b", '{"n": 2}')
    store.record_intent("sg-1", T0 + 120, "c", '{"n": 3}')
    store.record_intent("sg-2", T0 + 30, "x", '{"n": 9}')

    assert [p.decision_id for p in store.pending_intents()] == ["a", "x", "b", "c"]
    assert store.record_outcome("a", "applied", "UpdateStreamGroup ok") is True
    assert store.record_outcome("a", "applied") is False  # same outcome again: no-op
    store.record_outcome("b", Outcome.APPLIED)
    store.record_outcome("c", "failed", "ThrottlingException")

    assert store.last_applied("sg-1") == (T0 + 60, '{"n": 2}')  # failed "c" does not count
    assert store.last_applied("sg-2") is None
    assert store.outcome("a") == (Outcome.APPLIED, "UpdateStreamGroup ok")
    assert store.outcome("x") is None
    assert [p.decision_id for p in store.pending_intents()] == ["x"]

    with pytest.raises(StoreError, match="already applied"):
        store.record_outcome("a", "failed")
    with pytest.raises(StoreError, match="no intent"):
        store.record_outcome("never-recorded", "applied")
    with pytest.raises(ValueError, match="maybe"):
        store.record_outcome("x", "maybe")
    assert store.outcome("a") == (Outcome.APPLIED, "UpdateStreamGroup ok")


def test_prune_keeps_pending_intents_and_each_groups_last_applied() -> None:
    with HistoryStore(":memory:", retention_s=DAY) as store:
        for k, at in enumerate((T0, T0 + 60, T0 + 120)):
            store.record_intent("sg-1", at, f"old-{k}", str(k))
            store.record_outcome(f"old-{k}", "applied")
        store.record_intent("sg-1", T0 + 180, "old-failed", "f")
        store.record_outcome("old-failed", "failed")
        store.record_intent("sg-1", T0 + 240, "old-pending", "p")

        store.prune(T0 + 10 * DAY)

        assert store.outcome("old-0") is None
        assert store.outcome("old-1") is None
        assert store.outcome("old-failed") is None
        assert store.last_applied("sg-1") == (T0 + 120, "2")
        assert [p.decision_id for p in store.pending_intents()] == ["old-pending"]


# -- key-value state -------------------------------------------------------------------------


def test_state_put_get_overwrite_delete(store: HistoryStore) -> None:
    assert store.get_state("fence") is None
    store.put_state("fence", "1")
    store.put_state("fence", "2")
    assert store.get_state("fence") == "2"
    store.put_states({"a": "x", "b": "y"})
    assert (store.get_state("a"), store.get_state("b")) == ("x", "y")
    store.delete_state("a")
    assert store.get_state("a") is None


def test_put_states_is_all_or_nothing(store: HistoryStore) -> None:
    store.put_state("a", "old")

    class Boom(dict[str, str]):
        def items(self) -> Iterator[tuple[str, str]]:  # type: ignore[override]
            yield ("a", "new")
            raise RuntimeError("half way")

    with pytest.raises(RuntimeError, match="half way"):
        store.put_states(Boom())
    assert store.get_state("a") == "old"


# -- concurrency -----------------------------------------------------------------------------


def test_two_threads_share_one_store(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    with HistoryStore(tmp_path / "s.sqlite", retention_s=30 * DAY) as store:

        def work(location: str) -> None:
            try:
                for i in range(300):
                    store.append_samples([sample(T0 + 60 * i, location=location, in_use=i)])
                    store.put_state(location, str(i))
                    if i % 25 == 0:
                        h = store.history("sg-1", location, since=T0)
                        assert len(h) == i + 1
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(loc,)) for loc in ("a", "b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)

        assert errors == []
        for loc in ("a", "b"):
            np.testing.assert_array_equal(
                store.history("sg-1", loc, since=0).in_use, np.arange(300.0)
            )
            assert store.get_state(loc) == "299"


def test_a_second_connection_sees_writes_and_invalidations(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with (
        HistoryStore(path, retention_s=30 * DAY) as writer,
        HistoryStore(path, retention_s=30 * DAY) as reader,
    ):
        for i in range(2 * 360):  # two 6-hour buckets at one-minute ticks
            writer.append_samples([sample(T0 + 60 * i, in_use=1)])
        assert reader.history("sg-1", "us-east-1", since=0).in_use.sum() == 720.0

        writer.append_samples([sample(T0 + 60, in_use=101)])  # inside the packed bucket
        assert reader.history("sg-1", "us-east-1", since=0).in_use.sum() == 820.0
        writer.put_state("k", "v")
        assert reader.get_state("k") == "v"


def test_reads_fall_back_to_rows_while_another_process_writes(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with HistoryStore(path, retention_s=30 * DAY) as writer:
        for i in range(2 * 360):
            writer.append_samples([sample(T0 + 60 * i, in_use=1)])
        writer.append_samples([sample(T0 + 60, in_use=101)])  # unpacks the first bucket
    with HistoryStore(path, retention_s=30 * DAY, busy_timeout_s=0.05) as reader:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # holds the write lock: the reader cannot pack
        try:
            h = reader.history("sg-1", "us-east-1", since=0)
            first_bucket = int(T0 // 21_600)
            packed = other.execute(
                "SELECT COUNT(*) FROM segments WHERE bucket = ?", (first_bucket,)
            ).fetchone()[0]
            assert packed == 0  # the read really took the row path
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert len(h) == 720
        assert h.in_use.sum() == 820.0
        assert reader.history("sg-1", "us-east-1", since=0).in_use.sum() == 820.0
