from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv4Network

import pytest

from services.common.builds import BuildImage, BuildSpec
from services.common.domain import (
    Flavor,
    InstanceEvent,
    InstanceEventKind,
    PowerState,
    Resources,
)
from services.common.networking import (
    AddressSet,
    Direction,
    NetworkSpec,
    PortSpec,
    SecurityGroupRule,
    SubnetSpec,
)
from services.compute.manager import ComputeManager, InstanceLocks, instance_name
from services.compute.net.driver import DatapathError
from services.compute.resource_tracker import Ratios, ResourceTracker
from services.compute.virt.driver import (
    DomainInfo,
    HostResources,
    HypervisorError,
    InvalidBuild,
    SpawnSpec,
)


class FakeDriver:
    """A hand-written hypervisor double: records concurrency, fails on request."""

    def __init__(self, *, spawn_seconds: float = 0.0, fail: set[str] | None = None) -> None:
        self.spawn_seconds = spawn_seconds
        self.fail = fail or set()
        self.running: dict[str, SpawnSpec] = {}
        self.in_spawn = 0
        self.peak = 0
        self._lock = threading.Lock()
        # notified as a spawn enters: tests wait for the builds they expect to be running
        self._entered = threading.Condition(self._lock)
        self.release = threading.Event()
        self.release.set()

    def host_resources(self) -> HostResources:
        return HostResources(8, 8192, 80, "fake", "fake-node", "x86_64")

    def spawn(self, spec: SpawnSpec) -> None:
        with self._lock:
            self.in_spawn += 1
            self.peak = max(self.peak, self.in_spawn)
            self._entered.notify_all()
        try:
            self.release.wait(5)
            if self.spawn_seconds:
                threading.Event().wait(self.spawn_seconds)
            if spec.uuid in self.fail:
                raise HypervisorError("no space left on device")
            self.running[spec.uuid] = spec
        finally:
            with self._lock:
                self.in_spawn -= 1

    def _wait_spawning(self, count: int) -> bool:
        with self._lock:
            return self._entered.wait_for(lambda: self.in_spawn == count, timeout=5)

    async def spawning(self, count: int) -> None:
        """Until exactly ``count`` spawns are inside the hypervisor (held by ``release``)."""
        assert await asyncio.to_thread(self._wait_spawning, count), f"{count} spawns never ran"

    def destroy(self, uuid: str) -> bool:
        return self.running.pop(uuid, None) is not None

    def power_state(self, uuid: str) -> PowerState:
        return PowerState.RUNNING if uuid in self.running else PowerState.NOSTATE

    def list_domains(self) -> list[DomainInfo]:
        return [DomainInfo(u, s.name, PowerState.RUNNING, True) for u, s in self.running.items()]

    def instance_files(self) -> set[str]:
        return set(self.running)


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[InstanceEvent] = []
        self.changed = asyncio.Event()

    def report(self, event: InstanceEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def kinds(self, uuid: str) -> list[InstanceEventKind]:
        return [e.kind for e in self.events if e.instance_uuid == uuid]


def build(n: int) -> BuildSpec:
    return BuildSpec(
        uuid=f"00000000-0000-0000-0000-{n:012d}",
        instance_id=n,
        display_name=f"vm-{n}",
        project_id="p",
        flavor=Flavor("1", "m1.tiny", 1, 512, 1),
        image=BuildImage("img", "img", "raw", "", ""),
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
    )


class FakeNetwork:
    """A hand-written datapath double: what is plugged, in order with the spawns."""

    def __init__(self, driver: FakeDriver, *, fail: bool = False) -> None:
        self.driver = driver
        self.fail = fail
        self.plugged: dict[str, PortSpec] = {}
        self.plugged_before_spawn: list[bool] = []
        self.address_sets: dict[str, AddressSet] = {}

    def plug(self, port: PortSpec, address_sets: Sequence[AddressSet] = ()) -> None:
        if self.fail:
            raise DatapathError("nft: Operation not permitted")
        self.plugged_before_spawn.append(port.instance_uuid not in self.driver.running)
        self.plugged[port.port_id] = port
        self.address_sets.update((s.group_id, s) for s in address_sets)

    def unplug(self, port: PortSpec) -> None:
        self.plugged.pop(port.port_id, None)

    def unplug_instance(self, instance_uuid: str) -> None:
        for port_id in [k for k, p in self.plugged.items() if p.instance_uuid == instance_uuid]:
            del self.plugged[port_id]

    def update_rules(
        self, ports: Sequence[PortSpec], address_sets: Sequence[AddressSet] = ()
    ) -> int:
        return sum(1 for p in ports if p.port_id in self.plugged)

    def update_address_sets(self, address_sets: Sequence[AddressSet]) -> int:
        return len(address_sets)

    def converge(self, ports: Sequence[PortSpec], address_sets: Sequence[AddressSet] = ()) -> None:
        self.plugged = {p.port_id: p for p in ports}


def manager(
    driver: FakeDriver,
    sink: RecordingSink,
    limit: int,
    tracker: ResourceTracker | None = None,
    network: FakeNetwork | None = None,
) -> ComputeManager:
    return ComputeManager(
        driver,
        sink,
        ThreadPoolExecutor(16),
        tracker=ResourceTracker(Ratios(1.0, 1.0, 1.0)) if tracker is None else tracker,
        network=FakeNetwork(driver) if network is None else network,
        host="h1",
        max_concurrent_builds=limit,
    )


async def test_max_concurrent_builds_holds_and_every_build_finishes() -> None:
    driver, sink = FakeDriver(spawn_seconds=0.01), RecordingSink()
    compute = manager(driver, sink, limit=4)
    queued, duplicates = compute.accept([build(i) for i in range(30)])
    assert (queued, duplicates) == (30, [])
    assert await compute.wait_idle(10) == 0
    assert driver.peak == 4
    assert len(driver.running) == 30
    assert all(sink.kinds(build(i).uuid)[-1] is InstanceEventKind.ACTIVE for i in range(30))


async def test_accept_returns_before_any_build_runs_and_queue_is_visible() -> None:
    driver, sink = FakeDriver(), RecordingSink()
    driver.release.clear()
    compute = manager(driver, sink, limit=2)
    compute.accept([build(i) for i in range(5)])
    await driver.spawning(2)
    status = compute.status
    assert (status.building, status.queued) == (2, 3)
    assert (compute.building, compute.queued) == (2, 3)  # what the metrics gauges read
    driver.release.set()
    await compute.wait_idle(5)
    assert (compute.status.succeeded, compute.status.instances) == (5, 5)


async def test_duplicate_builds_are_ignored() -> None:
    driver, sink = FakeDriver(), RecordingSink()
    compute = manager(driver, sink, limit=2)
    compute.accept([build(1)])
    queued, duplicates = compute.accept([build(1), build(2)])
    assert queued == 1 and duplicates == [build(1).uuid]
    await compute.wait_idle(5)
    assert sink.kinds(build(1).uuid).count(InstanceEventKind.ACTIVE) == 1


async def test_a_failed_spawn_reports_reschedule_with_the_reason() -> None:
    failing = build(7)
    driver, sink = FakeDriver(fail={failing.uuid}), RecordingSink()
    compute = manager(driver, sink, limit=2)
    compute.accept([failing])
    await compute.wait_idle(5)
    last = [e for e in sink.events if e.instance_uuid == failing.uuid][-1]
    assert last.kind is InstanceEventKind.RESCHEDULE
    assert "no space left" in last.reason
    assert failing.uuid not in driver.running


async def wait_for_event(sink: RecordingSink, uuid: str, kind: InstanceEventKind) -> None:
    async with asyncio.timeout(5):
        while True:
            sink.changed.clear()
            if kind in sink.kinds(uuid):
                return
            await sink.changed.wait()


MEMBERS = AddressSet("g-members", (IPv4Address("10.0.0.5"),))


def with_port(request: BuildSpec) -> BuildSpec:
    subnet = SubnetSpec(IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))
    from_members = SecurityGroupRule("r", Direction.INGRESS, remote_group_id=MEMBERS.group_id)
    port = PortSpec("p-" + request.uuid, request.uuid, NetworkSpec("n", "net", 7, subnet),
                    "fa:16:3e:00:00:01", IPv4Address("10.0.0.5"), (from_members,))  # fmt: skip
    return replace(request, ports=(port,), address_sets=(MEMBERS,))


async def test_ports_are_plugged_before_the_spawn_and_unplugged_when_it_fails_or_goes() -> None:
    good, bad = with_port(build(1)), with_port(build(2))
    driver, sink = FakeDriver(fail={bad.uuid}), RecordingSink()
    network = FakeNetwork(driver)
    compute = manager(driver, sink, limit=2, network=network)
    compute.accept([good, bad])
    await compute.wait_idle(5)
    assert network.plugged_before_spawn == [True, True]
    assert network.address_sets == {MEMBERS.group_id: MEMBERS}  # the build's sets reach plug
    assert list(network.plugged) == ["p-" + good.uuid]  # the failed build left nothing
    compute.terminate([good.uuid])
    await compute.wait_idle(5)
    await wait_for_event(sink, good.uuid, InstanceEventKind.DELETED)
    assert network.plugged == {}


async def test_a_datapath_failure_reschedules_the_build_and_releases_its_claim() -> None:
    request = with_port(build(3))
    driver, sink = FakeDriver(), RecordingSink()
    compute = manager(driver, sink, limit=1, network=FakeNetwork(driver, fail=True))
    compute.accept([request])
    await compute.wait_idle(5)
    last = [e for e in sink.events if e.instance_uuid == request.uuid][-1]
    assert last.kind is InstanceEventKind.RESCHEDULE and "nft" in last.reason
    assert request.uuid not in driver.running and compute.status.instances == 0


async def test_instance_lock_serialises_one_uuid() -> None:
    locks = InstanceLocks()
    order: list[str] = []

    async def hold(tag: str) -> None:
        async with locks.hold("u"):
            order.append(f"{tag}-in")
            await asyncio.sleep(0)  # yield while holding: the other one tries the lock now
            order.append(f"{tag}-out")

    await asyncio.gather(hold("a"), hold("b"))
    assert order == ["a-in", "a-out", "b-in", "b-out"]
    assert len(locks) == 0


def test_instance_names_come_from_the_template() -> None:
    assert instance_name("instance-%08x", 42, "u") == "instance-0000002a"
    assert instance_name("%(uuid)s", 42, "abc") == "abc"


async def test_a_build_that_does_not_fit_is_refused_before_the_hypervisor() -> None:
    driver, sink = FakeDriver(), RecordingSink()
    tracker = ResourceTracker(Ratios(1.0, 1.0, 1.0))
    tracker.set_capacity(Resources(1, 1024, 10))
    compute = manager(driver, sink, limit=4, tracker=tracker)
    compute.accept([build(1), build(2)])  # each m1.tiny: 1 vCPU, the host has one
    await compute.wait_idle(5)
    kinds = {b.uuid: sink.kinds(b.uuid)[-1] for b in (build(1), build(2))}
    assert sorted(kinds.values()) == [InstanceEventKind.ACTIVE, InstanceEventKind.RESCHEDULE]
    refused = next(e for e in sink.events if e.kind is InstanceEventKind.RESCHEDULE)
    assert "claim refused" in refused.reason and "vCPUs" in refused.reason
    assert len(driver.running) == 1 and len(tracker) == 1


async def test_an_invalid_build_fails_without_reschedule_and_frees_its_claim() -> None:
    class Refusing(FakeDriver):
        def spawn(self, spec: SpawnSpec) -> None:
            raise InvalidBuild("image nova-tiny has no file to boot from")

    sink = RecordingSink()
    tracker = ResourceTracker(Ratios(1.0, 1.0, 1.0))
    compute = manager(Refusing(), sink, limit=1, tracker=tracker)
    compute.accept([build(3)])
    await compute.wait_idle(5)
    assert sink.kinds(build(3).uuid) == [InstanceEventKind.SPAWNING, InstanceEventKind.FAILED]
    assert len(tracker) == 0 and compute.status.failed == 1


async def test_terminate_drops_a_queued_build_and_reports_deleted() -> None:
    driver, sink = FakeDriver(), RecordingSink()
    driver.release.clear()
    compute = manager(driver, sink, limit=1)
    compute.accept([build(1), build(2)])  # 2 waits behind 1 for the only slot
    await driver.spawning(1)
    compute.terminate([build(2).uuid])
    driver.release.set()
    await compute.wait_idle(5)
    assert sink.kinds(build(2).uuid) == [InstanceEventKind.DELETED]
    assert build(2).uuid not in driver.running
    # a late duplicate cast of the deleted build is dropped
    queued, duplicates = compute.accept([build(2)])
    assert (queued, duplicates) == (0, [build(2).uuid])


async def test_terminate_waits_for_a_running_build_then_removes_it() -> None:
    driver, sink = FakeDriver(), RecordingSink()
    driver.release.clear()
    tracker = ResourceTracker(Ratios(1.0, 1.0, 1.0))
    compute = manager(driver, sink, limit=1, tracker=tracker)
    compute.accept([build(5)])
    await driver.spawning(1)
    compute.terminate([build(5).uuid])
    driver.release.set()
    await compute.wait_idle(5)
    assert sink.kinds(build(5).uuid)[-1] is InstanceEventKind.DELETED
    assert driver.running == {} and len(tracker) == 0
    compute.terminate([build(5).uuid])  # idempotent: nothing left, DELETED again
    await compute.wait_idle(5)
    assert sink.kinds(build(5).uuid)[-1] is InstanceEventKind.DELETED


async def test_drain_hands_back_queued_builds_and_lets_running_ones_finish() -> None:
    driver, sink = FakeDriver(), RecordingSink()
    driver.release.clear()
    compute = manager(driver, sink, limit=1)
    compute.accept([build(i) for i in range(4)])
    await driver.spawning(1)  # build 0 runs, 1-3 wait for the only slot
    draining = asyncio.ensure_future(compute.drain(5))
    handed = [b.uuid for b in (build(1), build(2), build(3))]
    for uuid in handed:
        await wait_for_event(sink, uuid, InstanceEventKind.RESCHEDULE)
    assert all(sink.kinds(u) == [InstanceEventKind.RESCHEDULE] for u in handed)
    assert all("stopping" in e.reason for e in sink.events if e.instance_uuid in handed)
    driver.release.set()
    assert await draining == 0
    assert sink.kinds(build(0).uuid)[-1] is InstanceEventKind.ACTIVE
    with pytest.raises(HypervisorError, match="shutting down"):
        compute.accept([build(9)])


async def test_a_rescheduled_build_hands_its_admin_password_back_and_nothing_else_carries_it() -> (
    None
):
    """The conductor stores no password: the one that places the build again (any of them)
    has it only from the RESCHEDULE event, as Nova's compute hands it back."""
    failing = replace(build(7), admin_password="s3cret")
    working = replace(build(8), admin_password="other")
    driver, sink = FakeDriver(fail={failing.uuid}), RecordingSink()
    compute = manager(driver, sink, limit=2)
    compute.accept([failing, working])
    await compute.wait_idle(5)
    (handed,) = [e for e in sink.events if e.kind is InstanceEventKind.RESCHEDULE]
    assert (handed.instance_uuid, handed.admin_password) == (failing.uuid, "s3cret")
    assert all(e.admin_password == "" for e in sink.events if e is not handed)
    assert "s3cret" not in repr(handed)  # events are logged; the password never is
