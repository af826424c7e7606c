"""The persistence ports: the stores use cases read and write through, and the unit of work
that gives a piece of work one transaction (cosmicpython's AbstractRepository and
AbstractUnitOfWork, as Protocols).

A unit of work runs a plain function of a transaction's stores (``work(tx)``) on a database
thread, so a use case keeps its logic in one place and reads it top to bottom while the
SQL stays in ``services.common.db`` (``services.common.db.stores`` implements these on
SQLAlchemy; ``tests/support/fake_stores.py`` in memory). ``work`` may run more than once
(the SQL unit of work retries a transaction that PostgreSQL aborted to break a deadlock), so
it builds all its state inside.

Each use case names the stores it needs in a small ``Protocol`` of its own (its ``Tx``);
one transaction object that has them all fits every one of those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from services.common.domain import Instance, PowerState, VmState

T = TypeVar("T")
Tx_co = TypeVar("Tx_co", covariant=True)


class UnitOfWork(Protocol[Tx_co]):
    """Runs ``work`` in one transaction: committed when it returns, rolled back when it
    raises (the exception goes to the caller)."""

    async def write(self, work: Callable[[Tx_co], T]) -> T: ...

    async def read(self, work: Callable[[Tx_co], T], *, timeout: float | None = None) -> T:
        """A read-only transaction; stopped (DeadlineExceeded) after ``timeout`` seconds
        (default: the adapter's own limit)."""
        ...


@dataclass(frozen=True, slots=True)
class FaultRecord:
    """Why an instance went to ERROR (an instance fault row)."""

    uuid: str
    code: int
    message: str
    details: str = ""
    host: str | None = None


@dataclass
class Findings:
    """What the reconciler finds left behind (one read transaction)."""

    unscheduled: dict[str, list[str]] = field(default_factory=dict)  # reservation -> uuids
    deleting: list[str] = field(default_factory=list)
    on_down_hosts: list[tuple[str, str]] = field(default_factory=list)  # (uuid, host)
    timed_out: list[str] = field(default_factory=list)
    stuck_power: list[str] = field(default_factory=list)
    # Placed on a live host that has not said it started them.
    unsent: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.unscheduled or self.deleting or self.on_down_hosts or self.timed_out
            or self.stuck_power or self.unsent
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class UnfinishedCutoffs:
    """The moments before which each kind of unfinished work counts as stuck."""

    now: datetime
    scheduling_grace: timedelta
    service_down_time: timedelta
    instance_build_timeout: timedelta
    power_action_timeout: timedelta


@dataclass(frozen=True, slots=True)
class WatchScope:
    """The servers one watcher covers: one server, one reservation, or a whole project
    (``project_id`` None: every project, for admins)."""

    project_id: str | None
    server_id: str = ""
    reservation_id: str = ""


class InstanceStore(Protocol):
    def load(self, uuids: Sequence[str], *, for_update: bool = False) -> list[Instance]:
        """``for_update``: the rows stay locked (PostgreSQL) until the transaction ends."""
        ...

    def unfinished(self, cutoffs: UnfinishedCutoffs) -> Findings: ...

    def host_address(self, uuid: str) -> str | None:
        """The rpc address of the compute node the instance is on (None: no host, or the
        host's node record is gone)."""
        ...

    def mark_error(self, faults: Sequence[FaultRecord], now: datetime) -> None: ...

    def mark_deleted(self, uuids: Sequence[str], now: datetime) -> None:
        """DELETED, with the instances' ports and security-group memberships released."""
        ...

    def settle_power_action(
        self,
        uuids: Sequence[str],
        vm_state: VmState | None,
        power: PowerState | None,
        now: datetime,
    ) -> None:
        """End a power task (only a power task: a delete keeps its ``deleting``)."""
        ...

    def watched(self, scopes: Sequence[WatchScope], *, since: datetime | None) -> list[Instance]:
        """The instances any scope covers, oldest first, at most ``limit`` of the adapter;
        ``since`` None: a snapshot (a project's live servers); else what changed since,
        deletes included."""
        ...


class NodeStore(Protocol):
    def rpc_addresses(self, hosts: Sequence[str]) -> dict[str, str]:
        """host -> rpc address, for the hosts that have a node record."""
        ...


class AllocationStore(Protocol):
    def free(self, uuids: Sequence[str]) -> int:
        """Drop the instances' placement claims; their nodes' usage shrinks by as much."""
        ...


class ActionStore(Protocol):
    def finish(
        self, uuids: Sequence[str], action: str, now: datetime, *, message: str | None = None
    ) -> None:
        """End the latest ``action`` of each instance (``message``: why it failed)."""
        ...
