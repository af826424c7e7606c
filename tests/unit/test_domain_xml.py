from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

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

HOSTILE = [
    "<script>alert(1)</script>",
    "a & b > c < d",
    "quote \" and ' apostrophe",
    "]]><evil/><![CDATA[",
    "</nova:name></nova:instance></metadata><devices><disk/></devices>",
    "ünïcødé ✓ 日本",
]
NS = {"nova": METADATA_NS}


def config(display_name: str = "web", **overrides: object) -> DomainConfig:
    values: dict[str, object] = {
        "virt_type": "qemu",
        "name": "instance-0000002a",
        "uuid": "0b9d3a4e-2a8a-4f5e-9b1a-0c2f8b1e7d11",
        "memory_mb": 512,
        "vcpus": 2,
        "metadata": InstanceMetadata(
            display_name=display_name,
            flavor_name="m1.tiny",
            project_id="demo",
            created_at=datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
            properties={"role": display_name},
        ),
    }
    values.update(overrides)
    return DomainConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_display_names_and_metadata_stay_text(text: str) -> None:
    root = ET.fromstring(domain_xml(config(text)))
    assert root.findtext("metadata/nova:instance/nova:name", namespaces=NS) == text
    prop = root.find("metadata/nova:instance/nova:properties/nova:property", NS)
    assert prop is not None and prop.text == text and prop.get("key") == "role"
    # Nothing escaped into structure: still one name, one metadata, no devices smuggled in.
    assert root.findtext("name") == "instance-0000002a"
    assert len(root.findall("metadata")) == 1
    assert root.find("devices/disk") is None
    assert root.find(".//evil") is None


def test_resources_identity_and_kernel_boot() -> None:
    xml = domain_xml(
        config(
            direct_boot=DirectBoot("/img/vmlinuz", "/img/initrd", "console=ttyS0 panic=-1"),
            disks=[DiskConfig("/inst/disk.qcow2")],
            interfaces=[InterfaceConfig()],
            console_log="/inst/console.log",
        )
    )
    root = ET.fromstring(xml)
    assert root.get("type") == "qemu"
    assert root.findtext("uuid") == "0b9d3a4e-2a8a-4f5e-9b1a-0c2f8b1e7d11"
    memory = root.find("memory")
    assert memory is not None and memory.text == str(512 * 1024) and memory.get("unit") == "KiB"
    assert root.findtext("vcpu") == "2"
    assert root.findtext("os/kernel") == "/img/vmlinuz"
    assert root.findtext("os/cmdline") == "console=ttyS0 panic=-1"
    source = root.find("devices/disk/source")
    assert source is not None and source.get("file") == "/inst/disk.qcow2"
    assert root.find("devices/interface").get("type") == "user"  # type: ignore[union-attr]
    serial = root.find("devices/serial/source")
    assert serial is not None and serial.get("path") == "/inst/console.log"


def test_no_nic_unless_networks_are_requested() -> None:
    root = ET.fromstring(domain_xml(config()))
    assert root.find("devices/interface") is None


def test_test_driver_domain_is_minimal() -> None:
    root = ET.fromstring(domain_xml(config(virt_type="test")))
    assert root.get("type") == "test"
    assert root.find("features") is None


def test_a_ports_nic_carries_the_ports_mac() -> None:
    nic = InterfaceConfig(InterfaceKind.BRIDGE, "brq-42", mac="fa:16:3e:00:00:01")
    root = ET.fromstring(domain_xml(config(interfaces=[nic])))
    interface = root.find("devices/interface")
    assert interface is not None and interface.get("type") == "bridge"
    assert interface.find("mac").get("address") == "fa:16:3e:00:00:01"  # type: ignore[union-attr]
    assert interface.find("source").get("bridge") == "brq-42"  # type: ignore[union-attr]


def test_pty_serial_console_is_logged_and_the_agent_channel_is_there() -> None:
    root = ET.fromstring(
        domain_xml(
            config(serial=SerialConsole("/var/lib/x/console.log"), channels=(AgentChannel(),))
        )
    )
    serials = root.findall("devices/serial")
    assert [s.get("type") for s in serials] == ["pty"]
    log = serials[0].find("log")
    assert log is not None and log.get("file") == "/var/lib/x/console.log"
    assert log.get("append") == "on"
    console = root.find("devices/console")
    assert console is not None and console.get("type") == "pty"
    target = console.find("target")
    assert target is not None and target.get("type") == "serial"
    channel = root.find("devices/channel")
    assert channel is not None and channel.get("type") == "unix"
    channel_target = channel.find("target")
    assert channel_target is not None
    assert channel_target.get("name") == "org.qemu.guest_agent.0"
    assert channel_target.get("type") == "virtio"
    assert root.find("devices/serial[@type='file']") is None


def test_the_making_host_is_stamped_in_our_metadata() -> None:
    meta = InstanceMetadata("web", "m1.tiny", "p1", datetime(2026, 1, 1, tzinfo=UTC), owner="h7")
    root = ET.fromstring(domain_xml(config(metadata=meta)))
    assert root.findtext("metadata/nova:instance/nova:host", namespaces=NS) == "h7"
