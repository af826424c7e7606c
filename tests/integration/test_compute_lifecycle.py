"""The compute service's build and delete paths on libvirt's test hypervisor with real disks
(qemu-img overlays), real claims and real gRPC."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from datetime import timedelta
from pathlib import Path

import grpc
import pytest
from sqlalchemy import func, select

from services.cli.manage import image_from_files, register_image
from services.common.db.engine import Database
from services.common.db.models import ALLOCATIONS
from services.common.generated.novagrpc.v1 import servers_pb2
from services.compute.virt.driver import SpawnSpec, VirtDriver
from services.compute.virt.images import qemu_img
from services.compute.virt.libvirt.driver import LibvirtDriver
from services.compute.virt.libvirt.host import LibvirtHost
from tests.integration.test_pipeline import create, wait_for_compute
from tests.support.polling import wait_until_async
from tests.support.stack import running_stack

pytestmark = pytest.mark.timeout(60)


def base_image(tmp_path: Path, database_url: str, name: str = "disk-image") -> str:
    path = tmp_path / "base.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    register_image(database_url, image_from_files(name, path, disk_format="qcow2"))
    return name


async def allocations(database_url: str) -> int:
    db = Database(database_url)
    try:
        return int(
            await db.read(
                lambda c: c.execute(select(func.count()).select_from(ALLOCATIONS)).scalar()
            )
        )
    finally:
        db.close()


def domain_exists(uuid: str) -> bool:
    host = LibvirtHost("test:///default")
    host.connect()
    try:
        return host.state(uuid) is not None
    finally:
        host.close()


async def test_each_instance_gets_an_overlay_and_delete_removes_everything(
    sqlite_url: str, tmp_path: Path
) -> None:
    image = base_image(tmp_path, sqlite_url)
    async with running_stack(sqlite_url, tmp_path) as stack:
        await wait_for_compute(sqlite_url)
        reply = await stack.servers.CreateServer(create(image_ref=image), timeout=5)
        server_id = reply.server_ids[0]
        await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_ACTIVE)
        disk = tmp_path / "instances0" / server_id / "disk"
        info = json.loads(await asyncio.to_thread(qemu_img, "info", "--output=json", str(disk)))
        assert info["format"] == "qcow2"
        assert info["virtual-size"] == 1024**3  # m1.tiny's root disk, not the image's 64 MiB
        assert "/_base/" in info["backing-filename"]
        assert domain_exists(server_id)
        assert (await stack.compute_status()).claimed_memory_mb == 512

        await stack.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=server_id), timeout=5)
        await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_DELETED)
        assert not disk.parent.exists()
        assert not domain_exists(server_id)
        assert await allocations(sqlite_url) == 0
        status = await stack.compute_status()
        assert (status.instances, status.claimed_memory_mb) == (0, 0)
        listed = await stack.servers.ListServers(servers_pb2.ListServersRequest(), timeout=5)
        assert server_id not in {s.id for s in listed.servers}


async def test_a_failing_spawn_leaves_no_domain_disk_or_claim(
    sqlite_url: str, tmp_path: Path
) -> None:
    image = base_image(tmp_path, sqlite_url)
    template = f"t-{tmp_path.name}-%08x"
    clash = LibvirtHost("test:///default")
    clash.connect()
    # A domain already holds the name the first instance will get: defineXML must refuse.
    squatter = clash.connection.defineXML(
        f"<domain type='test'><name>{template % 1}</name><memory>65536</memory>"
        "<os><type>hvm</type></os></domain>"
    )
    try:
        async with running_stack(sqlite_url, tmp_path, name_template=template) as stack:
            await wait_for_compute(sqlite_url)
            reply = await stack.servers.CreateServer(create(image_ref=image), timeout=5)
            server_id = reply.server_ids[0]
            server = await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_ERROR)
            assert "defineXML failed" in server.fault.message
            assert not (tmp_path / "instances0" / server_id).exists()
            assert not domain_exists(server_id)
            assert await allocations(sqlite_url) == 0
            status = await stack.compute_status()
            assert (status.claimed_memory_mb, status.builds_failed) == (0, 1)
    finally:
        squatter.undefine()
        clash.close()


class GatedDriver:
    """The real driver behind a gate: spawns wait until the test opens it."""

    def __init__(self, real: LibvirtDriver) -> None:
        self.real = real
        self.gate = threading.Event()
        self.waiting = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)

    def spawn(self, spec: SpawnSpec) -> None:
        self.waiting.set()
        self.gate.wait(20)
        self.real.spawn(spec)


async def test_delete_during_build_and_in_error(sqlite_url: str, tmp_path: Path) -> None:
    gated: list[GatedDriver] = []

    def wrap(real: LibvirtDriver) -> VirtDriver:
        gated.append(GatedDriver(real))
        return gated[0]  # type: ignore[return-value]

    async with running_stack(sqlite_url, tmp_path, wrap_driver=wrap) as stack:
        stack.on_exit(gated[0].gate.set)  # never leave a spawn parked at shutdown
        await wait_for_compute(sqlite_url)
        building = (await stack.servers.CreateServer(create("slow"), timeout=5)).server_ids[0]
        assert await asyncio.to_thread(gated[0].waiting.wait, 10), "the build never started"

        async def reported() -> servers_pb2.Server | None:
            shown = await stack.servers.GetServer(
                servers_pb2.GetServerRequest(id=building), timeout=5
            )
            return shown if shown.task_state == "spawning" else None

        # the spawning report lands a moment after the spawn starts
        server = await wait_until_async(reported, 10, "the spawning report")
        assert server is not None
        assert server.status == servers_pb2.SERVER_STATUS_BUILD and server.task_state == "spawning"
        await stack.servers.DeleteServer(servers_pb2.DeleteServerRequest(id=building), timeout=5)
        gated[0].gate.set()  # the build finishes; the queued terminate then removes it
        await stack.wait_status(building, servers_pb2.SERVER_STATUS_DELETED)
        assert not domain_exists(building)

        # nine m1.tiny fill the test node; the next three end in ERROR with no valid host
        reply = await stack.servers.CreateServer(create("fill", max_count=12), timeout=5)
        settled = await stack.wait_settled(list(reply.server_ids))
        failed = [s.id for s in settled if s.status == servers_pb2.SERVER_STATUS_ERROR]
        assert len(failed) == 3
        for server_id in reply.server_ids:  # ERROR and ACTIVE alike
            await stack.servers.DeleteServer(
                servers_pb2.DeleteServerRequest(id=server_id), timeout=5
            )
        for server_id in reply.server_ids:
            await stack.wait_status(server_id, servers_pb2.SERVER_STATUS_DELETED)
            assert not domain_exists(server_id)
        assert await allocations(sqlite_url) == 0

        with pytest.raises(grpc.aio.AioRpcError) as caught:  # deleted means gone for delete
            await stack.servers.DeleteServer(
                servers_pb2.DeleteServerRequest(id=building), timeout=5
            )
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_power_changes_behind_our_back_are_synced(sqlite_url: str, tmp_path: Path) -> None:
    fast_sync = [{"sync_power_state_interval": timedelta(seconds=0.2)}]
    async with running_stack(sqlite_url, tmp_path, per_compute=fast_sync) as stack:
        await wait_for_compute(sqlite_url)
        reply = await stack.servers.CreateServer(create(max_count=2), timeout=5)
        stopped_id, vanished_id = reply.server_ids
        await stack.wait_settled(list(reply.server_ids))
        outsider = LibvirtHost("test:///default")
        outsider.connect()
        try:  # an operator with virsh: one domain shut off, the other removed altogether
            outsider.connection.lookupByUUIDString(stopped_id).destroy()
            outsider.destroy_and_undefine(vanished_id)
        finally:
            outsider.close()
        stopped = await stack.wait_status(stopped_id, servers_pb2.SERVER_STATUS_SHUTOFF)
        assert stopped.power_state == servers_pb2.POWER_STATE_SHUTDOWN
        vanished = await stack.wait_status(vanished_id, servers_pb2.SERVER_STATUS_ERROR)
        assert "domain is gone" in vanished.fault.message
