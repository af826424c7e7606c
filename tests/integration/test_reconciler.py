"""The conductor's reconciler finishes what lost messages and dead processes left behind."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from services.common.db import actions, placement
from services.common.db import instances as instance_repo
from services.common.db.engine import Database
from services.common.db.stores import SqlUnitOfWork
from services.common.domain import (
    ComputeNodeReport,
    Flavor,
    Instance,
    PowerAction,
    PowerState,
    TaskState,
    VmState,
    utcnow,
)
from services.common.errors import NotFound
from services.common.generated.novagrpc.v1 import servers_pb2
from services.common.request_spec import StoredSpec
from services.conductor.power import PowerActions
from tests.integration.test_pipeline import wait_for_compute
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(60)

SEED_IMAGE = "5e0c0f1c-7a7e-4c51-9b0e-6e6f76612d31"
FAST = {
    "reconcile_interval": timedelta(seconds=0.2),
    "scheduling_grace": timedelta(seconds=0.5),
    "instance_build_timeout": timedelta(seconds=8),
    "service_down_time": timedelta(seconds=2),
}


def stale_instance(
    *, age: float, task: TaskState | None, host: str | None = None, alternates: tuple[str, ...] = ()
) -> Instance:
    then = utcnow() - timedelta(seconds=age)
    return Instance(
        uuid=str(uuid.uuid4()), id=None, display_name="stale", project_id="demo",
        flavor=Flavor("1", "m1.tiny", 1, 512, 1), image_id=SEED_IMAGE, reservation_id="r-stale",
        vm_state=VmState.BUILDING, task_state=task, power_state=PowerState.NOSTATE, host=host,
        node=host, metadata={}, created_at=then,
        request_spec=StoredSpec(alternates=alternates),
    )  # fmt: skip


def insert(database_url: str, *instances: Instance) -> None:
    db = Database(database_url)
    try:
        with db.begin() as connection:
            instance_repo.insert_instances(connection, instances)
            actions.start_actions(
                connection,
                [actions.NewAction(i.uuid, actions.CREATE, "t", "demo") for i in instances],
                utcnow(),
            )
    finally:
        db.close()


async def test_lost_casts_stuck_deletes_dead_hosts_and_slow_builds_all_end(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path, conductor=FAST) as stack:
        await wait_for_compute(sqlite_url)
        live_host = stack.computes[0].name.split()[-1]
        db = Database(sqlite_url)
        with db.begin() as connection:  # a compute that died a while ago
            placement.upsert_compute_node(
                connection,
                ComputeNodeReport("dead-host", "dead-host", "127.0.0.1:9", 16, 4096, 100,
                                  "test", "i686", "nova"),
                now=utcnow() - timedelta(seconds=30),
            )  # fmt: skip
        db.close()
        never_cast = stale_instance(age=2, task=TaskState.SCHEDULING)
        on_dead_host = stale_instance(age=1, task=None, host="dead-host", alternates=(live_host,))
        stuck_delete = stale_instance(age=2, task=TaskState.DELETING)
        too_slow = stale_instance(age=10, task=TaskState.SPAWNING, host=live_host)
        insert(sqlite_url, never_cast, on_dead_host, stuck_delete, too_slow)

        placed = await stack.wait_status(never_cast.uuid, servers_pb2.SERVER_STATUS_ACTIVE)
        assert placed.host == live_host
        moved = await stack.wait_status(on_dead_host.uuid, servers_pb2.SERVER_STATUS_ACTIVE)
        assert moved.host == live_host
        await stack.wait_status(stuck_delete.uuid, servers_pb2.SERVER_STATUS_DELETED)
        slow = await stack.wait_status(too_slow.uuid, servers_pb2.SERVER_STATUS_ERROR)
        assert "timed out" in slow.fault.message
        history = await stack.admin.ListServerActions(
            servers_pb2.ListServerActionsRequest(server_id=on_dead_host.uuid), timeout=5
        )
        events = [(e.host, e.result) for e in history.actions[0].events
                  if e.event == "compute_build_and_run"]  # fmt: skip
        assert events[-1] == (live_host, "Success")


async def test_an_instance_whose_image_is_gone_ends_in_error_and_holds_no_claim(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with running_stack(sqlite_url, tmp_path, conductor=FAST) as stack:
        await wait_for_compute(sqlite_url)
        orphan = replace(
            stale_instance(age=2, task=TaskState.SCHEDULING), image_id=str(uuid.uuid4())
        )
        insert(sqlite_url, orphan)
        failed = await stack.wait_status(orphan.uuid, servers_pb2.SERVER_STATUS_ERROR)
        assert "no longer exists" in failed.fault.message
        db = Database(sqlite_url)
        try:
            with db.begin_read() as connection:
                assert placement.allocated_instances(connection, [orphan.uuid]) == {}
        finally:
            db.close()


async def test_a_power_action_given_back_leaves_a_delete_that_came_meanwhile(
    sqlite_url: str,
) -> None:
    stopping = stale_instance(age=0, task=TaskState.POWERING_OFF)
    deleting = stale_instance(age=0, task=TaskState.DELETING)
    insert(sqlite_url, stopping, deleting)
    db = Database(sqlite_url)
    try:
        power = PowerActions(SqlUnitOfWork(db), computes=None)  # type: ignore[arg-type]  # never reached
        for instance in (stopping, deleting):
            with pytest.raises(NotFound):  # no host: the action is given back
                await power(instance.uuid, PowerAction.STOP)
        loaded = await db.read(
            lambda c: instance_repo.load_instances(c, [stopping.uuid, deleting.uuid])
        )
        tasks = {i.uuid: i.task_state for i in loaded}
        assert tasks == {stopping.uuid: None, deleting.uuid: TaskState.DELETING}
    finally:
        db.close()
