"""The compute service's settings."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from datetime import timedelta
from ipaddress import IPv4Address

from services.common.addresses import require_listen, require_targets
from services.common.config import require, setting
from services.common.identity import ServiceIdentity, ServiceRole, valid_host
from services.common.service_settings import ServiceSettings
from services.compute.virt.libvirt.driver import parse_interface

VIRT_TYPES = ("test", "qemu", "kvm")
NETWORK_DRIVERS = frozenset({"", "linuxbridge", "noop"})


@dataclass(frozen=True)
class ComputeSettings(ServiceSettings):
    listen: str = setting(
        "127.0.0.1:8790",
        "Address the internal Compute service listens on: host:port, or unix:/absolute/path "
        "for a unix-domain socket (peers on this machine in another network namespace).",
    )
    advertise_address: str = setting(
        "",
        "host:port (or unix:/path) the conductor and api use to reach this service "
        "(default: the bound address).",
    )
    host: str = field(
        default_factory=socket.gethostname,
        metadata={"help": "This compute host's name, unique in the deployment (default: hostname)"},
    )
    conductor_addresses: tuple[str, ...] = setting(
        ("127.0.0.1:8780",),
        "Conductor addresses (comma-separated; unix:/absolute/path for a unix-domain socket) "
        "for reports and heartbeats.",
    )
    libvirt_uri: str = setting(
        "test:///default", "libvirt connection URI (test:///default, qemu:///system, ...)."
    )
    virt_type: str = setting(
        "test", "Domain type: test (libvirt's test driver), qemu (TCG) or kvm."
    )
    max_concurrent_builds: int = setting(
        10, "Builds running at once; more wait in a queue (Nova's default: 10)."
    )
    instances_path: str = setting(
        "var/instances", "Directory for per-instance files (disks, console logs)."
    )
    instance_name_template: str = setting(
        "instance-%08x", "libvirt domain name: instance-%08x (database id) or %(uuid)s."
    )
    availability_zone: str = setting("nova", "Availability zone this host belongs to.")
    network_interface: str = setting(
        "user", "NIC for each requested network: user (slirp), network:<name> or bridge:<name>."
    )
    network_driver: str = setting(
        "",
        "Datapath for ports: linuxbridge (a bridge per network, nftables, dnsmasq) or noop "
        "(only with virt_type test, which has no guest); empty: chosen by virt_type.",
    )
    underlay_address: str = setting(
        "",
        "This host's VXLAN endpoint (IPv4) that other hosts send shared networks' traffic to; "
        "empty: the advertised address when it is a routable IPv4 address, else the source "
        "address of the route towards the first conductor.",
    )
    dhcp_namespace_prefix: str = setting(
        "nova-dhcp-",
        "Prefix of the per-network DHCP/gateway namespaces (+ the VNI); namespaces are "
        "global to the machine, so two compute services on one machine need their own.",
    )
    network_state_path: str = setting(
        "var/network", "Directory for the datapath's state (DHCP hosts files and leases)."
    )
    cpu_allocation_ratio: float = setting(16.0, "vCPU overcommit of this host (Nova: 16.0).")
    ram_allocation_ratio: float = setting(1.5, "RAM overcommit of this host (Nova: 1.5).")
    disk_allocation_ratio: float = setting(1.0, "Disk overcommit of this host (Nova: 1.0).")
    sync_power_state_interval: timedelta = setting(
        timedelta(seconds=60),
        "Seconds between comparisons of libvirt's power states with the database's.",
    )
    build_handback_grace: timedelta = setting(
        timedelta(seconds=60),
        "After a restart, seconds to wait for builds placed here before handing back those "
        "that never arrive (they died with the previous process).",
    )
    heartbeat_interval: timedelta = setting(
        timedelta(seconds=10),
        "Seconds between heartbeats to the conductor (Nova's report_interval: 10).",
    )
    spawn_timeout: timedelta = setting(
        timedelta(seconds=300), "Seconds a domain may take to reach RUNNING before the build fails."
    )
    clean_shutdown_timeout: timedelta = setting(
        timedelta(seconds=30),
        "Seconds a guest gets to shut down cleanly on stop before it is destroyed.",
    )
    shutdown_timeout: timedelta = setting(
        timedelta(seconds=30),
        "On SIGTERM, seconds to let queued and running builds finish before exiting.",
    )
    health_listen: str = setting(
        "",
        "host:port of a plaintext gRPC port serving only health (for kubelet's probes, "
        "which cannot present a client certificate); empty: none.",
    )

    @property
    def identity(self) -> ServiceIdentity:
        """Who this service is inside: its certificate must name urn:nova-grpc:compute:HOST
        (the conductor takes reports only for the host a certificate names)."""
        return ServiceIdentity(ServiceRole.COMPUTE, self.host)

    @property
    def chosen_network_driver(self) -> str:
        if self.network_driver:
            return self.network_driver
        return "noop" if self.virt_type == "test" else "linuxbridge"

    def __post_init__(self) -> None:
        self._check()
        self.check_service()

    def _check(self) -> None:
        require_listen("listen", self.listen)
        if self.advertise_address:
            require_listen("advertise_address", self.advertise_address)
        require_targets("conductor_addresses", self.conductor_addresses)
        require(bool(self.host), "host", "must not be empty")
        require(
            self.insecure_internal or valid_host(self.host),
            "host",
            "must be a plain host name (letters, digits, '.', '_', '-'): the internal "
            "certificate names it",
        )
        require(bool(self.conductor_addresses), "conductor_addresses", "must name a conductor")
        require(self.virt_type in VIRT_TYPES, "virt_type", f"must be one of {VIRT_TYPES}")
        require(self.max_concurrent_builds >= 1, "max_concurrent_builds", "must be >= 1")
        require(self.heartbeat_interval > timedelta(0), "heartbeat_interval", "must be > 0")
        require(
            self.sync_power_state_interval > timedelta(0),
            "sync_power_state_interval",
            "must be > 0",
        )
        for name in ("cpu_allocation_ratio", "ram_allocation_ratio", "disk_allocation_ratio"):
            require(getattr(self, name) > 0, name, "must be > 0")
        require(
            self.network_driver in NETWORK_DRIVERS,
            "network_driver",
            f"must be one of {sorted(NETWORK_DRIVERS)} (empty: by virt_type)",
        )
        require(
            self.network_driver != "noop" or self.virt_type == "test",
            "network_driver",
            "noop is for libvirt's test hypervisor only: a real guest needs its datapath",
        )
        if self.underlay_address:
            try:
                IPv4Address(self.underlay_address)
            except ValueError:
                require(False, "underlay_address", "must be an IPv4 address")
        try:
            parse_interface(self.network_interface)
        except ValueError as exc:
            require(False, "network_interface", str(exc))
        try:
            if "%(uuid)" in self.instance_name_template:
                self.instance_name_template % {"uuid": "x"}
            else:
                self.instance_name_template % 1
        except (TypeError, ValueError, KeyError) as exc:
            require(False, "instance_name_template", f"is not a valid template: {exc}")
