"""Where a server runs (console calls) and which instances a host may report on, on the
in-memory stores."""

from __future__ import annotations

import pytest

from services.api.consoles import ConsoleLocator
from services.api.context import RequestContext
from services.common.domain import TaskState, VmState, utcnow
from services.common.errors import NotFound, Unavailable, WrongState
from services.common.request_spec import StoredSpec
from services.conductor.host_scope import HostScope
from tests.support.fake_stores import FakeNode, FakeUnitOfWork, make_instance

pytestmark = pytest.mark.timeout(10)

DEMO = RequestContext("demo", "req-1")


async def test_a_console_is_found_on_its_servers_host() -> None:
    uow = FakeUnitOfWork()
    uow.db.nodes["h1"] = FakeNode("h1", "10.0.0.1:7000", utcnow())
    server = make_instance(vm_state=VmState.ACTIVE, task_state=None, host="h1")
    uow.db.add(server)
    located = await ConsoleLocator(uow)(server.uuid, DEMO)
    assert (located.uuid, located.vm_state, located.address) == (
        server.uuid, VmState.ACTIVE, "10.0.0.1:7000"
    )  # fmt: skip


async def test_a_console_refusal_says_why() -> None:
    uow = FakeUnitOfWork()
    theirs = make_instance(project_id="other", vm_state=VmState.ACTIVE, host="h1")
    unplaced = make_instance(task_state=TaskState.SCHEDULING)
    lost_host = make_instance(vm_state=VmState.ACTIVE, task_state=None, host="gone")
    uow.db.add(theirs, unplaced, lost_host)
    locate = ConsoleLocator(uow)
    with pytest.raises(NotFound) as raised:
        await locate(theirs.uuid, DEMO)
    assert raised.value.field == "server_id"
    with pytest.raises(WrongState, match="has no compute host yet"):
        await locate(unplaced.uuid, DEMO)
    with pytest.raises(Unavailable, match="compute host gone"):
        await locate(lost_host.uuid, DEMO)


async def test_a_host_may_report_on_what_is_or_was_placed_on_it_only() -> None:
    uow = FakeUnitOfWork()
    here = make_instance(host="h1", task_state=TaskState.SPAWNING)
    moved = make_instance(host="h2", request_spec=StoredSpec(tried_hosts=("h1",)))
    elsewhere = make_instance(host="h2")
    uow.db.add(here, moved, elsewhere)
    scope = HostScope(uow)
    foreign = await scope.foreign_instances("h1", [here.uuid, moved.uuid, elsewhere.uuid, "x"])
    assert foreign == [elsewhere.uuid, "x"]
    assert await scope.foreign_instances("h1", []) == []
