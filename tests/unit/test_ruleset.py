"""The nftables renderer, pure: rules in, ruleset out (nft itself checks the syntax in the
datapath's integration test)."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Network as N

import pytest

from services.common.networking import (
    AddressSet,
    Direction,
    IpProtocol,
    NetworkSpec,
    PortSpec,
    SecurityGroupRule,
    SubnetSpec,
)
from services.compute.net.ruleset import render, render_set_elements, set_name

pytestmark = pytest.mark.timeout(10)

NET = NetworkSpec("n", "net", 77, SubnetSpec(N("10.7.0.0/24"), A("10.7.0.1")))


def port(rules: tuple[SecurityGroupRule, ...] = (), **fields: object) -> PortSpec:
    values: dict[str, object] = {
        "port_id": "abcdef01-2345-6789-abcd-ef0123456789", "instance_uuid": "i",
        "network": NET, "mac": "fa:16:3e:aa:bb:cc", "fixed_ip": A("10.7.0.9"),
        "security_rules": rules,
    }  # fmt: skip
    values.update(fields)
    return PortSpec(**values)  # type: ignore[arg-type]


def chain(script: str, name: str) -> list[str]:
    lines = script.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == f"chain {name} {{")
    end = next(i for i in range(start, len(lines)) if lines[i].strip() == "}")
    return [line.strip() for line in lines[start + 1 : end]]


def named_set(script: str, group_id: str) -> list[str]:
    """The declaration of a group's set in the inet table, one stripped line each."""
    lines = script.splitlines()
    start = lines.index(f"  set {set_name(group_id)} {{")
    end = lines.index("  }", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_a_host_without_ports_removes_its_tables() -> None:
    assert render([]) == (
        "table bridge nova_grpc\ndelete table bridge nova_grpc\n"
        "table inet nova_grpc\ndelete table inet nova_grpc\n"
    )


def test_anti_spoofing_pins_the_ports_mac_and_address_at_its_tap() -> None:
    script = render([port()])
    assert 'iifname "tapabcdef01234" jump spoof_abcdef0123456789' in script
    spoof = chain(script, "spoof_abcdef0123456789")
    assert spoof[0] == "ether saddr != fa:16:3e:aa:bb:cc drop"
    assert "ip saddr != 10.7.0.9 drop" in spoof and "ether type ip6 drop" in spoof
    assert "arp saddr ip != { 0.0.0.0, 10.7.0.9 } drop" in spoof
    assert "udp sport 67 drop" in spoof  # no rogue DHCP server
    # DHCP before the address is known goes through, and comes before the address check
    assert spoof.index("ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 "
                       "return") < spoof.index("ip saddr != 10.7.0.9 drop")  # fmt: skip


def test_rules_render_in_their_direction_with_default_deny() -> None:
    rules = (
        SecurityGroupRule(
            "1", Direction.INGRESS, IpProtocol.TCP, 22, 22, remote_cidr=N("192.0.2.0/24")
        ),
        SecurityGroupRule("2", Direction.INGRESS, IpProtocol.UDP, 5000, 5010),
        SecurityGroupRule("3", Direction.INGRESS, IpProtocol.ICMP),
        SecurityGroupRule("4", Direction.EGRESS, remote_group_id="g-db"),
        SecurityGroupRule("5", Direction.INGRESS, IpProtocol.TCP),
    )
    script = render([port(rules)])
    assert chain(script, "ingress_abcdef0123456789") == [
        "udp sport 67 udp dport 68 accept",
        "ip saddr 192.0.2.0/24 tcp dport 22 accept",
        "udp dport 5000-5010 accept",
        "meta l4proto icmp accept",
        "meta l4proto tcp accept",
        "drop",
    ]
    assert chain(script, "egress_abcdef0123456789") == [
        f"ip daddr @{set_name('g-db')} return", "drop"
    ]  # fmt: skip


def test_ports_are_keyed_by_bridge_and_address_and_each_bridge_has_its_zone() -> None:
    other = NetworkSpec("m", "other", 78, SubnetSpec(N("10.7.0.0/24"), A("10.7.0.1")))
    script = render([port(), port(port_id="00000000-1111-2222-3333-444444444444", network=other,
                                  mac="fa:16:3e:00:00:01")])  # fmt: skip
    forward = chain(script, "forward")  # the bridge table's chain comes first
    assert len(forward) == 3  # hook + two taps
    inet = script[script.index("table inet nova_grpc {") :]
    assert 'iifname "nbr-77" ct zone set 77' in inet and 'iifname "nbr-78" ct zone set 78' in inet
    assert 'oifname "nbr-77" ip daddr 10.7.0.9 jump ingress_abcdef0123456789' in inet
    assert 'iifname "nbr-78" ip saddr 10.7.0.9 jump egress_0000000011112222' in inet
    assert 'iifname { "nbr-77", "nbr-78" } ct state established,related accept' in inet


def test_a_port_without_port_security_is_not_filtered() -> None:
    script = render([port(port_security_enabled=False)])
    assert "spoof_" not in script and "ingress_" not in script


def test_the_output_is_deterministic_whatever_the_order() -> None:
    a = port()
    b = port(port_id="00000000-1111-2222-3333-444444444444", mac="fa:16:3e:00:00:01",
             fixed_ip=A("10.7.0.10"))  # fmt: skip
    assert render([a, b]) == render([b, a])


def test_each_hosts_gateway_and_dhcp_stay_off_the_vxlan_port() -> None:
    script = render([port()])
    overlay = chain(script, "overlay")
    assert 'iifname "nvx-77" arp daddr ip 10.7.0.1 drop' in overlay
    assert 'oifname "nvx-77" arp saddr ip 10.7.0.1 drop' in overlay
    assert 'oifname "nvx-77" ip saddr 10.7.0.1 drop' in overlay
    assert 'iifname "nvx-77" udp dport { 67, 68 } drop' in overlay
    assert 'oifname "nvx-77" udp dport { 67, 68 } drop' in overlay
    no_gateway = NetworkSpec("n", "flat", 79, SubnetSpec(N("10.9.0.0/24"), None))
    lines = chain(render([port(network=no_gateway)]), "overlay")
    assert not [line for line in lines if "arp" in line]


FROM_WEB = SecurityGroupRule("r-web", Direction.INGRESS, IpProtocol.TCP, 80, 80,
                             remote_group_id="g-web")  # fmt: skip
WEB = AddressSet("g-web", (A("10.7.0.20"), A("10.7.0.21")))


def test_a_remote_group_rule_matches_the_groups_named_set_declared_once_per_host() -> None:
    other = port(port_id="00000000-1111-2222-3333-444444444444", mac="fa:16:3e:00:00:01",
                 fixed_ip=A("10.7.0.10"), security_rules=(FROM_WEB,))  # fmt: skip
    script = render([port((FROM_WEB,)), other], {"g-web": WEB})
    name = set_name("g-web")
    assert script.count(f"set {name} {{") == 1  # two ports name it: one set
    assert named_set(script, "g-web") == [
        "type ipv4_addr", "elements = { 10.7.0.20, 10.7.0.21 }"
    ]  # fmt: skip
    # in the stateful inet table, where the rules that use it are
    assert script.index(f"set {name}") > script.index("table inet nova_grpc {")
    assert chain(script, "ingress_abcdef0123456789")[1] == f"ip saddr @{name} tcp dport 80 accept"
    assert chain(script, "ingress_0000000011112222")[1] == f"ip saddr @{name} tcp dport 80 accept"
    assert "10.7.0.20" not in "\n".join(chain(script, "ingress_abcdef0123456789"))


@pytest.mark.parametrize("sets", [{}, {"g-web": AddressSet("g-web")}])
def test_a_group_without_members_gets_an_empty_set_which_matches_nothing(
    sets: dict[str, AddressSet],
) -> None:
    """Not "any": the rule stays and names a set with no element (before sets, such a rule
    was left out; rendering it without a remote would have let everyone in)."""
    script = render([port((FROM_WEB,))], sets)
    assert named_set(script, "g-web") == ["type ipv4_addr"]
    assert chain(script, "ingress_abcdef0123456789") == [
        "udp sport 67 udp dport 68 accept",
        f"ip saddr @{set_name('g-web')} tcp dport 80 accept",
        "drop",
    ]


def test_only_sets_a_port_names_are_declared() -> None:
    script = render([port()], {"g-web": WEB})
    assert "set sg_" not in script
    assert "set sg_" not in render([port((FROM_WEB,), port_security_enabled=False)], {"g-web": WEB})


def test_a_members_only_change_rewrites_the_sets_elements_and_nothing_else() -> None:
    script = render_set_elements([WEB, AddressSet("g-empty")])
    name, empty = set_name("g-web"), set_name("g-empty")
    assert script.splitlines() == [
        f"flush set inet nova_grpc {empty}",
        f"flush set inet nova_grpc {name}",
        f"add element inet nova_grpc {name} {{ 10.7.0.20, 10.7.0.21 }}",
    ]
    assert render_set_elements([]) == ""


def test_set_names_are_valid_nft_identifiers_whatever_the_group_id() -> None:
    ids = ["0b0e3a4c-7a62-4a36-9d8e-3f0f2b8c9a11", "g web;drop", "x" * 200, ""]
    names = [set_name(g) for g in ids]
    assert len(set(names)) == len(ids)
    assert all(n.startswith("sg_") and n[3:].isalnum() and len(n) <= 31 for n in names)


def test_a_rule_has_a_remote_cidr_or_a_remote_group_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        SecurityGroupRule("r", Direction.INGRESS, remote_cidr=N("10.0.0.0/8"),
                          remote_group_id="g")  # fmt: skip
