"""Real guests on a real network (qemu:///system, TCG, the Linux datapath): two servers on
one network configure the addresses the API shows (one by DHCP, one from network_data.json
on its config drive) and reach each other; a client in a namespace of this test, plugged
into the network's bridge, is refused on the guest's TCP port until a rule allows it on the
running server and refused again once the rule goes; a guest that takes another address
gets nothing through; after the deletes no tap, bridge, rule, DHCP server or address stays.

Traffic stays on this machine: the bridge has no address in the machine's namespace, the
client lives in a namespace this test makes, and the network's gateway is a namespace the
datapath makes, routed nowhere."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from services.cli.manage import image_from_files, issue_token, register_image
from services.common.db.engine import Database
from services.common.db.migrate import upgrade
from services.common.db.models import PORTS
from services.common.generated.novagrpc.v1 import (
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
CIDR, POOL = "10.66.0.0/24", ("10.66.0.10", "10.66.0.100")
CLIENT = "10.66.0.200"


def ping_then_spoof(target: str) -> str:
    """Guest b's user_data: reach a, then take an address that is not its port's."""
    return f"""#!/bin/sh
i=0
while [ $i -lt 90 ]; do
    if ping -c 1 -W 1 {target} >/dev/null 2>&1; then echo NOVA-E2E-PING-OK {target}; break; fi
    i=$((i + 1))
done
NIC=$(ls /sys/class/net | grep -v '^lo$' | head -n 1)
ifconfig "$NIC" 10.66.0.250 netmask 255.255.255.0
if ping -c 3 -W 1 {target} >/dev/null 2>&1; then echo NOVA-E2E-SPOOF-REACHED
else echo NOVA-E2E-SPOOF-BLOCKED; fi
"""


def command_output(*command: str) -> str:
    return subprocess.run(command, capture_output=True, text=True, check=False).stdout


def assert_nothing_left(vni: int, client_end: str, state: Path, url: str) -> None:
    """No tap, bridge, DHCP namespace or dnsmasq state, rule or address of the network."""
    links = command_output("ip", "-o", "link")
    assert f"nbr-{vni}" not in links and client_end not in links
    assert " tap" not in links  # libvirt's taps of the ports went with the domains
    assert f"nova-dhcp-{vni}" not in command_output("ip", "netns", "list")
    assert "nova_grpc" not in command_output("nft", "list", "tables")
    assert not (state / "dhcp" / str(vni)).exists()
    db = Database(url)
    try:
        with db.begin_read() as connection:
            assert connection.execute(select(func.count()).select_from(PORTS)).scalar() == 0
    finally:
        db.close()


def test_guests_get_their_addresses_reach_each_other_and_only_what_rules_allow(  # noqa: PLR0915
    libvirtd: str, tiny_guest: dict[str, str], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'nova.sqlite'}"
    upgrade(url)
    register_image(url, image_from_files(
        "tiny-guest", Path(tiny_guest["kernel"]), disk_format="kernel",
        initrd=Path(tiny_guest["initrd"]), cmdline=tiny_guest["cmdline"]))  # fmt: skip
    services = ServiceSet(tmp_path)
    prefix = f"e2enet-{uuid.uuid4().hex[:6]}"
    api, _conductor, _computes = services.start_all_in_one(
        url,
        compute_args=[
            "--libvirt-uri", libvirtd, "--virt-type", "qemu",
            "--instance-name-template", prefix + "-%08x",
            "--network-state-path", str(tmp_path / "network"),
        ],
    )  # fmt: skip
    instances = tmp_path / "instances1"
    _, token = issue_token(url, "demo")
    _, admin_token = issue_token(url, "ops", admin=True)
    client_end = f"e2ec{uuid.uuid4().hex[:6]}"
    try:
        with grpc.insecure_channel(api.address) as channel, namespaces("client") as ns:
            servers = Authed(servers_pb2_grpc.ServersStub(channel), token)
            networks = Authed(networks_pb2_grpc.NetworksStub(channel), token)
            groups = Authed(security_groups_pb2_grpc.SecurityGroupsStub(channel), token)
            network = networks.CreateNetwork(networks_pb2.CreateNetworkRequest(
                name="e2e-net", cidr=CIDR,
                allocation_pools=[networks_pb2.AllocationPool(start=POOL[0], end=POOL[1])],
            ), timeout=10)  # fmt: skip
            vni = (
                Authed(networks_pb2_grpc.NetworksStub(channel), admin_token)
                .GetNetwork(networks_pb2.GetNetworkRequest(id=network.id), timeout=10)
                .segmentation_id
            )

            def create(name: str, **fields: object) -> servers_pb2.Server:
                reply = servers.CreateServer(servers_pb2.CreateServerRequest(
                    name=name, flavor_ref="m1.tiny", image_ref="tiny-guest", **fields),
                    timeout=10)  # type: ignore[arg-type]  # fmt: skip
                return get(reply.server_ids[0])

            def get(server_id: str) -> servers_pb2.Server:
                return servers.GetServer(servers_pb2.GetServerRequest(id=server_id), timeout=10)

            # a: DHCP (no config drive); b: network_data.json on its config drive
            a = create("a", networks=["e2e-net"])
            a_ip = a.addresses[0].addr
            script = base64.b64encode(ping_then_spoof(a_ip).encode()).decode()
            b = create("b", nics=[servers_pb2.NetworkRequest(network="e2e-net")],
                       config_drive=True, user_data=script)  # fmt: skip
            b_ip = b.addresses[0].addr
            for server in (a, b):
                wait_until(lambda s=server: get(s.id).status != BUILD, 120, "build")
                assert get(server.id).status == ACTIVE, get(server.id).fault.message

            def console(server: servers_pb2.Server) -> str:
                path = instances / server.id / "console.log"
                return path.read_text(errors="replace") if path.exists() else ""

            def says(server: servers_pb2.Server, line: str) -> bool:
                return line in console(server)

            wait_until(lambda: says(a, f"NOVA-GRPC-NET dhcp eth0 {a_ip}"), 150, "a's DHCP")
            wait_until(lambda: says(b, f"NOVA-GRPC-NET static eth0 {b_ip}"), 150, "b's address")
            # same default group: b reaches a; then, with a spoofed address, nothing
            wait_until(lambda: says(b, f"NOVA-E2E-PING-OK {a_ip}"), 150, "b pinging a")
            wait_until(lambda: "NOVA-E2E-SPOOF-" in console(b), 60, "b's spoofed ping")
            assert "NOVA-E2E-SPOOF-BLOCKED" in console(b), console(b)[-2000:]

            # a client of this test on the network: refused until a rule allows TCP 8080
            attach(None, f"nbr-{vni}", client_end, ns["client"], address=f"{CLIENT}/24")

            def web_reaches_a() -> bool:
                return run_in(ns["client"], "nc", "-z", "-w", "1", a_ip, "8080").returncode == 0

            assert not web_reaches_a()
            rule = groups.CreateSecurityGroupRule(
                security_groups_pb2.CreateSecurityGroupRuleRequest(
                    security_group_id="default", direction="ingress", protocol="tcp",
                    port_range_min=8080, port_range_max=8080, remote_ip_prefix="0.0.0.0/0"),
                timeout=10)  # fmt: skip
            wait_until(web_reaches_a, 20, "the rule on the running server")
            assert run_in(ns["client"], "ping", "-c", "1", "-W", "1", a_ip).returncode != 0
            groups.DeleteSecurityGroupRule(
                security_groups_pb2.DeleteSecurityGroupRuleRequest(id=rule.id), timeout=10
            )
            wait_until(lambda: not web_reaches_a(), 20, "the rule's removal")
            detach(client_end)

            for server in (a, b):
                servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server.id), timeout=10)
            for server in (a, b):
                wait_until(lambda s=server: get(s.id).status == DELETED, 90, "the delete")
        assert_nothing_left(vni, client_end, tmp_path / "network", url)
    finally:
        detach(client_end)
        codes = services.stop()
        left = sweep(libvirtd, domain_prefix=prefix)
    assert set(codes.values()) == {0}, codes
    assert left == [], left
