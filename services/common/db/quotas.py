"""Per-project quotas (instances, cores, ram) and what a project uses now."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, func, select

from services.common.db.models import INSTANCES, QUOTAS
from services.common.domain import VmState
from services.common.records import QUOTA_DEFAULTS, QUOTA_RESOURCES, QUOTA_UNLIMITED
from services.common.records import Usage as Usage  # noqa: PLC0414

RESOURCES = QUOTA_RESOURCES
DEFAULTS = QUOTA_DEFAULTS
UNLIMITED = QUOTA_UNLIMITED


# Built once: every create reads its project's limits (and usage, when it has any).
_LIMITS = select(QUOTAS.c.resource, QUOTAS.c.hard_limit).where(
    QUOTAS.c.project_id == bindparam("project")
)
_USAGE = select(
    func.count(),
    func.coalesce(func.sum(INSTANCES.c.vcpus), 0),
    func.coalesce(func.sum(INSTANCES.c.memory_mb), 0),
).where(
    INSTANCES.c.project_id == bindparam("project"), INSTANCES.c.vm_state != VmState.DELETED.value
)


def limits(
    connection: Connection, project_id: str, defaults: dict[str, int] | None = None
) -> dict[str, int]:
    found = dict(DEFAULTS if defaults is None else defaults)
    rows = connection.execute(_LIMITS, {"project": project_id})
    for resource, limit in rows:
        found[resource] = int(limit)
    return found


def set_limits(connection: Connection, project_id: str, new: dict[str, int]) -> None:
    for resource, limit in new.items():
        updated = connection.execute(
            QUOTAS.update()
            .where(QUOTAS.c.project_id == project_id, QUOTAS.c.resource == resource)
            .values(hard_limit=limit)
        )
        if updated.rowcount == 0:
            connection.execute(
                QUOTAS.insert().values(project_id=project_id, resource=resource, hard_limit=limit)
            )


def usage(connection: Connection, project_id: str) -> Usage:
    """Every instance that is not deleted counts (as in Nova, ERROR ones too)."""
    row = connection.execute(_USAGE, {"project": project_id}).one()
    return Usage(int(row[0]), int(row[1]), int(row[2]))
