"""Time for a floating-address association to carry traffic (issue 18's benchmark).

One real guest (the tiny TCG guest, its busybox httpd on TCP 8080) on a simulated compute
host of the two-host e2e test (``tests/support/compute_hosts.py``: a network namespace with
its own libvirtd and the compute process inside), its network connected to an external
network whose bridge lives in that host's namespace; an "outside" namespace of this
benchmark stands on the external network. Each cycle associates the project's floating
address with the server and measures, from the moment AssociateFloatingIP returns, until the
first TCP connection from the outside to the address's port 8080 succeeds (a fresh connect
every 5 ms, each waiting at most 200 ms); then it disassociates and measures until the start
of the first connect that fails. The outside forgets the address's neighbour entry before
each association (a client that has not talked to it lately) and keeps Linux's ARP
retransmit of 1 s: the host's gratuitous ARP for the address it takes resolves the client's
pending entry, so no backoff of the client's own is in the figure (``arp_retrans_ms`` sets a
shorter retransmit, as the runs before the announcement had to).

Needs root, libvirt + QEMU and the tiny guest (``make guest-image``); skipped with a line
saying why where they are missing. Traffic stays in the namespaces it makes.
"""

from __future__ import annotations

import shutil
import socket
import statistics
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
from pyroute2 import IPRoute

from bench.real_guest import tiny_guest
from services.cli.manage import image_from_files, issue_token, register_image
from services.common.db.migrate import upgrade
from services.common.generated.novagrpc.v1 import (
    external_networks_pb2,
    external_networks_pb2_grpc,
    floating_ips_pb2,
    floating_ips_pb2_grpc,
    networks_pb2,
    networks_pb2_grpc,
    security_groups_pb2,
    security_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from tests.support.auth import Authed
from tests.support.compute_hosts import start_host_compute
from tests.support.libvirtd import sweep_namespaces
from tests.support.netns import attach, inside, namespaces, run_in
from tests.support.polling import wait_until
from tests.support.private_libvirtd import private_libvirtd
from tests.support.processes import ServiceSet

CYCLES = 7
OUTSIDE, BRIDGE, PORT = "203.0.113.1", "brext", 8080
CONNECT_TIMEOUT_S, POLL_S = 0.2, 0.005


def _connects(outside: str, address: str) -> bool:
    with inside(outside):  # the socket belongs to the namespace it was made in
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(CONNECT_TIMEOUT_S)
    try:
        probe.connect((address, PORT))
        return True
    except OSError:
        return False
    finally:
        probe.close()


def run_floating(
    workdir: Path, *, cycles: int = CYCLES, arp_retrans_ms: int | None = None
) -> list[dict[str, Any]]:
    """``arp_retrans_ms``: the outside client's ARP retransmit (None: the kernel's, 1 s)."""
    guest = tiny_guest()
    if isinstance(guest, str):
        print(f"floating address: skipped ({guest})")
        return []
    workdir = workdir.resolve()  # its sockets are named by absolute path
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    try:
        timings = _measure(workdir, guest, cycles, arp_retrans_ms=arp_retrans_ms)
    except RuntimeError as exc:  # no root, no libvirt: said, not hidden
        print(f"floating address: skipped ({exc})")
        return []
    conditions = (f"{cycles} associate/disassociate cycles, one tiny TCG guest on a simulated "
                  f"host (own namespace + libvirtd), outside client ARP retransmit "
                  f"{arp_retrans_ms or 1000} ms, connect every {POLL_S * 1000:.0f} ms")  # fmt: skip
    return [
        _figure("floating address: Associate returned -> first TCP connection", timings["carry"],
                conditions),
        _figure("floating address: AssociateFloatingIP call", timings["call"], conditions),
        _figure("floating address: Disassociate returned -> connections refused",
                timings["stop"], conditions),
    ]  # fmt: skip


def _figure(name: str, values: list[float], conditions: str) -> dict[str, Any]:
    return {"figure": name, "value": statistics.median(values), "unit": "s (median)",
            "range": f"min {min(values):.3f} / max {max(values):.3f}",
            "conditions": conditions}  # fmt: skip


def _set_arp_retransmit(outside: str, milliseconds: int) -> None:
    arp = f"net.ipv4.neigh.eth0.retrans_time_ms={milliseconds}"
    if run_in(outside, "sysctl", "-q", "-w", arp).returncode != 0:
        raise RuntimeError(f"could not set {arp} in the outside namespace")


def _measure(
    workdir: Path, guest: dict[str, str], cycles: int, *, arp_retrans_ms: int | None
) -> dict[str, list[float]]:
    url = f"sqlite:///{workdir / 'nova.sqlite'}"
    upgrade(url)
    register_image(url, image_from_files(
        "tiny-guest", Path(guest["kernel"]), disk_format="kernel",
        initrd=Path(guest["initrd"]), cmdline=guest["cmdline"]))  # fmt: skip
    _, token = issue_token(url, "bench")
    _, admin_token = issue_token(url, "ops", admin=True)
    services = ServiceSet(workdir)
    services.env.update({"NOVA_GRPC_DATABASE_URL": url, "NOVA_GRPC_QUOTA_INSTANCES": "-1",
                         "NOVA_GRPC_QUOTA_CORES": "-1", "NOVA_GRPC_QUOTA_RAM": "-1"})  # fmt: skip
    tag = f"bf{uuid.uuid4().hex[:4]}"
    timings: dict[str, list[float]] = {"carry": [], "call": [], "stop": []}
    with ExitStack() as stack:
        ns = stack.enter_context(namespaces("host", "outside"))
        host, outside = ns["host"], ns["outside"]
        libvirtd = stack.enter_context(private_libvirtd(host, workdir / "libvirt"))
        with IPRoute(netns=host) as ip:  # the external network's bridge on this host
            ip.link("add", ifname=BRIDGE, kind="bridge")
            ip.link("set", index=ip.link_lookup(ifname=BRIDGE)[0], state="up")
        attach(host, BRIDGE, "outv", outside, address=f"{OUTSIDE}/24")
        if arp_retrans_ms is not None:
            _set_arp_retransmit(outside, arp_retrans_ms)
        # last out: the gateway namespace compute made for the network (and its dnsmasq)
        stack.callback(sweep_namespaces, f"{tag}a-dhcp-")
        stack.callback(services.stop)
        conductor = services.start("conductor", "services.conductor",
                                   ["--listen", services.socket("conductor")])  # fmt: skip
        start_host_compute(services, "a", namespace=host, conductor=conductor,
                           libvirtd=libvirtd, tag=tag)  # fmt: skip
        api = services.start("api", "services.api", [
            "--listen", "127.0.0.1:0", "--conductor-addresses", conductor.address])  # fmt: skip
        channel = stack.enter_context(grpc.insecure_channel(api.address))
        server_id, fip = _server_with_address(channel, token, admin_token)
        floating = Authed(floating_ips_pb2_grpc.FloatingIPsStub(channel), token)
        console = workdir / "instances-a" / server_id / "console.log"
        wait_until(lambda: console.exists() and "NOVA-GRPC-READY" in console.read_text(
            errors="replace"), 300, "the guest's httpd and readiness")  # fmt: skip
        address = fip.floating_ip_address
        for _ in range(cycles):
            run_in(outside, "ip", "neigh", "flush", "to", address)
            started = time.perf_counter()
            floating.AssociateFloatingIP(floating_ips_pb2.AssociateFloatingIPRequest(
                id=fip.id, server_id=server_id), timeout=10)  # fmt: skip
            returned = time.perf_counter()
            wait_until(lambda: _connects(outside, address), 60, "traffic", interval=POLL_S)
            timings["call"].append(returned - started)
            timings["carry"].append(time.perf_counter() - returned)
            floating.DisassociateFloatingIP(
                floating_ips_pb2.DisassociateFloatingIPRequest(id=fip.id), timeout=10
            )
            returned = time.perf_counter()
            # a refused connect shows only when its timeout passes: the attempt's start counts
            attempt = returned
            while _connects(outside, address):
                if time.perf_counter() - returned > 60:
                    raise TimeoutError("the disassociation never stopped traffic")
                time.sleep(POLL_S)
                attempt = time.perf_counter()
            timings["stop"].append(attempt - returned)
        floating.ReleaseFloatingIP(floating_ips_pb2.ReleaseFloatingIPRequest(id=fip.id),
                                   timeout=10)  # fmt: skip
        servers = Authed(servers_pb2_grpc.ServersStub(channel), token)
        servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server_id), timeout=10)
        wait_until(lambda: servers.GetServer(servers_pb2.GetServerRequest(id=server_id),
                   timeout=10).status == servers_pb2.SERVER_STATUS_DELETED, 120,
                   "the delete")  # fmt: skip
    return timings


def _server_with_address(
    channel: grpc.Channel, token: str, admin_token: str
) -> tuple[str, floating_ips_pb2.FloatingIP]:
    """An ACTIVE server on a network connected to the external one, its group open on 8080,
    and a floating address of its project (not yet associated)."""
    Authed(external_networks_pb2_grpc.ExternalNetworksStub(channel), admin_token) \
        .CreateExternalNetwork(external_networks_pb2.CreateExternalNetworkRequest(
            name="bench-ext", cidr="203.0.113.0/24", gateway_ip=OUTSIDE, bridge=BRIDGE,
            allocation_pools=[networks_pb2.AllocationPool(start="203.0.113.10",
                                                          end="203.0.113.20")]),
            timeout=10)  # fmt: skip
    Authed(networks_pb2_grpc.NetworksStub(channel), token).CreateNetwork(
        networks_pb2.CreateNetworkRequest(name="bench-net", cidr="10.72.0.0/24"), timeout=10
    )
    Authed(external_networks_pb2_grpc.ExternalNetworksStub(channel), token).ConnectNetwork(
        external_networks_pb2.ConnectNetworkRequest(
            network_id="bench-net", external_network_id="bench-ext"), timeout=10)  # fmt: skip
    Authed(security_groups_pb2_grpc.SecurityGroupsStub(channel), token).CreateSecurityGroupRule(
        security_groups_pb2.CreateSecurityGroupRuleRequest(
            security_group_id="default", direction="ingress", protocol="tcp",
            port_range_min=PORT, port_range_max=PORT, remote_ip_prefix="0.0.0.0/0"),
        timeout=10)  # fmt: skip
    servers = Authed(servers_pb2_grpc.ServersStub(channel), token)
    reply = servers.CreateServer(servers_pb2.CreateServerRequest(
        name="fip", flavor_ref="m1.tiny", image_ref="tiny-guest", networks=["bench-net"]),
        timeout=10)  # fmt: skip
    server_id = str(reply.server_ids[0])

    def status() -> int:
        found = servers.GetServer(servers_pb2.GetServerRequest(id=server_id), timeout=10)
        return int(found.status)

    wait_until(lambda: status() != servers_pb2.SERVER_STATUS_BUILD, 180, "the build")
    if status() != servers_pb2.SERVER_STATUS_ACTIVE:
        raise AssertionError("the benchmark's server did not become ACTIVE")
    fip = Authed(floating_ips_pb2_grpc.FloatingIPsStub(channel), token).AllocateFloatingIP(
        floating_ips_pb2.AllocateFloatingIPRequest(external_network_id="bench-ext"), timeout=10
    )
    return server_id, fip
