"""A private (in-memory) cached store defers its sample INSERTs; every read must still see
exactly what a store that inserts at once sees.

Why: the backtest's store appends one tick's samples per simulated minute and reads them back
from its memory copy, so the INSERT is only needed before something reads (or writes) the
samples table with SQL. If a read path forgot to insert the deferred rows first, it would
answer with old data; these tests compare every public read of the deferring store with a
plain file store fed the same operations.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from autoscaler.domain.models import CapacitySetting, LocationSample
from autoscaler.store import HistoryStore

T0 = 1_767_225_600.0
STEP = 1800.0  # twelve slots per 6 h bucket: most appends stay in the open bucket
LOCATIONS = ("us-east-1", "eu-west-1")


def _sample(location: str, at: float, in_use: int) -> LocationSample:
    return LocationSample(
        group_id="sg-1",
        location=location,
        at=at,
        status="ACTIVE",
        setting=CapacitySetting(always_on=2, target_idle=1, maximum=10 + in_use),
        allocated=in_use + 2,
        idle=2,
        in_use=in_use,
        waiting=in_use % 3,
        oldest_waiting_s=float(in_use),
        arrivals=1,
        placement_failures=0,
        departures=1,
        complete=in_use % 4 != 0,
    )


def _reads(store: HistoryStore) -> list[object]:
    out: list[object] = []
    for loc in LOCATIONS:  # first: the memory copy, while rows may still be deferred
        h = store.history("sg-1", loc, since=0)
        out.append((h.at.tolist(), h.in_use.tolist(), h.waiting.tolist(), h.complete.tolist()))
    out += [store.latest_sample_time("sg-1"), store.locations()]
    for loc in LOCATIONS:
        out.append(store.latest_sample("sg-1", loc))
        frame = store.history_frame("sg-1", loc, since=0)
        out.append(frame.reset_index(drop=True))
    return out


def _same(a: list[object], b: list[object]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if isinstance(x, pd.DataFrame):
            assert isinstance(y, pd.DataFrame)
            pd.testing.assert_frame_equal(x, y)
        else:
            assert x == y


_op = st.one_of(
    st.tuples(st.just("next"), st.integers(1, 3), st.integers(0, 9)),  # after the newest
    st.tuples(st.just("append"), st.integers(0, 40), st.integers(0, 9)),  # anywhere
    st.tuples(st.just("backfill"), st.integers(0, 40), st.integers(0, 9)),
    st.tuples(st.just("read"), st.just(0), st.just(0)),
    st.tuples(st.just("history"), st.just(0), st.just(0)),
    st.tuples(st.just("prune"), st.integers(0, 40), st.just(0)),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=25))
# The case deferral is for: a copy in memory, then an append after it in the open bucket.
@example(ops=[("append", 0, 1), ("history", 0, 0), ("next", 1, 2), ("read", 0, 0)])
def test_deferred_inserts_are_invisible_to_every_read(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int, int]]
) -> None:
    path = tmp_path_factory.mktemp("store") / "h.db"
    retention = 30 * STEP
    newest = T0
    with (
        HistoryStore(":memory:", retention_s=retention, cache_columns=True) as deferring,
        HistoryStore(path, retention_s=retention) as plain,
    ):
        for op, a, b in ops:
            at = newest + a * STEP if op == "next" else T0 + a * STEP
            if op in ("next", "append"):
                batch = [_sample(loc, at, b + k) for k, loc in enumerate(LOCATIONS)]
                deferring.append_samples(batch)
                plain.append_samples(batch)
                newest = max(newest, at)
            elif op == "backfill":
                row = [(at, float(b), float(b + 2), 2.0)]
                deferring.backfill("sg-1", LOCATIONS[0], row)
                plain.backfill("sg-1", LOCATIONS[0], row)
                newest = max(newest, at)
            elif op == "prune":
                assert deferring.prune(at) == plain.prune(at)
            elif op == "history":  # builds the memory copies that later appends extend
                for loc in LOCATIONS:
                    h = deferring.history("sg-1", loc, since=0)
                    assert h.in_use.tolist() == plain.history("sg-1", loc, since=0).in_use.tolist()
            else:
                _same(_reads(deferring), _reads(plain))
        _same(_reads(deferring), _reads(plain))
        # And the rows themselves, once SQL has been asked for them.
        sql = "SELECT * FROM samples ORDER BY loc_id, at"
        assert deferring._db.execute(sql).fetchall() == plain._db.execute(sql).fetchall()


def test_in_order_appends_within_a_bucket_wait_for_a_read() -> None:
    with HistoryStore(":memory:", retention_s=86400.0, cache_columns=True) as store:
        store.append_samples([_sample(LOCATIONS[0], T0, 1)])  # first: the SQL path
        store.history("sg-1", LOCATIONS[0], since=0)  # the memory copy now exists
        sent: list[str] = []
        store._db.set_trace_callback(sent.append)
        for k in range(1, 6):
            store.append_samples([_sample(LOCATIONS[0], T0 + 60.0 * k, k)])
        assert sent == []  # no statement at all: deferred
        h = store.history("sg-1", LOCATIONS[0], since=0)
        assert h.in_use.tolist() == [1.0, 1.0, 2.0, 3.0, 4.0, 5.0]
        assert store.latest_sample_time("sg-1") == T0 + 300.0
        assert any(s.startswith("INSERT OR REPLACE INTO samples") for s in sent)
