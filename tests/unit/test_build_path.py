"""The conductor's build path in its three parts (intake, placement pass, dispatch), each on
hand-written fakes: an in-memory BuildStore, a recording compute, no database, no gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.common.batching import Batcher
from services.common.builds import BuildSpec
from services.common.domain import (
    Flavor,
    HostState,
    Image,
    Instance,
    InstanceEvent,
    InstanceEventKind,
    PowerState,
    Resources,
    TaskState,
    VmState,
)
from services.common.errors import HostUnreachable
from services.common.request_spec import StoredSpec
from services.common.rpc.compute_client import BuildAck
from services.conductor.build_path.dispatch import Dispatcher
from services.conductor.build_path.factory import RecentPasswords, build_spec
from services.conductor.build_path.intake import Intake
from services.conductor.build_path.placement import PlacementPass
from services.conductor.build_path.types import NO_VALID_HOST, Cast, HostBuilds
from services.conductor.build_task import BuildTask
from services.conductor.scheduler.registry import (
    DEFAULT_FILTERS,
    DEFAULT_WEIGHTS,
    build_filters,
    build_weighers,
    parse_weights,
)
from services.conductor.scheduler.scheduler import Scheduler
from tests.support.fake_build_store import FakeBuildStore, FakeTransactions

pytestmark = pytest.mark.timeout(30)

DOWN = timedelta(seconds=60)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
TINY = Flavor("1", "m1.tiny", 1, 512, 1)
IMAGE = Image("img", "cirros", "qcow2", "bare", "/images/cirros", "abc", 1)


def scheduler() -> Scheduler:
    return Scheduler(build_filters(DEFAULT_FILTERS), build_weighers(parse_weights(DEFAULT_WEIGHTS)))


def host(node_id: int, name: str, vcpus: int = 8) -> HostState:
    return HostState(
        node_id=node_id, host=name, hypervisor_hostname=f"{name}.node", rpc_address=f"{name}:1",
        total=Resources(vcpus, 16384, 100), used=Resources(0, 0, 0), cpu_allocation_ratio=1.0,
        ram_allocation_ratio=1.0, disk_allocation_ratio=1.0, generation=0,
    )  # fmt: skip


def waiting(n: int, *, reservation: str = "r-1", spec: StoredSpec | None = None) -> Instance:
    return Instance(
        uuid=f"00000000-0000-0000-0000-{n:012d}", id=n, display_name=f"vm-{n}", project_id="p",
        flavor=TINY, image_id=IMAGE.id, reservation_id=reservation, vm_state=VmState.BUILDING,
        task_state=TaskState.SCHEDULING, power_state=PowerState.NOSTATE, host=None, node=None,
        metadata={}, created_at=NOW, request_id="req-at-create",
        request_spec=spec or StoredSpec(),
    )  # fmt: skip


def store_with(hosts: Sequence[HostState], instances: Sequence[Instance]) -> FakeBuildStore:
    store = FakeBuildStore(image_rows={IMAGE.id: IMAGE})
    for h in hosts:
        store.add_host(h)
    for i in instances:
        store.instances[i.uuid] = i
    return store


# -- the placement pass ----------------------------------------------------------------


async def test_a_pass_places_claims_and_records_then_builds_carry_host_and_password() -> None:
    store = store_with([host(1, "a"), host(2, "b")], [waiting(1), waiting(2)])
    db = FakeTransactions(store)
    passwords = RecentPasswords()
    passwords.remember((waiting(1).uuid,), "s3cret")
    placing = PlacementPass(db, scheduler(), service_down_time=DOWN, passwords=passwords)

    plan = await placing.place({waiting(1).uuid: "req-1", waiting(2).uuid: ""})

    assert db.reads == 1 and db.writes == 1  # a draft on a snapshot, one write transaction
    assert {p.uuid for p in plan.placements} == set(store.allocations)
    assert all(store.instances[u].host in ("a", "b") for u in store.allocations)
    builds = {b.uuid: b for hb in plan.by_host.values() for b in hb.builds}
    hosts = {b.uuid: name for name, hb in plan.by_host.items() for b in hb.builds}
    first, second = builds[waiting(1).uuid], builds[waiting(2).uuid]
    assert hosts[first.uuid] == store.instances[first.uuid].host
    assert first.admin_password == "s3cret" and second.admin_password == ""
    assert (first.request_id, second.request_id) == ("req-1", "req-at-create")
    # the alternates are recorded with the placement, for a reschedule
    alternates = store.instances[first.uuid].request_spec.alternates
    assert alternates and hosts[first.uuid] not in alternates
    scheduled = [e for e in store.events if e.event == "conductor_schedule"]
    assert {e.instance_uuid for e in scheduled} == set(builds) and not store.faults


async def test_nothing_waiting_means_no_write() -> None:
    placed = waiting(1)
    store = store_with([host(1, "a")], [placed])
    store.allocations[placed.uuid] = (1, Resources(1, 512, 1))  # claimed by another pass
    db = FakeTransactions(store)
    plan = await PlacementPass(db, scheduler(), service_down_time=DOWN).place({placed.uuid: ""})
    assert plan.skipped == 1 and db.writes == 0


async def test_no_hosts_fails_with_a_fault_and_finishes_the_action() -> None:
    store = store_with([], [waiting(1)])
    plan = await PlacementPass(FakeTransactions(store), scheduler(), service_down_time=DOWN).place(
        {waiting(1).uuid: ""}
    )
    assert not plan.placements
    (fault,) = store.faults
    assert fault.message == f"{NO_VALID_HOST}: no compute hosts are registered"
    assert store.instances[fault.uuid].vm_state is VmState.ERROR
    assert store.finished == [(fault.uuid, "create", NO_VALID_HOST)]


async def test_a_claim_lost_after_the_draft_is_placed_again_in_the_transaction() -> None:
    store = store_with([host(1, "a")], [waiting(1)])
    db = FakeTransactions(store)

    def another_conductor_claims(s: FakeBuildStore) -> None:
        s.nodes[1].generation += 1  # the draft's view of host a is stale now

    db.between = another_conductor_claims
    plan = await PlacementPass(db, scheduler(), service_down_time=DOWN).place({waiting(1).uuid: ""})
    assert [p.uuid for p in plan.placements] == [waiting(1).uuid] and not plan.failed
    assert store.nodes[1].generation == 2  # theirs, then ours on the second round


async def test_min_count_not_met_builds_none_and_frees_the_claims() -> None:
    spec = StoredSpec(min_count=2, num_instances=2)
    store = store_with([host(1, "a", vcpus=1)], [waiting(1, spec=spec), waiting(2, spec=spec)])
    plan = await PlacementPass(FakeTransactions(store), scheduler(), service_down_time=DOWN).place(
        {waiting(1).uuid: "", waiting(2).uuid: ""}
    )
    assert not plan.placements and not store.allocations
    assert all(not hb.builds for hb in plan.by_host.values())
    assert {f.uuid for f in plan.failed} == {waiting(1).uuid, waiting(2).uuid}
    assert all("only 1 of the 2" in f.message for f in plan.failed)


def test_the_factory_makes_the_one_build_contract_from_the_rows() -> None:
    instance = replace(
        waiting(1), ephemeral_gb=(2, 3), availability_zone=None,
        key_name="k", config_drive=True,
    )  # fmt: skip
    build = build_spec(instance, IMAGE, request_id="")
    assert build.request_id == instance.request_id  # the create's, when the cast had none
    assert build.ephemeral_gb == (2, 3) and build.resources == instance.resources
    assert (build.instance_id, build.image.location, build.availability_zone) == (
        1, IMAGE.location, "")  # fmt: skip
    assert (build.key_name, build.config_drive, build.admin_password) == ("k", True, "")
    assert "s3cret" not in repr(replace(build, admin_password="s3cret"))  # never logged


def test_recent_passwords_forget_the_oldest_first() -> None:
    passwords = RecentPasswords(keep=2)
    passwords.remember(("u1",), "p1")
    passwords.remember(("u2", "u3"), "p2")
    passwords.remember(("u4",), "")  # no password: nothing kept
    assert (passwords.get("u1"), passwords.get("u3"), len(passwords)) == ("", "p2", 2)


# -- dispatch ----------------------------------------------------------------------------


class Computes:
    """Records what each address got; raises what ``failing`` says for an address."""

    def __init__(self, failing: dict[str, BaseException] | None = None) -> None:
        self.sent: dict[str, list[BuildSpec]] = {}
        self.failing = failing or {}
        self.called = asyncio.Event()

    async def build_and_run(
        self, address: str, builds: Sequence[BuildSpec], *, request_id: str = ""
    ) -> BuildAck:
        self.called.set()
        if address in self.failing:
            raise self.failing[address]
        self.sent.setdefault(address, []).extend(builds)
        return BuildAck(len(builds), [])


class Rescheduler:
    def __init__(self, moves: Sequence[HostBuilds] = (), error: Exception | None = None) -> None:
        self.seen: list[InstanceEvent] = []
        self.moves = list(moves)
        self.error = error

    async def __call__(self, events: Sequence[InstanceEvent]) -> list[HostBuilds]:
        self.seen.extend(events)
        if self.error is not None:
            raise self.error
        moves, self.moves = self.moves, []
        return moves


def builds_on(target: HostState, *numbers: int) -> HostBuilds:
    return HostBuilds(
        target,
        [build_spec(waiting(n), IMAGE, request_id="r") for n in numbers],
    )


async def test_dispatch_sends_each_host_its_builds_with_remembered_passwords() -> None:
    computes, passwords = Computes(), RecentPasswords()
    passwords.remember((waiting(1).uuid,), "pw")
    dispatcher = Dispatcher(computes, reschedule=Rescheduler(), passwords=passwords)
    dispatcher.dispatch([builds_on(host(1, "a"), 1), builds_on(host(2, "b"), 2, 3)])
    await dispatcher.wait_idle()
    assert {a: [b.uuid for b in bs] for a, bs in computes.sent.items()} == {
        "a:1": [waiting(1).uuid],
        "b:1": [waiting(2).uuid, waiting(3).uuid],
    }
    assert computes.sent["a:1"][0].admin_password == "pw"


@pytest.mark.parametrize(
    ("error", "reason", "counted"),
    [
        (HostUnreachable("compute host at a:1", "UNAVAILABLE"),
         "compute host a unreachable: UNAVAILABLE", []),
        (RuntimeError("a bug in the client"),
         "sending the build to a failed: RuntimeError", ["dispatch"]),
    ],
)  # fmt: skip
async def test_a_build_that_cannot_be_sent_is_rescheduled_and_its_move_sent(
    error: Exception, reason: str, counted: list[str]
) -> None:
    computes = Computes(failing={"a:1": error})
    moved = builds_on(host(2, "b"), 1)
    rescheduler = Rescheduler(moves=[moved])
    errors: list[str] = []
    dispatcher = Dispatcher(computes, reschedule=rescheduler, count_error=errors.append)
    dispatcher.dispatch([builds_on(host(1, "a"), 1)])
    await dispatcher.wait_idle()
    (event,) = rescheduler.seen
    assert (event.kind, event.host, event.reason) == (InstanceEventKind.RESCHEDULE, "a", reason)
    assert [b.uuid for b in computes.sent["b:1"]] == [waiting(1).uuid]
    assert errors == counted


async def test_a_failing_reschedule_is_logged_and_counted_never_raised() -> None:
    computes = Computes(failing={"a:1": HostUnreachable("a", "UNAVAILABLE")})
    errors: list[str] = []
    dispatcher = Dispatcher(
        computes, reschedule=Rescheduler(error=ConnectionError("db away")),
        count_error=errors.append,
    )  # fmt: skip
    dispatcher.dispatch([builds_on(host(1, "a"), 1)])
    await dispatcher.wait_idle()
    assert errors == ["reschedule"] and dispatcher.in_flight == 0


# -- intake --------------------------------------------------------------------------------


async def test_weighed_batches_keep_casts_whole() -> None:
    seen: list[list[tuple[int, ...]]] = []

    async def handler(items: Sequence[tuple[int, ...]]) -> list[BaseException | None]:
        seen.append(list(items))
        return [None] * len(items)

    batcher: Batcher[tuple[int, ...], None] = Batcher(handler, max_batch=4, name="t", weigh=len)
    futures = [batcher.put(c) for c in [(1, 2, 3), (4,), (5, 6), (7, 8, 9, 10, 11)]]
    assert batcher.backlog == 11
    batcher.start()
    await asyncio.gather(*futures)
    await batcher.close()
    assert seen == [[(1, 2, 3), (4,)], [(5, 6)], [(7, 8, 9, 10, 11)]]  # heavier: alone


async def test_linger_lets_items_cast_close_behind_the_first_join_its_batch() -> None:
    sizes: list[int] = []

    async def handler(items: Sequence[int]) -> list[int | BaseException]:
        sizes.append(len(items))
        return list(items)

    batcher: Batcher[int, int] = Batcher(handler, name="t", linger=timedelta(milliseconds=50))
    batcher.start()
    await asyncio.sleep(0)  # the batcher runs, finds nothing and waits (idle)
    first = batcher.put(1)
    await asyncio.sleep(0)  # the batcher wakes and lingers
    rest = [batcher.put(i) for i in (2, 3)]
    assert await asyncio.gather(first, *rest) == [1, 2, 3]
    assert sizes == [3]
    await batcher.close()


def build_task(store: FakeBuildStore, computes: Computes, **kwargs: Any) -> BuildTask:
    return BuildTask(
        FakeTransactions(store, **kwargs), computes, scheduler(), service_down_time=DOWN,
        reschedule=Rescheduler(),
    )  # fmt: skip


async def test_intake_places_a_cast_and_sends_it_with_its_password() -> None:
    store = store_with([host(1, "a")], [waiting(1), waiting(2)])
    computes = Computes()
    task = build_task(store, computes)
    task.start()
    try:
        task.submit([waiting(1).uuid, waiting(2).uuid], "req-9", admin_password="pw")
        await task.drain(timeout=10)
    finally:
        await task.close()
    sent = computes.sent["a:1"]
    assert sorted(b.uuid for b in sent) == [waiting(1).uuid, waiting(2).uuid]
    assert {(b.request_id, b.admin_password) for b in sent} == {("req-9", "pw")}
    assert task.placed == 2 and task.backlog == 0


async def test_intake_tries_a_failed_pass_again() -> None:
    store = store_with([host(1, "a")], [waiting(1)])
    computes = Computes()
    task = build_task(store, computes, fail_writes=1)
    task.start()
    try:
        task.submit([waiting(1).uuid], "req")
        await task.drain(timeout=10)
    finally:
        await task.close()
    assert [b.uuid for b in computes.sent["a:1"]] == [waiting(1).uuid]


async def test_intake_gives_up_on_a_pass_after_its_attempts_and_goes_on() -> None:
    calls: list[dict[str, str]] = []
    errors: list[str] = []

    async def schedule(request_ids: dict[str, str]) -> None:
        calls.append(request_ids)
        if "doomed" in request_ids:
            raise ConnectionError("database away")

    passwords = RecentPasswords()
    intake = Intake(
        schedule, batch_size=10, linger=timedelta(0), passwords=passwords,
        count_error=errors.append, retry_delay=timedelta(0),
    )  # fmt: skip
    intake.submit(Cast(("doomed",), "r1", "pw"))
    intake.start()
    await intake.wait_idle()
    intake.submit(Cast(("fine",), "r2"))
    await intake.wait_idle()
    await intake.close()
    assert calls == [{"doomed": "r1"}] * 3 + [{"fine": "r2"}]
    assert errors == ["schedule"] * 3  # logged and counted, never raised
    assert passwords.get("doomed") == "pw"  # kept for the reconciler's next try
