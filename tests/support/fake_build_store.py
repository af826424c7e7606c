"""An in-memory BuildStore (services/conductor/build_path/ports.py) for unit tests of the build
path: what the SQL store does, on dicts, with the generation check of a claim."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from services.common.domain import (
    HostState,
    Image,
    Instance,
    Resources,
    TaskState,
    VmState,
)
from services.common.records import EventRecord, Placement
from services.common.request_spec import StoredSpec
from services.common.stores import FaultRecord

T = TypeVar("T")


@dataclass
class FakeBuildStore:
    instances: dict[str, Instance] = field(default_factory=dict)
    nodes: dict[int, HostState] = field(default_factory=dict)
    image_rows: dict[str, Image] = field(default_factory=dict)
    group_rows: dict[str, str] = field(default_factory=dict)  # uuid -> policy
    members: dict[str, list[str]] = field(default_factory=dict)  # group -> instance uuids
    allocations: dict[str, tuple[int, Resources]] = field(default_factory=dict)
    faults: list[FaultRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    finished: list[tuple[str, str, str | None]] = field(default_factory=list)
    placed: list[Placement] = field(default_factory=list)

    def add_host(self, host: HostState) -> None:
        self.nodes[host.node_id] = host

    def load_instances(self, uuids: Sequence[str], *, for_update: bool = False) -> list[Instance]:
        return [self.instances[u] for u in uuids if u in self.instances]

    def allocated(self, uuids: Sequence[str]) -> Collection[str]:
        return {u for u in uuids if u in self.allocations}

    def still_scheduling(self, uuids: Sequence[str]) -> set[str]:
        return {
            u
            for u in uuids
            if (i := self.instances.get(u)) is not None
            and i.vm_state is VmState.BUILDING
            and i.task_state is TaskState.SCHEDULING
        }

    def host_states(
        self, *, now: datetime, service_down_time: timedelta, hosts: Sequence[str] | None = None
    ) -> list[HostState]:
        states = []
        for node in self.nodes.values():
            if hosts is not None and node.host not in hosts:
                continue
            held = [r for node_id, r in self.allocations.values() if node_id == node.node_id]
            used = Resources(0, 0, 0)
            for resources in held:
                used = used + resources
            states.append(replace(node, used=used, instance_count=len(held), extra={}))
        return states

    def images(self, ids: set[str]) -> dict[str, Image]:
        return {i: self.image_rows[i] for i in ids if i in self.image_rows}

    def group_policies(self, group_uuids: Sequence[str]) -> dict[str, str]:
        return {u: self.group_rows[u] for u in group_uuids if u in self.group_rows}

    def member_hosts(self, group_uuids: Sequence[str]) -> Mapping[str, Mapping[str, int]]:
        return {
            g: Counter(
                h for u in self.members.get(g, []) if (h := self.instances[u].host) is not None
            )
            for g in group_uuids
        }

    def instance_hosts(self, uuids: Sequence[str]) -> dict[str, str]:
        return {u: h for u in uuids if u in self.instances and (h := self.instances[u].host)}

    def bump_generations(self, hosts: Sequence[HostState]) -> set[int]:
        bumped = set()
        for seen in hosts:
            node = self.nodes[seen.node_id]
            if node.generation == seen.generation:
                node.generation += 1
                bumped.add(node.node_id)
        return bumped

    def insert_allocations(self, rows: Sequence[tuple[int, str, Resources]], now: datetime) -> None:
        for node_id, uuid, resources in rows:
            self.allocations[uuid] = (node_id, resources)

    def free_allocations(self, uuids: Sequence[str]) -> None:
        for uuid in uuids:
            self.allocations.pop(uuid, None)

    def mark_placed(self, placements: Sequence[Placement], now: datetime) -> None:
        for p in placements:
            if p.uuid in self.still_scheduling([p.uuid]):
                self.instances[p.uuid] = replace(
                    self.instances[p.uuid], host=p.host, node=p.node, task_state=None,
                    request_spec=p.request_spec or StoredSpec(),
                )  # fmt: skip
                self.placed.append(p)

    def mark_error(self, faults: Sequence[FaultRecord], now: datetime) -> None:
        for fault in faults:
            instance = self.instances[fault.uuid]
            self.instances[fault.uuid] = replace(instance, vm_state=VmState.ERROR, task_state=None)
            self.faults.append(fault)

    def add_events(self, events: Sequence[EventRecord], now: datetime) -> None:
        self.events.extend(events)

    def finish_actions(
        self, uuids: Sequence[str], action: str, now: datetime, *, message: str | None = None
    ) -> None:
        self.finished.extend((u, action, message) for u in uuids)


class FakeTransactions:
    """Runs each unit of work on the one store; ``fail_writes`` makes that many writes raise
    first (a database that went away)."""

    def __init__(self, store: FakeBuildStore, *, fail_writes: int = 0) -> None:
        self.store = store
        self.reads = 0
        self.writes = 0
        self.fail_writes = fail_writes
        # Runs between the read snapshot and the write: another conductor's claim, a delete.
        self.between: Callable[[FakeBuildStore], None] | None = None

    async def read(self, work: Callable[[FakeBuildStore], T]) -> T:
        self.reads += 1
        return work(self.store)

    async def write(self, work: Callable[[FakeBuildStore], T]) -> T:
        if self.between is not None:
            self.between(self.store)
            self.between = None
        if self.fail_writes:
            self.fail_writes -= 1
            raise ConnectionError("database went away")
        self.writes += 1
        return work(self.store)
