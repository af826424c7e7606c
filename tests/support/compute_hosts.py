"""Compute hosts simulated on one machine, each as complete as a real one: a network
namespace holding the host's datapath, its own libvirtd there (``private_libvirtd.py``) and
its compute process started in the namespace, talking to the conductor over unix-domain
sockets (socket files cross network namespaces; the api and the conductor stay in the
machine's own namespace). Several hosts are joined by ``wire``: a veth pair as the physical
link, carrying the overlay between their underlay addresses."""

from __future__ import annotations

from pyroute2 import IPRoute

from tests.support.private_libvirtd import PrivateLibvirtd
from tests.support.processes import Service, ServiceSet


def wire(a: str, b: str, addresses: tuple[str, str], *, prefixlen: int = 24) -> None:
    """A veth ``phys0`` between namespaces ``a`` and ``b`` with ``addresses`` on its ends;
    MTU 1600 leaves room for VXLAN's 50 bytes around a 1500-byte frame."""
    with IPRoute(netns=a) as ip:
        ip.link("add", ifname="phys0", kind="veth", peer={"ifname": "phys0", "net_ns_fd": b})
    for name, address in zip((a, b), addresses, strict=True):
        with IPRoute(netns=name) as ip:
            (index,) = ip.link_lookup(ifname="phys0")
            ip.link("set", index=index, mtu=1600, state="up")
            ip.addr("add", index=index, address=address, prefixlen=prefixlen)


def start_host_compute(
    services: ServiceSet, host: str, *, namespace: str, conductor: Service,
    libvirtd: PrivateLibvirtd, tag: str, underlay: str = "", zone: str = "nova",
) -> Service:  # fmt: skip
    """The compute service ``compute-<host>`` of host ``host-<host>``, inside ``namespace``
    with ``libvirtd``; ``tag`` keeps its domain and DHCP namespace names apart from every
    other test's (namespace names are global to the machine)."""
    work = services.workdir
    args = [
        "--listen", services.socket(f"compute-{host}"),
        "--conductor-addresses", conductor.address,
        "--host", f"host-{host}", "--availability-zone", zone,
        "--instances-path", str(work / f"instances-{host}"),
        "--libvirt-uri", libvirtd.uri, "--virt-type", "qemu",
        "--instance-name-template", f"{tag}{host}-%08x",
        "--network-state-path", str(work / f"network-{host}"),
        "--dhcp-namespace-prefix", f"{tag}{host}-dhcp-",
    ]  # fmt: skip
    if underlay:
        args += ["--underlay-address", underlay]
    return services.start(f"compute-{host}", "services.compute", args,
                          wrapper=["nsenter", f"--net=/run/netns/{namespace}"])  # fmt: skip
