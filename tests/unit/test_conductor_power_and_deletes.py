"""The conductor's power actions and deletes, on the in-memory stores: what reaches the
host, what is given back or finished locally when it cannot be reached."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest

from services.common.domain import PowerAction, PowerState, TaskState, VmState, utcnow
from services.common.errors import HostUnreachable, NotFound, Unavailable
from services.conductor.deletes import DeleteInstances
from services.conductor.power import PowerActions
from tests.support.fake_stores import FakeAction, FakeNode, FakeUnitOfWork, make_instance

pytestmark = pytest.mark.timeout(10)


def unreachable() -> HostUnreachable:
    # what the typed compute client raises in place of the transport's UNAVAILABLE
    return HostUnreachable("compute", "UNAVAILABLE", "down")


class FakeComputes:
    """Records calls per compute address; the addresses in ``down`` cannot be reached."""

    def __init__(self, *, down: Sequence[str] = ()) -> None:
        self.down = set(down)
        self.power_calls: list[tuple[str, str, str, str]] = []
        self.terminated: list[tuple[str, list[str]]] = []

    async def power_action(
        self, address: str, uuid: str, action: PowerAction, *, request_id: str = ""
    ) -> None:
        if address in self.down:
            raise unreachable()
        self.power_calls.append((address, uuid, action, request_id))

    async def terminate(self, address: str, uuids: Sequence[str], *, request_id: str = "") -> int:
        if address in self.down:
            raise unreachable()
        self.terminated.append((address, list(uuids)))
        return len(uuids)


def with_host(uow: FakeUnitOfWork, host: str, address: str) -> None:
    uow.db.nodes[host] = FakeNode(host, address, utcnow())


# --- power actions ---------------------------------------------------------------------


def stopping(host: str | None) -> tuple[FakeUnitOfWork, str]:
    uow = FakeUnitOfWork()
    instance = make_instance(vm_state=VmState.ACTIVE, task_state=TaskState.POWERING_OFF,
                             power_state=PowerState.RUNNING, host=host)  # fmt: skip
    uow.db.add(instance)
    uow.db.actions.append(FakeAction(instance.uuid, "stop", "req-1", "demo", utcnow()))
    return uow, instance.uuid


async def test_a_power_action_goes_to_the_instances_host_and_writes_nothing() -> None:
    uow, uuid = stopping("h1")
    with_host(uow, "h1", "10.0.0.1:7000")
    computes = FakeComputes()
    await PowerActions(uow, computes)(uuid, PowerAction.STOP, "req-1")
    assert computes.power_calls == [("10.0.0.1:7000", uuid, "stop", "req-1")]
    assert uow.writes == 0
    assert uow.db.instances[uuid].task_state is TaskState.POWERING_OFF  # compute settles it


async def test_an_instance_without_a_host_gets_its_task_back_and_not_found() -> None:
    uow, uuid = stopping(None)
    computes = FakeComputes()
    with pytest.raises(NotFound) as raised:
        await PowerActions(uow, computes)(uuid, PowerAction.STOP)
    assert raised.value.field == "instance_uuid"
    assert computes.power_calls == []
    assert uow.db.instances[uuid].task_state is None
    action = uow.db.action_of(uuid, "stop")
    assert action.finish_time is not None and action.message == "not started: it has no host"


async def test_an_unreachable_host_gives_the_task_back_and_the_caller_hears_unavailable() -> None:
    uow, uuid = stopping("h1")
    with_host(uow, "h1", "10.0.0.1:7000")
    with pytest.raises(Unavailable, match="compute host unreachable: UNAVAILABLE"):
        await PowerActions(uow, FakeComputes(down=["10.0.0.1:7000"]))(uuid, PowerAction.STOP)
    assert uow.db.instances[uuid].task_state is None
    assert uow.db.instances[uuid].vm_state is VmState.ACTIVE
    assert uow.db.action_of(uuid, "stop").message == (
        "not started: compute host unreachable: UNAVAILABLE"
    )


async def test_giving_back_a_power_action_keeps_a_delete_that_came_meanwhile() -> None:
    uow, uuid = stopping("h1")
    with_host(uow, "h1", "10.0.0.1:7000")
    uow.db.add(replace(uow.db.instances[uuid], task_state=TaskState.DELETING))
    with pytest.raises(Unavailable):
        await PowerActions(uow, FakeComputes(down=["10.0.0.1:7000"]))(uuid, PowerAction.STOP)
    assert uow.db.instances[uuid].task_state is TaskState.DELETING


# --- deletes ---------------------------------------------------------------------------


def deleting_on(uow: FakeUnitOfWork, host: str | None, vm_state: VmState = VmState.ACTIVE) -> str:
    instance = make_instance(vm_state=vm_state, task_state=TaskState.DELETING, host=host)
    uow.db.add(instance)
    if host is not None:
        uow.db.allocations[instance.uuid] = host
    return instance.uuid


async def test_a_delete_nobody_holds_finishes_at_once_and_is_announced() -> None:
    uow = FakeUnitOfWork()
    unplaced = deleting_on(uow, None, vm_state=VmState.BUILDING)
    went: list[list[str]] = []
    computes = FakeComputes()
    done = await DeleteInstances(uow, computes, servers_went=lambda u: went.append(list(u)))(
        [unplaced]
    )
    assert done == 1
    assert uow.db.instances[unplaced].vm_state is VmState.DELETED
    assert uow.db.instances[unplaced].task_state is None
    assert computes.terminated == [] and went == [[unplaced]]
    assert uow.writes == 1


async def test_deletes_on_hosts_go_to_each_host_once_and_wait_for_its_report() -> None:
    uow = FakeUnitOfWork()
    with_host(uow, "h1", "10.0.0.1:7000")
    with_host(uow, "h2", "10.0.0.2:7000")
    a, b, c = deleting_on(uow, "h1"), deleting_on(uow, "h1"), deleting_on(uow, "h2")
    computes = FakeComputes()
    await DeleteInstances(uow, computes)([a, b, c], request_id="req-9")
    assert sorted(computes.terminated) == [("10.0.0.1:7000", [a, b]), ("10.0.0.2:7000", [c])]
    # the hosts report DELETED when the domains are gone; nothing is finished here
    assert all(uow.db.instances[u].vm_state is VmState.ACTIVE for u in (a, b, c))
    assert set(uow.db.allocations) == {a, b, c}


async def test_a_host_that_cannot_be_reached_has_its_deletes_finished_locally() -> None:
    uow = FakeUnitOfWork()
    with_host(uow, "h1", "10.0.0.1:7000")
    with_host(uow, "h2", "10.0.0.2:7000")
    lost, kept = deleting_on(uow, "h1"), deleting_on(uow, "h2")
    computes = FakeComputes(down=["10.0.0.1:7000"])
    await DeleteInstances(uow, computes)([lost, kept])
    assert uow.db.instances[lost].vm_state is VmState.DELETED
    assert lost not in uow.db.allocations
    assert uow.db.instances[kept].vm_state is VmState.ACTIVE
    assert computes.terminated == [("10.0.0.2:7000", [kept])]


async def test_a_host_whose_node_record_is_gone_has_its_deletes_finished_at_once() -> None:
    uow = FakeUnitOfWork()
    orphan = deleting_on(uow, "vanished")
    computes = FakeComputes()
    await DeleteInstances(uow, computes)([orphan])
    assert uow.db.instances[orphan].vm_state is VmState.DELETED
    assert orphan not in uow.db.allocations
    assert computes.terminated == []


async def test_only_instances_still_deleting_are_touched() -> None:
    uow = FakeUnitOfWork()
    with_host(uow, "h1", "10.0.0.1:7000")
    running = make_instance(vm_state=VmState.ACTIVE, task_state=None, host="h1")
    uow.db.add(running)
    computes = FakeComputes()
    await DeleteInstances(uow, computes)([running.uuid, "no-such-server"])
    assert computes.terminated == []
    assert uow.db.instances[running.uuid].vm_state is VmState.ACTIVE
