"""The Linux datapath of a compute host: a bridge per network, libvirt's taps on it, the
security-group and anti-spoofing filter in nftables, and DHCP from dnsmasq.

Per network on this host (its VNI ``N``):

* bridge ``nbr-N`` with no address (guests' traffic is never routed into the host);
* with an underlay address, a VXLAN device ``nvx-N`` on the bridge flooding to the other
  hosts that have ports on the network (``overlay.py``; the conductor says which); the
  gateway's ARP and DHCP never cross it (``ruleset.py``), so each host answers its own;
* a namespace ``nova-dhcp-N`` joined to the bridge by a veth pair, holding the subnet's
  gateway address: it answers DHCP (dnsmasq, static leases for this host's ports only, every
  other MAC ignored) and is the gateway every host has for itself (as Neutron's DVR), so a
  guest never needs one special host. A subnet without a gateway gets no DHCP namespace: its
  guests learn their address from the config drive only.

Links of the host's own namespace are made with pyroute2 (netlink, in process). The DHCP
namespaces are made and configured with iproute2 (``ip netns add``, ``ip -n NS ...``) in
child processes that exec at once: pyroute2 enters another namespace by forking the service
without exec, and a forked copy of a gRPC service with an asyncio signal wake-up pipe can
stop its parent (seen: a SIGTERM to the child reached the parent's loop). The filter is
applied by ``nft -f`` with the pure renderer's script (``ruleset.py``), DHCP leases by
rewriting dnsmasq's hosts file and sending it SIGHUP. Everything happens in the calling
thread's network namespace (a test plays a host by entering one).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Interface
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from services.common.networking import AddressSet, NetworkSpec, PortSpec, bridge_name
from services.common.overlay import HostNetworkState, vxlan_name
from services.compute.net import garp, nat, overlay
from services.compute.net.address_sets import HostAddressSets
from services.compute.net.driver import DatapathError
from services.compute.net.ruleset import render, render_set_elements

log = logging.getLogger(__name__)

DHCP_NS_PREFIX = "nova-dhcp-"
NFT_TIMEOUT_S = 30
DNSMASQ_LEASE = "12h"
DNSMASQ_START_S = 10.0


def dhcp_namespace(segmentation_id: int, prefix: str = DHCP_NS_PREFIX) -> str:
    return f"{prefix}{segmentation_id}"


def _veth_name(segmentation_id: int) -> str:
    return f"ndh-{segmentation_id}"


class LinuxBridgeDriver:
    """The ``NetworkDriver`` of real hosts. Thread-safe: builds plug from the build pool."""

    def __init__(
        self,
        *,
        state_dir: Path,
        underlay: IPv4Address | None = None,
        host: str = "",
        namespace_prefix: str = DHCP_NS_PREFIX,
    ) -> None:
        # Namespace names are global to the machine: two compute hosts on one machine (a
        # test's) need prefixes of their own.
        self._ns_prefix = namespace_prefix
        # Absolute: dnsmasq changes to / before it opens its files.
        self._state_dir = state_dir.resolve()
        self._underlay = underlay  # None: no overlay (a single host)
        self._lock = threading.Lock()
        self._ports: dict[str, PortSpec] = {}
        self._sets = HostAddressSets()
        self._state = HostNetworkState(host=host)
        # Until the conductor's state first arrives (a restarted compute asks at start-up),
        # flood lists, uplinks and floating addresses already on the host are left as they
        # are: they keep carrying traffic instead of going away for a moment.
        self._state_known = False
        self._dnsmasq: dict[int, subprocess.Popen[bytes]] = {}

    # -- the NetworkDriver port ------------------------------------------------------------

    def plug(self, port: PortSpec, address_sets: Sequence[AddressSet] = ()) -> None:
        with self._lock:
            self._ports[port.port_id] = port
            self._sets.take(address_sets)
            self._ensure_network(port.network)
            self._write_dhcp_hosts(port.network)
            self._apply_rules()

    def unplug(self, port: PortSpec) -> None:
        with self._lock:
            self._ports.pop(port.port_id, None)
            if any(p.network.segmentation_id == port.network.segmentation_id
                   for p in self._ports.values()):  # fmt: skip
                self._write_dhcp_hosts(port.network)
            else:
                self._remove_network(port.network.segmentation_id)
            self._apply_rules()

    def unplug_instance(self, instance_uuid: str) -> None:
        for port in [p for p in list(self._ports.values()) if p.instance_uuid == instance_uuid]:
            self.unplug(port)

    def update_rules(
        self, ports: Sequence[PortSpec], address_sets: Sequence[AddressSet] = ()
    ) -> int:
        with self._lock:
            known = [p for p in ports if p.port_id in self._ports]
            self._ports.update((p.port_id, p) for p in known)
            if known:
                self._sets.take(address_sets)
                self._apply_rules()
            else:
                self._apply_sets(address_sets)
            return len(known)

    def update_address_sets(self, address_sets: Sequence[AddressSet]) -> int:
        with self._lock:
            return self._apply_sets(address_sets)

    def set_host_state(self, state: HostNetworkState) -> None:
        with self._lock:
            old, known = self._state, self._state_known
            self._state, self._state_known = state, True
            # Only the networks whose part changed are touched (a host with many networks
            # gets a push for every server that comes or goes anywhere on them).
            for vni, network in {p.network.segmentation_id: p.network
                                 for p in self._ports.values()}.items():  # fmt: skip
                if not known or old.peers(vni) != state.peers(vni):
                    self._ensure_overlay(network)
                if not known or _nat_part(old, vni) != _nat_part(state, vni):
                    self._ensure_uplink(network)

    def converge(self, ports: Sequence[PortSpec], address_sets: Sequence[AddressSet] = ()) -> None:
        with self._lock:
            self._sets.take(address_sets)
            # Ports plugged since this process started stay: their builds may have arrived
            # after the inventory that ``ports`` comes from was read.
            self._ports = {**{p.port_id: p for p in ports}, **self._ports}
            ports = list(self._ports.values())
            wanted = {p.network.segmentation_id: p.network for p in ports}
            for vni in self._existing_networks() - set(wanted):
                self._remove_network(vni)
            for network in wanted.values():
                self._ensure_network(network)
                self._write_dhcp_hosts(network)
            self._apply_rules()

    # -- pieces ----------------------------------------------------------------------------

    def _ipr(self) -> IPRoute:
        return IPRoute()

    def _run(self, command: list[str], *, stdin: str | None = None) -> None:
        result = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT_S,
            check=False,
        )  # fmt: skip
        if result.returncode != 0:
            raise DatapathError(f"{command[:4]} failed: {result.stderr.strip()[:500]}")

    def _apply_rules(self) -> None:
        ports = list(self._ports.values())
        self._run(["nft", "-f", "-"], stdin=render(ports, self._sets.for_render(ports)))

    def _apply_sets(self, address_sets: Sequence[AddressSet]) -> int:
        """Rewrite only the elements of the sets whose members changed (every set a port
        here names is declared by the last ``render``); the chains stay as they are."""
        changed, named = self._sets.changed_members(address_sets, list(self._ports.values()))
        if changed:
            self._run(["nft", "-f", "-"], stdin=render_set_elements(changed))
        return named

    def _ensure_network(self, network: NetworkSpec) -> None:
        vni = network.segmentation_id
        bridge = bridge_name(vni)
        try:
            with self._ipr() as ip:
                if not ip.link_lookup(ifname=bridge):
                    ip.link("add", ifname=bridge, kind="bridge")
                    # The filter depends on bridged IPv4 crossing the inet hooks.
                    self._run(["sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1"])
                (index,) = ip.link_lookup(ifname=bridge)
                ip.link("set", index=index, state="up", mtu=network.mtu)
                if network.subnet.gateway is not None:
                    self._ensure_dhcp_namespace(ip, network, index)
        except NetlinkError as exc:
            raise DatapathError(f"network {network.name} (bridge {bridge}): {exc}") from exc
        self._ensure_overlay(network)
        self._ensure_uplink(network)
        if network.subnet.gateway is not None:
            self._ensure_dnsmasq(network)

    def _ensure_uplink(self, network: NetworkSpec) -> None:
        """The gateway namespace's leg on the external network, its addresses and its NAT
        (``nat.py``); none when the network is not connected (or has no gateway)."""
        vni = network.segmentation_id
        namespace, leg = dhcp_namespace(vni, self._ns_prefix), _uplink_name(vni)
        if network.subnet.gateway is None or namespace not in _namespaces():
            return
        if not self._state_known:
            return
        uplink = self._state.uplink(vni)
        inside = ["ip", "-n", namespace]
        if uplink is None:
            if _link_exists(leg):
                self._run(["ip", "link", "del", leg])  # its peer ext0 goes with it
            self._run(["ip", "netns", "exec", namespace, "nft", "-f", "-"],
                      stdin=nat.render(None, ()))  # fmt: skip
            return
        floating = [f for f in self._state.floating if f.segmentation_id == vni]
        if not _link_exists(leg):
            self._run(["ip", "link", "add", leg, "type", "veth", "peer", "name",
                       nat.EXTERNAL_IFNAME, "netns", namespace])  # fmt: skip
        if not _link_exists(uplink.bridge):
            raise DatapathError(f"external bridge {uplink.bridge} is missing on this host")
        self._run(["ip", "link", "set", leg, "master", uplink.bridge, "up"])
        self._run([*inside, "link", "set", nat.EXTERNAL_IFNAME, "up"])
        wanted = set(nat.addresses(uplink, floating))
        shown = subprocess.run([*inside, "-j", "addr", "show", "dev", nat.EXTERNAL_IFNAME],
                               capture_output=True, text=True, timeout=NFT_TIMEOUT_S,
                               check=False)  # fmt: skip
        present = {
            f"{a['local']}/{a['prefixlen']}"
            for link in json.loads(shown.stdout or "[]")
            for a in link.get("addr_info", [])
            if a.get("family") == "inet"
        }
        for address in sorted(present - wanted):
            self._run([*inside, "addr", "del", address, "dev", nat.EXTERNAL_IFNAME])
        for address in sorted(wanted - present):
            self._run([*inside, "addr", "add", address, "dev", nat.EXTERNAL_IFNAME])
        self._run(["ip", "netns", "exec", namespace, "sysctl", "-q", "-w",
                   "net.ipv4.ip_forward=1"])  # fmt: skip
        if uplink.gateway is not None:
            self._run([*inside, "route", "replace", "default", "via", str(uplink.gateway),
                       "dev", nat.EXTERNAL_IFNAME])  # fmt: skip
        self._run(["ip", "netns", "exec", namespace, "nft", "-f", "-"],
                  stdin=nat.render(uplink, floating))  # fmt: skip
        # Only now, with the NAT in place: the neighbours that learn the new MAC send to it
        # at once, so the address must already lead somewhere.
        taken = (IPv4Interface(a).ip for a in wanted - present)
        garp.announce(namespace, nat.EXTERNAL_IFNAME, taken)

    def _ensure_overlay(self, network: NetworkSpec) -> None:
        if self._underlay is None:
            return
        vni, device = network.segmentation_id, vxlan_name(network.segmentation_id)
        if not self._state_known and _link_exists(device):
            return
        shown = subprocess.run(["ip", "-j", "-d", "link", "show", device], capture_output=True,
                               text=True, timeout=NFT_TIMEOUT_S, check=False)  # fmt: skip
        local = overlay.parse_vxlan_local(shown.stdout) if shown.returncode == 0 else None
        if shown.returncode == 0 and local != self._underlay:
            self._run(["ip", "link", "del", device])  # made for another underlay address
        if shown.returncode != 0 or local != self._underlay:
            for command in overlay.create_commands(vni, local=self._underlay, mtu=network.mtu):
                self._run(command)
        fdb = subprocess.run(["bridge", "-j", "fdb", "show", "dev", device], capture_output=True,
                             text=True, timeout=NFT_TIMEOUT_S, check=False)  # fmt: skip
        if fdb.returncode != 0:
            raise DatapathError(f"reading the flood list of {device}: {fdb.stderr.strip()}")
        for command in overlay.flood_commands(
            vni, wanted=self._state.peers(vni), present=overlay.parse_flood_list(fdb.stdout)
        ):
            self._run(command)

    def _ensure_dhcp_namespace(self, ip: IPRoute, network: NetworkSpec, bridge: int) -> None:
        vni, subnet = network.segmentation_id, network.subnet
        name, veth = dhcp_namespace(vni, self._ns_prefix), _veth_name(vni)
        if name not in _namespaces():
            self._run(["ip", "netns", "add", name])
        if not ip.link_lookup(ifname=veth):
            self._run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
                       "netns", name])  # fmt: skip
        (index,) = ip.link_lookup(ifname=veth)
        ip.link("set", index=index, master=bridge, state="up", mtu=network.mtu)
        inside = ["ip", "-n", name]
        self._run([*inside, "link", "set", "lo", "up"])
        self._run([*inside, "link", "set", "eth0", "up", "mtu", str(network.mtu)])
        self._run([*inside, "addr", "replace", f"{subnet.gateway}/{subnet.cidr.prefixlen}",
                   "dev", "eth0"])  # fmt: skip

    def _dhcp_dir(self, vni: int) -> Path:
        path = self._state_dir / "dhcp" / str(vni)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _write_dhcp_hosts(self, network: NetworkSpec) -> None:
        if network.subnet.gateway is None:
            return
        vni = network.segmentation_id
        lines = sorted(f"{p.mac},{p.fixed_ip}\n" for p in self._ports.values()
                       if p.network.segmentation_id == vni)  # fmt: skip
        hosts = self._dhcp_dir(vni) / "hosts"
        partial = hosts.with_suffix(".part")
        partial.write_text("".join(lines))
        partial.replace(hosts)
        process = self._dnsmasq.get(vni)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGHUP)  # re-reads the hosts file

    def _ensure_dnsmasq(self, network: NetworkSpec) -> None:
        vni, subnet = network.segmentation_id, network.subnet
        process = self._dnsmasq.get(vni)
        if process is not None and process.poll() is None:
            return
        directory = self._dhcp_dir(vni)
        _kill_pidfile(directory / "dnsmasq.pid")  # one left by an earlier compute process
        (directory / "hosts").touch()
        command = [
            "ip", "netns", "exec", dhcp_namespace(vni, self._ns_prefix),
            "dnsmasq", "--keep-in-foreground",
            "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--port=0",
            "--bind-interfaces", "--interface=eth0", "--except-interface=lo",
            f"--dhcp-range={subnet.cidr.network_address},static,{subnet.cidr.netmask},"
            f"{DNSMASQ_LEASE}",
            f"--dhcp-hostsfile={directory / 'hosts'}",
            # Only this host's ports get an answer: any other MAC is ignored.
            "--dhcp-ignore=tag:!known",
            "--dhcp-authoritative",
            f"--dhcp-option=option:router,{subnet.gateway}",
            f"--dhcp-option=option:mtu,{network.mtu}",
            f"--dhcp-leasefile={directory / 'leases'}",
            f"--pid-file={directory / 'dnsmasq.pid'}",
            "--user=root",
            "--group=root",
        ]  # fmt: skip
        if subnet.dns_servers:
            servers = ",".join(str(a) for a in subnet.dns_servers)
            command.append(f"--dhcp-option=option:dns-server,{servers}")
        log_file = (directory / "dnsmasq.log").open("ab")
        # Its own session: a compute restart must not take DHCP down with it; the next
        # compute finds it by its pid file.
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        log_file.close()
        self._dnsmasq[vni] = process
        # Its pid file appears once its signal handlers are set: a SIGHUP (hosts changed)
        # sent before that would kill it.
        pidfile, deadline = directory / "dnsmasq.pid", time.monotonic() + DNSMASQ_START_S
        while not pidfile.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise DatapathError(
                    f"dnsmasq for network {network.name} did not start: "
                    + (directory / "dnsmasq.log").read_text()[-500:]
                )
            time.sleep(0.01)

    def _existing_networks(self) -> set[int]:
        found: set[int] = set()
        with self._ipr() as ip:
            for link in ip.get_links():
                name = link.get_attr("IFLA_IFNAME") or ""
                if name[:4] in ("nbr-", "nvx-") and name[4:].isdigit():
                    found.add(int(name[4:]))
        for name in _namespaces():
            tail = name.removeprefix(self._ns_prefix)
            if tail != name and tail.isdigit():
                found.add(int(tail))
        return found

    def _remove_network(self, vni: int) -> None:
        process = self._dnsmasq.pop(vni, None)
        if process is not None:
            process.terminate()
            process.wait(10)
        directory = self._state_dir / "dhcp" / str(vni)
        _kill_pidfile(directory / "dnsmasq.pid")
        namespace = dhcp_namespace(vni, self._ns_prefix)
        if namespace in _namespaces():
            self._run(["ip", "netns", "del", namespace])  # takes its veth pair along
        with self._ipr() as ip:
            for name in (_veth_name(vni), _uplink_name(vni), vxlan_name(vni), bridge_name(vni)):
                for index in ip.link_lookup(ifname=name):
                    try:
                        ip.link("del", index=index)
                    except NetlinkError as exc:
                        # The veth goes with its namespace, which the kernel cleans up
                        # asynchronously: it may vanish between the lookup and the delete.
                        if exc.code != errno.ENODEV:
                            raise
        for leftover in ("hosts", "leases", "dnsmasq.pid", "dnsmasq.log", "hosts.part"):
            (directory / leftover).unlink(missing_ok=True)
        if directory.exists():
            directory.rmdir()


def _nat_part(state: HostNetworkState, vni: int) -> tuple[object, ...]:
    return (state.uplink(vni), sorted(str(f) for f in state.floating if f.segmentation_id == vni))


def _uplink_name(segmentation_id: int) -> str:
    return f"nxg-{segmentation_id}"


def _link_exists(name: str) -> bool:
    """In the calling thread's namespace (a test's host may be one: /sys would show the
    machine's own)."""
    shown = subprocess.run(["ip", "link", "show", "dev", name], capture_output=True,
                           timeout=NFT_TIMEOUT_S, check=False)  # fmt: skip
    return shown.returncode == 0


def _namespaces() -> set[str]:
    """Named network namespaces (``ip netns add`` keeps them in /run/netns)."""
    root = Path("/run/netns")
    return {p.name for p in root.iterdir()} if root.is_dir() else set()


def _kill_pidfile(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return
    if b"dnsmasq" in cmdline and str(pidfile).encode() in cmdline:
        os.kill(pid, signal.SIGTERM)
    pidfile.unlink(missing_ok=True)
