"""Applies the state changes compute reports, in batches (one transaction for many reports).

Every change is guarded by the state it expects, so a late or repeated report is harmless:
an ACTIVE report for an instance no longer building changes nothing, a failure report from a
host the instance is no longer on changes nothing, and nothing a build reports overrides a
delete in progress.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import Connection

from services.common.batching import Batcher
from services.common.db import instances as instance_repo
from services.common.db import placement
from services.common.db.engine import Database
from services.common.domain import (
    InstanceEvent,
    InstanceEventKind,
    TaskState,
    VmState,
    utcnow,
)

log = logging.getLogger(__name__)

Kind = InstanceEventKind


class InstanceEvents:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._batcher: Batcher[Sequence[InstanceEvent], int] = Batcher(
            self._apply_batch, max_batch=64, name="instance-events"
        )
        self.applied = 0

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    async def apply(self, events: Sequence[InstanceEvent]) -> int:
        """Returns once the events are committed."""
        return await self._batcher.submit(events)

    async def _apply_batch(
        self, reports: Sequence[Sequence[InstanceEvent]]
    ) -> list[int | BaseException]:
        flat = [event for report in reports for event in report]
        await self._db.write(lambda c: apply_events(c, flat))
        self.applied += len(flat)
        return [len(report) for report in reports]


def apply_events(connection: Connection, events: Sequence[InstanceEvent]) -> None:
    """Kinds are applied in the order a build produces them; each update is guarded by the
    state it expects, so the order of kinds inside one batch cannot matter."""
    now = utcnow()
    by_kind: dict[Kind, list[InstanceEvent]] = {k: [] for k in Kind}
    for event in events:
        by_kind[event.kind].append(event)
    instance_repo.set_task_state(
        connection, [e.instance_uuid for e in by_kind[Kind.SPAWNING]], TaskState.SPAWNING, now
    )
    instance_repo.mark_active(
        connection,
        [(e.instance_uuid, e.host, e.occurred_at) for e in by_kind[Kind.ACTIVE]],
        now,
    )
    failures = by_kind[Kind.RESCHEDULE] + by_kind[Kind.FAILED]
    if failures:
        _fail_builds(connection, failures)
    instance_repo.set_power_states(
        connection, [(e.instance_uuid, e.power_state) for e in by_kind[Kind.POWER_STATE]], now
    )
    if by_kind[Kind.LOST]:
        _mark_lost(connection, by_kind[Kind.LOST])
    deleted = [e.instance_uuid for e in by_kind[Kind.DELETED]]
    if deleted:
        placement.free_allocations(connection, deleted)
        instance_repo.mark_deleted(connection, deleted, now)


def _fail_builds(connection: Connection, failures: Sequence[InstanceEvent]) -> None:
    """A failed build on its host: free the claim and record ERROR with the reason.
    (Rescheduling to an alternate host arrives with the scheduler issue.)"""
    current = {
        i.uuid: i
        for i in instance_repo.load_instances(connection, [e.instance_uuid for e in failures])
    }
    relevant = [
        e
        for e in failures
        if (i := current.get(e.instance_uuid)) is not None
        and i.vm_state is VmState.BUILDING
        and i.task_state is not TaskState.DELETING
        and i.host == e.host
    ]
    if not relevant:
        return
    placement.free_allocations(connection, [e.instance_uuid for e in relevant])
    instance_repo.mark_error(
        connection,
        [
            instance_repo.FaultRecord(
                e.instance_uuid, 500, f"Build failed on {e.host}: {e.reason}", host=e.host
            )
            for e in relevant
        ],
        utcnow(),
    )
    log.info("%d builds failed: %s", len(relevant), "; ".join(e.reason for e in relevant[:3]))


def _mark_lost(connection: Connection, events: Sequence[InstanceEvent]) -> None:
    """The domain of a built instance is gone: ERROR with a fault (its claim stays until the
    user deletes it, as Nova keeps the allocations of an ERROR instance)."""
    current = {
        i.uuid: i
        for i in instance_repo.load_instances(connection, [e.instance_uuid for e in events])
    }
    lost = [
        e
        for e in events
        if (i := current.get(e.instance_uuid)) is not None
        and i.vm_state in (VmState.ACTIVE, VmState.STOPPED, VmState.ERROR)
        and i.host == e.host
    ]
    instance_repo.mark_error(
        connection,
        [
            instance_repo.FaultRecord(
                e.instance_uuid, 500, f"Instance's domain is gone from {e.host}: {e.reason}",
                host=e.host,
            )
            for e in lost
        ],
        utcnow(),
    )  # fmt: skip
