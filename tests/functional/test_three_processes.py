"""The walking skeleton end to end: three real processes, a real gRPC client."""

from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from tests.functional.conftest import System
from tests.support.auth import Authed
from tests.support.polling import wait_until

pytestmark = pytest.mark.timeout(90)


def wait_settled(stub: Authed, ids: list[str], timeout: float = 30) -> list[servers_pb2.Server]:
    servers: list[servers_pb2.Server] = []

    def settled() -> bool:
        servers[:] = [stub.GetServer(servers_pb2.GetServerRequest(id=i), timeout=5) for i in ids]
        return all(s.status != servers_pb2.SERVER_STATUS_BUILD for s in servers)

    wait_until(settled, timeout, f"{len(ids)} servers to leave BUILD")
    return servers


def test_three_servers_reach_active_and_running(system: System) -> None:
    with grpc.insecure_channel(system.api.address) as channel:
        stub = Authed(servers_pb2_grpc.ServersStub(channel), system.token)
        started = time.monotonic()
        reply = stub.CreateServer(
            servers_pb2.CreateServerRequest(
                name="web", flavor_ref="m1.tiny", image_ref="nova-tiny", min_count=3, max_count=3
            ),
            timeout=5,
        )
        accepted = time.monotonic() - started
        assert len(reply.server_ids) == 3
        servers = wait_settled(stub, list(reply.server_ids))
        assert [s.status for s in servers] == [servers_pb2.SERVER_STATUS_ACTIVE] * 3
        # power_state is what compute read back from libvirt before reporting ACTIVE
        assert [s.power_state for s in servers] == [servers_pb2.POWER_STATE_RUNNING] * 3
        assert {s.host for s in servers} == {"compute1"}
        assert all(s.launched_at.seconds > 0 for s in servers)
        listed = stub.ListServers(
            servers_pb2.ListServersRequest(reservation_id=reply.reservation_id), timeout=5
        )
        assert sorted(s.id for s in listed.servers) == sorted(reply.server_ids)
    assert accepted < 5  # generous: the create answered without waiting for the build
    compute_log = next(s for s in system.services.services if s.name == "compute1").log()
    assert "registered compute node compute1" in compute_log


def test_every_service_reports_serving_health(system: System) -> None:
    for service in system.services.services:
        with system.services.channel(service) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service.name


def test_calls_without_a_valid_token_are_unauthenticated(system: System) -> None:
    with grpc.insecure_channel(system.api.address) as channel:
        bare = servers_pb2_grpc.ServersStub(channel)
        for stub in (bare, Authed(bare, "ngt_not-a-real-token")):
            try:
                stub.ListServers(servers_pb2.ListServersRequest(), timeout=5)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
                assert "ngt_not-a-real-token" not in (exc.details() or "")
            else:
                raise AssertionError("a call without a valid token was answered")


def test_internal_services_refuse_clients_without_a_certificate(system: System) -> None:
    conductor = next(s for s in system.services.services if s.name == "conductor")
    with grpc.insecure_channel(conductor.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        try:
            health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        else:
            raise AssertionError("plaintext reached an internal service")
