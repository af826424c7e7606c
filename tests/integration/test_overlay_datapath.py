"""The overlay on real kernel parts: two namespaces this test makes play two compute hosts,
joined by a veth pair (the physical wire, carrying only VXLAN between their underlay
addresses); guests are namespaces of their own plugged into each host's bridge. Nothing
leaves these namespaces."""

from __future__ import annotations

import json
import uuid
from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from services.common.networking import (
    AddressSet,
    Direction,
    NetworkSpec,
    PortSpec,
    SecurityGroupRule,
    SubnetSpec,
)
from services.common.overlay import HostNetworkState
from services.compute.net.linuxbridge import LinuxBridgeDriver
from tests.integration.test_linuxbridge_datapath import dhcp_address, pings
from tests.support.netns import attach, inside, namespaces, run_in

pytestmark = pytest.mark.timeout(120)

UNDERLAY = {"ha": A("192.168.77.1"), "hb": A("192.168.77.2")}
WEB = NetworkSpec("net-web", "web", 5101, SubnetSpec(N("10.42.0.0/24"), A("10.42.0.1")))
# another project's network with the same subnet: nothing of it may reach "web"
OTHER = NetworkSpec("net-other", "other", 5102, SubnetSpec(N("10.42.0.0/24"), A("10.42.0.1")))


def rules(group_id: str) -> tuple[SecurityGroupRule, ...]:
    """All egress; ingress from the members of ``group_id`` (its address set)."""
    from_members = SecurityGroupRule(f"i-{group_id}", Direction.INGRESS, remote_group_id=group_id)
    return (SecurityGroupRule("e", Direction.EGRESS), from_members)


def port(n: int, network: NetworkSpec, ip: str, group_id: str) -> PortSpec:
    return PortSpec(port_id=f"{n:08d}-0000-4000-8000-000000000000", instance_uuid=f"vm{n}",
                    network=network, mac=f"fa:16:3e:00:01:{n:02x}", fixed_ip=A(ip),
                    security_rules=rules(group_id))  # fmt: skip


def wire(a: str, b: str) -> None:
    """The physical link between the two hosts, with room for VXLAN's 50 bytes."""
    with IPRoute(netns=a) as ip:
        ip.link("add", ifname="phys0", kind="veth", peer={"ifname": "phys0", "net_ns_fd": b})
    for name, address in ((a, UNDERLAY["ha"]), (b, UNDERLAY["hb"])):
        with IPRoute(netns=name) as ip:
            (index,) = ip.link_lookup(ifname="phys0")
            ip.link("set", index=index, mtu=1600, state="up")
            ip.addr("add", index=index, address=str(address), prefixlen=24)


def flood_list(host: str, vni: int) -> set[str]:
    shown = run_in(host, "bridge", "-j", "fdb", "show", "dev", f"nvx-{vni}").stdout
    return {e["dst"] for e in json.loads(shown or "[]") if e.get("mac") == "00:00:00:00:00:00"}


def links(host: str) -> set[str]:
    with IPRoute(netns=host) as ip:
        return {link.get_attr("IFLA_IFNAME") for link in ip.get_links()}


def test_one_network_spans_two_hosts_and_another_network_stays_apart(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:4]
    with namespaces("ha", "hb", "g1", "g2", "g3", "g4") as ns:
        wire(ns["ha"], ns["hb"])
        drivers = {
            h: LinuxBridgeDriver(
                state_dir=tmp_path / h,
                underlay=UNDERLAY[h],
                host=h,
                namespace_prefix=f"t{tag}{h}-dhcp-",
            )
            for h in ("ha", "hb")
        }
        web = ("10.42.0.11", "10.42.0.12")
        placed = {  # guest -> (host, port)
            "g1": ("ha", port(1, WEB, web[0], "g-web")),
            "g2": ("hb", port(2, WEB, web[1], "g-web")),
            # the other network: one guest on each host, with web's addresses, in a group
            # of its own project (one set per group on each host, both with these members)
            "g3": ("ha", port(3, OTHER, "10.42.0.12", "g-other")),
            "g4": ("hb", port(4, OTHER, "10.42.0.11", "g-other")),
        }
        sets = [AddressSet(g, (A(web[0]), A(web[1]))) for g in ("g-web", "g-other")]
        for guest, (host, p) in placed.items():
            with inside(ns[host]):
                drivers[host].plug(p, sets)
            attach(ns[host], p.network.bridge, p.tap_name, ns[guest], mac=p.mac)

        def converge(peers: dict[str, dict[int, frozenset[A]]]) -> None:
            for host in ("ha", "hb"):
                with inside(ns[host]):
                    drivers[host].set_host_state(HostNetworkState(host, peers[host]))

        both = {5101: None, 5102: None}
        converge({h: {vni: frozenset({UNDERLAY["hb" if h == "ha" else "ha"]}) for vni in both}
                  for h in ("ha", "hb")})  # fmt: skip
        assert flood_list(ns["ha"], 5101) == {"192.168.77.2"}
        # DHCP answers on each host, from that host (no trip to one special host)
        for guest, (_host, p) in placed.items():
            assert dhcp_address(ns[guest], tmp_path).startswith(f"{p.fixed_ip}/24 10.42.0.1")
            with IPRoute(netns=ns[guest]) as ip:
                ip.addr("add", index=ip.link_lookup(ifname="eth0")[0],
                        address=str(p.fixed_ip), prefixlen=24)  # fmt: skip
        # across hosts on one network; the gateway each guest reaches is its own host's
        assert pings(ns["g1"], web[1]) and pings(ns["g2"], web[0])
        assert pings(ns["g3"], "10.42.0.11") and pings(ns["g4"], "10.42.0.12")
        for guest, (host, _p) in placed.items():
            assert pings(ns[guest], "10.42.0.1")
            gateway_mac = run_in(ns[guest], "ip", "neigh", "show", "10.42.0.1").stdout.split()
            own = run_in(ns[host], "ip", "netns", "exec", f"t{tag}{host}-dhcp-"
                         f"{placed[guest][1].network.segmentation_id}", "cat",
                         "/sys/class/net/eth0/address").stdout.strip()  # fmt: skip
            assert own in gateway_mac, (guest, gateway_mac, own)
        # the other network's guests hold web's addresses and still see only each other:
        # g3 (10.42.0.12 on "other", host a) answers g4, and web's g1 never hears from g4
        assert run_in(ns["g1"], "ip", "neigh", "show", "10.42.0.11").stdout.strip() == ""

        # host b loses its last web port: host a stops flooding web's traffic to it
        with inside(ns["hb"]):
            drivers["hb"].unplug(placed["g2"][1])
        converge({"ha": {5101: frozenset(), 5102: frozenset({UNDERLAY["hb"]})},
                  "hb": {5102: frozenset({UNDERLAY["ha"]})}})  # fmt: skip
        assert flood_list(ns["ha"], 5101) == set()
        assert "nvx-5101" not in links(ns["hb"]) and "nbr-5101" not in links(ns["hb"])
        assert not pings(ns["g1"], web[1])
        assert pings(ns["g3"], "10.42.0.11")  # the other network is untouched

        for guest, (host, p) in placed.items():
            if guest != "g2":
                with inside(ns[host]):
                    drivers[host].unplug(p)
        for host in ("ha", "hb"):
            left = {n for n in links(ns[host]) if n[:4] in ("nvx-", "nbr-", "ndh-")}
            assert left == set(), left
            assert not [n for n in netns.listnetns() if n.startswith(f"t{tag}{host}-dhcp-")]
