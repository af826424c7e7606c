"""Security groups, their rules and which servers they apply to; and the rules each server's
ports get on its host (``rules_for_instances``) with the address sets of the remote groups
they name (``address_sets``)."""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Iterable, Sequence
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from services.common.db.bulk import insert_rows
from services.common.db.models import (
    INSTANCE_SECURITY_GROUPS,
    INSTANCES,
    PORTS,
    SECURITY_GROUP_RULES,
    SECURITY_GROUPS,
)
from services.common.domain import VmState
from services.common.networking import AddressSet, Direction, IpProtocol, SecurityGroupRule
from services.common.records import (
    DEFAULT_SECURITY_GROUP_DESCRIPTION,
    DEFAULT_SECURITY_GROUP_NAME,
)
from services.common.records import GroupRule as GroupRule  # noqa: PLC0414
from services.common.records import NewRule as NewRule  # noqa: PLC0414
from services.common.records import SecurityGroup as SecurityGroup  # noqa: PLC0414

DEFAULT_NAME = DEFAULT_SECURITY_GROUP_NAME
DEFAULT_DESCRIPTION = DEFAULT_SECURITY_GROUP_DESCRIPTION


def _rule_from_row(m: RowMapping) -> GroupRule:
    return GroupRule(
        id=m["id"],
        group_id=m["group_id"],
        direction=Direction(m["direction"]),
        protocol=IpProtocol(m["protocol"]),
        port_min=m["port_min"],
        port_max=m["port_max"],
        remote_cidr=IPv4Network(m["remote_cidr"]) if m["remote_cidr"] else None,
        remote_group_id=m["remote_group_id"],
        created_at=m["created_at"],
    )


def _group_from_row(m: RowMapping, rules: Sequence[GroupRule] = ()) -> SecurityGroup:
    return SecurityGroup(
        id=m["id"],
        project_id=m["project_id"],
        name=m["name"],
        description=m["description"],
        created_at=m["created_at"],
        rules=tuple(rules),
    )


def _with_rules(connection: Connection, query: Select[Any]) -> list[SecurityGroup]:
    rows = [r._mapping for r in connection.execute(query)]
    rules = rules_of(connection, [m["id"] for m in rows])
    return [_group_from_row(m, rules.get(m["id"], ())) for m in rows]


def rules_of(connection: Connection, group_ids: Sequence[str]) -> dict[str, list[GroupRule]]:
    if not group_ids:
        return {}
    found: dict[str, list[GroupRule]] = {}
    rows = connection.execute(
        select(SECURITY_GROUP_RULES)
        .where(SECURITY_GROUP_RULES.c.group_id.in_(list(set(group_ids))))
        .order_by(SECURITY_GROUP_RULES.c.created_at, SECURITY_GROUP_RULES.c.id)
    )
    for row in rows:
        rule = _rule_from_row(row._mapping)
        found.setdefault(rule.group_id, []).append(rule)
    return found


def create_group(
    connection: Connection, *, project_id: str, name: str, description: str, now: datetime
) -> SecurityGroup | None:
    """The new group, or None when the project has one of that name. On PostgreSQL a racing
    insert of the same name waits for the other transaction and then does nothing."""
    group_id = str(uuid_module.uuid4())
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(SECURITY_GROUPS)
        .values(
            id=group_id, project_id=project_id, name=name, description=description, created_at=now
        )
        .on_conflict_do_nothing()
        .returning(SECURITY_GROUPS.c.id)
    )
    # RETURNING, not rowcount: psycopg reports -1 for this statement.
    if connection.execute(statement).first() is None:
        return None
    return SecurityGroup(group_id, project_id, name, description, now)


def default_rules(group_id: str) -> list[NewRule]:
    """Neutron's defaults (IPv4): all egress; ingress only from members of the group."""
    return [
        NewRule(group_id, Direction.EGRESS),
        NewRule(group_id, Direction.INGRESS, remote_group_id=group_id),
    ]


def ensure_default(connection: Connection, project_id: str, now: datetime) -> SecurityGroup:
    """The project's "default" group, made with its rules on first use. Two transactions
    racing to make it both end up with the one that won."""
    found = find_groups(connection, DEFAULT_NAME, project_id=project_id)
    if found:
        return found[0]
    made = create_group(
        connection,
        project_id=project_id,
        name=DEFAULT_NAME,
        description=DEFAULT_DESCRIPTION,
        now=now,
    )
    if made is None:
        (raced,) = find_groups(connection, DEFAULT_NAME, project_id=project_id)
        return raced
    rules = [insert_rule(connection, r, now) for r in default_rules(made.id)]
    return SecurityGroup(made.id, project_id, made.name, made.description, now, tuple(rules))


def find_groups(
    connection: Connection, ref: str, *, project_id: str | None, lock: bool = False
) -> list[SecurityGroup]:
    """Groups with this id or name in the project (``project_id=None``: any, for admins); an
    id wins over a name, more than one means the name is ambiguous. ``lock`` takes a shared
    row lock (PostgreSQL) so that the group cannot be deleted before this transaction ends;
    a group deleted meanwhile is not found."""
    query = select(SECURITY_GROUPS).where(
        or_(SECURITY_GROUPS.c.id == ref, SECURITY_GROUPS.c.name == ref)
    )
    if project_id is not None:
        query = query.where(SECURITY_GROUPS.c.project_id == project_id)
    if lock:
        query = query.with_for_update(read=True)
    found = _with_rules(connection, query.order_by(SECURITY_GROUPS.c.id))
    by_id = [g for g in found if g.id == ref]
    return by_id or found


def list_groups(connection: Connection, *, project_id: str | None) -> list[SecurityGroup]:
    query = select(SECURITY_GROUPS).order_by(
        SECURITY_GROUPS.c.project_id, SECURITY_GROUPS.c.created_at, SECURITY_GROUPS.c.id
    )
    if project_id is not None:
        query = query.where(SECURITY_GROUPS.c.project_id == project_id)
    return _with_rules(connection, query)


def lock_for_delete(connection: Connection, group_id: str) -> bool:
    """An exclusive row lock (PostgreSQL) that waits for every transaction that uses the
    group (see ``find_groups(lock=True)``); False when the group is gone."""
    row = connection.execute(
        select(SECURITY_GROUPS.c.id).where(SECURITY_GROUPS.c.id == group_id).with_for_update()
    ).first()
    return row is not None


def delete_group(connection: Connection, group_id: str) -> None:
    # The rules go explicitly: SQLite enforces the cascading foreign key only when told to.
    connection.execute(
        delete(SECURITY_GROUP_RULES).where(SECURITY_GROUP_RULES.c.group_id == group_id)
    )
    connection.execute(delete(SECURITY_GROUPS).where(SECURITY_GROUPS.c.id == group_id))


def insert_rule(connection: Connection, new: NewRule, now: datetime) -> GroupRule:
    rule = GroupRule(
        id=str(uuid_module.uuid4()),
        group_id=new.group_id,
        direction=new.direction,
        protocol=new.protocol,
        port_min=new.port_min,
        port_max=new.port_max,
        remote_cidr=new.remote_cidr,
        remote_group_id=new.remote_group_id,
        created_at=now,
    )
    connection.execute(
        SECURITY_GROUP_RULES.insert().values(
            id=rule.id,
            group_id=rule.group_id,
            direction=rule.direction.value,
            protocol=rule.protocol.value,
            port_min=rule.port_min,
            port_max=rule.port_max,
            remote_cidr=str(rule.remote_cidr) if rule.remote_cidr else None,
            remote_group_id=rule.remote_group_id,
            created_at=now,
        )
    )
    return rule


def same_rule(connection: Connection, new: NewRule) -> GroupRule | None:
    """A rule of the group that allows exactly what ``new`` would (Neutron refuses those)."""
    for rule in rules_of(connection, [new.group_id]).get(new.group_id, []):
        if (
            rule.direction,
            rule.protocol,
            rule.port_min,
            rule.port_max,
            rule.remote_cidr,
            rule.remote_group_id,
        ) == (
            new.direction,
            new.protocol,
            new.port_min,
            new.port_max,
            new.remote_cidr,
            new.remote_group_id,
        ):
            return rule
    return None


def get_rule(connection: Connection, rule_id: str) -> GroupRule | None:
    row = connection.execute(
        select(SECURITY_GROUP_RULES).where(SECURITY_GROUP_RULES.c.id == rule_id)
    ).first()
    return None if row is None else _rule_from_row(row._mapping)


def get_group(connection: Connection, group_id: str) -> SecurityGroup | None:
    found = _with_rules(connection, select(SECURITY_GROUPS).where(SECURITY_GROUPS.c.id == group_id))
    return found[0] if found else None


def delete_rule(connection: Connection, rule_id: str) -> bool:
    deleted = connection.execute(
        delete(SECURITY_GROUP_RULES).where(SECURITY_GROUP_RULES.c.id == rule_id)
    )
    return deleted.rowcount == 1


def _live(query: Select[Any]) -> Select[Any]:
    return query.join(
        INSTANCES, INSTANCES.c.uuid == INSTANCE_SECURITY_GROUPS.c.instance_uuid
    ).where(INSTANCES.c.vm_state != VmState.DELETED.value)


def servers_using(connection: Connection, group_id: str) -> int:
    query = select(func.count()).select_from(INSTANCE_SECURITY_GROUPS)
    return int(
        connection.execute(
            _live(query).where(INSTANCE_SECURITY_GROUPS.c.group_id == group_id)
        ).scalar_one()
    )


def groups_referring_to(connection: Connection, group_id: str) -> list[str]:
    """Names of the other groups that have a rule with this group as its remote group."""
    rows = connection.execute(
        select(SECURITY_GROUPS.c.name)
        .distinct()
        .join(SECURITY_GROUP_RULES, SECURITY_GROUP_RULES.c.group_id == SECURITY_GROUPS.c.id)
        .where(
            SECURITY_GROUP_RULES.c.remote_group_id == group_id,
            SECURITY_GROUPS.c.id != group_id,
        )
        .order_by(SECURITY_GROUPS.c.name)
    )
    return [name for (name,) in rows]


def add_memberships(connection: Connection, pairs: Iterable[tuple[str, str]]) -> None:
    """(instance uuid, group id) rows."""
    insert_rows(
        connection,
        INSTANCE_SECURITY_GROUPS,
        [{"instance_uuid": u, "group_id": g} for u, g in pairs],
    )


def remove_membership(connection: Connection, instance_uuid: str, group_id: str) -> bool:
    deleted = connection.execute(
        delete(INSTANCE_SECURITY_GROUPS).where(
            INSTANCE_SECURITY_GROUPS.c.instance_uuid == instance_uuid,
            INSTANCE_SECURITY_GROUPS.c.group_id == group_id,
        )
    )
    return deleted.rowcount == 1


def group_ids_of(connection: Connection, instance_uuid: str) -> list[str]:
    rows = connection.execute(
        select(INSTANCE_SECURITY_GROUPS.c.group_id).where(
            INSTANCE_SECURITY_GROUPS.c.instance_uuid == instance_uuid
        )
    )
    return sorted(g for (g,) in rows)


def set_shown_names(connection: Connection, instance_uuid: str, now: datetime) -> None:
    """Keep ``Server.security_groups`` (the instance's list of names) equal to its groups;
    ``updated_at`` moves so that WatchServers sends the change."""
    rows = connection.execute(
        select(SECURITY_GROUPS.c.name)
        .join(INSTANCE_SECURITY_GROUPS, INSTANCE_SECURITY_GROUPS.c.group_id == SECURITY_GROUPS.c.id)
        .where(INSTANCE_SECURITY_GROUPS.c.instance_uuid == instance_uuid)
        .order_by(SECURITY_GROUPS.c.name)
    )
    connection.execute(
        update(INSTANCES)
        .where(INSTANCES.c.uuid == instance_uuid)
        .values(security_groups=[name for (name,) in rows], updated_at=now)
    )


def release_instances(connection: Connection, uuids: Sequence[str]) -> int:
    """Take these instances out of every group (they are being deleted)."""
    if not uuids:
        return 0
    return connection.execute(
        delete(INSTANCE_SECURITY_GROUPS).where(
            INSTANCE_SECURITY_GROUPS.c.instance_uuid.in_(list(uuids))
        )
    ).rowcount


def rules_for_instances(
    connection: Connection, instance_uuids: Sequence[str]
) -> dict[str, tuple[SecurityGroupRule, ...]]:
    """The rules each instance's ports get: the union of its groups' rules, a remote-group
    rule naming its group (whose addresses ``address_sets`` gives, once per group however
    many ports name it), a CIDR rule its CIDR, neither any address. Every instance asked
    for is in the answer; one with no group gets no rule (everything is denied)."""
    uuids = list(dict.fromkeys(instance_uuids))
    answer: dict[str, tuple[SecurityGroupRule, ...]] = {u: () for u in uuids}
    if not uuids:
        return answer
    memberships = connection.execute(
        _live(
            select(INSTANCE_SECURITY_GROUPS.c.instance_uuid, INSTANCE_SECURITY_GROUPS.c.group_id)
        ).where(INSTANCE_SECURITY_GROUPS.c.instance_uuid.in_(uuids))
    ).all()
    rules = rules_of(connection, [g for _, g in memberships])
    resolved = {
        group_id: tuple(
            SecurityGroupRule(
                rule_id=rule.id,
                direction=rule.direction,
                protocol=rule.protocol,
                port_min=rule.port_min,
                port_max=rule.port_max,
                remote_cidr=rule.remote_cidr,
                remote_group_id=rule.remote_group_id,
            )
            for rule in group_rules
        )
        for group_id, group_rules in rules.items()
    }
    for instance_uuid, group_id in sorted(memberships):
        answer[instance_uuid] += resolved.get(group_id, ())
    return answer


def address_sets(connection: Connection, group_ids: Sequence[str]) -> dict[str, AddressSet]:
    """Each group's address set: the address of every port of every live member. Every
    group asked for is in the answer (a group without members: an empty set, which matches
    nothing)."""
    if not group_ids:
        return {}
    rows = connection.execute(
        _live(select(INSTANCE_SECURITY_GROUPS.c.group_id, PORTS.c.fixed_ip))
        .join(PORTS, PORTS.c.instance_uuid == INSTANCE_SECURITY_GROUPS.c.instance_uuid)
        .where(INSTANCE_SECURITY_GROUPS.c.group_id.in_(sorted(set(group_ids))))
    )
    found: dict[str, set[IPv4Address]] = {g: set() for g in group_ids}
    for group_id, address in rows:
        found[group_id].add(IPv4Address(address))
    return {g: AddressSet(g, tuple(sorted(a))) for g, a in found.items()}


def remote_groups_of_projects(connection: Connection, project_ids: Sequence[str]) -> list[str]:
    """The groups of these projects that some rule names as its remote group: the address
    sets that change when a server of the projects comes or goes (a remote group is always
    of the rule's own project)."""
    if not project_ids:
        return []
    rows = connection.execute(
        select(SECURITY_GROUP_RULES.c.remote_group_id)
        .distinct()
        .join(SECURITY_GROUPS, SECURITY_GROUPS.c.id == SECURITY_GROUP_RULES.c.remote_group_id)
        .where(SECURITY_GROUPS.c.project_id.in_(sorted(set(project_ids))))
    )
    return sorted(g for (g,) in rows)


def hosts_naming_groups(connection: Connection, group_ids: Sequence[str]) -> dict[str, set[str]]:
    """host -> which of these groups the rules of its live instances' ports name as remote
    group: where each group's address set must go when its members change."""
    if not group_ids:
        return {}
    rows = connection.execute(
        _live(
            select(INSTANCES.c.host, SECURITY_GROUP_RULES.c.remote_group_id)
            .distinct()
            .select_from(INSTANCE_SECURITY_GROUPS)
        )
        .join(
            SECURITY_GROUP_RULES,
            SECURITY_GROUP_RULES.c.group_id == INSTANCE_SECURITY_GROUPS.c.group_id,
        )
        .where(
            SECURITY_GROUP_RULES.c.remote_group_id.in_(sorted(set(group_ids))),
            INSTANCES.c.host.is_not(None),
        )
    )
    found: dict[str, set[str]] = {}
    for host, group_id in rows:
        found.setdefault(host, set()).add(group_id)
    return found


def instances_affected_by_groups(connection: Connection, group_ids: Sequence[str]) -> list[str]:
    """The live instances whose rules change when these groups change (their rules or their
    members): the groups' members, and the members of every group with a rule whose remote
    group is one of them."""
    if not group_ids:
        return []
    referring = connection.execute(
        select(SECURITY_GROUP_RULES.c.group_id)
        .distinct()
        .where(SECURITY_GROUP_RULES.c.remote_group_id.in_(list(group_ids)))
    )
    groups = set(group_ids) | {g for (g,) in referring}
    rows = connection.execute(
        _live(select(INSTANCE_SECURITY_GROUPS.c.instance_uuid).distinct()).where(
            INSTANCE_SECURITY_GROUPS.c.group_id.in_(sorted(groups))
        )
    )
    return sorted(u for (u,) in rows)
