"""Each host's network state as the database gives it: which hosts share which networks
(the overlay), each connected network's uplink on each host (with the host's gateway
address, allocated here on first need and given back when no longer needed) and the
floating addresses of the host's ports. One query over the live ports. ``host_states`` is a
write (it may allocate or free gateway addresses); ``settled_host_states`` reads the same
when there is nothing to allocate or free, which is nearly always, so that deriving every
host's state after each server that comes or goes does not hold the one writer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any

from sqlalchemy import Connection, select

from services.common.db import external as external_repo
from services.common.db.models import INSTANCES, NETWORKS, NODES, PORTS
from services.common.domain import TEST_HYPERVISOR, VmState, utcnow
from services.common.overlay import (
    FloatingBinding,
    HostNetworkState,
    PortPlacement,
    Uplink,
    overlay_of,
)

_PLACEMENTS = (
    select(
        INSTANCES.c.host,
        NETWORKS.c.segmentation_id,
        NODES.c.underlay_address,
        NETWORKS.c.id,
        NETWORKS.c.cidr,
        NETWORKS.c.gateway,
        NETWORKS.c.external_network_id,
    )
    .select_from(
        PORTS.join(INSTANCES, INSTANCES.c.uuid == PORTS.c.instance_uuid)
        .join(NETWORKS, NETWORKS.c.id == PORTS.c.network_id)
        .join(NODES, NODES.c.host == INSTANCES.c.host)
    )
    .where(
        INSTANCES.c.vm_state != VmState.DELETED.value,
        NODES.c.hypervisor_type != TEST_HYPERVISOR,
    )
    .distinct()
)


def host_states(connection: Connection) -> dict[str, HostNetworkState]:
    """Every host with ports (on a real hypervisor) and its state (a write transaction)."""
    rows = connection.execute(_PLACEMENTS).all()
    connected = _connected(rows)
    gateways = external_repo.ensure_gateways(connection, set(connected), utcnow())
    return _states(connection, rows, connected, gateways=gateways)


def settled_host_states(connection: Connection) -> dict[str, HostNetworkState] | None:
    """As ``host_states``, in a read transaction; None when a gateway address must be
    allocated or given back first (then ``host_states`` in a write transaction)."""
    rows = connection.execute(_PLACEMENTS).all()
    connected = _connected(rows)
    gateways = external_repo.settled_gateways(connection, set(connected))
    if gateways is None:
        return None
    return _states(connection, rows, connected, gateways=gateways)


_Connected = dict[tuple[str, str], tuple[int, str, str]]


def _connected(rows: Sequence[Sequence[Any]]) -> _Connected:
    """(host, network) -> (vni, cidr, external network) of each connected network's ports;
    a network without a gateway has no gateway namespace to route through."""
    return {(host, network_id): (vni, cidr, external_id)
            for host, vni, _, network_id, cidr, gateway, external_id in rows
            if external_id is not None and gateway is not None}  # fmt: skip


def _states(
    connection: Connection,
    rows: Sequence[Sequence[Any]],
    connected: _Connected,
    *,
    gateways: dict[tuple[str, str], IPv4Address],
) -> dict[str, HostNetworkState]:
    overlay = overlay_of(
        PortPlacement(host, vni, IPv4Address(underlay) if underlay else None)
        for host, vni, underlay, *_ in rows
    )
    externals = {e.id: e for e in external_repo.list_external_networks(connection)}
    uplinks: dict[str, list[Uplink]] = defaultdict(list)
    for (host, network_id), address in sorted(gateways.items()):
        vni, cidr, external_id = connected[(host, network_id)]
        external = externals[external_id]
        uplinks[host].append(Uplink(
            segmentation_id=vni, bridge=external.bridge,
            address=IPv4Interface(f"{address}/{external.cidr.prefixlen}"),
            gateway=external.gateway, cidr=IPv4Network(cidr),
        ))  # fmt: skip
    floating: dict[str, list[FloatingBinding]] = defaultdict(list)
    for host, vni, floating_ip, fixed, port_id in sorted(external_repo.bound_floating(connection)):
        floating[host].append(FloatingBinding(vni, IPv4Address(floating_ip), IPv4Address(fixed),
                                              port_id))  # fmt: skip
    return {
        host: HostNetworkState(
            host=host,
            overlay=networks,
            uplinks=tuple(uplinks.get(host, ())),
            floating=tuple(floating.get(host, ())),
        )
        for host, networks in overlay.items()
    }


def host_state(connection: Connection, host: str) -> HostNetworkState:
    return host_states(connection).get(host, HostNetworkState(host=host))


def settled_host_state(connection: Connection, host: str) -> HostNetworkState | None:
    states = settled_host_states(connection)
    return None if states is None else states.get(host, HostNetworkState(host=host))


def rpc_addresses(connection: Connection, hosts: list[str]) -> dict[str, str]:
    return dict(
        connection.execute(  # type: ignore[arg-type]
            select(NODES.c.host, NODES.c.rpc_address).where(NODES.c.host.in_(sorted(hosts)))
        ).all()
    )
