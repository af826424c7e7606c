"""``openstack/latest/network_data.json``: how a guest learns its addresses from the config
drive, in OpenStack's format (Nova's ``nova/virt/netutils.py``), which cloud-init reads.

Pure: ports in, a JSON-ready dict out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from services.common.networking import PortSpec


def network_data(ports: Sequence[PortSpec]) -> dict[str, Any]:
    """One link per port (its MAC), one static IPv4 network on it, DNS servers as services.
    Only the first port whose subnet has a gateway carries the default route: a guest with
    several default routes would pick one at random."""
    links: list[dict[str, Any]] = []
    networks: list[dict[str, Any]] = []
    dns: list[str] = []
    default_route_given = False
    for index, port in enumerate(sorted(ports, key=lambda p: p.device_index)):
        subnet = port.network.subnet
        links.append({
            "id": port.tap_name,
            "vif_id": port.port_id,
            "type": "phy",
            "ethernet_mac_address": port.mac,
            "mtu": port.network.mtu,
        })  # fmt: skip
        routes = []
        if subnet.gateway is not None and not default_route_given:
            routes.append({"network": "0.0.0.0", "netmask": "0.0.0.0",
                           "gateway": str(subnet.gateway)})  # fmt: skip
            default_route_given = True
        servers = [str(a) for a in subnet.dns_servers]
        networks.append({
            "id": f"network{index}",
            "type": "ipv4",
            "link": port.tap_name,
            "ip_address": str(port.fixed_ip),
            "netmask": str(subnet.cidr.netmask),
            "routes": routes,
            "network_id": port.network.network_id,
            "services": [{"type": "dns", "address": a} for a in servers],
        })  # fmt: skip
        dns.extend(a for a in servers if a not in dns)
    return {
        "links": links,
        "networks": networks,
        "services": [{"type": "dns", "address": a} for a in dns],
    }
