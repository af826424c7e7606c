"""LibvirtDriver against libvirt's own in-process test hypervisor (test:///default)."""

from __future__ import annotations

import dataclasses
import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.common.domain import PowerState
from services.compute.virt.driver import HypervisorError, ImageRef, SpawnSpec
from services.compute.virt.images import InstanceStorage
from services.compute.virt.libvirt.config import METADATA_NS
from services.compute.virt.libvirt.driver import LibvirtDriver, LibvirtOptions, shut_down
from services.compute.virt.libvirt.host import LibvirtHost


@pytest.fixture
def driver(tmp_path: Path) -> LibvirtDriver:
    host = LibvirtHost("test:///default")
    host.connect()
    return LibvirtDriver(
        host, InstanceStorage(tmp_path), LibvirtOptions(virt_type="test", owner="host-x")
    )


def spec(display_name: str = "web", memory_mb: int = 64) -> SpawnSpec:
    instance_uuid = str(uuid.uuid4())
    return SpawnSpec(
        uuid=instance_uuid,
        name=f"instance-{instance_uuid}",
        display_name=display_name,
        project_id="demo",
        flavor_name="m1.tiny",
        vcpus=1,
        memory_mb=memory_mb,
        root_gb=1,
        image=ImageRef("img", "nova-tiny", "raw", "", ""),
        created_at=datetime.now(UTC),
        metadata={"owner": display_name},
    )


def test_host_resources_come_from_get_info(driver: LibvirtDriver) -> None:
    resources = driver.host_resources()
    assert resources.vcpus == 16 and resources.memory_mb == 3072  # the test node's figures
    assert resources.hypervisor_type.lower() == "test"
    assert resources.local_gb > 0


def test_the_instances_directory_is_made_once_at_construction(tmp_path: Path) -> None:
    host = LibvirtHost("test:///default")
    host.connect()
    root = tmp_path / "not" / "yet"
    driver = LibvirtDriver(host, InstanceStorage(root), LibvirtOptions(virt_type="test"))
    assert root.is_dir()
    assert driver.host_resources().local_gb > 0


def test_waiting_for_a_missing_domain_to_run_raises_at_once(driver: LibvirtDriver) -> None:
    missing = str(uuid.uuid4())
    with pytest.raises(HypervisorError, match=rf"domain {missing} stopped while starting"):
        driver._wait_running(missing)


def test_waiting_for_a_shutdown_that_never_comes_gives_up(driver: LibvirtDriver) -> None:
    s = spec()
    driver.spawn(s)
    try:
        assert driver._wait_for(s.uuid, shut_down, 0.02) is False
        assert driver.power_state(s.uuid) is PowerState.RUNNING
    finally:
        driver.destroy(s.uuid)


def test_spawn_runs_the_domain_and_destroy_removes_it(driver: LibvirtDriver) -> None:
    s = spec()
    driver.spawn(s)
    assert driver.power_state(s.uuid) is PowerState.RUNNING
    (listed,) = [d for d in driver.list_domains() if d.uuid == s.uuid]
    # ours, and made by this compute host (read back from the domain's metadata)
    assert listed.managed and listed.owner == "host-x" and listed.reapable_by("host-x")
    assert not listed.reapable_by("host-y")
    assert driver.destroy(s.uuid) is True
    assert driver.power_state(s.uuid) is PowerState.NOSTATE
    assert driver.destroy(s.uuid) is False  # idempotent


def test_hostile_display_names_reach_libvirt_intact(driver: LibvirtDriver) -> None:
    hostile = "</nova:name>]]><x a='1'/> & \" ' <"
    s = spec(hostile)
    driver.spawn(s)
    try:
        domain = driver._host.connection.lookupByUUIDString(s.uuid)
        root = ET.fromstring(domain.XMLDesc(0))
        name = root.find(f"metadata/{{{METADATA_NS}}}instance/{{{METADATA_NS}}}name")
        assert name is not None and name.text == hostile
        assert root.findtext("name") == s.name
    finally:
        driver.destroy(s.uuid)


def test_a_refused_spawn_raises_and_leaves_the_other_domain_alone(
    driver: LibvirtDriver,
) -> None:
    first = spec()
    driver.spawn(first)
    clash = dataclasses.replace(first, uuid=str(uuid.uuid4()))  # same libvirt name
    try:
        with pytest.raises(HypervisorError, match="defineXML failed"):
            driver.spawn(clash)
        uuids = {d.uuid for d in driver.list_domains()}
        assert clash.uuid not in uuids and first.uuid in uuids
    finally:
        driver.destroy(first.uuid)
