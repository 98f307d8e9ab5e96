"""Readers of the deployment files for the deploy tests: the Dockerfile's instructions, a
kustomization rendered the way ``kustomize build`` would (for what these manifests use), and
the metric names and labels the code really exposes.

No kustomize, promtool or Docker engine is needed: each reader is small and exact for the
subset the files in deploy/ use, and fails loudly on anything else, so a manifest that grows a
feature these readers do not know makes the tests fail rather than pass unchecked.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from autoscaler.metrics import MetricsSink

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "docker-compose.yml"
BASE = DEPLOY / "kubernetes" / "base"
OPERATOR_OVERLAY = DEPLOY / "kubernetes" / "overlays" / "prometheus-operator"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "autoscaler.json"
UNIT = DEPLOY / "systemd" / "autoscaler.service"

# Labels every scraped series carries besides its own (added by Prometheus).
TARGET_LABELS = frozenset({"job", "instance"})
# Metrics Prometheus itself produces for every target.
SCRAPE_METRICS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


# -- Dockerfile ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Instruction:
    keyword: str  # upper case
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON (exec) form's arguments; AssertionError for the shell form."""
        value = json.loads(self.args)
        assert isinstance(value, list), f"line {self.line}: {self.keyword} is not exec form"
        return [str(v) for v in value]


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = pending + line
        pending = ""
        keyword, _, args = text.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions per build stage (each starts with FROM); global ARGs before the first."""
    result: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            result.append([ins])
        elif result:
            result[-1].append(ins)
    return result


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """ENV KEY=VALUE pairs of one stage (values unquoted; $PATH-style references kept)."""
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword != "ENV":
            continue
        for token in shlex.split(ins.args):
            key, sep, value = token.partition("=")
            assert sep, f"line {ins.line}: use ENV KEY=VALUE, not the legacy form"
            env[key] = value
    return env


def build_args(instructions: list[Instruction]) -> dict[str, str]:
    """Global ARG defaults (before the first FROM)."""
    out: dict[str, str] = {}
    for ins in instructions:
        if ins.keyword == "FROM":
            break
        if ins.keyword == "ARG":
            key, _, value = ins.args.partition("=")
            out[key] = value
    return out


def image_env() -> dict[str, str]:
    """The final image's environment as set by the Dockerfile."""
    return env_of(stages(dockerfile_instructions())[-1])


# -- kustomize ---------------------------------------------------------------------------------
KNOWN_KUSTOMIZE_KEYS = frozenset(
    {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}
)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def render(directory: Path) -> list[dict[str, Any]]:
    """The resources of a kustomization, as ``kustomize build`` renders these files (minus
    the generated ConfigMaps' hash suffixes, which kustomize also writes into references)."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - KNOWN_KUSTOMIZE_KEYS
    assert not unknown, f"{directory}: kustomization fields this renderer does not know: {unknown}"
    resources: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            resources.extend(render(target))
        else:
            resources.extend(load_yaml_documents(target))
    for generator in kustomization.get("configMapGenerator", []):
        data = {}
        for file in generator["files"]:
            source = directory / file
            data[source.name] = source.read_text()
        resources.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    namespace = kustomization.get("namespace")
    for resource in resources:
        if namespace and resource["kind"] != "Namespace":
            resource["metadata"]["namespace"] = namespace
    for image in kustomization.get("images", []):
        for resource in resources:
            for container in pod_containers(resource):
                if container["image"] == image["name"]:
                    container["image"] = f"{image['newName']}:{image['newTag']}"
    return resources


def pod_containers(resource: dict[str, Any]) -> list[dict[str, Any]]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def only(resources: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [r for r in resources if r["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


# -- metrics -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ExposedMetric:
    family: str
    kind: str
    labels: frozenset[str]


def exposed_metrics() -> dict[str, ExposedMetric]:
    """Every series name a ``MetricsSink`` exposes (``_total`` for counters, ``_bucket`` etc.
    for histograms), with the labels it carries."""
    sink = MetricsSink()
    wrappers = [v for v in vars(sink).values() if isinstance(v, MetricWrapperBase)]
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
    }
    out: dict[str, ExposedMetric] = {}
    for family in sink.registry.collect():
        wrapper = next(w for w in wrappers if w._name == family.name)
        labels = frozenset(wrapper._labelnames)
        for suffix in suffixes[family.type]:
            extra = {"le"} if suffix == "_bucket" else set()
            out[family.name + suffix] = ExposedMetric(
                family.name, family.type, labels | extra | TARGET_LABELS
            )
    return out


_METRIC_RE = re.compile(r"\b(autoscaler_[a-z0-9_]+|up)\b(\{[^}]*\})?")
_MATCHER_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def metric_references(expr: str) -> list[tuple[str, dict[str, str]]]:
    """(metric name, {label: value}) of every metric selector in a PromQL expression."""
    refs = []
    for match in _METRIC_RE.finditer(expr):
        matchers = {m[0]: m[2] for m in _MATCHER_RE.findall(match.group(2) or "")}
        refs.append((match.group(1), matchers))
    return refs


def guard_names(source: Path = ROOT / "autoscaler" / "guard.py") -> set[str]:
    """The ``guard`` label values the code can produce: the first argument of every
    ``Veto(...)`` and ``ctx.veto(...)`` call (or its ``guard=`` keyword)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
        if name not in ("Veto", "veto"):
            continue
        candidates = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "guard")]
        for arg in candidates:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                names.add(arg.value)
    return names
