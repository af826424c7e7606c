"""Network namespaces a test makes for itself: hosts and guests that only ever talk to each
other (never to the machine's own interfaces)."""

from __future__ import annotations

import errno
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError


def run_in(namespace: str, *command: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", namespace, *command], capture_output=True,
                          text=True, timeout=timeout, check=False)  # fmt: skip


@contextmanager
def namespaces(*roles: str) -> Iterator[dict[str, str]]:
    """One fresh namespace per role (unique names), all removed afterwards."""
    tag = uuid.uuid4().hex[:6]
    names = {role: f"t{tag}-{role}"[:15] for role in roles}
    for name in names.values():
        netns.create(name)
        with IPRoute(netns=name) as ip:
            ip.link("set", index=ip.link_lookup(ifname="lo")[0], state="up")
    try:
        yield names
    finally:
        for name in names.values():
            if name in netns.listnetns():
                netns.remove(name)


def attach(host: str | None, bridge: str, host_end: str, guest: str, *, mac: str = "",
           address: str = "") -> None:  # fmt: skip
    """A veth from ``guest`` (its eth0) to ``bridge`` in ``host`` (None: this machine's own
    namespace, where libvirt's taps are), as libvirt plugs a tap; the host end carries the
    tap's name so that the port's rules apply to it."""
    with IPRoute(netns=host) if host else IPRoute() as ip:
        ip.link("add", ifname=host_end, kind="veth", peer={"ifname": "eth0", "net_ns_fd": guest})
        (index,) = ip.link_lookup(ifname=host_end)
        (master,) = ip.link_lookup(ifname=bridge)
        ip.link("set", index=index, master=master, state="up")
    with IPRoute(netns=guest) as ip:
        (index,) = ip.link_lookup(ifname="eth0")
        if mac:
            ip.link("set", index=index, address=mac)
        ip.link("set", index=index, state="up")
        if address:
            network_address, prefix = address.split("/")
            ip.addr("add", index=index, address=network_address, prefixlen=int(prefix))


def detach(host_end: str) -> None:
    """Remove a veth of the machine's own namespace (its peer goes with it). Gone already is
    fine: deleting the peer's namespace removes the pair, and the kernel does that after
    ``ip netns del`` returns, so the link may vanish between the lookup and the delete."""
    with IPRoute() as ip:
        for index in ip.link_lookup(ifname=host_end):
            try:
                ip.link("del", index=index)
            except NetlinkError as exc:
                if exc.code != errno.ENODEV:
                    raise


def set_address(guest: str, old: str, new: str) -> None:
    with IPRoute(netns=guest) as ip:
        (index,) = ip.link_lookup(ifname="eth0")
        address, prefix = old.split("/")
        ip.addr("del", index=index, address=address, prefixlen=int(prefix))
        address, prefix = new.split("/")
        ip.addr("add", index=index, address=address, prefixlen=int(prefix))


@contextmanager
def inside(namespace: str) -> Iterator[None]:
    """Run the calling thread (and the processes it starts) in ``namespace``: how a test
    puts a datapath, which works in its caller's namespace, on a host of its own."""
    netns.pushns(namespace)
    try:
        yield
    finally:
        netns.popns()
