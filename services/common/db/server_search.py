"""ListServers' filters and keyset pagination, in SQL: one query for the page (plus faults
and tags for it), whatever the filters, stable under concurrent inserts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, and_, exists, or_, select

from services.common.db.instances import with_details
from services.common.db.models import INSTANCE_TAGS, INSTANCES
from services.common.db.read_guard import guarded
from services.common.domain import Instance, VmState
from services.common.pacing import unpaced
from services.common.records import Cursor as Cursor  # noqa: PLC0414
from services.common.records import ServerFilter as ServerFilter  # noqa: PLC0414

# Rows fetched (each decoded: JSON columns, timestamps) between two pacing checkpoints, and
# rows whose details (ports, faults, tags) are read between two: a few milliseconds each, the
# longest a write transaction that starts meanwhile waits for the reader to step aside.
PACE_ROWS = 50
DETAIL_ROWS = 25


def search(
    connection: Connection,
    f: ServerFilter,
    *,
    limit: int,
    after: Cursor | None = None,
    checkpoint: Callable[[], None] = unpaced,
) -> tuple[list[Instance], Cursor | None]:
    """``checkpoint`` is called every few dozen rows (services.common.pacing)."""
    query = select(INSTANCES)
    if f.project_id is not None:
        query = query.where(INSTANCES.c.project_id == f.project_id)
    if not f.include_deleted and f.changes_since is None and VmState.DELETED not in f.vm_states:
        query = query.where(INSTANCES.c.vm_state != VmState.DELETED.value)
    if f.reservation_id:
        query = query.where(INSTANCES.c.reservation_id == f.reservation_id)
    if f.name_regex:
        query = query.where(INSTANCES.c.display_name.regexp_match(f.name_regex))
    if f.vm_states:
        query = query.where(INSTANCES.c.vm_state.in_([s.value for s in f.vm_states]))
    if f.flavor_ids:
        query = query.where(INSTANCES.c.flavor_id.in_(list(f.flavor_ids)))
    if f.image_id:
        query = query.where(INSTANCES.c.image_id == f.image_id)
    for tag in f.tags:
        query = query.where(
            exists().where(
                INSTANCE_TAGS.c.instance_uuid == INSTANCES.c.uuid, INSTANCE_TAGS.c.tag == tag
            )
        )
    if f.changes_since is not None:
        query = query.where(
            or_(
                INSTANCES.c.updated_at >= f.changes_since,
                and_(INSTANCES.c.updated_at.is_(None), INSTANCES.c.created_at >= f.changes_since),
            )
        )
    if f.host:
        query = query.where(INSTANCES.c.host == f.host)
    if after is not None:
        query = query.where(
            or_(
                INSTANCES.c.created_at < after.created_at,
                and_(INSTANCES.c.created_at == after.created_at, INSTANCES.c.uuid < after.uuid),
            )
        )
    query = query.order_by(INSTANCES.c.created_at.desc(), INSTANCES.c.uuid.desc()).limit(limit + 1)
    return _page(connection, query, limit=limit, checkpoint=checkpoint)


def _page(
    connection: Connection, query: Select[Any], *, limit: int, checkpoint: Callable[[], None]
) -> tuple[list[Instance], Cursor | None]:
    checkpoint = guarded(connection, checkpoint)
    rows: list[RowMapping] = []
    for part in connection.execute(query).partitions(PACE_ROWS):
        rows.extend(r._mapping for r in part)
        checkpoint()
    page = rows[:limit]
    cursor = Cursor(page[-1]["created_at"], page[-1]["uuid"]) if len(rows) > limit else None
    # the details (faults, tags, ports) a slice at a time: pacing can pause between slices
    instances: list[Instance] = []
    for start in range(0, len(page), DETAIL_ROWS):
        instances += with_details(connection, page[start : start + DETAIL_ROWS])
        checkpoint()
    return instances, cursor
