"""Networks and IPAM on a real database: the Networks use cases, addresses allocated in the
create transaction, released on delete, and never handed out twice by concurrent api
processes on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from ipaddress import IPv4Address

import pytest
from sqlalchemy import event, func, select

from services.api.context import RequestContext
from services.api.create import (
    CreateServerCommand,
    CreateServerResult,
    CreateServers,
    validate,
)
from services.api.networks import CreateNetworkCommand, NetworkUseCases
from services.common import ipam
from services.common.db import instances as instance_repo
from services.common.db.engine import Database
from services.common.db.models import NETWORKS, PORTS
from services.common.db.stores import SqlUnitOfWork
from services.common.domain import utcnow
from services.common.errors import (
    AlreadyExists,
    DomainError,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    QuotaExceeded,
    WrongState,
)
from tests.support.casts import NoCasts

pytestmark = pytest.mark.timeout(120)

UNLIMITED = {"instances": -1, "cores": -1, "ram": -1}
P1 = RequestContext("p1", "req-1")
P2 = RequestContext("p2", "req-2")
ADMIN = RequestContext("admin", "req-3", is_admin=True)


def server(name: str, **fields: object) -> CreateServerCommand:
    return CreateServerCommand(name=name, flavor_ref="m1.tiny", image_ref="nova-tiny", **fields)  # type: ignore[arg-type]


async def created(creates: CreateServers, command: CreateServerCommand,
                  context: RequestContext = P1) -> CreateServerResult:  # fmt: skip
    return await creates(command, context)


def addresses(db: Database, uuids: Sequence[str]) -> list[str]:
    with db.begin_read() as connection:
        loaded = instance_repo.load_instances(connection, list(uuids))
    return [str(p.fixed_ip) for i in loaded for p in i.ports]


async def test_network_lifecycle_and_bad_input(db: Database) -> None:
    networks = NetworkUseCases(SqlUnitOfWork(db))
    made = await networks.create(
        P1,
        CreateNetworkCommand(
            name="web", cidr="192.168.10.0/24", dns_nameservers=["192.168.10.53"],
            allocation_pools=[("192.168.10.100", "192.168.10.199")],
        ),
    )  # fmt: skip
    assert (str(made.network.gateway), made.pool_size, made.ports_in_use) == (
        "192.168.10.1",
        100,
        0,
    )
    assert (await networks.get(P1, "web")).network.id == made.network.id
    assert (await networks.get(P1, made.network.id)).network.name == "web"
    assert [u.network.name for u in await networks.list_networks(P1)] == ["web"]
    # private to its project
    with pytest.raises(NotFound):
        await networks.get(P2, "web")
    assert await networks.list_networks(P2) == []
    bad: list[tuple[CreateNetworkCommand, type[DomainError], str]] = [
        (CreateNetworkCommand("web", "10.9.0.0/24"), AlreadyExists, "name"),
        (CreateNetworkCommand("x", "192.168.10.128/25"), InvalidArgument, "cidr"),  # overlaps
        (CreateNetworkCommand("x", "10.9.0.1/24"), InvalidArgument, "cidr"),  # host bits
        (CreateNetworkCommand("x", "10.9.0.0/30"), InvalidArgument, "cidr"),
        (CreateNetworkCommand("x", "fd00::/64"), InvalidArgument, "cidr"),
        (CreateNetworkCommand("x", "10.9.0.0/24", gateway_ip="10.8.0.1"), InvalidArgument,
         "gateway_ip"),
        (CreateNetworkCommand("x", "10.9.0.0/24", allocation_pools=[("10.9.0.1", "10.9.0.9")]),
         InvalidArgument, "allocation_pools"),  # holds the gateway
        (CreateNetworkCommand("x", "10.9.0.0/24", allocation_pools=[("10.9.0.5", "10.9.1.9")]),
         InvalidArgument, "allocation_pools"),
        (CreateNetworkCommand("x", "10.9.0.0/24", dns_nameservers=["dns.example"]),
         InvalidArgument, "dns_nameservers"),
        (CreateNetworkCommand("auto", "10.9.0.0/24"), InvalidArgument, "name"),
        (CreateNetworkCommand("x", "10.9.0.0/24", shared=True), PermissionDenied, ""),
    ]  # fmt: skip
    for command, error, field in bad:
        with pytest.raises(error) as caught:
            await networks.create(P1, command)
        assert field in caught.value.message, command
    # another project may reuse the name and the range
    await networks.create(P2, CreateNetworkCommand("web", "192.168.10.0/24"))
    # a shared network is visible to every project, but only its owner deletes it
    shared = await networks.create(ADMIN, CreateNetworkCommand("public", "172.16.0.0/16",
                                                               shared=True))  # fmt: skip
    assert shared.network.shared
    assert (await networks.get(P1, "public")).network.id == shared.network.id
    with pytest.raises(PermissionDenied):
        await networks.delete(P1, "public")
    await networks.delete(P1, "web")
    with pytest.raises(NotFound):
        await networks.get(P1, "web")


async def test_addresses_are_allocated_with_the_create_and_released_with_the_delete(
    db: Database,
) -> None:
    networks = NetworkUseCases(SqlUnitOfWork(db))
    await networks.create(P1, CreateNetworkCommand(
        "small", "10.50.0.0/28", allocation_pools=[("10.50.0.2", "10.50.0.5")]))  # fmt: skip
    creates = CreateServers(SqlUnitOfWork(db), NoCasts(), quota_defaults=UNLIMITED)
    creates.start()
    try:
        first = await created(creates, server("a", max_count=2, networks=["small"]))
        assert sorted(addresses(db, first.server_ids)) == ["10.50.0.2", "10.50.0.3"]
        fixed = await created(creates, server("b", nics=[("small", "10.50.0.5")]))
        assert addresses(db, fixed.server_ids) == ["10.50.0.5"]
        # a requested address that is taken
        with pytest.raises(AlreadyExists) as taken:
            await created(creates, server("c", nics=[("small", "10.50.0.5")]))
        assert "nics.fixed_ip" in taken.value.message and "10.50.0.5" in taken.value.message
        # outside the subnet, or its gateway
        for address in ("10.51.0.9", "10.50.0.1"):
            with pytest.raises(InvalidArgument, match=r"nics\.fixed_ip"):
                await created(creates, server("c", nics=[("small", address)]))
        # one address left: a create of two is refused whole and names the network
        with pytest.raises(QuotaExceeded) as full:
            await created(creates, server("d", min_count=2, max_count=2, networks=["small"]))
        assert "'small'" in full.value.message and "no free address" in full.value.message
        with db.begin_read() as connection:
            assert connection.execute(select(func.count()).select_from(PORTS)).scalar() == 3
        with pytest.raises(NotFound, match="networks"):
            await created(creates, server("e", networks=["nowhere"]))
        # the network is in use: it cannot go
        with pytest.raises(WrongState, match="port"):
            await networks.delete(P1, "small")
        # a delete gives the addresses back
        with db.begin() as connection:
            instance_repo.mark_deleted(connection, first.server_ids, utcnow())
        again = await created(creates, server("f", min_count=3, max_count=3, networks=["small"]))
        assert sorted(addresses(db, again.server_ids)) == ["10.50.0.2", "10.50.0.3", "10.50.0.4"]
    finally:
        await creates.close()


async def test_auto_makes_one_default_network_per_project_and_none_gives_no_nic(
    db: Database,
) -> None:
    creates = CreateServers(SqlUnitOfWork(db), NoCasts(), quota_defaults=UNLIMITED)
    creates.start()
    try:
        results = await asyncio.gather(
            *(created(creates, server(f"s{i}")) for i in range(5)),
            created(creates, server("other"), P2),
        )
        none = await created(creates, server("bare", networks=["none"]))
    finally:
        await creates.close()
    with db.begin_read() as connection:
        rows = connection.execute(select(NETWORKS.c.project_id, NETWORKS.c.cidr,
                                         NETWORKS.c.is_default)).all()  # fmt: skip
    assert sorted(rows) == [("p1", "10.0.0.0/16", True), ("p2", "10.0.0.0/16", True)]
    mine = [a for r in results[:5] for a in addresses(db, r.server_ids)]
    assert len(set(mine)) == 5 and all(IPv4Address(a) in __import__("ipaddress").ip_network(
        "10.0.0.0/16") for a in mine)  # fmt: skip
    assert addresses(db, none.server_ids) == []


@pytest.mark.postgres
async def test_two_api_processes_allocate_500_addresses_in_one_23_without_a_duplicate(
    postgres_url: str,
) -> None:
    """Two api-side allocators, each with its own engine (as two processes), race on one /23
    network; the network row lock serialises them and the unique key backs it up."""
    setup = Database(postgres_url)
    await NetworkUseCases(SqlUnitOfWork(setup)).create(
        P1, CreateNetworkCommand("big", "10.60.0.0/23")
    )
    dbs = [Database(postgres_url), Database(postgres_url)]
    creators = [
        CreateServers(SqlUnitOfWork(d), NoCasts(), quota_defaults=UNLIMITED, batch_servers=40)
        for d in dbs
    ]
    for c in creators:
        c.start()
    try:
        results = await asyncio.gather(*(
            created(creators[i % 2], server(f"s{i}", max_count=5, networks=["big"]))
            for i in range(100)
        ))  # fmt: skip
        uuids = [u for r in results for u in r.server_ids]
        assert len(uuids) == 500
        allocated = addresses(setup, uuids)
        assert len(allocated) == 500 and len(set(allocated)) == 500
        # 509 host addresses less the gateway: 9 remain
        with pytest.raises(QuotaExceeded, match="'big'"):
            await created(creators[0], server("x", min_count=10, max_count=10, networks=["big"]))
        with setup.begin() as connection:
            instance_repo.mark_deleted(connection, uuids[:50], utcnow())
        back = await created(creators[1], server("y", min_count=59, max_count=59,
                                                 networks=["big"]))  # fmt: skip
        assert len(set(addresses(setup, back.server_ids))) == 59
    finally:
        for c in creators:
            await c.close()
        for d in [*dbs, setup]:
            d.close()


async def test_a_mac_already_in_use_is_never_handed_out_again(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """24 random bits collide once there are thousands of ports: the allocator checks."""
    macs = iter(["fa:16:3e:00:00:01", "fa:16:3e:00:00:01", "fa:16:3e:00:00:01",
                 "fa:16:3e:00:00:02"])  # fmt: skip
    monkeypatch.setattr(ipam, "new_mac", lambda: next(macs))
    creates = CreateServers(SqlUnitOfWork(db), NoCasts(), quota_defaults=UNLIMITED)
    creates.start()
    try:
        first = await created(creates, server("a"))
        second = await created(creates, server("b"))  # draws the taken MAC twice first
    finally:
        await creates.close()
    with db.begin_read() as connection:
        loaded = instance_repo.load_instances(connection, [*first.server_ids, *second.server_ids])
    assert sorted(p.mac for i in loaded for p in i.ports) == [
        "fa:16:3e:00:00:01", "fa:16:3e:00:00:02"
    ]  # fmt: skip


async def test_a_create_of_many_draws_macs_in_one_query_and_redraws_the_taken_ones(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The MACs of a create's ports are checked against the database together, and a draw
    that hits a port's MAC (or repeats one of the same create) is drawn again."""
    macs = iter([
        "fa:16:3e:00:00:01",  # server a
        # the create of three: :01 is taken, :02 is drawn twice; then :03 and :04
        "fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:02",
        "fa:16:3e:00:00:03", "fa:16:3e:00:00:04",
    ])  # fmt: skip
    monkeypatch.setattr(ipam, "new_mac", lambda: next(macs))
    creates = CreateServers(SqlUnitOfWork(db), NoCasts(), quota_defaults=UNLIMITED)
    creates.start()
    try:
        first = await created(creates, server("a"))
        many = await created(creates, server("b", min_count=3, max_count=3))
    finally:
        await creates.close()
    with db.begin_read() as connection:
        loaded = instance_repo.load_instances(connection, [*first.server_ids, *many.server_ids])
    assert sorted(p.mac for i in loaded for p in i.ports) == [
        "fa:16:3e:00:00:01", "fa:16:3e:00:00:02", "fa:16:3e:00:00:03", "fa:16:3e:00:00:04"
    ]  # fmt: skip


async def test_a_create_makes_as_many_round_trips_for_100_servers_as_for_one(
    db: Database,
) -> None:
    """Set-based: the create transaction of 100 servers with a port each, and a batch of 20
    creates of one, run the same statements as a create of one (a per-server query would hold
    the one SQLite writer for hundreds of milliseconds under load), and every address and MAC
    is still unique."""
    creates = CreateServers(SqlUnitOfWork(db), NoCasts(), quota_defaults=UNLIMITED)
    statements: list[str] = []

    def record(*args: object) -> None:
        statements.append(str(args[2]))

    async def batch(*commands: CreateServerCommand) -> int:
        statements.clear()
        event.listen(db.writer, "before_cursor_execute", record)
        try:
            results = await creates._record_batch([validate(c, P1) for c in commands])
        finally:
            event.remove(db.writer, "before_cursor_execute", record)
        assert all(isinstance(r, CreateServerResult) for r in results), results
        return len(statements)

    await batch(server("warm"))  # the default network and group exist now
    one = await batch(server("one"))
    assert await batch(server("many", min_count=100, max_count=100)) == one
    assert await batch(*(server(f"s{i}") for i in range(20))) == one
    with db.begin_read() as connection:
        stored = connection.execute(select(PORTS.c.fixed_ip, PORTS.c.mac)).all()
    assert len(stored) == 122
    assert len({a for a, _ in stored}) == 122 and len({m for _, m in stored}) == 122
