"""The compute manager: accepts builds and terminations at once and runs them in the
background.

As Nova's ``build_and_run_instance``: the RPC returns as soon as the build is queued; each
build takes the instance's lock (no two operations on one uuid at once), then one of
``max_concurrent_builds`` slots, and only then claims resources and touches the hypervisor.
Every outcome is reported to the conductor; an exception never dies silently in a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Coroutine, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol

from services.common.builds import BuildSpec, hostname_for
from services.common.context import instance_uuid_var, request_id_var
from services.common.domain import (
    InstanceEvent,
    InstanceEventKind,
    PowerAction,
    PowerState,
    Resources,
    utcnow,
)
from services.compute.metrics import ComputeMetrics
from services.compute.net.driver import DatapathError, NetworkDriver
from services.compute.resource_tracker import ClaimRefused, ResourceTracker
from services.compute.virt.driver import (
    HypervisorError,
    ImageRef,
    InvalidBuild,
    SpawnSpec,
    VirtDriver,
)
from services.compute.virt.metadata import ConfigDriveContent
from services.compute.virt.network_data import network_data

log = logging.getLogger(__name__)

# Terminated uuids remembered so that a build cast that arrives after its delete is dropped.
TOMBSTONES = 100_000


class EventSink(Protocol):
    def report(self, event: InstanceEvent) -> None: ...


class Phase(enum.StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    ACTIVE = "active"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ManagerStatus:
    queued: int
    building: int
    max_concurrent_builds: int
    instances: int
    claimed: Resources
    succeeded: int
    failed: int


class InstanceLocks:
    """One asyncio lock per instance uuid, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, uuid: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(uuid, (asyncio.Lock(), 0))
        self._locks[uuid] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[uuid]
            if users == 1:
                del self._locks[uuid]
            else:
                self._locks[uuid] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


def instance_name(template: str, instance_id: int, uuid: str) -> str:
    """The libvirt name: from the template, never from the user's display name."""
    if "%(uuid)" in template:
        return template % {"uuid": uuid}
    return template % instance_id


def config_drive_content(build: BuildSpec) -> ConfigDriveContent | None:
    if not build.config_drive:
        return None
    return ConfigDriveContent(
        uuid=build.uuid,
        name=build.display_name,
        hostname=hostname_for(build.display_name, build.uuid),
        project_id=build.project_id,
        availability_zone=build.availability_zone,
        metadata=build.metadata,
        key_name=build.key_name,
        key_data=build.key_data,
        user_data=build.user_data,
        admin_password=build.admin_password,
        network_data=network_data(build.ports) if build.ports else {},
    )


def spawn_spec(build: BuildSpec, template: str) -> SpawnSpec:
    image = build.image
    return SpawnSpec(
        uuid=build.uuid,
        name=instance_name(template, build.instance_id, build.uuid),
        display_name=build.display_name,
        project_id=build.project_id,
        flavor_name=build.flavor.name,
        vcpus=build.flavor.vcpus,
        memory_mb=build.flavor.memory_mb,
        root_gb=build.flavor.root_gb,
        image=ImageRef(
            image.id, image.name, image.disk_format, image.location, image.checksum,
            dict(image.properties),
        ),
        created_at=build.created_at,
        metadata=build.metadata,
        networks=build.networks,
        ports=build.ports,
        config_drive=config_drive_content(build),
        ephemeral_gb=build.ephemeral_gb,
    )  # fmt: skip


class ComputeManager:
    def __init__(
        self,
        driver: VirtDriver,
        events: EventSink,
        executor: Executor,
        *,
        tracker: ResourceTracker,
        network: NetworkDriver,
        host: str,
        max_concurrent_builds: int,
        instance_name_template: str = "instance-%08x",
        clean_shutdown_timeout: float = 30.0,
        metrics: ComputeMetrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.driver = driver
        self.network = network
        self.clean_shutdown_timeout = clean_shutdown_timeout
        self.tracker = tracker
        self.host = host
        self._events = events
        self._executor = executor
        self._max = max_concurrent_builds
        self._slots = asyncio.Semaphore(max_concurrent_builds)
        self.locks = InstanceLocks()
        self._template = instance_name_template
        self.phases: dict[str, Phase] = {}
        self._tombstones: OrderedDict[str, None] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        # Builds accepted but still waiting for their lock or a slot.
        self._queued: dict[str, tuple[BuildSpec, asyncio.Task[None]]] = {}
        self._waiting = 0
        self._building = 0
        self._succeeded = 0
        self._failed = 0
        self._accepting = True

    @property
    def queued(self) -> int:
        """Builds accepted and still waiting for their lock or a slot."""
        return self._waiting

    @property
    def building(self) -> int:
        """Builds holding a slot now. This and ``queued`` serve the metrics gauges, read on
        every scrape, without building a whole ``status`` (and taking the tracker's lock)."""
        return self._building

    @property
    def status(self) -> ManagerStatus:
        return ManagerStatus(
            queued=self.queued,
            building=self.building,
            max_concurrent_builds=self._max,
            instances=len(self.tracker),
            claimed=self.tracker.used,
            succeeded=self._succeeded,
            failed=self._failed,
        )

    async def run_blocking(self, function: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def spawn_task(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Each task reports its own outcome; anything that still escapes one is logged
        here rather than lost in it."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("task %s failed", task.get_name(), exc_info=exc)

    def tombstone(self, uuid: str) -> None:
        self._tombstones[uuid] = None
        self._tombstones.move_to_end(uuid)
        while len(self._tombstones) > TOMBSTONES:
            self._tombstones.popitem(last=False)

    def accept(self, builds: Sequence[BuildSpec]) -> tuple[int, list[str]]:
        """Queue the builds; return (queued, duplicates). Never blocks on the hypervisor."""
        if not self._accepting:
            raise HypervisorError("compute service is shutting down")
        duplicates = []
        for build in builds:
            phase = self.phases.get(build.uuid)
            # Queued, running or built here, or deleted since: a repeated cast, not new work.
            if (phase is not None and phase is not Phase.FAILED) or build.uuid in self._tombstones:
                duplicates.append(build.uuid)
                continue
            self.phases[build.uuid] = Phase.QUEUED
            self._waiting += 1
            self._queued[build.uuid] = (
                build,
                self.spawn_task(self._build(build), f"build-{build.uuid}"),
            )
        queued = len(builds) - len(duplicates)
        if self._waiting > max(0, self._max - self._building):
            log.info(
                "build queue: %d waiting, %d of %d slots busy",
                self._waiting,
                self._building,
                self._max,
            )
        return queued, duplicates

    async def _build(self, build: BuildSpec) -> None:
        request_id_var.set(build.request_id)
        instance_uuid_var.set(build.uuid)
        started = False
        try:
            async with self.locks.hold(build.uuid), self._slots:
                self._waiting -= 1
                started = True
                self._queued.pop(build.uuid, None)
                if build.uuid in self._tombstones:
                    return  # deleted while it waited in the queue
                if not self._accepting:
                    self._hand_back(build)
                    return
                self._building += 1
                try:
                    await self._run_build(build)
                except Exception as exc:  # the task's boundary: the build ends as a report
                    log.exception("build failed unexpectedly")
                    await self._undo_build(build.uuid)
                    self._fail(build, InstanceEventKind.RESCHEDULE, type(exc).__name__)
                finally:
                    self._building -= 1
        finally:
            if not started:
                self._waiting -= 1
                self._queued.pop(build.uuid, None)

    async def _run_build(self, build: BuildSpec) -> None:
        uuid = build.uuid
        self.phases[uuid] = Phase.BUILDING
        try:
            self.tracker.claim(uuid, build.resources)
        except ClaimRefused as exc:
            self._fail(build, InstanceEventKind.RESCHEDULE, f"claim refused: {exc}")
            return
        self._report(build, InstanceEventKind.SPAWNING)
        started = time.perf_counter()
        try:
            # The ports' bridges, filter rules and DHCP entries exist before the domain
            # does: a guest's first packet already meets its security groups.
            await self.run_blocking(self._plug, build)
            await self.run_blocking(self.driver.spawn, spawn_spec(build, self._template))
        except InvalidBuild as exc:
            await self._undo_build(uuid)
            self._fail(build, InstanceEventKind.FAILED, str(exc))
            return
        except Exception as exc:  # every failure ends as a report, never lost in a task
            await self._undo_build(uuid)
            reason = (
                str(exc) if isinstance(exc, HypervisorError | DatapathError)
                else type(exc).__name__
            )  # fmt: skip
            self._fail(build, InstanceEventKind.RESCHEDULE, reason)
            return
        self.phases[uuid] = Phase.ACTIVE
        self._succeeded += 1
        log.info("instance running (build %.3fs)", time.perf_counter() - started)
        if self.metrics is not None:
            self.metrics.builds.labels("active").inc()
            self.metrics.build_seconds.observe(time.perf_counter() - started)
        self._report(build, InstanceEventKind.ACTIVE, power_state=PowerState.RUNNING)

    def _plug(self, build: BuildSpec) -> None:
        for port in build.ports:
            self.network.plug(port, build.address_sets)

    async def _undo_build(self, uuid: str) -> None:
        """A failed build leaves nothing on the host: no claim and no datapath (the driver
        removed its own half-made domain already)."""
        self.tracker.release(uuid)
        try:
            await self.run_blocking(self.network.unplug_instance, uuid)
        except DatapathError as exc:
            log.error("removing the ports of a failed build: %s", exc)

    def _fail(self, build: BuildSpec, kind: InstanceEventKind, reason: str) -> None:
        log.warning("build failed (%s): %s", kind.value, reason)
        if self.metrics is not None:
            self.metrics.builds.labels(kind.value).inc()
        self.phases[build.uuid] = Phase.FAILED
        self._failed += 1
        self._report(build, kind, reason=reason)

    def power_action(self, uuid: str, action: PowerAction, request_id: str = "") -> None:
        """Queue a start/stop/reboot under the instance's lock; reported when done."""
        if not self._accepting:
            raise HypervisorError("compute service is shutting down")
        self.spawn_task(self._power_action(uuid, action, request_id), f"{action}-{uuid}")

    async def _power_action(self, uuid: str, action: PowerAction, request_id: str) -> None:
        request_id_var.set(request_id)
        instance_uuid_var.set(uuid)
        driver, timeout = self.driver, self.clean_shutdown_timeout
        steps = {
            PowerAction.START: (lambda: driver.power_on(uuid), InstanceEventKind.STARTED),
            PowerAction.STOP: (lambda: driver.power_off(uuid, timeout), InstanceEventKind.STOPPED),
            PowerAction.REBOOT_SOFT: (
                lambda: driver.reboot(uuid, hard=False, timeout=timeout),
                InstanceEventKind.REBOOTED,
            ),
            PowerAction.REBOOT_HARD: (
                lambda: driver.reboot(uuid, hard=True, timeout=timeout),
                InstanceEventKind.REBOOTED,
            ),
        }
        work, done = steps[action]
        async with self.locks.hold(uuid):
            try:
                await self.run_blocking(work)
            except Exception as exc:
                log.warning("%s of %s failed: %s", action, uuid, exc)
                self.report(uuid, InstanceEventKind.ACTION_FAILED, reason=f"{action}: {exc}",
                            request_id=request_id, power_action=action)  # fmt: skip
                return
        power = PowerState.SHUTDOWN if done is InstanceEventKind.STOPPED else PowerState.RUNNING
        self.report(uuid, done, power_state=power, request_id=request_id)

    def terminate(self, uuids: Sequence[str], request_id: str = "") -> int:
        """Queue the removal of each instance; a queued build of it is dropped."""
        for uuid in uuids:
            self.tombstone(uuid)
            self.spawn_task(self._terminate(uuid, request_id), f"terminate-{uuid}")
        return len(uuids)

    async def _terminate(self, uuid: str, request_id: str) -> None:
        request_id_var.set(request_id)
        instance_uuid_var.set(uuid)
        async with self.locks.hold(uuid):
            try:
                removed = await self.run_blocking(self.driver.destroy, uuid)
                await self.run_blocking(self.network.unplug_instance, uuid)
            except Exception as exc:
                log.error("terminating %s failed: %s", uuid, exc)
                self.report(uuid, InstanceEventKind.LOST, reason=f"terminate failed: {exc}")
                return
            self.tracker.release(uuid)
            self.phases.pop(uuid, None)
            log.info("terminated %s (%s)", uuid, "removed" if removed else "nothing to remove")
            self.report(uuid, InstanceEventKind.DELETED, request_id=request_id)

    def report(
        self,
        uuid: str,
        kind: InstanceEventKind,
        *,
        reason: str = "",
        power_state: PowerState = PowerState.NOSTATE,
        request_id: str = "",
        power_action: PowerAction | None = None,
        admin_password: str = "",
    ) -> None:
        self._events.report(
            InstanceEvent(
                instance_uuid=uuid,
                host=self.host,
                kind=kind,
                occurred_at=utcnow(),
                power_state=power_state,
                reason=reason,
                request_id=request_id,
                power_action=power_action,
                admin_password=admin_password,
            )
        )

    def _report(
        self,
        build: BuildSpec,
        kind: InstanceEventKind,
        *,
        reason: str = "",
        power_state: PowerState = PowerState.NOSTATE,
    ) -> None:
        # a build going elsewhere takes its admin password along (the conductor stores none)
        password = build.admin_password if kind is InstanceEventKind.RESCHEDULE else ""
        self.report(
            build.uuid, kind, reason=reason, power_state=power_state,
            request_id=build.request_id, admin_password=password,
        )  # fmt: skip

    async def wait_idle(self, timeout: float) -> int:
        """Wait up to ``timeout`` for the queued and running work (including work that this
        work starts); returns how many tasks were still unfinished."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._tasks:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return len(self._tasks)
            await asyncio.wait(list(self._tasks), timeout=remaining)
        return 0

    def _hand_back(self, build: BuildSpec) -> None:
        """A queued build this service will not run (it is stopping): back to the conductor,
        which places it elsewhere; a late cast of it is dropped here."""
        self.tombstone(build.uuid)
        self.phases.pop(build.uuid, None)
        self._report(
            build, InstanceEventKind.RESCHEDULE, reason=f"compute service on {self.host} stopping"
        )

    async def drain(self, timeout: float) -> int:
        """Stop accepting; hand back every build still waiting for a slot at once; let the
        running ones finish within ``timeout``. Returns how many tasks were unfinished."""
        self._accepting = False
        waiting = list(self._queued.values())
        for build, task in waiting:
            task.cancel()
            self._hand_back(build)
        if waiting:
            log.info("handed %d queued builds back to the conductor", len(waiting))
        return await self.wait_idle(timeout)
