"""Security-group changes reach every affected port: the conductor's fan-out reads the
affected instances' ports with their rules and the address sets those name, and pushes them
to each host; a server that comes or goes changes only address sets, pushed alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from sqlalchemy import update

from services.api.create import CreateServers
from services.api.security_group_rules import CreateRuleCommand
from services.api.security_groups import SecurityGroupUseCases
from services.common.db import instances as instance_repo
from services.common.db import placement
from services.common.db.engine import Database
from services.common.db.models import INSTANCES, NODES
from services.common.db.stores import SqlUnitOfWork
from services.common.domain import ComputeNodeReport, utcnow
from services.common.networking import AddressSet, IpProtocol, PortSpec
from services.conductor.port_rules import PortRulesFanOut, _Pending
from tests.integration.test_security_groups import P1, RecordedChanges, creates, server

pytestmark = pytest.mark.timeout(60)
__all__ = ["creates"]  # the fixture, imported for this module's tests


class RecordingPusher:
    def __init__(self) -> None:
        self.pushed: dict[str, list[PortSpec]] = {}
        self.sets: dict[str, dict[str, AddressSet]] = {}
        self.arrived = asyncio.Event()

    async def update_port_rules(
        self, address: str, ports: Sequence[PortSpec], *, address_sets: Sequence[AddressSet] = ()
    ) -> int:
        self.pushed[address] = list(ports)
        self.sets[address] = {s.group_id: s for s in address_sets}
        self.arrived.set()
        return len(ports)


def ports_of(db: Database, uuid: str) -> tuple[PortSpec, ...]:
    with db.begin_read() as connection:
        (instance,) = instance_repo.load_instances(connection, [uuid])
    return instance.ports


def place(db: Database, uuids: Sequence[str], host: str) -> None:
    with db.begin() as connection:
        placement.upsert_compute_node(
            connection,
            ComputeNodeReport(host, host, f"{host}:1", 4, 4096, 40, "QEMU", "x86_64", "nova",
                              1.0, 1.0, 1.0),
            now=utcnow(),
        )  # fmt: skip
        connection.execute(
            update(INSTANCES).where(INSTANCES.c.uuid.in_(list(uuids)))
            .values(host=host, vm_state="active", task_state=None)
        )  # fmt: skip


async def test_a_rule_change_and_a_new_member_reach_every_port_of_the_group(
    db: Database, creates: CreateServers
) -> None:
    one, two, three = [await server(creates, name) for name in ("one", "two", "three")]
    place(db, [one, two], "host-a")
    place(db, [three], "host-b")
    pusher = RecordingPusher()
    fan_out = PortRulesFanOut(SqlUnitOfWork(db), pusher)

    # a member came: no port is pushed again, only the default group's set, to each host
    report = await fan_out.push(_Pending(churned={three}))
    assert (report.hosts, report.ports, report.address_sets) == (2, 0, 2)
    assert pusher.pushed == {"host-a:1": [], "host-b:1": []}
    default = (await SecurityGroupUseCases(SqlUnitOfWork(db), RecordedChanges()).get(
        P1, "default")).id  # fmt: skip
    members = tuple(sorted(p.fixed_ip for u in (one, two, three) for p in ports_of(db, u)))
    assert (
        pusher.sets["host-a:1"]
        == pusher.sets["host-b:1"]
        == {default: AddressSet(default, members)}
    )

    # a member gone: its address leaves the set, its host (none of its ports left) gets none
    with db.begin() as connection:
        instance_repo.mark_deleted(connection, [three], utcnow())
    pusher.pushed.clear()
    await fan_out.push(_Pending(churned={three}))
    assert set(pusher.pushed) == {"host-a:1"}
    left = tuple(sorted(p.fixed_ip for u in (one, two) for p in ports_of(db, u)))
    assert pusher.sets["host-a:1"] == {default: AddressSet(default, left)}
    three = await server(creates, "three-again")
    place(db, [three], "host-b")

    # a rule added to the default group reaches its members, and nothing else is pushed
    groups = SecurityGroupUseCases(SqlUnitOfWork(db), RecordedChanges())
    rule = await groups.create_rule(P1, CreateRuleCommand(
        "default", "ingress", "tcp", 8080, 8080, remote_ip_prefix="0.0.0.0/0"))  # fmt: skip
    pusher.pushed.clear()
    await fan_out.push(_Pending(group_ids={rule.group_id}))
    pushed = [p for ports in pusher.pushed.values() for p in ports]
    assert {p.instance_uuid for p in pushed} == {one, two, three}
    web = [r for p in pushed for r in p.security_rules if r.protocol is IpProtocol.TCP]
    assert len(web) == 3 and all((r.port_min, r.port_max) == (8080, 8080) for r in web)
    # the ports name the default group's set, and it goes with them (a host renders whole)
    ingress = [r for r in pushed[0].security_rules if r.remote_group_id is not None]
    assert [r.remote_group_id for r in ingress] == [default]
    assert all(set(s) == {default} for s in pusher.sets.values())


async def test_coalesced_requests_are_pushed_in_the_background(
    db: Database, creates: CreateServers
) -> None:
    uuid = await server(creates, "solo")
    place(db, [uuid], "host-c")
    pusher = RecordingPusher()
    fan_out = PortRulesFanOut(SqlUnitOfWork(db), pusher)
    fan_out.start()
    try:
        fan_out.servers_came_or_went([uuid])
        fan_out.groups_changed([], [uuid])
        async with asyncio.timeout(10):
            await pusher.arrived.wait()
    finally:
        await fan_out.close()
    assert [p.instance_uuid for p in pusher.pushed["host-c:1"]] == [uuid]  # and the sets
    assert len(pusher.sets["host-c:1"]) == 1


async def test_hosts_of_the_test_hypervisor_get_no_push(
    db: Database, creates: CreateServers
) -> None:
    uuid = await server(creates, "on-test-driver")
    place(db, [uuid], "host-t")
    with db.begin() as connection:
        connection.execute(
            update(NODES).where(NODES.c.host == "host-t").values(hypervisor_type="TEST")
        )
    pusher = RecordingPusher()
    report = await PortRulesFanOut(SqlUnitOfWork(db), pusher).push(_Pending(churned={uuid}))
    assert report.hosts == 0 and pusher.pushed == {}
