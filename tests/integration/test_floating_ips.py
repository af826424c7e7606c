"""External networks, connections and floating addresses through the use cases on a real
database: every bad input is refused naming its field and leaves nothing behind; the host
state the conductor pushes carries the connected network's uplink and the association."""

from __future__ import annotations

from ipaddress import IPv4Address as A

import pytest
from sqlalchemy import select

from services.api.convert import server_to_proto
from services.api.create import CreateServers
from services.api.external_networks import CreateExternalNetworkCommand, ExternalNetworkUseCases
from services.api.floating_ips import FloatingIPUseCases
from services.api.networks import NetworkUseCases
from services.common.db import instances as instance_repo
from services.common.db import networks as network_repo
from services.common.db import overlay as overlay_repo
from services.common.db.engine import Database
from services.common.db.models import EXTERNAL_ADDRESSES
from services.common.db.stores import SqlUnitOfWork
from services.common.domain import utcnow
from services.common.errors import (
    AlreadyExists,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    WrongState,
)
from services.conductor.host_networks import HostNetworkFanOut
from tests.integration.test_host_networks import RecordingPusher, place
from tests.integration.test_security_groups import ADMIN, P1, P2, creates, server

pytestmark = pytest.mark.timeout(90)
__all__ = ["creates"]

EXT = CreateExternalNetworkCommand(
    name="public", cidr="203.0.113.0/24", bridge="br-ex",
    allocation_pools=[("203.0.113.10", "203.0.113.12")],
)  # fmt: skip


class Told:
    def __init__(self) -> None:
        self.times = 0

    def host_networks_changed(self) -> None:
        self.times += 1


def refused(
    error: type[DomainError], field: str, caught: pytest.ExceptionInfo[DomainError]
) -> None:
    assert isinstance(caught.value, error), caught.value
    assert caught.value.field == field, caught.value
    assert caught.value.message.startswith(f"{field}: "), caught.value.message


async def test_external_networks_connections_and_floating_addresses(  # noqa: PLR0915
    db: Database, creates: CreateServers
) -> None:
    told = Told()
    externals, floating = ExternalNetworkUseCases(db, told), FloatingIPUseCases(db, told)
    one, two = [await server(creates, n) for n in ("one", "two")]
    theirs = await server(creates, "theirs", P2)

    # external networks: admin-only, with a pool, a bridge name, a unique name
    for context, command, error, field in (
        (P1, EXT, PermissionDenied, None),
        (ADMIN, CreateExternalNetworkCommand("x", "198.51.100.0/24", "br-ex"),
         InvalidArgument, "allocation_pools"),
        (ADMIN, CreateExternalNetworkCommand("x", "198.51.100.0/24", "a-bridge-name-too-long",
                                             allocation_pools=[("198.51.100.5", "198.51.100.9")]),
         InvalidArgument, "bridge"),
        (ADMIN, CreateExternalNetworkCommand("x", "198.51.100.0/33", "br-ex"),
         InvalidArgument, "cidr"),
    ):  # fmt: skip
        with pytest.raises(error) as caught:
            await externals.create(context, command)
        if field is not None:
            refused(error, field, caught)
    assert await externals.list_external(P1) == []
    public = (await externals.create(ADMIN, EXT)).network
    with pytest.raises(AlreadyExists) as caught:
        await externals.create(ADMIN, EXT)
    refused(AlreadyExists, "name", caught)
    # one overlapping the project's default network (10.0.0.0/16)
    clash = (await externals.create(ADMIN, CreateExternalNetworkCommand(
        "clash", "10.0.0.0/8", "br-ex2", allocation_pools=[("10.200.0.1", "10.200.0.9")]
    ))).network  # fmt: skip

    # connecting: not overlapping, one's own network only
    (network,) = [u.network for u in await NetworkUseCases(SqlUnitOfWork(db)).list_networks(P1)]
    with pytest.raises(InvalidArgument) as caught:
        await externals.connect(P1, network.id, clash.id)
    refused(InvalidArgument, "network_id", caught)
    with pytest.raises(NotFound) as caught:
        await externals.connect(P2, network.id, public.id)
    refused(NotFound, "network_id", caught)
    with pytest.raises(NotFound) as caught:
        await externals.connect(P1, network.id, "nope")
    refused(NotFound, "external_network_id", caught)
    assert told.times == 0
    connected = await externals.connect(P1, network.id, public.id)
    assert connected.network.external_network_id == public.id
    again = await externals.connect(P1, network.id, public.id)  # again: no-op
    assert again.network.external_network_id == public.id
    second = (await externals.create(ADMIN, CreateExternalNetworkCommand(
        "second", "198.51.100.0/24", "br-ex3", allocation_pools=[("198.51.100.5", "198.51.100.9")]
    ))).network  # fmt: skip
    with pytest.raises(WrongState) as caught:
        await externals.connect(P1, network.id, second.id)  # connected elsewhere already
    refused(WrongState, "network_id", caught)

    # floating addresses
    with pytest.raises(InvalidArgument) as caught:
        await floating.allocate(P1, public.id, "203.0.113.99")
    refused(InvalidArgument, "floating_ip_address", caught)
    mine = await floating.allocate(P1, public.id)
    assert mine.address == A("203.0.113.10") and mine.port_id is None
    other = await floating.allocate(P2, "public")
    assert [f.id for f in await floating.list_floating(P1)] == [mine.id]
    with pytest.raises(NotFound) as caught:
        await floating.get(P1, other.id)
    refused(NotFound, "id", caught)

    with pytest.raises(PermissionDenied) as caught:  # another project's address
        await floating.associate(P1, other.id, one)
    refused(PermissionDenied, "id", caught)
    with pytest.raises(NotFound) as caught:  # another project's server
        await floating.associate(P1, mine.id, theirs)
    refused(NotFound, "server_id", caught)
    with pytest.raises(WrongState) as caught:  # P2's network is not connected
        await floating.associate(P2, other.id, theirs)
    refused(WrongState, "server_id", caught)
    with pytest.raises(InvalidArgument) as caught:
        await floating.associate(P1, mine.id, one, port_id="not-a-port")
    refused(InvalidArgument, "port_id", caught)
    bound = await floating.associate(P1, mine.id, one)
    assert bound.server_id == one and bound.fixed_ip is not None
    assert (await floating.associate(P1, mine.id, one)).port_id == bound.port_id  # no-op
    with db.begin_read() as connection:
        (shown,) = instance_repo.load_instances(connection, [one])
    addresses = [(a.addr, a.type) for a in server_to_proto(shown, admin=False).addresses]
    assert addresses == [(str(bound.fixed_ip), "fixed"), ("203.0.113.10", "floating")]
    with pytest.raises(WrongState) as caught:  # in use by another server
        await floating.associate(P1, mine.id, two)
    refused(WrongState, "id", caught)
    with pytest.raises(WrongState) as caught:
        await floating.release(P1, mine.id)
    refused(WrongState, "id", caught)
    with pytest.raises(WrongState) as caught:
        await externals.disconnect(P1, network.id)
    refused(WrongState, "network_id", caught)
    third = await floating.allocate(P1, public.id)
    with pytest.raises(AlreadyExists) as caught:  # the port has one already
        await floating.associate(P1, third.id, one, port_id=bound.port_id or "")
    refused(AlreadyExists, "port_id", caught)
    assert (await floating.get(P1, third.id)).port_id is None  # nothing half-made
    with pytest.raises(DomainError) as caught:  # the pool (3 addresses) is spent
        await floating.allocate(P1, public.id)
    assert caught.value.field == "external_network_id"
    await floating.release(P1, third.id)

    # the hosts' state: uplink with a gateway address of the pool, the 1:1 binding
    place(db, [one, two], "host-a", "192.0.2.1")
    with db.begin_read() as connection:  # a gateway address to allocate: the write's work
        assert overlay_repo.settled_host_states(connection) is None
    pusher = RecordingPusher()
    await HostNetworkFanOut(db, pusher).push()
    state = pusher.pushed["host-a:1"]
    with db.begin_read() as connection:  # allocated: the read alone gives the same state
        assert overlay_repo.settled_host_states(connection) == {"host-a": state}
        assert overlay_repo.settled_host_state(connection, "host-a") == state
    (uplink,) = state.uplinks
    assert uplink.bridge == "br-ex" and uplink.cidr == network.cidr
    assert str(uplink.address) == "203.0.113.12/24" and uplink.gateway == A("203.0.113.1")
    (binding,) = state.floating
    assert (binding.floating, binding.fixed) == (A("203.0.113.10"), bound.fixed_ip)
    # two conductors that raced to add host-a's gateway address: the next round keeps one
    with db.begin() as connection:
        connection.execute(EXTERNAL_ADDRESSES.insert().values(
            id="raced", external_network_id=public.id, address="203.0.113.13", kind="gateway",
            network_id=network.id, host="host-a", created_at=utcnow()))  # fmt: skip
    with db.begin_read() as connection:  # one to give back: the write's work again
        assert overlay_repo.settled_host_states(connection) is None
    await HostNetworkFanOut(db, pusher).push()
    with db.begin_read() as connection:
        gateways = (
            connection.execute(
                select(EXTERNAL_ADDRESSES.c.address).where(EXTERNAL_ADDRESSES.c.kind == "gateway")
            )
            .scalars()
            .all()
        )
    assert gateways == ["203.0.113.12"]

    # the server goes: its address stays the project's, unassociated; then released
    with db.begin() as connection:
        network_repo.release_ports(connection, [one])
    assert (await floating.get(P1, mine.id)).port_id is None
    await floating.release(P1, mine.id)
    assert await floating.list_floating(P1) == []
    with pytest.raises(WrongState) as caught:
        await externals.delete(ADMIN, public.id)  # still connected (and P2's address)
    refused(WrongState, "id", caught)
    await floating.release(P2, other.id)
    assert (await externals.disconnect(P1, network.id)).network.external_network_id is None
    await HostNetworkFanOut(db, pusher).push()
    assert pusher.pushed["host-a:1"].uplinks == ()  # the gateway address went back
    await externals.delete(ADMIN, public.id)
    assert [e.network.name for e in await externals.list_external(P1)] == ["clash", "second"]
    assert told.times >= 4
