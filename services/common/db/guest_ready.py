"""guest_ready_at: set when compute reports that the guest opened its guest-agent channel,
cleared when the domain stops or reboots (the guest must say so again)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, bindparam, update

from services.common.db.models import INSTANCES
from services.common.domain import VmState


def mark_ready(
    connection: Connection, reports: Sequence[tuple[str, str, datetime]], now: datetime
) -> int:
    """(uuid, host, when) for each guest that said it is up. Only a running server on the
    reporting host takes it: a late report for a server stopped or moved since is dropped."""
    if not reports:
        return 0
    statement = (
        update(INSTANCES)
        .where(
            INSTANCES.c.uuid == bindparam("b_uuid"),
            INSTANCES.c.host == bindparam("b_host"),
            INSTANCES.c.vm_state == VmState.ACTIVE.value,
        )
        .values(guest_ready_at=bindparam("b_when"), updated_at=now)
    )
    result = connection.execute(
        statement, [{"b_uuid": u, "b_host": h, "b_when": w} for u, h, w in reports]
    )
    return int(result.rowcount or 0)


def clear_ready(connection: Connection, uuids: Sequence[str], now: datetime) -> None:
    if uuids:
        connection.execute(
            update(INSTANCES)
            .where(INSTANCES.c.uuid.in_(uuids), INSTANCES.c.guest_ready_at.is_not(None))
            .values(guest_ready_at=None, updated_at=now)
        )
