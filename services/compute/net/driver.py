"""The network driver port: what compute asks of a host's datapath, as ``virt/driver.py`` is
for the hypervisor. Implementations: the Linux bridge datapath (real hosts) and the named no-op
used with libvirt's test hypervisor (which has no guest to reach)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.common.networking import AddressSet, PortSpec
from services.common.overlay import HostNetworkState


class DatapathError(Exception):
    """The host could not make or remove part of the datapath."""


class NetworkDriver(Protocol):
    """Rules name remote groups; the members of each travel beside them as an
    ``AddressSet``, which the driver keeps (one per group, however many ports name it) and
    replaces when a newer one arrives. A group whose set the driver lacks matches nothing."""

    def plug(self, port: PortSpec, address_sets: Sequence[AddressSet] = ()) -> None:
        """Make the network's bridge (if missing), the port's tap on it, its filter rules and
        its DHCP entry. ``address_sets``: those the port's rules name, as the build carried
        them (they replace what the driver kept: a build older than the last push is made
        right by the push that follows the server becoming ACTIVE). Idempotent. Called
        before libvirt defines the domain, which then creates the port's tap on the bridge
        (``<interface type='bridge'>``, target ``port.tap_name``)."""

    def unplug(self, port: PortSpec) -> None:
        """Remove the port's tap, rules and DHCP entry; remove the network's bridge and DHCP
        server once no port on this host uses it. Idempotent."""

    def unplug_instance(self, instance_uuid: str) -> None:
        """``unplug`` every port of this instance that the driver has. Idempotent."""

    def update_rules(
        self, ports: Sequence[PortSpec], address_sets: Sequence[AddressSet] = ()
    ) -> int:
        """Replace the filter rules of these ports (security-group change) and the members
        of these address sets; ports this host does not have are ignored. Returns how many
        it had."""

    def update_address_sets(self, address_sets: Sequence[AddressSet]) -> int:
        """Replace the members of these sets, and nothing else: no port's rules are rendered
        again (a server came or went). Sets no port here names are ignored (a build brings
        its own). Returns how many of them this host's ports name."""

    def set_host_state(self, state: HostNetworkState) -> None:
        """Make the host's overlay (VXLAN flood lists), uplinks and floating addresses match
        ``state`` for the networks it has ports on (the conductor's whole view of this host,
        kept and applied again to networks plugged later). Idempotent."""

    def converge(self, ports: Sequence[PortSpec], address_sets: Sequence[AddressSet] = ()) -> None:
        """Make the host's datapath exactly these ports (plus any plugged since the driver
        was made, whose builds may postdate the inventory) with these address sets: create
        what is missing, remove every bridge, rule, set and DHCP entry this driver owns that
        no such port needs."""
