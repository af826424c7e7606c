"""A real guest reaches outside and is reached from outside (qemu:///system, TCG, the Linux
datapath): an "outside" namespace of this test stands on an external network whose bridge
(no address on this machine) the test makes. The guest's pings arrive there from the host's
gateway address on the external network (SNAT), never from its own; the outside reaches
the guest's web server through its floating address only while a security-group rule allows
it and only while the address is associated; after the delete nothing of it stays.

Traffic stays on this machine: between the guest, the network's gateway namespace and the
outside namespace, over bridges without an address in the machine's namespace."""

from __future__ import annotations

import base64
import signal
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest
from pyroute2 import IPRoute

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
from tests.support.libvirtd import sweep
from tests.support.netns import attach, detach, namespaces, run_in
from tests.support.polling import wait_until
from tests.support.processes import ServiceSet

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

BUILD, ACTIVE = servers_pb2.SERVER_STATUS_BUILD, servers_pb2.SERVER_STATUS_ACTIVE
DELETED = servers_pb2.SERVER_STATUS_DELETED
OUTSIDE = "203.0.113.1"
COUNTERS = """table ip seen {
  chain input {
    type filter hook input priority filter; policy accept;
    ip saddr 203.0.113.0/24 icmp type echo-request counter
    ip saddr 10.68.0.0/24 counter
  }
}
"""
PING_OUT = f"""#!/bin/sh
i=0
while [ $i -lt 90 ]; do
    if ping -c 1 -W 1 {OUTSIDE} >/dev/null 2>&1; then echo NOVA-E2E-OUT-OK; break; fi
    i=$((i + 1))
done
"""


def echo_requests(outside: str) -> dict[str, int]:
    listed = run_in(outside, "nft", "list", "table", "ip", "seen").stdout
    return {
        line.split("ip saddr ")[1].split()[0]: int(line.split("counter packets ")[1].split()[0])
        for line in listed.splitlines()
        if "counter packets" in line
    }


def test_snat_out_and_a_floating_address_in_through_the_groups(  # noqa: PLR0915
    libvirtd: str, tiny_guest: dict[str, str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'nova.sqlite'}"
    upgrade(url)
    register_image(url, image_from_files(
        "tiny-guest", Path(tiny_guest["kernel"]), disk_format="kernel",
        initrd=Path(tiny_guest["initrd"]), cmdline=tiny_guest["cmdline"]))  # fmt: skip
    tag = uuid.uuid4().hex[:6]
    bridge, outside_end = f"e2ex{tag}", f"e2eo{tag}"
    with IPRoute() as ip:  # the external network's bridge on this "host": no address
        ip.link("add", ifname=bridge, kind="bridge")
        ip.link("set", index=ip.link_lookup(ifname=bridge)[0], state="up")
    services = ServiceSet(tmp_path)
    prefix = f"e2efip-{tag}"
    compute_args = [
        "--libvirt-uri", libvirtd, "--virt-type", "qemu",
        "--instance-name-template", prefix + "-%08x",
        "--network-state-path", str(tmp_path / "network"),
        "--dhcp-namespace-prefix", f"e2e{tag}-dhcp-",
    ]  # fmt: skip
    api, conductor, _computes = services.start_all_in_one(url, compute_args=compute_args)
    instances = tmp_path / "instances1"
    _, token = issue_token(url, "demo")
    _, admin_token = issue_token(url, "ops", admin=True)
    try:
        with grpc.insecure_channel(api.address) as channel, namespaces("outside") as ns:
            attach(None, bridge, outside_end, ns["outside"], address=f"{OUTSIDE}/24")
            subprocess.run(["ip", "netns", "exec", ns["outside"], "nft", "-f", "-"],
                           input=COUNTERS, text=True, check=True, timeout=20)  # fmt: skip
            servers = Authed(servers_pb2_grpc.ServersStub(channel), token)
            networks = Authed(networks_pb2_grpc.NetworksStub(channel), token)
            groups = Authed(security_groups_pb2_grpc.SecurityGroupsStub(channel), token)
            floating = Authed(floating_ips_pb2_grpc.FloatingIPsStub(channel), token)
            externals = Authed(external_networks_pb2_grpc.ExternalNetworksStub(channel), token)
            Authed(external_networks_pb2_grpc.ExternalNetworksStub(channel), admin_token) \
                .CreateExternalNetwork(external_networks_pb2.CreateExternalNetworkRequest(
                    name="e2e-ext", cidr="203.0.113.0/24", gateway_ip=OUTSIDE, bridge=bridge,
                    allocation_pools=[networks_pb2.AllocationPool(start="203.0.113.10",
                                                                  end="203.0.113.20")],
                ), timeout=10)  # fmt: skip
            networks.CreateNetwork(networks_pb2.CreateNetworkRequest(
                name="e2e-fip-net", cidr="10.68.0.0/24"), timeout=10)  # fmt: skip
            externals.ConnectNetwork(external_networks_pb2.ConnectNetworkRequest(
                network_id="e2e-fip-net", external_network_id="e2e-ext"), timeout=10)  # fmt: skip

            def get(server_id: str) -> servers_pb2.Server:
                return servers.GetServer(servers_pb2.GetServerRequest(id=server_id), timeout=10)

            script = base64.b64encode(PING_OUT.encode()).decode()
            reply = servers.CreateServer(servers_pb2.CreateServerRequest(
                name="a", flavor_ref="m1.tiny", image_ref="tiny-guest", networks=["e2e-fip-net"],
                user_data=script, min_count=2), timeout=10)  # fmt: skip
            # two servers, so that the kill -9 below finds more than one association to keep
            a, b = (get(server_id) for server_id in reply.server_ids)
            for server in (a, b):
                wait_until(lambda s=server: get(s.id).status != BUILD, 120, "build")
                assert get(server.id).status == ACTIVE, get(server.id).fault.message

            def console() -> str:
                path = instances / a.id / "console.log"
                return path.read_text(errors="replace") if path.exists() else ""

            # out: SNAT to the host's gateway address, never the guest's own
            wait_until(lambda: "NOVA-E2E-OUT-OK" in console(), 180, "the guest's ping out")
            seen = echo_requests(ns["outside"])
            assert seen["203.0.113.0/24"] >= 1 and seen["10.68.0.0/24"] == 0, seen

            # in: the guest's httpd on 8080 through its floating address
            fip, fip_b = (floating.AllocateFloatingIP(floating_ips_pb2.AllocateFloatingIPRequest(
                external_network_id="e2e-ext"), timeout=10) for _ in range(2))  # fmt: skip
            address, address_b = fip.floating_ip_address, fip_b.floating_ip_address

            def reaches(to: str = address) -> bool:
                return run_in(ns["outside"], "nc", "-z", "-w", "1", to,
                              "8080").returncode == 0  # fmt: skip

            def both_reach() -> bool:
                return reaches(address) and reaches(address_b)

            assert not reaches()
            floating.AssociateFloatingIP(floating_ips_pb2.AssociateFloatingIPRequest(
                id=fip.id, server_id=a.id), timeout=10)  # fmt: skip
            floating.AssociateFloatingIP(floating_ips_pb2.AssociateFloatingIPRequest(
                id=fip_b.id, server_id=b.id), timeout=10)  # fmt: skip
            assert [(x.addr, x.type) for x in get(a.id).addresses][-1] == (address, "floating")
            assert [(x.addr, x.type) for x in get(b.id).addresses][-1] == (address_b, "floating")
            # associated (the address answers ARP once the host has it), but the default
            # group lets in only its members
            wait_until(lambda: reaches() or "lladdr" in run_in(
                ns["outside"], "ip", "neigh", "show", address).stdout, 30,
                "the address on the host")  # fmt: skip
            assert not reaches()
            rule = groups.CreateSecurityGroupRule(
                security_groups_pb2.CreateSecurityGroupRuleRequest(
                    security_group_id="default", direction="ingress", protocol="tcp",
                    port_range_min=8080, port_range_max=8080, remote_ip_prefix="0.0.0.0/0"),
                timeout=10)  # fmt: skip
            wait_until(both_reach, 30, "the floating addresses with the rule")

            # kill -9 the compute: the kernel keeps the datapath, so the address still works;
            # the restarted process converges to the database and duplicates nothing
            killed = services.service_named("compute1")
            killed.process.send_signal(signal.SIGKILL)
            killed.process.wait(10)
            services.services.remove(killed)
            assert both_reach()
            again = services.start("compute1-again", "services.compute",
                                   services._compute_args(1, conductor, compute_args))  # fmt: skip
            wait_until(lambda: "host network state applied" in again.log(), 60, "the sync")
            assert both_reach()
            vni = (
                Authed(networks_pb2_grpc.NetworksStub(channel), admin_token)
                .GetNetwork(networks_pb2.GetNetworkRequest(id="e2e-fip-net"), timeout=10)
                .segmentation_id
            )
            gateway_ns = f"e2e{tag}-dhcp-{vni}"
            held = run_in(gateway_ns, "ip", "-4", "-o", "addr", "show", "dev", "ext0").stdout
            assert sorted(line.split()[3] for line in held.splitlines()) == sorted(
                [f"{seen_gateway(held)}/24", f"{address}/32", f"{address_b}/32"]
            ), held
            tables = run_in(gateway_ns, "nft", "list", "tables").stdout
            assert tables.count("nova_grpc_nat") == 1, tables
            nat = run_in(gateway_ns, "nft", "list", "table", "ip", "nova_grpc_nat").stdout
            assert nat.count("dnat to") == 2 and nat.count(f"daddr {address_b} ") == 1, nat
            floating.DisassociateFloatingIP(
                floating_ips_pb2.DisassociateFloatingIPRequest(id=fip_b.id), timeout=10
            )
            wait_until(lambda: not reaches(address_b), 30, "the second disassociation")
            assert reaches()  # the other association is untouched
            floating.ReleaseFloatingIP(
                floating_ips_pb2.ReleaseFloatingIPRequest(id=fip_b.id), timeout=10
            )
            floating.DisassociateFloatingIP(
                floating_ips_pb2.DisassociateFloatingIPRequest(id=fip.id), timeout=10
            )
            wait_until(lambda: not reaches(), 30, "the disassociation")
            groups.DeleteSecurityGroupRule(
                security_groups_pb2.DeleteSecurityGroupRuleRequest(id=rule.id), timeout=10
            )
            floating.ReleaseFloatingIP(
                floating_ips_pb2.ReleaseFloatingIPRequest(id=fip.id), timeout=10
            )
            for server in (a, b):
                servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id), timeout=10)
            for server in (a, b):
                wait_until(lambda s=server: get(s.id).status == DELETED, 90, "the delete")
            wait_until(lambda: "nxg-" not in run_in_host("ip", "-o", "link"), 30, "the uplink")
            assert f"e2e{tag}-dhcp-" not in run_in_host("ip", "netns", "list")
    finally:
        detach(outside_end)
        with IPRoute() as ip:
            for index in ip.link_lookup(ifname=bridge):
                ip.link("del", index=index)
        codes = services.stop()
        left = sweep(libvirtd, domain_prefix=prefix, namespace_prefix=f"e2e{tag}-dhcp-")
    assert set(codes.values()) == {0}, codes
    assert left == [], left


def seen_gateway(held: str) -> str:
    """The host's gateway address among ext0's (the one with the /24)."""
    return next(line.split()[3].split("/")[0] for line in held.splitlines() if "/24" in line)


def run_in_host(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout
