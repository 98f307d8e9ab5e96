"""One contract suite, run over every policy plugin: the installed ones (entry points) and the
composite ones of this package (chain, max, scheduled, webhook), registered here until their
entry points are declared.

The contract (``autoscaler.policy.plugin``): the answer passes the planner's
``check_recommendation``, uses the group's capacity model, is a multiple of the tenancy,
stays within the location's maximum bound when demand fits in it, is deterministic, and the
plugin copes with empty, short, gappy and NaN-laden history and incomplete samples without
raising. A newly installed plugin fails ``test_every_plugin_has_example_params`` until it is
given example params below.
"""

from __future__ import annotations

import http.server
import json
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from autoscaler.domain.models import (
    CapacityModel,
    CapacitySetting,
    LocationBounds,
    LocationHistory,
    Recommendation,
)
from autoscaler.planner import check_recommendation
from autoscaler.policy.builtin.chain import ChainPolicy, MaxPolicy
from autoscaler.policy.builtin.scheduled import ScheduledPolicy
from autoscaler.policy.builtin.webhook import WebhookPolicy
from autoscaler.policy.config import load_policies
from autoscaler.policy.plugin import PluginRegistry, PolicyContext
from tests.policy_context import by_model
from tests.policy_context import make_ctx as shared_ctx

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "policies"
OURS = (ChainPolicy, MaxPolicy, ScheduledPolicy, WebhookPolicy)
NOW = 1_780_340_400.0  # Monday 2026-06-01 19:00 UTC
MAX_BOUND = 48  # slots: a multiple of every tenancy tested
WEBHOOK_URL = "{webhook}"  # replaced by the local test server's URL

# Minimal valid params per plugin name. A plugin installed without an entry here fails.
EXAMPLE_PARAMS: dict[str, dict[str, Any]] = {
    "target-tracking": {},
    "buffer": {"bufferSize": 2},
    "predictive": {},
    "slo": {},
    "scheduled": {
        "timeZone": "Europe/Berlin",
        "windows": [{"cron": "0 20 * * 1-5", "durationSeconds": 7200, "minAlwaysOn": 5}],
        "events": [
            {"start": "2026-06-01T18:00:00Z", "end": "2026-06-01T22:00:00Z", "maxMaximum": 40}
        ],
        "base": {"plugin": "target-tracking"},
    },
    "chain": {
        "policies": [
            {"plugin": "buffer", "params": {"bufferSize": 3}, "when": {"end": "2026-01-01T00:00Z"}},
            {"plugin": "target-tracking", "params": {"targetUtilization": 0.8}},
        ]
    },
    "max": {
        "policies": [
            {"plugin": "target-tracking"},
            {"plugin": "buffer", "params": {"bufferSize": 2}},
        ]
    },
    "webhook": {"url": WEBHOOK_URL, "timeoutSeconds": 5},
}


def build_registry() -> PluginRegistry:
    registry = PluginRegistry()  # every installed plugin, via entry points
    for cls in OURS:
        if cls.name not in registry.names():  # not yet declared as an entry point
            registry.register(cls.name, cls.for_registry(registry))
    return registry


PLUGIN_NAMES = build_registry().names()


# ---------------------------------------------------------------------------------------------
# A deterministic external policy for ``webhook``: answers from the request alone.


class _Answer(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        demand = body["sample"]["inUse"] + body["sample"]["waiting"]
        if body["capacityModel"] == "legacy":
            answer: dict[str, Any] = {"alwaysOn": demand, "onDemand": 3, "reason": "legacy"}
        else:
            answer = {
                "alwaysOn": demand,
                "targetIdle": 1,
                "maximum": 2 * demand + 1,
                "reason": "ok",
            }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def webhook_url() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def registry() -> PluginRegistry:
    return build_registry()


# ---------------------------------------------------------------------------------------------
# Contexts.


def _history(kind: str) -> LocationHistory:
    if kind == "empty":
        return LocationHistory.empty()
    step = 300.0
    n = 3 if kind == "short" else 2 * 288  # two days of 5-minute rows
    at = NOW - step * np.arange(n, 0, -1, dtype=np.float64)
    hour = (at % 86400.0) / 3600.0
    in_use = np.round(4.0 + 3.0 * np.sin(hour / 24.0 * 2 * np.pi))
    if kind == "gappy":
        keep = (at < NOW - 40 * 3600) | (at > NOW - 20 * 3600)  # a 20-hour hole
        keep[-50:-40] = False
        at, in_use = at[keep], in_use[keep]
    n = at.shape[0]
    rng = np.random.default_rng(7)
    arrivals = np.asarray(rng.poisson(2.0, size=n), dtype=np.float64)
    cols = {
        "in_use": in_use.copy(),
        "waiting": np.zeros(n),
        "arrivals": arrivals,
        "placement_failures": np.zeros(n),
        "departures": arrivals.copy(),
        "allocated": in_use + 2,
        "idle": np.full(n, 2.0),
    }
    complete = np.ones(n, dtype=np.bool_)
    if kind == "nan":
        for col in cols.values():
            col[rng.random(n) < 0.2] = np.nan
        cols["in_use"][-5:] = np.nan
        complete[rng.random(n) < 0.2] = False
    return LocationHistory(at=at, complete=complete, **cols)


HISTORIES = ("empty", "short", "gappy", "nan", "full")


def make_ctx(
    tenancy: int, model: CapacityModel, history: str, *, complete: bool = True
) -> PolicyContext:
    t = tenancy
    return shared_ctx(
        _history(history),
        NOW,
        in_use=6,
        idle=2,
        waiting=1 if complete else 0,
        oldest_waiting_s=4.0,
        arrivals=2,
        departures=1,
        complete=complete,
        tenancy=t,
        model=model,
        stream_class="gen6n_small" if t == 12 else "gen4n_high" if t == 2 else "gen4n_ultra",
        setting=by_model(
            model,
            current=CapacitySetting(always_on=t, target_idle=t, maximum=4 * t),
            legacy=CapacitySetting(always_on=t, on_demand=2 * t),
        ),
        bounds=LocationBounds(0, MAX_BOUND),
        lead_time=168.0,
    )


def _params(name: str, url: str) -> dict[str, Any]:
    if name not in EXAMPLE_PARAMS:
        pytest.fail(
            f"policy plugin {name!r} is installed but has no example params: add a minimal "
            f"valid params dict for it to EXAMPLE_PARAMS in {Path(__file__).name}"
        )
    raw = json.loads(json.dumps(EXAMPLE_PARAMS[name]).replace(WEBHOOK_URL, url))
    assert isinstance(raw, dict)
    return raw


def _same(a: Recommendation, b: Recommendation) -> bool:
    def eq(x: float | None, y: float | None) -> bool:
        if x is None or y is None:
            return x is y
        return x == y or (math.isnan(x) and math.isnan(y))

    return (
        a.setting == b.setting
        and a.reason == b.reason
        and eq(a.forecast_in_use, b.forecast_in_use)
        and eq(a.forecast_arrivals_per_s, b.forecast_arrivals_per_s)
    )


# ---------------------------------------------------------------------------------------------
# The contract.


def test_every_plugin_has_example_params() -> None:
    missing = [n for n in PLUGIN_NAMES if n not in EXAMPLE_PARAMS]
    assert not missing, (
        f"installed policy plugins without example params: {missing}; add a minimal valid "
        f"params dict for each to EXAMPLE_PARAMS in {Path(__file__).name}"
    )
    assert {cls.name for cls in OURS} <= set(PLUGIN_NAMES)


@pytest.mark.parametrize("name", PLUGIN_NAMES)
@pytest.mark.parametrize("tenancy", [1, 2, 12])
def test_plugin_contract(
    name: str, tenancy: int, registry: PluginRegistry, webhook_url: str
) -> None:
    plugin = registry.get(name)
    params = registry.validate_params(name, _params(name, webhook_url))
    for model in CapacityModel:
        for history in HISTORIES:
            for complete in (True, False) if history == "full" else (True,):
                ctx = make_ctx(tenancy, model, history, complete=complete)
                where = (
                    f"{name} tenancy {tenancy} {model.value} history {history} complete {complete}"
                )
                first = plugin.decide(params, ctx)
                second = plugin.decide(params, ctx)
                assert _same(first, second), f"{where}: not deterministic"
                checked = check_recommendation(first, model, ctx.bounds, tenancy)
                assert isinstance(checked, Recommendation), f"{where}: {checked}"
                s = first.setting
                values = {"always_on": s.always_on}
                if model is CapacityModel.LEGACY:
                    assert s.on_demand is not None, where
                    assert (s.target_idle, s.maximum) == (0, 0), where
                    values["on_demand"] = s.on_demand
                else:
                    assert s.on_demand is None, where
                    values |= {"target_idle": s.target_idle, "maximum": s.maximum}
                for field, value in values.items():
                    assert isinstance(value, int), f"{where}: {field} {value!r}"
                    assert value % tenancy == 0, f"{where}: {field} {value} not × {tenancy}"
                    assert 0 <= value <= MAX_BOUND, f"{where}: {field} {value} out of bounds"
                assert s.ceiling <= MAX_BOUND, f"{where}: ceiling {s.ceiling}"
                assert isinstance(first.reason, str), where
                assert first.reason, where


def test_example_policy_files_are_valid(registry: PluginRegistry) -> None:
    """policies/*.yaml, ours included, load together (names and groups unique) with a
    resolver over the registry; ``autoscaler validate policies/`` does the same once the
    entry points are declared."""
    policies = load_policies([EXAMPLES_DIR], resolve_params=registry.validate_params)
    by_plugin = {p.name: p.plugin for p in policies}
    assert by_plugin["scheduled-launch"] == "scheduled"
    assert by_plugin["chain-fallback"] == "chain"
    assert by_plugin["webhook-external"] == "webhook"
    chain = next(p for p in policies if p.name == "chain-fallback")
    assert [e.plugin for e in chain.plugin_params.policies] == ["buffer", "slo", "predictive"]


def _slo_entries(node: object) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if node.get("plugin") == "slo":
            yield node
        for value in node.values():
            yield from _slo_entries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _slo_entries(item)


def test_example_slo_entries_carry_the_shipped_tuning() -> None:
    """An ``slo`` policy or entry without params gets the code's conservative defaults (half
    the miss budget, no feedback loop): the examples users copy carry the shipped file's tuned
    params instead, kept equal to it here; the shadow example also paces scale-down and aims at
    the service level as the shipped file does, so its plans are the ones it would apply."""
    shipped = yaml.safe_load((EXAMPLES_DIR / "default.yaml").read_text(encoding="utf-8"))
    tuned = shipped["spec"]["policy"]["params"]
    nested = {
        path.name: list(_slo_entries(yaml.safe_load(path.read_text(encoding="utf-8"))["spec"]))
        for path in sorted(EXAMPLES_DIR.glob("*.yaml"))
        if path.name != "default.yaml"
    }
    assert {name: len(entries) for name, entries in nested.items() if entries} == {
        "chain.yaml": 1,
        "dry-run.yaml": 1,
        "legacy.yaml": 1,
        "scheduled.yaml": 1,
    }
    for name, entries in nested.items():
        for entry in entries:
            assert entry["params"] == tuned, f"policies/{name}: copy the slo params of default.yaml"
    shadow = yaml.safe_load((EXAMPLES_DIR / "dry-run.yaml").read_text(encoding="utf-8"))["spec"]
    assert shadow["slo"] == shipped["spec"]["slo"]
    assert shadow["behavior"]["scaleDown"] == shipped["spec"]["behavior"]["scaleDown"]
