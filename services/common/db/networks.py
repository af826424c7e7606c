"""Networks and ports: the rows behind IPAM, ``Server.addresses`` and each host's datapath."""

from __future__ import annotations

import uuid as uuid_module
from collections.abc import Sequence
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from services.common.db.bulk import insert_rows
from services.common.db.models import EXTERNAL_ADDRESSES, NETWORKS, PORTS
from services.common.networking import Network, NetworkSpec, PortSpec, SubnetSpec
from services.common.records import NewNetwork as NewNetwork  # noqa: PLC0414
from services.common.records import NewPort as NewPort  # noqa: PLC0414

# VNIs are 24 bits; 0 is reserved.
MAX_SEGMENTATION_ID = 2**24 - 1
_VNI_ATTEMPTS = 20


def network_from_row(m: RowMapping) -> Network:
    return Network(
        id=m["id"],
        project_id=m["project_id"],
        name=m["name"],
        cidr=IPv4Network(m["cidr"]),
        gateway=IPv4Address(m["gateway"]) if m["gateway"] else None,
        dns_servers=tuple(IPv4Address(a) for a in m["dns_servers"] or ()),
        allocation_pools=tuple(
            (IPv4Address(first), IPv4Address(last)) for first, last in m["allocation_pools"] or ()
        ),
        shared=bool(m["shared"]),
        is_default=bool(m["is_default"]),
        segmentation_id=m["segmentation_id"],
        mtu=m["mtu"],
        created_at=m["created_at"],
        external_network_id=m.get("external_network_id"),
    )


def _insert_ignoring_conflicts(connection: Connection, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING; True when the row went in. On PostgreSQL a racing
    insert of the same key waits for the other transaction and then does nothing."""
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(NETWORKS).values(**values).on_conflict_do_nothing().returning(NETWORKS.c.id)
    )
    # RETURNING, not rowcount: psycopg reports -1 for this statement.
    return connection.execute(statement).first() is not None


def create_network(connection: Connection, new: NewNetwork, now: datetime) -> Network | None:
    """The new network, or None when the project has one of that name. The VNI is the next
    free one; a concurrent create that takes it first makes this one try the next."""
    network_id = str(uuid_module.uuid4())
    for _ in range(_VNI_ATTEMPTS):
        highest = connection.execute(select(func.max(NETWORKS.c.segmentation_id))).scalar()
        vni = (highest or 0) + 1
        if vni > MAX_SEGMENTATION_ID:
            raise RuntimeError("no free segmentation id")
        values = {
            "id": network_id,
            "project_id": new.project_id,
            "name": new.name,
            "cidr": str(new.cidr),
            "gateway": str(new.gateway) if new.gateway else None,
            "dns_servers": [str(a) for a in new.dns_servers],
            "allocation_pools": [[str(f), str(last)] for f, last in new.allocation_pools],
            "shared": new.shared,
            "is_default": new.is_default,
            "segmentation_id": vni,
            "mtu": new.mtu,
            "created_at": now,
        }
        if _insert_ignoring_conflicts(connection, values):
            return get_network(connection, network_id)
        if _by_name(connection, new.project_id, new.name) is not None:
            return None
    raise RuntimeError("could not allocate a segmentation id")


def get_network(connection: Connection, network_id: str) -> Network | None:
    row = connection.execute(select(NETWORKS).where(NETWORKS.c.id == network_id)).first()
    return None if row is None else network_from_row(row._mapping)


def _by_name(connection: Connection, project_id: str, name: str) -> Network | None:
    row = connection.execute(
        select(NETWORKS).where(NETWORKS.c.project_id == project_id, NETWORKS.c.name == name)
    ).first()
    return None if row is None else network_from_row(row._mapping)


def default_network(connection: Connection, project_id: str) -> Network | None:
    row = connection.execute(
        select(NETWORKS).where(NETWORKS.c.project_id == project_id, NETWORKS.c.is_default)
    ).first()
    return None if row is None else network_from_row(row._mapping)


def find_networks(connection: Connection, ref: str, *, project_id: str | None) -> list[Network]:
    """Networks with this id or name that the project may use: its own and shared ones
    (``project_id=None``: any, for admins). More than one means the name is ambiguous."""
    query = select(NETWORKS).where(or_(NETWORKS.c.id == ref, NETWORKS.c.name == ref))
    if project_id is not None:
        query = query.where(or_(NETWORKS.c.project_id == project_id, NETWORKS.c.shared))
    found = [network_from_row(r._mapping) for r in connection.execute(query)]
    by_id = [n for n in found if n.id == ref]
    if by_id:
        return by_id
    # A name of one's own wins over a shared network of another project with the same name.
    own = [n for n in found if n.project_id == project_id]
    return own or found


def list_networks(connection: Connection, *, project_id: str | None) -> list[Network]:
    query = select(NETWORKS).order_by(NETWORKS.c.created_at, NETWORKS.c.id)
    if project_id is not None:
        query = query.where(or_(NETWORKS.c.project_id == project_id, NETWORKS.c.shared))
    return [network_from_row(r._mapping) for r in connection.execute(query)]


def project_cidrs(connection: Connection, project_id: str) -> list[tuple[str, IPv4Network]]:
    rows = connection.execute(
        select(NETWORKS.c.name, NETWORKS.c.cidr).where(NETWORKS.c.project_id == project_id)
    )
    return [(name, IPv4Network(cidr)) for name, cidr in rows]


def ports_on(connection: Connection, network_id: str) -> int:
    return int(
        connection.execute(
            select(func.count()).select_from(PORTS).where(PORTS.c.network_id == network_id)
        ).scalar_one()
    )


def delete_network(connection: Connection, network_id: str) -> bool:
    return connection.execute(delete(NETWORKS).where(NETWORKS.c.id == network_id)).rowcount == 1


def lock_networks(connection: Connection, network_ids: Sequence[str]) -> None:
    """Row locks (PostgreSQL) that serialise allocations per network until commit, taken in
    id order so that two transactions locking several networks cannot deadlock. SQLite's
    BEGIN IMMEDIATE serialises writers already."""
    if connection.dialect.name != "postgresql" or not network_ids:
        return
    connection.execute(
        select(NETWORKS.c.id)
        .where(NETWORKS.c.id.in_(sorted(set(network_ids))))
        .order_by(NETWORKS.c.id)
        .with_for_update()
    ).all()


_ADDRESSES_IN_USE = select(PORTS.c.fixed_ip).where(
    PORTS.c.network_id == bindparam("network"),
    PORTS.c.fixed_ip.in_(bindparam("addresses", expanding=True)),
)


def addresses_in_use(
    connection: Connection, network_id: str, addresses: Sequence[IPv4Address]
) -> set[IPv4Address]:
    """Those of ``addresses`` that a port of the network holds: one query on the unique
    (network, address) key, whatever the network holds besides (IPAM asks about the
    candidates it would hand out, not for every used address)."""
    if not addresses:
        return set()
    rows = connection.execute(
        _ADDRESSES_IN_USE, {"network": network_id, "addresses": [str(a) for a in addresses]}
    ).scalars()
    return {IPv4Address(a) for a in rows}


def insert_ports(connection: Connection, ports: Sequence[NewPort], now: datetime) -> None:
    if not ports:
        return
    insert_rows(
        connection,
        PORTS,
        [
            {
                "id": str(uuid_module.uuid4()),
                "instance_uuid": p.instance_uuid,
                "network_id": p.network_id,
                "device_index": p.device_index,
                "mac": p.mac,
                "fixed_ip": str(p.fixed_ip),
                "created_at": now,
            }
            for p in ports
        ],
    )


_PORTS_OF = (
    select(
        PORTS,
        NETWORKS.c.name.label("network_name"),
        NETWORKS.c.cidr,
        NETWORKS.c.gateway,
        NETWORKS.c.dns_servers,
        NETWORKS.c.segmentation_id,
        NETWORKS.c.mtu,
        EXTERNAL_ADDRESSES.c.address.label("floating_ip"),
    )
    .join(NETWORKS, NETWORKS.c.id == PORTS.c.network_id)
    # a port's floating address (at most one: port_id is unique there)
    .outerjoin(EXTERNAL_ADDRESSES, EXTERNAL_ADDRESSES.c.port_id == PORTS.c.id)
    .where(PORTS.c.instance_uuid.in_(bindparam("uuids", expanding=True)))
    .order_by(PORTS.c.instance_uuid, PORTS.c.device_index)
)


def ports_of(connection: Connection, uuids: Sequence[str]) -> dict[str, tuple[PortSpec, ...]]:
    """Every port of these instances, with its network, in device order (one query)."""
    if not uuids:
        return {}
    found: dict[str, list[PortSpec]] = {}
    # a page's ports share a few networks: each is parsed once (parsing the addresses of
    # every port's network again was a third of a 1,000-server ListServers, profiled)
    networks: dict[str, NetworkSpec] = {}
    for row in connection.execute(_PORTS_OF, {"uuids": list(uuids)}):
        m = row._mapping
        found.setdefault(m["instance_uuid"], []).append(port_from_row(m, networks))
    return {u: tuple(p) for u, p in found.items()}


def _network_spec(m: RowMapping) -> NetworkSpec:
    return NetworkSpec(
        network_id=m["network_id"],
        name=m["network_name"],
        segmentation_id=m["segmentation_id"],
        subnet=SubnetSpec(
            IPv4Network(m["cidr"]),
            IPv4Address(m["gateway"]) if m["gateway"] else None,
            tuple(IPv4Address(a) for a in m["dns_servers"] or ()),
        ),
        mtu=m["mtu"],
    )


def port_from_row(m: RowMapping, networks: dict[str, NetworkSpec] | None = None) -> PortSpec:
    """``networks``: the networks parsed so far (by id), shared over one query's rows."""
    network = networks.get(m["network_id"]) if networks is not None else None
    if network is None:
        network = _network_spec(m)
        if networks is not None:
            networks[m["network_id"]] = network
    return PortSpec(
        port_id=m["id"],
        instance_uuid=m["instance_uuid"],
        network=network,
        mac=m["mac"],
        fixed_ip=IPv4Address(m["fixed_ip"]),
        device_index=m["device_index"],
        floating_ip=IPv4Address(m["floating_ip"]) if m.get("floating_ip") else None,
    )


def release_ports(connection: Connection, uuids: Sequence[str]) -> int:
    """Free the ports (and so the addresses) of these instances; returns how many went."""
    if not uuids:
        return 0
    return connection.execute(delete(PORTS).where(PORTS.c.instance_uuid.in_(list(uuids)))).rowcount


def usage_per_network(connection: Connection) -> list[tuple[Network, int]]:
    """Every network with its number of ports (one grouped count)."""
    counts: dict[str, int] = dict(
        connection.execute(
            select(PORTS.c.network_id, func.count()).group_by(PORTS.c.network_id)
        ).all()
    )
    return [(n, int(counts.get(n.id, 0))) for n in list_networks(connection, project_id=None)]


_MACS_IN_USE = select(PORTS.c.mac).where(PORTS.c.mac.in_(bindparam("macs", expanding=True)))


def macs_in_use(connection: Connection, macs: Sequence[str]) -> set[str]:
    """Those of ``macs`` that some port has: one indexed query (the unique key on mac)."""
    if not macs:
        return set()
    return set(connection.execute(_MACS_IN_USE, {"macs": list(macs)}).scalars())
