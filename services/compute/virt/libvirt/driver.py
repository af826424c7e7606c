"""LibvirtDriver: the VirtDriver port on libvirt (test:///default, qemu:///system, ...)."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from services.common.domain import PowerState
from services.compute.virt.driver import (
    DomainInfo,
    HostResources,
    HypervisorError,
    SpawnSpec,
)
from services.compute.virt.libvirt.config import DomainConfig, InstanceMetadata, domain_xml
from services.compute.virt.libvirt.host import LibvirtHost

log = logging.getLogger(__name__)

# libvirt's virDomainState -> Nova's power state (Nova's LIBVIRT_POWER_STATE).
POWER_STATES = {
    0: PowerState.NOSTATE,
    1: PowerState.RUNNING,
    2: PowerState.RUNNING,  # blocked on a resource: still running
    3: PowerState.PAUSED,
    4: PowerState.SHUTDOWN,  # shutting down
    5: PowerState.SHUTDOWN,  # shut off
    6: PowerState.CRASHED,
    7: PowerState.SUSPENDED,
}
VIR_DOMAIN_RUNNING = 1


def power_state_of(libvirt_state: int | None) -> PowerState:
    if libvirt_state is None:
        return PowerState.NOSTATE
    return POWER_STATES.get(libvirt_state, PowerState.NOSTATE)


class LibvirtDriver:
    def __init__(
        self,
        host: LibvirtHost,
        *,
        virt_type: str,
        instances_path: Path,
        spawn_timeout: float = 300.0,
    ) -> None:
        self._host = host
        self._virt_type = virt_type
        self._instances_path = instances_path
        self._spawn_timeout = spawn_timeout

    def host_resources(self) -> HostResources:
        info = self._host.node_info()
        self._instances_path.mkdir(parents=True, exist_ok=True)
        disk_gb = shutil.disk_usage(self._instances_path).total // (1024**3)
        return HostResources(
            vcpus=info.cpus,
            memory_mb=info.memory_mb,
            local_gb=int(disk_gb),
            hypervisor_type=info.hypervisor_type,
            hypervisor_hostname=info.hostname,
            cpu_arch=info.cpu_model,
        )

    def domain_config(self, spec: SpawnSpec) -> DomainConfig:
        return DomainConfig(
            virt_type=self._virt_type,
            name=spec.name,
            uuid=spec.uuid,
            memory_mb=spec.memory_mb,
            vcpus=spec.vcpus,
            metadata=InstanceMetadata(
                display_name=spec.display_name,
                flavor_name=spec.flavor_name,
                project_id=spec.project_id,
                created_at=spec.created_at,
                properties=spec.metadata,
            ),
            os_arch="i686" if self._virt_type == "test" else "x86_64",
        )

    def spawn(self, spec: SpawnSpec) -> None:
        xml = domain_xml(self.domain_config(spec))
        try:
            self._host.define_and_start(xml)
            self._wait_running(spec.uuid)
        except HypervisorError:
            self._cleanup(spec.uuid)
            raise

    def _wait_running(self, uuid: str) -> None:
        deadline = time.monotonic() + self._spawn_timeout
        delay = 0.001
        while True:
            state = self._host.state(uuid)
            if state == VIR_DOMAIN_RUNNING:
                return
            if state is None or power_state_of(state) in {PowerState.CRASHED}:
                raise HypervisorError(f"domain {uuid} stopped while starting (state {state})")
            if time.monotonic() > deadline:
                raise HypervisorError(f"domain {uuid} not running after {self._spawn_timeout}s")
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _cleanup(self, uuid: str) -> None:
        try:
            self._host.destroy_and_undefine(uuid)
        except HypervisorError as exc:
            log.error("cleanup of failed spawn %s: %s", uuid, exc)

    def destroy(self, uuid: str) -> bool:
        return self._host.destroy_and_undefine(uuid)

    def power_state(self, uuid: str) -> PowerState:
        return power_state_of(self._host.state(uuid))

    def list_domains(self) -> list[DomainInfo]:
        return [
            DomainInfo(d.uuid, d.name, power_state_of(d.state)) for d in self._host.list_domains()
        ]
