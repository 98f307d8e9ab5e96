"""Files the user named on the command line (``backtest --plot``, ``demo --chart``,
``history --export``).

They are written after minutes of work, so the destination is checked before the work starts
(``check_destination``, which creates nothing), and the file is written beside it and
renamed over it (``write_atomically``), so a failed write (a full disk, an error of the
writer, Ctrl-C) leaves no half file and keeps a previous one. matplotlib stays an optional
import: ``save_png`` only needs a figure.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from autoscaler.domain.errors import ConfigError


def check_destination(
    path: str | Path, flag: str, *, example: str = "run.png", suffix: str | None = None
) -> Path:
    """``path`` must be a file that can be written: not a folder, not a device or other
    special file, its name ending in ``suffix`` if one is given, and its folder (or, if that
    does not exist yet, the nearest one that does, where it will be made) writable: a file is
    made there and removed again, since permissions alone pass for root on a read-only or
    virtual file system. A problem is a ``ConfigError`` naming ``flag``. Nothing is left
    behind: a run that then fails leaves no empty folder. Returns the path to write: a
    symbolic link's target, so the link stays a link."""
    out, existing = _destination(path, flag, example=example, suffix=suffix)
    probe = existing / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.probe"
    try:
        probe.open("xb").close()
    except OSError as error:
        raise ConfigError(
            flag, [f"cannot write to the folder {existing}: {error.strerror or error}"]
        ) from None
    probe.unlink(missing_ok=True)
    return out


def _destination(
    path: str | Path, flag: str, *, example: str, suffix: str | None
) -> tuple[Path, Path]:
    """``check_destination``'s checks but the trial write: the path to write and its nearest
    existing folder."""
    out = Path(path)
    if out.is_symlink():
        out = Path(os.path.realpath(out))
    if out.is_dir():
        raise ConfigError(flag, [f"{out} is a folder; give a file name such as {out / example}"])
    if out.exists() and not out.is_file():
        raise ConfigError(
            flag, [f"{out} is not a regular file (a device, pipe or socket); name a file"]
        )
    if suffix is not None and out.suffix.lower() != suffix:
        raise ConfigError(
            flag, [f"{out}: the file is written as {suffix[1:].upper()}; name it …{suffix}"]
        )
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(flag, [f"cannot create the folder {out.parent}: {existing} is a file"])
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(flag, [f"cannot write to the folder {existing} (permission denied)"])
    return out, existing


def write_atomically(
    path: str | Path,
    flag: str,
    write: Callable[[IO[bytes]], object],
    *,
    example: str = "run.png",
    suffix: str | None = None,
) -> Path:
    """Call ``write`` with a binary file beside ``path``, then rename it over ``path``."""
    # The staging file below is the trial write: ``check_destination``'s probe would be a
    # second one.
    out, _ = _destination(path, flag, example=example, suffix=suffix)
    # Opened with "x" rather than made by mkstemp: the file gets the umask's usual mode,
    # not 0600.
    staging = out.parent / f".{out.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with staging.open("xb") as sink:
            write(sink)
        staging.replace(out)
    except OSError as error:
        staging.unlink(missing_ok=True)
        raise ConfigError(flag, [f"cannot write {out}: {error.strerror or error}"]) from None
    except BaseException:  # the writer's own error, Ctrl-C: no half file left behind either
        staging.unlink(missing_ok=True)
        raise
    return out


PLOT_EXTRA = "pip install 'autoscaler[plot]'"


def can_draw() -> bool:
    """Whether matplotlib (the optional ``plot`` extra) is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def require_drawing(flag: str) -> None:
    """A chart was asked for: without matplotlib, say so before the work, not after it."""
    if not can_draw():
        raise ConfigError(flag, [f"drawing a chart needs matplotlib: {PLOT_EXTRA}"])


def save_png(figure: Any, path: str | Path, flag: str, *, dpi: int) -> Path:
    """Write matplotlib ``figure`` to ``path`` as a PNG, atomically; closes the figure."""
    import matplotlib.pyplot as plt  # noqa: PLC0415  (optional; the caller has imported it)

    try:
        return write_atomically(
            path, flag, lambda sink: figure.savefig(sink, dpi=dpi, format="png"), suffix=".png"
        )
    finally:
        plt.close(figure)
