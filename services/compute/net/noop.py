"""The datapath of libvirt's test hypervisor, which has no guest to reach: nothing to plug.
Chosen by the virt type (``test``) and refused on a real hypervisor, so it can never stand
in for the Linux datapath silently. It still remembers the ports it was given, so that a
rule update reports honestly which ports this host has."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from services.common.networking import PortSpec
from services.common.overlay import HostNetworkState


class NoopNetworkDriver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ports: dict[str, PortSpec] = {}
        self.state = HostNetworkState(host="")

    def plug(self, port: PortSpec) -> None:
        with self._lock:
            self._ports[port.port_id] = port

    def unplug(self, port: PortSpec) -> None:
        with self._lock:
            self._ports.pop(port.port_id, None)

    def unplug_instance(self, instance_uuid: str) -> None:
        with self._lock:
            for port_id in [p.port_id for p in self._ports.values()
                            if p.instance_uuid == instance_uuid]:  # fmt: skip
                del self._ports[port_id]

    def update_rules(self, ports: Sequence[PortSpec]) -> int:
        with self._lock:
            known = [p for p in ports if p.port_id in self._ports]
            self._ports.update((p.port_id, p) for p in known)
            return len(known)

    def set_host_state(self, state: HostNetworkState) -> None:
        with self._lock:
            self.state = state

    def converge(self, ports: Sequence[PortSpec]) -> None:
        with self._lock:
            self._ports = {**{p.port_id: p for p in ports}, **self._ports}
