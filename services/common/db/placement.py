"""Compute nodes and allocations: the placement model.

A claim is atomic without a lock service: it bumps the node's ``generation`` with
``UPDATE ... WHERE generation = :seen`` and inserts the allocations in the same transaction.
Each node row also carries its usage (the sum of its allocations), changed by the same
transactions that insert and delete allocations, and only here.
Zero rows updated means another claim (another conductor) got there first; the caller reloads
and tries again. Frees never bump the generation: they only make room, so a claim computed
against the older, fuller picture is still safe.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, select, tuple_, update

from services.common.db.bulk import insert_rows
from services.common.db.models import ALLOCATIONS, NODES
from services.common.domain import ZERO, ComputeNodeReport, HostState, Resources
from services.common.records import NodeView as NodeView  # noqa: PLC0414


def upsert_compute_node(
    connection: Connection,
    report: ComputeNodeReport,
    *,
    now: datetime,
) -> int:
    """Register a node or refresh its heartbeat; a capacity change (size or overcommit)
    bumps the generation so that no claim computed against the old capacity can land."""
    row = connection.execute(select(NODES).where(NODES.c.host == report.host)).first()
    values = {
        "hypervisor_hostname": report.hypervisor_hostname,
        "rpc_address": report.rpc_address,
        "hypervisor_type": report.hypervisor_type,
        "cpu_arch": report.cpu_arch,
        "vcpus": report.vcpus,
        "memory_mb": report.memory_mb,
        "local_gb": report.local_gb,
        "availability_zone": report.availability_zone,
        "cpu_allocation_ratio": report.cpu_allocation_ratio,
        "ram_allocation_ratio": report.ram_allocation_ratio,
        "disk_allocation_ratio": report.disk_allocation_ratio,
        "underlay_address": report.underlay_address or None,
        "last_heartbeat_at": now,
    }
    if row is None:
        result = connection.execute(
            NODES.insert().values(
                host=report.host,
                enabled=True,
                disabled_reason=None,
                generation=0,
                created_at=now,
                updated_at=now,
                **values,
            )
        )
        assert result.inserted_primary_key is not None
        node_id: int = result.inserted_primary_key[0]
        return node_id
    m = row._mapping
    capacity_changed = (
        m["vcpus"],
        m["memory_mb"],
        m["local_gb"],
        m["cpu_allocation_ratio"],
        m["ram_allocation_ratio"],
        m["disk_allocation_ratio"],
    ) != (
        report.vcpus,
        report.memory_mb,
        report.local_gb,
        report.cpu_allocation_ratio,
        report.ram_allocation_ratio,
        report.disk_allocation_ratio,
    )
    changes = dict(values)
    if capacity_changed or m["rpc_address"] != report.rpc_address:
        changes["updated_at"] = now
    if capacity_changed:
        changes["generation"] = NODES.c.generation + 1
    connection.execute(update(NODES).where(NODES.c.id == m["id"]).values(**changes))
    node_id = m["id"]
    return node_id


_ALL_NODES = select(NODES)
_NODES_NAMED = select(NODES).where(NODES.c.host.in_(bindparam("hosts", expanding=True)))


def load_host_states(
    connection: Connection,
    *,
    now: datetime,
    service_down_time: timedelta,
    hosts: Sequence[str] | None = None,
) -> list[HostState]:
    """Every node (or those named) with its usage, in one query of one row per node (the
    scheduler's per-batch bulk load)."""
    if hosts is None:
        rows = connection.execute(_ALL_NODES)
    else:
        rows = connection.execute(_NODES_NAMED, {"hosts": list(hosts)})
    oldest_alive = now - service_down_time
    states = []
    for row in rows:
        m = row._mapping
        states.append(
            HostState(
                node_id=m["id"],
                host=m["host"],
                hypervisor_hostname=m["hypervisor_hostname"],
                rpc_address=m["rpc_address"],
                total=Resources(m["vcpus"], m["memory_mb"], m["local_gb"]),
                used=Resources(m["used_vcpus"], m["used_memory_mb"], m["used_disk_gb"]),
                cpu_allocation_ratio=m["cpu_allocation_ratio"],
                ram_allocation_ratio=m["ram_allocation_ratio"],
                disk_allocation_ratio=m["disk_allocation_ratio"],
                generation=m["generation"],
                enabled=m["enabled"],
                is_up=m["last_heartbeat_at"] >= oldest_alive,
                availability_zone=m["availability_zone"],
                instance_count=m["used_instances"],
                failed_builds=m["failed_builds"],
                extra={"hypervisor_type": m["hypervisor_type"], "cpu_arch": m["cpu_arch"]},
            )
        )
    return states


def bump_generation(connection: Connection, host: HostState) -> bool:
    """The claim's guard: move the node to the next generation if it is still at the one this
    host state was read at. False means another claim got there first; nothing was written.
    (No savepoint needed: a losing UPDATE changes no row.)"""
    bumped = connection.execute(
        update(NODES)
        .where(NODES.c.id == host.node_id, NODES.c.generation == host.generation)
        .values(generation=host.generation + 1)
    )
    if bumped.rowcount != 1:
        return False
    host.generation += 1
    return True


_BUMP = (
    update(NODES)
    .where(tuple_(NODES.c.id, NODES.c.generation).in_(bindparam("seen", expanding=True)))
    .values(generation=NODES.c.generation + 1)
    .returning(NODES.c.id)
)


def bump_generations(connection: Connection, hosts: Sequence[HostState]) -> set[int]:
    """``bump_generation`` for many hosts in one statement (one round trip for a whole
    scheduling pass, where one UPDATE per host cost PostgreSQL a round trip each); returns
    the node ids that were still at the generation seen, now moved to the next one."""
    if not hosts:
        return set()
    seen = [(h.node_id, h.generation) for h in hosts]
    bumped = {node_id for (node_id,) in connection.execute(_BUMP, {"seen": seen})}
    for host in hosts:
        if host.node_id in bumped:
            host.generation += 1
    return bumped


# A node's usage moves with its allocations, in the same transaction (sign +1 or -1).
_CHANGE_USAGE = (
    update(NODES)
    .where(NODES.c.id == bindparam("b_node"))
    .values(
        used_vcpus=NODES.c.used_vcpus + bindparam("b_vcpus"),
        used_memory_mb=NODES.c.used_memory_mb + bindparam("b_memory_mb"),
        used_disk_gb=NODES.c.used_disk_gb + bindparam("b_disk_gb"),
        used_instances=NODES.c.used_instances + bindparam("b_instances"),
    )
)


def _change_usage(connection: Connection, held: Iterable[tuple[int, Resources]], sign: int) -> None:
    """Move each node's usage by the (node id, resources) allocations in ``held``: +1 when
    they were inserted, -1 when deleted. One row per node, in node-id order (a stable lock
    order between two conductors; PostgreSQL breaks any deadlock left and the unit of work
    runs again)."""
    totals: dict[int, list[int]] = {}
    for node_id, r in held:
        total = totals.setdefault(node_id, [0, 0, 0, 0])
        total[0] += r.vcpus
        total[1] += r.memory_mb
        total[2] += r.disk_gb
        total[3] += 1
    if totals:
        connection.execute(
            _CHANGE_USAGE,
            [
                {"b_node": node, "b_vcpus": sign * t[0], "b_memory_mb": sign * t[1],
                 "b_disk_gb": sign * t[2], "b_instances": sign * t[3]}
                for node, t in sorted(totals.items())
            ],
        )  # fmt: skip


def insert_allocations(
    connection: Connection, rows: Sequence[tuple[int, str, Resources]], now: datetime
) -> None:
    """(compute node id, instance uuid, resources) rows, in one statement; the nodes' usage
    grows by as much."""
    if not rows:
        return
    insert_rows(
        connection,
        ALLOCATIONS,
        [
            {
                "instance_uuid": uuid,
                "compute_node_id": node_id,
                "vcpus": r.vcpus,
                "memory_mb": r.memory_mb,
                "disk_gb": r.disk_gb,
                "created_at": now,
            }
            for node_id, uuid, r in rows
        ],
    )
    _change_usage(connection, ((node_id, r) for node_id, _, r in rows), +1)


def claim(
    connection: Connection,
    host: HostState,
    requests: Sequence[tuple[str, Resources]],
    *,
    now: datetime,
) -> bool:
    """Allocate ``requests`` (instance uuid, resources) on ``host`` if its generation is still
    the one we saw; False (and nothing written) when another claim won."""
    if not requests:
        return True
    if not bump_generation(connection, host):
        return False
    insert_allocations(connection, [(host.node_id, u, r) for u, r in requests], now)
    return True


_ALLOCATED = select(ALLOCATIONS.c.instance_uuid, ALLOCATIONS.c.compute_node_id).where(
    ALLOCATIONS.c.instance_uuid.in_(bindparam("uuids", expanding=True))
)
# What a free actually deleted (RETURNING): two frees of one instance racing on PostgreSQL
# must not both take its resources off the node.
_FREE = (
    delete(ALLOCATIONS)
    .where(ALLOCATIONS.c.instance_uuid.in_(bindparam("uuids", expanding=True)))
    .returning(
        ALLOCATIONS.c.compute_node_id,
        ALLOCATIONS.c.vcpus,
        ALLOCATIONS.c.memory_mb,
        ALLOCATIONS.c.disk_gb,
    )
)


def allocated_instances(connection: Connection, uuids: Sequence[str]) -> dict[str, int]:
    """instance uuid -> compute node id, for those of ``uuids`` that hold an allocation."""
    if not uuids:
        return {}
    rows = connection.execute(_ALLOCATED, {"uuids": list(uuids)})
    return {uuid: node for uuid, node in rows}


def free_allocations(connection: Connection, uuids: Sequence[str]) -> int:
    """Drop the allocations of ``uuids``; their nodes' usage shrinks by as much."""
    if not uuids:
        return 0
    freed = [
        (node, Resources(vcpus, memory_mb, disk_gb))
        for node, vcpus, memory_mb, disk_gb in connection.execute(_FREE, {"uuids": list(uuids)})
    ]
    _change_usage(connection, freed, -1)
    return len(freed)


def node_usage(connection: Connection, node_id: int) -> Resources:
    row = connection.execute(
        select(NODES.c.used_vcpus, NODES.c.used_memory_mb, NODES.c.used_disk_gb).where(
            NODES.c.id == node_id
        )
    ).first()
    return Resources(int(row[0]), int(row[1]), int(row[2])) if row else ZERO


def note_build_results(
    connection: Connection, *, failed_on: Sequence[str], succeeded_on: Sequence[str]
) -> None:
    """Count failed builds per host (the BuildFailureWeigher's input); a success resets the
    count, as in Nova."""
    for host in sorted(failed_on):  # a stable lock order, as the claims use
        connection.execute(
            update(NODES)
            .where(NODES.c.host == host)
            .values(failed_builds=NODES.c.failed_builds + 1)
        )
    if succeeded_on:
        connection.execute(_RESET_FAILED_BUILDS, {"hosts": sorted(set(succeeded_on))})


_RESET_FAILED_BUILDS = (
    update(NODES)
    .where(NODES.c.host.in_(bindparam("hosts", expanding=True)), NODES.c.failed_builds > 0)
    .values(failed_builds=0)
)


def list_nodes(
    connection: Connection, *, now: datetime, service_down_time: timedelta
) -> list[NodeView]:
    states = {
        s.host: s
        for s in load_host_states(connection, now=now, service_down_time=service_down_time)
    }
    rows = connection.execute(
        select(NODES.c.host, NODES.c.disabled_reason, NODES.c.last_heartbeat_at).order_by(
            NODES.c.host
        )
    )
    return [NodeView(states[h], reason, beat) for h, reason, beat in rows if h in states]


def set_node_status(
    connection: Connection, host: str, *, enabled: bool, reason: str | None, now: datetime
) -> bool:
    result = connection.execute(
        update(NODES)
        .where(NODES.c.host == host)
        .values(enabled=enabled, disabled_reason=None if enabled else reason, updated_at=now)
    )
    return result.rowcount == 1
