"""Deleted servers leave the live tables (as ``nova-manage db archive_deleted_rows`` and
``purge``): a server deleted before a cutoff moves, with its actions, action events, faults,
tags, allocations and group membership, to the shadow tables, or goes; ``purge`` empties the
shadow tables of what was deleted before a cutoff.

Both work in batches of servers, one short transaction each, so no lock is held for long and
the services keep writing meanwhile. A deleted server is never written again, so a batch
needs no lock on what it moves. ListServers with ``changes_since`` shows deleted servers
until they are archived: the cutoff is what keeps recent deletions visible.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import Connection, Table, delete, func, insert, select
from sqlalchemy.sql.elements import ColumnElement

from services.common.db import placement
from services.common.db.models import (
    ACTION_EVENTS,
    ACTIONS,
    ALLOCATIONS,
    FAULTS,
    GROUP_MEMBERS,
    INSTANCE_TAGS,
    INSTANCES,
    SHADOWS,
)
from services.common.domain import VmState

ArchiveCounts = dict[str, int]

# What a server owns, children first: events hang off actions, the instance row goes last.
_ORDER = (
    "instance_action_events",
    "instance_actions",
    "instance_faults",
    "instance_tags",
    "allocations",
    "server_group_members",
    "instances",
)
_LIVE: dict[str, Table] = {
    t.name: t
    for t in (ACTION_EVENTS, ACTIONS, FAULTS, INSTANCE_TAGS, ALLOCATIONS, GROUP_MEMBERS, INSTANCES)
}


def _rows_of(tables: Mapping[str, Table], name: str, uuids: list[str]) -> ColumnElement[bool]:
    """The rows of table ``name`` (live or shadow, per ``tables``) the servers ``uuids`` own."""
    table = tables[name]
    if name == "instances":
        return table.c.uuid.in_(uuids)
    if name == "instance_action_events":
        actions = tables["instance_actions"]
        owned = select(actions.c.id).where(actions.c.instance_uuid.in_(uuids))
        return table.c.action_id.in_(owned)
    return table.c.instance_uuid.in_(uuids)


# SQLite gives a new row max(id) + 1: moving the newest row of a table away would let the
# next insert take its id again, which the shadow table already holds. So on SQLite the
# instance owning the newest row of each of these tables waits for a later run.
_NEWEST_OWNER = (
    (INSTANCES.c.id, select(INSTANCES.c.uuid)),
    (ACTIONS.c.id, select(ACTIONS.c.instance_uuid)),
    (FAULTS.c.id, select(FAULTS.c.instance_uuid)),
    (ALLOCATIONS.c.id, select(ALLOCATIONS.c.instance_uuid)),
    (GROUP_MEMBERS.c.id, select(GROUP_MEMBERS.c.instance_uuid)),
    (
        ACTION_EVENTS.c.id,
        select(ACTIONS.c.instance_uuid).join(
            ACTION_EVENTS, ACTION_EVENTS.c.action_id == ACTIONS.c.id
        ),
    ),
)


def _held_back(connection: Connection) -> set[str]:
    if connection.dialect.name != "sqlite":
        return set()
    owners = set()
    for id_column, owner in _NEWEST_OWNER:
        newest = select(func.max(id_column)).scalar_subquery()
        uuid = connection.execute(owner.where(id_column == newest)).scalar()
        if uuid is not None:
            owners.add(uuid)
    return owners


def _deleted_before(
    connection: Connection, before: datetime, *, limit: int, held_back: set[str]
) -> list[str]:
    query = (
        select(INSTANCES.c.uuid)
        .where(INSTANCES.c.vm_state == VmState.DELETED.value, INSTANCES.c.terminated_at < before)
        .order_by(INSTANCES.c.id)
        .limit(limit + len(held_back))
    )
    uuids = [u for u in connection.execute(query).scalars() if u not in held_back]
    return uuids[:limit]


def archive_batch(
    connection: Connection, *, before: datetime, batch_size: int, purge: bool = False
) -> ArchiveCounts:
    """Move (``purge``: delete) up to ``batch_size`` servers deleted before ``before`` and
    everything they own, in the caller's transaction. Rows moved per table; empty when
    nothing is left to archive."""
    uuids = _deleted_before(connection, before, limit=batch_size, held_back=_held_back(connection))
    if not uuids:
        return {}
    counts: ArchiveCounts = {}
    for name in _ORDER:
        table = _LIVE[name]
        rows = _rows_of(_LIVE, name, uuids)
        if not purge:
            names = [c.name for c in table.columns]
            connection.execute(
                insert(SHADOWS[name]).from_select(names, select(*table.columns).where(rows))
            )
        if table is ALLOCATIONS:
            # a deleted server should hold none; if one is left, its node gets it back
            counts[name] = placement.free_allocations(connection, uuids)
        else:
            counts[name] = connection.execute(delete(table).where(rows)).rowcount
    return counts


def purge_batch(
    connection: Connection, *, before: datetime | None, batch_size: int
) -> ArchiveCounts:
    """Delete up to ``batch_size`` archived servers (those deleted before ``before``; None:
    all) and what they owned from the shadow tables. Rows deleted per shadow table."""
    shadow = SHADOWS["instances"]
    query = select(shadow.c.uuid).order_by(shadow.c.id).limit(batch_size)
    if before is not None:
        query = query.where(shadow.c.terminated_at < before)
    uuids = list(connection.execute(query).scalars())
    if not uuids:
        return {}
    return {
        name: connection.execute(
            delete(SHADOWS[name]).where(_rows_of(SHADOWS, name, uuids))
        ).rowcount
        for name in _ORDER
    }


def add_counts(total: ArchiveCounts, batch: ArchiveCounts) -> None:
    for table, count in batch.items():
        total[table] = total.get(table, 0) + count
