"""A host's inventory (ListHostInstances) stays small however big a group that lets its own
members in: the members travel once, as the group's address set, not on every port. With
one /32 per member on every port, 200 servers in the default group on one host came to
~40,000 addresses; the bench's 4,400 took the answer past gRPC's 4 MiB limit."""

from __future__ import annotations

import pytest

from services.api.create import CreateServerCommand, CreateServers
from services.api.networks import CreateNetworkCommand, NetworkUseCases
from services.common.db import instances as instance_repo
from services.common.db.engine import Database
from services.common.db.stores import SqlUnitOfWork
from services.common.rpc.host_inventory import host_instances_from_proto, host_instances_to_proto
from tests.integration.test_port_rules_fan_out import place
from tests.integration.test_security_groups import P1, creates

pytestmark = pytest.mark.timeout(120)
__all__ = ["creates"]  # the fixture, imported for this module's tests

GRPC_MAX_MESSAGE = 4 * 1024 * 1024


async def hundred(creates: CreateServers, name: str) -> list[str]:
    command = CreateServerCommand(name=name, flavor_ref="m1.tiny", image_ref="nova-tiny",
                                  networks=["lan"], min_count=100, max_count=100)  # fmt: skip
    return list((await creates(command, P1)).server_ids)


def inventory_bytes(db: Database, host: str) -> tuple[int, int, int]:
    """The serialized answer's size, its address sets, and the members of the largest."""
    with db.begin_read() as connection:
        found = instance_repo.host_instances(connection, host)
    reply = host_instances_to_proto(found)
    back = host_instances_from_proto(reply)
    assert all(len(i.address_sets) == 1 for i in back)  # each sees the default group's set
    return (
        reply.ByteSize(),
        len(reply.address_sets),
        max(len(s.addresses) for s in reply.address_sets),
    )


async def test_list_host_instances_for_200_servers_of_one_group_stays_small_and_linear(
    db: Database, creates: CreateServers
) -> None:
    await NetworkUseCases(SqlUnitOfWork(db)).create(P1, CreateNetworkCommand("lan", "10.80.0.0/24"))
    first = await hundred(creates, "a")
    place(db, first, "big-host")
    size_100, sets_100, members_100 = inventory_bytes(db, "big-host")
    place(db, await hundred(creates, "b"), "big-host")
    size_200, sets_200, members_200 = inventory_bytes(db, "big-host")
    # every server is in "default", which lets its members in: one set, once per answer
    assert (sets_100, members_100, sets_200, members_200) == (1, 100, 1, 200)
    assert size_200 < 200_000 < GRPC_MAX_MESSAGE
    # twice the servers, about twice the bytes (a member on every port would make it 4x)
    assert size_200 < 2.2 * size_100, (size_100, size_200)
