"""The ``chain`` and ``max`` plugins: order, schedules, failures, forecast error, fallback."""

from __future__ import annotations

import socket
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pydantic
import pytest
from pydantic import BaseModel, ConfigDict

from autoscaler.domain.errors import ConfigError
from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    LocationBounds,
    LocationHistory,
    Recommendation,
)
from autoscaler.policy.builtin.chain import (
    ChainParams,
    ChainPolicy,
    MaxParams,
    MaxPolicy,
    forecast_error,
)
from autoscaler.policy.builtin.scheduled import ScheduledPolicy
from autoscaler.policy.config import load_policy_file
from autoscaler.policy.plugin import PluginRegistry, PolicyContext
from tests.policy_context import by_model
from tests.policy_context import make_ctx as shared_ctx

NOW = datetime(2026, 6, 1, 18, 30, tzinfo=UTC).timestamp()  # a Monday


class FixedParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    always_on: int = 0
    target_idle: int = 0
    maximum: int = 0
    forecast: float | None = None


class Fixed:
    """Answers the same capacity every time; ``forecast`` is its forecast_in_use."""

    name = "fixed"
    Params: ClassVar[type[BaseModel]] = FixedParams

    def __init__(self) -> None:
        self.calls = 0

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        assert isinstance(params, FixedParams)
        self.calls += 1
        if ctx.capacity_model is CapacityModel.LEGACY:
            s = CapacitySetting(params.always_on, on_demand=params.maximum - params.always_on)
        else:
            s = CapacitySetting(params.always_on, params.target_idle, params.maximum)
        return Recommendation(s, f"fixed {s.describe()}", forecast_in_use=params.forecast)


class Broken:
    name = "broken"
    Params: ClassVar[type[BaseModel]] = FixedParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        raise RuntimeError("boom")


class Nonsense:
    name = "nonsense"
    Params: ClassVar[type[BaseModel]] = FixedParams

    def decide(self, params: BaseModel, ctx: PolicyContext) -> Recommendation:
        return Recommendation(CapacitySetting(-3, 0, 5), "negative")


class Impure(Fixed):
    name = "impure"
    replayable: ClassVar[bool] = False


def make_registry() -> tuple[PluginRegistry, Fixed, Impure]:
    reg = PluginRegistry()  # installed plugins (target-tracking, …) plus the test ones
    fixed, impure = Fixed(), Impure()
    reg.register("fixed", fixed)
    reg.register("impure", impure)
    reg.register("broken", Broken)
    reg.register("nonsense", Nonsense)
    for cls in (ChainPolicy, MaxPolicy, ScheduledPolicy):
        plugin = cls.for_registry(reg)
        reg.register(plugin.name, plugin)
    return reg, fixed, impure


def steady_history(n: int, in_use: float, now: float = NOW, step: float = 60.0) -> LocationHistory:
    at = now - step * np.arange(n, 0, -1, dtype=np.float64)
    col = np.full(n, in_use)
    z = np.zeros(n)
    return LocationHistory(at, col, z, z, z, z, col + 1, z + 1, np.ones(n, dtype=np.bool_))


def make_ctx(
    *,
    in_use: int = 5,
    history: LocationHistory | None = None,
    model: CapacityModel = CapacityModel.CURRENT,
    now: float = NOW,
) -> PolicyContext:
    return shared_ctx(
        history,
        now,
        in_use=in_use,
        model=model,
        setting=by_model(
            model, current=CapacitySetting(2, 2, 6), legacy=CapacitySetting(2, on_demand=4)
        ),
        idle=1,
        bounds=LocationBounds(0, 1000),
        lead_time=120.0,
    )


def fixed(**kw: Any) -> dict[str, Any]:
    return {"plugin": "fixed", "params": kw}


def run(name: str, raw: dict[str, Any], ctx: PolicyContext) -> Recommendation:
    reg = make_registry()[0]
    return reg.get(name).decide(reg.validate_params(name, raw), ctx)


# ---------------------------------------------------------------------------------------------
# Validation.


def test_inner_params_are_validated_by_the_inner_plugin() -> None:
    reg = make_registry()[0]
    p = reg.validate_params("chain", {"policies": [{"plugin": "target-tracking"}]})
    assert isinstance(p, ChainParams)
    assert type(p.policies[0].params).__name__ == "TargetTrackingParams"
    with pytest.raises(pydantic.ValidationError) as caught:
        reg.validate_params(
            "max",
            {
                "policies": [
                    {"plugin": "target-tracking"},
                    {"plugin": "target-tracking", "params": {"targetUtilization": 2}},
                    {"plugin": "nope"},
                    {"plugin": "fixed", "when": {"cron": "0 9 * * *"}},
                ],
                "fallback": {"targetUtilisation": 0.5},
            },
        )
    locs = {e["loc"]: e["msg"] for e in caught.value.errors(include_url=False)}
    assert "less than or equal to 1" in locs[("policies", 1, "params", "targetUtilization")]
    assert "unknown policy plugin 'nope' (known: " in locs[("policies", 2, "plugin")]
    assert "cron and durationSeconds go together" in locs[("policies", 3, "when")]
    assert ("fallback", "targetUtilisation") in locs
    with pytest.raises(pydantic.ValidationError, match="at least 1 item"):
        reg.validate_params("chain", {"policies": []})


def test_nested_error_in_a_policy_file_names_file_line_and_full_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        textwrap.dedent("""\
        apiVersion: autoscaler.gameliftstreams/v1
        kind: CapacityPolicy
        metadata: {name: bad}
        spec:
          streamGroups: {ids: [sg-1]}
          policy:
            plugin: chain
            params:
              policies:
                - plugin: slo
                - plugin: target-tracking
                  params:
                    targetUtilization: 1.5
        """)
    )
    reg = make_registry()[0]
    with pytest.raises(ConfigError) as caught:
        load_policy_file(path, resolve_params=reg.validate_params)
    assert caught.value.problems == [
        f"{path}:13: spec.policy.params.policies[1].params.targetUtilization: Input should be"
        " less than or equal to 1 (got 1.5)"
    ]


# ---------------------------------------------------------------------------------------------
# chain.


def test_first_policy_that_answers_wins() -> None:
    rec = run(
        "chain",
        {"policies": [fixed(always_on=4, maximum=9), fixed(always_on=8, maximum=9)]},
        make_ctx(),
    )
    assert rec.setting == CapacitySetting(4, 0, 9)
    assert rec.reason.startswith("chain: policies[0] fixed answered: fixed")


def test_errors_and_nonsense_are_passed_over_with_the_reason() -> None:
    raw = {
        "policies": [
            {"plugin": "broken"},
            {"plugin": "nonsense"},
            fixed(always_on=3, maximum=9),
        ]
    }
    rec = run("chain", raw, make_ctx())
    assert rec.setting == CapacitySetting(3, 0, 9)
    assert "policies[0] broken passed over: broken raised RuntimeError: boom" in rec.reason
    assert "policies[1] nonsense passed over: nonsense: always_on is negative (-3)" in rec.reason
    # Not the chain's first choice because two entries broke: a fallback, which reports count.
    assert rec.fallback is not None
    assert rec.fallback.startswith("policies[0] broken failed: broken raised RuntimeError")
    assert "policies[1] nonsense failed" in rec.fallback


def test_an_entry_that_answered_through_its_own_fallback_passes_it_on() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    raw = {"policies": [{"plugin": "webhook", "params": {"url": f"http://127.0.0.1:{port}/"}}]}
    rec = run("chain", raw, make_ctx())
    assert rec.reason.startswith("chain: policies[0] webhook answered")  # its hold
    assert rec.fallback is not None
    assert rec.fallback.startswith(f"webhook 127.0.0.1:{port} failed: cannot reach it")


def test_an_entry_off_schedule_or_inaccurate_is_no_fallback() -> None:
    # The composite working as designed: the answering entry is the chain's own answer.
    raw = {
        "policies": [
            {**fixed(always_on=9, maximum=9), "when": {"end": "2020-01-01T00:00:00Z"}},
            fixed(always_on=50, maximum=60, forecast=20.0),  # 100 % off: passed over
            fixed(always_on=12, maximum=20, forecast=11.0),
        ]
    }
    rec = run("chain", raw, make_ctx(in_use=10, history=steady_history(30, 10.0)))
    assert rec.setting.always_on == 12
    assert rec.fallback is None


def test_schedule_conditions_choose_the_entry() -> None:
    raw = {
        "policies": [
            {
                **fixed(always_on=20, maximum=20),
                "when": {"cron": "0 18 * * 1-5", "durationSeconds": 3600, "timeZone": "UTC"},
            },
            {
                **fixed(always_on=10, maximum=20),
                "when": {"start": "2026-06-01T00:00:00Z", "end": "2026-06-02T00:00:00+00:00"},
            },
            fixed(always_on=1, maximum=20),
        ]
    }
    assert run("chain", raw, make_ctx(now=NOW)).setting.always_on == 20  # Monday 18:30
    assert run("chain", raw, make_ctx(now=NOW + 3600)).setting.always_on == 10  # 19:30
    rec = run("chain", raw, make_ctx(now=NOW + 86400))  # Tuesday 18:30: the event is over
    assert rec.setting.always_on == 20
    rec = run("chain", raw, make_ctx(now=NOW + 86400 + 3600))
    assert rec.setting.always_on == 1
    assert "policies[0] fixed: not scheduled now" in rec.reason


def test_no_answer_falls_back_to_reactive_target_tracking() -> None:
    raw = {"policies": [{"plugin": "broken"}], "fallback": {"targetUtilization": 0.5}}
    rec = run("chain", raw, make_ctx(in_use=5))
    assert rec.setting == CapacitySetting(10, 0, 20)  # 5 / 0.5, maximum 2×
    assert rec.reason.startswith("chain: no policy answered (policies[0] broken passed over")
    assert "reactive fallback: target-tracking: demand 5" in rec.reason
    assert rec.fallback == "policies[0] broken failed: broken raised RuntimeError: boom"


def test_an_inaccurate_forecaster_gives_way() -> None:
    hist = steady_history(30, 10.0)
    raw = {
        "policies": [
            fixed(always_on=50, maximum=60, forecast=20.0),  # 100 % off
            fixed(always_on=12, maximum=20, forecast=11.0),  # 10 % off
        ]
    }
    rec = run("chain", raw, make_ctx(in_use=10, history=hist))
    assert rec.setting == CapacitySetting(12, 0, 20)
    assert "recent forecast error 100% over 12 points > maxForecastError 50%" in rec.reason
    # Checking switched off: the first one answers again.
    rec = run("chain", {**raw, "maxForecastError": None}, make_ctx(in_use=10, history=hist))
    assert rec.setting.always_on == 50


def test_forecast_error_replays_history_before_the_lead_time() -> None:
    _, plugin, impure = make_registry()
    ctx = make_ctx(in_use=10, history=steady_history(30, 10.0))
    assert forecast_error(plugin, FixedParams(forecast=15.0), ctx, 12) == (0.5, 12)
    assert forecast_error(plugin, FixedParams(forecast=None), ctx, 12) is None
    short = make_ctx(history=steady_history(3, 10.0))  # 2 usable points only: unknown
    assert forecast_error(plugin, FixedParams(forecast=99.0), short, 12) is None
    nan = steady_history(30, 10.0)
    nan.in_use[-12:] = np.nan
    assert forecast_error(plugin, FixedParams(forecast=99.0), make_ctx(history=nan), 12) is None
    impure.calls = 0
    assert forecast_error(impure, FixedParams(forecast=99.0), ctx, 12) is None
    assert impure.calls == 0  # a plugin that is not replayable is never replayed
    # Replay sees only the past: each call's history ends at or before t − lead time.
    seen: list[tuple[float, float]] = []

    class Spy(Fixed):
        def decide(self, params: BaseModel, c: PolicyContext) -> Recommendation:
            seen.append((c.now, float(c.history.at[-1])))
            return super().decide(params, c)

    forecast_error(Spy(), FixedParams(forecast=10.0), ctx, 12)
    last = float(ctx.history.at[-1])
    assert seen[-1] == (last - 120.0, last - 120.0)
    assert all(now == end for now, end in seen)


# ---------------------------------------------------------------------------------------------
# max.


def test_max_takes_the_largest_value_per_field() -> None:
    raw = {
        "policies": [
            fixed(always_on=4, target_idle=1, maximum=30, forecast=3.0),
            fixed(always_on=2, target_idle=6, maximum=10, forecast=7.0),
        ]
    }
    rec = run("max", raw, make_ctx())
    assert rec.setting == CapacitySetting(4, 6, 30)
    assert rec.forecast_in_use == 7.0
    legacy = run("max", raw, make_ctx(model=CapacityModel.LEGACY))
    assert legacy.setting == CapacitySetting(always_on=4, on_demand=26)


def test_max_replaces_a_failing_member_with_the_reactive_answer() -> None:
    raw = {
        "policies": [{"plugin": "broken"}, fixed(always_on=1, maximum=3)],
        "fallback": {"targetUtilization": 1.0},
    }
    rec = run("max", raw, make_ctx(in_use=5))
    assert rec.setting == CapacitySetting(5, 0, 10)  # target tracking: 5 / 1.0, max 2×
    assert "policies[0] broken replaced by the reactive fallback: broken raised" in rec.reason
    assert rec.fallback == "policies[0] broken failed: broken raised RuntimeError: boom"
    p = make_registry()[0].validate_params("max", raw)
    assert isinstance(p, MaxParams)


def test_max_with_nothing_scheduled_is_reactive() -> None:
    raw = {"policies": [{**fixed(always_on=9, maximum=9), "when": {"end": "2020-01-01T00:00:00Z"}}]}
    rec = run("max", raw, make_ctx(in_use=7))
    assert rec.setting == CapacitySetting(10, 0, 20)  # 7 / 0.7
    assert "no policy active: reactive fallback" in rec.reason


def test_chains_nest() -> None:
    inner = {
        "plugin": "chain",
        "params": {"policies": [{"plugin": "broken"}, fixed(always_on=6, maximum=8)]},
    }
    rec = run("max", {"policies": [inner, fixed(always_on=2, maximum=12)]}, make_ctx())
    assert rec.setting == CapacitySetting(6, 0, 12)
