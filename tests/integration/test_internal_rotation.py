"""Internal mutual TLS follows its files on both ends: after a rotation to a new CA, a server
accepts only the new client certificates and the client pool opens channels with them."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.pki import create_pki
from services.common.rpc.channels import ChannelPool
from services.common.rpc.server import start_server
from services.common.tls import InternalTls
from services.common.tls_reload import KeyPairFiles, ReloadingClientTls, ReloadingServerCredentials
from tests.support.public_tls import replace_file

pytestmark = pytest.mark.timeout(60)


def install(source: Path, target: Path) -> None:
    """Put a PKI's files in place the way a rotation does: one atomic replace per file."""
    target.mkdir(exist_ok=True)
    for name in ("ca.pem", "api.pem", "api-key.pem", "conductor.pem", "conductor-key.pem"):
        replace_file(target / name, (source / name).read_bytes())


async def check(pool: ChannelPool, address: str) -> int:
    stub = health_pb2_grpc.HealthStub(pool.get(address))
    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return int(reply.status)


async def test_both_ends_follow_a_rotation_to_a_new_ca(tmp_path: Path) -> None:
    old, new, live = create_pki(tmp_path / "old"), create_pki(tmp_path / "new"), tmp_path / "live"
    install(old, live)
    server_files = KeyPairFiles(
        live / "conductor.pem", live / "conductor-key.pem", client_ca=live / "ca.pem"
    )
    server = await start_server(
        "127.0.0.1:0", [], credentials=ReloadingServerCredentials(server_files).credentials()
    )
    client = ReloadingClientTls(
        live / "ca.pem", live / "api.pem", live / "api-key.pem", check_every=0
    )
    pool = ChannelPool(client)
    address = f"127.0.0.1:{server.port}"
    try:
        assert await check(pool, address) == health_pb2.HealthCheckResponse.NOT_SERVING
        before = pool.get(address)
        install(new, live)
        # the pool noticed: a new channel, whose new connection presents the new certificate
        # to a server that now trusts only the new CA
        after = pool.get(address)
        assert after is not before and client.generation == 1
        assert await check(pool, address) == health_pb2.HealthCheckResponse.NOT_SERVING
        # and a new connection with the old certificate is refused
        stale = ChannelPool(
            InternalTls.load(str(old / "ca.pem"), str(old / "api.pem"), str(old / "api-key.pem"))
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await check(stale, address)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        await stale.close()
    finally:
        await pool.close()
        await server.stop(0)
        shutil.rmtree(live)
