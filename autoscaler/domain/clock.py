"""Injected time. Nothing in the package reads the wall clock except ``WallClock``.

All clocks speak epoch seconds (float, UTC). The daemon uses ``WallClock``, the demo and the
emulator a ``ScaledClock``, tests and backtests a ``ManualClock`` they advance themselves.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Current time, epoch seconds."""
        ...


class WallClock:
    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; it never goes backwards unless ``set`` says so."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("ManualClock.advance takes a non-negative number of seconds")
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        """Jump to ``when`` (may go backwards: used to test clock jumps)."""
        self._now = when


class ScaledClock:
    """Simulated time running ``scale`` times faster than the wall clock from ``start``."""

    def __init__(self, scale: float = 1.0, start: float | None = None) -> None:
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        self.scale = scale
        self._wall_origin = time.monotonic()
        self._sim_origin = time.time() if start is None else start

    def now(self) -> float:
        return self._sim_origin + (time.monotonic() - self._wall_origin) * self.scale

    def set_scale(self, scale: float) -> None:
        """Change speed without a jump in simulated time."""
        if scale <= 0:
            raise ValueError("time scale must be > 0")
        current = self.now()
        self._wall_origin = time.monotonic()
        self._sim_origin = current
        self.scale = scale
