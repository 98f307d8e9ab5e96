"""Demand forecasting: what a location will need, from what it had (pure numpy, no I/O).

``seasonal`` forecasts concurrency and arrival rate with quantiles; ``counts`` turns an arrival
rate into the distribution of arrivals net of departures over a refill window, which is what an
idle buffer must absorb. Policy plugins build on both.
"""

from __future__ import annotations

from autoscaler.forecast.counts import NetArrivals, arrivals_pmf
from autoscaler.forecast.seasonal import (
    Forecast,
    ForecastConfig,
    SeasonalForecaster,
    forecast_location,
)

__all__ = [
    "Forecast",
    "ForecastConfig",
    "NetArrivals",
    "SeasonalForecaster",
    "arrivals_pmf",
    "forecast_location",
]
