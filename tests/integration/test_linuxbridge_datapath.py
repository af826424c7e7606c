"""The Linux datapath on real kernel parts, inside namespaces this test makes: one
namespace plays the compute host (bridges, DHCP namespaces, nftables), others play its
guests and a client on the network. Nothing leaves these namespaces."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N
from pathlib import Path

import pytest
from pyroute2 import IPRoute, netns

from services.common.networking import (
    AddressSet,
    Direction,
    IpProtocol,
    NetworkSpec,
    PortSpec,
    SecurityGroupRule,
    SubnetSpec,
)
from services.compute.net.linuxbridge import LinuxBridgeDriver, dhcp_namespace
from tests.support.netns import attach, inside, namespaces, run_in, set_address
from tests.support.polling import wait_until

pytestmark = pytest.mark.timeout(90)

NET = NetworkSpec("net-1", "web", 4242, SubnetSpec(N("10.42.0.0/24"), A("10.42.0.1"),
                                                   (A("10.42.0.53"),)))  # fmt: skip
ALL_EGRESS = SecurityGroupRule("r-egress", Direction.EGRESS)


FROM_MEMBERS = SecurityGroupRule("r-members", Direction.INGRESS, remote_group_id="g-default")


def member_rules() -> tuple[SecurityGroupRule, ...]:
    """The default group: all egress, ingress from the group's members (its address set)."""
    return (ALL_EGRESS, FROM_MEMBERS)


def members(*addresses: str) -> AddressSet:
    return AddressSet("g-default", tuple(A(a) for a in addresses))


def table_handle(namespace: str) -> str:
    """The inet table's handle: a table made again (a full render) gets a new one."""
    listed = run_in(namespace, "nft", "-a", "list", "table", "inet", "nova_grpc").stdout
    return listed.splitlines()[0].split("# handle")[1].strip()


def port(n: int, ip: str, rules: tuple[SecurityGroupRule, ...]) -> PortSpec:
    return PortSpec(port_id=f"{n:08d}-0000-4000-8000-000000000000", instance_uuid=f"vm{n}",
                    network=NET, mac=f"fa:16:3e:00:00:{n:02x}", fixed_ip=A(ip),
                    security_rules=rules)  # fmt: skip


def dhcp_address(guest: str, tmp: Path) -> str:
    """busybox udhcpc in the guest; the lease script records the address it was offered."""
    script = tmp / f"{guest}.sh"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] && echo "$ip/$mask $router $dns" > '
                      f'{tmp}/{guest}.lease\nexit 0\n')  # fmt: skip
    script.chmod(0o755)
    result = run_in(guest, "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5",
                    "-T", "1", "-s", str(script))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return (tmp / f"{guest}.lease").read_text().strip()


def pings(source: str, target: str) -> bool:
    return run_in(source, "ping", "-c", "1", "-W", "1", target).returncode == 0


def tcp_connects(source: str, target: str, port_number: int) -> bool:
    return run_in(source, "nc", "-z", "-w", "1", target, str(port_number)).returncode == 0


def membership_changes_take_effect(driver: LinuxBridgeDriver, ns: dict[str, str]) -> None:
    """g1 and g2 in the group, the client (10.42.0.200) not: members come and go by the
    set's elements alone."""
    # the client joins the group: only the set's elements change, and it gets in
    assert not pings(ns["client"], "10.42.0.12")
    before = table_handle(ns["host"])
    assert driver.update_address_sets([members("10.42.0.11", "10.42.0.12", "10.42.0.200")]) == 1
    assert pings(ns["client"], "10.42.0.12")
    assert table_handle(ns["host"]) == before  # no port's chains were rendered again
    # and leaves it (a server that went): out again
    driver.update_rules([], [members("10.42.0.11", "10.42.0.12")])
    assert not pings(ns["client"], "10.42.0.12")
    # a group without members lets no one in (an empty set is not "any")
    driver.update_address_sets([members()])
    assert not pings(ns["g1"], "10.42.0.12") and not pings(ns["client"], "10.42.0.12")
    driver.update_address_sets([members("10.42.0.11", "10.42.0.12")])
    assert pings(ns["g1"], "10.42.0.12")
    # a set no port here names changes nothing
    assert driver.update_address_sets([AddressSet("g-elsewhere", (A("10.42.0.200"),))]) == 0
    assert table_handle(ns["host"]) == before


def test_dhcp_security_groups_and_anti_spoofing_then_nothing_left(tmp_path: Path) -> None:
    with namespaces("host", "g1", "g2", "client") as ns, inside(ns["host"]):
        driver = LinuxBridgeDriver(state_dir=tmp_path / "state")
        one = port(1, "10.42.0.11", member_rules())
        two = port(2, "10.42.0.12", member_rules())
        for p, guest in ((one, "g1"), (two, "g2")):
            driver.plug(p, [members("10.42.0.11", "10.42.0.12")])
            attach(ns["host"], "nbr-4242", p.tap_name, ns[guest], mac=p.mac)
        # DHCP answers each port's MAC with its address, router and DNS server
        assert dhcp_address(ns["g1"], tmp_path) == "10.42.0.11/24 10.42.0.1 10.42.0.53"
        assert dhcp_address(ns["g2"], tmp_path) == "10.42.0.12/24 10.42.0.1 10.42.0.53"
        for guest, address in (("g1", "10.42.0.11/24"), ("g2", "10.42.0.12/24")):
            with IPRoute(netns=ns[guest]) as ip:
                ip.addr("add", index=ip.link_lookup(ifname="eth0")[0],
                        address=address.split("/")[0], prefixlen=24)  # fmt: skip
        # a MAC that is not a port of this host gets no answer
        attach(ns["host"], "nbr-4242", "tstclient0", ns["client"])
        stray = run_in(ns["client"], "busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-t", "2",
                       "-T", "1", "-s", "/bin/true")  # fmt: skip
        assert stray.returncode != 0
        with IPRoute(netns=ns["client"]) as ip:
            ip.addr("add", index=ip.link_lookup(ifname="eth0")[0], address="10.42.0.200",
                    prefixlen=24)  # fmt: skip
        # same group: the guests reach each other, and their gateway
        assert pings(ns["g1"], "10.42.0.12") and pings(ns["g2"], "10.42.0.11")
        assert pings(ns["g1"], "10.42.0.1")
        # a TCP service on g2: refused to the client until a rule allows it
        server = __import__("subprocess").Popen(
            ["ip", "netns", "exec", ns["g2"], "nc", "-lk", "-p", "8080"]
        )
        try:
            wait_until(lambda: tcp_connects(ns["g1"], "10.42.0.12", 8080), 10, "the listener")
            assert not tcp_connects(ns["client"], "10.42.0.12", 8080)
            web = SecurityGroupRule("r-web", Direction.INGRESS, IpProtocol.TCP, 8080, 8080)
            opened = port(2, "10.42.0.12", (*two.security_rules, web))
            driver.update_rules([opened])
            assert tcp_connects(ns["client"], "10.42.0.12", 8080)
            assert not pings(ns["client"], "10.42.0.12")  # only the port the rule opens
            driver.update_rules([two])
            assert not tcp_connects(ns["client"], "10.42.0.12", 8080)
        finally:
            server.kill()
            server.wait(5)
        membership_changes_take_effect(driver, ns)
        # a guest that takes another address gets nothing through
        set_address(ns["g1"], "10.42.0.11/24", "10.42.0.99/24")
        assert not pings(ns["g1"], "10.42.0.12") and not pings(ns["g1"], "10.42.0.200")
        set_address(ns["g1"], "10.42.0.99/24", "10.42.0.11/24")
        assert pings(ns["g1"], "10.42.0.12")
        # gone: no bridge, DHCP namespace, dnsmasq or rule remains
        driver.unplug(one)
        assert pings(ns["g2"], "10.42.0.1")  # the network stays for the other port
        driver.unplug(two)
        with IPRoute(netns=ns["host"]) as ip:
            names = {link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        assert "nbr-4242" not in names and "ndh-4242" not in names
        assert dhcp_namespace(4242) not in netns.listnetns()
        assert "nova_grpc" not in run_in(ns["host"], "nft", "list", "ruleset").stdout
        assert not (tmp_path / "state" / "dhcp" / "4242").exists()


def test_converge_removes_what_no_port_needs_and_remakes_what_is_missing(tmp_path: Path) -> None:
    with namespaces("host") as ns, inside(ns["host"]):
        first = LinuxBridgeDriver(state_dir=tmp_path)
        stale = port(1, "10.42.0.11", member_rules())
        first.plug(stale)
        # a new compute process: the database says only port 2 lives here now
        other = NetworkSpec("net-2", "db", 4343, SubnetSpec(N("10.43.0.0/24"), A("10.43.0.1")))
        wanted = PortSpec(
            port_id="00000002-0000-4000-8000-000000000000",
            instance_uuid="vm2",
            network=other,
            mac="fa:16:3e:00:01:02",
            fixed_ip=A("10.43.0.5"),
        )
        second = LinuxBridgeDriver(state_dir=tmp_path)
        second.converge([wanted])
        with IPRoute(netns=ns["host"]) as ip:
            names = {link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        assert "nbr-4343" in names and "nbr-4242" not in names
        assert dhcp_namespace(4242) not in netns.listnetns()
        assert "10.43.0.5" in run_in(ns["host"], "nft", "list", "ruleset").stdout
        assert "fa:16:3e:00:01:02,10.43.0.5" in (tmp_path / "dhcp/4343/hosts").read_text()
        # the next process, with nothing placed here any more
        LinuxBridgeDriver(state_dir=tmp_path).converge([])
        assert dhcp_namespace(4343) not in netns.listnetns()
