"""The compute manager: accepts builds at once and runs them on a bounded pool.

As Nova's ``build_and_run_instance``: the RPC returns as soon as the build is queued; each
build takes the instance's lock (no two operations on one uuid at once), then one of
``max_concurrent_builds`` slots, and only then touches the hypervisor. Every outcome is
reported to the conductor; an exception never dies silently in a task.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Protocol

from services.common.builds import BuildRequest
from services.common.context import request_id_var
from services.common.domain import InstanceEvent, InstanceEventKind, PowerState, utcnow
from services.compute.virt.driver import HypervisorError, SpawnSpec, VirtDriver

log = logging.getLogger(__name__)


class EventSink(Protocol):
    def report(self, event: InstanceEvent) -> None: ...


class BuildPhase(enum.StrEnum):
    QUEUED = "queued"
    BUILDING = "building"
    ACTIVE = "active"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ManagerStatus:
    queued: int
    building: int
    max_concurrent_builds: int
    active: int
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
    if "%(uuid)s" in template:
        return template % {"uuid": uuid}
    return template % instance_id


class ComputeManager:
    def __init__(
        self,
        driver: VirtDriver,
        events: EventSink,
        executor: Executor,
        *,
        host: str,
        max_concurrent_builds: int,
        instance_name_template: str = "instance-%08x",
    ) -> None:
        self._driver = driver
        self._events = events
        self._executor = executor
        self._host = host
        self._max = max_concurrent_builds
        self._slots = asyncio.Semaphore(max_concurrent_builds)
        self._locks = InstanceLocks()
        self._template = instance_name_template
        self._phases: dict[str, BuildPhase] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting = 0
        self._building = 0
        self._accepting = True

    @property
    def status(self) -> ManagerStatus:
        phases = list(self._phases.values())
        return ManagerStatus(
            queued=self._waiting,
            building=self._building,
            max_concurrent_builds=self._max,
            active=phases.count(BuildPhase.ACTIVE),
            failed=phases.count(BuildPhase.FAILED),
        )

    def accept(self, builds: Sequence[BuildRequest]) -> tuple[int, list[str]]:
        """Queue the builds; return (queued, duplicates). Never blocks on the hypervisor."""
        if not self._accepting:
            raise HypervisorError("compute service is shutting down")
        duplicates = []
        queued = 0
        for build in builds:
            phase = self._phases.get(build.uuid)
            # A build that failed here may come back (reschedule with the same host in a
            # later attempt); one queued, running or built here is a duplicate cast.
            if phase is not None and phase is not BuildPhase.FAILED:
                duplicates.append(build.uuid)
                continue
            self._phases[build.uuid] = BuildPhase.QUEUED
            task = asyncio.create_task(self._build(build), name=f"build-{build.uuid}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            queued += 1
        if self._waiting + queued > self._max:
            log.info(
                "build queue: %d waiting for one of %d slots",
                self._waiting + queued - max(0, self._max - self._building),
                self._max,
            )
        return queued, duplicates

    async def _build(self, build: BuildRequest) -> None:
        request_id_var.set(build.request_id)
        self._waiting += 1
        try:
            async with self._locks.hold(build.uuid), self._slots:
                self._waiting -= 1
                self._building += 1
                try:
                    await self._run_build(build)
                finally:
                    self._building -= 1
        except BaseException:
            if self._phases.get(build.uuid) is BuildPhase.QUEUED:
                self._waiting -= 1
            raise

    async def _run_build(self, build: BuildRequest) -> None:
        uuid = build.uuid
        self._phases[uuid] = BuildPhase.BUILDING
        self._report(build, InstanceEventKind.SPAWNING)
        spec = self._spawn_spec(build)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._driver.spawn, spec)
        except Exception as exc:  # every failure ends as a report, never lost in a task
            self._phases[uuid] = BuildPhase.FAILED
            reason = str(exc) if isinstance(exc, HypervisorError) else f"{type(exc).__name__}"
            log.warning("build of %s failed: %s", uuid, exc)
            self._report(build, InstanceEventKind.RESCHEDULE, reason=reason)
            return
        self._phases[uuid] = BuildPhase.ACTIVE
        log.debug("instance %s running as %s", uuid, spec.name)
        self._report(build, InstanceEventKind.ACTIVE, power_state=PowerState.RUNNING)

    def _spawn_spec(self, build: BuildRequest) -> SpawnSpec:
        instance = build.instance
        return SpawnSpec(
            uuid=instance.uuid,
            name=instance_name(self._template, instance.id or 0, instance.uuid),
            display_name=instance.display_name,
            project_id=instance.project_id,
            flavor_name=instance.flavor.name,
            vcpus=instance.flavor.vcpus,
            memory_mb=instance.flavor.memory_mb,
            root_gb=instance.flavor.root_gb,
            image_id=build.image.id,
            created_at=instance.created_at,
            metadata=instance.metadata,
        )

    def _report(
        self,
        build: BuildRequest,
        kind: InstanceEventKind,
        *,
        reason: str = "",
        power_state: PowerState = PowerState.NOSTATE,
    ) -> None:
        self._events.report(
            InstanceEvent(
                instance_uuid=build.uuid,
                host=self._host,
                kind=kind,
                occurred_at=utcnow(),
                power_state=power_state,
                reason=reason,
                request_id=build.request_id,
            )
        )

    async def drain(self, timeout: float) -> int:
        """Stop accepting; wait up to ``timeout`` for queued and running builds. Returns how
        many were still unfinished."""
        self._accepting = False
        pending = list(self._tasks)
        if not pending:
            return 0
        _done, still = await asyncio.wait(pending, timeout=timeout)
        return len(still)
