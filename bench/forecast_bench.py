"""How fast the seasonal forecaster is, and how good, side by side with seasonal-naive.

Speed: the forecaster runs per location per tick; a 30-day backtest makes 43,200 calls, so the
figure that matters is the cost per tick with 14 days of 1-minute history (20,160 rows), where
the seasonal part (profiles, error tables) is memoised and recomputed every
``seasonal_refresh_s`` (3 h). Reported:
per-tick cost over a simulated day of ticks, the uncached cost (the every-3-hours part), and the
``slo`` plugin's whole ``decide``.

Accuracy (when ``../shared/traces`` exists; never copied into the project): a few real
concurrency series, each scaled to a peak of 400 sessions and interpolated linearly to 5-minute
rows (never across a gap longer than 3 hours). From origins every 6 hours after 14 days of
history (each moved back to the last row at or before the last observation, so no row an origin
sees is interpolated towards a later observation), forecasts at 10 min, 1 h and 6 h are scored by
the pinball loss at the 0.99 quantile (relative to mean demand), the coverage of that quantile,
and the mean's relative absolute error — next to seasonal-naive (yesterday's value at the same
time, its 0.99 quantile from the last 14 days of its own errors) and statsmodels' Holt-Winters in
the same run. Holt-Winters needs the ``bench`` extra (``pip install -e '.[bench]'``, which ``make
bench`` does); without it, it is reported as skipped. Run: ``python -m bench.forecast_bench``.

Holt-Winters: additive seasonality of one day (288 rows), ``initialization_method="estimated"``,
fitted on the last 14 days before the origin (the window our forecaster's profiles use). Trend
``None`` or ``"add"`` is chosen once, on a validation split the scored targets never touch: fits on
the first 11 days of each series, scored at origins every 6 hours over days 11-14. Its 0.99
quantile is the point forecast + z(0.99) × the standard deviation of the fit's in-sample
one-step residuals (the same width at every horizon, as statsmodels gives no interval for this
model). A fit costs about a second, so it is refitted every ``HW_REFIT_DAYS`` days per series;
between refits the fitted parameters are kept and statsmodels' own filter (``initialization_method=
"known"``, ``optimized=False``) carries level, trend and season forward over the new rows, so
every origin forecasts from all data up to itself (the state at a row depends on no later row).
Gaps (NaN) are filled linearly for Holt-Winters only; filling never reads past a scored origin.
"""

from __future__ import annotations

import csv
import importlib
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import NormalDist
from typing import Any

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
SEASON = round(DAY / STEP)  # one day of 5-minute rows
HW_WINDOW = 14 * SEASON
HW_REFIT_DAYS = 7  # ~1 s a fit: daily refits (~420 fits) would take ~8 min; weekly, ~70 s
HW_VALIDATION_DAYS = 3
Z99 = NormalDist().inv_cdf(Q)


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


def _holt_winters_class() -> Any | None:
    """statsmodels' ExponentialSmoothing, or None when the ``bench`` extra is not installed."""
    try:
        return importlib.import_module("statsmodels.tsa.holtwinters").ExponentialSmoothing
    except ImportError:
        return None


@dataclass(frozen=True, slots=True)
class _HwFit:
    """One Holt-Winters fit, its states filtered over later rows with the parameters fixed."""

    start: int  # absolute row of the first row of ``level``
    level: FloatArray
    trend: FloatArray
    season: FloatArray
    sigma: float  # std of the fit's in-sample one-step residuals
    converged: bool

    def covers(self, i: int) -> bool:
        return self.start <= i < self.start + self.level.size

    def mean(self, i: int, steps: int) -> float:
        """Forecast ``steps`` rows ahead from the state after row ``i`` (steps <= SEASON)."""
        k = i - self.start
        return float(self.level[k] + steps * self.trend[k] + self.season[k + steps - SEASON])


def _fit_hw(es: Any, yf: FloatArray, i0: int, trend: str | None, until: int) -> _HwFit:
    """Fit on rows up to ``i0`` (last 14 days at most), filter the states to row ``until``."""
    lo = max(0, i0 + 1 - HW_WINDOW)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning / start-value notes from statsmodels
        fit = es(
            yf[lo : i0 + 1], trend=trend, seasonal="add", seasonal_periods=SEASON,
            initialization_method="estimated",
        ).fit()  # fmt: skip
        p = fit.params
        ext = es(
            yf[lo : min(until, yf.size)], trend=trend, seasonal="add", seasonal_periods=SEASON,
            initialization_method="known", initial_level=p["initial_level"],
            initial_trend=p["initial_trend"] if trend else None,
            initial_seasonal=p["initial_seasons"],
        ).fit(
            smoothing_level=p["smoothing_level"],
            smoothing_trend=p["smoothing_trend"] if trend else None,
            smoothing_seasonal=p["smoothing_seasonal"], optimized=False,
        )  # fmt: skip
    level = np.asarray(ext.level, dtype=np.float64)
    hw = _HwFit(
        lo,
        level,
        np.asarray(ext.trend, dtype=np.float64) if trend else np.zeros_like(level),
        np.asarray(ext.season, dtype=np.float64),
        float(np.std(fit.resid)),
        bool(getattr(fit.mle_retvals, "success", True)),
    )
    # The carried-forward states must reproduce the fit's own forecast at its last row.
    steps = round(max(HORIZONS) / STEP)
    assert abs(hw.mean(i0, steps) - float(fit.forecast(steps)[-1])) < 1e-6 * (
        1 + abs(hw.mean(i0, steps))
    )
    return hw


def _fill(y: FloatArray) -> FloatArray:
    """Linear fill of NaN rows; a row before a finite row reads nothing after that row."""
    ok = np.isfinite(y)
    return np.interp(np.arange(y.size, dtype=np.float64), np.flatnonzero(ok), y[ok])


def _choose_trend(
    es: Any, series: list[tuple[str, FloatArray, FloatArray]]
) -> tuple[str | None, dict[str, float]]:
    """Validation split: fit on days 0-11, score origins every 6 h over days 11-14."""
    scores: dict[str, float] = {}
    for trend in (None, "add"):
        rel: list[float] = []
        for _, grid, y in series:
            yf = _fill(y)
            first = int(np.searchsorted(grid, grid[0] + 14 * DAY))
            iv = first - HW_VALIDATION_DAYS * SEASON
            hw = _fit_hw(es, yf, iv, trend, first)
            for hh in HORIZONS:
                steps = round(hh / STEP)
                ii = np.arange(iv, first - steps, round(6 * 3600.0 / STEP))
                ii = ii[np.isfinite(y[ii]) & np.isfinite(y[ii + steps])]
                if ii.size == 0:
                    continue
                mean = np.array([hw.mean(int(i), steps) for i in ii])
                rel.append(
                    _pinball(y[ii + steps], mean + Z99 * hw.sigma, Q) / float(y[ii + steps].mean())
                )
        scores[str(trend)] = float(np.mean(rel))
    return (None if scores["None"] <= scores["add"] else "add"), scores


def _accuracy(es: Any | None) -> tuple[dict[str, dict[str, float]], dict[str, object]]:
    out: dict[str, dict[str, float]] = {}
    hw_info: dict[str, object] = {}
    fcr = SeasonalForecaster(cache_size=0)
    series = [(name, *_resample(at, v)) for name, at, v in _series()]
    observed = [at[np.isfinite(v)] for _, at, v in _series()]
    trend: str | None = None
    if es is not None:
        t = time.perf_counter()
        trend, scores = _choose_trend(es, series)
        hw_info = {
            "trend": str(trend),
            "validation_pinball99_rel": scores,
            "validation_s": time.perf_counter() - t,
            "quantile": f"mean + {Z99:.4f} x std(in-sample one-step residuals)",
            "refit_days": float(HW_REFIT_DAYS),
            "window_days": float(HW_WINDOW / SEASON),
            "per_series": {},
        }
    for (name, grid, y), obs in zip(series, observed, strict=True):
        h = _as_history(grid, y)
        yf = _fill(y)
        hw: _HwFit | None = None
        hw_s, fits, unconverged = 0.0, 0, 0
        origins = np.arange(grid[0] + 14 * DAY, grid[-1] - max(HORIZONS), 6 * 3600.0)
        per_h: dict[float, list[tuple[float, ...]]] = {hh: [] for hh in HORIZONS}
        for o in origins:
            # The last row at or before the last observation at or before ``o``: later rows are
            # interpolated towards the next observation, which the origin must not see.
            last = obs[np.searchsorted(obs, o, side="right") - 1]
            i0 = int(np.searchsorted(grid, last, side="right")) - 1
            if not np.isfinite(y[i0]):
                continue
            fc = fcr.forecast(h, float(grid[i0]), HORIZONS, quantiles=(Q,))
            if es is not None and (hw is None or not hw.covers(i0)):
                t = time.perf_counter()
                hw = _fit_hw(es, yf, i0, trend, i0 + HW_REFIT_DAYS * SEASON)
                hw_s += time.perf_counter() - t
                fits += 1
                unconverged += not hw.converged
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
                hw_mean = hw.mean(i0, round(hh / STEP)) if hw is not None else np.nan
                hw_sigma = hw.sigma if hw is not None else np.nan
                per_h[hh].append(
                    (
                        y[j],
                        float(fc.in_use_mean[k]),
                        float(fc.in_use_quantiles[0, k]),
                        y[back],
                        sn_q,
                        hw_mean,
                        hw_mean + Z99 * hw_sigma,
                    )
                )
        if es is not None:
            per_series = hw_info["per_series"]
            assert isinstance(per_series, dict)
            per_series[name] = {
                "fits": float(fits),
                "fits_not_converged": float(unconverged),
                "seconds": hw_s,
            }
        for hh, recs in per_h.items():
            if not recs:
                continue
            a = np.array(recs)
            scale = float(a[:, 0].mean())
            m = {
                "n": float(a.shape[0]),
                "ours_pinball99_rel": _pinball(a[:, 0], a[:, 2], Q) / scale,
                "naive_pinball99_rel": _pinball(a[:, 0], a[:, 4], Q) / scale,
                "ours_cover99": float(np.mean(a[:, 0] <= a[:, 2])),
                "naive_cover99": float(np.mean(a[:, 0] <= a[:, 4])),
                "ours_mae_rel": float(np.mean(np.abs(a[:, 0] - a[:, 1]))) / scale,
                "naive_mae_rel": float(np.mean(np.abs(a[:, 0] - a[:, 3]))) / scale,
            }
            if es is not None:
                m["holt_winters_pinball99_rel"] = _pinball(a[:, 0], a[:, 6], Q) / scale
                m["holt_winters_cover99"] = float(np.mean(a[:, 0] <= a[:, 6]))
                m["holt_winters_mae_rel"] = float(np.mean(np.abs(a[:, 0] - a[:, 5]))) / scale
            out[f"{name} @{hh / 60:.0f}min"] = m
    return out, hw_info


def run() -> dict[str, object]:
    """Speed figures always; accuracy figures when the traces folder exists."""
    result: dict[str, object] = {"speed": _speed()}
    es = _holt_winters_class()
    hw_info: dict[str, object] | str = "skipped: statsmodels is not installed"
    if TRACES.is_dir():
        result["accuracy"], info = _accuracy(es)
        if es is not None:
            hw_info = info
    else:
        result["accuracy"] = f"skipped: {TRACES} not found"
    result["holt_winters"] = hw_info
    return result


def _cols(m: dict[str, float], metric: str, fmt: str) -> str:
    hw = m.get(f"holt_winters_{metric}")
    last = format(hw, fmt) if hw is not None else "-"
    return f"{format(m[f'ours_{metric}'], fmt)} | {format(m[f'naive_{metric}'], fmt)} | {last}"


def main() -> None:
    t0 = time.perf_counter()
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
        print(f"{'series @ horizon':30s} {'n':>4s}  {'pinball99/mean ours|naive|hw':28s}  "
              f"{'cover99 ours|naive|hw':22s}  MAE/mean ours|naive|hw")  # fmt: skip
        for key, m in acc.items():
            print(
                f"{key:30s} {m['n']:4.0f}  {_cols(m, 'pinball99_rel', '.4f'):28s}  "
                f"{_cols(m, 'cover99', '.2f'):22s}  {_cols(m, 'mae_rel', '.3f')}"
            )
    hw = res["holt_winters"]
    if not isinstance(hw, dict):
        print(hw)
    else:
        val = hw["validation_pinball99_rel"]
        assert isinstance(val, dict)
        print(
            f"holt-winters: trend={hw['trend']} (validation pinball99/mean: "
            + ", ".join(f"trend={k} {v:.4f}" for k, v in val.items())
            + f"; {hw['validation_s']:.0f} s), seasonal=add/288, "
            f"last {hw['window_days']:.0f} days, refit every {hw['refit_days']:.0f} days, "
            f"q99 = {hw['quantile']}"
        )
        per_series = hw["per_series"]
        assert isinstance(per_series, dict)
        for name, s in per_series.items():
            print(
                f"  {name:28s} {s['seconds']:6.1f} s  ({s['fits']:.0f} fits, "
                f"{s['fits_not_converged']:.0f} not reported converged by the optimiser)"
            )
    print(f"total run time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
