"""PortSpec <-> PortBinding and AddressSet <-> AddressSet, for every internal RPC that
carries ports (builds, rule updates, a host's inventory): the ports with their rules, and
beside them, once per message, the address sets those rules name. Input from the wire is
checked: bad values are the caller's InvalidArgument, never a crash in the datapath."""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network

from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.internal.v1 import network_pb2
from services.common.networking import (
    AddressSet,
    Direction,
    IpProtocol,
    NetworkSpec,
    PortSpec,
    SecurityGroupRule,
    SubnetSpec,
)

MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def port_to_proto(port: PortSpec) -> network_pb2.PortBinding:
    network, subnet = port.network, port.network.subnet
    return network_pb2.PortBinding(
        port_id=port.port_id,
        network_id=network.network_id,
        network_name=network.name,
        segmentation_id=network.segmentation_id,
        mtu=network.mtu,
        mac=port.mac,
        fixed_ip=str(port.fixed_ip),
        cidr=str(subnet.cidr),
        gateway=str(subnet.gateway) if subnet.gateway else "",
        dns_servers=[str(a) for a in subnet.dns_servers],
        device_index=port.device_index,
        instance_uuid=port.instance_uuid,
        rules=[
            network_pb2.SecurityRule(
                rule_id=r.rule_id,
                direction=r.direction.value,
                protocol=r.protocol.value,
                port_min=r.port_min or 0,
                port_max=r.port_max or 0,
                remote_cidr=str(r.remote_cidr) if r.remote_cidr is not None else "",
                remote_group_id=r.remote_group_id or "",
                remote_cidrs=_legacy_remote(r),
            )
            for r in port.security_rules
        ],
    )


# What a compute of the release before address sets matches for a remote-group rule: no
# guest sends from 0.0.0.0 past anti-spoofing but DHCP, which never reaches a port's rules.
LEGACY_NOBODY = "0.0.0.0/32"


def _legacy_remote(rule: SecurityGroupRule) -> list[str]:
    """``remote_cidrs`` for an older compute: never empty where the rule has a remote (an
    empty one would read as any address), and never the members (what made it grow)."""
    if rule.remote_cidr is not None:
        return [str(rule.remote_cidr)]
    return [LEGACY_NOBODY] if rule.remote_group_id is not None else []


def _rule_from_proto(rule: network_pb2.SecurityRule) -> SecurityGroupRule:
    low, high = rule.port_min or None, rule.port_max or None
    if low is not None and not (1 <= low <= (high or low) <= 65535):
        raise ValueError(f"rule {rule.rule_id}: port range {low}-{high}")
    remote_cidr = rule.remote_cidr
    if not remote_cidr and not rule.remote_group_id and rule.remote_cidrs:
        # An older conductor: one CIDR is a CIDR rule (or a group of one member, the same
        # match); a group's members as several /32s have no shape here and are refused,
        # which fails the build or push instead of opening the port.
        if len(rule.remote_cidrs) > 1:
            raise ValueError(
                f"rule {rule.rule_id}: remote_cidrs with {len(rule.remote_cidrs)} entries "
                "(a conductor of an older release); give remote_group_id and address sets"
            )
        remote_cidr = rule.remote_cidrs[0]
    return SecurityGroupRule(
        rule_id=rule.rule_id,
        direction=Direction(rule.direction),
        protocol=IpProtocol(rule.protocol),
        port_min=low,
        port_max=high,
        remote_cidr=IPv4Network(remote_cidr) if remote_cidr else None,
        remote_group_id=rule.remote_group_id or None,
    )


def port_from_proto(port: network_pb2.PortBinding, *, instance_uuid: str = "") -> PortSpec:
    try:
        subnet = SubnetSpec(
            IPv4Network(port.cidr),
            IPv4Address(port.gateway) if port.gateway else None,
            tuple(IPv4Address(a) for a in port.dns_servers),
        )
        fixed_ip = IPv4Address(port.fixed_ip)
        rules = tuple(_rule_from_proto(r) for r in port.rules)
    except ValueError as exc:
        raise InvalidArgument("ports", str(exc)) from exc
    if not MAC.match(port.mac):
        raise InvalidArgument("ports.mac", f"{port.mac[:32]!r} is not a MAC address")
    if not 0 < port.segmentation_id < 2**24:
        raise InvalidArgument("ports.segmentation_id", "must be 1 to 16777215")
    return PortSpec(
        port_id=port.port_id,
        instance_uuid=instance_uuid or port.instance_uuid,
        network=NetworkSpec(
            port.network_id, port.network_name, port.segmentation_id, subnet, port.mtu or 1500
        ),
        mac=port.mac,
        fixed_ip=fixed_ip,
        security_rules=rules,
        device_index=port.device_index,
    )


def address_sets_to_proto(sets: Iterable[AddressSet]) -> list[network_pb2.AddressSet]:
    """One message per group, however many ports of the message name it."""
    unique = {s.group_id: s for s in sets}
    return [
        network_pb2.AddressSet(group_id=g, addresses=[str(a) for a in unique[g].addresses])
        for g in sorted(unique)
    ]


def address_sets_from_proto(
    sets: Iterable[network_pb2.AddressSet], *, field: str = "address_sets"
) -> dict[str, AddressSet]:
    """By group id, each set made once (the builds or instances of one message share it)."""
    found: dict[str, AddressSet] = {}
    for message in sets:
        if not message.group_id:
            raise InvalidArgument(f"{field}.group_id", "must not be empty")
        try:
            addresses = tuple(sorted({IPv4Address(a) for a in message.addresses}))
        except ValueError as exc:
            raise InvalidArgument(f"{field}.addresses", str(exc)) from exc
        found[message.group_id] = AddressSet(message.group_id, addresses)
    return found
