"""An in-memory store with the column cache skips invalidating packed buckets it knows are
empty; every packed bucket must still equal its rows.

Why: a bucket is packed only once a newer bucket has a row, so a row after the newest stored
one cannot fall into a packed bucket, and the in-memory database (nobody else can open it)
knows its newest row from the column cache. If that reasoning were wrong, a stale packed
bucket would survive and a later read without the cache (or after the cache is dropped) would
return old values. Checked after any sequence of in-order and out-of-order appends,
backfills, prunes and reads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from autoscaler.domain.models import CapacitySetting, LocationSample
from autoscaler.store import _NCOL, HistoryStore

T0 = 1_767_225_600.0
STEP = 5400.0  # 1.5 h: four slots per 6 h bucket
SETTING = CapacitySetting(always_on=2, target_idle=1, maximum=10)


def _sample(at: float, in_use: int) -> LocationSample:
    return LocationSample(
        group_id="sg-1",
        location="us-east-1",
        at=at,
        status="ACTIVE",
        setting=SETTING,
        allocated=in_use + 2,
        idle=2,
        in_use=in_use,
        waiting=0,
        oldest_waiting_s=0.0,
        arrivals=1,
        placement_failures=0,
        departures=1,
    )


def _segments_equal_rows(store: HistoryStore) -> None:
    db = store._db  # the packed buckets themselves
    for loc_id, bucket, n, data in db.execute("SELECT loc_id, bucket, n, data FROM segments"):
        packed = np.frombuffer(data, dtype=np.float64).reshape(_NCOL, int(n))
        lo, hi = bucket * 21_600.0, (bucket + 1) * 21_600.0
        rows = db.execute(
            "SELECT at, in_use FROM samples WHERE loc_id = ? AND at >= ? AND at < ? ORDER BY at",
            (loc_id, lo, hi),
        ).fetchall()
        assert packed[0].tolist() == [r[0] for r in rows]
        assert packed[1].tolist() == [float(r[1]) for r in rows]


_op = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 30), st.integers(0, 9)),
    st.tuples(st.just("next"), st.integers(1, 6), st.integers(0, 9)),  # after the newest
    st.tuples(st.just("backfill"), st.integers(0, 30), st.integers(0, 9)),
    st.tuples(st.just("read"), st.integers(0, 30), st.just(0)),
    st.tuples(st.just("prune"), st.integers(0, 30), st.just(0)),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=30))
def test_packed_buckets_equal_their_rows_in_a_private_cached_store(
    ops: list[tuple[str, int, int]],
) -> None:
    model: dict[float, float] = {}
    retention = 12 * STEP
    newest = T0
    with HistoryStore(":memory:", retention_s=retention, cache_columns=True) as store:
        for op, a, b in ops:
            at = newest + a * STEP if op == "next" else T0 + a * STEP
            if op in ("append", "next"):
                store.append_samples([_sample(at, b)])
                model[at] = float(b)
            elif op == "backfill":
                store.backfill("sg-1", "us-east-1", [(at, float(b), float(b), 0.0)])
                model.setdefault(at, float(b))
            elif op == "prune":
                store.prune(at)
                model = {k: v for k, v in model.items() if k >= at - retention}
            else:
                since = T0 + a * STEP
                h = store.history("sg-1", "us-east-1", since=since)
                assert h.in_use.tolist() == [v for k, v in sorted(model.items()) if k >= since]
            newest = max(model, default=T0)
            _segments_equal_rows(store)
        store._columns = None  # the SQLite path: packed buckets and rows
        h = store.history("sg-1", "us-east-1", since=0)
        assert h.in_use.tolist() == [v for _, v in sorted(model.items())]


def test_only_a_file_store_checks_for_other_writers(tmp_path: Path) -> None:
    for path, checks in ((tmp_path / "h.db", True), (":memory:", False)):
        with HistoryStore(path, retention_s=3600.0, cache_columns=True) as store:
            store.append_samples([_sample(T0, 1)])
            sent: list[str] = []
            store._db.set_trace_callback(sent.append)
            assert store.history("sg-1", "us-east-1", since=0).in_use.tolist() == [1.0]
            assert ("PRAGMA data_version" in sent) is checks
