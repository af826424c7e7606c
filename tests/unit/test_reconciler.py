"""The reconciler's decisions, on the in-memory stores (tests/integration/test_reconciler.py
runs it against a real database and a running stack)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import TypeVar

import pytest
from prometheus_client import CollectorRegistry

from services.common.domain import InstanceEvent, InstanceEventKind, TaskState, VmState, utcnow
from services.conductor.metrics import ConductorMetrics
from services.conductor.reconciler import InstanceCensus, ReconcilePolicy, Reconciler
from tests.support.fake_stores import (
    FakeAction,
    FakeNode,
    FakeTransaction,
    FakeUnitOfWork,
    make_instance,
)
from tests.support.polling import wait_until_async

pytestmark = pytest.mark.timeout(10)

T = TypeVar("T")

POLICY = ReconcilePolicy(
    interval=60.0,
    scheduling_grace=timedelta(seconds=30),
    service_down_time=timedelta(seconds=60),
    instance_build_timeout=timedelta(seconds=600),
    power_action_timeout=timedelta(seconds=300),
)


class Recorder:
    """The reconciler's collaborators: records what it hands to each."""

    def __init__(self) -> None:
        self.scheduled: list[list[str]] = []
        self.redispatched: list[list[str]] = []
        self.deleted: list[list[str]] = []
        self.failures: list[InstanceEvent] = []

    def schedule(self, uuids: Sequence[str]) -> None:
        self.scheduled.append(list(uuids))

    async def redispatch(self, uuids: Sequence[str]) -> None:
        self.redispatched.append(list(uuids))

    async def finish_deletes(self, uuids: Sequence[str]) -> None:
        self.deleted.append(list(uuids))

    async def report_failures(self, events: Sequence[InstanceEvent]) -> None:
        self.failures.extend(events)


def reconciler(
    uow: FakeUnitOfWork, recorder: Recorder, metrics: ConductorMetrics | None = None
) -> Reconciler:
    return Reconciler(
        uow,
        schedule=recorder.schedule,
        redispatch=recorder.redispatch,
        finish_deletes=recorder.finish_deletes,
        report_failures=recorder.report_failures,
        policy=POLICY,
        metrics=metrics,
    )


def ago(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


async def test_nothing_stuck_means_one_read_and_nothing_done() -> None:
    uow = FakeUnitOfWork()
    fresh = make_instance(created_at=utcnow())  # scheduling, but within the grace
    uow.db.add(fresh)
    recorder = Recorder()
    found = await reconciler(uow, recorder).reconcile_once()
    assert found.empty
    assert (uow.reads, uow.writes) == (1, 0)
    assert recorder.scheduled == [] and recorder.failures == []


async def test_lost_casts_are_scheduled_again_by_reservation() -> None:
    uow = FakeUnitOfWork()
    old = utcnow() - ago(60)
    a1, a2 = (make_instance(reservation_id="r-a", created_at=old) for _ in range(2))
    b1 = make_instance(reservation_id="r-b", created_at=old)
    placed = make_instance(reservation_id="r-c", created_at=old, host="h1", task_state=None)
    uow.db.add(a1, a2, b1, placed)
    recorder = Recorder()
    await reconciler(uow, recorder).reconcile_once()
    assert sorted(map(sorted, recorder.scheduled)) == sorted(
        [sorted([a1.uuid, a2.uuid]), [b1.uuid]]
    )


async def test_builds_on_a_down_host_are_reported_as_that_hosts_failure() -> None:
    uow = FakeUnitOfWork()
    now = utcnow()
    uow.db.nodes["dead"] = FakeNode("dead", "10.0.0.9:1", now - ago(600))
    uow.db.nodes["live"] = FakeNode("live", "10.0.0.8:1", now)
    on_dead = make_instance(host="dead", task_state=TaskState.SPAWNING, created_at=now - ago(60))
    on_live = make_instance(host="live", task_state=TaskState.SPAWNING, created_at=now - ago(60))
    deleting = make_instance(host="dead", task_state=TaskState.DELETING, created_at=now - ago(5))
    uow.db.add(on_dead, on_live, deleting)
    recorder = Recorder()
    found = await reconciler(uow, recorder).reconcile_once()
    assert [(e.instance_uuid, e.host, e.kind) for e in recorder.failures] == [
        (on_dead.uuid, "dead", InstanceEventKind.RESCHEDULE)
    ]
    assert recorder.failures[0].reason == "compute host dead is down"
    assert found.on_down_hosts == [(on_dead.uuid, "dead")]


async def test_placed_builds_a_live_host_never_started_are_sent_again() -> None:
    uow = FakeUnitOfWork()
    uow.db.nodes["live"] = FakeNode("live", "10.0.0.8:1", utcnow())
    unsent = make_instance(host="live", task_state=None, created_at=utcnow() - ago(60))
    started = make_instance(
        host="live", task_state=TaskState.SPAWNING, created_at=utcnow() - ago(60)
    )
    uow.db.add(unsent, started)
    recorder = Recorder()
    await reconciler(uow, recorder).reconcile_once()
    assert recorder.redispatched == [[unsent.uuid]]


async def test_a_build_past_its_timeout_ends_in_error_with_a_fault_and_no_claim() -> None:
    uow = FakeUnitOfWork()
    now = utcnow()
    uow.db.nodes["dead"] = FakeNode("dead", "10.0.0.9:1", now - ago(600))
    slow = make_instance(host="dead", task_state=TaskState.SPAWNING, created_at=now - ago(900))
    uow.db.add(slow)
    uow.db.allocations[slow.uuid] = "dead"
    uow.db.actions.append(FakeAction(slow.uuid, "create", "req", "demo", now - ago(900)))
    recorder = Recorder()
    found = await reconciler(uow, recorder).reconcile_once()
    # timed out wins over "on a down host": it is not moved to another host as well
    assert found.timed_out == [slow.uuid] and found.on_down_hosts == []
    assert recorder.failures == []
    assert uow.db.instances[slow.uuid].vm_state is VmState.ERROR
    assert uow.db.instances[slow.uuid].task_state is None
    assert [f.message for f in uow.db.faults] == ["Build of instance timed out after 600 s"]
    assert slow.uuid not in uow.db.allocations
    action = uow.db.action_of(slow.uuid, "create")
    assert action.finish_time is not None
    assert action.message == "Build of instance timed out after 600 s"


async def test_stuck_power_actions_are_given_back_and_a_delete_is_left_alone() -> None:
    uow = FakeUnitOfWork()
    then = utcnow() - ago(400)
    stuck = make_instance(vm_state=VmState.ACTIVE, task_state=TaskState.POWERING_OFF,
                          host="h", created_at=then)  # fmt: skip
    deleting = make_instance(vm_state=VmState.ACTIVE, task_state=TaskState.DELETING,
                             host="h", created_at=utcnow())  # fmt: skip
    uow.db.add(stuck, deleting)
    uow.db.actions.append(FakeAction(stuck.uuid, "stop", "req", "demo", then))
    recorder = Recorder()
    found = await reconciler(uow, recorder).reconcile_once()
    assert found.stuck_power == [stuck.uuid]
    assert uow.db.instances[stuck.uuid].task_state is None
    assert uow.db.instances[stuck.uuid].vm_state is VmState.ACTIVE
    assert uow.db.instances[deleting.uuid].task_state is TaskState.DELETING
    assert uow.db.action_of(stuck.uuid, "stop").message == "timed out"


async def test_stuck_deletes_are_finished_and_every_action_is_counted() -> None:
    uow = FakeUnitOfWork()
    old = utcnow() - ago(60)
    stuck = make_instance(vm_state=VmState.ACTIVE, task_state=TaskState.DELETING, created_at=old)
    gone = make_instance(vm_state=VmState.DELETED, task_state=TaskState.DELETING, created_at=old)
    lost = make_instance(created_at=old)
    uow.db.add(stuck, gone, lost)
    recorder = Recorder()
    registry = CollectorRegistry()
    subject = reconciler(uow, recorder, ConductorMetrics.create(registry))
    await subject.reconcile_once()
    assert recorder.deleted == [[stuck.uuid]]
    assert subject.actions_taken["finished_deletes"] == 1
    assert subject.actions_taken["rescheduled_unplaced"] == 1
    assert (
        registry.get_sample_value(
            "nova_grpc_reconciler_actions_total", {"action": "finished_deletes"}
        )
        == 1.0
    )


async def test_the_census_sets_its_gauges_from_the_stores() -> None:
    uow = FakeUnitOfWork()
    now = utcnow()
    uow.db.nodes["up"] = FakeNode("up", "10.0.0.1:1", now)
    uow.db.nodes["down"] = FakeNode("down", "10.0.0.2:1", now - ago(600))
    uow.db.nodes["off"] = FakeNode("off", "10.0.0.3:1", now, enabled=False)
    uow.db.add(
        make_instance(created_at=now - ago(42)),
        make_instance(vm_state=VmState.ACTIVE, task_state=None),
        make_instance(vm_state=VmState.ACTIVE, task_state=None),
    )
    registry = CollectorRegistry()
    await InstanceCensus(uow, ConductorMetrics.create(registry)).count_once()

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("nova_grpc_instances", vm_state="active") == 2.0
    assert value("nova_grpc_instances", vm_state="building") == 1.0
    assert value("nova_grpc_instances", vm_state="error") == 0.0
    age = value("nova_grpc_oldest_build_age_seconds")
    assert age is not None and 42.0 <= age < 60.0
    for state in ("up", "down", "disabled"):
        assert value("nova_grpc_compute_nodes", state=state) == 1.0


class DownUnitOfWork(FakeUnitOfWork):
    """A database that does not answer."""

    async def read(
        self, work: Callable[[FakeTransaction], T], *, timeout: float | None = None
    ) -> T:
        raise ConnectionError("database away")


async def test_a_failed_pass_is_logged_and_counted_and_the_loop_goes_on() -> None:
    metrics = ConductorMetrics.create(CollectorRegistry())
    loop = Reconciler(
        DownUnitOfWork(), schedule=Recorder().schedule, redispatch=Recorder().redispatch,
        finish_deletes=Recorder().finish_deletes, report_failures=Recorder().report_failures,
        policy=replace(POLICY, interval=0.01), metrics=metrics,
    )  # fmt: skip
    errors = metrics.task_errors.labels("reconciler")
    loop.start()
    try:
        await wait_until_async(lambda: errors._value.get() >= 2, 5, "two failed passes counted")
    finally:
        await loop.close()
