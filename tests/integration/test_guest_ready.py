"""guest_ready through the real services: compute's GUEST_READY report (as its event reporter
sends it) sets the server's guest_ready and WatchServers carries it; a report from another
host, or for a stopped server, changes nothing; a stop clears it. libvirt's test hypervisor
itself never reports one (it has no guest)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from services.common.domain import InstanceEvent, InstanceEventKind
from services.common.generated.novagrpc.internal.v1 import conductor_pb2, conductor_pb2_grpc
from services.common.generated.novagrpc.v1 import servers_pb2
from services.common.rpc.conductor_client import event_to_proto
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.stack import Stack, running_stack
from tests.support.tls import compute_aio_channel

pytestmark = pytest.mark.timeout(60)


async def report(stack: Stack, *events: InstanceEvent, as_host: str = "") -> None:
    """As a compute reports: by default the one the events name (only it may report on its
    host)."""
    host = as_host or events[0].host
    async with compute_aio_channel(stack.conductor.address, stack.pki, host) as channel:
        stub = conductor_pb2_grpc.ConductorStub(channel)
        await stub.ReportInstanceEvents(
            conductor_pb2.ReportInstanceEventsRequest(events=[event_to_proto(e) for e in events]),
            timeout=5,
        )


async def get(stack: Stack, server_id: str) -> servers_pb2.Server:
    server: servers_pb2.Server = await stack.servers.GetServer(
        servers_pb2.GetServerRequest(id=server_id), timeout=5
    )
    return server


async def test_guest_ready_is_set_by_the_guests_report_and_cleared_by_a_stop(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        reply = await stack.servers.CreateServer(create("ready"), timeout=5)
        server_id = reply.server_ids[0]
        active = await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_ACTIVE)
        assert not active.HasField("guest_ready")  # ACTIVE alone never implies it
        watch = stack.servers.WatchServers(
            servers_pb2.WatchServersRequest(server_id=server_id), timeout=30
        )
        snapshot = await watch.read()
        assert not snapshot.server.HasField("guest_ready")

        when = datetime(2026, 12, 7, 12, 0, 1, tzinfo=UTC)
        # a compute speaking for another host is refused, and changes nothing
        elsewhere = InstanceEvent(server_id, "another-host", InstanceEventKind.GUEST_READY, when)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await report(stack, elsewhere, as_host=active.host)
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert not (await get(stack, server_id)).HasField("guest_ready")

        ready = InstanceEvent(server_id, active.host, InstanceEventKind.GUEST_READY, when)
        await report(stack, ready)
        while True:
            event = await asyncio.wait_for(watch.read(), 10)
            if event.server.HasField("guest_ready"):
                break
        assert event.server.guest_ready.ToDatetime(UTC) == when
        assert event.server.status == servers_pb2.SERVER_STATUS_ACTIVE
        watch.cancel()

        await stack.servers.StopServer(servers_pb2.StopServerRequest(id=server_id), timeout=5)
        stopped = await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_SHUTOFF)
        assert not stopped.HasField("guest_ready")
        await report(stack, ready)  # late: the server is stopped now
        assert not (await get(stack, server_id)).HasField("guest_ready")

        # One batch with a stop after the report: the last word wins.
        await stack.servers.StartServer(servers_pb2.StartServerRequest(id=server_id), timeout=5)
        await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_ACTIVE)
        cleared = InstanceEvent(server_id, active.host, InstanceEventKind.REBOOTED, when)
        await report(stack, ready, cleared)
        assert not (await get(stack, server_id)).HasField("guest_ready")
        await report(stack, cleared, ready)
        assert (await get(stack, server_id)).HasField("guest_ready")
