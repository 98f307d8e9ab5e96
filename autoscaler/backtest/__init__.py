"""Backtest: replay real (or synthetic) demand through the controller in virtual time.

``traces`` reads a user's CSV into a clean concurrency series (or a session log),
``synthetic`` makes a diurnal series when no trace is given, ``sessions`` turns a series into
session arrivals and durations as ``shared/docs/benchmark.md`` prescribes, and ``scoring``
computes the in-use bound and the scored result independently of the simulator.
"""

from __future__ import annotations
