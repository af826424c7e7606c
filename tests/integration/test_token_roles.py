"""Tokens that end, and read-only tokens (the reader role)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import grpc
import pytest

from services.cli.manage import issue_token, parse_duration
from services.common.generated.novagrpc.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    keypairs_pb2,
    keypairs_pb2_grpc,
    servers_pb2,
)
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.auth import Authed
from tests.support.polling import wait_until_async
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(60)


async def code_of(call: object) -> grpc.StatusCode:
    try:
        await call  # type: ignore[misc]
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_a_reader_token_only_reads(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        server_id = (await stack.servers.CreateServer(create(), timeout=5)).server_ids[0]
        _, secret = issue_token(sqlite_url, "demo", reader=True)
        reader = stack.servers_as(secret)
        flavors = Authed(catalog_pb2_grpc.FlavorsStub(stack.channel), secret)
        keypairs = Authed(keypairs_pb2_grpc.KeypairsStub(stack.channel), secret)
        by_id = servers_pb2.GetServerRequest(id=server_id)
        assert await code_of(reader.GetServer(by_id, timeout=5)) == grpc.StatusCode.OK
        listed = await reader.ListServers(servers_pb2.ListServersRequest(), timeout=5)
        assert [s.id for s in listed.servers] == [server_id]  # its project's servers
        listing = catalog_pb2.ListFlavorsRequest()
        assert await code_of(flavors.ListFlavors(listing, timeout=5)) == grpc.StatusCode.OK
        watch = reader.WatchServers(servers_pb2.WatchServersRequest(server_id=server_id))
        async for event in watch:
            assert event.server.id == server_id
            break
        watch.cancel()
        writes = [
            reader.CreateServer(create(), timeout=5),
            reader.DeleteServer(servers_pb2.DeleteServerRequest(id=server_id), timeout=5),
            reader.StopServer(servers_pb2.StopServerRequest(id=server_id), timeout=5),
            keypairs.ImportKeypair(keypairs_pb2.ImportKeypairRequest(name="k"), timeout=5),
        ]
        for write in writes:
            assert await code_of(write) == grpc.StatusCode.PERMISSION_DENIED
        server = await stack.servers.GetServer(by_id, timeout=5)
        assert server.status != servers_pb2.SERVER_STATUS_DELETED


async def test_an_expired_token_stops_working_even_when_cached(
    sqlite_url: str, tmp_path: Path
) -> None:
    # the api caches a token lookup for 30 s; the token's own end must still count
    async with running_stack(sqlite_url, tmp_path) as stack:
        record, secret = issue_token(sqlite_url, "demo", expires_in=timedelta(seconds=1))
        assert record.expires_at is not None
        servers = stack.servers_as(secret)
        listing = servers_pb2.ListServersRequest()
        assert await code_of(servers.ListServers(listing, timeout=5)) == grpc.StatusCode.OK

        async def refused() -> grpc.StatusCode | None:
            code = await code_of(servers.ListServers(listing, timeout=5))
            return None if code == grpc.StatusCode.OK else code

        code = await wait_until_async(refused, 10, "the expired token to be refused", interval=0.05)
        assert code == grpc.StatusCode.UNAUTHENTICATED
        # a token without an end keeps working
        assert await code_of(stack.servers.ListServers(listing, timeout=5)) == (grpc.StatusCode.OK)


def test_durations() -> None:
    assert parse_duration("90s") == timedelta(seconds=90)
    assert parse_duration("15m") == timedelta(minutes=15)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("30d") == timedelta(days=30)
    assert parse_duration("45") == timedelta(seconds=45)
    for bad in ("", "0s", "-1h", "abc", "1y", "99999d"):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
