"""client_request_id records: which servers a keyed create made."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.common.db.models import CREATE_REQUESTS
from services.common.records import KeyedCreate as KeyedCreate  # noqa: PLC0414


def find(
    connection: Connection, project_id: str, client_request_id: str, *, since: datetime
) -> KeyedCreate | None:
    row = connection.execute(
        select(CREATE_REQUESTS.c.reservation_id, CREATE_REQUESTS.c.server_ids).where(
            CREATE_REQUESTS.c.project_id == project_id,
            CREATE_REQUESTS.c.client_request_id == client_request_id,
            CREATE_REQUESTS.c.created_at >= since,
        )
    ).first()
    return None if row is None else KeyedCreate(row[0], tuple(row[1]))


def claim(
    connection: Connection,
    project_id: str,
    client_request_id: str,
    *,
    reservation_id: str,
    server_ids: Sequence[str],
    now: datetime,
    expired_before: datetime,
) -> bool:
    """Record the key for these servers; False if another create holds it (it won)."""
    connection.execute(
        delete(CREATE_REQUESTS).where(
            CREATE_REQUESTS.c.project_id == project_id,
            CREATE_REQUESTS.c.client_request_id == client_request_id,
            CREATE_REQUESTS.c.created_at < expired_before,
        )
    )
    dialect = connection.dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(CREATE_REQUESTS)
        .values(
            project_id=project_id,
            client_request_id=client_request_id,
            reservation_id=reservation_id,
            server_ids=list(server_ids),
            created_at=now,
        )
        .on_conflict_do_nothing(index_elements=["project_id", "client_request_id"])
        .returning(CREATE_REQUESTS.c.id)
    )
    # A row comes back only when this insert won (rowcount is -1 with RETURNING on psycopg).
    return connection.execute(statement).first() is not None
