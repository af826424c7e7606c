"""A new security-group rule checked without the database: what Neutron accepts, and each
refusal naming its field."""

from __future__ import annotations

from ipaddress import IPv4Network

import pytest

from services.api.security_group_rules import CreateRuleCommand, ValidRule, check_rule
from services.common.errors import InvalidArgument
from services.common.networking import Direction, IpProtocol

pytestmark = pytest.mark.timeout(10)


def rule(direction: str = "ingress", **fields: object) -> CreateRuleCommand:
    return CreateRuleCommand(security_group="web", direction=direction, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (rule(), ValidRule(Direction.INGRESS, IpProtocol.ANY, None, None, None, None)),
        (rule("EGRESS", protocol="any"),
         ValidRule(Direction.EGRESS, IpProtocol.ANY, None, None, None, None)),
        (rule(protocol="tcp", port_range_min=80, port_range_max=90),
         ValidRule(Direction.INGRESS, IpProtocol.TCP, 80, 90, None, None)),
        # only min: that one port
        (rule(protocol="udp", port_range_min=53),
         ValidRule(Direction.INGRESS, IpProtocol.UDP, 53, 53, None, None)),
        (rule(protocol="6", port_range_min=1, port_range_max=65535),
         ValidRule(Direction.INGRESS, IpProtocol.TCP, 1, 65535, None, None)),
        (rule(protocol="icmp", remote_ip_prefix="192.168.1.0/24"),
         ValidRule(Direction.INGRESS, IpProtocol.ICMP, None, None,
                   IPv4Network("192.168.1.0/24"), None)),
        # host bits cleared, a bare address is a /32
        (rule(remote_ip_prefix="10.1.2.3/8"),
         ValidRule(Direction.INGRESS, IpProtocol.ANY, None, None, IPv4Network("10.0.0.0/8"),
                   None)),
        (rule(remote_ip_prefix="10.1.2.3"),
         ValidRule(Direction.INGRESS, IpProtocol.ANY, None, None, IPv4Network("10.1.2.3/32"),
                   None)),
        (rule(protocol="tcp", remote_group="default"),
         ValidRule(Direction.INGRESS, IpProtocol.TCP, None, None, None, "default")),
    ],
)  # fmt: skip
def test_rules_neutron_accepts(command: CreateRuleCommand, expected: ValidRule) -> None:
    assert check_rule(command) == expected


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (rule(""), "direction"),
        (rule("inbound"), "direction"),
        (rule(protocol="gre"), "protocol"),
        (rule(protocol="tcp", port_range_min=0, port_range_max=80), "port_range_min"),
        (rule(protocol="tcp", port_range_min=90, port_range_max=80), "port_range_max"),
        (rule(protocol="tcp", port_range_min=70000), "port_range_min"),
        (rule(protocol="udp", port_range_min=10, port_range_max=70000), "port_range_max"),
        (rule(protocol="tcp", port_range_min=-1), "port_range_min"),
        (rule(protocol="icmp", port_range_min=8), "port_range_min"),
        (rule(port_range_min=22), "port_range_min"),  # protocol any
        (rule(remote_ip_prefix="fd00::/8"), "remote_ip_prefix"),
        (rule(remote_ip_prefix="10.0.0.0/33"), "remote_ip_prefix"),
        (rule(remote_ip_prefix="somewhere"), "remote_ip_prefix"),
        (rule(remote_ip_prefix="10.0.0.0/8", remote_group="default"), "remote_group_id"),
        (rule(remote_group=" x"), "remote_group_id"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(command: CreateRuleCommand, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_rule(command)
    assert caught.value.field == field and caught.value.message.startswith(f"{field}: ")
