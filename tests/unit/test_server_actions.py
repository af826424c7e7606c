"""The api's DeleteServer and power actions on the in-memory stores: the intent is recorded
(task and instance action) before the conductor hears of it, and refusals name the field."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from services.api.context import RequestContext
from services.api.delete import DeleteServer
from services.api.power import PowerActions
from services.common.domain import PowerAction, TaskState, VmState
from services.common.errors import HostUnreachable, NotFound, WrongState
from tests.support.fake_stores import FakeUnitOfWork, make_instance

pytestmark = pytest.mark.timeout(10)

DEMO = RequestContext("demo", "req-7")


class FakeConductor:
    def __init__(self, *, reachable: bool = True) -> None:
        self.reachable = reachable
        self.deletes: list[tuple[list[str], str]] = []
        self.power: list[tuple[str, PowerAction, str]] = []

    async def delete_instances(self, uuids: Sequence[str], *, request_id: str = "") -> int:
        if not self.reachable:
            # what the typed conductor client raises in place of the transport's error
            raise HostUnreachable("conductor", "UNAVAILABLE")
        self.deletes.append((list(uuids), request_id))
        return len(uuids)

    async def power_action(self, uuid: str, action: PowerAction, *, request_id: str = "") -> None:
        self.power.append((uuid, action, request_id))


def active(uow: FakeUnitOfWork, **changes: object) -> str:
    instance = make_instance(**{"vm_state": VmState.ACTIVE, "task_state": None, "host": "h1",
                                **changes})  # fmt: skip
    uow.db.add(instance)
    return instance.uuid


async def test_a_delete_is_recorded_then_handed_to_the_conductor() -> None:
    uow = FakeUnitOfWork()
    uuid = active(uow)
    conductor = FakeConductor()
    await DeleteServer(uow, conductor)(uuid, DEMO)
    assert uow.db.instances[uuid].task_state is TaskState.DELETING
    assert uow.db.action_of(uuid, "delete").request_id == "req-7"
    assert conductor.deletes == [([uuid], "req-7")]


async def test_a_delete_the_conductor_does_not_take_stays_recorded_for_the_reconciler() -> None:
    uow = FakeUnitOfWork()
    uuid = active(uow)
    await DeleteServer(uow, FakeConductor(reachable=False))(uuid, DEMO)
    assert uow.db.instances[uuid].task_state is TaskState.DELETING


async def test_another_projects_or_a_deleted_server_is_not_found_and_nothing_is_sent() -> None:
    uow = FakeUnitOfWork()
    theirs = active(uow, project_id="other")
    gone = active(uow, vm_state=VmState.DELETED)
    conductor = FakeConductor()
    for uuid in (theirs, gone):
        with pytest.raises(NotFound) as raised:
            await DeleteServer(uow, conductor)(uuid, DEMO)
        assert raised.value.field == "id"
    assert conductor.deletes == [] and uow.db.actions == []
    assert uow.db.instances[theirs].task_state is None


async def test_a_stop_records_its_task_and_action_then_goes_to_the_conductor() -> None:
    uow = FakeUnitOfWork()
    uuid = active(uow)
    conductor = FakeConductor()
    await PowerActions(uow, conductor)(uuid, PowerAction.STOP, DEMO)
    assert uow.db.instances[uuid].task_state is TaskState.POWERING_OFF
    assert uow.db.action_of(uuid, "stop").request_id == "req-7"
    assert conductor.power == [(uuid, PowerAction.STOP, "req-7")]


async def test_a_power_action_in_the_wrong_state_says_why_and_records_nothing() -> None:
    uow = FakeUnitOfWork()
    running = active(uow)
    busy = active(uow, task_state=TaskState.REBOOTING)
    conductor = FakeConductor()
    with pytest.raises(WrongState, match="cannot start a server that is active"):
        await PowerActions(uow, conductor)(running, PowerAction.START, DEMO)
    with pytest.raises(WrongState, match="cannot stop while the server is rebooting"):
        await PowerActions(uow, conductor)(busy, PowerAction.STOP, DEMO)
    with pytest.raises(NotFound):
        await PowerActions(uow, conductor)(
            "5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31", PowerAction.STOP, DEMO
        )
    assert conductor.power == [] and uow.db.actions == []
    assert uow.db.instances[running].task_state is None
