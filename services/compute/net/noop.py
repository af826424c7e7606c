"""The datapath of libvirt's test hypervisor, which has no guest to reach: nothing to plug.
Chosen by the virt type (``test``) and refused on a real hypervisor, so it can never stand
in for the Linux datapath silently. It still remembers the ports it was given, so that a
rule update reports honestly which ports this host has (and an address-set push, which
sets they name)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from services.common.networking import AddressSet, PortSpec
from services.common.overlay import HostNetworkState
from services.compute.net.address_sets import HostAddressSets


class NoopNetworkDriver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ports: dict[str, PortSpec] = {}
        self._sets = HostAddressSets()
        self.state = HostNetworkState(host="")

    def plug(self, port: PortSpec, address_sets: Sequence[AddressSet] = ()) -> None:
        with self._lock:
            self._ports[port.port_id] = port
            self._sets.take(address_sets)

    def unplug(self, port: PortSpec) -> None:
        with self._lock:
            self._ports.pop(port.port_id, None)

    def unplug_instance(self, instance_uuid: str) -> None:
        with self._lock:
            for port_id in [p.port_id for p in self._ports.values()
                            if p.instance_uuid == instance_uuid]:  # fmt: skip
                del self._ports[port_id]

    def update_rules(
        self, ports: Sequence[PortSpec], address_sets: Sequence[AddressSet] = ()
    ) -> int:
        with self._lock:
            known = [p for p in ports if p.port_id in self._ports]
            self._ports.update((p.port_id, p) for p in known)
            self._sets.take(address_sets)
            return len(known)

    def update_address_sets(self, address_sets: Sequence[AddressSet]) -> int:
        with self._lock:
            return self._sets.changed_members(address_sets, list(self._ports.values()))[1]

    def set_host_state(self, state: HostNetworkState) -> None:
        with self._lock:
            self.state = state

    def converge(self, ports: Sequence[PortSpec], address_sets: Sequence[AddressSet] = ()) -> None:
        with self._lock:
            self._sets.take(address_sets)
            self._ports = {**{p.port_id: p for p in ports}, **self._ports}
