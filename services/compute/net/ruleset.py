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
  A remote-group rule matches a named set of the table (``ip saddr @sg_…``), one per group
  the host's ports name, holding that group's member addresses (Neutron's ipsets): a
  group's members are written once per host, not once per port, and when only members
  change, ``render_set_elements`` rewrites those sets' elements alone, in one transaction,
  while the chains stay as they are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence

from services.common.networking import (
    AddressSet,
    Direction,
    IpProtocol,
    PortSpec,
    SecurityGroupRule,
    bridge_name,
    referenced_groups,
)
from services.common.overlay import vxlan_name

TABLE = "nova_grpc"


def _chain_id(port: PortSpec) -> str:
    return port.port_id.replace("-", "")[:16]


def set_name(group_id: str) -> str:
    """The nft set of a remote group. A group id comes from the wire and may be any string;
    a digest makes every id a valid identifier of fixed length (``sg_`` + 24 hex digits,
    under the 32 bytes older kernels allow for a set name)."""
    return "sg_" + hashlib.sha256(group_id.encode()).hexdigest()[:24]


def _match(rule: SecurityGroupRule, peer: str) -> str:
    """The nft match expression of one rule; ``peer`` is 'saddr' or 'daddr' (the remote end)."""
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
    remote = ""
    if rule.remote_group_id is not None:
        remote = f"ip {peer} @{set_name(rule.remote_group_id)}"
    elif rule.remote_cidr is not None:
        remote = f"ip {peer} {rule.remote_cidr}"
    return " ".join(p for p in (remote, proto) if p)


def _rule_lines(
    rules: Iterable[SecurityGroupRule], direction: Direction, verdict: str
) -> list[str]:
    peer = "saddr" if direction is Direction.INGRESS else "daddr"
    return [
        f"{_match(rule, peer)} {verdict}".strip()
        for rule in sorted(rules, key=lambda r: r.rule_id)
        if rule.direction is direction
    ]


def _elements(addresses: Sequence[object]) -> list[str]:
    """The members in lines of 16 (nft takes newlines inside braces; a group of thousands
    stays readable in ``nft list``)."""
    chunks = [addresses[i : i + 16] for i in range(0, len(addresses), 16)]
    return [", ".join(str(a) for a in chunk) for chunk in chunks]


def _set_lines(group_id: str, address_set: AddressSet | None) -> list[str]:
    """A group without a set here (or an empty one) gets an empty set: it matches nothing,
    as a group without members lets no one in."""
    addresses = address_set.addresses if address_set is not None else ()
    lines = [f"  set {set_name(group_id)} {{", "    type ipv4_addr"]
    if addresses:
        lines.append("    elements = { " + ",\n      ".join(_elements(addresses)) + " }")
    return [*lines, "  }"]


def render_set_elements(address_sets: Sequence[AddressSet]) -> str:
    """Replace the members of sets the table already declares, and touch nothing else: one
    ``nft -f`` transaction, so a set is never seen half-written."""
    out: list[str] = []
    for address_set in sorted(address_sets, key=lambda s: s.group_id):
        name = set_name(address_set.group_id)
        out.append(f"flush set inet {TABLE} {name}")
        if address_set.addresses:
            elements = ",\n  ".join(_elements(address_set.addresses))
            out.append(f"add element inet {TABLE} {name} {{ {elements} }}")
    return "\n".join(out) + "\n" if out else ""


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


def render(ports: Sequence[PortSpec], address_sets: Mapping[str, AddressSet] | None = None) -> str:
    """The whole nftables script for these ports (a host without ports gets none), with a
    set for every remote group their rules name, filled from ``address_sets`` (by group id;
    a group missing there gets an empty set)."""
    address_sets = address_sets or {}
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
    out.append("  }")
    for group_id in sorted(referenced_groups(secured)):
        out += _set_lines(group_id, address_sets.get(group_id))
    out += [
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
