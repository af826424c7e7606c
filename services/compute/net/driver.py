"""The network driver port: what compute asks of a host's datapath, as ``virt/driver.py`` is
for the hypervisor. Implementations: the Linux bridge datapath (real hosts) and the named no-op
used with libvirt's test hypervisor (which has no guest to reach)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.common.networking import PortSpec
from services.common.overlay import HostNetworkState


class DatapathError(Exception):
    """The host could not make or remove part of the datapath."""


class NetworkDriver(Protocol):
    def plug(self, port: PortSpec) -> None:
        """Make the network's bridge (if missing), the port's tap on it, its filter rules and
        its DHCP entry. Idempotent. Called before libvirt defines the domain, which then
        creates the port's tap on the bridge (``<interface type='bridge'>``, target
        ``port.tap_name``)."""

    def unplug(self, port: PortSpec) -> None:
        """Remove the port's tap, rules and DHCP entry; remove the network's bridge and DHCP
        server once no port on this host uses it. Idempotent."""

    def unplug_instance(self, instance_uuid: str) -> None:
        """``unplug`` every port of this instance that the driver has. Idempotent."""

    def update_rules(self, ports: Sequence[PortSpec]) -> int:
        """Replace the filter rules of these ports (security-group change); ports this host
        does not have are ignored. Returns how many it had."""

    def set_host_state(self, state: HostNetworkState) -> None:
        """Make the host's overlay (VXLAN flood lists), uplinks and floating addresses match
        ``state`` for the networks it has ports on (the conductor's whole view of this host,
        kept and applied again to networks plugged later). Idempotent."""

    def converge(self, ports: Sequence[PortSpec]) -> None:
        """Make the host's datapath exactly these ports (plus any plugged since the driver
        was made, whose builds may postdate the inventory): create what is missing, remove
        every bridge, rule and DHCP entry this driver owns that no such port needs."""
