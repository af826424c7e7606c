"""The stores of ``services.common.stores`` on SQLAlchemy, and the unit of work that gives
them one transaction of ``Database`` (whose deadlock retries run the work again whole).

The stores are thin: each method is the query (or the repository function) the use case
ran itself before, so a use case makes exactly the round trips it made then.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TypeVar

from sqlalchemy import ColumnElement, Connection, and_, or_, select

from services.common.db import actions as action_repo
from services.common.db import instances as instance_repo
from services.common.db import placement
from services.common.db.engine import Database
from services.common.db.models import INSTANCES, NODES
from services.common.domain import Instance, PowerState, TaskState, VmState
from services.common.stores import FaultRecord, Findings, UnfinishedCutoffs, WatchScope

T = TypeVar("T")

# The most rows one watch read returns (a snapshot or one poll's changes).
WATCH_MAX = 1000


def _changed_before(moment: datetime) -> ColumnElement[bool]:
    return or_(
        INSTANCES.c.updated_at < moment,
        and_(INSTANCES.c.updated_at.is_(None), INSTANCES.c.created_at < moment),
    )


class SqlInstances:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def load(self, uuids: Sequence[str], *, for_update: bool = False) -> list[Instance]:
        return instance_repo.load_instances(self._c, uuids, for_update=for_update)

    def unfinished(self, cutoffs: UnfinishedCutoffs) -> Findings:
        """Six indexed queries, one per kind of stuck work (the reconciler's pass)."""
        c = self._c
        grace = cutoffs.now - cutoffs.scheduling_grace
        down = cutoffs.now - cutoffs.service_down_time
        building = INSTANCES.c.vm_state == VmState.BUILDING.value
        unscheduled: dict[str, list[str]] = defaultdict(list)
        rows = c.execute(
            select(INSTANCES.c.uuid, INSTANCES.c.reservation_id).where(
                building,
                INSTANCES.c.task_state == TaskState.SCHEDULING.value,
                INSTANCES.c.host.is_(None),
                _changed_before(grace),
            )
        )
        for uuid, reservation in rows:
            unscheduled[reservation].append(uuid)
        deleting = select(INSTANCES.c.uuid).where(
            INSTANCES.c.task_state == TaskState.DELETING.value,
            INSTANCES.c.vm_state != VmState.DELETED.value,
            _changed_before(grace),
        )
        on_down_hosts = (
            select(INSTANCES.c.uuid, INSTANCES.c.host)
            .join(NODES, NODES.c.host == INSTANCES.c.host)
            .where(
                building,
                instance_repo.NOT_DELETING,
                NODES.c.last_heartbeat_at < down,
                _changed_before(grace),
            )
        )
        timed_out = select(INSTANCES.c.uuid).where(
            building,
            instance_repo.NOT_DELETING,
            INSTANCES.c.created_at < cutoffs.now - cutoffs.instance_build_timeout,
        )
        stuck_power = select(INSTANCES.c.uuid).where(
            INSTANCES.c.task_state.in_(instance_repo.POWER_TASKS),
            _changed_before(cutoffs.now - cutoffs.power_action_timeout),
        )
        unsent = (
            select(INSTANCES.c.uuid)
            .join(NODES, NODES.c.host == INSTANCES.c.host)
            .where(
                building,
                INSTANCES.c.task_state.is_(None),
                NODES.c.last_heartbeat_at >= down,
                _changed_before(grace),
            )
        )
        return Findings(
            unscheduled=dict(unscheduled),
            deleting=[u for (u,) in c.execute(deleting)],
            on_down_hosts=[(u, h) for u, h in c.execute(on_down_hosts)],
            timed_out=[u for (u,) in c.execute(timed_out)],
            stuck_power=[u for (u,) in c.execute(stuck_power)],
            unsent=[u for (u,) in c.execute(unsent)],
        )

    def host_address(self, uuid: str) -> str | None:
        row = self._c.execute(
            select(NODES.c.rpc_address)
            .join(INSTANCES, INSTANCES.c.host == NODES.c.host)
            .where(INSTANCES.c.uuid == uuid)
        ).first()
        return None if row is None else str(row[0])

    def mark_error(self, faults: Sequence[FaultRecord], now: datetime) -> None:
        instance_repo.mark_error(self._c, faults, now)

    def mark_deleted(self, uuids: Sequence[str], now: datetime) -> None:
        instance_repo.mark_deleted(self._c, uuids, now)

    def settle_power_action(
        self,
        uuids: Sequence[str],
        vm_state: VmState | None,
        power: PowerState | None,
        now: datetime,
    ) -> None:
        instance_repo.settle_power_action(self._c, uuids, vm_state, power, now)

    def watched(self, scopes: Sequence[WatchScope], *, since: datetime | None) -> list[Instance]:
        """One query for every scope."""
        conditions = []
        for scope in scopes:
            if scope.server_id:
                condition = INSTANCES.c.uuid == scope.server_id
            elif scope.reservation_id:
                condition = INSTANCES.c.reservation_id == scope.reservation_id
            elif since is None:  # a project's snapshot: its live servers
                condition = INSTANCES.c.vm_state != VmState.DELETED.value
            else:  # a project's changes, deletes included
                condition = INSTANCES.c.id.is_not(None)
            if scope.project_id is not None:
                condition = and_(condition, INSTANCES.c.project_id == scope.project_id)
            conditions.append(condition)
        if not conditions:
            return []
        query = select(INSTANCES).where(or_(*conditions))
        if since is not None:
            query = query.where(
                or_(
                    INSTANCES.c.updated_at >= since,
                    and_(INSTANCES.c.updated_at.is_(None), INSTANCES.c.created_at >= since),
                )
            )
        query = query.order_by(INSTANCES.c.created_at).limit(WATCH_MAX)
        rows = [r._mapping for r in self._c.execute(query)]
        return instance_repo.with_details(self._c, rows)


class SqlNodes:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def rpc_addresses(self, hosts: Sequence[str]) -> dict[str, str]:
        rows = self._c.execute(
            select(NODES.c.host, NODES.c.rpc_address).where(NODES.c.host.in_(list(hosts)))
        )
        return {host: address for host, address in rows}


class SqlAllocations:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def free(self, uuids: Sequence[str]) -> int:
        return placement.free_allocations(self._c, uuids)


class SqlActions:
    def __init__(self, connection: Connection) -> None:
        self._c = connection

    def finish(
        self, uuids: Sequence[str], action: str, now: datetime, *, message: str | None = None
    ) -> None:
        action_repo.finish_actions(self._c, uuids, action, now, message=message)


class SqlTransaction:
    """Every store, on one connection (one transaction). Building it runs no query."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.instances = SqlInstances(connection)
        self.nodes = SqlNodes(connection)
        self.allocations = SqlAllocations(connection)
        self.actions = SqlActions(connection)


class SqlUnitOfWork:
    """``UnitOfWork[SqlTransaction]`` on a ``Database``: its thread pools, its SQLite writer
    queue, its read time limits and its deadlock retries (``work`` runs again from the start
    on a fresh transaction)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def write(self, work: Callable[[SqlTransaction], T]) -> T:
        return await self.db.write(lambda connection: work(SqlTransaction(connection)))

    async def read(self, work: Callable[[SqlTransaction], T], *, timeout: float | None = None) -> T:
        return await self.db.read(
            lambda connection: work(SqlTransaction(connection)), timeout=timeout
        )
