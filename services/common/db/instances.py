"""Instances and their faults: bulk inserts, bulk state changes, and the reads the API serves.

Every write here takes a list so that callers batch: one statement (executemany) per kind of
change, whatever the number of instances.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, RowMapping, and_, bindparam, func, or_, select, update

from services.common.db import networks as network_repo
from services.common.db import security_groups as security_group_repo
from services.common.db.bulk import insert_rows
from services.common.db.models import FAULTS, INSTANCE_TAGS, INSTANCES
from services.common.domain import (
    Fault,
    Flavor,
    HostInstance,
    Instance,
    PowerState,
    Resources,
    TaskState,
    VmState,
)
from services.common.networking import AddressSet, PortSpec, referenced_groups, sets_for
from services.common.records import Placement as Placement  # noqa: PLC0414
from services.common.request_spec import StoredSpec

# Re-exported (the build path names it here); it is defined with the ports use cases see.
from services.common.stores import FaultRecord as FaultRecord  # noqa: PLC0414

FAULT_MESSAGE_MAX = 255

# A delete in progress wins over every late report of a build.
NOT_DELETING = or_(
    INSTANCES.c.task_state.is_(None), INSTANCES.c.task_state != TaskState.DELETING.value
)


def ephemeral_from_json(block_devices: Sequence[Mapping[str, Any]] | None) -> tuple[int, ...]:
    """The instances table's ``block_devices`` column (``[{"size_gb": n}, ...]``, kept as it
    is) as disk sizes: read once, by the store."""
    return tuple(int(d.get("size_gb", 0)) for d in block_devices or ())


def ephemeral_to_json(ephemeral_gb: Sequence[int]) -> list[dict[str, int]]:
    return [{"size_gb": size} for size in ephemeral_gb]


def instance_from_row(
    m: RowMapping,
    fault: Fault | None = None,
    *,
    tags: tuple[str, ...] = (),
    ports: tuple[PortSpec, ...] = (),
    address_sets: tuple[AddressSet, ...] = (),
) -> Instance:
    return Instance(
        uuid=m["uuid"],
        id=m["id"],
        display_name=m["display_name"],
        project_id=m["project_id"],
        flavor=Flavor(m["flavor_id"], m["flavor_name"], m["vcpus"], m["memory_mb"], m["root_gb"]),
        image_id=m["image_id"],
        reservation_id=m["reservation_id"],
        vm_state=VmState(m["vm_state"]),
        task_state=TaskState(m["task_state"]) if m["task_state"] else None,
        power_state=PowerState(m["power_state"]),
        host=m["host"],
        node=m["node"],
        metadata=dict(m["server_metadata"] or {}),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        launched_at=m["launched_at"],
        fault=fault,
        request_id=m["request_id"],
        availability_zone=m["availability_zone"],
        request_spec=StoredSpec.from_json(m["request_spec"]),
        description=m["description"],
        key_name=m["key_name"],
        key_data=m["key_data"],
        user_data=m["user_data"],
        security_groups=tuple(m["security_groups"] or ()),
        networks=tuple(m["networks"] or ()),
        ephemeral_gb=ephemeral_from_json(m["block_devices"]),
        config_drive=bool(m["config_drive"]),
        tags=tags,
        ports=ports,
        address_sets=address_sets,
        guest_ready_at=m.get("guest_ready_at"),
    )


def insert_instances(connection: Connection, instances: Sequence[Instance]) -> None:
    """One multi-row INSERT for a whole batch of creates. The servers of one create share
    their spec, metadata, groups and timestamp objects; ``insert_rows`` encodes each once."""
    if not instances:
        return
    specs: dict[int, dict[str, Any]] = {}
    devices: dict[int, Any] = {}
    insert_rows(
        connection,
        INSTANCES,
        [
            {
                "uuid": i.uuid,
                "display_name": i.display_name,
                "project_id": i.project_id,
                "flavor_id": i.flavor.id,
                "flavor_name": i.flavor.name,
                "vcpus": i.flavor.vcpus,
                "memory_mb": i.flavor.memory_mb,
                "root_gb": i.flavor.root_gb,
                "image_id": i.image_id,
                "reservation_id": i.reservation_id,
                "vm_state": i.vm_state.value,
                "task_state": i.task_state.value if i.task_state else None,
                "power_state": int(i.power_state),
                "host": i.host,
                "node": i.node,
                "server_metadata": i.metadata,
                "request_id": i.request_id,
                "availability_zone": i.availability_zone,
                "request_spec": _once(specs, i.request_spec, i.request_spec.to_json),
                "description": i.description,
                "key_name": i.key_name,
                "key_data": i.key_data,
                "user_data": i.user_data,
                "security_groups": i.security_groups,
                "networks": i.networks,
                "block_devices": _once(
                    devices, i.ephemeral_gb, partial(ephemeral_to_json, i.ephemeral_gb)
                ),
                "config_drive": i.config_drive,
                "created_at": i.created_at,
                "updated_at": None,
                "launched_at": None,
                "terminated_at": None,
            }
            for i in instances
        ],
    )
    tags = [{"instance_uuid": i.uuid, "tag": t} for i in instances for t in i.tags]
    insert_rows(connection, INSTANCE_TAGS, tags)


def _once(cache: dict[int, Any], shared: object, convert: Callable[[], Any]) -> Any:
    """``convert()`` once per shared object (keyed by identity: the objects outlive the
    call), so that rows of one create carry one encoded value."""
    key = id(shared)
    if key not in cache:
        cache[key] = convert()
    return cache[key]


def _tags(connection: Connection, uuids: Sequence[str]) -> dict[str, tuple[str, ...]]:
    if not uuids:
        return {}
    found: dict[str, list[str]] = {}
    rows = connection.execute(
        select(INSTANCE_TAGS.c.instance_uuid, INSTANCE_TAGS.c.tag)
        .where(INSTANCE_TAGS.c.instance_uuid.in_(list(uuids)))
        .order_by(INSTANCE_TAGS.c.tag)
    )
    for uuid, tag in rows:
        found.setdefault(uuid, []).append(tag)
    return {u: tuple(t) for u, t in found.items()}


def _latest_faults(connection: Connection, uuids: Iterable[str]) -> dict[str, Fault]:
    wanted = list(uuids)
    if not wanted:
        return {}
    newest = (
        select(FAULTS.c.instance_uuid, func.max(FAULTS.c.id).label("id"))
        .where(FAULTS.c.instance_uuid.in_(wanted))
        .group_by(FAULTS.c.instance_uuid)
        .subquery()
    )
    rows = connection.execute(select(FAULTS).join(newest, FAULTS.c.id == newest.c.id))
    return {
        r.instance_uuid: Fault(
            code=r.code, message=r.message, created_at=r.created_at, details=r.details
        )
        for r in rows
    }


def with_details(connection: Connection, rows: Sequence[RowMapping]) -> list[Instance]:
    """Rows as instances with their latest fault, tags and ports (three queries per page)."""
    faults = _latest_faults(
        connection, (m["uuid"] for m in rows if m["vm_state"] == VmState.ERROR.value)
    )
    uuids = [m["uuid"] for m in rows]
    tags = _tags(connection, uuids)
    ports = network_repo.ports_of(connection, uuids)
    return [
        instance_from_row(
            m, faults.get(m["uuid"]), tags=tags.get(m["uuid"], ()), ports=ports.get(m["uuid"], ())
        )
        for m in rows
    ]


def get_instance(connection: Connection, uuid: str, *, project_id: str | None) -> Instance | None:
    """One instance; ``project_id=None`` means any project (admin and internal callers)."""
    query = select(INSTANCES).where(INSTANCES.c.uuid == uuid)
    if project_id is not None:
        query = query.where(INSTANCES.c.project_id == project_id)
    row = connection.execute(query).first()
    return None if row is None else with_details(connection, [row._mapping])[0]


# The conductor's per-pass statements, built once: building a statement and its cache key
# cost more than running it on SQLite (profiled).
_BY_UUIDS = select(INSTANCES).where(INSTANCES.c.uuid.in_(bindparam("uuids", expanding=True)))
_BY_UUIDS_FOR_UPDATE = _BY_UUIDS.with_for_update()
_STILL_SCHEDULING = (
    select(INSTANCES.c.uuid)
    .where(
        INSTANCES.c.uuid.in_(bindparam("uuids", expanding=True)),
        INSTANCES.c.vm_state == VmState.BUILDING.value,
        INSTANCES.c.task_state == TaskState.SCHEDULING.value,
    )
    .with_for_update()
)
_MARK_PLACED = (
    update(INSTANCES)
    .where(
        and_(
            INSTANCES.c.uuid == bindparam("b_uuid"),
            INSTANCES.c.vm_state == VmState.BUILDING.value,
            INSTANCES.c.task_state == TaskState.SCHEDULING.value,
        )
    )
    .values(
        host=bindparam("b_host"),
        node=bindparam("b_node"),
        request_spec=bindparam("b_spec"),
        task_state=None,
        updated_at=bindparam("b_now"),
    )
)


def load_instances(
    connection: Connection, uuids: Sequence[str], *, for_update: bool = False
) -> list[Instance]:
    """Many instances by uuid in one query (the conductor's per-batch load). ``for_update``
    locks the rows on PostgreSQL until commit, so a concurrent delete waits for the placement
    (SQLite's BEGIN IMMEDIATE already serialises writers)."""
    if not uuids:
        return []
    query = _BY_UUIDS_FOR_UPDATE if for_update else _BY_UUIDS
    rows = [r._mapping for r in connection.execute(query, {"uuids": list(uuids)})]
    ports, sets = ports_with_rules(connection, [m["uuid"] for m in rows])
    return [
        instance_from_row(m, ports=ports.get(m["uuid"], ()), address_sets=sets.get(m["uuid"], ()))
        for m in rows
    ]


_HOST_HISTORY = select(INSTANCES.c.uuid, INSTANCES.c.host, INSTANCES.c.request_spec).where(
    INSTANCES.c.uuid.in_(bindparam("uuids", expanding=True))
)


def host_history(connection: Connection, uuids: Sequence[str]) -> dict[str, frozenset[str]]:
    """Per known instance, the hosts it is or was placed on (its host and the hosts its
    builds were tried on): two columns, no ports or rules (a compute's every report is
    checked against this)."""
    if not uuids:
        return {}
    return {
        uuid: frozenset((host,) if host else ()) | set(StoredSpec.from_json(spec).tried_hosts)
        for uuid, host, spec in connection.execute(_HOST_HISTORY, {"uuids": list(uuids)})
    }


def ports_with_rules(
    connection: Connection, uuids: Sequence[str]
) -> tuple[dict[str, tuple[PortSpec, ...]], dict[str, tuple[AddressSet, ...]]]:
    """The instances' ports, each carrying its security groups' rules (what a host's
    datapath enforces), and per instance the address sets those rules name; instances
    without ports cost no rule query. A group's set is read once and shared."""
    ports = network_repo.ports_of(connection, uuids)
    rules = security_group_repo.rules_for_instances(connection, list(ports))
    with_rules = {
        uuid: tuple(p.with_rules(rules.get(uuid, ())) for p in instance_ports)
        for uuid, instance_ports in ports.items()
    }
    named = {g for instance_ports in with_rules.values() for g in referenced_groups(instance_ports)}
    known = security_group_repo.address_sets(connection, sorted(named))
    return with_rules, {uuid: sets_for(p, known) for uuid, p in with_rules.items()}


def still_scheduling(connection: Connection, uuids: Sequence[str]) -> set[str]:
    """Those of ``uuids`` still building and waiting for a host, their rows locked on
    PostgreSQL until commit (as ``load_instances(for_update=True)``)."""
    if not uuids:
        return set()
    return {uuid for (uuid,) in connection.execute(_STILL_SCHEDULING, {"uuids": list(uuids)})}


def mark_placed(connection: Connection, placements: Sequence[Placement], now: datetime) -> int:
    """Record the chosen host; only instances still waiting for one move (idempotent)."""
    if not placements:
        return 0
    result = connection.execute(
        _MARK_PLACED,
        [
            {
                "b_uuid": p.uuid,
                "b_host": p.host,
                "b_node": p.node,
                "b_spec": p.request_spec.to_json() if p.request_spec is not None else None,
                "b_now": now,
            }
            for p in placements
        ],
    )
    return result.rowcount


def move_build(
    connection: Connection,
    uuid: str,
    *,
    host: str,
    node: str,
    spec: StoredSpec,
    now: datetime,
) -> None:
    """A rescheduled build: same instance, next host (still building)."""
    connection.execute(
        update(INSTANCES)
        .where(INSTANCES.c.uuid == uuid, INSTANCES.c.vm_state == VmState.BUILDING.value)
        .values(host=host, node=node, request_spec=spec.to_json(), task_state=None, updated_at=now)
    )


def set_task_state(
    connection: Connection,
    uuids: Sequence[str],
    task_state: TaskState | None,
    *,
    now: datetime,
    expected_vm_state: VmState = VmState.BUILDING,
) -> None:
    if not uuids:
        return
    connection.execute(
        update(INSTANCES)
        .where(
            INSTANCES.c.uuid.in_(list(uuids)),
            INSTANCES.c.vm_state == expected_vm_state.value,
            NOT_DELETING,
        )
        .values(task_state=task_state.value if task_state else None, updated_at=now)
    )


# Built once: constructing a statement and its cache key cost more than running it on
# SQLite (a quarter of an event batch's time, profiled).
_MARK_ACTIVE = (
    update(INSTANCES)
    .where(
        and_(
            INSTANCES.c.uuid == bindparam("b_uuid"),
            INSTANCES.c.vm_state == VmState.BUILDING.value,
            NOT_DELETING,
        )
    )
    .values(
        vm_state=VmState.ACTIVE.value,
        task_state=None,
        power_state=int(PowerState.RUNNING),
        host=bindparam("b_host"),
        launched_at=bindparam("b_launched"),
        updated_at=bindparam("b_now"),
    )
)


def mark_active(
    connection: Connection, launched: Sequence[tuple[str, str, datetime]], now: datetime
) -> None:
    """(uuid, host, launched_at) for each instance whose domain runs."""
    if not launched:
        return
    connection.execute(
        _MARK_ACTIVE,
        [{"b_uuid": u, "b_host": h, "b_launched": at, "b_now": now} for u, h, at in launched],
    )


STOPPED_POWER_STATES = (int(PowerState.SHUTDOWN), int(PowerState.CRASHED))


def set_power_states(
    connection: Connection, states: Sequence[tuple[str, PowerState]], now: datetime
) -> None:
    """Record what the hypervisor reports; an ACTIVE instance found shut off becomes STOPPED
    (the outcome of Nova's ``_sync_power_states``)."""
    if not states:
        return
    connection.execute(
        update(INSTANCES)
        .where(INSTANCES.c.uuid == bindparam("b_uuid"), NOT_DELETING)
        .values(power_state=bindparam("b_power"), updated_at=now),
        [{"b_uuid": u, "b_power": int(p)} for u, p in states],
    )
    connection.execute(
        update(INSTANCES)
        .where(
            INSTANCES.c.uuid.in_([u for u, _ in states]),
            INSTANCES.c.vm_state == VmState.ACTIVE.value,
            INSTANCES.c.power_state.in_(STOPPED_POWER_STATES),
            INSTANCES.c.task_state.is_(None),
        )
        .values(vm_state=VmState.STOPPED.value, updated_at=now)
    )


def mark_error(connection: Connection, faults: Sequence[FaultRecord], now: datetime) -> None:
    """ERROR plus a fault row saying why, for every instance given."""
    if not faults:
        return
    connection.execute(
        update(INSTANCES)
        .where(INSTANCES.c.uuid == bindparam("b_uuid"))
        .values(vm_state=VmState.ERROR.value, task_state=None, updated_at=now),
        [{"b_uuid": f.uuid} for f in faults],
    )
    connection.execute(
        FAULTS.insert(),
        [
            {
                "instance_uuid": f.uuid,
                "code": f.code,
                "message": f.message[:FAULT_MESSAGE_MAX],
                "details": f.details,
                "host": f.host,
                "created_at": now,
            }
            for f in faults
        ],
    )


def mark_deleting(
    connection: Connection, uuid: str, *, project_id: str | None, now: datetime
) -> Instance | None:
    """Record the intent to delete (task_state ``deleting``); None if no such live instance."""
    query = update(INSTANCES).where(
        INSTANCES.c.uuid == uuid, INSTANCES.c.vm_state != VmState.DELETED.value
    )
    if project_id is not None:
        query = query.where(INSTANCES.c.project_id == project_id)
    result = connection.execute(query.values(task_state=TaskState.DELETING.value, updated_at=now))
    if result.rowcount == 0:
        return None
    return get_instance(connection, uuid, project_id=project_id)


def mark_deleted(connection: Connection, uuids: Sequence[str], now: datetime) -> None:
    """DELETED, and the ports (with their addresses) and security-group memberships released
    in the same transaction: every path that ends a server comes through here, so none can
    leak an address."""
    if not uuids:
        return
    network_repo.release_ports(connection, uuids)
    connection.execute(
        update(INSTANCES)
        .where(INSTANCES.c.uuid.in_(list(uuids)), INSTANCES.c.vm_state != VmState.DELETED.value)
        .values(
            vm_state=VmState.DELETED.value,
            task_state=None,
            power_state=int(PowerState.NOSTATE),
            terminated_at=now,
            updated_at=now,
        )
    )
    # After the update, which waits for the row lock that AddServerSecurityGroup holds.
    security_group_repo.release_instances(connection, uuids)


def host_instances(connection: Connection, host: str) -> list[HostInstance]:
    """Every live instance the database places on ``host``, with its ports."""
    result = connection.execute(
        select(
            INSTANCES.c.uuid,
            INSTANCES.c.vm_state,
            INSTANCES.c.task_state,
            INSTANCES.c.power_state,
            INSTANCES.c.vcpus,
            INSTANCES.c.memory_mb,
            INSTANCES.c.root_gb,
            INSTANCES.c.block_devices,
        ).where(INSTANCES.c.host == host, INSTANCES.c.vm_state != VmState.DELETED.value)
    )
    rows = list(result)
    ports, sets = ports_with_rules(connection, [r.uuid for r in rows])
    return [
        HostInstance(
            uuid=r.uuid,
            vm_state=VmState(r.vm_state),
            task_state=TaskState(r.task_state) if r.task_state else None,
            power_state=PowerState(r.power_state),
            resources=Resources(
                r.vcpus, r.memory_mb, r.root_gb + sum(ephemeral_from_json(r.block_devices))
            ),
            ports=ports.get(r.uuid, ()),
            address_sets=sets.get(r.uuid, ()),
        )
        for r in rows
    ]


def oldest_building(connection: Connection) -> datetime | None:
    """When the oldest instance still building was created (None: none is)."""
    query = select(func.min(INSTANCES.c.created_at)).where(
        INSTANCES.c.vm_state == VmState.BUILDING.value
    )
    value: datetime | None = connection.execute(query).scalar()
    return value


def count_by_state(connection: Connection) -> dict[str, int]:
    rows = connection.execute(
        select(INSTANCES.c.vm_state, func.count()).group_by(INSTANCES.c.vm_state)
    )
    return {state: count for state, count in rows}


POWER_TASKS = (
    TaskState.POWERING_OFF.value,
    TaskState.POWERING_ON.value,
    TaskState.REBOOTING.value,
    TaskState.REBOOTING_HARD.value,
)


def start_power_action(
    connection: Connection,
    uuid: str,
    *,
    project_id: str | None,
    allowed: Sequence[VmState],
    task: TaskState,
    now: datetime,
) -> Instance | None:
    """Set ``task`` if the instance is in one of ``allowed`` with no task running; None if
    not (the caller reports why from the current state)."""
    query = update(INSTANCES).where(
        INSTANCES.c.uuid == uuid,
        INSTANCES.c.vm_state.in_([s.value for s in allowed]),
        INSTANCES.c.task_state.is_(None),
    )
    if project_id is not None:
        query = query.where(INSTANCES.c.project_id == project_id)
    if connection.execute(query.values(task_state=task.value, updated_at=now)).rowcount != 1:
        return None
    return get_instance(connection, uuid, project_id=project_id)


def settle_power_action(
    connection: Connection,
    uuids: Sequence[str],
    *,
    vm_state: VmState | None,
    power: PowerState | None,
    now: datetime,
) -> None:
    """End a power task: the new states when it succeeded (None: leave them, it failed)."""
    values: dict[str, Any] = {"task_state": None, "updated_at": now}
    if vm_state is not None:
        values["vm_state"] = vm_state.value
    if power is not None:
        values["power_state"] = int(power)
    connection.execute(
        update(INSTANCES)
        .where(INSTANCES.c.uuid.in_(list(uuids)), INSTANCES.c.task_state.in_(POWER_TASKS))
        .values(**values)
    )
