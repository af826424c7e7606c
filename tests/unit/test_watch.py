"""WatchServers on the in-memory stores: a snapshot first, then each newer change once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from services.api.context import RequestContext
from services.api.watch import POLLER_TENANT, ServerWatch
from services.common.context import tenant_var
from services.common.domain import Instance, VmState, utcnow
from services.common.errors import NotFound
from services.common.stream_turns import StreamTurns
from tests.support.fake_stores import FakeUnitOfWork, make_instance

pytestmark = pytest.mark.timeout(10)

DEMO = RequestContext("demo", "req-1")


async def next_event(stream: AsyncIterator[tuple[Instance, str, str]]) -> tuple[Instance, str]:
    """The next (server, change); the resume token is the integration tests' business."""
    instance, change, _token = await asyncio.wait_for(anext(stream), timeout=5)
    return instance, change


def changed(instance: Instance, **changes: object) -> Instance:
    return replace(instance, updated_at=utcnow(), **changes)  # type: ignore[arg-type]


async def test_a_server_watch_sends_its_snapshot_then_changes_and_ends_at_delete() -> None:
    uow = FakeUnitOfWork()
    server = make_instance(created_at=utcnow() - timedelta(seconds=1))
    uow.db.add(server)
    watch = ServerWatch(uow, poll_interval=0.01)
    stream = watch.watch(DEMO, server_id=server.uuid)
    try:
        first, change = await next_event(stream)
        assert (first.uuid, change) == (server.uuid, "snapshot")
        uow.db.add(changed(server, vm_state=VmState.ACTIVE, task_state=None))
        update, change = await next_event(stream)
        assert (update.vm_state, change) == (VmState.ACTIVE, "update")
        uow.db.add(changed(update, vm_state=VmState.DELETED))
        gone, change = await next_event(stream)
        assert (gone.vm_state, change) == (VmState.DELETED, "deleted")
        with pytest.raises(StopAsyncIteration):
            await next_event(stream)
    finally:
        await stream.aclose()
        await watch.close()


async def test_a_project_watch_sees_its_servers_and_not_another_projects() -> None:
    uow = FakeUnitOfWork()
    then = utcnow() - timedelta(seconds=1)
    theirs = make_instance(project_id="other", created_at=then)
    mine = make_instance(created_at=then)
    uow.db.add(theirs, mine)
    watch = ServerWatch(uow, poll_interval=0.01)
    stream = watch.watch(DEMO)
    try:
        instance, change = await next_event(stream)
        assert (instance.uuid, change) == (mine.uuid, "snapshot")
        uow.db.add(changed(theirs, task_state=None), changed(mine, task_state=None))
        instance, change = await next_event(stream)
        assert (instance.uuid, instance.task_state, change) == (mine.uuid, None, "update")
    finally:
        await stream.aclose()
        await watch.close()


async def test_watching_a_server_of_another_project_is_not_found() -> None:
    uow = FakeUnitOfWork()
    theirs = make_instance(project_id="other")
    uow.db.add(theirs)
    watch = ServerWatch(uow, poll_interval=0.01)
    stream = watch.watch(DEMO, server_id=theirs.uuid)
    try:
        with pytest.raises(NotFound):
            await next_event(stream)
    finally:
        await stream.aclose()
        await watch.close()


async def test_a_snapshot_is_read_with_the_watching_projects_pacer() -> None:
    """A snapshot is as large a read as a page of ListServers: it is paced as one, for the
    project that watches; the poller's reads of changes (a page's worth every poll under a
    flood of creates) are paced too, in a turn of their own."""
    uow = FakeUnitOfWork()
    uow.db.add(make_instance(created_at=utcnow() - timedelta(seconds=1)))
    paced: list[str] = []

    def pacer(project_id: str) -> Callable[[], None]:
        return lambda: paced.append(project_id)

    watch = ServerWatch(uow, poll_interval=0.01, pacer=pacer)
    stream = watch.watch(DEMO)
    try:
        _, change = await next_event(stream)
        assert change == "snapshot"
        assert paced[0] == "demo"
        for _ in range(500):
            if POLLER_TENANT in paced:
                break
            await asyncio.sleep(0.01)
        assert set(paced) == {"demo", POLLER_TENANT}
    finally:
        await stream.aclose()
        await watch.close()


async def test_a_projects_watches_send_one_at_a_time_at_its_share() -> None:
    """Two watches of one project: while one holds its turn (its message being sent), the
    other's next message waits, and the project's sending rests while others are busy."""
    uow = FakeUnitOfWork()
    then = utcnow() - timedelta(seconds=1)
    uow.db.add(*(make_instance(created_at=then) for _ in range(3)))
    rests: list[float] = []
    clock = [0.0]

    async def rest(seconds: float) -> None:
        rests.append(seconds)

    turns = StreamTurns(lambda _p: True, share=0.5, clock=lambda: clock[0], sleep=rest)
    watch = ServerWatch(uow, poll_interval=0.01, turns=turns)
    first, second = watch.watch(DEMO), watch.watch(DEMO)
    try:
        await next_event(first)  # first now holds demo's turn until it asks for more
        assert turns.waiting("demo") == 1
        waiting = asyncio.create_task(next_event(second))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the project's other stream waits for the turn
        clock[0] += 0.003  # the first message took 3 ms to make and send
        again = asyncio.create_task(next_event(first))  # gives the turn up, resting first
        await asyncio.wait_for(waiting, timeout=5)  # the other stream had waited longest
        assert rests == [pytest.approx(0.003)]
        assert not again.done()
        await second.aclose()  # a client going away frees the turn it held
        await asyncio.wait_for(again, timeout=5)
    finally:
        await first.aclose()
        await second.aclose()
        await watch.close()


async def test_the_poller_reads_in_a_turn_of_its_own_not_the_first_watchers() -> None:
    """Started from a watcher's call, the shared poller read as that caller's project and
    queued behind that project's reads (its snapshot flood), and every watch waited."""
    uow = FakeUnitOfWork()
    uow.db.add(make_instance(created_at=utcnow() - timedelta(seconds=1)))
    tenants: list[str] = []
    read = uow.read

    async def recording_read(work: Callable[..., object], **kw: object) -> object:
        tenants.append(tenant_var.get())
        return await read(work, **kw)  # type: ignore[arg-type]

    uow.read = recording_read  # type: ignore[method-assign]
    watch = ServerWatch(uow, poll_interval=0.01)
    tenant_var.set("demo")  # as Identify sets it for the watcher's call
    stream = watch.watch(DEMO)
    try:
        await next_event(stream)
        for _ in range(500):
            if len(tenants) >= 2:
                break
            await asyncio.sleep(0.01)
        assert tenants[0] == "demo"  # the snapshot: the watcher's own read
        assert set(tenants[1:]) == {POLLER_TENANT}
    finally:
        await stream.aclose()
        await watch.close()
