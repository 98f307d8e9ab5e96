"""The IAM policies in deploy/ grant exactly the GameLift Streams calls the code can make.

The set of operations is derived from the adapter's source (every method called on the
botocore client, and every paginator it asks for), not typed here, so adding a call without
granting it — or granting one nobody makes — fails this test.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import botocore.session

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "autoscaler" / "aws" / "gameliftstreams.py"
CLIENT_NAMES = {"_client", "_ops", "client"}


def _operation_names() -> dict[str, str]:
    model = botocore.session.get_session().get_service_model("gameliftstreams")
    from botocore import xform_name

    return {xform_name(op): op for op in model.operation_names}


def operations_called(source: Path) -> tuple[set[str], set[str]]:
    """(operations called by any class, operations called by the read-only reader)."""
    by_method = _operation_names()
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
            for arg in sub.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    if arg.value in by_method and (
                        isinstance(func, ast.Attribute) and func.attr in ("get_paginator", "_pages")
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


def granted(policy: Path) -> set[str]:
    doc = json.loads(policy.read_text())
    actions: set[str] = set()
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        for action in statement["Action"]:
            assert action.startswith("gameliftstreams:"), action
            assert "*" not in action, f"wildcard action {action}"
            actions.add(action.split(":", 1)[1])
    return actions


def test_the_adapter_calls_what_we_expect() -> None:
    everything, reader = operations_called(ADAPTER)
    assert {"GetStreamGroup", "ListStreamSessions", "UpdateStreamGroup"} <= everything
    assert "UpdateStreamGroup" not in reader


def test_full_policy_grants_exactly_the_calls_made() -> None:
    everything, _ = operations_called(ADAPTER)
    assert granted(ROOT / "deploy" / "iam-policy.json") == everything


def test_read_only_policy_grants_exactly_the_reader_calls() -> None:
    _, reader = operations_called(ADAPTER)
    assert granted(ROOT / "deploy" / "iam-policy-readonly.json") == reader
