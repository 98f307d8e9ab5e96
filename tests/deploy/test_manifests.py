"""The deployment artifacts in deploy/ agree with the code and with each other.

Checked against the code, not against copies typed here: the settings the Deployment, the
image and the compose file produce are loaded with ``load_settings``; the policy files with
``load_policies``; metric names and labels come from a live ``MetricsSink`` registry; guard
names from guard.py; the shutdown grace from the runtime. Kubernetes objects are validated
against the Kubernetes OpenAPI schemas bundled by ``kubernetes-validate`` (offline).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.policy.config import load_policies
from autoscaler.runtime import SHUTDOWN_GRACE_S
from autoscaler.settings import Settings, load_settings
from tests.deploy.deployfiles import (
    ALERTS,
    BASE,
    COMPOSE,
    DASHBOARD,
    DEPLOY,
    DOCKERFILE,
    OPERATOR_OVERLAY,
    PROMETHEUS,
    ROOT,
    SCRAPE_METRICS,
    UNIT,
    build_args,
    dockerfile_instructions,
    env_of,
    exposed_metrics,
    guard_names,
    image_env,
    load_yaml_documents,
    metric_references,
    only,
    pod_containers,
    render,
    stages,
)

HTTP_PORT = Settings.model_fields["http_port"].default
POD_LABELS = {"app.kubernetes.io/name": "autoscaler", "app.kubernetes.io/component": "controller"}


def _yaml_files() -> list[Path]:
    return sorted(p for ext in ("*.yml", "*.yaml") for p in DEPLOY.rglob(ext))


# -- every file parses --------------------------------------------------------------------------
@pytest.mark.parametrize("path", _yaml_files(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_yaml_parses(path: Path) -> None:
    assert load_yaml_documents(path), f"{path} is empty"


def test_dashboard_is_json() -> None:
    assert json.loads(DASHBOARD.read_text())["uid"] == "autoscaler"


# -- Kubernetes ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(BASE)


@pytest.fixture(scope="module")
def deployment(base: list[dict[str, Any]]) -> dict[str, Any]:
    return only(base, "Deployment")


@pytest.fixture(scope="module")
def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = pod_containers(deployment)
    return c


def test_every_listed_resource_exists_and_every_manifest_is_listed() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    listed = {*kustomization["resources"]}
    for generator in kustomization["configMapGenerator"]:
        listed.update(generator["files"])
    for entry in listed:
        assert (BASE / entry).is_file(), entry
    on_disk = {str(p.relative_to(BASE)) for p in BASE.rglob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == listed, "a manifest in base/ that kustomization.yaml does not list"


def test_base_has_the_expected_objects(base: list[dict[str, Any]]) -> None:
    kinds = sorted(r["kind"] for r in base)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "Deployment",
            "Service",
            "PodDisruptionBudget",
            "ConfigMap",
            "ConfigMap",
        ]
    )
    namespace = only(base, "Namespace")["metadata"]["name"]
    for resource in base:
        if resource["kind"] != "Namespace":
            assert resource["metadata"]["namespace"] == namespace


def test_selectors_select_the_deployments_pods(base: list[dict[str, Any]]) -> None:
    deployment = only(base, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels == POD_LABELS
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "PodDisruptionBudget": only(base, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        "Service": only(base, "Service")["spec"]["selector"],
        "topologySpread": deployment["spec"]["template"]["spec"]["topologySpreadConstraints"][0][
            "labelSelector"
        ]["matchLabels"],
    }
    for owner, selector in selectors.items():
        assert selector, owner
        assert selector.items() <= pod_labels.items(), owner


def test_two_replicas_a_pdb_and_a_strategy_that_can_finish(base: list[dict[str, Any]]) -> None:
    deployment = only(base, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    pdb = only(base, "PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1
    # The standby is never ready: it must not block drains, nor a rolling update.
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_probes_hit_health_endpoints_on_the_metrics_port(container: dict[str, Any]) -> None:
    (port,) = container["ports"]
    assert port == {"name": "metrics", "containerPort": HTTP_PORT, "protocol": "TCP"}
    expected = {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for probe, path in expected.items():
        get = container[probe]["httpGet"]
        assert get == {"path": path, "port": "metrics"}, probe


def test_service_exposes_the_metrics_port(base: list[dict[str, Any]]) -> None:
    service = only(base, "Service")["spec"]
    assert service["ports"] == [
        {"name": "metrics", "port": HTTP_PORT, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["publishNotReadyAddresses"] is True


def test_pod_security(deployment: dict[str, Any], container: dict[str, Any]) -> None:
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    res = container["resources"]
    assert set(res["requests"]) == {"cpu", "memory"} == set(res["limits"])


def test_namespace_enforces_restricted_pod_security(base: list[dict[str, Any]]) -> None:
    labels = only(base, "Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_service_account_has_the_irsa_annotation(base: list[dict[str, Any]]) -> None:
    sa = only(base, "ServiceAccount")
    assert (
        sa["metadata"]["name"]
        == only(base, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    )
    arn = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert re.fullmatch(r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+", arn)


def test_volumes_mounts_and_config_maps_agree(
    base: list[dict[str, Any]], deployment: dict[str, Any], container: dict[str, Any]
) -> None:
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert set(volumes) == set(mounts)
    generated = {r["metadata"]["name"] for r in base if r["kind"] == "ConfigMap"}
    referenced = {v["configMap"]["name"] for v in volumes.values() if "configMap" in v}
    assert referenced == generated
    for name in ("state", "tmp"):
        assert "emptyDir" in volumes[name]
    assert mounts["tmp"]["mountPath"] == "/tmp"
    for name in ("settings", "policies"):
        assert mounts[name]["readOnly"] is True


def test_the_pods_settings_load(
    monkeypatch: pytest.MonkeyPatch, base: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    """The image's environment + the Deployment's + the mounted settings.yaml make valid
    settings that point at the mounts."""
    for key in list(os.environ):
        if key.startswith(("AUTOSCALER_", "AWS_")):
            monkeypatch.delenv(key)
    for key, value in image_env().items():
        if key.startswith("AUTOSCALER_"):
            monkeypatch.setenv(key, value)
    for item in container["env"]:
        monkeypatch.setenv(item["name"], item["value"])
    mounts = {m["name"]: Path(m["mountPath"]) for m in container["volumeMounts"]}
    args = container["args"]
    config_in_pod = Path(args[args.index("--config") + 1])
    assert config_in_pod.parent == mounts["settings"]
    settings = load_settings(BASE / config_in_pod.name, env_file=None)
    assert settings.http_host == "0.0.0.0"
    assert settings.http_port == HTTP_PORT
    assert settings.state_dir == mounts["state"]
    assert settings.policy_paths == [mounts["policies"]]
    assert settings.aws_region is not None
    values = settings.model_dump()
    assert values["lease_backend"] == "dynamodb"
    assert values["lease_table"]


def test_the_pods_policies_load() -> None:
    policies = load_policies([BASE / "policies"])
    assert [p.name for p in policies] == ["default"]


def test_the_pods_default_policy_is_the_shipped_one() -> None:
    """kustomize reads only files under the kustomization, so the pods' policy is a copy of
    policies/default.yaml: it had fallen behind the tuned parameters (a Kubernetes deployment
    ran the untuned policy, half the miss budget and 20 %-a-minute scale-down)."""
    copy = (BASE / "policies" / "default.yaml").read_text(encoding="utf-8")
    shipped = (ROOT / "policies" / "default.yaml").read_text(encoding="utf-8")
    assert copy == shipped, "copy policies/default.yaml to deploy/kubernetes/base/policies/"


def test_manifests_match_the_kubernetes_schemas(base: list[dict[str, Any]]) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate.utils",
        reason="kubernetes-validate (the offline Kubernetes schemas) is a dev extra",
    )
    version = kv.latest_version()
    for resource in base:
        # strict: an unknown or misspelt field is an error, not silently dropped by the API
        kv.validate(resource, version, strict=True)


def test_schema_validation_catches_a_bad_manifest(deployment: dict[str, Any]) -> None:
    kv = pytest.importorskip(
        "kubernetes_validate.utils",
        reason="kubernetes-validate (the offline Kubernetes schemas) is a dev extra",
    )
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFs"] = True
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, kv.latest_version(), strict=True)


def test_operator_overlay_adds_monitor_and_rules(base: list[dict[str, Any]]) -> None:
    overlay = render(OPERATOR_OVERLAY)
    assert len(overlay) == len(base) + 2
    monitor = only(overlay, "ServiceMonitor")
    service = only(overlay, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    # The alert rules job="autoscaler" is the Service's name under a ServiceMonitor.
    assert service["metadata"]["name"] == "autoscaler"
    rule = only(overlay, "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(ALERTS.read_text()), "alerts.yml and the rule differ"


# -- Prometheus ---------------------------------------------------------------------------------
def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_are_complete() -> None:
    rules = _rules()
    names = [r["alert"] for r in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
        assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_alerts_cover_the_required_conditions() -> None:
    exprs = " ".join(r["expr"] for r in _rules())
    for needle in (
        "time() - max by (job) (autoscaler_last_successful_tick_timestamp_seconds) > 300",
        "rate(autoscaler_placement_failures_total",
        'autoscaler_guard_vetoes_total{guard="drift"}',
        'autoscaler_guard_vetoes_total{guard="budget"}',
        "autoscaler_group_expires_in_seconds < 14 * 86400",
        "autoscaler_incomplete_samples_total",
        'autoscaler_api_calls_total{operation="ListStreamSessions"}',
    ):
        assert needle in exprs, needle


def _check_references(exprs: list[str]) -> None:
    metrics = exposed_metrics()
    guards = guard_names()
    for expr in exprs:
        refs = metric_references(expr)
        assert refs, f"no metric in {expr!r}"
        for name, matchers in refs:
            if name in SCRAPE_METRICS:
                assert set(matchers) <= {"job", "instance"}, expr
                continue
            assert name in metrics, f"{name} is not exposed by MetricsSink ({expr!r})"
            unknown = set(matchers) - metrics[name].labels
            assert not unknown, f"{name} has no label {unknown} ({expr!r})"
            if "guard" in matchers and "~" not in expr:
                assert matchers["guard"] in guards, f"no guard named {matchers['guard']!r}"


def test_alert_rules_use_real_metrics_labels_and_guards() -> None:
    _check_references([r["expr"] for r in _rules()])


def test_reference_checker_rejects_unknown_names() -> None:
    with pytest.raises(AssertionError, match="not exposed"):
        _check_references(["rate(autoscaler_placement_failures[5m])"])  # no _total
    with pytest.raises(AssertionError, match="no label"):
        _check_references(['autoscaler_capacity_idle{stream_group="x"}'])
    with pytest.raises(AssertionError, match="no guard"):
        _check_references(['autoscaler_guard_vetoes_total{guard="drfit"}'])


def test_prometheus_scrapes_the_compose_controller_and_loads_the_rules() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    compose = yaml.safe_load(COMPOSE.read_text())
    (rule_file,) = config["rule_files"]
    mount = next(
        v for v in compose["services"]["prometheus"]["volumes"] if v.startswith("./prometheus:")
    )
    container_dir = mount.split(":")[1]
    assert Path(rule_file).parent == Path(container_dir)
    assert (ALERTS.parent / Path(rule_file).name) == ALERTS
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "autoscaler"  # the alerts' job label
    (target,) = job["static_configs"][0]["targets"]
    assert target == f"controller:{HTTP_PORT}"
    assert "controller" in compose["services"]


# -- Grafana ------------------------------------------------------------------------------------
def test_dashboard_panels_query_real_metrics() -> None:
    dash = json.loads(DASHBOARD.read_text())
    panels = dash["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    exprs = [t["expr"] for p in panels for t in p.get("targets", [])]
    _check_references(exprs)
    variables = {v["name"] for v in dash["templating"]["list"]}
    used = set(re.findall(r"\$(\w+)", " ".join(exprs))) - {"__rate_interval"}
    assert used <= variables
    shown = " ".join(exprs)
    for metric in (
        "autoscaler_sessions_in_use",
        "autoscaler_capacity_idle",
        "autoscaler_capacity_allocated",
        "autoscaler_capacity_setting",
        "autoscaler_forecast_in_use",
        "autoscaler_placement_failures_total",
        "autoscaler_tick_duration_seconds_bucket",
        "autoscaler_api_calls_total",
        "autoscaler_guard_vetoes_total",
    ):
        assert metric in shown, metric
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


# -- Dockerfile ---------------------------------------------------------------------------------
def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    instructions = dockerfile_instructions()
    parts = stages(instructions)
    assert len(parts) >= 2
    base_image = build_args(instructions)["PYTHON_IMAGE"]
    assert base_image == "python:3.11-slim"
    assert parts[0][0].args.endswith("AS builder")
    final = parts[-1]
    assert final[0].args == "${PYTHON_IMAGE}"
    final_text = " ".join(i.args for i in final)
    for tool in ("apt-get", "gcc", "build-essential", "pip wheel", "pip install"):
        assert tool not in final_text, f"{tool} in the final stage"
    (user,) = [i for i in final if i.keyword == "USER"]
    uid = user.args.split(":")[0]
    assert uid.isdigit()
    assert int(uid) == 10001
    keywords = [i.keyword for i in final]
    assert keywords.index("USER") > max(
        n for n, k in enumerate(keywords) if k in ("RUN", "COPY")
    ), "everything after USER runs as the user"


def test_dockerfile_entrypoint_health_and_environment() -> None:
    final = stages(dockerfile_instructions())[-1]
    by = {i.keyword: i for i in final}
    assert by["ENTRYPOINT"].exec_form() == ["autoscaler"]
    assert by["CMD"].exec_form() == ["run", "--config", "/etc/autoscaler/settings.yaml"]
    check = by["HEALTHCHECK"].args
    assert "CMD [" in check
    health = json.loads(check[check.index("[") :])
    assert health[:2] == ["python", "-c"]
    assert "/healthz" in health[2]
    env = env_of(final)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["AUTOSCALER_HTTP_HOST"] == "0.0.0.0"
    assert int(env["AUTOSCALER_HTTP_PORT"]) == HTTP_PORT
    volumes = json.loads(by["VOLUME"].args)
    assert volumes == [env["AUTOSCALER_STATE_DIR"]] == ["/var/lib/autoscaler"]
    # outside a container the listener stays on loopback
    assert Settings.model_fields["http_host"].default == "127.0.0.1"


def test_dockerfile_copies_exist_and_are_in_the_build_context() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for ins in dockerfile_instructions():
        if ins.keyword != "COPY" or ins.args.startswith("--from"):
            continue
        *sources, _dest = ins.args.split()
        for source in sources:
            assert (ROOT / source).exists(), source
            excluded = [p for p in ignored if source == p or source.startswith(p + "/")]
            assert not excluded, f"{source} is excluded by .dockerignore ({excluded})"
    for heavy in (".venv", ".git", "tests"):
        assert heavy in ignored


def test_the_images_default_settings_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("AUTOSCALER_"):
            monkeypatch.delenv(key)
    for key, value in image_env().items():
        if key.startswith("AUTOSCALER_"):
            monkeypatch.setenv(key, value)
    settings = load_settings(DEPLOY / "container" / "settings.yaml", env_file=None)
    assert settings.policy_paths == [Path("/etc/autoscaler/policies")]
    assert settings.state_dir == Path("/var/lib/autoscaler")


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_docker_build() -> None:
    if not _docker_engine():
        pytest.skip("no Docker engine on this machine")
    tag = "autoscaler:deploy-test"
    subprocess.run(
        ["docker", "build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT)], check=True, timeout=900
    )
    user = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--entrypoint", "id", tag, "-u"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert user.stdout.strip() == "10001"
    version = subprocess.run(
        ["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", tag, "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "run" in version.stdout


# -- systemd ------------------------------------------------------------------------------------
def _unit() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "[")):
            continue
        key, _, value = line.partition("=")
        values.setdefault(key, []).append(value)
    return values


def test_unit_hardening_and_lifecycle() -> None:
    unit = _unit()
    assert unit["DynamicUser"] == ["yes"]
    assert unit["StateDirectory"] == ["autoscaler"]
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute": "yes",
        "Restart": "on-failure",
        "ExecReload": "/bin/kill -HUP $MAINPID",
    }.items():
        assert unit[key] == [value], key
    assert "@system-service" in unit["SystemCallFilter"]
    timeout = unit["TimeoutStopSec"][0]
    assert timeout.endswith("s")
    assert float(timeout[:-1]) >= SHUTDOWN_GRACE_S + 5
    env = dict(item.split("=", 1) for item in unit["Environment"][0].split())
    assert env["AUTOSCALER_STATE_DIR"] == "/var/lib/" + unit["StateDirectory"][0]
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    exec_start = unit["ExecStart"][0].split()
    assert exec_start[1:] == ["run", "--config", "/etc/autoscaler/settings.yaml"]


def _runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's console script (verify checks that
    the binary exists); every other line unchanged."""
    script = Path(sys.executable).with_name("autoscaler")
    assert script.is_file()
    text = UNIT.read_text().replace("/opt/autoscaler/bin/autoscaler", str(script))
    path = tmp_path / "autoscaler.service"
    path.write_text(text)
    return path


def test_unit_verifies_and_scores_well(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = _runnable_unit(tmp_path)
    verify = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=30, check=False
    )
    assert verify.returncode == 0, verify.stderr
    assert not verify.stderr.strip(), verify.stderr
    security = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", security.stdout)
    assert found, security.stdout + security.stderr
    assert float(found.group(1)) <= 2.0, security.stdout


_PR_SET_MDWE = 65
_PR_MDWE_REFUSE_EXEC_GAIN = 1

_UNDER_MDWE = textwrap.dedent(
    """
    import asyncio, ctypes, os, sys
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl({set_mdwe}, {refuse}, 0, 0, 0) != 0:
        sys.exit(77)
    from pathlib import Path
    from autoscaler.domain.clock import ManualClock
    from autoscaler.runtime import run_once
    from autoscaler.settings import load_settings
    from autoscaler.twin.emulator import Emulator
    from autoscaler.twin.model import LocationConfigInput

    async def main() -> int:
        clock = ManualClock()
        async with Emulator(clock=clock, seed=1) as emulator:
            model = emulator.model
            app = model.create_application(region="us-west-2", description="game",
                runtime={{"Type": "PROTON", "Version": "20241007"}},
                executable_path="game.exe", source_uri="s3://bucket/game")
            clock.advance(60)
            model.create_stream_group(region="us-west-2", description="mdwe",
                stream_class="gen4n_high", default_application_id=app.app_id,
                locations=[LocationConfigInput("us-west-2", always_on=2, target_idle=0,
                                               maximum=10)],
                tags={{"autoscaler-policy": "default"}})
            clock.advance(600)
            model.advance()
            settings = load_settings(None, env_file=None, policy_paths=[Path(sys.argv[1])],
                aws_region="us-west-2", aws_endpoint_url=emulator.url,
                state_dir=Path(sys.argv[2]), dry_run=True)
            report = await run_once(settings, dry_run=True, clock=clock)
            print("groups", len(report.groups), "ok", report.ok)
            return 0 if report.ok and len(report.groups) == 1 else 1

    sys.exit(asyncio.run(main()))
    """
).format(set_mdwe=_PR_SET_MDWE, refuse=_PR_MDWE_REFUSE_EXEC_GAIN)


def test_daemon_runs_under_memory_deny_write_execute(tmp_path: Path) -> None:
    """MemoryDenyWriteExecute=yes is safe: a whole tick (numpy, pandas, aiohttp, botocore,
    sqlite) runs in a process under the kernel's own W^X lock (PR_SET_MDWE, what systemd uses
    where the kernel has it)."""
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "not-a-real-secret",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for var in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_GAMELIFTSTREAMS"):
        env.pop(var, None)
    done = subprocess.run(
        [sys.executable, "-c", _UNDER_MDWE, str(BASE / "policies"), str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=50,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    if done.returncode == 77:
        pytest.skip(f"this kernel has no PR_SET_MDWE ({os.uname().release})")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "groups 1 ok True" in done.stdout


def test_mdwe_really_refuses_executable_writable_memory() -> None:
    """The check above means something: under PR_SET_MDWE an RWX mapping fails."""
    probe = textwrap.dedent(
        f"""
        import ctypes, mmap, sys
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl({_PR_SET_MDWE}, {_PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
            sys.exit(77)
        try:
            mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        except OSError:
            sys.exit(0)
        sys.exit(1)
        """
    )
    done = subprocess.run([sys.executable, "-c", probe], timeout=30, check=False)
    if done.returncode == 77:
        pytest.skip(f"this kernel has no PR_SET_MDWE ({os.uname().release})")
    assert done.returncode == 0
