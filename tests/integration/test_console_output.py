"""Console output through real gRPC: the public Consoles service on the full stack (libvirt's
test hypervisor, which has no guest), and the compute's ComputeConsole service with the api's
client over mutual TLS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest

from services.cli.manage import issue_token
from services.common.errors import WrongState
from services.common.generated.novagrpc.internal.v1 import compute_console_pb2_grpc
from services.common.generated.novagrpc.v1 import consoles_pb2, consoles_pb2_grpc, servers_pb2
from services.common.pki import create_pki
from services.common.rpc.channels import ChannelPool
from services.common.rpc.console_client import ComputeConsoleClient
from services.common.rpc.server import Registration, start_server
from services.common.tls import InternalTls
from services.compute.console.output import ConsoleOutput
from services.compute.console.sessions import ConsoleSessions
from services.compute.console_servicer import ComputeConsoleServicer
from tests.integration.test_pipeline import create, field_violation, wait_for_compute
from tests.support.auth import Authed
from tests.support.consoles import EchoConsoles
from tests.support.stack import Stack, running_stack
from tests.unit.test_console_output import FileConsoles, inline

pytestmark = pytest.mark.timeout(60)


def consoles(stack: Stack, token: str | None = None) -> consoles_pb2_grpc.ConsolesStub:
    return Authed(consoles_pb2_grpc.ConsolesStub(stack.channel), token or stack.token)  # type: ignore[no-any-return]


async def test_console_output_checks_and_the_test_hypervisor_says_it_has_none(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        reply = await stack.servers.CreateServer(create("con"), timeout=5)
        server_id = reply.server_ids[0]
        await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_ACTIVE)
        request = consoles_pb2.GetConsoleOutputRequest(server_id=server_id, lines=10)

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await consoles(stack).GetConsoleOutput(request, timeout=5)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "test hypervisor" in (refused.value.details() or "")

        follow = consoles(stack).FollowConsoleOutput(
            consoles_pb2.FollowConsoleOutputRequest(server_id=server_id, lines=10), timeout=5
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await follow.read()
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION

        _, other_token = issue_token(sqlite_url, "other-project")
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await consoles(stack, other_token).GetConsoleOutput(request, timeout=5)
        assert hidden.value.code() == grpc.StatusCode.NOT_FOUND

        for lines in (-1, 10_001):
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await consoles(stack).GetConsoleOutput(
                    consoles_pb2.GetConsoleOutputRequest(server_id=server_id, lines=lines),
                    timeout=5,
                )
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert field_violation(bad.value) == "lines"

        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await consoles(stack).GetConsoleOutput(
                consoles_pb2.GetConsoleOutputRequest(server_id="no-such-server"), timeout=5
            )
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND

        await stack.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server_id), timeout=5)
        await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_DELETED)
        with pytest.raises(grpc.aio.AioRpcError) as gone:
            await consoles(stack).GetConsoleOutput(request, timeout=5)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND


@asynccontextmanager
async def console_host(files: FileConsoles, pki: Path) -> AsyncIterator[str]:
    """A compute's ComputeConsole service alone, over mutual TLS, on ``files``."""
    tls = InternalTls.load(str(pki / "ca.pem"), str(pki / "compute.pem"),
                           str(pki / "compute-key.pem"))  # fmt: skip
    server = await start_server(
        "127.0.0.1:0",
        [
            Registration(
                compute_console_pb2_grpc.add_ComputeConsoleServicer_to_server,
                ComputeConsoleServicer(
                    ConsoleOutput(files, inline), ConsoleSessions(EchoConsoles(Path("/")), inline)
                ),
                "novagrpc.internal.v1.ComputeConsole",
            )
        ],
        credentials=tls.server_credentials(),
    )
    try:
        yield f"127.0.0.1:{server.port}"
    finally:
        await server.stop(0)


async def test_compute_serves_the_bounded_tail_to_the_api_client(tmp_path: Path) -> None:
    pki = create_pki(tmp_path / "pki")
    (tmp_path / "u1").mkdir()
    (tmp_path / "u1" / "console.log").write_bytes(
        b"".join(b"boot line %d\n" % i for i in range(50_000))
    )
    channels = ChannelPool(
        InternalTls.load(str(pki / "ca.pem"), str(pki / "api.pem"), str(pki / "api-key.pem"))
    )
    client = ComputeConsoleClient(channels, timeout=5)
    try:
        async with console_host(FileConsoles(tmp_path), pki) as address:
            few = await client.output(address, "u1", lines=2)
            assert few.output == b"boot line 49998\nboot line 49999\n" and few.truncated
            bounded = await client.output(address, "u1", lines=0)
            assert len(bounded.output) <= 100 * 1024 and bounded.truncated
            assert bounded.output.startswith(b"boot line ")
            follow = client.follow(address, "u1", lines=1)
            first = await anext(follow)
            assert first.output == b"boot line 49999\n"
            with (tmp_path / "u1" / "console.log").open("ab") as log:
                log.write(b"login:")
            assert (await anext(follow)).output == b"login:"
            await follow.aclose()
        async with console_host(FileConsoles(tmp_path, refuse=True), pki) as address:
            with pytest.raises(WrongState) as refused:
                await client.output(address, "u1", lines=2)
            assert "no console" in refused.value.message
    finally:
        await channels.close()
