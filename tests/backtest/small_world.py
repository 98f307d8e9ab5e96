"""A small backtest world shared by the runner's tests: a target-tracking policy file and a
synthetic one-series concurrency trace written as CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from autoscaler.backtest.synthetic import synthetic_trace

TT_POLICY = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: tt}
spec:
  streamGroups: {ids: [sg-placeholder]}
  defaults: {maxCapacity: 10}
  policy:
    plugin: target-tracking
    params: {targetUtilization: 0.7, minIdle: 2}
"""


def write_trace_csv(path: Path, *, days: float = 0.125) -> Path:
    """A synthetic diurnal trace of ``days`` as series ``game`` (seed 2), written to ``path``."""
    trace = synthetic_trace(peak=500, days=days, step_s=600, seed=2)
    stamps = pd.to_datetime(trace.times, unit="s", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")
    pd.DataFrame({"timestamp": stamps, "game": trace.values}).to_csv(path, index=False)
    return path
