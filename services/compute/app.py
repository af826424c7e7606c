"""The compute service's composition root: builds and injects every adapter."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import grpc
from prometheus_client import CollectorRegistry

from services.common.app import RunningService
from services.common.background import BackgroundTask
from services.common.domain import ComputeNodeReport, Resources
from services.common.generated.novagrpc.internal.v1 import (
    compute_console_pb2,
    compute_console_pb2_grpc,
    compute_pb2,
    compute_pb2_grpc,
    datapath_pb2_grpc,
)
from services.common.metrics import MetricsServer, RpcMetrics
from services.common.readiness import Readiness
from services.common.rpc.channels import ChannelPool
from services.common.rpc.conductor_client import ConductorClient, EventReporter, NodeReporter
from services.common.rpc.datapath import HostStateSource
from services.common.rpc.server import Registration, bound_address, start_server
from services.common.tls_reload import ReloadingClientTls
from services.compute.console.output import ConsoleOutput
from services.compute.console.ports import ConsoleHypervisor
from services.compute.console.sessions import ConsoleSessions
from services.compute.console_servicer import ComputeConsoleServicer
from services.compute.datapath_servicer import CALLERS as DATAPATH_CALLERS
from services.compute.datapath_servicer import SERVICE_NAME as DATAPATH_SERVICE
from services.compute.datapath_servicer import ComputeDatapathServicer
from services.compute.guest_ready import GuestReadiness
from services.compute.manager import ComputeManager
from services.compute.metrics import ComputeMetrics
from services.compute.net.driver import NetworkDriver
from services.compute.net.linuxbridge import LinuxBridgeDriver
from services.compute.net.noop import NoopNetworkDriver
from services.compute.net.state_sync import HostNetworkSync
from services.compute.net.underlay import choose_underlay
from services.compute.resource_tracker import Ratios, ResourceTracker
from services.compute.servicer import CALLERS, ComputeServicer
from services.compute.settings import ComputeSettings
from services.compute.sync import HostSync
from services.compute.virt.driver import HostResources, HypervisorError, VirtDriver
from services.compute.virt.images import InstanceStorage
from services.compute.virt.libvirt.console import LibvirtConsoles
from services.compute.virt.libvirt.driver import LibvirtDriver, LibvirtOptions, parse_interface
from services.compute.virt.libvirt.host import LibvirtHost

log = logging.getLogger("services.compute")

SERVICE_NAME = compute_pb2.DESCRIPTOR.services_by_name["Compute"].full_name
CONSOLE_SERVICE_NAME = compute_console_pb2.DESCRIPTOR.services_by_name["ComputeConsole"].full_name
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
        cpu_allocation_ratio=settings.cpu_allocation_ratio,
        ram_allocation_ratio=settings.ram_allocation_ratio,
        disk_allocation_ratio=settings.disk_allocation_ratio,
        underlay_address=settings.underlay_address,
    )


@dataclass
class ConsoleService:
    """The ComputeConsole servicer and what it holds: sessions and their own threads."""

    registration: Registration
    sessions: ConsoleSessions
    executor: ThreadPoolExecutor

    @staticmethod
    def create(
        *,
        real_consoles: LibvirtConsoles,
        wrap: Callable[[LibvirtConsoles], ConsoleHypervisor] | None,
    ) -> ConsoleService:
        consoles: ConsoleHypervisor = real_consoles if wrap is None else wrap(real_consoles)
        # Console streams wait on the guest, not on the CPU: their own threads, so that an
        # attach never queues behind builds.
        executor = ThreadPoolExecutor(8, thread_name_prefix="console")

        async def blocking(function: Callable[..., Any], *args: Any) -> Any:
            return await asyncio.get_running_loop().run_in_executor(executor, function, *args)

        sessions = ConsoleSessions(consoles, blocking)
        registration = Registration(
            compute_console_pb2_grpc.add_ComputeConsoleServicer_to_server,
            ComputeConsoleServicer(ConsoleOutput(consoles, blocking), sessions),
            CONSOLE_SERVICE_NAME,
        )
        return ConsoleService(registration, sessions, executor)

    async def end_sessions(self) -> None:
        # Before the server stops: each session's RPC ends with its reason, not a cancel.
        await self.sessions.close()

    async def close(self) -> None:
        await self.sessions.close()
        self.executor.shutdown(wait=False, cancel_futures=True)


class Heartbeat:
    """Registers the node, then heartbeats every ``heartbeat_interval``; never gives up.
    Each beat re-reads the hypervisor's capacity, so a resized host is seen."""

    def __init__(
        self,
        nodes: NodeReporter,
        manager: ComputeManager,
        settings: ComputeSettings,
        *,
        address: str,
    ) -> None:
        self._nodes = nodes
        self._manager = manager
        self._settings = settings
        self._address = address
        self._task = BackgroundTask("heartbeat", self._run)
        self.registered = asyncio.Event()

    def start(self) -> None:
        self._task.start()

    async def _run(self) -> None:
        driver: VirtDriver = self._manager.driver
        while True:
            try:
                resources: HostResources = await self._manager.run_blocking(driver.host_resources)
                self._manager.tracker.set_capacity(
                    Resources(resources.vcpus, resources.memory_mb, resources.local_gb)
                )
                node_id = await self._nodes.report(
                    node_report(self._settings, resources, self._address)
                )
            except Exception as exc:
                log.warning("heartbeat failed: %s", exc)
                await asyncio.sleep(min(1.0, self._settings.heartbeat_interval.total_seconds()))
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
            await asyncio.sleep(self._settings.heartbeat_interval.total_seconds())

    async def close(self) -> None:
        await self._task.close()


def libvirt_driver(settings: ComputeSettings, host: LibvirtHost) -> LibvirtDriver:
    return LibvirtDriver(
        host,
        InstanceStorage(Path(settings.instances_path)),
        LibvirtOptions(
            virt_type=settings.virt_type,
            spawn_timeout=settings.spawn_timeout.total_seconds(),
            interface=parse_interface(settings.network_interface),
            owner=settings.host,
        ),
    )


def network_driver(settings: ComputeSettings) -> NetworkDriver:
    """The datapath the settings choose: the no-op only for the test hypervisor."""
    if settings.chosen_network_driver == "noop":
        return NoopNetworkDriver()
    return LinuxBridgeDriver(
        state_dir=Path(settings.network_state_path),
        underlay=IPv4Address(settings.underlay_address) if settings.underlay_address else None,
        host=settings.host,
        namespace_prefix=settings.dhcp_namespace_prefix,
    )


def internal_tls(
    settings: ComputeSettings,
) -> tuple[ReloadingClientTls | None, grpc.ServerCredentials | None]:
    """Both ends of this compute's mutual TLS, loaded first: a certificate that names another
    host (a node given another node's certificate) stops the start with WrongIdentity, before
    anything else is touched, instead of every report being refused later."""
    return (
        settings.internal_client_tls(identity=settings.identity),
        settings.internal_server_credentials(identity=settings.identity),
    )


async def start_compute(
    settings: ComputeSettings,
    *,
    wrap_driver: Callable[[LibvirtDriver], VirtDriver] | None = None,
    wrap_consoles: Callable[[LibvirtConsoles], ConsoleHypervisor] | None = None,
) -> RunningService:
    """``wrap_driver`` lets a test put a gate or a fault in front of the real driver;
    ``wrap_consoles`` the same for consoles (libvirt's test driver has none to test with)."""
    tls, server_credentials = internal_tls(settings)
    if settings.chosen_network_driver != "noop":
        underlay = choose_underlay(
            settings.underlay_address,
            advertised=settings.advertise_address or settings.listen,
            conductors=settings.conductor_addresses,
        )
        settings = replace(settings, underlay_address=str(underlay) if underlay else "")
        log.info("underlay address (VXLAN endpoint): %s", underlay or "none (no overlay)")
    executor = ThreadPoolExecutor(settings.max_concurrent_builds + 4, thread_name_prefix="virt")
    libvirt_host = LibvirtHost(settings.libvirt_uri)
    await asyncio.get_running_loop().run_in_executor(executor, libvirt_host.connect)
    real = libvirt_driver(settings, libvirt_host)
    driver: VirtDriver = real if wrap_driver is None else wrap_driver(real)
    channels = ChannelPool(tls)
    events = EventReporter(channels, settings.conductor_addresses)
    tracker = ResourceTracker(
        Ratios(
            settings.cpu_allocation_ratio,
            settings.ram_allocation_ratio,
            settings.disk_allocation_ratio,
        )
    )
    registry = CollectorRegistry()
    # The gauges and the manager need each other; the callbacks look ``manager`` up when
    # called, and only a scrape calls them, which the metrics server (started after the
    # manager exists) is the only way to make.
    metrics = ComputeMetrics.create(
        registry,
        queued=lambda: float(manager.queued),
        running=lambda: float(manager.building),
    )
    manager = ComputeManager(
        driver,
        events,
        executor,
        tracker=tracker,
        network=network_driver(settings),
        host=settings.host,
        max_concurrent_builds=settings.max_concurrent_builds,
        instance_name_template=settings.instance_name_template,
        clean_shutdown_timeout=settings.clean_shutdown_timeout.total_seconds(),
        metrics=metrics,
    )
    console = ConsoleService.create(
        real_consoles=LibvirtConsoles(libvirt_host, real.storage, virt_type=real.virt_type),
        wrap=wrap_consoles,
    )
    server = await start_server(
        settings.listen,
        [
            Registration(
                compute_pb2_grpc.add_ComputeServicer_to_server,
                ComputeServicer(manager),
                SERVICE_NAME,
            ),
            console.registration,
            Registration(
                datapath_pb2_grpc.add_ComputeDatapathServicer_to_server,
                ComputeDatapathServicer(manager),
                DATAPATH_SERVICE,
            ),
        ],
        credentials=server_credentials,
        callers={**CALLERS, **DATAPATH_CALLERS} if tls is not None else None,
        metrics=RpcMetrics.create(registry),
        health_listen=settings.health_listen,
    )
    metrics_server = MetricsServer(registry, settings.metrics_listen)

    async def libvirt_answers() -> bool:
        await manager.run_blocking(libvirt_host.node_info)
        return True

    readiness = Readiness(
        server, [("libvirt", libvirt_answers)], interval=settings.readiness_interval
    )
    address = settings.advertise_address or bound_address(settings.listen, server.port)
    heartbeat = Heartbeat(
        NodeReporter(channels, settings.conductor_addresses), manager, settings, address=address
    )
    sync = HostSync(
        manager,
        ConductorClient(channels, settings.conductor_addresses),
        interval=settings.sync_power_state_interval.total_seconds(),
        handback_grace=settings.build_handback_grace.total_seconds(),
    )
    readiness_reports = GuestReadiness(
        events, settings.host, asyncio.get_running_loop(), ours=lambda uuid: uuid in tracker
    )
    try:
        await manager.run_blocking(libvirt_host.watch_agents, readiness_reports.connected)
    except HypervisorError as exc:
        log.warning("guest readiness will not be reported from this host: %s", exc)
    network_sync = HostNetworkSync(
        manager,
        HostStateSource(channels, settings.conductor_addresses),
        interval=settings.sync_power_state_interval.total_seconds(),
    )
    events.start()
    heartbeat.start()
    sync.start()
    network_sync.start()
    await readiness.check_once()
    readiness.start()

    async def drain_builds() -> None:
        log.info("draining builds (up to %.0fs)", settings.shutdown_timeout.total_seconds())
        unfinished = await manager.drain(settings.shutdown_timeout.total_seconds())
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
        draining=[console.end_sessions, drain_builds],
        closers=[
            readiness.close,
            sync.close,
            network_sync.close,
            heartbeat.close,
            events.close,
            channels.close,
            console.close,
            close_libvirt,
            metrics_server.close,
        ],
        grace=1.0,
    )
    log.info("compute %s serving on %s (libvirt %s)", settings.host, address, settings.libvirt_uri)
    return service
