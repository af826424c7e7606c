"""Keeping the host and the database in agreement.

At start-up (as Nova's ``init_host``): claims are rebuilt for the instances the database places
here; a domain or instance directory that belongs to no live instance of ours is reaped; a
domain that is not ours is reported and left alone; an instance whose domain has vanished is
reported LOST. A build the database places here that this process never received was either
running when the previous process died or is on its way right now (placed after the
snapshot): after ``handback_grace`` seconds, those still not received are cleaned up and
handed back for rescheduling.

Periodically (as Nova's ``_sync_power_states``): each instance's power state as libvirt sees
it is compared with the database's, and differences are reported.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from services.common.background import BackgroundTask
from services.common.domain import HostInstance, InstanceEventKind, TaskState, VmState
from services.compute.manager import ComputeManager, Phase
from services.compute.virt.driver import DomainInfo

log = logging.getLogger(__name__)

SETTLED = (VmState.ACTIVE, VmState.STOPPED)


class HostInventory(Protocol):
    async def list_host_instances(self, host: str) -> list[HostInstance]: ...


@dataclass
class RecoveryReport:
    restored: int = 0
    # Building here per the database, never received by this process: checked again later.
    suspects: list[str] = field(default_factory=list)
    rescheduled: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    reaped: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    terminated: list[str] = field(default_factory=list)


class HostSync:
    def __init__(
        self,
        manager: ComputeManager,
        inventory: HostInventory,
        *,
        interval: float,
        handback_grace: float = 60.0,
    ) -> None:
        self._manager = manager
        self._inventory = inventory
        self._interval = interval
        self._grace = handback_grace
        self._task = BackgroundTask("host-sync", self._run)
        self.recovered = asyncio.Event()
        self.last_recovery: RecoveryReport | None = None

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    async def _run(self) -> None:
        delay = 0.2
        while not self.recovered.is_set():
            try:
                await self.recover()
                self.recovered.set()
                if self.last_recovery and self.last_recovery.suspects:
                    await asyncio.sleep(self._grace)
                    await self.hand_back(self.last_recovery.suspects)
            except Exception as exc:  # the conductor may not answer yet: keep trying
                log.warning("start-up sync failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.sync_power_states()
            except Exception as exc:
                log.warning("power-state sync failed: %s", exc)

    async def _observe(self) -> tuple[list[HostInstance], dict[str, DomainInfo]]:
        manager = self._manager
        instances = await self._inventory.list_host_instances(manager.host)
        domains = await manager.run_blocking(manager.driver.list_domains)
        return instances, {d.uuid: d for d in domains}

    async def _snapshot(self) -> tuple[list[HostInstance], dict[str, DomainInfo], set[str]]:
        # Only start-up reaps orphan directories, so only it pays for listing them; the
        # periodic power-state sync uses ``_observe`` alone.
        instances, domains = await self._observe()
        manager = self._manager
        files = await manager.run_blocking(manager.driver.instance_files)
        return instances, domains, files

    async def recover(self) -> RecoveryReport:
        instances, domains, files = await self._snapshot()
        report = self.last_recovery = RecoveryReport()
        for instance in instances:
            self._recover_one(instance, domains.get(instance.uuid), report)
        known = {i.uuid for i in instances}
        await self._reap(
            [d for u, d in domains.items() if u not in known], files - known - set(domains), report
        )
        # The datapath becomes exactly what the database places here: stale bridges, DHCP
        # servers and rules go, missing ones come back (e.g. after a host reboot).
        manager = self._manager
        await manager.run_blocking(
            manager.network.converge,
            [p for i in instances for p in i.ports],
            list({s.group_id: s for i in instances for s in i.address_sets}.values()),
        )
        log.info(
            "start-up sync: %d instances restored, %d builds to check again, %d lost, "
            "%d orphans reaped, %d foreign domains left alone",
            report.restored,
            len(report.suspects),
            len(report.lost),
            len(report.reaped),
            len(report.foreign),
        )
        return report

    def _recover_one(
        self, instance: HostInstance, domain: DomainInfo | None, report: RecoveryReport
    ) -> None:
        manager, uuid = self._manager, instance.uuid
        if instance.task_state is TaskState.DELETING:
            manager.terminate([uuid])
            report.terminated.append(uuid)
        elif instance.vm_state in SETTLED:
            manager.tracker.restore(uuid, instance.resources)
            manager.phases[uuid] = Phase.ACTIVE
            report.restored += 1
            if domain is None:
                report.lost.append(uuid)
                manager.report(uuid, InstanceEventKind.LOST, reason="domain not found at start-up")
            elif domain.power_state is not instance.power_state:
                manager.report(uuid, InstanceEventKind.POWER_STATE, power_state=domain.power_state)
        elif instance.vm_state is VmState.BUILDING and uuid not in manager.phases:
            report.suspects.append(uuid)
        elif instance.vm_state is VmState.ERROR and domain is not None:
            manager.tracker.restore(uuid, instance.resources)

    async def _reap(
        self, orphan_domains: Sequence[DomainInfo], orphan_files: set[str], report: RecoveryReport
    ) -> None:
        manager = self._manager
        doomed = set(orphan_files)
        for domain in orphan_domains:
            if domain.reapable_by(manager.host):
                doomed.add(domain.uuid)
            elif domain.managed:
                report.foreign.append(domain.uuid)
                log.info("domain %s (%s) belongs to compute host %s; leaving it alone",
                         domain.name, domain.uuid, domain.owner)  # fmt: skip
            else:
                report.foreign.append(domain.uuid)
                log.warning(
                    "domain %s (%s) is not managed by nova-grpc; leaving it alone",
                    domain.name,
                    domain.uuid,
                )
        for uuid in sorted(doomed):
            async with manager.locks.hold(uuid):
                await manager.run_blocking(manager.driver.destroy, uuid)
                await manager.run_blocking(manager.network.unplug_instance, uuid)
            report.reaped.append(uuid)

    async def hand_back(self, suspects: Sequence[str]) -> list[str]:
        """Builds placed here that never arrived (they died with the previous process): clean
        up what they left, drop any late cast of them, report them for rescheduling."""
        manager = self._manager
        instances = await self._inventory.list_host_instances(manager.host)
        placed_here = {i.uuid for i in instances}
        building = {i.uuid for i in instances if i.vm_state is VmState.BUILDING}
        handed = [u for u in suspects if u in building and u not in manager.phases]
        # Moved elsewhere (or deleted) during the grace period, e.g. rescheduled by the
        # conductor's reconciler while this host was down: what the dead build left here
        # (its instance directory, a half-defined domain) belongs to nobody now.
        moved = [u for u in suspects if u not in placed_here and u not in manager.phases]
        for uuid in [*handed, *moved]:
            manager.tombstone(uuid)
            async with manager.locks.hold(uuid):
                await manager.run_blocking(manager.driver.destroy, uuid)
                await manager.run_blocking(manager.network.unplug_instance, uuid)
        for uuid in handed:
            manager.report(
                uuid,
                InstanceEventKind.RESCHEDULE,
                reason=f"compute service on {manager.host} restarted during the build",
            )
        if handed or moved:
            log.info("handed %d interrupted builds back for rescheduling; cleaned up %d "
                     "moved elsewhere meanwhile", len(handed), len(moved))  # fmt: skip
        if self.last_recovery is not None:
            self.last_recovery.reaped.extend(moved)
        if self.last_recovery is not None:
            self.last_recovery.rescheduled.extend(handed)
        return handed

    async def sync_power_states(self) -> int:
        """Report each settled instance whose power state libvirt sees differently."""
        manager = self._manager
        instances, domains = await self._observe()
        changes = 0
        for instance in instances:
            if instance.vm_state not in SETTLED or instance.task_state is not None:
                continue
            domain = domains.get(instance.uuid)
            if domain is None:
                manager.report(
                    instance.uuid, InstanceEventKind.LOST, reason="domain vanished from the host"
                )
                changes += 1
            elif domain.power_state is not instance.power_state:
                manager.report(
                    instance.uuid, InstanceEventKind.POWER_STATE, power_state=domain.power_state
                )
                changes += 1
        if changes:
            log.info("power-state sync: %d changes reported", changes)
        return changes
