from __future__ import annotations

import dataclasses

from services.common.domain import (
    HostInstance,
    InstanceEventKind,
    PowerState,
    Resources,
    TaskState,
    VmState,
)
from services.compute.manager import Phase
from services.compute.sync import HostSync
from services.compute.virt.driver import DomainInfo
from tests.unit.test_manager import FakeDriver, RecordingSink, build, manager

TINY = Resources(1, 512, 1)


class HostDriver(FakeDriver):
    """A fake hypervisor with domains in chosen power states, ours or somebody else's."""

    def __init__(
        self, domains: dict[str, tuple[PowerState, bool]], owners: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.domains = domains
        self.owners = owners or {}
        self.destroyed: list[str] = []
        self.file_listings = 0

    def list_domains(self) -> list[DomainInfo]:
        return [
            DomainInfo(u, f"d-{u}", p, m, self.owners.get(u, ""))
            for u, (p, m) in self.domains.items()
        ]

    def instance_files(self) -> set[str]:
        self.file_listings += 1
        return {u for u, (_, managed) in self.domains.items() if managed}

    def destroy(self, uuid: str) -> bool:
        self.destroyed.append(uuid)
        return self.domains.pop(uuid, None) is not None


class Inventory:
    def __init__(self, instances: list[HostInstance]) -> None:
        self.instances = instances

    async def list_host_instances(self, host: str) -> list[HostInstance]:
        assert host == "h1"
        return self.instances


def live(
    uuid: str, vm: VmState, task: TaskState | None = None, power: PowerState = PowerState.RUNNING
) -> HostInstance:
    return HostInstance(uuid, vm, task, power, TINY)


async def test_start_up_recovery_restores_reaps_and_hands_back() -> None:
    driver = HostDriver(
        {
            "running": (PowerState.RUNNING, True),
            "stopped-behind-our-back": (PowerState.SHUTDOWN, True),
            "half-built": (PowerState.RUNNING, True),
            "orphan": (PowerState.RUNNING, True),
            "foreign": (PowerState.RUNNING, False),
            # ours by its metadata, but made by another compute on the same libvirtd
            "another-computes": (PowerState.RUNNING, True),
        },
        owners={"another-computes": "h2", "orphan": "h1"},
    )
    sink = RecordingSink()
    compute = manager(driver, sink, limit=2)
    inventory = Inventory(
        [
            live("running", VmState.ACTIVE),
            live("stopped-behind-our-back", VmState.ACTIVE),
            live("vanished", VmState.ACTIVE),
            live("half-built", VmState.BUILDING, TaskState.SPAWNING, PowerState.NOSTATE),
            live("being-deleted", VmState.ACTIVE, TaskState.DELETING),
        ]
    )
    sync = HostSync(compute, inventory, interval=60)
    report = await sync.recover()
    assert driver.file_listings == 1
    assert report.suspects == ["half-built"] and report.rescheduled == []
    # a build placed here after the snapshot arrives in the grace period: not handed back
    in_flight = build(9)
    inventory.instances.append(
        live(in_flight.uuid, VmState.BUILDING, TaskState.SCHEDULING, PowerState.NOSTATE)
    )
    compute.accept([in_flight])
    assert await sync.hand_back(["half-built", in_flight.uuid]) == ["half-built"]
    await compute.wait_idle(5)

    assert report.restored == 3 and len(compute.tracker) == 4  # 3 restored + the new build
    assert compute.phases["running"] is Phase.ACTIVE
    assert report.lost == ["vanished"]
    assert report.rescheduled == ["half-built"]
    assert report.reaped == ["orphan"]
    assert sorted(report.foreign) == ["another-computes", "foreign"]
    assert {"foreign", "another-computes", "running"} <= set(driver.domains)
    assert {"half-built", "orphan", "being-deleted"} <= set(driver.destroyed)
    assert sink.kinds("vanished") == [InstanceEventKind.LOST]
    assert sink.kinds("half-built") == [InstanceEventKind.RESCHEDULE]
    assert sink.kinds(in_flight.uuid)[-1] is InstanceEventKind.ACTIVE
    assert sink.kinds("being-deleted") == [InstanceEventKind.DELETED]
    power = [e for e in sink.events if e.instance_uuid == "stopped-behind-our-back"]
    assert [(e.kind, e.power_state) for e in power] == [
        (InstanceEventKind.POWER_STATE, PowerState.SHUTDOWN)
    ]
    # a late cast of the build that died with the old process is dropped
    template = build(1)
    late = dataclasses.replace(template, uuid="half-built")
    assert compute.accept([late]) == (0, ["half-built"])


async def test_periodic_sync_reports_only_differences() -> None:
    driver = HostDriver({"a": (PowerState.RUNNING, True), "b": (PowerState.SHUTDOWN, True)})
    sink = RecordingSink()
    compute = manager(driver, sink, limit=2)
    inventory = Inventory(
        [
            live("a", VmState.ACTIVE),
            live("b", VmState.ACTIVE),
            live("c", VmState.ACTIVE),
            live("d", VmState.BUILDING, TaskState.SPAWNING, PowerState.NOSTATE),
        ]
    )
    changes = await HostSync(compute, inventory, interval=60).sync_power_states()
    assert changes == 2
    assert sink.kinds("a") == []
    assert sink.kinds("b") == [InstanceEventKind.POWER_STATE]
    assert sink.kinds("c") == [InstanceEventKind.LOST]
    assert sink.kinds("d") == []  # builds are not the sync's business
    assert driver.file_listings == 0  # only start-up reaps directories: none listed here


async def test_hand_back_cleans_up_a_build_moved_elsewhere_meanwhile() -> None:
    """A build that died with the previous process and was rescheduled to another host
    before the grace ran out leaves its directory here: the hand-back removes it and
    reports nothing (the conductor already moved it)."""
    driver = HostDriver({"moved": (PowerState.NOSTATE, True)})
    sink = RecordingSink()
    compute = manager(driver, sink, limit=2)
    inventory = Inventory([live("moved", VmState.BUILDING, TaskState.SPAWNING, PowerState.NOSTATE)])
    sync = HostSync(compute, inventory, interval=60)
    report = await sync.recover()
    assert report.suspects == ["moved"]
    inventory.instances.clear()  # placed on another host now

    assert await sync.hand_back(["moved"]) == []

    assert driver.destroyed == ["moved"]
    assert report.reaped == ["moved"]
    assert sink.kinds("moved") == []
