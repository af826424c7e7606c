"""The NAT of one network's gateway namespace on one host, rendered as one nftables script
(``ip`` family, run inside that namespace): state in, script out, no I/O.

A network connected to an external network has, on every host with ports on it, a leg on
the external bridge (``ext0`` in its ``nova-dhcp-N`` namespace) holding the host's gateway
address for that network. Its servers' traffic to anywhere but their own subnet is SNATed
to that address (Neutron's router gateway, kept on each host as DVR keeps floating
addresses). A floating address of a port on this host is held on the same leg and NATed 1:1
to the port's fixed address both ways. DNAT changes only the destination: the security
groups of the port (the host's inet forward hook, on the bridge) still see the outside
client's address and decide.
"""

from __future__ import annotations

from collections.abc import Sequence

from services.common.overlay import FloatingBinding, Uplink

TABLE = "nova_grpc_nat"
EXTERNAL_IFNAME = "ext0"


def render(uplink: Uplink | None, floating: Sequence[FloatingBinding]) -> str:
    """The whole script; without an uplink, one that removes the table."""
    out = [f"table ip {TABLE}", f"delete table ip {TABLE}"]
    if uplink is None:
        return "\n".join(out) + "\n"
    ext = f'"{EXTERNAL_IFNAME}"'
    bindings = sorted(floating, key=lambda f: (f.floating, f.fixed))
    out += [
        f"table ip {TABLE} {{",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
    ]
    out += [f"    iifname {ext} ip daddr {f.floating} dnat to {f.fixed}" for f in bindings]
    out += [
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    # a port with a floating address leaves as that address; every other one as the host's
    out += [f"    oifname {ext} ip saddr {f.fixed} snat to {f.floating}" for f in bindings]
    out.append(f"    oifname {ext} ip saddr {uplink.cidr} snat to {uplink.address.ip}")
    out += ["  }", "}"]
    return "\n".join(out) + "\n"


def addresses(uplink: Uplink, floating: Sequence[FloatingBinding]) -> list[str]:
    """What ``ext0`` holds: the gateway address with its prefix, each floating address as a
    /32 (so the namespace answers ARP for it on the external network)."""
    return [str(uplink.address), *sorted(f"{f.floating}/32" for f in floating)]
