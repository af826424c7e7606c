"""Security-group changes reach every affected port on every host.

Three things change a port's rules: a group's rules (the api says which groups), a server
added to or removed from a group (the api), and a server of the project coming or going
(its address joins or leaves every "from members of group G" rule). Requests are coalesced
for a short linger, then the affected instances' ports are read with their resolved rules
and pushed to each host (compute's UpdatePortRules replaces them atomically there).

A host that cannot be reached now gets the rules at its next start (start-up sync converges
the datapath to the database) or with the next change; the push is logged and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from services.common.background import BackgroundTask
from services.common.domain import VmState
from services.common.networking import PortSpec
from services.common.stores import InstanceStore, NodeStore, SecurityGroupStore, UnitOfWork
from services.conductor.metrics import ConductorMetrics

log = logging.getLogger(__name__)


TEST_HYPERVISOR = "TEST"  # what libvirt's test:/// driver reports as its type


class PortRulesPusher(Protocol):
    """Compute's UpdatePortRules (the typed client in production)."""

    async def update_port_rules(self, address: str, ports: Sequence[PortSpec]) -> int: ...


@dataclass
class _Pending:
    group_ids: set[str] = field(default_factory=set)
    instance_uuids: set[str] = field(default_factory=set)
    # Servers that came or went: every live server of their projects is refreshed.
    churned: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.group_ids or self.instance_uuids or self.churned)


@dataclass(frozen=True, slots=True)
class PushReport:
    hosts: int = 0
    ports: int = 0
    failed_hosts: tuple[str, ...] = ()


class RulesTx(Protocol):
    @property
    def instances(self) -> InstanceStore: ...
    @property
    def nodes(self) -> NodeStore: ...
    @property
    def security_groups(self) -> SecurityGroupStore: ...


class PortRulesFanOut:
    def __init__(
        self,
        uow: UnitOfWork[RulesTx],
        computes: PortRulesPusher,
        *,
        linger: timedelta = timedelta(milliseconds=100),
        metrics: ConductorMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._uow = uow
        self._computes = computes
        self._linger = linger.total_seconds()
        self._pending = _Pending()
        self._wake = asyncio.Event()
        self._task = BackgroundTask("port-rules-fan-out", self._run)
        self.last: PushReport = PushReport()

    def start(self) -> None:
        self._task.start()

    async def close(self) -> None:
        await self._task.close()

    def groups_changed(self, group_ids: Sequence[str], instance_uuids: Sequence[str] = ()) -> None:
        """Never blocks: the push happens in the background, coalesced."""
        self._pending.group_ids.update(group_ids)
        self._pending.instance_uuids.update(instance_uuids)
        self._wake.set()

    def servers_came_or_went(self, instance_uuids: Sequence[str]) -> None:
        if instance_uuids:
            self._pending.churned.update(instance_uuids)
            self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await asyncio.sleep(self._linger)  # coalesce a burst of changes into one push
            self._wake.clear()
            pending, self._pending = self._pending, _Pending()
            if not pending:
                continue
            try:
                self.last = await self.push(pending)
            except Exception:  # a background task never dies of one bad round
                log.exception("pushing security-group rules failed")

    async def push(self, pending: _Pending) -> PushReport:
        started = time.perf_counter()
        by_host, addresses = await self._uow.read(lambda tx: _affected_ports(tx, pending))
        failed: list[str] = []
        for host, ports in sorted(by_host.items()):
            try:
                await self._computes.update_port_rules(addresses[host], ports)
            except Exception as exc:  # the host converges at its next start
                log.warning("rules for %d ports not pushed to %s: %s", len(ports), host, exc)
                failed.append(host)
        report = PushReport(len(by_host), sum(len(p) for p in by_host.values()), tuple(failed))
        if self._metrics is not None:
            self._metrics.rules_push.observe(time.perf_counter() - started)
            self._metrics.rules_push_failures.inc(len(failed))
        log.info("security-group rules pushed: %d ports on %d hosts in %.3fs",
                 report.ports, report.hosts, time.perf_counter() - started)  # fmt: skip
        return report


def _affected_ports(
    tx: RulesTx, pending: _Pending
) -> tuple[dict[str, list[PortSpec]], dict[str, str]]:
    uuids = set(pending.instance_uuids)
    uuids.update(tx.security_groups.instances_affected_by_groups(sorted(pending.group_ids)))
    if pending.churned:
        projects = tx.instances.projects_of(sorted(pending.churned))
        uuids.update(tx.instances.placed_in_projects(sorted(projects)))
    # Only instances on hosts with a datapath to push to are loaded with their rules (that
    # load is the costly part; libvirt's test hypervisor has none).
    uuids = tx.instances.on_hypervisors_other_than(sorted(uuids), TEST_HYPERVISOR)
    by_host: dict[str, list[PortSpec]] = defaultdict(list)
    for instance in tx.instances.load(sorted(uuids)):
        if instance.host and instance.ports and instance.vm_state is not VmState.DELETED:
            by_host[instance.host].extend(instance.ports)
    # libvirt's test hypervisor has no guest and its datapath is the no-op: nothing to push
    # (and a big project's member rules are large: see the README's scale note).
    addresses = {
        host: address
        for host, (address, hypervisor) in tx.nodes.hypervisors(sorted(by_host)).items()
        if hypervisor != TEST_HYPERVISOR
    }
    return {h: p for h, p in by_host.items() if h in addresses}, addresses
