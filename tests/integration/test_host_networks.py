"""Each compute host's overlay state follows the database: the conductor derives which hosts
share which networks from the live ports and their hosts' registered underlay addresses,
pushes a host's state when it changes, and answers a compute that asks (its start-up and
periodic sync) over gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from ipaddress import IPv4Address as A

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import update

from services.api.create import CreateServers
from services.common.db import placement
from services.common.db.engine import Database
from services.common.db.models import INSTANCES
from services.common.domain import ComputeNodeReport, utcnow
from services.common.generated.novagrpc.internal.v1 import datapath_pb2_grpc
from services.common.overlay import HostNetworkState
from services.common.rpc.channels import ChannelPool
from services.common.rpc.datapath import HostStateSource
from services.common.rpc.server import Registration, start_server
from services.conductor.datapath_servicer import ConductorDatapathServicer
from services.conductor.host_networks import HostNetworkFanOut, HostNetworkMetrics
from tests.integration.test_security_groups import P2, creates, server

pytestmark = pytest.mark.timeout(60)
__all__ = ["creates"]


class RecordingPusher:
    def __init__(self) -> None:
        self.pushed: dict[str, HostNetworkState] = {}
        self.arrived = asyncio.Event()
        self.down: set[str] = set()

    async def set_host_state(self, address: str, state: HostNetworkState) -> None:
        if address in self.down:
            raise ConnectionError(f"{address} is down")
        self.pushed[address] = state
        self.arrived.set()


def place(db: Database, uuids: Sequence[str], host: str, underlay: str, kind: str = "QEMU") -> None:
    with db.begin() as connection:
        placement.upsert_compute_node(
            connection,
            ComputeNodeReport(host, host, f"{host}:1", 4, 4096, 40, kind, "x86_64", "nova",
                              underlay_address=underlay),
            now=utcnow(),
        )  # fmt: skip
        connection.execute(
            update(INSTANCES).where(INSTANCES.c.uuid.in_(list(uuids)))
            .values(host=host, vm_state="active", task_state=None)
        )  # fmt: skip


def vnis(state: HostNetworkState) -> set[int]:
    return set(state.overlay)


async def test_hosts_sharing_a_network_flood_to_each_other_and_follow_churn(
    db: Database, creates: CreateServers
) -> None:
    one, two, three = [await server(creates, n) for n in ("one", "two", "three")]
    other = await server(creates, "other-project", P2)  # another project's network
    place(db, [one], "host-a", "192.0.2.1")
    place(db, [two], "host-b", "192.0.2.2")
    place(db, [other], "host-b", "192.0.2.2")
    place(db, [three], "host-t", "192.0.2.9", kind="TEST")  # no datapath: nobody's peer
    pusher = RecordingPusher()
    registry = CollectorRegistry()
    fan_out = HostNetworkFanOut(db, pusher, metrics=HostNetworkMetrics.create(registry))

    assert sorted(await fan_out.push()) == ["host-a", "host-b"]
    a, b = pusher.pushed["host-a:1"], pusher.pushed["host-b:1"]
    (web,) = vnis(a)
    assert a.peers(web) == {A("192.0.2.2")} and b.peers(web) == {A("192.0.2.1")}
    (theirs,) = vnis(b) - {web}
    assert b.peers(theirs) == frozenset()
    assert await fan_out.push() == []  # nothing changed, nothing pushed

    # host-b's server goes: host-a stops flooding there, host-b keeps only the other network
    with db.begin() as connection:
        connection.execute(
            update(INSTANCES).where(INSTANCES.c.uuid == two).values(vm_state="deleted")
        )
    pusher.down.add("host-b:1")  # unreachable now: converges at its own next sync
    assert await fan_out.push() == ["host-a"]
    assert pusher.pushed["host-a:1"].peers(web) == frozenset()
    pusher.down.clear()
    assert await fan_out.push() == ["host-b"]  # retried on the next round
    assert registry.get_sample_value("nova_grpc_host_network_push_failures_total") == 1
    assert registry.get_sample_value("nova_grpc_host_network_push_seconds_count") == 4
    assert vnis(pusher.pushed["host-b:1"]) == {theirs}

    # a host that asks gets the same state over gRPC
    grpc_server = await start_server(
        "127.0.0.1:0",
        [
            Registration(
                datapath_pb2_grpc.add_ConductorDatapathServicer_to_server,
                ConductorDatapathServicer(fan_out),
                "datapath",
            )
        ],
    )
    channels = ChannelPool()
    try:
        source = HostStateSource(channels, [f"127.0.0.1:{grpc_server.port}"])
        assert await source.host_state("host-b") == pusher.pushed["host-b:1"]
        assert await source.host_state("nowhere") == HostNetworkState(host="nowhere")
    finally:
        await channels.close()
        await grpc_server.stop(0)


async def test_a_server_coming_triggers_a_background_push(
    db: Database, creates: CreateServers
) -> None:
    uuid = await server(creates, "solo")
    place(db, [uuid], "host-c", "192.0.2.3")
    pusher = RecordingPusher()
    fan_out = HostNetworkFanOut(db, pusher)
    fan_out.start()
    try:
        fan_out.servers_came_or_went([uuid])
        async with asyncio.timeout(10):
            await pusher.arrived.wait()
    finally:
        await fan_out.close()
    assert len(pusher.pushed["host-c:1"].overlay) == 1
