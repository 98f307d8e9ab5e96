"""How fast the seasonal forecaster is, and how good, side by side with seasonal-naive.

Speed: the forecaster runs per location per tick; a 30-day backtest makes 43,200 calls, so the
figure that matters is the cost per tick with 14 days of 1-minute history (20,160 rows), where
the hourly part (profiles, error tables) is memoised and recomputed once an hour. Reported:
per-tick cost over a simulated day of ticks, the uncached cost (the once-an-hour part), and the
``slo`` plugin's whole ``decide``.

Accuracy (when ``../shared/traces`` exists; never copied into the project): a few real
concurrency series, each scaled to a peak of 400 sessions and interpolated linearly to 5-minute
rows (never across a gap longer than 3 hours). From origins every 6 hours after 14 days of
history, forecasts at 10 min, 1 h and 6 h are scored by the pinball loss at the 0.99 quantile
(relative to mean demand), the coverage of that quantile, and the mean's relative absolute error
— next to seasonal-naive (yesterday's value at the same time, its 0.99 quantile from the last 14
days of its own errors) in the same run. statsmodels (Holt-Winters) is not installed, so it is
not compared. Run: ``python -m bench.forecast_bench``.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    FloatArray,
    GroupState,
    LocationBounds,
    LocationHistory,
    LocationSample,
)
from autoscaler.domain.policy import Slo
from autoscaler.forecast import SeasonalForecaster
from autoscaler.forecast.synthetic import Diurnal, history
from autoscaler.policy.builtin.slo import SloParams, SloPolicy
from autoscaler.policy.plugin import PolicyContext

DAY = 86400.0
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
HORIZONS = (600.0, 3600.0, 6 * 3600.0)
Q = 0.99
STEP = 300.0
MEAN_DURATION = 2400.0
WIDE_SERIES = ("Counter-Strike2", "PUBG Battlegrounds", "Naraka Bladepoint", "Team Fortress 2")


def _speed() -> dict[str, float]:
    h = history(Diurnal(peak=400.0), START, START + 15 * DAY, step_s=60.0, seed=1)
    hz = np.array([0.0, 168.0, 276.0, 768.0])
    fcr = SeasonalForecaster()
    ticks = START + 14 * DAY + np.arange(1440, dtype=np.float64) * 60.0
    t = time.perf_counter()
    for now in ticks:
        fcr.forecast(h, float(now), hz, quantiles=(Q,))
    per_tick = (time.perf_counter() - t) / ticks.size
    plain = SeasonalForecaster(cache_size=0)
    t = time.perf_counter()
    for now in ticks[:30]:
        plain.forecast(h, float(now), hz, quantiles=(Q,))
    uncached = (time.perf_counter() - t) / 30
    rows = int(np.count_nonzero((h.at > ticks[-1] - 14 * DAY) & (h.at <= ticks[-1])))
    return {
        "history_rows": float(rows),
        "forecast_us_per_tick": per_tick * 1e6,
        "forecast_us_uncached": uncached * 1e6,
        "projected_s_per_43200_ticks": per_tick * 43_200,
        **_decide_speed(h, ticks),
    }


def _decide_speed(h: LocationHistory, ticks: FloatArray) -> dict[str, float]:
    group = GroupState("sg", "arn", "ACTIVE", "gen4n_ultra", 1, CapacityModel.CURRENT, (), "l")
    plugin, params = SloPolicy(), SloParams()
    t = time.perf_counter()
    for now in ticks[:600]:
        sample = LocationSample(
            "sg", "l", float(now), "ACTIVE", CapacitySetting(0, 8, 600), 300, 8, 292, 0, 0.0,
            5, 0, 5,
        )  # fmt: skip
        ctx = PolicyContext(
            float(now), group, "l", sample, h, LocationBounds(), 1, CapacityModel.CURRENT,
            Slo(), 0.5, 60.0, 168.0,
        )  # fmt: skip
        plugin.decide(params, ctx)
    return {"slo_decide_us_per_tick": (time.perf_counter() - t) / 600 * 1e6}


# --- accuracy on real traces ---------------------------------------------------------------
def _parse(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _series() -> Iterator[tuple[str, FloatArray, FloatArray]]:
    wide = TRACES / "steamdb_20games_hourly_2025-09-20_2025-11-21.csv"
    if wide.exists():
        with wide.open(newline="") as f:
            rows = list(csv.DictReader(f))
        at = np.array([_parse(r["timestamp"]) for r in rows])
        for name in WIDE_SERIES:
            v = np.array([float(r[name]) if r.get(name) else np.nan for r in rows])
            yield name, at, v
    small = TRACES / "super_animal_royale_hourly_2025-04-20_2025-12-16.csv"
    if small.exists():
        with small.open(newline="") as f:
            rows = list(csv.DictReader(f))
        at = np.array([_parse(r["timestamp"]) for r in rows])
        v = np.array([float(r["super_animal_royale_players"] or "nan") for r in rows])
        yield "Super Animal Royale", at, v


def _resample(at: FloatArray, v: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Scale to a 400 peak, interpolate to 5-minute rows; NaN across gaps over 3 hours."""
    ok = np.isfinite(v)
    at, v = at[ok], v[ok] / np.nanmax(v[ok]) * 400.0
    grid = np.arange(np.ceil(at[0] / STEP) * STEP, at[-1], STEP)
    y = np.interp(grid, at, v)
    j = np.searchsorted(at, grid, side="right")
    gap = at[np.minimum(j, at.size - 1)] - at[np.maximum(j - 1, 0)]
    return grid, np.where(gap > 3 * 3600.0, np.nan, y)


def _as_history(grid: FloatArray, y: FloatArray) -> LocationHistory:
    ok = np.isfinite(y)
    c = np.where(ok, y, 0.0)
    lam = np.maximum(np.gradient(c, grid) + c / MEAN_DURATION, 0.0)
    zero = np.zeros_like(grid)
    return LocationHistory(
        grid, c, zero, lam * STEP, zero, c / MEAN_DURATION * STEP, c, zero, ok.astype(np.bool_)
    )


def _pinball(y: FloatArray, q: FloatArray, tau: float) -> float:
    d = y - q
    return float(np.mean(np.maximum(tau * d, (tau - 1) * d)))


def _accuracy() -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    fcr = SeasonalForecaster(cache_size=0)
    for name, at, v in _series():
        grid, y = _resample(at, v)
        h = _as_history(grid, y)
        origins = np.arange(grid[0] + 14 * DAY, grid[-1] - max(HORIZONS), 6 * 3600.0)
        per_h: dict[float, list[tuple[float, float, float, float, float]]] = {
            hh: [] for hh in HORIZONS
        }
        for o in origins:
            i0 = int(np.searchsorted(grid, o))
            if not np.isfinite(y[i0]):
                continue
            fc = fcr.forecast(h, float(grid[i0]), HORIZONS, quantiles=(Q,))
            for k, hh in enumerate(HORIZONS):
                j = i0 + round(hh / STEP)
                back = j - round(DAY / STEP)
                if not (np.isfinite(y[j]) and back >= 0 and np.isfinite(y[back])):
                    continue
                # Seasonal-naive: yesterday's value; its q99 from its errors over 14 days.
                past = np.arange(i0 - round(14 * DAY / STEP), i0 - round(hh / STEP))
                past = past[past - round(DAY / STEP) >= 0]
                err = y[past] - y[past - round(DAY / STEP)]
                err = err[np.isfinite(err)]
                sn_q = y[back] + (float(np.quantile(err, Q)) if err.size else 0.0)
                per_h[hh].append(
                    (
                        y[j],
                        float(fc.in_use_mean[k]),
                        float(fc.in_use_quantiles[0, k]),
                        y[back],
                        sn_q,
                    )
                )
        for hh, recs in per_h.items():
            if not recs:
                continue
            a = np.array(recs)
            scale = float(a[:, 0].mean())
            out[f"{name} @{hh / 60:.0f}min"] = {
                "n": float(a.shape[0]),
                "ours_pinball99_rel": _pinball(a[:, 0], a[:, 2], Q) / scale,
                "naive_pinball99_rel": _pinball(a[:, 0], a[:, 4], Q) / scale,
                "ours_cover99": float(np.mean(a[:, 0] <= a[:, 2])),
                "naive_cover99": float(np.mean(a[:, 0] <= a[:, 4])),
                "ours_mae_rel": float(np.mean(np.abs(a[:, 0] - a[:, 1]))) / scale,
                "naive_mae_rel": float(np.mean(np.abs(a[:, 0] - a[:, 3]))) / scale,
            }
    return out


def run() -> dict[str, object]:
    """Speed figures always; accuracy figures when the traces folder exists."""
    result: dict[str, object] = {"speed": _speed()}
    if TRACES.is_dir():
        result["accuracy"] = _accuracy()
    else:
        result["accuracy"] = f"skipped: {TRACES} not found"
    result["holt_winters"] = "skipped: statsmodels is not installed"
    return result


def main() -> None:
    res = run()
    print("speed:")
    speed = res["speed"]
    assert isinstance(speed, dict)
    for k, v in speed.items():
        print(f"  {k:32s} {v:12.1f}")
    acc = res["accuracy"]
    if not isinstance(acc, dict):
        print(acc)
    else:
        print(f"{'series @ horizon':36s} {'n':>4s}  pinball99/mean ours|naive   cover99 ours|naive"
              "   MAE/mean ours|naive")  # fmt: skip
        for key, m in acc.items():
            print(
                f"{key:36s} {m['n']:4.0f}  {m['ours_pinball99_rel']:.4f} | "
                f"{m['naive_pinball99_rel']:.4f}      {m['ours_cover99']:.2f} | "
                f"{m['naive_cover99']:.2f}      {m['ours_mae_rel']:.3f} | {m['naive_mae_rel']:.3f}"
            )
    print(res["holt_winters"])


if __name__ == "__main__":
    main()
