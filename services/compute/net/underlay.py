"""The host's underlay address (its VXLAN endpoint) when the settings leave it empty.

Chosen at start-up, in the composition root: the advertised address when it is a routable
IPv4 literal (the address the conductor already reaches this host at), else the source
address the kernel picks for the route towards the first conductor (a UDP ``connect`` sends
nothing). A unix-domain socket (``unix:/path``) says nothing about the network: it is
skipped. Loopback and wildcard addresses are no use to another host: then there is none,
and the host takes part in no overlay (a single-host deployment needs none).
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import IPv4Address

from services.common.addresses import is_unix


def _routable(text: str) -> IPv4Address | None:
    try:
        address = IPv4Address(text)
    except ValueError:
        return None
    if address.is_loopback or address.is_unspecified or address.is_multicast:
        return None
    return address


def _host_of(address: str) -> str:
    return address.rsplit(":", 1)[0].strip("[]") if ":" in address else address


def choose_underlay(
    configured: str, *, advertised: str, conductors: Sequence[str]
) -> IPv4Address | None:
    if configured:
        return IPv4Address(configured)
    found = None if is_unix(advertised) else _routable(_host_of(advertised))
    if found is not None:
        return found
    for conductor in conductors:
        if is_unix(conductor):
            continue
        host, _, port = conductor.rpartition(":")
        try:
            target = socket.gethostbyname(host.strip("[]"))
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((target, int(port or 0) or 9))
                found = _routable(probe.getsockname()[0])
        except (OSError, ValueError):
            continue
        if found is not None:
            return found
    return None
