"""PortSpec <-> PortBinding, for every internal RPC that carries ports (builds, rule
updates, a host's inventory). Input from the wire is checked: bad values are the caller's
InvalidArgument, never a crash in the datapath."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

from services.common.errors import InvalidArgument
from services.common.generated.novagrpc.internal.v1 import network_pb2
from services.common.networking import (
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
                remote_cidrs=[str(c) for c in r.remote_cidrs],
            )
            for r in port.security_rules
        ],
    )


def _rule_from_proto(rule: network_pb2.SecurityRule) -> SecurityGroupRule:
    low, high = rule.port_min or None, rule.port_max or None
    if low is not None and not (1 <= low <= (high or low) <= 65535):
        raise ValueError(f"rule {rule.rule_id}: port range {low}-{high}")
    return SecurityGroupRule(
        rule_id=rule.rule_id,
        direction=Direction(rule.direction),
        protocol=IpProtocol(rule.protocol),
        port_min=low,
        port_max=high,
        remote_cidrs=tuple(IPv4Network(c) for c in rule.remote_cidrs),
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
