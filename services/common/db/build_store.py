"""The conductor's build path on SQLAlchemy (its ports: services/conductor/build_path/ports.py).
Each method is one of the repositories' queries, run on the store's connection."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection

from services.common.db import actions, catalog, groups, guest_ready, placement
from services.common.db import instances as instance_repo
from services.common.domain import (
    GroupPolicy,
    HostState,
    Image,
    Instance,
    PowerState,
    Resources,
    TaskState,
    VmState,
)
from services.common.instance_actions import ActionName
from services.common.request_spec import StoredSpec

T = TypeVar("T")


class SqlBuildStore:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def load_instances(self, uuids: Sequence[str], *, for_update: bool = False) -> list[Instance]:
        return instance_repo.load_instances(self._c, uuids, for_update=for_update)

    def allocated(self, uuids: Sequence[str]) -> Collection[str]:
        return placement.allocated_instances(self._c, uuids).keys()

    def still_scheduling(self, uuids: Sequence[str]) -> set[str]:
        return instance_repo.still_scheduling(self._c, uuids)

    def host_states(
        self, *, now: datetime, service_down_time: timedelta, hosts: Sequence[str] | None = None
    ) -> list[HostState]:
        return placement.load_host_states(
            self._c, now=now, service_down_time=service_down_time, hosts=hosts
        )

    def images(self, ids: set[str]) -> dict[str, Image]:
        return catalog.images_by_id(self._c, ids)

    def group_policies(self, group_uuids: Sequence[str]) -> dict[str, GroupPolicy]:
        found = groups.get_groups(self._c, group_uuids, project_id=None)
        return {u: g.policy for u, g in found.items()}

    def member_hosts(self, group_uuids: Sequence[str]) -> Mapping[str, Mapping[str, int]]:
        return groups.member_hosts(self._c, group_uuids)

    def instance_hosts(self, uuids: Sequence[str]) -> dict[str, str]:
        return groups.instance_hosts(self._c, uuids)

    def bump_generations(self, hosts: Sequence[HostState]) -> set[int]:
        return placement.bump_generations(self._c, hosts)

    def insert_allocations(self, rows: Sequence[tuple[int, str, Resources]], now: datetime) -> None:
        placement.insert_allocations(self._c, rows, now)

    def free_allocations(self, uuids: Sequence[str]) -> None:
        placement.free_allocations(self._c, uuids)

    def mark_placed(self, placements: Sequence[instance_repo.Placement], now: datetime) -> None:
        instance_repo.mark_placed(self._c, placements, now)

    def mark_error(self, faults: Sequence[instance_repo.FaultRecord], now: datetime) -> None:
        instance_repo.mark_error(self._c, faults, now)

    def add_events(self, events: Sequence[actions.EventRecord], now: datetime) -> None:
        actions.add_events(self._c, events, now)

    def finish_actions(
        self, uuids: Sequence[str], action: ActionName, now: datetime, *, message: str | None = None
    ) -> None:
        actions.finish_actions(self._c, uuids, action, now=now, message=message)


class SqlEventStore(SqlBuildStore):
    """``EventStore`` (services/conductor/build_path/ports.py) on one connection."""

    def set_task_state(
        self, uuids: Sequence[str], task_state: TaskState | None, now: datetime
    ) -> None:
        instance_repo.set_task_state(self._c, uuids, task_state, now=now)

    def mark_active(self, launched: Sequence[tuple[str, str, datetime]], now: datetime) -> None:
        instance_repo.mark_active(self._c, launched, now)

    def set_power_states(self, states: Sequence[tuple[str, PowerState]], now: datetime) -> None:
        instance_repo.set_power_states(self._c, states, now)

    def mark_deleted(self, uuids: Sequence[str], now: datetime) -> None:
        instance_repo.mark_deleted(self._c, uuids, now)

    def settle_power_action(
        self,
        uuids: Sequence[str],
        *,
        vm_state: VmState | None,
        power: PowerState | None,
        now: datetime,
    ) -> None:
        instance_repo.settle_power_action(self._c, uuids, vm_state=vm_state, power=power, now=now)

    def move_build(
        self, uuid: str, *, host: str, node: str, spec: StoredSpec, now: datetime
    ) -> None:
        instance_repo.move_build(self._c, uuid, host=host, node=node, spec=spec, now=now)

    def note_build_results(self, *, failed_on: Sequence[str], succeeded_on: Sequence[str]) -> None:
        placement.note_build_results(self._c, failed_on=failed_on, succeeded_on=succeeded_on)

    def claim(
        self, host: HostState, requests: Sequence[tuple[str, Resources]], now: datetime
    ) -> bool:
        return placement.claim(self._c, host, requests, now=now)

    def finish_events(self, events: Sequence[actions.EventRecord], now: datetime) -> None:
        actions.finish_events(self._c, events, now)

    def clear_ready(self, uuids: Sequence[str], now: datetime) -> None:
        guest_ready.clear_ready(self._c, uuids, now)

    def mark_ready(self, reports: Sequence[tuple[str, str, datetime]], now: datetime) -> None:
        guest_ready.mark_ready(self._c, reports, now)


class _Database(Protocol):
    async def read(self, work: Callable[[Connection], Any]) -> Any: ...

    async def write(self, work: Callable[[Connection], Any]) -> Any: ...


class SqlBuildTransactions:
    """Opens a SqlBuildStore per transaction of the Database (its write retries included)."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    async def read(self, work: Callable[[SqlBuildStore], T]) -> T:
        result: T = await self._db.read(lambda c: work(SqlBuildStore(c)))
        return result

    async def write(self, work: Callable[[SqlBuildStore], T]) -> T:
        result: T = await self._db.write(lambda c: work(SqlBuildStore(c)))
        return result


class SqlEventTransactions:
    """Opens a SqlEventStore per write transaction of the Database (its retries included)."""

    def __init__(self, db: _Database) -> None:
        self._db = db

    async def write(self, work: Callable[[SqlEventStore], T]) -> T:
        result: T = await self._db.write(lambda c: work(SqlEventStore(c)))
        return result
