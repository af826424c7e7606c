"""External networks, their connections to project networks, and the addresses of their
pools in use (floating addresses and hosts' gateway addresses): one table keyed unique by
(external network, address), allocated under a row lock on the external network as ports'
addresses are under their network's."""

from __future__ import annotations

import logging
import uuid as uuid_module
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network

from sqlalchemy import Connection, RowMapping, and_, delete, func, or_, select, update

from services.common import ipam
from services.common.db.models import (
    EXTERNAL_ADDRESSES,
    EXTERNAL_NETWORKS,
    INSTANCES,
    NETWORKS,
    PORTS,
)
from services.common.domain import VmState
from services.common.external import ExternalAddressKind, ExternalNetwork, FloatingIP

log = logging.getLogger(__name__)

FLOATING = ExternalAddressKind.FLOATING.value
GATEWAY = ExternalAddressKind.GATEWAY.value


@dataclass(frozen=True, slots=True)
class NewExternalNetwork:
    name: str
    cidr: IPv4Network
    gateway: IPv4Address | None
    allocation_pools: tuple[ipam.Pool, ...]
    bridge: str


def _external_from_row(m: RowMapping) -> ExternalNetwork:
    return ExternalNetwork(
        id=m["id"],
        name=m["name"],
        cidr=IPv4Network(m["cidr"]),
        gateway=IPv4Address(m["gateway"]) if m["gateway"] else None,
        allocation_pools=tuple(
            (IPv4Address(first), IPv4Address(last)) for first, last in m["allocation_pools"]
        ),
        bridge=m["bridge"],
        created_at=m["created_at"],
    )


def create_external_network(
    connection: Connection, new: NewExternalNetwork, now: datetime
) -> ExternalNetwork | None:
    """None when an external network of that name exists."""
    if find_external_networks(connection, new.name):
        return None
    external_id = str(uuid_module.uuid4())
    connection.execute(
        EXTERNAL_NETWORKS.insert().values(
            id=external_id,
            name=new.name,
            cidr=str(new.cidr),
            gateway=str(new.gateway) if new.gateway else None,
            allocation_pools=[[str(f), str(last)] for f, last in new.allocation_pools],
            bridge=new.bridge,
            created_at=now,
        )
    )
    return find_external_networks(connection, external_id)[0]


def find_external_networks(connection: Connection, ref: str) -> list[ExternalNetwork]:
    by = or_(EXTERNAL_NETWORKS.c.id == ref, EXTERNAL_NETWORKS.c.name == ref)
    return [_external_from_row(r._mapping)
            for r in connection.execute(select(EXTERNAL_NETWORKS).where(by))]  # fmt: skip


def list_external_networks(connection: Connection) -> list[ExternalNetwork]:
    query = select(EXTERNAL_NETWORKS).order_by(EXTERNAL_NETWORKS.c.created_at)
    return [_external_from_row(r._mapping) for r in connection.execute(query)]


def addresses_in_use(connection: Connection, external_id: str) -> int:
    return int(
        connection.execute(
            select(func.count()).select_from(EXTERNAL_ADDRESSES)
            .where(EXTERNAL_ADDRESSES.c.external_network_id == external_id)
        ).scalar_one()
    )  # fmt: skip


def connected_networks(connection: Connection, external_id: str) -> list[str]:
    rows = connection.execute(
        select(NETWORKS.c.name).where(NETWORKS.c.external_network_id == external_id)
    )
    return [name for (name,) in rows]


def delete_external_network(connection: Connection, external_id: str) -> None:
    connection.execute(delete(EXTERNAL_NETWORKS).where(EXTERNAL_NETWORKS.c.id == external_id))


def lock_external(connection: Connection, external_id: str) -> None:
    """Serialises allocations from one pool (PostgreSQL; SQLite serialises writers)."""
    if connection.dialect.name == "postgresql":
        connection.execute(
            select(EXTERNAL_NETWORKS.c.id)
            .where(EXTERNAL_NETWORKS.c.id == external_id)
            .with_for_update()
        ).all()


def _used(connection: Connection, external_id: str) -> set[IPv4Address]:
    rows = connection.execute(
        select(EXTERNAL_ADDRESSES.c.address)
        .where(EXTERNAL_ADDRESSES.c.external_network_id == external_id)
    )  # fmt: skip
    return {IPv4Address(a) for (a,) in rows}


def take_address(
    connection: Connection,
    external: ExternalNetwork,
    *,
    requested: IPv4Address | None = None,
    field: str = "external_network_id",
) -> IPv4Address:
    """A free address of the pools (the caller holds ``lock_external``)."""
    pool = ipam.AddressPool(
        name=external.name, cidr=external.cidr, gateway=external.gateway,
        pools=external.allocation_pools, probe=ipam.known(_used(connection, external.id)),
    )  # fmt: skip
    return pool.take(requested, field=field)


def set_connection(connection: Connection, network_id: str, external_id: str | None) -> None:
    connection.execute(
        update(NETWORKS).where(NETWORKS.c.id == network_id)
        .values(external_network_id=external_id)
    )  # fmt: skip
    if external_id is None:  # its hosts' gateway addresses go back to the pool
        connection.execute(
            delete(EXTERNAL_ADDRESSES).where(
                EXTERNAL_ADDRESSES.c.kind == GATEWAY, EXTERNAL_ADDRESSES.c.network_id == network_id
            )
        )


def network_connection(connection: Connection, network_id: str) -> str | None:
    found: str | None = connection.execute(
        select(NETWORKS.c.external_network_id).where(NETWORKS.c.id == network_id)
    ).scalar()
    return found


# -- floating addresses ---------------------------------------------------------------------

_FLOATING = (
    select(
        EXTERNAL_ADDRESSES,
        EXTERNAL_NETWORKS.c.name.label("external_name"),
        PORTS.c.instance_uuid,
        PORTS.c.fixed_ip,
    )
    .join(EXTERNAL_NETWORKS, EXTERNAL_NETWORKS.c.id == EXTERNAL_ADDRESSES.c.external_network_id)
    .outerjoin(PORTS, PORTS.c.id == EXTERNAL_ADDRESSES.c.port_id)
    .where(EXTERNAL_ADDRESSES.c.kind == FLOATING)
    .order_by(EXTERNAL_ADDRESSES.c.created_at, EXTERNAL_ADDRESSES.c.id)
)


def _floating_from_row(m: RowMapping) -> FloatingIP:
    return FloatingIP(
        id=m["id"],
        project_id=m["project_id"],
        address=IPv4Address(m["address"]),
        external_network_id=m["external_network_id"],
        external_network_name=m["external_name"],
        created_at=m["created_at"],
        port_id=m["port_id"],
        server_id=m["instance_uuid"],
        fixed_ip=IPv4Address(m["fixed_ip"]) if m["fixed_ip"] else None,
    )


def insert_floating(
    connection: Connection,
    external_id: str,
    address: IPv4Address,
    *,
    project_id: str,
    now: datetime,
) -> str:
    floating_id = str(uuid_module.uuid4())
    connection.execute(
        EXTERNAL_ADDRESSES.insert().values(
            id=floating_id, external_network_id=external_id, address=str(address),
            kind=FLOATING, project_id=project_id, created_at=now,
        )
    )  # fmt: skip
    return floating_id


def find_floating(connection: Connection, ref: str) -> FloatingIP | None:
    query = _FLOATING.where(
        or_(EXTERNAL_ADDRESSES.c.id == ref, EXTERNAL_ADDRESSES.c.address == ref)
    )
    row = connection.execute(query).first()
    return None if row is None else _floating_from_row(row._mapping)


def list_floating(connection: Connection, *, project_id: str | None) -> list[FloatingIP]:
    query = _FLOATING
    if project_id is not None:
        query = query.where(EXTERNAL_ADDRESSES.c.project_id == project_id)
    return [_floating_from_row(r._mapping) for r in connection.execute(query)]


def floating_of_servers(connection: Connection, uuids: Sequence[str]) -> list[FloatingIP]:
    if not uuids:
        return []
    query = _FLOATING.where(PORTS.c.instance_uuid.in_(list(uuids)))
    return [_floating_from_row(r._mapping) for r in connection.execute(query)]


def release_floating(connection: Connection, floating_id: str) -> None:
    connection.execute(delete(EXTERNAL_ADDRESSES).where(EXTERNAL_ADDRESSES.c.id == floating_id))


def set_association(connection: Connection, floating_id: str, port_id: str | None) -> bool:
    """Associate (or, with None, disassociate); False when another port took it first."""
    statement = update(EXTERNAL_ADDRESSES).where(EXTERNAL_ADDRESSES.c.id == floating_id)
    if port_id is not None:
        statement = statement.where(
            or_(EXTERNAL_ADDRESSES.c.port_id.is_(None), EXTERNAL_ADDRESSES.c.port_id == port_id)
        )
    return connection.execute(statement.values(port_id=port_id)).rowcount == 1


def floating_on_port(connection: Connection, port_id: str) -> str | None:
    found: str | None = connection.execute(
        select(EXTERNAL_ADDRESSES.c.address).where(EXTERNAL_ADDRESSES.c.port_id == port_id)
    ).scalar()
    return found


def floating_on_network(connection: Connection, network_id: str) -> list[str]:
    rows = connection.execute(
        select(EXTERNAL_ADDRESSES.c.address)
        .join(PORTS, PORTS.c.id == EXTERNAL_ADDRESSES.c.port_id)
        .where(PORTS.c.network_id == network_id)
    )
    return [a for (a,) in rows]


def live_ports_of(connection: Connection, server_id: str) -> list[RowMapping]:
    rows = connection.execute(
        select(PORTS.c.id, PORTS.c.fixed_ip, PORTS.c.device_index, NETWORKS.c.name,
               NETWORKS.c.external_network_id)
        .join(NETWORKS, NETWORKS.c.id == PORTS.c.network_id)
        .join(INSTANCES, INSTANCES.c.uuid == PORTS.c.instance_uuid)
        .where(PORTS.c.instance_uuid == server_id,
               INSTANCES.c.vm_state != VmState.DELETED.value)
        .order_by(PORTS.c.device_index)
    )  # fmt: skip
    return [r._mapping for r in rows]


# -- hosts' gateway addresses ---------------------------------------------------------------


def settled_gateways(
    connection: Connection, needed: set[tuple[str, str]]
) -> dict[tuple[str, str], IPv4Address] | None:
    """Read only: each needed (host, network) pair's gateway address when every one has
    exactly one and no other pair holds one; None when ``ensure_gateways`` has work to do
    (an address to allocate or to give back), which takes a write transaction."""
    have: dict[tuple[str, str], IPv4Address] = {}
    for host, network, address in connection.execute(_GATEWAYS):
        if (host, network) in have or (host, network) not in needed:
            return None
        have[(host, network)] = IPv4Address(address)
    return have if len(have) == len(needed) else None


_GATEWAYS = select(
    EXTERNAL_ADDRESSES.c.host, EXTERNAL_ADDRESSES.c.network_id, EXTERNAL_ADDRESSES.c.address
).where(EXTERNAL_ADDRESSES.c.kind == GATEWAY)


def ensure_gateways(
    connection: Connection, needed: set[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], IPv4Address]:
    """Each (host, network) pair of a connected network with ports on the host gets one
    address of the external pool (its SNAT source), kept while needed; pairs no longer
    needed give theirs back. A pool without a free address leaves that pair without an
    uplink (logged): floating addresses and other hosts are unaffected."""
    rows = connection.execute(
        select(EXTERNAL_ADDRESSES.c.id, EXTERNAL_ADDRESSES.c.host,
               EXTERNAL_ADDRESSES.c.network_id, EXTERNAL_ADDRESSES.c.address)
        .where(EXTERNAL_ADDRESSES.c.kind == GATEWAY)
    ).all()  # fmt: skip
    have: dict[tuple[str, str], tuple[str, IPv4Address]] = {}
    stale = []
    for row_id, host, network, address in sorted(rows, key=lambda r: (r[1], r[2], r[3])):
        if (host, network) in have:  # two conductors raced to add one: keep the first
            stale.append(row_id)
        else:
            have[(host, network)] = (row_id, IPv4Address(address))
    stale += [row_id for pair, (row_id, _) in have.items() if pair not in needed]
    if stale:
        connection.execute(delete(EXTERNAL_ADDRESSES).where(EXTERNAL_ADDRESSES.c.id.in_(stale)))
    result = {pair: address for pair, (_, address) in have.items() if pair in needed}
    missing = sorted(needed - set(result))
    if not missing:
        return result
    externals = dict(
        connection.execute(  # type: ignore[arg-type]
            select(NETWORKS.c.id, NETWORKS.c.external_network_id).where(
                NETWORKS.c.id.in_(sorted({n for _, n in missing}))
            )
        ).all()
    )
    for external_id in sorted({e for e in externals.values() if e is not None}):
        lock_external(connection, external_id)  # in id order: no deadlock between conductors
    # another conductor may have added some while this one waited for the locks
    added = {
        (host, network): IPv4Address(address)
        for host, network, address in connection.execute(
            select(EXTERNAL_ADDRESSES.c.host, EXTERNAL_ADDRESSES.c.network_id,
                   EXTERNAL_ADDRESSES.c.address)
            .where(EXTERNAL_ADDRESSES.c.kind == GATEWAY)
        )
    }  # fmt: skip
    for host, network_id in missing:
        external_id = externals.get(network_id)
        if external_id is None:
            continue
        if (host, network_id) in added:
            result[(host, network_id)] = added[(host, network_id)]
            continue
        (external,) = find_external_networks(connection, external_id)
        try:
            address = take_address(connection, external)
        except ipam.NetworkFull:
            log.warning("external network %s has no address left for host %s's gateway",
                        external.name, host)  # fmt: skip
            continue
        connection.execute(
            EXTERNAL_ADDRESSES.insert().values(
                id=str(uuid_module.uuid4()), external_network_id=external_id,
                address=str(address), kind=GATEWAY, network_id=network_id, host=host,
                created_at=now,
            )
        )  # fmt: skip
        result[(host, network_id)] = address
    return result


_BOUND_FLOATING = (
    select(
        INSTANCES.c.host,
        NETWORKS.c.segmentation_id,
        EXTERNAL_ADDRESSES.c.address,
        PORTS.c.fixed_ip,
        PORTS.c.id,
    )
    .select_from(
        EXTERNAL_ADDRESSES.join(PORTS, PORTS.c.id == EXTERNAL_ADDRESSES.c.port_id)
        .join(INSTANCES, INSTANCES.c.uuid == PORTS.c.instance_uuid)
        .join(NETWORKS, and_(NETWORKS.c.id == PORTS.c.network_id,
                             NETWORKS.c.external_network_id
                             == EXTERNAL_ADDRESSES.c.external_network_id))
    )
    .where(INSTANCES.c.vm_state != VmState.DELETED.value, INSTANCES.c.host.is_not(None))
)  # fmt: skip


def bound_floating(connection: Connection) -> list[tuple[str, int, str, str, str]]:
    """(host, VNI, floating address, fixed address, port id) of every association."""
    return [tuple(r) for r in connection.execute(_BOUND_FLOATING)]  # type: ignore[misc]
