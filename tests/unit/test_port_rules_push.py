"""Which ports a security-group change pushes, and where (on the in-memory stores;
tests/integration/test_port_rules_fan_out.py runs the same against a database)."""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network

import pytest

from services.common.domain import Instance, TaskState, VmState, utcnow
from services.common.networking import Network, PortSpec
from services.conductor.port_rules import PortRulesFanOut, _Pending
from tests.support.fake_stores import FakeNode, FakeUnitOfWork, make_instance

pytestmark = pytest.mark.timeout(10)

NET = Network(
    id="net-1", project_id="p1", name="n", cidr=IPv4Network("10.1.0.0/24"),
    gateway=IPv4Address("10.1.0.1"), dns_servers=(),
    allocation_pools=((IPv4Address("10.1.0.2"), IPv4Address("10.1.0.254")),), shared=False,
    is_default=False, segmentation_id=5, mtu=1500, created_at=utcnow(),
)  # fmt: skip


class Pusher:
    def __init__(self, *, down: Sequence[str] = ()) -> None:
        self.down = set(down)
        self.pushed: dict[str, list[str]] = {}

    async def update_port_rules(self, address: str, ports: Sequence[PortSpec]) -> int:
        if address in self.down:
            raise ConnectionError("unreachable")
        self.pushed[address] = sorted(p.instance_uuid for p in ports)
        return len(ports)


def server(uow: FakeUnitOfWork, host: str, index: int, *, project: str = "p1") -> Instance:
    uuid = f"00000000-0000-0000-0000-{index:012d}"
    port = PortSpec(f"port-{index}", uuid, NET.spec(), f"fa:16:3e:00:00:{index:02x}",
                    IPv4Address(f"10.1.0.{index + 10}"))  # fmt: skip
    instance = make_instance(uuid=uuid, project_id=project, host=host, vm_state=VmState.ACTIVE,
                             task_state=None, ports=(port,))  # fmt: skip
    uow.db.add(instance)
    return instance


def fleet() -> FakeUnitOfWork:
    uow = FakeUnitOfWork()
    now = utcnow()
    uow.db.nodes["kvm1"] = FakeNode("kvm1", "10.0.0.1:7000", now)
    uow.db.nodes["kvm2"] = FakeNode("kvm2", "10.0.0.2:7000", now)
    uow.db.nodes["test1"] = FakeNode("test1", "10.0.0.9:7000", now, hypervisor_type="TEST")
    return uow


async def test_a_server_coming_refreshes_its_projects_ports_on_hosts_with_a_datapath() -> None:
    uow = fleet()
    a, b = server(uow, "kvm1", 1), server(uow, "kvm2", 2)
    server(uow, "test1", 3)  # libvirt's test hypervisor: nothing to push to
    server(uow, "kvm1", 4, project="p2")  # another project: its rules do not name p1's
    building = make_instance(project_id="p1", task_state=TaskState.SCHEDULING)  # no host yet
    uow.db.add(building)
    pusher = Pusher()
    report = await PortRulesFanOut(uow, pusher).push(_Pending(churned={a.uuid}))
    assert pusher.pushed == {"10.0.0.1:7000": [a.uuid], "10.0.0.2:7000": [b.uuid]}
    assert (report.hosts, report.ports, report.failed_hosts) == (2, 2, ())


async def test_a_group_change_reaches_its_members_and_a_host_that_is_down_is_reported() -> None:
    uow = fleet()
    member, other = server(uow, "kvm1", 1), server(uow, "kvm2", 2)
    server(uow, "kvm2", 3)  # in no group
    uow.db.memberships += [(member.uuid, "g1"), (other.uuid, "g1")]
    pusher = Pusher(down=["10.0.0.2:7000"])
    report = await PortRulesFanOut(uow, pusher).push(_Pending(group_ids={"g1"}))
    assert pusher.pushed == {"10.0.0.1:7000": [member.uuid]}
    assert report.failed_hosts == ("kvm2",)
