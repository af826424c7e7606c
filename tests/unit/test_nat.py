"""The gateway namespace's NAT script: SNAT of the connected subnet, 1:1 NAT of floating
addresses, nothing without an uplink."""

from __future__ import annotations

from ipaddress import IPv4Address as A
from ipaddress import IPv4Interface, IPv4Network

import pytest

from services.common.overlay import FloatingBinding, Uplink
from services.compute.net.nat import addresses, render

pytestmark = pytest.mark.timeout(10)

UPLINK = Uplink(7, "br-ex", IPv4Interface("203.0.113.5/24"), A("203.0.113.1"),
                IPv4Network("10.7.0.0/24"))  # fmt: skip
FIP = FloatingBinding(7, A("203.0.113.50"), A("10.7.0.9"), "port-1")


def lines(script: str) -> list[str]:
    return [line.strip() for line in script.splitlines()]


def test_without_an_uplink_the_table_goes() -> None:
    assert lines(render(None, [FIP])) == ["table ip nova_grpc_nat", "delete table ip nova_grpc_nat"]


def test_connected_subnet_leaves_as_the_hosts_gateway_address() -> None:
    got = lines(render(UPLINK, []))
    assert 'oifname "ext0" ip saddr 10.7.0.0/24 snat to 203.0.113.5' in got
    assert not [line for line in got if "dnat" in line]


def test_a_floating_address_is_nated_one_to_one_before_the_subnets_snat() -> None:
    got = lines(render(UPLINK, [FIP]))
    assert 'iifname "ext0" ip daddr 203.0.113.50 dnat to 10.7.0.9' in got
    own = got.index('oifname "ext0" ip saddr 10.7.0.9 snat to 203.0.113.50')
    assert own < got.index('oifname "ext0" ip saddr 10.7.0.0/24 snat to 203.0.113.5')
    assert addresses(UPLINK, [FIP]) == ["203.0.113.5/24", "203.0.113.50/32"]
