"""Bearer tokens on the public API, and project isolation."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from services.cli.manage import issue_token
from services.common.db import tokens
from services.common.db.engine import Database
from services.common.domain import utcnow
from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(60)


async def test_missing_malformed_unknown_and_revoked_tokens_are_refused(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        bare = servers_pb2_grpc.ServersStub(stack.channel)
        record, secret = issue_token(sqlite_url, "demo")
        db = Database(sqlite_url)
        with db.begin() as connection:
            assert tokens.revoke(connection, record.id, utcnow())
        db.close()
        cases = [
            (),
            (("authorization", "Basic dXNlcjpwYXNz"),),
            (("authorization", "Bearer ngt_unknown"),),
            (("authorization", f"Bearer {secret}"),),  # revoked before its first use
        ]
        for metadata in cases:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await bare.ListServers(
                    servers_pb2.ListServersRequest(), timeout=5, metadata=metadata
                )
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert secret not in (caught.value.details() or "")
        # the secret itself is never stored
        with db.begin_read() as connection:
            stored = [r.id for r in tokens.list_tokens(connection)]
        assert record.id in stored
        assert tokens.hash_token(secret) != secret


async def test_a_project_sees_only_its_own_servers(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        _, other_token = issue_token(sqlite_url, "other")
        mine = (await stack.servers.CreateServer(create("mine"), timeout=5)).server_ids[0]
        other = stack.servers_as(other_token)
        theirs = (await other.CreateServer(create("theirs"), timeout=5)).server_ids[0]

        listed = await stack.servers.ListServers(servers_pb2.ListServersRequest(), timeout=5)
        assert {s.id for s in listed.servers} == {mine}
        for call, request in [
            (stack.servers.GetServer, servers_pb2.GetServerRequest(id=theirs)),
            (stack.servers.DeleteServer, servers_pb2.DeleteServerRequest(id=theirs)),
        ]:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(request, timeout=5)
            assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        still = await other.GetServer(servers_pb2.GetServerRequest(id=theirs), timeout=5)
        assert still.status != servers_pb2.SERVER_STATUS_DELETED
        # an admin sees everyone's when asking for all projects
        everything = await stack.admin.ListServers(
            servers_pb2.ListServersRequest(all_projects=True), timeout=5
        )
        assert {mine, theirs} <= {s.id for s in everything.servers}


async def test_requests_beyond_the_project_rate_get_resource_exhausted(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path, api={"rate_limit_per_second": 5}) as stack:
        results = await asyncio.gather(
            *(stack.servers.ListServers(servers_pb2.ListServersRequest(), timeout=5)
              for _ in range(40)),
            return_exceptions=True,
        )  # fmt: skip
        limited = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert 20 <= len(limited) < 40  # a burst of ten, then five a second
        assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in limited)
        assert "rate limit" in (limited[0].details() or "")
        # another project is not affected
        _, other = issue_token(sqlite_url, "other")
        await stack.servers_as(other).ListServers(servers_pb2.ListServersRequest(), timeout=5)


async def test_watching_another_projects_server_is_not_found(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        mine = (await stack.servers.CreateServer(create("mine"), timeout=5)).server_ids[0]
        _, other_token = issue_token(sqlite_url, "other")
        other = stack.servers_as(other_token)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in other.WatchServers(
                servers_pb2.WatchServersRequest(server_id=mine), timeout=5
            ):
                break
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        # a project-wide watch of the other project shows none of ours
        stream = other.WatchServers(servers_pb2.WatchServersRequest(), timeout=1)
        seen = []
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            async for event in stream:
                seen.append(event.server.id)
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED and mine not in seen


async def test_oversized_messages_are_refused(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        huge = create(description="x" * (5 * 1024 * 1024))
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.servers.CreateServer(huge, timeout=5)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
