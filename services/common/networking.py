"""Network domain: what the control plane knows about a port and what a host needs to plug it.

Pure values (no I/O). The api/conductor side allocates these from the database; compute's
network driver (``services/compute/net/driver.py``) turns them into bridges, taps, nftables
rules and DHCP entries. Shapes follow Neutron's port / subnet / security-group-rule models.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from ipaddress import IPv4Address, IPv4Network


def bridge_name(segmentation_id: int) -> str:
    """The network's bridge on every host (15-byte limit: 'nbr-' + at most 8 digits)."""
    return f"nbr-{segmentation_id}"


class Direction(enum.Enum):
    INGRESS = "ingress"
    EGRESS = "egress"


class IpProtocol(enum.Enum):
    ANY = "any"
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"


@dataclass(frozen=True, slots=True)
class SubnetSpec:
    """An IPv4 subnet as the datapath and the guest need it."""

    cidr: IPv4Network
    gateway: IPv4Address | None
    dns_servers: tuple[IPv4Address, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkSpec:
    """One tenant network on a host: a bridge per network, identified by its segment id."""

    network_id: str
    name: str
    segmentation_id: int  # the VNI; names the bridge and, later, the VXLAN device
    subnet: SubnetSpec
    mtu: int = 1500

    @property
    def bridge(self) -> str:
        return bridge_name(self.segmentation_id)


@dataclass(frozen=True, slots=True)
class Network:
    """A project network as the API shows it (one IPv4 subnet per network)."""

    id: str
    project_id: str
    name: str
    cidr: IPv4Network
    gateway: IPv4Address | None
    dns_servers: tuple[IPv4Address, ...]
    allocation_pools: tuple[tuple[IPv4Address, IPv4Address], ...]
    shared: bool
    is_default: bool
    segmentation_id: int
    mtu: int
    created_at: datetime
    external_network_id: str | None = None

    def spec(self) -> NetworkSpec:
        return NetworkSpec(
            network_id=self.id,
            name=self.name,
            segmentation_id=self.segmentation_id,
            subnet=SubnetSpec(self.cidr, self.gateway, self.dns_servers),
            mtu=self.mtu,
        )


@dataclass(frozen=True, slots=True)
class SecurityGroupRule:
    """One allow rule. Its remote is a CIDR, or a group: a remote-group rule names the group,
    whose member addresses travel beside the ports once per message as an ``AddressSet``
    (Neutron's ipset, OVN's address set), so a rule's size never grows with the group's.
    Neither: any address."""

    rule_id: str
    direction: Direction
    protocol: IpProtocol = IpProtocol.ANY
    port_min: int | None = None
    port_max: int | None = None
    remote_cidr: IPv4Network | None = None
    remote_group_id: str | None = None

    def __post_init__(self) -> None:
        if self.remote_cidr is not None and self.remote_group_id is not None:
            raise ValueError(f"rule {self.rule_id}: a remote CIDR or a remote group, not both")


@dataclass(frozen=True, slots=True)
class AddressSet:
    """The addresses of every port of every live member of one security group: what a
    remote-group rule naming ``group_id`` matches. Empty matches nothing (a group without
    members lets no one in), never "any"."""

    group_id: str
    addresses: tuple[IPv4Address, ...] = ()


def referenced_groups(ports: Iterable[PortSpec]) -> set[str]:
    """The remote groups these ports' rules name: the address sets a host needs for them."""
    return {
        r.remote_group_id for p in ports for r in p.security_rules if r.remote_group_id is not None
    }


def sets_for(ports: Iterable[PortSpec], known: Mapping[str, AddressSet]) -> tuple[AddressSet, ...]:
    """The address sets these ports' rules name, from ``known`` (one per group, by id)."""
    return tuple(known[g] for g in sorted(referenced_groups(ports)) if g in known)


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One NIC of one server, with everything needed to plug and filter it on a host."""

    port_id: str
    instance_uuid: str
    network: NetworkSpec
    mac: str  # lower-case, colon separated
    fixed_ip: IPv4Address
    security_rules: tuple[SecurityGroupRule, ...] = ()
    port_security_enabled: bool = True
    tap_name: str = field(default="")
    device_index: int = 0
    # Its floating address, shown in Server.addresses (the NAT comes with the host state).
    floating_ip: IPv4Address | None = None

    def __post_init__(self) -> None:
        if not self.tap_name:
            # Linux interface names are at most 15 bytes; Nova/Neutron use "tap" + id prefix.
            object.__setattr__(self, "tap_name", ("tap" + self.port_id.replace("-", ""))[:14])

    def with_rules(self, rules: tuple[SecurityGroupRule, ...]) -> PortSpec:
        return replace(self, security_rules=rules)
