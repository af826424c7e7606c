"""What the build path needs from the database, as ports: ``BuildStore`` is bound to one
transaction, ``BuildTransactions`` opens them. services/common/db/build_store.py implements
both on SQLAlchemy; tests/support/fake_build_store.py in memory."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

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
from services.common.records import EventRecord, Placement
from services.common.request_spec import StoredSpec
from services.common.stores import FaultRecord

T = TypeVar("T")


class BuildStore(Protocol):
    def load_instances(self, uuids: Sequence[str], *, for_update: bool = False) -> list[Instance]:
        """``for_update``: the rows stay locked until the commit (PostgreSQL)."""

    def allocated(self, uuids: Sequence[str]) -> Collection[str]:
        """Those of ``uuids`` that hold a claim on some host."""

    def still_scheduling(self, uuids: Sequence[str]) -> set[str]:
        """Those of ``uuids`` still building and waiting for a host (rows locked)."""

    def host_states(
        self, *, now: datetime, service_down_time: timedelta, hosts: Sequence[str] | None = None
    ) -> list[HostState]:
        """Every compute node (or those named) with its usage and generation."""

    def images(self, ids: set[str]) -> dict[str, Image]: ...

    def group_policies(self, group_uuids: Sequence[str]) -> dict[str, GroupPolicy]:
        """Policy by server group uuid (groups that are gone are left out)."""

    def member_hosts(self, group_uuids: Sequence[str]) -> Mapping[str, Mapping[str, int]]:
        """Per group, its live members' hosts with how many members each has."""

    def instance_hosts(self, uuids: Sequence[str]) -> dict[str, str]: ...

    def bump_generations(self, hosts: Sequence[HostState]) -> set[int]:
        """Bump each host whose generation is still the one seen; the node ids bumped."""

    def insert_allocations(
        self, rows: Sequence[tuple[int, str, Resources]], now: datetime
    ) -> None: ...

    def free_allocations(self, uuids: Sequence[str]) -> None: ...

    def mark_placed(self, placements: Sequence[Placement], now: datetime) -> None: ...

    def mark_error(self, faults: Sequence[FaultRecord], now: datetime) -> None: ...

    def add_events(self, events: Sequence[EventRecord], now: datetime) -> None: ...

    def finish_actions(
        self, uuids: Sequence[str], action: ActionName, now: datetime, *, message: str | None = None
    ) -> None: ...


class BuildTransactions(Protocol):
    async def read(self, work: Callable[[BuildStore], T]) -> T:
        """``work`` on a read snapshot (no write lock held)."""

    async def write(self, work: Callable[[BuildStore], T]) -> T:
        """``work`` in one write transaction, retried whole on a transient failure."""


class EventStore(BuildStore, Protocol):
    """What applying compute's reports needs beyond the build path (conductor/events.py and
    conductor/reschedule.py), bound to one transaction. Each guarded as its SQL twin in
    services/common/db says."""

    def set_task_state(
        self, uuids: Sequence[str], task_state: TaskState | None, now: datetime
    ) -> None:
        """Only instances still BUILDING change."""

    def mark_active(self, launched: Sequence[tuple[str, str, datetime]], now: datetime) -> None:
        """(uuid, host, launched_at) for each instance whose domain runs."""

    def set_power_states(self, states: Sequence[tuple[str, PowerState]], now: datetime) -> None: ...

    def mark_deleted(self, uuids: Sequence[str], now: datetime) -> None:
        """DELETED, with the ports and security-group memberships released."""

    def settle_power_action(
        self,
        uuids: Sequence[str],
        *,
        vm_state: VmState | None,
        power: PowerState | None,
        now: datetime,
    ) -> None:
        """End a power task: the new states when it succeeded (None: leave them)."""

    def move_build(
        self, uuid: str, *, host: str, node: str, spec: StoredSpec, now: datetime
    ) -> None:
        """A rescheduled build: same instance, next host (still building)."""

    def note_build_results(self, *, failed_on: Sequence[str], succeeded_on: Sequence[str]) -> None:
        """Count failed builds per host; a success resets the count."""

    def claim(
        self, host: HostState, requests: Sequence[tuple[str, Resources]], now: datetime
    ) -> bool:
        """Allocate on ``host`` if its generation is still the one seen (False: taken)."""

    def finish_events(self, events: Sequence[EventRecord], now: datetime) -> None:
        """Close the open event of each (instance, event, host) with its result."""

    def clear_ready(self, uuids: Sequence[str], now: datetime) -> None: ...

    def mark_ready(self, reports: Sequence[tuple[str, str, datetime]], now: datetime) -> None:
        """(uuid, host, when) for each guest that said it is up."""


class EventTransactions(Protocol):
    async def write(self, work: Callable[[EventStore], T]) -> T:
        """``work`` in one write transaction, retried whole on a transient failure."""
