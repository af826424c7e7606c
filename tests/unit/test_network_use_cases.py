"""The networks use case on the in-memory stores (tests/integration/test_networks.py runs it
on SQLite and PostgreSQL)."""

from __future__ import annotations

from ipaddress import IPv4Address

import pytest

from services.api.context import RequestContext
from services.api.networks import CreateNetworkCommand, NetworkUseCases
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, WrongState
from services.common.records import NewPort
from tests.support.fake_stores import FakeUnitOfWork

pytestmark = pytest.mark.timeout(10)

P1 = RequestContext("p1", "req-1")
P2 = RequestContext("p2", "req-2")


async def test_a_network_is_made_listed_and_refused_deletion_while_a_port_uses_it() -> None:
    uow = FakeUnitOfWork()
    networks = NetworkUseCases(uow)
    made = await networks.create(P1, CreateNetworkCommand("lan", "10.70.0.0/24"))
    assert (made.network.name, made.ports_in_use) == ("lan", 0)
    with pytest.raises(AlreadyExists):
        await networks.create(P1, CreateNetworkCommand("lan", "10.71.0.0/24"))
    with pytest.raises(InvalidArgument, match="overlaps"):
        await networks.create(P1, CreateNetworkCommand("other", "10.70.0.128/25"))
    assert [u.network.name for u in await networks.list_networks(P1)] == ["lan"]
    assert await networks.list_networks(P2) == []

    uow.db.ports.append(
        NewPort("server-1", made.network.id, 0, "fa:16:3e:00:00:01", IPv4Address("10.70.0.5"))
    )
    assert (await networks.get(P1, "lan")).ports_in_use == 1
    with pytest.raises(WrongState, match="port"):
        await networks.delete(P1, "lan")

    uow.db.ports.clear()
    await networks.delete(P1, "lan")
    with pytest.raises(NotFound):
        await networks.get(P1, made.network.id)
