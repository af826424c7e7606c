"""The conductor's build task: place instances in batches and hand them to their hosts.

One pass takes every instance queued so far (up to ``batch_size``), loads all host states in
one query, places the whole batch in memory, claims per host with the generation check, records
the hosts and the no-valid-host faults, commits once, then sends one BuildAndRunInstance per
host. Everything is keyed by instance uuid: an instance already placed (or no longer waiting)
is skipped, so a message cast twice builds once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import grpc
from sqlalchemy import Connection

from services.common.builds import BuildRequest
from services.common.db import catalog, placement
from services.common.db import instances as instance_repo
from services.common.db.engine import Database
from services.common.domain import (
    HostState,
    Image,
    Instance,
    Resources,
    TaskState,
    VmState,
    utcnow,
)
from services.common.rpc.compute_client import BuildAck
from services.conductor.scheduler.request import RequestSpec
from services.conductor.scheduler.scheduler import Decision, Scheduler

log = logging.getLogger(__name__)

# A claim lost to another conductor is retried against freshly loaded host states.
MAX_CLAIM_ROUNDS = 5
NO_VALID_HOST = "No valid host was found"


class ComputeBuilder(Protocol):
    async def build_and_run(
        self, address: str, builds: Sequence[BuildRequest], *, request_id: str = ""
    ) -> BuildAck: ...


@dataclass
class HostBuilds:
    host: HostState
    builds: list[BuildRequest] = field(default_factory=list)


@dataclass
class BatchPlan:
    by_host: dict[str, HostBuilds] = field(default_factory=dict)
    failed: list[instance_repo.FaultRecord] = field(default_factory=list)
    skipped: int = 0


@dataclass
class _Batch:
    """What one scheduling pass works on, inside its transaction."""

    connection: Connection
    plan: BatchPlan
    instances: dict[str, Instance]
    images: dict[str, Image]
    request_ids: dict[str, str]
    now: datetime


def no_valid_host_message(rejected: dict[str, int], host_count: int) -> tuple[str, str]:
    """(user message, admin details): users see the short reason, admins the per-filter counts
    (Nova hides the counts from everyone, and its users complain)."""
    if host_count == 0:
        return NO_VALID_HOST + ": no compute hosts are registered", "hosts: 0"
    counts = ", ".join(f"{name} removed {n}" for name, n in rejected.items())
    message = f"{NO_VALID_HOST}: no host fits the request"
    return message, f"hosts: {host_count}; {counts or 'claims lost to concurrent requests'}"


class BuildTask:
    def __init__(
        self,
        db: Database,
        computes: ComputeBuilder,
        scheduler: Scheduler,
        *,
        service_down_time: timedelta,
        batch_size: int = 500,
    ) -> None:
        self._db = db
        self._computes = computes
        self._scheduler = scheduler
        self._down_time = service_down_time
        self._batch_size = batch_size
        self._queue: list[tuple[str, str]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dispatches: set[asyncio.Task[None]] = set()
        self.placed = 0
        self.no_valid_host = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="build-task")

    def submit(self, instance_uuids: Sequence[str], request_id: str = "") -> None:
        self._queue.extend((uuid, request_id) for uuid in instance_uuids)
        self._wakeup.set()

    @property
    def backlog(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._queue[: self._batch_size]
            del self._queue[: self._batch_size]
            try:
                await self.schedule(batch)
            except Exception:
                # The instances stay in `scheduling` in the database; the reconciler re-drives.
                log.exception("scheduling a batch of %d failed", len(batch))

    async def schedule(self, batch: Sequence[tuple[str, str]]) -> BatchPlan:
        request_ids = dict(batch)
        plan = await self._db.write(lambda c: self._plan(c, request_ids, utcnow()))
        self.placed += sum(len(h.builds) for h in plan.by_host.values())
        self.no_valid_host += len(plan.failed)
        for host_builds in plan.by_host.values():
            task = asyncio.create_task(self._dispatch(host_builds))
            self._dispatches.add(task)
            task.add_done_callback(self._dispatches.discard)
        return plan

    def _plan(
        self, connection: Connection, request_ids: dict[str, str], now: datetime
    ) -> BatchPlan:
        plan = BatchPlan()
        loaded = instance_repo.load_instances(connection, list(request_ids), for_update=True)
        allocated = placement.allocated_instances(connection, [i.uuid for i in loaded])
        waiting = [
            i
            for i in loaded
            if i.vm_state is VmState.BUILDING
            and i.task_state is TaskState.SCHEDULING
            and i.uuid not in allocated
        ]
        plan.skipped = len(request_ids) - len(waiting)
        if not waiting:
            return plan
        batch = _Batch(
            connection=connection,
            plan=plan,
            instances={i.uuid: i for i in waiting},
            images=catalog.images_by_id(connection, {i.image_id for i in waiting}),
            request_ids=request_ids,
            now=now,
        )
        pending = [RequestSpec(i.uuid, i.project_id, Resources.of(i.flavor)) for i in waiting]
        hosts: list[HostState] = []
        for _ in range(MAX_CLAIM_ROUNDS):
            hosts = placement.load_host_states(
                connection, now=now, service_down_time=self._down_time
            )
            pending = self._claim(batch, self._scheduler.place(pending, hosts), len(hosts))
            if not pending:
                break
        for spec in pending:  # still losing races after every round: give up honestly
            self._fail(plan, spec.instance_uuid, {}, len(hosts))
        instance_repo.mark_placed(
            connection,
            [
                instance_repo.Placement(b.uuid, hb.host.host, hb.host.hypervisor_hostname)
                for hb in plan.by_host.values()
                for b in hb.builds
            ],
            now,
        )
        instance_repo.mark_error(connection, plan.failed, now)
        return plan

    def _claim(
        self, batch: _Batch, decisions: Sequence[Decision], host_count: int
    ) -> list[RequestSpec]:
        """Claim each host's share; return the specs whose host was taken meanwhile."""
        per_host: dict[int, list[Decision]] = defaultdict(list)
        for decision in decisions:
            if decision.host is None:
                uuid = decision.spec.instance_uuid
                self._fail(batch.plan, uuid, decision.rejected_by, host_count)
            else:
                per_host[decision.host.node_id].append(decision)
        lost: list[RequestSpec] = []
        for chosen in per_host.values():
            host = chosen[0].host
            assert host is not None
            requests = [(d.spec.instance_uuid, d.spec.resources) for d in chosen]
            if not placement.claim(batch.connection, host, requests, batch.now):
                lost.extend(d.spec for d in chosen)
                continue
            entry = batch.plan.by_host.setdefault(host.host, HostBuilds(host))
            for d in chosen:
                instance = batch.instances[d.spec.instance_uuid]
                image = batch.images.get(instance.image_id)
                if image is None:
                    self._fail_missing_image(batch.plan, instance)
                    continue
                request_id = batch.request_ids.get(instance.uuid) or instance.request_id
                entry.builds.append(BuildRequest(instance, image, request_id=request_id))
        return lost

    def _fail(self, plan: BatchPlan, uuid: str, rejected: dict[str, int], host_count: int) -> None:
        message, details = no_valid_host_message(rejected, host_count)
        plan.failed.append(instance_repo.FaultRecord(uuid, 500, message, details))

    def _fail_missing_image(self, plan: BatchPlan, instance: Instance) -> None:
        plan.failed.append(
            instance_repo.FaultRecord(
                instance.uuid, 400, f"image {instance.image_id} no longer exists"
            )
        )

    async def _dispatch(self, host_builds: HostBuilds) -> None:
        host, builds = host_builds.host, host_builds.builds
        if not builds:
            return
        try:
            ack = await self._computes.build_and_run(
                host.rpc_address, builds, request_id=builds[0].request_id
            )
            log.info(
                "sent %d builds to %s (%d queued, %d duplicates)",
                len(builds),
                host.host,
                ack.queued,
                len(ack.duplicates),
            )
        except grpc.aio.AioRpcError as exc:
            reason = f"compute host {host.host} unreachable: {exc.code().name}"
            log.warning("%s; failing %d builds", reason, len(builds))
            await self.fail_builds([b.uuid for b in builds], reason, host=host.host)

    async def fail_builds(self, uuids: Sequence[str], reason: str, *, host: str | None) -> None:
        """Free the claims and put the instances in ERROR with the reason as their fault."""

        def work(connection: Connection) -> None:
            now = utcnow()
            placement.free_allocations(connection, uuids)
            instance_repo.mark_error(
                connection,
                [instance_repo.FaultRecord(u, 500, reason, host=host) for u in uuids],
                now,
            )

        await self._db.write(work)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._dispatches):
            task.cancel()
