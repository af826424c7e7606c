"""TLS to every client: the api serves TLS itself, novactl speaks it, and the certificate is
replaced under load without a restart or a failed call (gRPC on port 0)."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import grpc
import pytest

from services.cli.__main__ import main as novactl
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from tests.support.auth import Authed
from tests.support.public_tls import PublicCa, replace_file
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(60)


def tls_files(tmp_path: Path, ca: PublicCa) -> dict[str, str]:
    cert, key = ca.server_pair()
    (tmp_path / "api.pem").write_bytes(cert)
    (tmp_path / "api-key.pem").write_bytes(key)
    return {
        "public_tls_cert": str(tmp_path / "api.pem"),
        "public_tls_key": str(tmp_path / "api-key.pem"),
    }


def tls_channel(stack: Stack, ca: PublicCa) -> grpc.aio.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=ca.path.read_bytes())
    return grpc.aio.secure_channel(stack.api.address, credentials)


async def list_code(channel: grpc.aio.Channel, token: str) -> grpc.StatusCode:
    servers = Authed(servers_pb2_grpc.ServersStub(channel), token)
    try:
        await servers.ListServers(servers_pb2.ListServersRequest(), timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def fresh_connection_code(stack: Stack, ca: PublicCa) -> grpc.StatusCode:
    async with tls_channel(stack, ca) as channel:
        return await list_code(channel, stack.token)


async def run_novactl(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    status = await asyncio.to_thread(novactl, list(args), out)
    return status, out.getvalue()


async def test_the_api_serves_tls_and_novactl_speaks_it(sqlite_url: str, tmp_path: Path) -> None:
    ca = PublicCa.create(tmp_path / "public", "public-ca")
    async with running_stack(sqlite_url, tmp_path, api=tls_files(tmp_path, ca)) as stack:
        assert await fresh_connection_code(stack, ca) == grpc.StatusCode.OK
        async with grpc.aio.insecure_channel(stack.api.address) as plaintext:
            assert await list_code(plaintext, stack.token) == grpc.StatusCode.UNAVAILABLE
        token = ("--token", stack.token)
        address = stack.api.address
        status, out = await run_novactl(
            "--endpoint", address, "--cacert", str(ca.path), *token, "server", "list"
        )
        assert status == 0, out
        status, _ = await run_novactl(
            "--endpoint", f"https://{address}", "--cacert", str(ca.path), *token, "flavor", "list"
        )
        assert status == 0
        # a TLS endpoint is verified: the system's roots do not know this CA
        assert (await run_novactl("--endpoint", address, *token, "server", "list"))[0] == 1
        # plaintext only when asked for, and this api does not speak it
        assert (await run_novactl("--endpoint", f"http://{address}", *token, "server", "list"))[
            0
        ] == 1
        assert (await run_novactl("--endpoint", address, "--insecure", *token, "server", "list"))[
            0
        ] == 1


async def test_the_certificate_is_replaced_under_load(sqlite_url: str, tmp_path: Path) -> None:
    old_ca = PublicCa.create(tmp_path / "public", "old-ca")
    new_ca = PublicCa.create(tmp_path / "public", "new-ca")
    files = tls_files(tmp_path, old_ca)
    # the load must not meet the rate limit: this test is about the certificate
    api = {**files, "rate_limit_per_second": 0}
    async with (
        running_stack(sqlite_url, tmp_path, api=api) as stack,
        tls_channel(stack, old_ca) as busy,
    ):
        assert await list_code(busy, stack.token) == grpc.StatusCode.OK
        stop, progressed = asyncio.Event(), asyncio.Event()
        outcomes: list[grpc.StatusCode] = []
        wanted = [0]

        async def load() -> None:
            while not stop.is_set():
                outcomes.append(await list_code(busy, stack.token))
                if wanted[0] and len(outcomes) >= wanted[0]:
                    progressed.set()

        workers = [asyncio.create_task(load()) for _ in range(4)]
        try:
            cert, key = new_ca.server_pair()
            # half a rotation (the new certificate without its key) is not served...
            replace_file(Path(files["public_tls_cert"]), cert)
            assert await fresh_connection_code(stack, old_ca) == grpc.StatusCode.OK
            assert await fresh_connection_code(stack, new_ca) == grpc.StatusCode.UNAVAILABLE
            # ...the whole one is, to every new connection
            replace_file(Path(files["public_tls_key"]), key)
            deadline = time.monotonic() + 10
            while await fresh_connection_code(stack, new_ca) != grpc.StatusCode.OK:
                assert time.monotonic() < deadline
            assert await fresh_connection_code(stack, old_ca) == grpc.StatusCode.UNAVAILABLE
            wanted[0] = len(outcomes) + 20  # the load runs on after the swap as well
            await progressed.wait()
        finally:
            stop.set()
            await asyncio.gather(*workers)
        # the connection opened before the rotation kept working through it
        assert len(outcomes) > 20
        assert set(outcomes) == {grpc.StatusCode.OK}
