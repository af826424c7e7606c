"""network_data.json, pure: what cloud-init reads to configure a guest's NICs."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

import pytest

from services.common.networking import NetworkSpec, PortSpec, SubnetSpec
from services.compute.virt.network_data import network_data

pytestmark = pytest.mark.timeout(10)


def port(
    index: int, cidr: str, ip: str, gateway: str | None, dns: tuple[str, ...] = ()
) -> PortSpec:
    subnet = SubnetSpec(N(cidr), A(gateway) if gateway else None, tuple(A(d) for d in dns))
    return PortSpec(
        port_id=f"p{index}-0000-0000-0000-000000000000",
        instance_uuid="i",
        network=NetworkSpec(f"net-{index}", f"n{index}", 100 + index, subnet, mtu=1450),
        mac=f"fa:16:3e:00:00:0{index}",
        fixed_ip=A(ip),
        device_index=index,
    )


def test_one_link_and_one_static_network_per_port_and_one_default_route() -> None:
    data = network_data([
        port(1, "10.1.0.0/24", "10.1.0.9", "10.1.0.1", ("10.1.0.53",)),
        port(0, "10.0.0.0/16", "10.0.3.4", "10.0.0.1", ("10.1.0.53", "9.9.9.9")),
    ])  # fmt: skip
    assert [link["ethernet_mac_address"] for link in data["links"]] == [
        "fa:16:3e:00:00:00", "fa:16:3e:00:00:01"
    ]  # fmt: skip
    assert data["links"][0]["mtu"] == 1450 and data["links"][0]["id"] == "tapp0000000000"
    first, second = data["networks"]
    assert (first["ip_address"], first["netmask"], first["link"]) == (
        "10.0.3.4", "255.255.0.0", data["links"][0]["id"]
    )  # fmt: skip
    assert first["routes"] == [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.0.0.1"}]
    assert second["routes"] == []  # one default route only
    assert (second["type"], second["network_id"]) == ("ipv4", "net-1")
    assert data["services"] == [
        {"type": "dns", "address": "10.1.0.53"}, {"type": "dns", "address": "9.9.9.9"}
    ]  # fmt: skip


def test_a_subnet_without_gateway_gives_no_route() -> None:
    data = network_data([port(0, "10.0.0.0/24", "10.0.0.5", None)])
    assert data["networks"][0]["routes"] == [] and data["services"] == []


def test_no_ports_no_links() -> None:
    assert network_data([]) == {"links": [], "networks": [], "services": []}
