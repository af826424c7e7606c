"""A connected network's way out, on real kernel parts inside namespaces this test makes:
one namespace plays the compute host (with its external bridge), one a guest, one the
outside world on the external network (its upstream router, with no route back to the
guest's subnet). The guest's outbound traffic arrives from the host's gateway address
(SNAT); the outside reaches the guest's service through its floating address only while a
security-group rule allows it and only while the address is associated."""

from __future__ import annotations

import json
import subprocess
import uuid
from ipaddress import IPv4Address as A
from ipaddress import IPv4Interface
from ipaddress import IPv4Network as N
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from services.common.networking import (
    Direction,
    IpProtocol,
    NetworkSpec,
    PortSpec,
    SecurityGroupRule,
    SubnetSpec,
)
from services.common.overlay import FloatingBinding, HostNetworkState, Uplink
from services.compute.net.linuxbridge import LinuxBridgeDriver
from tests.integration.test_linuxbridge_datapath import pings, tcp_connects
from tests.support.netns import attach, inside, namespaces, run_in
from tests.support.polling import wait_until

pytestmark = pytest.mark.timeout(120)

NET = NetworkSpec("net-ext", "web", 5201, SubnetSpec(N("10.42.0.0/24"), A("10.42.0.1")))
UPLINK = Uplink(5201, "br-ex", IPv4Interface("203.0.113.5/24"), A("203.0.113.1"),
                N("10.42.0.0/24"))  # fmt: skip
FLOATING = FloatingBinding(5201, A("203.0.113.50"), A("10.42.0.11"), "port-1")
EGRESS = SecurityGroupRule("e", Direction.EGRESS)
WEB = SecurityGroupRule("w", Direction.INGRESS, IpProtocol.TCP, 8080, 8080)

COUNTERS = """table ip seen {
  chain input {
    type filter hook input priority filter; policy accept;
    ip saddr 203.0.113.5 icmp type echo-request counter
    ip saddr 203.0.113.50 icmp type echo-request counter
    ip saddr 10.42.0.0/24 counter
  }
}
"""


def arrived_from(outside: str) -> dict[str, int]:
    """Echo requests the outside saw, by source (from its counters)."""
    listed = run_in(outside, "nft", "list", "table", "ip", "seen").stdout
    counts: dict[str, int] = {}
    for line in listed.splitlines():
        if "counter packets" in line:
            source = line.split("ip saddr ")[1].split()[0]
            counts[source] = int(line.split("counter packets ")[1].split()[0])
    return counts


def test_snat_out_and_floating_in_through_the_security_groups(tmp_path: Path) -> None:  # noqa: PLR0915
    tag = uuid.uuid4().hex[:4]
    with namespaces("host", "g1", "outside") as ns:
        with IPRoute(netns=ns["host"]) as ip:
            ip.link("add", ifname="br-ex", kind="bridge")
            ip.link("set", index=ip.link_lookup(ifname="br-ex")[0], state="up")
        attach(ns["host"], "br-ex", "outside0", ns["outside"], address="203.0.113.1/24")
        subprocess.run(["ip", "netns", "exec", ns["outside"], "nft", "-f", "-"], input=COUNTERS,
                       text=True, check=True, timeout=20)  # fmt: skip
        driver = LinuxBridgeDriver(state_dir=tmp_path, namespace_prefix=f"t{tag}-dhcp-")
        port = PortSpec(port_id="00000001-0000-4000-8000-000000000000", instance_uuid="vm1",
                        network=NET, mac="fa:16:3e:00:02:01", fixed_ip=A("10.42.0.11"),
                        security_rules=(EGRESS,))  # fmt: skip
        namespace = f"t{tag}-dhcp-5201"
        with inside(ns["host"]):
            driver.plug(port)
            driver.set_host_state(HostNetworkState("host", uplinks=(UPLINK,)))
        attach(ns["host"], "nbr-5201", port.tap_name, ns["g1"], mac=port.mac,
               address="10.42.0.11/24")  # fmt: skip
        run_in(ns["g1"], "ip", "route", "add", "default", "via", "10.42.0.1")

        # out: the outside sees the host's gateway address, never the guest's own
        assert pings(ns["g1"], "203.0.113.1")
        assert arrived_from(ns["outside"]) == {"203.0.113.5": 1, "203.0.113.50": 0,
                                               "10.42.0.0/24": 0}  # fmt: skip

        # in: a service on the guest, reached by its floating address only while allowed
        server = subprocess.Popen(["ip", "netns", "exec", ns["g1"], "nc", "-lk", "-p", "8080"])
        try:
            wait_until(lambda: run_in(ns["g1"], "nc", "-z", "-w", "1", "127.0.0.1",
                                      "8080").returncode == 0, 10, "the listener")  # fmt: skip
            assert not tcp_connects(ns["outside"], "203.0.113.50", 8080)  # not associated
            with inside(ns["host"]):
                driver.set_host_state(
                    HostNetworkState("host", uplinks=(UPLINK,), floating=(FLOATING,))
                )
            assert not tcp_connects(ns["outside"], "203.0.113.50", 8080)  # no rule allows
            with inside(ns["host"]):
                driver.update_rules([port.with_rules((EGRESS, WEB))])
            assert tcp_connects(ns["outside"], "203.0.113.50", 8080)
            assert not pings(ns["outside"], "203.0.113.50")  # only what the rule opens
            # the guest's own traffic now leaves as its floating address
            assert pings(ns["g1"], "203.0.113.1")
            assert arrived_from(ns["outside"])["203.0.113.50"] == 1
            # the compute restarts (kill -9): the new process converges to the database's
            # ports and keeps what carries traffic until its state arrives; then one of each
            with inside(ns["host"]):
                driver = LinuxBridgeDriver(state_dir=tmp_path, namespace_prefix=f"t{tag}-dhcp-")
                driver.converge([port.with_rules((EGRESS, WEB))])
            assert tcp_connects(ns["outside"], "203.0.113.50", 8080)
            with inside(ns["host"]):
                driver.set_host_state(
                    HostNetworkState("host", uplinks=(UPLINK,), floating=(FLOATING,))
                )
            assert tcp_connects(ns["outside"], "203.0.113.50", 8080)
            shown = run_in(namespace, "ip", "-4", "-o", "addr", "show", "dev", "ext0").stdout
            assert sorted(line.split()[3] for line in shown.splitlines()) == [
                "203.0.113.5/24", "203.0.113.50/32"
            ]  # fmt: skip
            assert run_in(namespace, "nft", "list", "tables").stdout.count("nova_grpc_nat") == 1
            # disassociated: the address no longer reaches the guest
            with inside(ns["host"]):
                driver.set_host_state(HostNetworkState("host", uplinks=(UPLINK,)))
            assert not tcp_connects(ns["outside"], "203.0.113.50", 8080)
        finally:
            server.kill()
            server.wait(5)

        # disconnected, then gone: nothing of it stays
        with inside(ns["host"]):
            driver.set_host_state(HostNetworkState("host"))
        assert "nxg-5201" not in run_in(ns["host"], "ip", "-o", "link").stdout
        assert "nova_grpc_nat" not in run_in(namespace, "nft", "list", "tables").stdout
        assert not pings(ns["g1"], "203.0.113.1")
        with inside(ns["host"]):
            driver.unplug(port)
        assert namespace not in netns.listnetns()
        links = run_in(ns["host"], "ip", "-o", "link").stdout
        assert "nbr-5201" not in links and "nxg-" not in links


def neighbour(outside: str, address: str) -> str:
    """The MAC the outside holds for ``address`` ("" when none)."""
    shown = run_in(outside, "ip", "-j", "neigh", "show", address, "dev", "eth0").stdout
    entries = json.loads(shown or "[]")
    return str(entries[0].get("lladdr", "")) if entries else ""


def test_a_taken_floating_address_is_announced_to_the_external_network(tmp_path: Path) -> None:
    """The floating address moves here from elsewhere (another host, or a release and a new
    association): the outside's router still holds the old MAC for it and would keep sending
    there until its entry aged out. The host's gratuitous ARP moves it at once, without the
    outside sending a single packet to the address."""
    tag = uuid.uuid4().hex[:4]
    old_mac = "02:00:00:00:00:99"
    with namespaces("host", "outside") as ns:
        with IPRoute(netns=ns["host"]) as ip:
            ip.link("add", ifname="br-ex", kind="bridge")
            ip.link("set", index=ip.link_lookup(ifname="br-ex")[0], state="up")
        attach(ns["host"], "br-ex", "outside0", ns["outside"], address="203.0.113.1/24")
        for address in ("203.0.113.5", "203.0.113.50"):
            run_in(ns["outside"], "ip", "neigh", "replace", address, "lladdr", old_mac,
                   "dev", "eth0", "nud", "stale")  # fmt: skip
        driver = LinuxBridgeDriver(state_dir=tmp_path, namespace_prefix=f"t{tag}-dhcp-")
        port = PortSpec(port_id="00000001-0000-4000-8000-000000000000", instance_uuid="vm1",
                        network=NET, mac="fa:16:3e:00:02:01", fixed_ip=A("10.42.0.11"),
                        security_rules=(EGRESS,))  # fmt: skip
        namespace = f"t{tag}-dhcp-5201"
        try:
            with inside(ns["host"]):
                driver.plug(port)
                driver.set_host_state(HostNetworkState("host", uplinks=(UPLINK,)))
            ext0 = json.loads(run_in(namespace, "ip", "-j", "link", "show", "ext0").stdout)
            mac = ext0[0]["address"]
            # the gateway address was taken first: announced; the floating one not yet
            wait_until(lambda: neighbour(ns["outside"], "203.0.113.5") == mac, 10,
                       "the gateway address announced")  # fmt: skip
            assert neighbour(ns["outside"], "203.0.113.50") == old_mac
            with inside(ns["host"]):
                driver.set_host_state(
                    HostNetworkState("host", uplinks=(UPLINK,), floating=(FLOATING,))
                )
            wait_until(lambda: neighbour(ns["outside"], "203.0.113.50") == mac, 10,
                       "the floating address announced")  # fmt: skip
        finally:
            with inside(ns["host"]):
                driver.set_host_state(HostNetworkState("host"))
                driver.unplug(port)
        assert namespace not in netns.listnetns()
