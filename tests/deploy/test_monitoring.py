"""The optional monitoring component (issue 16): rendered onto the production overlay, its
Services reach the pods' metrics ports, the ServiceMonitor selects them, and every
expression of the PrometheusRule and of the Grafana dashboard parses as PromQL and names only
metrics (and labels) the services really register."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import promql_parser
import pytest
from prometheus_client import CollectorRegistry

from services.common.metrics import RpcMetrics
from services.compute.metrics import ComputeMetrics
from services.conductor.metrics import ConductorMetrics
from tests.deploy.test_manifests import (
    CLUSTER_SCOPED,
    KUBERNETES,
    KUBERNETES_VERSION,
    NAMESPACE,
    kustomize,
)

pytestmark = pytest.mark.timeout(120)

COMPONENT = KUBERNETES / "components" / "monitoring"
DASHBOARD = COMPONENT / "nova-grpc-dashboard.json"
ROLES = ("api", "conductor", "compute")
WORKLOAD_KIND = {"api": "Deployment", "conductor": "Deployment", "compute": "DaemonSet"}
# what Prometheus adds to every series of a target (ServiceMonitor discovery), and its own
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container"}
PROMETHEUS_SERIES = {"up": set[str]()}
# what the issue asks the rules to watch, by alert
REQUIRED_ALERTS = {
    "NovaGrpcInstancesStuckInBuild",
    "NovaGrpcNoValidHostRateHigh",
    "NovaGrpcComputeHostsDown",
    "NovaGrpcReconcilerBusy",
    "NovaGrpcBuildFailuresHigh",
}

Manifest = dict[str, Any]


def exported_series() -> dict[str, set[str]]:
    """Every series name the three services can export, with its label names: read from
    the metric objects their composition roots register."""
    registry = CollectorRegistry()
    RpcMetrics.create(registry)
    ConductorMetrics.create(registry)
    ComputeMetrics.create(registry, queued=lambda: 0.0, running=lambda: 0.0)
    series: dict[str, set[str]] = {}
    for family in registry.collect():
        labels = set(getattr(registry._names_to_collectors[_any_name(family)], "_labelnames", ()))
        suffixes = {
            "counter": ("_total", "_created"),
            "histogram": ("_bucket", "_sum", "_count", "_created"),
            "gauge": ("",),
        }[family.type]
        for suffix in suffixes:
            series[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return series


def _any_name(family: Any) -> str:
    return str(family.name + ("_total" if family.type == "counter" else ""))


def selectors(expr: Any) -> Iterator[Any]:
    """Every vector selector in a parsed PromQL expression."""
    if isinstance(expr, promql_parser.VectorSelector):
        yield expr
        return
    for attribute in ("lhs", "rhs", "expr", "vector_selector", "param"):
        child = getattr(expr, attribute, None)
        if isinstance(child, promql_parser.Expr):
            yield from selectors(child)
    for child in getattr(expr, "args", None) or ():
        if isinstance(child, promql_parser.Expr):
            yield from selectors(child)


def check_expression(expr: str, where: str, jobs: set[str]) -> list[str]:
    """What is wrong with ``expr``: unknown metrics, unknown labels, jobs nobody scrapes."""
    known = {**exported_series(), **PROMETHEUS_SERIES}
    problems = []
    parsed = promql_parser.parse(expr.replace("$__rate_interval", "5m"))
    found = list(selectors(parsed))
    if not found:
        problems.append(f"{where}: reads no metric")
    for selector in found:
        if selector.name not in known:
            problems.append(f"{where}: no service exports {selector.name}")
            continue
        for matcher in selector.matchers.matchers:
            if matcher.name not in known[selector.name] | TARGET_LABELS:
                problems.append(f"{where}: {selector.name} has no label {matcher.name}")
            exact = matcher.op == promql_parser.MatchOp.Equal
            if matcher.name == "job" and exact and matcher.value not in jobs:
                problems.append(f"{where}: no target has job {matcher.value}")
    return problems


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> list[Manifest]:
    """The production overlay with the component, as an operator would add it (the overlay
    that takes the component names the namespace, as production's own does)."""
    tree = tmp_path_factory.mktemp("monitoring") / "kubernetes"
    shutil.copytree(KUBERNETES, tree, ignore=shutil.ignore_patterns("*.pem"))
    overlay = tree / "overlays" / "monitored"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        f"namespace: {NAMESPACE}\n"
        "resources:\n  - ../production\ncomponents:\n  - ../../components/monitoring\n"
    )
    return kustomize(overlay)


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    (match,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return match


def scrape_jobs(objects: list[Manifest]) -> set[str]:
    monitor = find(objects, "ServiceMonitor", "nova-grpc")
    label = monitor["spec"]["jobLabel"]
    return {s["metadata"]["labels"][label] for s in monitored_services(objects)}


def monitored_services(objects: list[Manifest]) -> list[Manifest]:
    monitor = find(objects, "ServiceMonitor", "nova-grpc")
    wanted = monitor["spec"]["selector"]["matchLabels"].items()
    return [
        o for o in objects
        if o["kind"] == "Service" and wanted <= o["metadata"].get("labels", {}).items()
    ]  # fmt: skip


def test_core_objects_are_valid_kubernetes(monitored: list[Manifest]) -> None:
    for o in monitored:
        if o["apiVersion"].startswith("monitoring.coreos.com/"):
            continue  # a CRD: checked field by field below
        kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        if o["kind"] not in CLUSTER_SCOPED:
            assert o["metadata"]["namespace"] == NAMESPACE, o["metadata"]["name"]


def test_the_component_is_optional() -> None:
    for overlay in ("production", "dev"):
        text = (KUBERNETES / "overlays" / overlay / "kustomization.yaml").read_text()
        assert "components/monitoring" not in text


def test_service_monitor_scrapes_every_role_through_its_metrics_port(
    monitored: list[Manifest],
) -> None:
    monitor = find(monitored, "ServiceMonitor", "nova-grpc")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    services = monitored_services(monitored)
    assert sorted(s["metadata"]["labels"]["app.kubernetes.io/component"] for s in services) == [
        "api", "compute", "conductor",
    ]  # fmt: skip
    for service in services:
        role = service["metadata"]["labels"]["app.kubernetes.io/component"]
        assert service["spec"]["publishNotReadyAddresses"] is True
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        workload = find(monitored, WORKLOAD_KIND[role], f"nova-grpc-{role}")
        template = workload["spec"]["template"]
        # the Service selects the role's pods, and its target port is a port they name
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        container_ports = {
            p.get("name"): p["containerPort"]
            for c in template["spec"]["containers"] for p in c.get("ports", [])
        }  # fmt: skip
        assert port["targetPort"] in container_ports, role
    assert scrape_jobs(monitored) == {f"nova-grpc-{r}" for r in ROLES}


def test_rules_are_well_formed_and_cover_what_the_issue_asks(monitored: list[Manifest]) -> None:
    rule = find(monitored, "PrometheusRule", "nova-grpc")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    alerts = {}
    for group in rule["spec"]["groups"]:
        assert group["name"] and group["rules"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
            assert r["labels"]["severity"] in {"warning", "critical"}
            assert r["annotations"]["summary"]
            alerts[r["alert"]] = r
    assert set(alerts) >= REQUIRED_ALERTS


def test_rule_expressions_read_metrics_the_services_export(monitored: list[Manifest]) -> None:
    rule = find(monitored, "PrometheusRule", "nova-grpc")
    jobs = scrape_jobs(monitored)
    problems = [
        problem
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        for problem in check_expression(str(r["expr"]), r["alert"], jobs)
    ]
    assert problems == []


def test_the_check_catches_a_wrong_name_or_label() -> None:
    """Controls: the check is not blind."""
    jobs = {"nova-grpc-conductor"}
    assert check_expression("nova_grpc_no_such_metric > 0", "x", jobs)
    assert check_expression('grpc_server_handled_total{code="OK"}', "x", jobs)
    assert check_expression('nova_grpc_instances{job="nova-grpc-elsewhere"}', "x", jobs)
    assert not check_expression('nova_grpc_instances{job="nova-grpc-conductor"}', "x", jobs)


def test_dashboard_queries_read_metrics_the_services_export(monitored: list[Manifest]) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    jobs = scrape_jobs(monitored)
    problems = []
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            problems += check_expression(target["expr"], panel["title"], jobs)
    assert problems == []
    # shipped to Grafana's sidecar as is
    config_map = find(monitored, "ConfigMap", "nova-grpc-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["nova-grpc-dashboard.json"]) == dashboard
