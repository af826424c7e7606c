"""Two compute hosts with real guests (QEMU TCG), one network across them over VXLAN, and
another project's network on the same subnet kept apart.

Each host is a network namespace of this test with everything a compute host has
(``tests/support/compute_hosts.py``): its own libvirtd (``private_libvirtd.py``: the daemon
in the host's namespace, so the guests' taps are made there), its compute process (started
in the namespace, so its datapath — bridges, VXLAN devices, nftables, the veths of the
DHCP/gateway namespaces — is made there too) and an underlay address on ``phys0``, a veth
pair joining the two hosts: the physical wire, carrying only VXLAN between 192.168.79.1 and
.2. The api and the conductor run in the machine's own namespace; the computes and the
conductor talk over unix-domain sockets in the test's directory.

Guests A (host a) and B (host b) are on project blue's network, C (host a, beside A) on
project green's network with the same subnet; both projects' default groups let ICMP in
from anywhere, so only the networks keep C apart. From inside the guests (commands typed on
their serial consoles through the public API): A and B ping each other; C pings its own
gateway but neither A nor B, and neither reaches C. Afterwards no domain, link, namespace,
nftables table, DHCP server or QEMU process of the test is left.

Traffic stays inside the namespaces this test makes."""

from __future__ import annotations

import os
import queue
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import grpc
import pytest
from pyroute2 import IPRoute, netns

from services.cli.manage import image_from_files, issue_token, register_image
from services.common.db.migrate import upgrade
from services.common.generated.novagrpc.v1 import (
    consoles_pb2,
    consoles_pb2_grpc,
    networks_pb2,
    networks_pb2_grpc,
    security_groups_pb2,
    security_groups_pb2_grpc,
    servers_pb2,
    servers_pb2_grpc,
)
from tests.support.auth import Authed
from tests.support.compute_hosts import start_host_compute, wire
from tests.support.netns import namespaces, run_in
from tests.support.polling import wait_until
from tests.support.private_libvirtd import private_libvirtd, qemu_in
from tests.support.processes import ServiceSet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

BUILD, ACTIVE = servers_pb2.SERVER_STATUS_BUILD, servers_pb2.SERVER_STATUS_ACTIVE
DELETED = servers_pb2.SERVER_STATUS_DELETED
HOSTS = ("a", "b")
UNDERLAY = {"a": "192.168.79.1", "b": "192.168.79.2"}
CIDR, GATEWAY = "10.71.0.0/24", "10.71.0.1"
POOLS = {"blue": ("10.71.0.10", "10.71.0.19"), "green": ("10.71.0.20", "10.71.0.29")}
DATAPATH_LINKS = ("nbr-", "nvx-", "ndh-", "nxg-", "tap", "vnet")


def datapath_links(namespace: str) -> set[str]:
    with IPRoute(netns=namespace) as ip:
        names = {link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
    return {n for n in names if n.startswith(DATAPATH_LINKS)}


def in_guest(channel: grpc.Channel, token: str, server_id: str, script: str) -> str:
    """Type ``script`` (one line) on the guest's serial console and return what it printed
    up to the line ``DONE-42`` (the typed line itself says ``DONE-$((6*7))``)."""
    requests: queue.Queue[consoles_pb2.AttachConsoleRequest | None] = queue.Queue()
    requests.put(consoles_pb2.AttachConsoleRequest(
        server_id=server_id, data=f"{script}; echo DONE-$((6*7))\n".encode()))  # fmt: skip

    def typed() -> Iterator[consoles_pb2.AttachConsoleRequest]:
        while (request := requests.get()) is not None:
            yield request

    stub = Authed(consoles_pb2_grpc.ConsolesStub(channel), token)
    call = stub.AttachConsole(typed(), timeout=90)
    printed = b""
    try:
        for chunk in call:
            printed += chunk.data
            if b"DONE-42" in printed:
                break
    finally:
        requests.put(None)
        call.cancel()
    assert b"DONE-42" in printed, printed[-1000:]
    return printed.decode(errors="replace")


def probe(targets: list[str], count: int) -> str:
    """One shell line: a ping per target, each printing ``PROBE <ip> yes|no``."""
    return (f"for t in {' '.join(targets)}; do if ping -c {count} -W 1 $t >/dev/null 2>&1; "
            "then echo PROBE $t $((1))yes; else echo PROBE $t $((0))no; fi; done")  # fmt: skip


def results(printed: str) -> dict[str, bool]:
    found = {}
    for line in printed.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "PROBE" and words[2] in ("1yes", "0no"):
            found[words[1]] = words[2] == "1yes"
    return found


def dnsmasq_of(workdir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and b"dnsmasq" in cmdline and str(workdir).encode() in cmdline:
            found.append(int(entry.name))
    return found


def test_one_network_spans_two_hosts_and_another_projects_stays_apart(  # noqa: PLR0915
    tiny_guest: dict[str, str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'nova.sqlite'}"
    upgrade(url)
    register_image(url, image_from_files(
        "tiny-guest", Path(tiny_guest["kernel"]), disk_format="kernel",
        initrd=Path(tiny_guest["initrd"]), cmdline=tiny_guest["cmdline"]))  # fmt: skip
    tag = uuid.uuid4().hex[:4]
    tokens = {project: issue_token(url, project)[1] for project in ("blue", "green")}
    services = ServiceSet(tmp_path)
    services.env.update({"NOVA_GRPC_DATABASE_URL": url, "NOVA_GRPC_QUOTA_INSTANCES": "-1",
                         "NOVA_GRPC_QUOTA_CORES": "-1", "NOVA_GRPC_QUOTA_RAM": "-1"})  # fmt: skip
    with ExitStack() as stack:
        ns = stack.enter_context(namespaces("ha", "hb"))
        hosts = {h: ns[f"h{h}"] for h in HOSTS}
        wire(hosts["a"], hosts["b"], (UNDERLAY["a"], UNDERLAY["b"]))
        daemons = {h: stack.enter_context(private_libvirtd(hosts[h], tmp_path / f"libvirt-{h}"))
                   for h in HOSTS}  # fmt: skip
        codes: dict[str, int] = {}
        stack.callback(lambda: codes.update(services.stop()))
        conductor = services.start("conductor", "services.conductor",
                                   ["--listen", services.socket("conductor")])  # fmt: skip
        for h in HOSTS:
            start_host_compute(services, h, namespace=hosts[h], conductor=conductor,
                               libvirtd=daemons[h], tag=f"e2e{tag}", underlay=UNDERLAY[h],
                               zone=f"zone-{h}")  # fmt: skip
        api = services.start("api", "services.api", [
            "--listen", "127.0.0.1:0", "--conductor-addresses", conductor.address])  # fmt: skip
        channel = stack.enter_context(grpc.insecure_channel(api.address))
        servers = {p: Authed(servers_pb2_grpc.ServersStub(channel), t) for p, t in tokens.items()}

        for project, token in tokens.items():
            Authed(networks_pb2_grpc.NetworksStub(channel), token).CreateNetwork(
                networks_pb2.CreateNetworkRequest(name=f"{project}-net", cidr=CIDR,
                    allocation_pools=[networks_pb2.AllocationPool(
                        start=POOLS[project][0], end=POOLS[project][1])]),
                timeout=10)  # fmt: skip
            # only the networks may keep the projects apart, not their groups
            Authed(security_groups_pb2_grpc.SecurityGroupsStub(channel), token) \
                .CreateSecurityGroupRule(security_groups_pb2.CreateSecurityGroupRuleRequest(
                    security_group_id="default", direction="ingress", protocol="icmp",
                    remote_ip_prefix="0.0.0.0/0"), timeout=10)  # fmt: skip

        def create(project: str, name: str, host: str) -> str:
            reply = servers[project].CreateServer(servers_pb2.CreateServerRequest(
                name=name, flavor_ref="m1.tiny", image_ref="tiny-guest",
                networks=[f"{project}-net"], availability_zone=f"zone-{host}"),
                timeout=10)  # fmt: skip
            return str(reply.server_ids[0])

        # three TCG guests boot in parallel
        placed = {"A": ("blue", "a"), "B": ("blue", "b"), "C": ("green", "a")}
        ids = {name: create(project, name, host) for name, (project, host) in placed.items()}

        def get(name: str) -> servers_pb2.Server:
            return servers[placed[name][0]].GetServer(  # type: ignore[no-any-return]
                servers_pb2.GetServerRequest(id=ids[name]), timeout=10)  # fmt: skip

        def built(name: str) -> bool:
            return bool(get(name).status != BUILD)

        for name in ids:
            wait_until(partial(built, name), 180, f"{name}'s build")
            assert get(name).status == ACTIVE, get(name).fault.message
        ip = {name: get(name).addresses[0].addr for name in ids}
        assert ip["A"] != ip["C"] and ip["B"] != ip["C"], ip
        # each guest on its own host: its domain in that host's libvirtd, its tap in that
        # host's namespace, on the network's bridge there
        assert len(daemons["a"].domains()) == 2 and len(daemons["b"].domains()) == 1

        def says(name: str, line: str) -> bool:
            console = tmp_path / f"instances-{placed[name][1]}" / ids[name] / "console.log"
            return console.exists() and line in console.read_text(errors="replace")

        for name in ids:
            wait_until(partial(says, name, f"NOVA-GRPC-NET dhcp eth0 {ip[name]}"), 240,
                       f"{name}'s address by DHCP from its host")  # fmt: skip
            wait_until(partial(says, name, "NOVA-GRPC-READY"), 120, f"{name}'s readiness")
        taps = {h: {n for n in datapath_links(hosts[h]) if n.startswith("tap")} for h in HOSTS}
        assert (len(taps["a"]), len(taps["b"])) == (2, 1), taps

        def run(name: str, targets: list[str], count: int) -> dict[str, bool]:
            project = placed[name][0]
            return results(in_guest(channel, tokens[project], ids[name], probe(targets, count)))

        # A and B reach each other across the wire (the first pings wait for ARP and the
        # flood lists); C's own network works: it reaches its own host's gateway
        wait_until(lambda: run("A", [ip["B"]], 1) == {ip["B"]: True}, 120, "A reaching B")
        assert run("B", [ip["A"]], 2) == {ip["A"]: True}
        assert run("C", [GATEWAY], 2) == {GATEWAY: True}
        # ... and nothing crosses between the projects' networks, on one host or two
        assert run("C", [ip["A"], ip["B"]], 3) == {ip["A"]: False, ip["B"]: False}
        assert run("A", [ip["C"]], 3) == {ip["C"]: False}
        assert run("B", [ip["C"]], 3) == {ip["C"]: False}
        # the overlay really carried it: VXLAN between the underlay addresses on the wire
        shown = run_in(hosts["a"], "ip", "-d", "link", "show", "type", "vxlan").stdout
        assert f"local {UNDERLAY['a']}" in shown, shown

        for name, server_id in ids.items():
            servers[placed[name][0]].DeleteServer(
                servers_pb2.DeleteServerRequest(id=server_id), timeout=10)  # fmt: skip

        def deleted(name: str) -> bool:
            return bool(get(name).status == DELETED)

        def bare(host: str) -> bool:
            return not datapath_links(hosts[host])

        for name in ids:
            wait_until(partial(deleted, name), 120, f"{name}'s delete")
        for h in HOSTS:
            assert daemons[h].domains() == [], h
            wait_until(partial(bare, h), 60, f"host {h}'s datapath")
            assert "nova_grpc" not in run_in(hosts[h], "nft", "list", "tables").stdout
            assert qemu_in(hosts[h]) == []
        assert not [n for n in netns.listnetns() if n.startswith(f"e2e{tag}")]
    # after the stack: services stopped, daemons stopped, host namespaces gone
    assert codes and set(codes.values()) == {0}, codes
    assert dnsmasq_of(tmp_path) == []
    assert not [n for n in netns.listnetns() if n in hosts.values()]
    assert not list(tmp_path.glob("*.sock"))
    assert not os.path.exists(daemons["a"].socket)
