"""The reconciler: nothing accepted stays unfinished because a message was lost or a process
died. Every ``interval`` it looks, in a few indexed queries, for

- instances still ``scheduling`` after ``scheduling_grace`` (a cast lost with a stream or a
  conductor): placed again, by reservation;
- deletes still ``deleting`` after the grace (the api could not reach a conductor): finished;
- builds on a host whose heartbeat is older than ``service_down_time``: handed to the
  reschedule path as a failure of that host;
- builds older than ``instance_build_timeout``: ERROR with a fault;
- start/stop/reboot older than ``power_action_timeout``: given back with a message.

Every action is idempotent, so several conductors may reconcile at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from services.common.background import BackgroundTask
from services.common.domain import InstanceEvent, InstanceEventKind, VmState, utcnow
from services.common.instance_actions import POWER_ACTIONS
from services.common.ipam import pool_size
from services.common.stores import (
    ActionStore,
    AllocationStore,
    Findings,
    InstanceStore,
    NetworkStore,
    NodeStore,
    UnfinishedCutoffs,
    UnitOfWork,
)
from services.conductor.failures import end_builds
from services.conductor.metrics import ConductorMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReconcilePolicy:
    interval: float = 15.0
    scheduling_grace: timedelta = timedelta(seconds=30)
    service_down_time: timedelta = timedelta(seconds=60)
    instance_build_timeout: timedelta = timedelta(seconds=600)
    power_action_timeout: timedelta = timedelta(seconds=300)


class ReconcileTx(Protocol):
    """The stores one reconcile step uses (one transaction)."""

    @property
    def instances(self) -> InstanceStore: ...
    @property
    def allocations(self) -> AllocationStore: ...
    @property
    def actions(self) -> ActionStore: ...


def find(tx: ReconcileTx, policy: ReconcilePolicy, now: datetime) -> Findings:
    found = tx.instances.unfinished(
        UnfinishedCutoffs(
            now=now,
            scheduling_grace=policy.scheduling_grace,
            service_down_time=policy.service_down_time,
            instance_build_timeout=policy.instance_build_timeout,
            power_action_timeout=policy.power_action_timeout,
        )
    )
    # A build past its timeout ends in ERROR: it is neither moved nor sent again.
    timed = set(found.timed_out)
    return replace(
        found,
        on_down_hosts=[(u, h) for u, h in found.on_down_hosts if u not in timed],
        unsent=[u for u in found.unsent if u not in timed],
    )


def fail_timed_out(tx: ReconcileTx, uuids: Sequence[str], policy: ReconcilePolicy) -> None:
    seconds = int(policy.instance_build_timeout.total_seconds())
    end_builds(tx, uuids, f"Build of instance timed out after {seconds} s", now=utcnow())


def give_back_power(tx: ReconcileTx, uuids: Sequence[str]) -> None:
    now = utcnow()
    tx.instances.settle_power_action(uuids, vm_state=None, power=None, now=now)
    for name in POWER_ACTIONS:
        tx.actions.finish(uuids, name, now, message="timed out")


class Reconciler:
    def __init__(
        self,
        uow: UnitOfWork[ReconcileTx],
        *,
        schedule: Callable[[Sequence[str]], None],
        redispatch: Callable[[Sequence[str]], Awaitable[object]],
        finish_deletes: Callable[[Sequence[str]], Awaitable[object]],
        report_failures: Callable[[Sequence[InstanceEvent]], Awaitable[object]],
        policy: ReconcilePolicy,
        metrics: ConductorMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._uow = uow
        self._schedule = schedule
        self._redispatch = redispatch
        self._finish_deletes = finish_deletes
        self._report_failures = report_failures
        self._policy = policy
        self._task = BackgroundTask("reconciler", self._run)
        self.actions_taken: dict[str, int] = defaultdict(int)

    def start(self) -> None:
        self._task.start()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._policy.interval)
            try:
                await self.reconcile_once()
            except Exception as exc:  # the database may be away: try again next round
                log.warning("reconcile pass failed: %s", exc)
                if self._metrics is not None:
                    self._metrics.task_errors.labels("reconciler").inc()

    async def reconcile_once(self) -> Findings:
        policy = self._policy
        found = await self._uow.read(lambda tx: find(tx, policy, utcnow()))
        if found.empty:
            return found
        for reservation, uuids in found.unscheduled.items():
            log.info("re-driving %d instances of %s left in scheduling", len(uuids), reservation)
            self._schedule(uuids)
        if found.unsent:
            log.info("sending %d placed builds to their hosts again", len(found.unsent))
            await self._redispatch(found.unsent)
        if found.deleting:
            log.info("finishing %d deletes", len(found.deleting))
            await self._finish_deletes(found.deleting)
        if found.on_down_hosts:
            now = utcnow()
            await self._report_failures([
                InstanceEvent(u, h, InstanceEventKind.RESCHEDULE, now,
                              reason=f"compute host {h} is down")
                for u, h in found.on_down_hosts
            ])  # fmt: skip
        if found.timed_out:
            log.warning("%d builds timed out", len(found.timed_out))
            await self._uow.write(lambda tx: fail_timed_out(tx, found.timed_out, policy))
        if found.stuck_power:
            await self._uow.write(lambda tx: give_back_power(tx, found.stuck_power))
        for name, count in (
            ("rescheduled_unplaced", sum(len(u) for u in found.unscheduled.values())),
            ("finished_deletes", len(found.deleting)),
            ("moved_from_down_hosts", len(found.on_down_hosts)),
            ("timed_out_builds", len(found.timed_out)),
            ("gave_back_power_actions", len(found.stuck_power)),
            ("resent_builds", len(found.unsent)),
        ):
            self.actions_taken[name] += count
            if self._metrics is not None and count:
                self._metrics.reconciler_actions.labels(name).inc(count)
        return found

    async def close(self) -> None:
        await self._task.close()


class CensusTx(Protocol):
    @property
    def instances(self) -> InstanceStore: ...
    @property
    def nodes(self) -> NodeStore: ...
    @property
    def networks(self) -> NetworkStore: ...


class InstanceCensus:
    """Keeps the gauges read from the database current (every ``interval``): instances by
    state, the age of the oldest build, compute nodes up, down and disabled."""

    def __init__(
        self,
        uow: UnitOfWork[CensusTx],
        metrics: ConductorMetrics,
        interval: float = 10.0,
        *,
        service_down_time: timedelta = timedelta(seconds=60),
    ) -> None:
        self._uow = uow
        self._metrics = metrics
        self._interval = interval
        self._service_down_time = service_down_time
        self._task = BackgroundTask("instance-census", self._run)

    def start(self) -> None:
        self._task.start()

    async def count_once(self) -> None:
        counts = await self._uow.read(lambda tx: tx.instances.count_by_state())
        for state in VmState:
            self._metrics.instances.labels(state.value).set(counts.get(state.value, 0))
        for network, ports in await self._uow.read(lambda tx: tx.networks.usage_per_network()):
            gauge = self._metrics.network_ports
            gauge.labels(network.id, network.name, "in_use").set(ports)
            gauge.labels(network.id, network.name, "pool").set(pool_size(network.allocation_pools))
        now = utcnow()
        oldest = await self._uow.read(lambda tx: tx.instances.oldest_building())
        age = (now - oldest).total_seconds() if oldest is not None else 0.0
        self._metrics.oldest_build_age.set(max(age, 0.0))
        down_time = self._service_down_time
        hosts = await self._uow.read(
            lambda tx: tx.nodes.host_states(now=now, service_down_time=down_time)
        )
        nodes = {"up": 0, "down": 0, "disabled": 0}
        for host in hosts:
            nodes["disabled" if not host.enabled else "up" if host.is_up else "down"] += 1
        for node_state, count in nodes.items():
            self._metrics.compute_nodes.labels(node_state).set(count)

    async def _run(self) -> None:
        while True:
            try:
                await self.count_once()
            except Exception as exc:  # the database may be away: count again next round
                log.debug("instance census failed: %s", exc)
                self._metrics.task_errors.labels("instance-census").inc()
            await asyncio.sleep(self._interval)

    async def close(self) -> None:
        await self._task.close()
