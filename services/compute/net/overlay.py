"""The VXLAN side of a network on one host, rendered as iproute2 commands: state in,
commands out, no I/O (as ``ruleset.py``). The Linux datapath runs them and reads back what
the kernel has (``parse_flood_list``).

One VXLAN device per network (``nvx-<VNI>``, VNI = the network's segmentation id) on the
network's bridge, sending from the host's underlay address. Broadcast, unknown unicast and
multicast go by head-end replication: one all-zero forwarding entry per peer host (the
hosts that have ports on the network), so no multicast is needed in the underlay. The
device learns which peer has which guest MAC from what it receives (as Linux bridges do),
so unicast after the first exchange goes to one host only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from ipaddress import IPv4Address

from services.common.networking import bridge_name
from services.common.overlay import vxlan_name

VXLAN_PORT = 4789  # IANA's VXLAN port
FLOOD_MAC = "00:00:00:00:00:00"


def create_commands(segmentation_id: int, *, local: IPv4Address, mtu: int) -> list[list[str]]:
    """Make the device and put it on the network's bridge (the bridge exists)."""
    device = vxlan_name(segmentation_id)
    return [
        ["ip", "link", "add", device, "type", "vxlan", "id", str(segmentation_id),
         "local", str(local), "dstport", str(VXLAN_PORT)],
        ["ip", "link", "set", device, "master", bridge_name(segmentation_id),
         "mtu", str(mtu), "up"],
    ]  # fmt: skip


def flood_commands(
    segmentation_id: int, *, wanted: Iterable[IPv4Address], present: Iterable[IPv4Address]
) -> list[list[str]]:
    """Add the peers that are missing from the flood list and remove the ones that left."""
    device = vxlan_name(segmentation_id)
    want, have = set(wanted), set(present)
    commands = [
        ["bridge", "fdb", "append", FLOOD_MAC, "dev", device, "dst", str(peer)]
        for peer in sorted(want - have)
    ]
    commands += [
        ["bridge", "fdb", "del", FLOOD_MAC, "dev", device, "dst", str(peer)]
        for peer in sorted(have - want)
    ]
    return commands


def parse_flood_list(fdb_json: str) -> frozenset[IPv4Address]:
    """The all-zero entries' destinations in ``bridge -j fdb show dev <device>``."""
    entries = json.loads(fdb_json or "[]")
    return frozenset(
        IPv4Address(e["dst"]) for e in entries if e.get("mac") == FLOOD_MAC and "dst" in e
    )


def parse_vxlan_local(link_json: str) -> IPv4Address | None:
    """The local address of a VXLAN device in ``ip -j -d link show <device>``."""
    for link in json.loads(link_json or "[]"):
        local = link.get("linkinfo", {}).get("info_data", {}).get("local")
        if local:
            return IPv4Address(local)
    return None
