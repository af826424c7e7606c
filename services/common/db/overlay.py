"""Each host's network state as the database gives it: which hosts share which networks
(the overlay), each connected network's uplink on each host (with the host's gateway
address, allocated here on first need and given back when no longer needed) and the
floating addresses of the host's ports. One query over the live ports, so this is a write
(it may allocate or free gateway addresses)."""

from __future__ import annotations

from collections import defaultdict
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from sqlalchemy import Connection, select

from services.common.db import external as external_repo
from services.common.db.models import INSTANCES, NETWORKS, NODES, PORTS
from services.common.domain import VmState, utcnow
from services.common.overlay import (
    FloatingBinding,
    HostNetworkState,
    PortPlacement,
    Uplink,
    overlay_of,
)

# libvirt's test hypervisor has no guest and a no-op datapath: never an overlay peer.
TEST_HYPERVISOR = "TEST"

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
    """Every host with ports (on a real hypervisor) and its state."""
    rows = connection.execute(_PLACEMENTS).all()
    overlay = overlay_of(
        PortPlacement(host, vni, IPv4Address(underlay) if underlay else None)
        for host, vni, underlay, *_ in rows
    )
    # a network without a gateway has no gateway namespace to route through
    connected = {(host, network_id): (vni, cidr, external_id)
                 for host, vni, _, network_id, cidr, gateway, external_id in rows
                 if external_id is not None and gateway is not None}  # fmt: skip
    gateways = external_repo.ensure_gateways(connection, set(connected), utcnow())
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


def rpc_addresses(connection: Connection, hosts: list[str]) -> dict[str, str]:
    return dict(
        connection.execute(  # type: ignore[arg-type]
            select(NODES.c.host, NODES.c.rpc_address).where(NODES.c.host.in_(sorted(hosts)))
        ).all()
    )
