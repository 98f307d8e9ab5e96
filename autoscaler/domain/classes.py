"""Stream classes, their tenancy (slots per host) and operating system.

Capacity values sent to GameLift Streams must be whole multiples of the class's tenancy, so
every stage that produces a capacity number needs this table. An unknown (future) class is
treated as tenancy 1, Linux, and flagged so the caller can log it once.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StreamClassInfo:
    name: str
    tenancy: int
    windows: bool
    known: bool = True


def _linux(name: str, tenancy: int) -> StreamClassInfo:
    return StreamClassInfo(name=name, tenancy=tenancy, windows=False)


def _windows(name: str) -> StreamClassInfo:
    return StreamClassInfo(name=name, tenancy=1, windows=True)


STREAM_CLASSES: dict[str, StreamClassInfo] = {
    info.name: info
    for info in (
        _linux("gen6n_small", 12),
        _linux("gen6n_medium", 4),
        _linux("gen4n_high", 2),
        _linux("gen5n_high", 2),
        _linux("gen6n_high", 2),
        _linux("gen4n_ultra", 1),
        _linux("gen5n_ultra", 1),
        _linux("gen6n_ultra", 1),
        _linux("gen6n_pro", 1),
        _linux("gen6e_pro", 1),
        _windows("gen4n_win2022"),
        _windows("gen5n_win2022"),
        _windows("gen6n_ultra_win2022"),
        _windows("gen6n_pro_win2022"),
        _windows("gen6n_small_win2022"),
        _windows("gen6n_medium_win2022"),
        _windows("gen6e_pro_win2022"),
    )
}


def unknown_stream_class(name: str) -> str:
    """The problem a command reports for a class it does not know, with the valid ones."""
    return f"unknown stream class {name!r} (known: {', '.join(sorted(STREAM_CLASSES))})"


def stream_class_info(name: str) -> StreamClassInfo:
    """The class's facts; an unknown class gets tenancy 1 and ``known=False``."""
    info = STREAM_CLASSES.get(name)
    if info is not None:
        return info
    return StreamClassInfo(name=name, tenancy=1, windows=name.endswith("_win2022"), known=False)


def round_up_to_tenancy(value: int, tenancy: int) -> int:
    """Smallest multiple of ``tenancy`` that is ≥ ``value`` (and ≥ 0)."""
    if value <= 0:
        return 0
    return -(-value // tenancy) * tenancy


def round_down_to_tenancy(value: int, tenancy: int) -> int:
    """Largest multiple of ``tenancy`` that is ≤ ``value`` (and ≥ 0)."""
    if value <= 0:
        return 0
    return (value // tenancy) * tenancy
