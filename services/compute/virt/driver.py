"""The hypervisor port. The compute manager only ever talks to this; LibvirtDriver implements
it (virt/libvirt), and unit tests use a hand-written fake."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from services.common.domain import PowerState
from services.common.networking import PortSpec
from services.compute.virt.metadata import ConfigDriveContent


class HypervisorError(Exception):
    """The hypervisor refused or failed an operation: another host may do better."""


class InvalidBuild(HypervisorError):
    """The build cannot work on any host (no image file, flavor smaller than the image...)."""


@dataclass(frozen=True, slots=True)
class HostResources:
    vcpus: int
    memory_mb: int
    local_gb: int
    hypervisor_type: str
    hypervisor_hostname: str
    cpu_arch: str


@dataclass(frozen=True, slots=True)
class ImageRef:
    """The image to boot: a disk file (qcow2/raw) or a kernel with its initrd in properties."""

    id: str
    name: str
    disk_format: str
    location: str
    checksum: str
    properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SpawnSpec:
    """Everything the driver needs to create one guest."""

    uuid: str
    name: str
    display_name: str
    project_id: str
    flavor_name: str
    vcpus: int
    memory_mb: int
    root_gb: int
    image: ImageRef
    created_at: datetime
    metadata: Mapping[str, str] = field(default_factory=dict)
    # One NIC per entry ("auto" is the host's default network); empty: no NIC. Used only
    # for instances recorded before ports existed; otherwise ``ports`` are the NICs.
    networks: tuple[str, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    # What the guest finds on its config drive; None: no config drive.
    config_drive: ConfigDriveContent | None = None
    # Extra blank local disks, GiB each.
    ephemeral_gb: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class DomainInfo:
    uuid: str
    name: str
    power_state: PowerState
    # Carries our metadata namespace: created by nova-grpc, so ours to reap when orphaned
    # when ``owner`` (the compute host that made it) is this host or unknown.
    managed: bool = False
    owner: str = ""

    def reapable_by(self, host: str) -> bool:
        return self.managed and self.owner in ("", host)


class VirtDriver(Protocol):
    def host_resources(self) -> HostResources: ...

    def spawn(self, spec: SpawnSpec) -> None:
        """Define and start the guest; return once the hypervisor says it runs.
        On failure, leave nothing behind and raise HypervisorError."""

    def destroy(self, uuid: str) -> bool:
        """Stop and undefine, remove the instance's files; True if there was something to
        remove. Idempotent."""

    def power_state(self, uuid: str) -> PowerState:
        """NOSTATE when the hypervisor does not know the guest."""

    def power_off(self, uuid: str, timeout: float) -> None:
        """Clean shutdown; after ``timeout`` seconds, pull the plug. Idempotent."""

    def power_on(self, uuid: str) -> None:
        """Start the defined domain and wait until it runs. Idempotent."""

    def reboot(self, uuid: str, *, hard: bool, timeout: float) -> None:
        """Soft: clean shutdown (hard after ``timeout``) then start; hard: destroy then start."""

    def list_domains(self) -> list[DomainInfo]: ...

    def instance_files(self) -> set[str]:
        """uuids that have files (disk, console log) on this host."""
