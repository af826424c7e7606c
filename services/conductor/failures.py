"""Ending builds that cannot go on: one unit of work shared by the build task (alternates
exhausted, host refused) and the reconciler (build timeout)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection

from services.common.db import actions, placement
from services.common.db import instances as instance_repo


def fail_builds(
    connection: Connection,
    uuids: Sequence[str],
    reason: str,
    now: datetime,
    *,
    host: str | None = None,
) -> None:
    """Free the claims and put the instances in ERROR with the reason as their fault."""
    placement.free_allocations(connection, uuids)
    instance_repo.mark_error(
        connection, [instance_repo.FaultRecord(u, 500, reason, host=host) for u in uuids], now
    )
    actions.finish_actions(connection, uuids, actions.CREATE, now, message=reason)
