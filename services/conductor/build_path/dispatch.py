"""Dispatch: send each host its builds, after the commit that recorded them.

Each host's call runs in a task of its own; the task's boundary catches everything. A host
that cannot be reached (or any other failure to send) hands its builds to rescheduling, as a
failure of that host; if even that fails, the instances stay placed and unsent, which the
reconciler's re-dispatch and build timeout take care of.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Protocol

from services.common.builds import BuildAck, BuildSpec
from services.common.domain import InstanceEvent, InstanceEventKind, utcnow
from services.common.errors import PeerFailed
from services.conductor.build_path.factory import RecentPasswords
from services.conductor.build_path.types import HostBuilds

log = logging.getLogger(__name__)

# Records failed builds (freeing their claims) and returns those moved to another host.
Reschedule = Callable[[Sequence[InstanceEvent]], Awaitable[Sequence[HostBuilds]]]


class ComputeBuilder(Protocol):
    async def build_and_run(
        self, address: str, builds: Sequence[BuildSpec], *, request_id: str = ""
    ) -> BuildAck: ...


class Dispatcher:
    def __init__(
        self,
        computes: ComputeBuilder,
        *,
        reschedule: Reschedule,
        passwords: RecentPasswords | None = None,
        count_error: Callable[[str], None] = lambda where: None,
    ) -> None:
        self._computes = computes
        self._reschedule = reschedule
        self._passwords = passwords
        self._count_error = count_error
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    def dispatch(self, work: Sequence[HostBuilds]) -> None:
        """Send each host its builds, each host in a task of its own."""
        for host_builds in work:
            if not host_builds.builds:
                continue
            if self._passwords is not None:
                # a build moved to an alternate whose compute could not hand its password back
                # (it died with the build) gets it here, if this conductor took the cast
                host_builds.builds = [self._with_password(b) for b in host_builds.builds]
            name = f"dispatch-{host_builds.host.host}"
            task = asyncio.create_task(self._send(host_builds), name=name)
            self._tasks.add(task)
            self._idle.clear()
            task.add_done_callback(self._done)

    def _with_password(self, build: BuildSpec) -> BuildSpec:
        assert self._passwords is not None
        if build.admin_password:
            return build
        password = self._passwords.get(build.uuid)
        return replace(build, admin_password=password) if password else build

    async def _send(self, host_builds: HostBuilds) -> None:
        host, builds = host_builds.host, host_builds.builds
        try:
            ack = await self._computes.build_and_run(
                host.rpc_address, builds, request_id=builds[0].request_id
            )
        except PeerFailed as exc:
            reason = f"compute host {host.host} unreachable: {exc.status}"
        except Exception as exc:  # the task's boundary: nothing dies unseen in it
            log.exception("sending %d builds to %s failed", len(builds), host.host)
            self._count_error("dispatch")
            reason = f"sending the build to {host.host} failed: {type(exc).__name__}"
        else:
            log.info("sent %d builds to %s (%d queued, %d duplicates)",
                     len(builds), host.host, ack.queued, len(ack.duplicates))  # fmt: skip
            return
        log.warning("%s; rescheduling %d builds", reason, len(builds))
        now = utcnow()
        failures = [
            InstanceEvent(b.uuid, host.host, InstanceEventKind.RESCHEDULE, now,
                          reason=reason, request_id=b.request_id)
            for b in builds
        ]  # fmt: skip
        try:
            moved = await self._reschedule(failures)
        except Exception:
            # Still placed on this host and unsent: the reconciler sends them again or, past
            # the build timeout, fails them with a fault.
            log.exception("rescheduling %d builds from %s failed", len(builds), host.host)
            self._count_error("reschedule")
            return
        self.dispatch(moved)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    async def wait_idle(self) -> None:
        """Until no call is in flight (moves that a failed call starts included)."""
        while self._tasks:
            await self._idle.wait()

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
