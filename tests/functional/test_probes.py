"""Liveness is not readiness (issue 16): api, conductor and compute as real processes on a
PostgreSQL cluster of the test's own, which the test stops for longer than the manifests'
liveness probe would take to give up. Readiness follows the database; liveness never fails,
no process exits, and every service is ready again within seconds of the database returning.

The kubelet is replayed at a compressed period: every ``PERIOD`` seconds each service's
liveness is asked with the manifest's ``timeoutSeconds``, for more than the manifest's
``failureThreshold`` periods of outage. One failed answer fails the test (the kubelet would
need ``failureThreshold`` in a row), so the compression only makes the test stricter.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.manage import issue_token
from services.common.db.migrate import upgrade
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.rpc.server import LIVENESS_SERVICE
from tests.support import postgres
from tests.support.auth import Authed
from tests.support.polling import wait_until
from tests.support.processes import REPO, Service, ServiceSet

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(180)]

PERIOD = 0.5  # seconds between replayed liveness probes
READINESS_INTERVAL = "0.5"  # how often the services check their dependencies
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def liveness_probe(role: str) -> dict[str, int]:
    """The livenessProbe the manifests give ``role``'s container."""
    documents = yaml.safe_load_all((REPO / "deploy/kubernetes/base" / f"{role}.yaml").read_text())
    manifest = next(d for d in documents if d and d["kind"] in ("Deployment", "DaemonSet"))
    containers = manifest["spec"]["template"]["spec"]["containers"]
    probe: dict[str, int] = next(c for c in containers if c["name"] == role)["livenessProbe"]
    assert probe["grpc"]["service"] == LIVENESS_SERVICE
    return probe


@pytest.fixture
def cluster() -> Iterator[postgres.PrivateCluster]:
    try:
        cluster = postgres.PrivateCluster()
        cluster.start()
    except postgres.PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is required for this test: {exc}")
    yield cluster
    cluster.destroy()


def health(services: ServiceSet, service: Service, name: str, timeout: float) -> int:
    with services.channel(service) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=name), timeout=timeout
        )
        return int(reply.status)


def all_ready(services: ServiceSet) -> bool:
    return all(health(services, s, "", 5) == SERVING for s in services.services)


def test_a_database_outage_makes_pods_unready_but_restarts_nothing(
    cluster: postgres.PrivateCluster, tmp_path: Path
) -> None:
    url = cluster.create_database()
    upgrade(url)
    _, token = issue_token(url, "demo")
    services = ServiceSet(tmp_path, env={"NOVA_GRPC_READINESS_INTERVAL": READINESS_INTERVAL})
    try:
        api, conductor, computes = services.start_all_in_one(url)
        wait_until(lambda: all_ready(services), 30, "every service ready")
        probes = {s.name: liveness_probe(s.name.rstrip("0123456789")) for s in services.services}
        outage = max(p["failureThreshold"] for p in probes.values()) * PERIOD + 2

        cluster.stop()
        database_users = [api, conductor]
        wait_until(
            lambda: all(health(services, s, "", 5) == NOT_SERVING for s in database_users),
            30, "api and conductor unready while the database is down",
        )  # fmt: skip
        # compute never opens the database: it stays ready (libvirt answers)
        assert health(services, computes[0], "", 5) == SERVING
        with grpc.insecure_channel(api.address) as channel:
            stub = Authed(servers_pb2_grpc.ServersStub(channel), token)
            with pytest.raises(grpc.RpcError) as refused:
                stub.ListServers(servers_pb2.ListServersRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

        # the kubelet's liveness probes, replayed through the outage: not one may fail
        down_since = time.monotonic()
        asked = 0
        while time.monotonic() - down_since < outage:
            for service in services.services:
                timeout = probes[service.name]["timeoutSeconds"]
                status = health(services, service, LIVENESS_SERVICE, timeout)
                assert status == SERVING, f"{service.name} liveness {status} at probe {asked}"
                assert service.process.poll() is None, service.log()
                # readiness keeps saying what it should meanwhile
                if service in database_users:
                    assert health(services, service, "", 5) == NOT_SERVING, service.name
            asked += 1
            time.sleep(PERIOD)
        assert asked > max(p["failureThreshold"] for p in probes.values())

        cluster.start()
        back = wait_until(lambda: all_ready(services), 30, "every service ready again")
        # readiness rechecks every 0.5 s here (5 s by default): ready within a few of those
        assert back < 10, f"ready again only after {back:.1f}s"
        with grpc.insecure_channel(api.address) as channel:
            stub = Authed(servers_pb2_grpc.ServersStub(channel), token)
            reply = stub.CreateServer(
                servers_pb2.CreateServerRequest(
                    name="after", flavor_ref="m1.tiny", image_ref="nova-tiny"
                ),
                timeout=10,
            )
            server_id = reply.server_ids[0]

            def active() -> bool:
                server = stub.GetServer(servers_pb2.GetServerRequest(id=server_id), timeout=5)
                return bool(server.status == servers_pb2.SERVER_STATUS_ACTIVE)

            wait_until(active, 30, "a server created after the outage to go ACTIVE")
        assert all(s.process.poll() is None for s in services.services)
    finally:
        codes = services.stop()
    assert set(codes.values()) == {0}, codes
