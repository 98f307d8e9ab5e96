"""One picture of a backtest run: what was asked, what was bought, what failed.

Per location, one panel over time: demand (sessions in use + waiting), sessions in use,
allocated slots, and the capacity layers the controller set (always-on, target idle on top of
in-use, maximum), with placement failures as marks along the bottom. Reading it answers the
questions a number cannot: did capacity lead the evening ramp or trail it, where was money
spent on idle slots, and when did players fail to start.

matplotlib is an optional dependency (``pip install autoscaler[plot]``) and is imported only
here, with the Agg backend (files, no display).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autoscaler.backtest.runner import RunOutcome
from autoscaler.domain.errors import ConfigError
from autoscaler.outfiles import save_png

# The panel's top over the highest demand or allocation: a maximum set far above both (a
# guard, not a target) would otherwise squash what was bought into the bottom of the panel.
_HEADROOM = 1.15


def ceiling_label(highest: float, panel_top: float) -> str:
    """The maximum's legend entry, saying so when the panel cuts it off."""
    if highest <= panel_top:
        return "maximum"
    return f"maximum (up to {highest:g}, above the panel)"


def plot_timeline(outcome: RunOutcome, path: str | Path, *, title: str = "") -> Path:
    """Write ``outcome``'s timeline (run with ``timeline=True``) as a PNG; returns the path."""
    if outcome.timeline is None or outcome.timeline_t is None:
        raise ValueError("the run has no timeline (run it with timeline=True)")
    try:
        import matplotlib as mpl  # noqa: PLC0415

        mpl.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError as error:  # pragma: no cover - matplotlib is a dev dependency here
        raise ConfigError(
            "--plot", [f"matplotlib is needed for --plot (pip install 'autoscaler[plot]'): {error}"]
        ) from error
    out = Path(path)
    hours = outcome.timeline_t / 3600.0
    names = list(outcome.timeline)
    fig, axes = plt.subplots(
        len(names), 1, figsize=(12, 3.6 * len(names)), sharex=True, squeeze=False
    )
    for ax, name in zip(axes[:, 0], names, strict=True):
        tl = outcome.timeline[name]
        ax.fill_between(hours, 0, tl.allocated, step="post", color="#cfe3f5", label="allocated")
        ax.step(hours, tl.always_on, where="post", color="#1f77b4", lw=1.2, label="always-on")
        ax.step(
            hours,
            tl.in_use + tl.target_idle,
            where="post",
            color="#2ca02c",
            lw=0.9,
            ls="--",
            label="in use + target idle",
        )
        top = float(max(tl.demand.max(initial=0), tl.allocated.max(initial=0), 1.0))
        ax.step(
            hours,
            tl.ceiling,
            where="post",
            color="#7f7f7f",
            lw=0.8,
            ls=":",
            label=ceiling_label(float(tl.ceiling.max(initial=0)), top * _HEADROOM),
        )
        ax.step(hours, tl.demand, where="post", color="#d62728", lw=1.0, label="demand")
        ax.step(hours, tl.in_use, where="post", color="#ff7f0e", lw=0.8, label="in use")
        failed = np.flatnonzero(tl.failures > 0)
        if failed.size:
            ax.scatter(
                hours[failed],
                np.zeros(failed.size),
                marker="x",
                color="black",
                s=14 + 4 * np.minimum(tl.failures[failed], 10),
                label=f"failures ({int(tl.failures.sum())})",
                zorder=5,
            )
        ax.set_ylim(bottom=-0.02 * top, top=top * _HEADROOM)
        ax.set_ylabel(f"{name}\nslots / sessions")
        ax.grid(alpha=0.3)
        # Above the panel, not on it: the top-left corner is where a day's ramp starts.
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), fontsize=7, ncol=7, frameon=False)
    axes[-1, 0].set_xlabel("hours since the start of the run")
    fig.suptitle(title or f"{outcome.label}: demand and capacity")
    fig.tight_layout()
    return save_png(fig, out, "--plot", dpi=110)
