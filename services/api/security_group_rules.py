"""A new security-group rule, checked without the database (Neutron's rules of what a rule
may say, IPv4 only); each rejection names its field."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import AddressValueError, IPv4Network, NetmaskValueError

from services.api import validation
from services.common.errors import InvalidArgument
from services.common.networking import Direction, IpProtocol

PORT_MIN, PORT_MAX = 1, 65535
# Neutron also takes the IANA protocol numbers.
_PROTOCOLS = {
    "": IpProtocol.ANY,
    "any": IpProtocol.ANY,
    "tcp": IpProtocol.TCP,
    "6": IpProtocol.TCP,
    "udp": IpProtocol.UDP,
    "17": IpProtocol.UDP,
    "icmp": IpProtocol.ICMP,
    "1": IpProtocol.ICMP,
}
_WITH_PORTS = (IpProtocol.TCP, IpProtocol.UDP)


@dataclass(frozen=True, slots=True)
class CreateRuleCommand:
    security_group: str  # the group the rule belongs to, id or name
    direction: str
    protocol: str = ""
    port_range_min: int = 0  # 0: not given
    port_range_max: int = 0
    remote_ip_prefix: str = ""
    remote_group: str = ""  # id or name


@dataclass(frozen=True, slots=True)
class ValidRule:
    direction: Direction
    protocol: IpProtocol
    port_min: int | None
    port_max: int | None
    remote_cidr: IPv4Network | None
    remote_group: str | None  # still a reference: resolved in the group's project


def check_direction(text: str) -> Direction:
    try:
        return Direction(text.strip().lower())
    except ValueError:
        raise InvalidArgument("direction", f"{text[:32]!r}: must be ingress or egress") from None


def check_protocol(text: str) -> IpProtocol:
    found = _PROTOCOLS.get(text.strip().lower())
    if found is None:
        raise InvalidArgument("protocol", f"{text[:32]!r}: must be tcp, udp, icmp or any")
    return found


def check_ports(protocol: IpProtocol, low: int, high: int) -> tuple[int | None, int | None]:
    """(min, max), or (None, None) for every port. Only min: that one port."""
    if not low and not high:
        return None, None
    if protocol not in _WITH_PORTS:
        raise InvalidArgument(
            "port_range_min", f"a port range needs protocol tcp or udp, not {protocol.value}"
        )
    if not low:
        raise InvalidArgument("port_range_min", "is required with port_range_max")
    high = high or low
    for field, port in (("port_range_min", low), ("port_range_max", high)):
        if not PORT_MIN <= port <= PORT_MAX:
            raise InvalidArgument(field, f"{port} is not a port ({PORT_MIN} to {PORT_MAX})")
    if low > high:
        raise InvalidArgument("port_range_max", f"{high} is below port_range_min {low}")
    return low, high


def check_remote_prefix(text: str) -> IPv4Network:
    """An IPv4 CIDR; host bits are cleared (as Neutron does), a bare address is a /32."""
    if ":" in text:
        raise InvalidArgument("remote_ip_prefix", "only IPv4 prefixes are supported")
    try:
        return IPv4Network(text.strip(), strict=False)
    except (AddressValueError, NetmaskValueError, ValueError) as exc:
        raise InvalidArgument(
            "remote_ip_prefix", f"{text[:64]!r} is not an IPv4 CIDR (such as 10.0.0.0/8)"
        ) from exc


def check_rule(command: CreateRuleCommand) -> ValidRule:
    direction = check_direction(command.direction)
    protocol = check_protocol(command.protocol)
    port_min, port_max = check_ports(protocol, command.port_range_min, command.port_range_max)
    if command.remote_ip_prefix and command.remote_group:
        raise InvalidArgument(
            "remote_group_id", "give remote_ip_prefix or remote_group_id, not both"
        )
    remote_cidr = (
        check_remote_prefix(command.remote_ip_prefix) if command.remote_ip_prefix else None
    )
    remote_group = (
        validation.check_ref("remote_group_id", command.remote_group)
        if command.remote_group
        else None
    )
    return ValidRule(direction, protocol, port_min, port_max, remote_cidr, remote_group)
