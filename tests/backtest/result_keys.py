"""The columns of a scored backtest result, in order: pinned once here for the scoring test
(``Result.to_dict``) and the runner's report rows (which are those dicts). The issue's
shape, then ``idle`` (where the overhead went) and the policy's failures (the decisions a
fallback or a hold made in its place)."""

from __future__ import annotations

RESULT_KEYS = [
    "policy",
    "params",
    "cost",
    "bound",
    "cost_ratio",
    "instant",
    "cold",
    "failed",
    "p95_wait_s",
    "p99_wait_s",
    "updates",
    "meets_slo",
    "wall_s",
    "idle",
    "decisions",
    "fallback_decisions",
    "fallback_reason",
]
