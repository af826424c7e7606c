"""Which ports and address sets a security-group change pushes, and where (on the in-memory
stores; tests/integration/test_port_rules_fan_out.py runs the same against a database)."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network

import pytest

from services.common.domain import Instance, TaskState, VmState, utcnow
from services.common.networking import (
    AddressSet,
    Direction,
    Network,
    PortSpec,
    SecurityGroupRule,
)
from services.common.records import GroupRule, SecurityGroup
from services.conductor.port_rules import PortRulesFanOut, _Pending
from tests.support.fake_stores import FakeNode, FakeUnitOfWork, make_instance

pytestmark = pytest.mark.timeout(10)

NET = Network(
    id="net-1", project_id="p1", name="n", cidr=IPv4Network("10.1.0.0/24"),
    gateway=IPv4Address("10.1.0.1"), dns_servers=(),
    allocation_pools=((IPv4Address("10.1.0.2"), IPv4Address("10.1.0.254")),), shared=False,
    is_default=False, segmentation_id=5, mtu=1500, created_at=utcnow(),
)  # fmt: skip
# Each project's default group lets its own members in (as the real default group does).
FROM_MEMBERS = {p: SecurityGroupRule(f"r-{p}", Direction.INGRESS, remote_group_id=f"default-{p}")
                for p in ("p1", "p2")}  # fmt: skip


class Pusher:
    def __init__(self, *, down: Sequence[str] = ()) -> None:
        self.down = set(down)
        self.pushed: dict[str, list[str]] = {}
        self.sets: dict[str, dict[str, AddressSet]] = {}

    async def update_port_rules(
        self, address: str, ports: Sequence[PortSpec], *, address_sets: Sequence[AddressSet] = ()
    ) -> int:
        if address in self.down:
            raise ConnectionError("unreachable")
        self.pushed[address] = sorted(p.instance_uuid for p in ports)
        self.sets[address] = {s.group_id: s for s in address_sets}
        return len(ports)


def server(uow: FakeUnitOfWork, host: str, index: int, *, project: str = "p1") -> Instance:
    uuid = f"00000000-0000-0000-0000-{index:012d}"
    port = PortSpec(f"port-{index}", uuid, NET.spec(), f"fa:16:3e:00:00:{index:02x}",
                    IPv4Address(f"10.1.0.{index + 10}"), (FROM_MEMBERS[project],))  # fmt: skip
    instance = make_instance(uuid=uuid, project_id=project, host=host, vm_state=VmState.ACTIVE,
                             task_state=None, ports=(port,))  # fmt: skip
    uow.db.add(instance)
    uow.db.memberships.append((uuid, f"default-{project}"))
    return instance


def fleet() -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    now = utcnow()
    uow.db.nodes["kvm1"] = FakeNode("kvm1", "10.0.0.1:7000", now)
    uow.db.nodes["kvm2"] = FakeNode("kvm2", "10.0.0.2:7000", now)
    uow.db.nodes["kvm3"] = FakeNode("kvm3", "10.0.0.3:7000", now)
    uow.db.nodes["test1"] = FakeNode("test1", "10.0.0.9:7000", now, hypervisor_type="TEST")
    for project, rule in FROM_MEMBERS.items():
        group_id = f"default-{project}"
        uow.db.security_groups[group_id] = SecurityGroup(
            group_id, project, "default", "", now,
            (GroupRule(rule.rule_id, group_id, Direction.INGRESS, rule.protocol, None, None,
                       None, group_id, now),),
        )  # fmt: skip
    return uow


def addresses(*instances: Instance) -> tuple[IPv4Address, ...]:
    return tuple(sorted(p.fixed_ip for i in instances for p in i.ports))


async def test_a_server_coming_pushes_only_its_groups_address_set_to_hosts_that_name_it() -> None:
    uow = fleet()
    a, b = server(uow, "kvm1", 1), server(uow, "kvm2", 2)
    on_test = server(uow, "test1", 3)  # libvirt's test hypervisor: nothing to push to
    server(uow, "kvm3", 4, project="p2")  # another project: its rules do not name p1's group
    building = make_instance(project_id="p1", task_state=TaskState.SCHEDULING)  # no host yet
    uow.db.add(building)
    pusher = Pusher()
    report = await PortRulesFanOut(uow, pusher).push(_Pending(churned={a.uuid}))
    members = AddressSet("default-p1", addresses(a, b, on_test))
    # no port is pushed again: the rules did not change, only the set's members did
    assert pusher.pushed == {"10.0.0.1:7000": [], "10.0.0.2:7000": []}
    assert pusher.sets == {
        "10.0.0.1:7000": {"default-p1": members},
        "10.0.0.2:7000": {"default-p1": members},
    }
    assert (report.hosts, report.ports, report.address_sets, report.failed_hosts) == (2, 0, 2, ())


async def test_a_server_that_went_leaves_its_groups_set_without_it() -> None:
    uow = fleet()
    stays, goes = server(uow, "kvm1", 1), server(uow, "kvm2", 2)
    uow.db.instances[goes.uuid] = make_instance(uuid=goes.uuid, project_id="p1",
                                                vm_state=VmState.DELETED, host="kvm2")  # fmt: skip
    uow.db.memberships.remove((goes.uuid, "default-p1"))  # memberships go with the server
    pusher = Pusher()
    await PortRulesFanOut(uow, pusher).push(_Pending(churned={goes.uuid}))
    assert pusher.pushed == {"10.0.0.1:7000": []}
    assert pusher.sets["10.0.0.1:7000"] == {
        "default-p1": AddressSet("default-p1", addresses(stays))
    }


async def test_a_group_change_pushes_ports_with_their_sets_and_reports_a_down_host() -> None:
    uow = fleet()
    member, other = server(uow, "kvm1", 1), server(uow, "kvm2", 2)
    uow.db.memberships.append((member.uuid, "g1"))
    uow.db.memberships.append((other.uuid, "g1"))
    outside = server(uow, "kvm2", 3)
    uow.db.memberships.remove((outside.uuid, "default-p1"))  # in no group
    pusher = Pusher(down=["10.0.0.2:7000"])
    report = await PortRulesFanOut(uow, pusher).push(_Pending(group_ids={"g1"}))
    assert pusher.pushed == {"10.0.0.1:7000": [member.uuid]}
    # the ports go with the sets their rules name, so the host can render them whole
    assert pusher.sets["10.0.0.1:7000"] == {
        "default-p1": AddressSet("default-p1", addresses(member, other))
    }
    assert report.failed_hosts == ("kvm2",)
