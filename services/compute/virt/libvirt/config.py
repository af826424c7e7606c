"""Pure builder of libvirt domain XML, with ElementTree only (never string formatting), so
that display names and metadata cannot break out of their elements whatever they hold.

Reference: https://libvirt.org/formatdomain.html
"""

from __future__ import annotations

import enum
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

METADATA_NS = "http://nova-grpc.dev/xmlns/instance/1.0"
METADATA_PREFIX = "nova"

ET.register_namespace(METADATA_PREFIX, METADATA_NS)


@dataclass(frozen=True, slots=True)
class InstanceMetadata:
    """What we stamp into the domain so that an operator running ``virsh dumpxml`` sees whose
    guest it is (Nova's <nova:instance> block, in our own namespace)."""

    display_name: str
    flavor_name: str
    project_id: str
    created_at: datetime
    properties: Mapping[str, str] = field(default_factory=dict)
    # The compute host that made the domain: one libvirtd may serve several compute services
    # (a test machine, a migration), and each reaps only its own orphans.
    owner: str = ""


@dataclass(frozen=True, slots=True)
class DiskConfig:
    source_path: str
    target_dev: str = "vda"
    driver_type: str = "qcow2"
    bus: str = "virtio"
    device: str = "disk"
    readonly: bool = False


class InterfaceKind(enum.StrEnum):
    """libvirt's ``<interface type=...>``: what a guest NIC is plugged into."""

    USER = "user"  # slirp: QEMU's own user-mode network
    NETWORK = "network"  # a named libvirt network
    BRIDGE = "bridge"  # a host bridge (a port's tap, made by the network driver)


@dataclass(frozen=True, slots=True)
class InterfaceConfig:
    kind: InterfaceKind = InterfaceKind.USER
    source: str = ""
    model: str = "virtio"
    # The port's MAC; empty: libvirt picks one.
    mac: str = ""
    # The tap's name (the port's): the datapath's filter rules match it.
    target: str = ""


@dataclass(frozen=True, slots=True)
class DirectBoot:
    kernel: str
    initrd: str = ""
    cmdline: str = ""


@dataclass(frozen=True, slots=True)
class SerialConsole:
    """Serial port 0 as a ``pty`` (so that virDomainOpenConsole can attach a session to it)
    whose output virtlogd also appends to ``log_file``, attached or not (Nova's layout when
    virtlogd is there)."""

    log_file: str


@dataclass(frozen=True, slots=True)
class AgentChannel:
    """A virtio-serial port the guest opens from inside; libvirt reports the guest side
    connecting and disconnecting (VIR_DOMAIN_EVENT_ID_AGENT_LIFECYCLE) for the QEMU guest
    agent's name."""

    name: str = "org.qemu.guest_agent.0"


@dataclass(frozen=True, slots=True)
class DomainConfig:
    virt_type: str
    name: str
    uuid: str
    memory_mb: int
    vcpus: int
    metadata: InstanceMetadata
    os_arch: str = "x86_64"
    direct_boot: DirectBoot | None = None
    disks: Sequence[DiskConfig] = ()
    interfaces: Sequence[InterfaceConfig] = ()
    console_log: str = ""
    emulator: str = ""
    # Replaces the file-only console_log when set.
    serial: SerialConsole | None = None
    channels: Sequence[AgentChannel] = ()


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrib: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrib)
    if text is not None:
        element.text = text
    return element


def _metadata(parent: ET.Element, meta: InstanceMetadata) -> None:
    container = _sub(parent, "metadata")
    instance = _sub(container, f"{{{METADATA_NS}}}instance")
    _sub(instance, f"{{{METADATA_NS}}}name", meta.display_name)
    _sub(instance, f"{{{METADATA_NS}}}flavor", meta.flavor_name)
    _sub(instance, f"{{{METADATA_NS}}}project", meta.project_id)
    _sub(instance, f"{{{METADATA_NS}}}creationTime", meta.created_at.isoformat())
    if meta.owner:
        _sub(instance, f"{{{METADATA_NS}}}host", meta.owner)
    if meta.properties:
        props = _sub(instance, f"{{{METADATA_NS}}}properties")
        for key, value in sorted(meta.properties.items()):
            _sub(props, f"{{{METADATA_NS}}}property", value, key=key)


def _os(parent: ET.Element, config: DomainConfig) -> None:
    os_element = _sub(parent, "os")
    machine = {} if config.virt_type == "test" else {"machine": "pc"}
    _sub(os_element, "type", "hvm", arch=config.os_arch, **machine)
    boot = config.direct_boot
    if boot is not None:
        _sub(os_element, "kernel", boot.kernel)
        if boot.initrd:
            _sub(os_element, "initrd", boot.initrd)
        if boot.cmdline:
            _sub(os_element, "cmdline", boot.cmdline)
    else:
        _sub(os_element, "boot", dev="hd")


def _devices(parent: ET.Element, config: DomainConfig) -> None:
    devices = _sub(parent, "devices")
    if config.emulator:
        _sub(devices, "emulator", config.emulator)
    for disk in config.disks:
        element = _sub(devices, "disk", type="file", device=disk.device)
        _sub(element, "driver", name="qemu", type=disk.driver_type)
        _sub(element, "source", file=disk.source_path)
        _sub(element, "target", dev=disk.target_dev, bus=disk.bus)
        if disk.readonly:
            _sub(element, "readonly")
    for nic in config.interfaces:
        element = _sub(devices, "interface", type=nic.kind)
        if nic.mac:
            _sub(element, "mac", address=nic.mac)
        if nic.kind is InterfaceKind.NETWORK:
            _sub(element, "source", network=nic.source)
        elif nic.kind is InterfaceKind.BRIDGE:
            _sub(element, "source", bridge=nic.source)
        if nic.target:
            _sub(element, "target", dev=nic.target)
        _sub(element, "model", type=nic.model)
    if config.serial is not None:
        _serial_pty(devices, config.serial)
    elif config.console_log:
        serial = _sub(devices, "serial", type="file")
        _sub(serial, "source", path=config.console_log)
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="file")
        _sub(console, "source", path=config.console_log)
        _sub(console, "target", type="serial", port="0")
    for channel in config.channels:
        # mode bind without a path: libvirt makes the host socket under its own directory.
        element = _sub(devices, "channel", type="unix")
        _sub(element, "source", mode="bind")
        _sub(element, "target", type="virtio", name=channel.name)
    if config.virt_type != "test":
        _sub(devices, "memballoon", model="none")


def _serial_pty(devices: ET.Element, serial: SerialConsole) -> None:
    element = _sub(devices, "serial", type="pty")
    _sub(element, "log", file=serial.log_file, append="on")
    _sub(element, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")


def build_domain(config: DomainConfig) -> ET.Element:
    domain = ET.Element("domain", {"type": config.virt_type})
    _sub(domain, "name", config.name)
    _sub(domain, "uuid", config.uuid)
    _metadata(domain, config.metadata)
    _sub(domain, "memory", str(config.memory_mb * 1024), unit="KiB")
    _sub(domain, "vcpu", str(config.vcpus))
    _os(domain, config)
    if config.virt_type != "test":
        features = _sub(domain, "features")
        _sub(features, "acpi")
        _sub(domain, "on_poweroff", "destroy")
        _sub(domain, "on_reboot", "restart")
        _sub(domain, "on_crash", "destroy")
    _devices(domain, config)
    return domain


def domain_xml(config: DomainConfig) -> str:
    return ET.tostring(build_domain(config), encoding="unicode")
