"""The host's packet filter for its ports, rendered as one nftables script: rules in,
ruleset out, no I/O (as the domain-XML builder). Applying the script replaces both tables
in one transaction, so a port is never without its rules while they change.

Two tables, because this kernel has no connection tracking in nftables' bridge family:

* ``bridge nova_grpc``: anti-spoofing at each tap (frames from a guest must carry its own
  MAC, and its own IPv4 address in ARP and IP; no IPv6; no DHCP server replies). Stateless,
  so the bridge family is the right place, before any forwarding.
  Also at each network's VXLAN port: every host has the network's gateway address (its own
  ``nova-dhcp-N`` namespace) and answers DHCP for its own ports only, so the gateway's ARP
  and IP traffic and DHCP never cross to another host (as Neutron's DVR keeps each host's
  router to itself); a guest always finds the gateway of its own host.
* ``inet nova_grpc``: the security groups, stateful. With br_netfilter
  (``bridge-nf-call-iptables=1``) bridged IPv4 traffic crosses the inet forward hook, where
  its input and output interface are the *bridge*, so a port's traffic is keyed by
  (bridge, address); anti-spoofing makes the source address trustworthy. Each bridge gets
  its own conntrack zone, so overlapping subnets of two projects never share a connection.
  Egress rules ``return`` (the packet then meets the receiver's ingress rules); ingress
  rules ``accept``; both end in ``drop`` (default deny). Replies of allowed connections
  pass by ``ct state established,related``, which is what "stateful" means.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from services.common.networking import (
    Direction,
    IpProtocol,
    PortSpec,
    SecurityGroupRule,
    bridge_name,
)
from services.common.overlay import vxlan_name

TABLE = "nova_grpc"


def _chain_id(port: PortSpec) -> str:
    return port.port_id.replace("-", "")[:16]


def _match(rule: SecurityGroupRule, peer: str) -> list[str]:
    """nft match expressions for one rule; ``peer`` is 'saddr' or 'daddr' (the remote end).
    More than one entry when the remote is a set of CIDRs (one line per set keeps each line
    simple; nft folds them in its own set lookups anyway)."""
    proto = ""
    if rule.protocol in (IpProtocol.TCP, IpProtocol.UDP):
        name = rule.protocol.value
        if rule.port_min is not None:
            high = rule.port_max if rule.port_max is not None else rule.port_min
            ports = str(rule.port_min) if high == rule.port_min else f"{rule.port_min}-{high}"
            proto = f"{name} dport {ports}"
        else:
            proto = f"meta l4proto {name}"
    elif rule.protocol is IpProtocol.ICMP:
        proto = "meta l4proto icmp"
    if rule.remote_cidrs:
        remote = "{ " + ", ".join(str(c) for c in rule.remote_cidrs) + " }"
        return [" ".join(p for p in (f"ip {peer} {remote}", proto) if p)]
    return [proto] if proto else [""]


def _rule_lines(
    rules: Iterable[SecurityGroupRule], direction: Direction, verdict: str
) -> list[str]:
    peer = "saddr" if direction is Direction.INGRESS else "daddr"
    lines: list[str] = []
    for rule in sorted(rules, key=lambda r: r.rule_id):
        if rule.direction is not direction:
            continue
        for match in _match(rule, peer):
            lines.append(f"{match} {verdict}".strip())
    return lines


def _overlay_lines(ports: Sequence[PortSpec]) -> list[str]:
    """Keep each host's gateway and DHCP server on its own side of the VXLAN port."""
    lines: list[str] = []
    networks = {p.network.segmentation_id: p.network for p in ports}
    for vni, network in sorted(networks.items()):
        device = vxlan_name(vni)
        lines += [
            f'    iifname "{device}" udp dport {{ 67, 68 }} drop',
            f'    oifname "{device}" udp dport {{ 67, 68 }} drop',
        ]
        gateway = network.subnet.gateway
        if gateway is not None:
            lines += [
                f'    iifname "{device}" arp daddr ip {gateway} drop',
                f'    oifname "{device}" arp saddr ip {gateway} drop',
                f'    iifname "{device}" ip daddr {gateway} drop',
                f'    oifname "{device}" ip saddr {gateway} drop',
            ]
    return lines


def render(ports: Sequence[PortSpec]) -> str:
    """The whole nftables script for these ports (a host without ports gets none)."""
    ports = sorted(ports, key=lambda p: p.port_id)
    out: list[str] = [
        # Declaring before deleting makes the delete valid when the table is new.
        f"table bridge {TABLE}",
        f"delete table bridge {TABLE}",
        f"table inet {TABLE}",
        f"delete table inet {TABLE}",
    ]
    if not ports:
        return "\n".join(out) + "\n"  # a host without ports keeps no tables of ours
    out += [
        f"table bridge {TABLE} {{",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    secured = [p for p in ports if p.port_security_enabled]
    out += [f'    iifname "{p.tap_name}" jump spoof_{_chain_id(p)}' for p in secured]
    out.append("  }")
    out += [
        "  chain overlay {",
        "    type filter hook forward priority filter; policy accept;",
        *_overlay_lines(ports),
        "  }",
    ]
    for port in secured:
        mac, ip = port.mac, port.fixed_ip
        out += [
            f"  chain spoof_{_chain_id(port)} {{",
            f"    ether saddr != {mac} drop",
            # DHCP discover/request before the guest has its address
            "    ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return",
            f"    arp saddr ether != {mac} drop",
            f"    arp saddr ip != {{ 0.0.0.0, {ip} }} drop",
            f"    ip saddr != {ip} drop",
            "    udp sport 67 drop",  # a guest is never a DHCP server
            "    ether type ip6 drop",
            "  }",
        ]
    out.append("}")
    bridges = sorted({bridge_name(p.network.segmentation_id) for p in ports})
    out += [
        f"table inet {TABLE} {{",
        "  chain prerouting {",
        "    type filter hook prerouting priority raw; policy accept;",
    ]
    out += [f'    iifname "{b}" ct zone set {b.removeprefix("nbr-")}' for b in bridges]
    out += [
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter; policy accept;",
    ]
    if bridges:
        names = "{ " + ", ".join(f'"{b}"' for b in bridges) + " }"
        out += [
            f"    iifname {names} ct state established,related accept",
            f"    iifname {names} ct state invalid drop",
        ]
    for port in secured:
        bridge, chain = bridge_name(port.network.segmentation_id), _chain_id(port)
        out.append(f'    iifname "{bridge}" ip saddr {port.fixed_ip} jump egress_{chain}')
    for port in secured:
        bridge, chain = bridge_name(port.network.segmentation_id), _chain_id(port)
        out.append(f'    oifname "{bridge}" ip daddr {port.fixed_ip} jump ingress_{chain}')
    out.append("  }")
    for port in secured:
        chain = _chain_id(port)
        out.append(f"  chain egress_{chain} {{")
        out += [
            f"    {line}" for line in _rule_lines(port.security_rules, Direction.EGRESS, "return")
        ]
        out += ["    drop", "  }", f"  chain ingress_{chain} {{",
                "    udp sport 67 udp dport 68 accept"]  # fmt: skip
        out += [
            f"    {line}" for line in _rule_lines(port.security_rules, Direction.INGRESS, "accept")
        ]
        out += ["    drop", "  }"]
    out.append("}")
    return "\n".join(out) + "\n"
