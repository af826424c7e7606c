"""Each host's network state as the database gives it: which hosts share which networks
(the overlay), and later uplinks and floating addresses. One query over the live ports."""

from __future__ import annotations

from ipaddress import IPv4Address

from sqlalchemy import Connection, select

from services.common.db.models import INSTANCES, NETWORKS, NODES, PORTS
from services.common.domain import VmState
from services.common.overlay import HostNetworkState, PortPlacement, overlay_of

# libvirt's test hypervisor has no guest and a no-op datapath: never an overlay peer.
TEST_HYPERVISOR = "TEST"

_PLACEMENTS = (
    select(INSTANCES.c.host, NETWORKS.c.segmentation_id, NODES.c.underlay_address)
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


def placements(connection: Connection) -> list[PortPlacement]:
    return [
        PortPlacement(host, vni, IPv4Address(underlay) if underlay else None)
        for host, vni, underlay in connection.execute(_PLACEMENTS)
    ]


def host_states(connection: Connection) -> dict[str, HostNetworkState]:
    """Every host with ports (on a real hypervisor) and its state."""
    return {
        host: HostNetworkState(host=host, overlay=networks)
        for host, networks in overlay_of(placements(connection)).items()
    }


def host_state(connection: Connection, host: str) -> HostNetworkState:
    return host_states(connection).get(host, HostNetworkState(host=host))


def rpc_addresses(connection: Connection, hosts: list[str]) -> dict[str, str]:
    return dict(
        connection.execute(  # type: ignore[arg-type]
            select(NODES.c.host, NODES.c.rpc_address).where(NODES.c.host.in_(sorted(hosts)))
        ).all()
    )
