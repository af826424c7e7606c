"""The compute service's composition root: builds and injects every adapter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from services.common.app import RunningService
from services.common.domain import ComputeNodeReport
from services.common.generated.novagrpc.internal.v1 import compute_pb2, compute_pb2_grpc
from services.common.rpc.channels import ChannelPool
from services.common.rpc.conductor_client import EventReporter, NodeReporter
from services.common.rpc.server import Registration, bound_address, start_server
from services.compute.manager import ComputeManager
from services.compute.servicer import ComputeServicer
from services.compute.settings import ComputeSettings
from services.compute.virt.driver import HostResources, VirtDriver
from services.compute.virt.libvirt.driver import LibvirtDriver
from services.compute.virt.libvirt.host import LibvirtHost

log = logging.getLogger("services.compute")

SERVICE_NAME = compute_pb2.DESCRIPTOR.services_by_name["Compute"].full_name
EVENT_FLUSH_TIMEOUT_S = 5.0


def node_report(
    settings: ComputeSettings, resources: HostResources, address: str
) -> ComputeNodeReport:
    return ComputeNodeReport(
        host=settings.host,
        hypervisor_hostname=resources.hypervisor_hostname,
        rpc_address=address,
        vcpus=resources.vcpus,
        memory_mb=resources.memory_mb,
        local_gb=resources.local_gb,
        hypervisor_type=resources.hypervisor_type,
        cpu_arch=resources.cpu_arch,
        availability_zone=settings.availability_zone,
    )


class Heartbeat:
    """Registers the node, then heartbeats every ``heartbeat_interval``; never gives up."""

    def __init__(
        self,
        nodes: NodeReporter,
        driver: VirtDriver,
        executor: ThreadPoolExecutor,
        settings: ComputeSettings,
        address: str,
    ) -> None:
        self._nodes = nodes
        self._driver = driver
        self._executor = executor
        self._settings = settings
        self._address = address
        self._task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="heartbeat")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                resources = await loop.run_in_executor(self._executor, self._driver.host_resources)
                node_id = await self._nodes.report(
                    node_report(self._settings, resources, self._address)
                )
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
                await asyncio.sleep(min(1.0, self._settings.heartbeat_interval))
                continue
            if not self.registered.is_set():
                log.info(
                    "registered compute node %s (id %d): %d vCPUs, %d MiB, %d GiB",
                    self._settings.host,
                    node_id,
                    resources.vcpus,
                    resources.memory_mb,
                    resources.local_gb,
                )
                self.registered.set()
            await asyncio.sleep(self._settings.heartbeat_interval)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def start_compute(settings: ComputeSettings) -> RunningService:
    executor = ThreadPoolExecutor(settings.max_concurrent_builds + 2, thread_name_prefix="virt")
    libvirt_host = LibvirtHost(settings.libvirt_uri)
    await asyncio.get_running_loop().run_in_executor(executor, libvirt_host.connect)
    driver = LibvirtDriver(
        libvirt_host,
        virt_type=settings.virt_type,
        instances_path=Path(settings.instances_path),
        spawn_timeout=settings.spawn_timeout,
    )
    channels = ChannelPool()
    events = EventReporter(channels, settings.conductor_addresses)
    manager = ComputeManager(
        driver,
        events,
        executor,
        host=settings.host,
        max_concurrent_builds=settings.max_concurrent_builds,
        instance_name_template=settings.instance_name_template,
    )
    server = await start_server(
        settings.listen,
        [
            Registration(
                compute_pb2_grpc.add_ComputeServicer_to_server,
                ComputeServicer(manager),
                SERVICE_NAME,
            )
        ],
    )
    address = settings.advertise_address or bound_address(settings.listen, server.port)
    heartbeat = Heartbeat(
        NodeReporter(channels, settings.conductor_addresses), driver, executor, settings, address
    )
    events.start()
    heartbeat.start()

    async def drain_builds() -> None:
        log.info("draining builds (up to %.0fs)", settings.shutdown_timeout)
        unfinished = await manager.drain(settings.shutdown_timeout)
        if unfinished:
            log.warning("%d builds unfinished at shutdown", unfinished)
        if not await events.flush(EVENT_FLUSH_TIMEOUT_S):
            log.warning("%d state reports not delivered at shutdown", events.backlog)

    async def close_libvirt() -> None:
        libvirt_host.close()
        executor.shutdown(wait=False, cancel_futures=True)

    service = RunningService(
        f"compute {settings.host}",
        server,
        settings.listen,
        advertised=address,
        draining=[drain_builds],
        closers=[heartbeat.close, events.close, channels.close, close_libvirt],
        grace=1.0,
    )
    await server.set_serving(True)
    log.info("compute %s serving on %s (libvirt %s)", settings.host, address, settings.libvirt_uri)
    return service
