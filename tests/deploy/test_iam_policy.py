"""The IAM policies in deploy/ grant exactly the AWS calls the code can make.

The set of operations is derived from the adapters' source (every method called on a botocore
client, and every paginator asked for), not typed here, so adding a call without granting it —
or granting one nobody makes — fails this test. GameLift Streams comes from
``aws/gameliftstreams.py``, the leader lease (DynamoDB) from ``aws/lease.py`` and the history
backfill (CloudWatch) from ``aws/cloudwatch.py``. The read-only policy (dry-run, one replica,
no lease) grants the GameLift Streams reader's calls and the CloudWatch reads.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "autoscaler" / "aws" / "gameliftstreams.py"
LEASE = ROOT / "autoscaler" / "aws" / "lease.py"
CLOUDWATCH = ROOT / "autoscaler" / "aws" / "cloudwatch.py"
CLIENT_NAMES = {"_client", "_ops", "client"}


def _operation_names(service: str) -> dict[str, str]:
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def operations_called(source: Path, service: str = "gameliftstreams") -> tuple[set[str], set[str]]:
    """(operations called by any class, operations called by the read-only reader)."""
    by_method = _operation_names(service)
    tree = ast.parse(source.read_text())
    everything: set[str] = set()
    reader: set[str] = set()

    def collect(node: ast.AST) -> set[str]:
        found: set[str] = set()
        for sub in ast.walk(node):
            if not isinstance(sub, ast.Call):
                continue
            func = sub.func
            if isinstance(func, ast.Attribute):
                owner = func.value
                owner_name = (
                    owner.attr
                    if isinstance(owner, ast.Attribute)
                    else owner.id
                    if isinstance(owner, ast.Name)
                    else ""
                )
                if owner_name in CLIENT_NAMES and func.attr in by_method:
                    found.add(by_method[func.attr])
            # paginators and pages are asked for by method name
            by_name = isinstance(func, ast.Attribute) and func.attr in ("get_paginator", "_pages")
            for arg in sub.args:
                if (
                    by_name
                    and isinstance(arg, ast.Constant)
                    and isinstance(arg.value, str)
                    and arg.value in by_method
                ):
                    found.add(by_method[arg.value])
        return found

    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            ops = collect(node)
            everything |= ops
            if node.name == "AwsGameLiftStreamsReader":
                reader |= ops
    return everything, reader


SERVICES = ("gameliftstreams", "dynamodb", "cloudwatch")


def statements(policy: Path) -> list[dict[str, Any]]:
    doc = json.loads(policy.read_text())
    out: list[dict[str, Any]] = doc["Statement"]
    return out


def granted(policy: Path) -> set[str]:
    """Every granted action as ``service:Operation``."""
    actions: set[str] = set()
    for statement in statements(policy):
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert action.split(":", 1)[0] in SERVICES, action
            assert "*" not in action, f"wildcard action {action}"
            actions.add(action)
    return actions


def _qualified(service: str, ops: set[str]) -> set[str]:
    return {f"{service}:{op}" for op in ops}


def full_calls() -> set[str]:
    gls, _ = operations_called(ADAPTER)
    lease, _ = operations_called(LEASE, "dynamodb")
    history, _ = operations_called(CLOUDWATCH, "cloudwatch")
    return (
        _qualified("gameliftstreams", gls)
        | _qualified("dynamodb", lease)
        | _qualified("cloudwatch", history)
    )


def read_only_calls() -> set[str]:
    _, reader = operations_called(ADAPTER)
    history, _ = operations_called(CLOUDWATCH, "cloudwatch")
    return _qualified("gameliftstreams", reader) | _qualified("cloudwatch", history)


def test_the_adapters_call_what_we_expect() -> None:
    everything, reader = operations_called(ADAPTER)
    assert {"GetStreamGroup", "ListStreamSessions", "UpdateStreamGroup"} <= everything
    assert "UpdateStreamGroup" not in reader
    assert operations_called(LEASE, "dynamodb")[0] == {"UpdateItem", "GetItem"}
    assert operations_called(CLOUDWATCH, "cloudwatch")[0] == {"GetMetricData"}


def test_full_policy_grants_exactly_the_calls_made() -> None:
    assert granted(ROOT / "deploy" / "iam-policy.json") == full_calls()


def test_read_only_policy_grants_exactly_the_reader_calls() -> None:
    assert granted(ROOT / "deploy" / "iam-policy-readonly.json") == read_only_calls()


def test_resources_are_scoped_where_aws_allows() -> None:
    for name in ("iam-policy.json", "iam-policy-readonly.json"):
        for statement in statements(ROOT / "deploy" / name):
            services = {a.split(":", 1)[0] for a in statement["Action"]}
            assert len(services) == 1, statement  # one service per statement
            resource = statement["Resource"]
            if services == {"dynamodb"}:
                # the lease table only, never the account's other tables
                assert resource == "arn:aws:dynamodb:*:*:table/autoscaler-*"
            elif services == {"cloudwatch"}:
                # GetMetricData has no resource-level permissions
                assert resource == "*"
            elif statement["Action"] != ["gameliftstreams:ListStreamGroups"]:
                assert resource == "arn:aws:gameliftstreams:*:*:streamgroup/*"
