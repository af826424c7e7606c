"""Server groups and their members; the hosts that group members and hinted instances are on."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, delete, func, select

from services.common.db.models import GROUP_MEMBERS, INSTANCES, SERVER_GROUPS
from services.common.domain import GroupPolicy, VmState
from services.common.records import ServerGroup as ServerGroup  # noqa: PLC0414


def create_group(
    connection: Connection, *, name: str, project_id: str, policy: GroupPolicy, now: datetime
) -> ServerGroup:
    group = ServerGroup(str(uuid.uuid4()), name, project_id, policy, now)
    connection.execute(
        SERVER_GROUPS.insert().values(
            uuid=group.uuid, name=name, project_id=project_id, policy=policy.value, created_at=now
        )
    )
    return group


def _live_members(connection: Connection, uuids: Sequence[str]) -> dict[str, list[str]]:
    rows = connection.execute(
        select(GROUP_MEMBERS.c.group_uuid, GROUP_MEMBERS.c.instance_uuid)
        .join(INSTANCES, INSTANCES.c.uuid == GROUP_MEMBERS.c.instance_uuid)
        .where(
            GROUP_MEMBERS.c.group_uuid.in_(list(uuids)),
            INSTANCES.c.vm_state != VmState.DELETED.value,
        )
        .order_by(GROUP_MEMBERS.c.id)
    )
    members: dict[str, list[str]] = {}
    for group_uuid, instance_uuid in rows:
        members.setdefault(group_uuid, []).append(instance_uuid)
    return members


def get_groups(
    connection: Connection, uuids: Sequence[str], *, project_id: str | None
) -> dict[str, ServerGroup]:
    if not uuids:
        return {}
    query = select(SERVER_GROUPS).where(SERVER_GROUPS.c.uuid.in_(list(uuids)))
    if project_id is not None:
        query = query.where(SERVER_GROUPS.c.project_id == project_id)
    rows = [r._mapping for r in connection.execute(query)]
    members = _live_members(connection, [m["uuid"] for m in rows])
    return {
        m["uuid"]: ServerGroup(
            m["uuid"],
            m["name"],
            m["project_id"],
            GroupPolicy(m["policy"]),
            m["created_at"],
            tuple(members.get(m["uuid"], ())),
        )
        for m in rows
    }


def list_groups(connection: Connection, *, project_id: str | None) -> list[ServerGroup]:
    query = select(SERVER_GROUPS.c.uuid).order_by(SERVER_GROUPS.c.id)
    if project_id is not None:
        query = query.where(SERVER_GROUPS.c.project_id == project_id)
    uuids = [u for (u,) in connection.execute(query)]
    found = get_groups(connection, uuids, project_id=project_id)
    return [found[u] for u in uuids]


def delete_group(connection: Connection, group_uuid: str) -> None:
    connection.execute(delete(GROUP_MEMBERS).where(GROUP_MEMBERS.c.group_uuid == group_uuid))
    connection.execute(delete(SERVER_GROUPS).where(SERVER_GROUPS.c.uuid == group_uuid))


def add_members(
    connection: Connection, group_uuid: str, instance_uuids: Sequence[str], *, now: datetime
) -> None:
    if instance_uuids:
        connection.execute(
            GROUP_MEMBERS.insert(),
            [
                {"group_uuid": group_uuid, "instance_uuid": u, "created_at": now}
                for u in instance_uuids
            ],
        )


def member_hosts(connection: Connection, group_uuids: Sequence[str]) -> dict[str, Counter[str]]:
    """group uuid -> how many live members each host holds."""
    if not group_uuids:
        return {}
    rows = connection.execute(
        select(GROUP_MEMBERS.c.group_uuid, INSTANCES.c.host, func.count())
        .join(INSTANCES, INSTANCES.c.uuid == GROUP_MEMBERS.c.instance_uuid)
        .where(
            GROUP_MEMBERS.c.group_uuid.in_(list(group_uuids)),
            INSTANCES.c.host.is_not(None),
            INSTANCES.c.vm_state != VmState.DELETED.value,
        )
        .group_by(GROUP_MEMBERS.c.group_uuid, INSTANCES.c.host)
    )
    hosts: dict[str, Counter[str]] = {u: Counter() for u in group_uuids}
    for group_uuid, host, count in rows:
        hosts[group_uuid][host] = int(count)
    return hosts


def instance_hosts(connection: Connection, instance_uuids: Sequence[str]) -> dict[str, str]:
    """instance uuid -> host, for the live, placed instances among ``instance_uuids``."""
    if not instance_uuids:
        return {}
    rows = connection.execute(
        select(INSTANCES.c.uuid, INSTANCES.c.host).where(
            INSTANCES.c.uuid.in_(list(instance_uuids)),
            INSTANCES.c.host.is_not(None),
            INSTANCES.c.vm_state != VmState.DELETED.value,
        )
    )
    return {u: h for u, h in rows}
