"""The backtest's in-process path agrees with the HTTP path on the same demand.

Both replay the same two-hour plan (peak ~20) on a service model with the same seed; one
controller reads and writes in-process (``twin.inprocess``), the other through aiobotocore over
HTTP against the emulator (``twin.emulator``, the composition root's ``build_controller``).
Same model, same policy, same plugin, same guards; what differs is only the wire (JSON
timestamps, pagination of the session listing, retries, decision ids). The policy runs tight
(target utilisation 1.0, no idle buffer) so some sessions wait and the comparison covers cold
starts, not only instant ones.

Tolerance, and why: none on counts. Session outcomes (instant, cold, failed), decisions and
capacity updates must be equal, and the bill equal up to float noise (1e-6 relative): the wire
carries every number the controller uses without loss (epoch-second timestamps survive the
protocol's serialisation; the sampler's windows are wider than any rounding), so any
difference means the two adapters disagree about the service, which is the bug this test is
here to catch. Measured: identical (132,313.99 slot-seconds both ways, 40 instant, 6 cold,
0 failed, 36 updates each).
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from autoscaler.backtest.runner import (
    RunOutcome,
    build_world,
    controller_initial,
    fit_policy,
    high_maximum,
    instant_start_threshold,
    model_params,
    replay,
    run_policy,
)
from autoscaler.backtest.sessions import SessionPlan, plan_sessions
from autoscaler.backtest.synthetic import synthetic_trace
from autoscaler.domain.models import CapacityModel
from autoscaler.policy.config import load_policy_file
from autoscaler.runtime import build_controller
from autoscaler.settings import load_settings
from autoscaler.store import HistoryStore
from autoscaler.twin.emulator import Emulator

CLASS = "gen4n_high"
SEED = 5
POLICY = """
apiVersion: autoscaler.gameliftstreams/v1
kind: CapacityPolicy
metadata: {name: agreement}
spec:
  streamGroups: {ids: [sg-placeholder]}
  defaults: {maxCapacity: 60}
  policy:
    plugin: target-tracking
    params: {targetUtilization: 1.0, minIdle: 0}
"""


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-a-real-secret")
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_GAMELIFTSTREAMS"):
        monkeypatch.delenv(var, raising=False)


def _plan() -> SessionPlan:
    trace = synthetic_trace(peak=100, days=0.25, step_s=600, seed=1, trough_ratio=2)
    return plan_sessions(trace, peak=20, seed=SEED, days=2 / 24)


async def _over_http(
    plan: SessionPlan, policy_file: Path, tmp_path: Path
) -> tuple[RunOutcome, list[float]]:
    tenancy = 2
    world = build_world(
        plan,
        stream_class=CLASS,
        capacity_model=CapacityModel.CURRENT,
        seed=SEED,
        initial=controller_initial(plan, tenancy, CapacityModel.CURRENT),
        params=model_params(60.0),
    )
    top = max(high_maximum(plan, tenancy).values())
    policy = fit_policy(load_policy_file(policy_file), world.group_id, top)
    async with Emulator(clock=world.clock, model=world.model, seed=SEED) as emulator:
        settings = load_settings(
            None,
            env_file=None,
            policy_paths=[policy_file],
            aws_region=world.region,
            aws_endpoint_url=emulator.url,
            state_dir=tmp_path / "state",
            aws_max_attempts=1,
            api_rate_limits=False,  # quotas are per wall-clock second; this runs in virtual time
            instant_start_s=instant_start_threshold(world.model.params),  # as the backtest's
        )
        async with build_controller(
            settings, clock=world.clock, interval_s=60.0, policies=[policy], write_audit=False
        ) as built:
            outcome = await replay(
                world,
                plan,
                tick=built.controller.tick,
                interval_s=60.0,
                label="http",
                update_count=lambda: emulator.calls["UpdateStreamGroup"].accepted,
            )
            return outcome, _late_starts(built.store)


def _late_starts(store: HistoryStore) -> list[float]:
    (group, location), *_ = store.locations()
    late = store.history(group, location, since=0.0).late_starts
    assert late is not None
    return [float(x) for x in late]


async def test_in_process_and_http_runs_agree(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(textwrap.dedent(POLICY))
    plan = _plan()
    http, http_late = await _over_http(plan, policy_file, tmp_path)
    stores: list[HistoryStore] = []

    def keep_store(_c: object, _a: object, store: HistoryStore) -> None:
        stores.append(store)
        store.close = lambda: None  # type: ignore[method-assign]  # read it after the run

    # run_policy calls asyncio.run itself: run it in a worker thread, off this test's loop.
    local = await asyncio.to_thread(
        run_policy,
        plan,
        policy=load_policy_file(policy_file),
        stream_class=CLASS,
        capacity_model=CapacityModel.CURRENT,
        seed=SEED,
        params=model_params(60.0),
        instrument=keep_store,
    )
    assert local.decisions == http.decisions == 121
    assert local.updates > 0
    assert (local.instant, local.cold, local.failed) == (http.instant, http.cold, http.failed)
    assert local.updates == http.updates
    assert local.cold > 0  # the policy runs tight, so waiting sessions are compared too
    assert http.allocated_slot_s == pytest.approx(local.allocated_slot_s, rel=1e-6)
    assert http.kept_empty_slot_s == pytest.approx(local.kept_empty_slot_s, rel=1e-6)
    assert http.held_empty_slot_s == pytest.approx(local.held_empty_slot_s, rel=1e-6)
    assert local.held_empty_slot_s > 0  # ended sessions left surplus hosts to be held
    # The late starts the controller measures (what the slo policy's feedback reads) survive
    # the wire tick for tick: CreatedAt and LastUpdatedAt keep their sub-second parts.
    local_late = _late_starts(stores[0])
    assert local_late == http_late
    assert sum(local_late) >= local.cold > 0
