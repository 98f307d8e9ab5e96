"""Errors cross process boundaries intact (the decision bench and any caller using a process
pool get the worker's error, not a BrokenProcessPool from a failed unpickle)."""

from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor

import pytest

from autoscaler.domain.errors import (
    SERVICE_ERRORS_BY_CODE,
    ConfigError,
    ServiceError,
    ThrottledError,
)


def _raise_config_error() -> None:
    raise ConfigError("policies/a.yaml", ["spec.policy.params.x: unknown parameter"])


def test_config_error_round_trips_through_pickle() -> None:
    err = ConfigError("policies/a.yaml", ["first problem", "second problem"])
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ConfigError
    assert (back.source, back.problems, str(back)) == (err.source, err.problems, str(err))


@pytest.mark.parametrize(("code", "cls"), sorted(SERVICE_ERRORS_BY_CODE.items()))
def test_service_errors_round_trip_through_pickle(code: str, cls: type[ServiceError]) -> None:
    err = cls("the group is busy")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is cls
    assert back.code == code
    assert (back.message, str(back)) == ("the group is busy", str(err))


def test_instance_attributes_survive_pickling() -> None:
    err = ThrottledError("slow down")
    err.retry_after_s = 7.5
    assert pickle.loads(pickle.dumps(err)).retry_after_s == 7.5


def test_a_worker_process_error_reaches_the_parent() -> None:
    with ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_raise_config_error)
        with pytest.raises(ConfigError) as caught:
            future.result(timeout=30)
    assert caught.value.problems == ["spec.policy.params.x: unknown parameter"]
