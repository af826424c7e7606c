"""A scheduling pass reads and chooses on a snapshot (the draft), then claims in one write
transaction: whatever changed in between must win over the draft. Real SQLite and
PostgreSQL, the conductor's real BuildTask and scheduler."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, select, update

from services.common.db import instances as instance_repo
from services.common.db import placement
from services.common.db.build_store import SqlBuildStore, SqlBuildTransactions
from services.common.db.engine import Database
from services.common.db.models import INSTANCES, NODES
from services.common.domain import (
    ComputeNodeReport,
    Flavor,
    Instance,
    PowerState,
    Resources,
    TaskState,
    VmState,
    utcnow,
)
from services.common.request_spec import StoredSpec
from services.common.rpc.compute_client import BuildAck
from services.conductor.build_task import BuildTask
from services.conductor.scheduler.registry import (
    DEFAULT_FILTERS,
    DEFAULT_WEIGHTS,
    build_filters,
    build_weighers,
    parse_weights,
)
from services.conductor.scheduler.scheduler import Scheduler
from tests.support.polling import turns

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
TINY = Flavor("1", "m1.tiny", 1, 512, 1)
SEED_IMAGE = "5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31"  # seeded by migration 0001
DOWN = timedelta(seconds=60)


class NoCompute:
    async def build_and_run(self, *args: object, **kwargs: object) -> object:
        raise AssertionError("these tests never dispatch")


class ReadOnly:
    """The database for a pass that must not write."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def read(self, work: Callable[[Connection], T]) -> T:
        return await self._db.read(work)

    async def write(self, work: Callable[[Connection], Any]) -> Any:
        raise AssertionError("a pass with nothing waiting wrote to the database")


def task_on(db: Any, compute: Any = None) -> BuildTask:
    """The conductor's BuildTask with the default filters and weighers."""
    scheduler = Scheduler(
        build_filters(DEFAULT_FILTERS), build_weighers(parse_weights(DEFAULT_WEIGHTS))
    )
    return BuildTask(
        SqlBuildTransactions(db), compute or NoCompute(), scheduler, service_down_time=DOWN
    )


def seed(db: Database, *, hosts: int, instances: int, memory_mb: int = 65536) -> list[str]:
    """``hosts`` compute nodes and ``instances`` m1.tiny waiting for a host."""
    now = utcnow()
    rows = [
        Instance(
            uuid=str(uuid.uuid4()), id=None, display_name=f"s{i}", project_id="p",
            flavor=TINY, image_id=SEED_IMAGE, reservation_id="r-1", vm_state=VmState.BUILDING,
            task_state=TaskState.SCHEDULING, power_state=PowerState.NOSTATE, host=None,
            node=None, metadata={}, created_at=now, request_spec=StoredSpec(),
        )
        for i in range(instances)
    ]  # fmt: skip
    with db.begin() as connection:
        for i in range(hosts):
            name = f"h{i}"
            report = ComputeNodeReport(name, name, f"{name}:1", 64, memory_mb, 40, "QEMU",
                                       "x86_64", "nova", 1.0, 1.0, 1.0)  # fmt: skip
            placement.upsert_compute_node(connection, report, now=now)
        instance_repo.insert_instances(connection, rows)
    return [r.uuid for r in rows]


def request_ids(uuids: list[str]) -> dict[str, str]:
    return {u: "req-test" for u in uuids}


async def test_an_instance_deleted_after_the_draft_is_not_placed(db: Database) -> None:
    uuids = seed(db, hosts=2, instances=2)
    task, now = task_on(db), utcnow()
    draft = await db.read(lambda c: task.draft(SqlBuildStore(c), uuids, now))
    assert draft is not None and set(draft.instances) == set(uuids)
    # The user deletes the first server between the draft and the write transaction.
    await db.write(
        lambda c: instance_repo.set_task_state(c, [uuids[0]], TaskState.DELETING, now=now)
    )
    plan = await db.write(
        lambda c: task.plan(SqlBuildStore(c), request_ids(uuids), now, draft=draft)
    )
    assert [p.uuid for p in plan.placements] == [uuids[1]]
    assert plan.skipped == 1
    assert plan.claim_conflicts == 0  # a delete is no lost claim
    claimed = await db.read(lambda c: placement.allocated_instances(c, uuids))
    assert set(claimed) == {uuids[1]}


async def test_a_host_filled_after_the_draft_is_not_overbooked(db: Database) -> None:
    # One host with room for exactly one m1.tiny (512 MiB, ratio 1).
    uuids = seed(db, hosts=1, instances=2, memory_mb=512)
    task, now = task_on(db), utcnow()
    draft = await db.read(lambda c: task.draft(SqlBuildStore(c), [uuids[0]], now))
    assert draft is not None and draft.decisions[0].host is not None

    def another_conductor_claims(connection: Connection) -> None:
        (host,) = placement.load_host_states(connection, now=now, service_down_time=DOWN)
        assert placement.claim(connection, host, [(uuids[1], Resources(1, 512, 1))], now=now)

    await db.write(another_conductor_claims)
    plan = await db.write(
        lambda c: task.plan(SqlBuildStore(c), request_ids([uuids[0]]), now, draft=draft)
    )
    # The draft chose the host when it was empty; the claim saw it full and placed again.
    assert plan.placements == []
    assert plan.claim_conflicts == 1  # the draft's claim, lost; the second draw finds no room
    assert [f.uuid for f in plan.failed] == [uuids[0]]
    assert plan.failed[0].message.startswith("No valid host was found")
    claimed = await db.read(lambda c: placement.allocated_instances(c, uuids))
    assert set(claimed) == {uuids[1]}


async def test_a_draft_lost_to_a_generation_change_is_placed_again(db: Database) -> None:
    uuids = seed(db, hosts=1, instances=2)
    task, now = task_on(db), utcnow()
    draft = await db.read(lambda c: task.draft(SqlBuildStore(c), [uuids[0]], now))
    assert draft is not None

    def another_conductor_claims(connection: Connection) -> None:
        (host,) = placement.load_host_states(connection, now=now, service_down_time=DOWN)
        assert placement.claim(connection, host, [(uuids[1], Resources(1, 512, 1))], now=now)

    await db.write(another_conductor_claims)
    plan = await db.write(
        lambda c: task.plan(SqlBuildStore(c), request_ids([uuids[0]]), now, draft=draft)
    )
    assert [p.uuid for p in plan.placements] == [uuids[0]]
    assert plan.claim_conflicts == 1
    generation = await db.read(lambda c: c.execute(select(NODES.c.generation)).scalar_one())
    assert generation == 2  # the other claim's bump, then ours after reloading the host


async def test_server_groups_are_placed_wholly_inside_the_write_transaction(
    db: Database,
) -> None:
    uuids = seed(db, hosts=1, instances=1)
    spec = StoredSpec(group=str(uuid.uuid4())).to_json()
    await db.write(lambda c: c.execute(update(INSTANCES).values(request_spec=spec)).rowcount)
    task, now = task_on(db), utcnow()
    assert await db.read(lambda c: task.draft(SqlBuildStore(c), uuids, now)) is None


async def test_a_pass_with_nothing_waiting_does_not_write(db: Database) -> None:
    uuids = seed(db, hosts=1, instances=1)
    await task_on(db).place(request_ids(uuids))  # placed: no longer waiting
    plan = await task_on(ReadOnly(db)).place(request_ids(uuids))
    assert plan.skipped == 1 and plan.placements == []


class RecordingCompute:
    def __init__(self, expected: int = 0) -> None:
        self.sent: list[list[str]] = []
        self.expected = expected
        self.all_sent = asyncio.Event()  # set once ``expected`` builds have been sent

    async def build_and_run(self, address: str, builds: Any, *, request_id: str = "") -> Any:
        self.sent.append([b.uuid for b in builds])
        if sum(len(s) for s in self.sent) >= self.expected:
            self.all_sent.set()
        return BuildAck(queued=len(builds), duplicates=())


async def test_casts_arriving_close_together_share_one_pass(db: Database) -> None:
    uuids = seed(db, hosts=1, instances=3)
    compute = RecordingCompute(expected=3)
    task = task_on(db, compute)
    passes: list[int] = []
    place = task.place

    async def counted(request_ids: dict[str, str]) -> Any:
        passes.append(len(request_ids))
        return await place(request_ids)

    task.place = counted  # type: ignore[method-assign]
    task.start()
    await turns()  # idle, waiting for casts, as a running conductor is
    try:
        for uuid_ in uuids:  # three single creates, one after another
            task.submit([uuid_], "req")
            # the task wakes at the first and lingers; without the linger it would have
            # taken this cast alone within these turns (no clock: a few task switches)
            await turns(3)
        await asyncio.wait_for(compute.all_sent.wait(), 10)
    finally:
        await task.close()
    assert passes == [3]
    assert [sorted(s) for s in compute.sent] == [sorted(uuids)]  # one call for the host
