"""What a WatchServers resume must know that the live instances table no longer says: whether
a server in the watch's scope was archived (moved to the shadow tables) after the point the
client resumes from. Its deletion would then be missing from the changes replayed."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from services.common.db.models import SHADOWS


def archived_since(
    connection: Connection,
    *,
    since: datetime,
    project_id: str | None,
    server_id: str = "",
    reservation_id: str = "",
) -> bool:
    shadow = SHADOWS["instances"]
    query = select(shadow.c.uuid).where(shadow.c.terminated_at >= since)
    if project_id is not None:
        query = query.where(shadow.c.project_id == project_id)
    if server_id:
        query = query.where(shadow.c.uuid == server_id)
    elif reservation_id:
        query = query.where(shadow.c.reservation_id == reservation_id)
    return connection.execute(query.limit(1)).first() is not None
