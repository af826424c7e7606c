"""WatchServers' resume token on a real database: a client that drops its stream and comes
back with the last token it got misses no change (each server comes in its latest state),
and is told to take a new snapshot when that cannot be promised."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from services.api.context import RequestContext
from services.api.watch import ServerWatch
from services.common.db.archive import archive_batch
from services.common.db.engine import Database
from services.common.db.instances import insert_instances, mark_deleted
from services.common.db.migrate import upgrade
from services.common.db.models import INSTANCES
from services.common.db.stores import SqlUnitOfWork
from services.common.domain import Flavor, Instance, PowerState, VmState, utcnow
from services.common.errors import InvalidArgument, WrongState

pytestmark = pytest.mark.timeout(120)

FLAVOR = Flavor("1", "m1.tiny", 1, 64, 1)
WAIT = 10.0
Event = tuple[Instance, str, str]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'nova.sqlite'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.close()


def caller(project: str = "p1") -> RequestContext:
    return RequestContext(project_id=project, request_id="req")


def create(db: Database, name: str, project: str = "p1", reservation: str = "r-1") -> str:
    server = Instance(
        uuid=str(uuid.uuid4()), id=None, display_name=name, project_id=project, flavor=FLAVOR,
        image_id="img", reservation_id=reservation, vm_state=VmState.BUILDING, task_state=None,
        power_state=PowerState.NOSTATE, host=None, node=None, metadata={}, created_at=utcnow(),
    )  # fmt: skip
    with db.begin() as connection:
        insert_instances(connection, [server])
    return server.uuid


def set_state(db: Database, server_id: str, state: VmState) -> None:
    with db.begin() as connection:
        if state is VmState.DELETED:
            mark_deleted(connection, [server_id], utcnow())
        else:
            connection.execute(
                update(INSTANCES)
                .where(INSTANCES.c.uuid == server_id)
                .values(vm_state=state.value, updated_at=utcnow())
            )


async def take(stream: AsyncIterator[Event], count: int) -> list[Event]:
    return [await asyncio.wait_for(anext(stream), WAIT) for _ in range(count)]


async def until(
    stream: AsyncIterator[Event], view: dict[str, VmState], want: dict[str, VmState]
) -> str:
    """Read events into ``view`` until it shows ``want``; the last token read."""
    token = ""
    while view != want:
        instance, change, token_ = await asyncio.wait_for(anext(stream), WAIT)
        assert change != "snapshot", "a resumed stream has no snapshot"
        assert (change == "deleted") == (instance.vm_state is VmState.DELETED)
        view[instance.uuid] = instance.vm_state
        token = token_ or token
    return token


async def test_a_resumed_watch_gets_every_change_made_while_it_was_away(db: Database) -> None:
    watch = ServerWatch(SqlUnitOfWork(db), poll_interval=0.01, lookback=timedelta(seconds=1))
    try:
        a, b = create(db, "a"), create(db, "b")
        stream = watch.watch(caller())
        snapshot = await take(stream, 2)
        assert [change for _, change, _ in snapshot] == ["snapshot", "snapshot"]
        assert snapshot[0][2] == "" and snapshot[1][2], "a token on the snapshot's last event"
        token = snapshot[1][2]
        await stream.aclose()  # the stream drops
        set_state(db, a, VmState.ACTIVE)
        set_state(db, a, VmState.STOPPED)  # two changes: the latest state comes
        c = create(db, "c")
        set_state(db, b, VmState.DELETED)
        view = {a: VmState.BUILDING, b: VmState.BUILDING}
        want = {a: VmState.STOPPED, b: VmState.DELETED, c: VmState.BUILDING}
        resumed = watch.watch(caller(), resume_token=token)
        token = await until(resumed, view, want)
        assert token
        set_state(db, c, VmState.ACTIVE)  # and then live changes
        await until(resumed, view, {**want, c: VmState.ACTIVE})
        await resumed.aclose()
    finally:
        await watch.close()


async def test_many_drops_lose_no_change(db: Database) -> None:
    """Changes made at random while connected and while away; after each drop the client
    resumes from its last token; its view always catches up with the database."""
    watch = ServerWatch(SqlUnitOfWork(db), poll_interval=0.01, lookback=timedelta(seconds=1))
    chance = random.Random(17)
    try:
        servers = [create(db, f"s{i}") for i in range(4)]
        truth = dict.fromkeys(servers, VmState.BUILDING)
        stream = watch.watch(caller())
        view: dict[str, VmState] = {}
        token = ""
        for instance, _, token_ in await take(stream, len(servers)):
            view[instance.uuid] = instance.vm_state
            token = token_ or token
        for _ in range(6):
            for _ in range(chance.randint(0, 3)):  # seen live
                server = chance.choice([s for s in truth if truth[s] is not VmState.DELETED])
                truth[server] = chance.choice([VmState.ACTIVE, VmState.STOPPED, VmState.ERROR])
                set_state(db, server, truth[server])
            token = await until(stream, view, truth) or token
            await stream.aclose()
            for _ in range(chance.randint(1, 4)):  # made while away
                if chance.random() < 0.3:
                    server = create(db, "late")
                    truth[server] = VmState.BUILDING
                else:
                    live = [s for s in truth if truth[s] is not VmState.DELETED]
                    server = chance.choice(live)
                    truth[server] = chance.choice(
                        [VmState.ACTIVE, VmState.STOPPED, VmState.DELETED]
                    )
                    set_state(db, server, truth[server])
            stream = watch.watch(caller(), resume_token=token)
            token = await until(stream, view, truth) or token
        await stream.aclose()
    finally:
        await watch.close()


async def test_a_resume_that_cannot_be_complete_asks_for_a_new_snapshot(db: Database) -> None:
    watch = ServerWatch(SqlUnitOfWork(db), poll_interval=0.01, lookback=timedelta(seconds=1))
    try:
        a = create(db, "a")
        stream = watch.watch(caller(), reservation_id="r-1")
        ((_, _, token),) = await take(stream, 1)
        await stream.aclose()
        # bound to its filters and its caller
        for context, reservation in ((caller(), "r-2"), (caller("p2"), "r-1")):
            with pytest.raises(InvalidArgument) as raised:
                await anext(watch.watch(context, reservation_id=reservation, resume_token=token))
            assert raised.value.field == "resume_token"
        with pytest.raises(InvalidArgument):
            await anext(watch.watch(caller(), reservation_id="r-1", resume_token="junk"))
        # the server was deleted and archived meanwhile: its deletion is no longer known
        set_state(db, a, VmState.DELETED)
        create(db, "newer", reservation="r-other")  # SQLite's archive keeps the newest row
        with db.begin() as connection:
            moved = archive_batch(connection, before=utcnow() + timedelta(seconds=1), batch_size=9)
        assert moved.get("instances") == 1
        with pytest.raises(WrongState) as gone:
            await anext(watch.watch(caller(), reservation_id="r-1", resume_token=token))
        assert gone.value.field == "resume_token" and "snapshot" in str(gone.value)
        # too old a token
        brief = ServerWatch(SqlUnitOfWork(db), poll_interval=0.01, resume_window=timedelta(0))
        with pytest.raises(WrongState):
            await anext(brief.watch(caller(), reservation_id="r-1", resume_token=token))
        await brief.close()
    finally:
        await watch.close()
