"""The internal services over unix-domain sockets: the conductor and two computes listen on
socket files (mutual TLS as over TCP), the api and the computes dial the conductor's, the
conductor and the api dial the computes' (a server's builds, its console). The socket
files go when the services stop."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.cli.manage import issue_token
from services.common.generated.novagrpc.v1 import (
    consoles_pb2,
    consoles_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from tests.support.auth import Authed
from tests.support.polling import wait_until
from tests.support.processes import ServiceSet
from tests.support.sqlite import copy_database

pytestmark = pytest.mark.timeout(90)


def test_servers_build_and_show_their_console_over_unix_sockets(
    tmp_path: Path, migrated_sqlite: Path
) -> None:
    url = copy_database(migrated_sqlite, tmp_path / "nova.sqlite")
    _, token = issue_token(url, "demo")
    services = ServiceSet(tmp_path)
    try:
        api, conductor, computes = services.start_all_in_one(url, computes=2, unix=True)
        assert conductor.address == f"unix:{tmp_path / 'conductor.sock'}"
        assert [c.address for c in computes] == [
            f"unix:{tmp_path / 'compute1.sock'}", f"unix:{tmp_path / 'compute2.sock'}"
        ]  # fmt: skip
        for service in (conductor, *computes):
            with services.channel(service) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=10
                )
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, service.name
        with grpc.insecure_channel(api.address) as channel:
            servers = Authed(servers_pb2_grpc.ServersStub(channel), token)
            reply = servers.CreateServer(servers_pb2.CreateServerRequest(
                name="u", flavor_ref="m1.tiny", image_ref="nova-tiny", min_count=4,
                max_count=4), timeout=10)  # fmt: skip

            def statuses() -> list[servers_pb2.Server]:
                return [servers.GetServer(servers_pb2.GetServerRequest(id=i), timeout=10)
                        for i in reply.server_ids]  # fmt: skip

            wait_until(lambda: all(s.status != servers_pb2.SERVER_STATUS_BUILD
                                   for s in statuses()), 60, "the builds")  # fmt: skip
            built = statuses()
            assert {s.status for s in built} == {servers_pb2.SERVER_STATUS_ACTIVE}
            assert {s.host for s in built} <= {"compute1", "compute2"}
            # the api reaches the server's compute at its socket for the console: the answer
            # is the compute's own (the test hypervisor has none), not UNAVAILABLE
            with pytest.raises(grpc.RpcError) as caught:
                Authed(consoles_pb2_grpc.ConsolesStub(channel), token).GetConsoleOutput(
                    consoles_pb2.GetConsoleOutputRequest(server_id=built[0].id), timeout=10
                )
            assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "test hypervisor" in (caught.value.details() or "")
    finally:
        codes = services.stop()
    assert set(codes.values()) == {0}, codes
    assert not list(tmp_path.glob("*.sock"))
