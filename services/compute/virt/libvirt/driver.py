"""LibvirtDriver: the VirtDriver port on libvirt (test:///default, qemu:///system, ...)."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from services.common.domain import PowerState
from services.compute.virt.driver import (
    DomainInfo,
    HostResources,
    HypervisorError,
    InvalidBuild,
    SpawnSpec,
)
from services.compute.virt.images import CachedImage, InstanceFiles, InstanceStorage
from services.compute.virt.libvirt.config import (
    METADATA_NS,
    AgentChannel,
    DirectBoot,
    DiskConfig,
    DomainConfig,
    InstanceMetadata,
    InterfaceConfig,
    InterfaceKind,
    SerialConsole,
    domain_xml,
)
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


def shut_down(libvirt_state: int | None) -> bool:
    return power_state_of(libvirt_state) is PowerState.SHUTDOWN


def parse_interface(setting: str) -> InterfaceConfig:
    """``user`` | ``network:<name>`` | ``bridge:<name>`` (the compute setting)."""
    kind, _, source = setting.partition(":")
    if kind == InterfaceKind.USER and not source:
        return InterfaceConfig(InterfaceKind.USER)
    if kind in {InterfaceKind.NETWORK, InterfaceKind.BRIDGE} and source:
        return InterfaceConfig(InterfaceKind(kind), source)
    raise ValueError(f"network_interface {setting!r}: use user, network:<name> or bridge:<name>")


@dataclass(frozen=True, slots=True)
class LibvirtOptions:
    virt_type: str
    spawn_timeout: float = 300.0
    interface: InterfaceConfig = field(default_factory=InterfaceConfig)
    emulator: str = ""
    # This compute host's name, stamped into each domain it makes.
    owner: str = ""


class LibvirtDriver:
    def __init__(
        self, host: LibvirtHost, storage: InstanceStorage, options: LibvirtOptions
    ) -> None:
        self._host = host
        self._storage = storage
        self._options = options
        # Once, when the service starts: every heartbeat measures this directory's disk.
        storage.root.mkdir(parents=True, exist_ok=True)

    @property
    def host(self) -> LibvirtHost:
        return self._host

    @property
    def storage(self) -> InstanceStorage:
        return self._storage

    @property
    def virt_type(self) -> str:
        return self._options.virt_type

    def host_resources(self) -> HostResources:
        info = self._host.node_info()
        disk_gb = shutil.disk_usage(self._storage.root).total // (1024**3)
        return HostResources(
            vcpus=info.cpus,
            memory_mb=info.memory_mb,
            local_gb=int(disk_gb),
            hypervisor_type=info.hypervisor_type,
            hypervisor_hostname=info.hostname,
            cpu_arch=info.cpu_model,
        )

    def domain_config(
        self, spec: SpawnSpec, files: InstanceFiles, image: CachedImage | None
    ) -> DomainConfig:
        is_test = self._options.virt_type == "test"
        boot = None
        if image is not None and image.kernel is not None:
            initrd = str(image.initrd) if image.initrd else ""
            boot = DirectBoot(str(image.kernel), initrd, image.cmdline)
        disks = [DiskConfig(str(files.disk))] if files.disk is not None else []
        for index, path in enumerate(files.ephemeral):
            disks.append(DiskConfig(str(path), target_dev=f"vd{chr(ord('b') + index)}"))
        if files.config_drive is not None:
            # IDE on the pc machine type, as Nova: the Debian cloud kernel has no AHCI (SATA).
            disks.append(
                DiskConfig(str(files.config_drive), target_dev="hdc", driver_type="raw",
                           bus="ide", device="cdrom", readonly=True)
            )  # fmt: skip
        return DomainConfig(
            virt_type=self._options.virt_type,
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
                owner=self._options.owner,
            ),
            os_arch="i686" if is_test else "x86_64",
            direct_boot=boot,
            disks=disks,
            interfaces=self._interfaces(spec),
            serial=None if is_test else SerialConsole(str(files.console_log)),
            channels=() if is_test else (AgentChannel(),),
            emulator=self._options.emulator,
        )

    def _interfaces(self, spec: SpawnSpec) -> list[InterfaceConfig]:
        """One NIC per port: the port's tap (its name, its MAC) on its network's bridge,
        which the network driver made before the domain is defined. Instances recorded
        before ports existed keep the host's NIC setting."""
        if not spec.ports:
            return [self._interface(network) for network in spec.networks]
        return [
            InterfaceConfig(InterfaceKind.BRIDGE, port.network.bridge,
                            self._options.interface.model, mac=port.mac, target=port.tap_name)
            for port in sorted(spec.ports, key=lambda p: p.device_index)
        ]  # fmt: skip

    def _interface(self, network: str) -> InterfaceConfig:
        """``auto`` is the host's default NIC; a named network is a libvirt network of that
        name when the host uses libvirt networks, else the host's default."""
        default = self._options.interface
        if network == "auto" or default.kind is not InterfaceKind.NETWORK:
            return default
        return InterfaceConfig(InterfaceKind.NETWORK, network, default.model)

    def _image(self, spec: SpawnSpec) -> CachedImage | None:
        if not spec.image.location:
            if self._options.virt_type == "test":
                return None  # libvirt's test driver never reads a disk
            raise InvalidBuild(f"image {spec.image.name} has no file to boot from")
        return self._storage.images.fetch(spec.image)

    def spawn(self, spec: SpawnSpec) -> None:
        try:
            image = self._image(spec)
            files = self._storage.prepare(spec.uuid, image, spec.root_gb)
            files = self._storage.extras(
                files, ephemeral_gb=spec.ephemeral_gb, config_drive=spec.config_drive
            )
            self._host.define_and_start(domain_xml(self.domain_config(spec, files, image)))
            self._wait_running(spec.uuid)
        except HypervisorError:
            self._cleanup(spec.uuid)
            raise
        except Exception as exc:
            self._cleanup(spec.uuid)
            raise HypervisorError(f"{type(exc).__name__}: {exc}") from exc

    def _wait_running(self, uuid: str) -> None:
        def started(state: int | None) -> bool:
            # libvirt's RUNNING exactly, not Nova's RUNNING (which also counts BLOCKED).
            if state == VIR_DOMAIN_RUNNING:
                return True
            if state is None or power_state_of(state) is PowerState.CRASHED:
                raise HypervisorError(f"domain {uuid} stopped while starting (state {state})")
            return False

        timeout = self._options.spawn_timeout
        # A fresh domain usually runs at once: poll sooner and more often than a shutdown.
        if not self._wait_for(uuid, started, timeout, delay=0.001, max_delay=0.25):
            raise HypervisorError(f"domain {uuid} not running after {timeout:.0f}s")

    def _cleanup(self, uuid: str) -> None:
        try:
            self.destroy(uuid)
        except HypervisorError as exc:
            log.error("cleanup of failed spawn %s: %s", uuid, exc)

    def destroy(self, uuid: str) -> bool:
        had_domain = self._host.destroy_and_undefine(uuid)
        had_files = self._storage.remove(uuid)
        return had_domain or had_files

    def power_state(self, uuid: str) -> PowerState:
        return power_state_of(self._host.state(uuid))

    def _wait_for(
        self,
        uuid: str,
        reached: Callable[[int | None], bool],
        timeout: float,
        *,
        delay: float = 0.005,
        max_delay: float = 0.5,
    ) -> bool:
        """Poll the domain's libvirt state with a growing delay until ``reached`` (True) or
        ``timeout`` has passed (False); ``reached`` may raise to give up early."""
        deadline = time.monotonic() + timeout
        while not reached(self._host.state(uuid)):
            if time.monotonic() > deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, max_delay)
        return True

    def power_off(self, uuid: str, timeout: float) -> None:
        self._host.shutdown(uuid)
        if not self._wait_for(uuid, shut_down, timeout):
            # The guest ignored ACPI (the tiny guest has no ACPI daemon): as Nova does after
            # its clean-shutdown timeout, destroy it.
            log.info("domain %s did not shut down in %.0fs; destroying it", uuid, timeout)
            self._host.destroy(uuid)
            self._wait_for(uuid, shut_down, 30)

    def power_on(self, uuid: str) -> None:
        self._host.start(uuid)
        self._wait_running(uuid)

    def reboot(self, uuid: str, *, hard: bool, timeout: float) -> None:
        if hard:
            self._host.destroy(uuid)
            self._wait_for(uuid, shut_down, 30)
        else:
            self.power_off(uuid, timeout)
        self.power_on(uuid)

    def list_domains(self) -> list[DomainInfo]:
        return [
            DomainInfo(d.uuid, d.name, power_state_of(d.state), d.managed, d.owner)
            for d in self._host.list_domains(METADATA_NS)
        ]

    def instance_files(self) -> set[str]:
        return self._storage.known_instances()
