"""Security-group changes reach every affected port on every host.

Three things change what a port lets through: a group's rules (the api says which groups),
a server added to or removed from a group (the api), and a server of the project coming or
going. The first two change ports' rules: the affected instances' ports are read with their
rules and the address sets those name, and pushed to each host (compute's UpdatePortRules
replaces them atomically there). The third changes no rule, only the members of address
sets (a "from members of group G" rule names G's set): the sets of the project's remote
groups are read and pushed, alone, to the hosts whose ports name them, which rewrite those
sets' elements and nothing else. A server coming therefore costs O(members) bytes per host
that needs the set, not every port of the project with every member's address (O(N^2)).
Requests are coalesced for a short linger.

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
from services.common.domain import TEST_HYPERVISOR, VmState
from services.common.networking import AddressSet, PortSpec
from services.common.stores import InstanceStore, NodeStore, SecurityGroupStore, UnitOfWork
from services.conductor.metrics import ConductorMetrics

log = logging.getLogger(__name__)


class PortRulesPusher(Protocol):
    """Compute's UpdatePortRules (the typed client in production)."""

    async def update_port_rules(
        self, address: str, ports: Sequence[PortSpec], *, address_sets: Sequence[AddressSet] = ()
    ) -> int: ...


@dataclass
class _Pending:
    group_ids: set[str] = field(default_factory=set)
    instance_uuids: set[str] = field(default_factory=set)
    # Servers that came or went: the address sets of their projects' remote groups are.
    churned: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.group_ids or self.instance_uuids or self.churned)


@dataclass(frozen=True, slots=True)
class PushReport:
    hosts: int = 0
    ports: int = 0
    address_sets: int = 0  # summed over hosts
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
        by_host = await self._uow.read(lambda tx: _affected(tx, pending))
        failed: list[str] = []
        for host, push in sorted(by_host.items()):
            try:
                await self._computes.update_port_rules(
                    push.address, push.ports, address_sets=list(push.sets.values())
                )
            except Exception as exc:  # the host converges at its next start
                log.warning("rules for %d ports and %d address sets not pushed to %s: %s",
                            len(push.ports), len(push.sets), host, exc)  # fmt: skip
                failed.append(host)
        report = PushReport(
            hosts=len(by_host),
            ports=sum(len(p.ports) for p in by_host.values()),
            address_sets=sum(len(p.sets) for p in by_host.values()),
            failed_hosts=tuple(failed),
        )
        if self._metrics is not None:
            self._metrics.rules_push.observe(time.perf_counter() - started)
            self._metrics.rules_push_failures.inc(len(failed))
        log.info("security-group rules pushed: %d ports, %d address sets on %d hosts in %.3fs",
                 report.ports, report.address_sets, report.hosts,
                 time.perf_counter() - started)  # fmt: skip
        return report


@dataclass
class _HostPush:
    address: str
    ports: list[PortSpec] = field(default_factory=list)
    sets: dict[str, AddressSet] = field(default_factory=dict)


def _affected(tx: RulesTx, pending: _Pending) -> dict[str, _HostPush]:
    ports: dict[str, list[PortSpec]] = defaultdict(list)
    sets: dict[str, dict[str, AddressSet]] = defaultdict(dict)
    uuids = set(pending.instance_uuids)
    uuids.update(tx.security_groups.instances_affected_by_groups(sorted(pending.group_ids)))
    # Only instances on hosts with a datapath to push to are loaded with their rules (that
    # load is the costly part; libvirt's test hypervisor has none).
    uuids = tx.instances.on_hypervisors_other_than(sorted(uuids), TEST_HYPERVISOR)
    for instance in tx.instances.load(sorted(uuids)):
        if instance.host and instance.ports and instance.vm_state is not VmState.DELETED:
            ports[instance.host].extend(instance.ports)
            sets[instance.host].update((s.group_id, s) for s in instance.address_sets)
    if pending.churned:
        # A server that went has no group left (its memberships go with it), so every
        # remote group of its project is refreshed: a few sets, O(members) each.
        groups = tx.security_groups.remote_groups_of_projects(
            sorted(tx.instances.projects_of(sorted(pending.churned)))
        )
        naming = tx.security_groups.hosts_naming_groups(groups)
        # Reading a set costs O(members): only for hosts with a datapath to push to.
        naming = {h: naming[h] for h in _with_datapath(tx, sorted(naming))}
        known = tx.security_groups.address_sets(sorted({g for gs in naming.values() for g in gs}))
        for host, named in naming.items():
            sets[host].update((g, known[g]) for g in named)
    return {
        host: _HostPush(address, ports.get(host, []), sets.get(host, {}))
        for host, address in _with_datapath(tx, sorted(set(ports) | set(sets))).items()
    }


def _with_datapath(tx: RulesTx, hosts: Sequence[str]) -> dict[str, str]:
    """host -> rpc address, for those of ``hosts`` whose datapath is not libvirt's test
    hypervisor's (no guest; the no-op datapath: nothing to push)."""
    return {
        host: address
        for host, (address, hypervisor) in tx.nodes.hypervisors(hosts).items()
        if hypervisor != TEST_HYPERVISOR
    }
