"""Gratuitous ARP for addresses a host has just taken on an external network.

When a floating address is associated with a port on this host (or moves here from another
host, or a connected network's gateway address is first set up here), the routers and hosts
on the external network may still hold the address's old MAC, or none, and would keep
sending to the old place until their neighbour entry ages out (minutes on many routers). So
the host announces each address it takes, as Neutron's l3 agent and keepalived do: a
broadcast ARP request from the address, for the address. Receivers that know the address
update its MAC at once; Linux does so even within its ``locktime`` for a gratuitous ARP.

``announcement`` is the pure frame; ``announce`` sends frames on an interface inside a
named network namespace, from a short-lived thread that enters the namespace, so the
calling thread (and the process) stay where they are.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
import threading
from collections.abc import Iterable
from ipaddress import IPv4Address
from pathlib import Path

log = logging.getLogger(__name__)

BROADCAST = b"\xff" * 6
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800
ARP_REQUEST = 1
HARDWARE_ETHERNET = 1
CLONE_NEWNET = 0x40000000
NAMESPACES = Path("/run/netns")
# Two of each, a moment apart in the kernel's queue, in case the first is lost.
REPEATS = 2


def announcement(mac: bytes, address: IPv4Address) -> bytes:
    """One Ethernet frame: a broadcast ARP request from ``address`` at ``mac`` asking for
    ``address`` itself (sender and target protocol address equal: gratuitous)."""
    if len(mac) != 6:
        raise ValueError(f"a MAC address has 6 bytes, not {len(mac)}")
    ip = address.packed
    arp = struct.pack("!HHBBH6s4s6s4s", HARDWARE_ETHERNET, ETH_P_IP, 6, 4, ARP_REQUEST,
                      mac, ip, b"\x00" * 6, ip)  # fmt: skip
    return BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def announce(namespace: str, ifname: str, addresses: Iterable[IPv4Address]) -> None:
    """Send a gratuitous ARP for each address on ``ifname`` in ``namespace``. Best effort: a
    failure is logged, never raised, since the address works without it (the neighbours
    learn it when their entries age out)."""
    wanted = sorted(set(addresses))
    if not wanted:
        return
    failure: list[BaseException] = []

    def send() -> None:
        try:
            fd = os.open(NAMESPACES / namespace, os.O_RDONLY)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
                s.bind((ifname, 0))
                mac = s.getsockname()[4]
                for _ in range(REPEATS):
                    for address in wanted:
                        s.send(announcement(mac, address))
        except OSError as exc:
            failure.append(exc)

    # A thread of its own: entering a namespace changes only the calling thread, and this
    # one ends right after, so no other work ever runs in the namespace by accident.
    sender = threading.Thread(target=send, name=f"garp-{namespace}", daemon=True)
    sender.start()
    sender.join()
    if failure:
        log.warning("could not announce %s on %s in %s: %s",
                    ", ".join(map(str, wanted)), ifname, namespace, failure[0])  # fmt: skip


def _setns(fd: int) -> None:
    # os.setns arrived in Python 3.12; libc's setns(2) serves 3.11.
    setns = getattr(os, "setns", None)
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    import ctypes  # noqa: PLC0415 - only on Pythons without os.setns

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))
