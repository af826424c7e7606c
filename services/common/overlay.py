"""What a host's datapath needs beyond its own ports, as pure values: the other hosts sharing
each of its networks (VXLAN flood list), its networks' uplinks to external networks (SNAT)
and the floating addresses of its ports (1:1 NAT). The conductor derives one
``HostNetworkState`` per host from the database (``host_states``); compute's datapath makes
the host match it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network


def vxlan_name(segmentation_id: int) -> str:
    """The network's VXLAN device on every host ('nvx-' + at most 8 digits: 12 bytes)."""
    return f"nvx-{segmentation_id}"


@dataclass(frozen=True, slots=True)
class Uplink:
    """A network of this host connected to an external network."""

    segmentation_id: int
    bridge: str  # the external network's bridge on every host
    address: IPv4Interface  # the host's gateway address for this network (SNAT source)
    gateway: IPv4Address | None  # the external network's upstream router
    cidr: IPv4Network  # the project network's subnet


@dataclass(frozen=True, slots=True)
class FloatingBinding:
    segmentation_id: int
    floating: IPv4Address
    fixed: IPv4Address
    port_id: str


@dataclass(frozen=True, slots=True)
class HostNetworkState:
    host: str
    # VNI -> underlay addresses of the other hosts with ports on that network.
    overlay: Mapping[int, frozenset[IPv4Address]] = field(default_factory=dict)
    uplinks: tuple[Uplink, ...] = ()
    floating: tuple[FloatingBinding, ...] = ()

    def peers(self, segmentation_id: int) -> frozenset[IPv4Address]:
        return self.overlay.get(segmentation_id, frozenset())

    def uplink(self, segmentation_id: int) -> Uplink | None:
        return next((u for u in self.uplinks if u.segmentation_id == segmentation_id), None)


@dataclass(frozen=True, slots=True)
class PortPlacement:
    """A live port's network and host, with the host's underlay address (None: unknown)."""

    host: str
    segmentation_id: int
    underlay: IPv4Address | None


def overlay_of(placements: Iterable[PortPlacement]) -> dict[str, dict[int, frozenset[IPv4Address]]]:
    """Per host, per network it has ports on: the underlay addresses of the *other* hosts
    with ports on that network. A host without an underlay address can be sent nothing, so
    it is nobody's peer (its own networks still appear, with the peers it can reach)."""
    hosts_of: dict[int, dict[str, IPv4Address | None]] = defaultdict(dict)
    for p in placements:
        hosts_of[p.segmentation_id][p.host] = p.underlay
    result: dict[str, dict[int, frozenset[IPv4Address]]] = defaultdict(dict)
    for vni, hosts in hosts_of.items():
        for host, own in hosts.items():
            result[host][vni] = frozenset(
                address for other, address in hosts.items()
                if other != host and address is not None and address != own
            )  # fmt: skip
    return dict(result)
