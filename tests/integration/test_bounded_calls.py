"""Bounded work for every public call: a server-side deadline that stops the work, per-project
caps on open streams, and filter inputs that cannot be made slow (gRPC on port 0)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.common.generated.novagrpc.v1 import servers_pb2, servers_pb2_grpc
from services.common.rpc.server import Registration, start_server
from tests.integration.test_pipeline import create, field_violation, wait_for_compute
from tests.support.polling import wait_until_async
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(60)


class _Stuck(servers_pb2_grpc.ServersServicer):  # type: ignore[misc]
    """GetServer never finishes on its own; records that it was stopped."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = asyncio.Event()

    async def GetServer(self, request: Any, context: Any) -> servers_pb2.Server:
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            self.stopped.set()
        raise AssertionError("unreachable")


async def test_a_unary_call_is_stopped_at_the_server_deadline() -> None:
    stuck = _Stuck()
    server = await start_server(
        "127.0.0.1:0",
        [Registration(servers_pb2_grpc.add_ServersServicer_to_server, stuck, "x")],
        unary_deadline=timedelta(seconds=0.3),
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            started = time.monotonic()
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                # the client would wait 30 s; the server stops the call long before
                await servers_pb2_grpc.ServersStub(channel).GetServer(
                    servers_pb2.GetServerRequest(id="x"), timeout=30
                )
            assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "GetServer" in (caught.value.details() or "")
            assert time.monotonic() - started < 10
            assert stuck.stopped.is_set()  # its work was cancelled, not left running
    finally:
        await server.stop(0)


async def test_a_backtracking_name_pattern_cannot_stall_the_api(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        await stack.servers.CreateServer(create(name="a" * 60 + "!"), timeout=5)
        started = time.monotonic()
        # exponential for a backtracking engine on that name (and it would hold the GIL)
        found = await stack.servers.ListServers(
            servers_pb2.ListServersRequest(name="^(a+)+$"), timeout=20
        )
        assert list(found.servers) == []
        assert time.monotonic() - started < 5
        found = await stack.servers.ListServers(
            servers_pb2.ListServersRequest(name="^(a+)+!$"), timeout=5
        )
        assert len(found.servers) == 1


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"name": r"(a)\1"}, "name"),  # backreferences need backtracking
        ({"name": "(?=a)"}, "name"),  # so does lookaround
        ({"name": "a" * 256}, "name"),
        ({"tags": [f"t{i}" for i in range(51)]}, "tags"),
        ({"tags": ["t" * 256]}, "tags"),
        ({"flavor": "f" * 256}, "flavor"),
    ],
)
async def test_filters_that_could_be_made_slow_are_bounded(
    sqlite_url: str, tmp_path: Path, request_fields: dict[str, Any], field: str
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.servers.ListServers(
                servers_pb2.ListServersRequest(**request_fields), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field_violation(caught.value) == field


async def _first(stream: Any) -> Any:
    async for event in stream:
        return event
    return None


async def test_open_streams_are_capped_per_project(sqlite_url: str, tmp_path: Path) -> None:
    async with running_stack(sqlite_url, tmp_path, api={"max_streams_per_project": 2}) as stack:
        await wait_for_compute(sqlite_url)
        reply = await stack.servers.CreateServer(create(), timeout=5)
        watch = servers_pb2.WatchServersRequest(server_id=reply.server_ids[0])
        streams = [stack.servers.WatchServers(watch, timeout=30) for _ in range(2)]
        for stream in streams:  # each is admitted: it has its snapshot
            assert (await _first(stream)).server.id == reply.server_ids[0]
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _first(stack.servers.WatchServers(watch, timeout=5))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "open streams" in (caught.value.details() or "")
        # another project is not held back by this one's streams
        theirs = await stack.admin.CreateServer(create(), timeout=5)
        other = servers_pb2.WatchServersRequest(server_id=theirs.server_ids[0])
        admin_stream = stack.admin.WatchServers(other, timeout=30)
        assert (await _first(admin_stream)).server.id == theirs.server_ids[0]
        # ...and closing one stream makes room again (its slot frees when the call ends)
        streams[0].cancel()

        async def room_again() -> bool:
            again = stack.servers.WatchServers(watch, timeout=5)
            try:
                assert (await _first(again)).server.id == reply.server_ids[0]
                return True
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return False
            finally:
                again.cancel()

        await wait_until_async(room_again, 10, "the closed stream's slot", interval=0.05)
        admin_stream.cancel()
        streams[1].cancel()
