"""The conductor's build task: place instances in batches and hand them to their hosts.

One pass takes the casts queued so far (whole messages, so that a multi-create is placed
together), loads every host's state in one query, places the whole batch in memory, claims
per host with the generation check, records the hosts, alternates and the no-valid-host
faults, commits once, then sends one BuildAndRunInstance per host. Everything is keyed by
instance uuid: an instance already placed (or no longer waiting) is skipped, so a message
cast twice builds once.

The reading and the choosing happen before the write transaction (a *draft*, on a read
snapshot): on SQLite every writer waits for the one write lock, and a pass that held it while
it loaded hosts and weighed them kept the api's creates waiting. The generation check makes
this safe: a host whose state moved since the draft loses its claim, and the losers are
placed again inside the transaction. Requests with a server group or same/different-host
hints are placed wholly inside the transaction, where the members' hosts cannot move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import grpc
from sqlalchemy import Connection

from services.common.builds import BuildRequest
from services.common.db import actions, catalog, groups, placement
from services.common.db import instances as instance_repo
from services.common.db.engine import Database
from services.common.domain import (
    HostState,
    Image,
    Instance,
    InstanceEvent,
    InstanceEventKind,
    Resources,
    TaskState,
    VmState,
    utcnow,
)
from services.common.request_spec import StoredSpec
from services.common.rpc.compute_client import BuildAck
from services.conductor.failures import fail_builds
from services.conductor.metrics import ConductorMetrics
from services.conductor.scheduler.request import RequestSpec
from services.conductor.scheduler.scheduler import Decision, Scheduler

log = logging.getLogger(__name__)

# A claim lost to another conductor is retried against freshly loaded host states.
MAX_CLAIM_ROUNDS = 5
# A batch whose transaction fails (database away) is tried again; after that the instances
# stay in `scheduling` for the reconciler.
BATCH_ATTEMPTS = 3
PASSWORDS_KEPT = 100_000
# After an idle spell the first cast waits this long for company: creates sent one by one a
# few milliseconds apart then share a pass (its reads, transaction and per-host calls)
# instead of paying for one each. Measured with 50 clients at 200 creates/s: CreateServer
# p99 24 -> 17 ms, as the conductor takes less CPU from the api on a shared machine.
SCHEDULE_LINGER_S = 0.01
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
    placements: list[instance_repo.Placement] = field(default_factory=list)
    skipped: int = 0
    # claims whose host's generation moved under them (another conductor claimed there first;
    # placed again on fresh host states): what scale-out costs, counted (make bench)
    claim_conflicts: int = 0


@dataclass
class Draft:
    """A pass's reads and choices, made on a read snapshot before the write transaction."""

    instances: dict[str, Instance]
    stored: dict[str, StoredSpec]
    images: dict[str, Image]
    decisions: list[Decision]
    host_count: int


@dataclass
class _Batch:
    """What one scheduling pass works on, inside its transaction."""

    connection: Connection
    plan: BatchPlan
    instances: dict[str, Instance]
    stored: dict[str, StoredSpec]
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


def request_spec(
    instance: Instance,
    stored: StoredSpec,
    *,
    policies: dict[str, str],
    member_hosts: dict[str, dict[str, int]],
    hint_hosts: dict[str, str],
) -> RequestSpec:
    """The scheduler's view of one instance, with group and hint hosts resolved."""
    group = stored.group if stored.group in policies else None
    same = (
        frozenset(hint_hosts[u] for u in stored.same_host if u in hint_hosts)
        if stored.same_host
        else None
    )
    return RequestSpec(
        instance_uuid=instance.uuid,
        project_id=instance.project_id,
        resources=instance.resources,
        availability_zone=stored.availability_zone,
        force_host=stored.force_host,
        force_node=stored.force_node,
        image_properties=stored.image_properties,
        group_uuid=group,
        group_policy=policies.get(group) if group else None,
        group_hosts=member_hosts.get(group, {}) if group else {},
        same_host_hosts=same,
        different_host_hosts=frozenset(
            hint_hosts[u] for u in stored.different_host if u in hint_hosts
        ),
        ignore_hosts=frozenset(stored.tried_hosts),
        reservation_id=instance.reservation_id,
        min_count=stored.min_count,
    )


def _waiting(connection: Connection, loaded: Sequence[Instance]) -> list[Instance]:
    """The loaded instances that still wait for a host (building, scheduling, no claim)."""
    allocated = placement.allocated_instances(connection, [i.uuid for i in loaded])
    return [
        i
        for i in loaded
        if i.vm_state is VmState.BUILDING
        and i.task_state is TaskState.SCHEDULING
        and i.uuid not in allocated
    ]


def _plain_spec(instance: Instance, stored: StoredSpec) -> RequestSpec:
    """The spec of a request with no server group and no host hints."""
    return request_spec(instance, stored, policies={}, member_hosts={}, hint_hosts={})


class BuildTask:
    def __init__(
        self,
        db: Database,
        computes: ComputeBuilder,
        scheduler: Scheduler,
        *,
        service_down_time: timedelta,
        batch_size: int = 500,
        metrics: ConductorMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self._db = db
        self._computes = computes
        self._scheduler = scheduler
        self._down_time = service_down_time
        self._batch_size = batch_size
        self._queue: list[tuple[list[str], str, str]] = []
        self._queued = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._dispatches: set[asyncio.Task[None]] = set()
        self._scheduling = False  # a pass is running (drain waits for it)
        self._progress = asyncio.Event()  # set after each pass and each dispatch: drain's cue
        # Where builds go that could not be handed to their host: rescheduling (set by the
        # composition root to InstanceEvents.apply); without it they fail for good.
        self.report_failures: Callable[[Sequence[InstanceEvent]], Awaitable[object]] | None = None
        self.placed = 0
        self.no_valid_host = 0
        # Admin passwords of recent casts, kept in memory only, so that a build rescheduled to
        # an alternate host still gets its password (insertion-ordered: oldest dropped first).
        self._passwords: dict[str, str] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="build-task")

    def submit(
        self, instance_uuids: Sequence[str], request_id: str = "", admin_password: str = ""
    ) -> None:
        """Queue one cast (kept whole: a multi-create is placed in one pass)."""
        if instance_uuids:
            self._queue.append((list(instance_uuids), request_id, admin_password))
            self._queued += len(instance_uuids)
            self._wakeup.set()

    @property
    def backlog(self) -> int:
        return self._queued

    def _next_batch(self) -> list[tuple[str, str, str]]:
        """(uuid, request id, admin password) for whole casts, up to the batch size."""
        batch: list[tuple[str, str, str]] = []
        while self._queue and (
            not batch or len(batch) + len(self._queue[0][0]) <= self._batch_size
        ):
            uuids, request_id, password = self._queue.pop(0)
            batch.extend((u, request_id, password) for u in uuids)
        self._queued -= len(batch)
        return batch

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                await asyncio.sleep(SCHEDULE_LINGER_S)  # let the casts close behind it join
                continue
            batch = self._next_batch()
            self._scheduling = True
            try:
                await self._schedule_with_retries(batch)
            finally:
                self._scheduling = False
                self._progress.set()

    async def _schedule_with_retries(self, batch: Sequence[tuple[str, str, str]]) -> None:
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            try:
                await self.schedule(batch)
                return
            except Exception:
                # Nothing was committed: the instances are still `scheduling`.
                log.exception("scheduling a batch of %d failed (attempt %d of %d)",
                              len(batch), attempt, BATCH_ATTEMPTS)  # fmt: skip
                await asyncio.sleep(0.2 * attempt)

    async def schedule(self, batch: Sequence[tuple[str, str, str]]) -> BatchPlan:
        started = time.perf_counter()
        request_ids = {uuid: request_id for uuid, request_id, _ in batch}
        for uuid, _, password in batch:
            if password:
                self._passwords[uuid] = password
        while len(self._passwords) > PASSWORDS_KEPT:
            self._passwords.pop(next(iter(self._passwords)))
        plan = await self.place(request_ids)
        self.placed += len(plan.placements)
        self.no_valid_host += len(plan.failed)
        self._observe(plan, time.perf_counter() - started)
        self.dispatch(list(plan.by_host.values()))
        return plan

    def _observe(self, plan: BatchPlan, seconds: float) -> None:
        """Metrics, and one log line per request (with its request id) saying where its
        servers went: enough to follow a create without a line per instance."""
        now = utcnow()
        per_request: dict[str, Counter[str]] = defaultdict(Counter)
        for host_builds in plan.by_host.values():
            for build in host_builds.builds:
                per_request[build.request_id][host_builds.host.host] += 1
                if self._metrics is not None:
                    delay = (now - build.instance.created_at).total_seconds()
                    self._metrics.schedule_delay.observe(delay)
        for request_id, hosts in per_request.items():
            placed = ", ".join(f"{h} x{n}" for h, n in sorted(hosts.items()))
            log.info("placed %d servers: %s", sum(hosts.values()), placed,
                     extra={"request_id": request_id or "-"})  # fmt: skip
        if plan.failed:
            log.info("%d servers found no valid host", len(plan.failed))
        if self._metrics is not None:
            self._metrics.scheduling_pass.observe(seconds)
            self._metrics.placed.inc(len(plan.placements))
            self._metrics.claim_conflicts.inc(plan.claim_conflicts)
            self._metrics.no_valid_host.inc(
                sum(1 for f in plan.failed if f.message.startswith(NO_VALID_HOST))
            )

    def dispatch(self, work: Sequence[HostBuilds]) -> None:
        """Send each host its builds (after the commit that recorded them)."""
        for host_builds in work:
            host_builds.builds = [
                b if b.admin_password or b.uuid not in self._passwords
                else replace(b, admin_password=self._passwords[b.uuid])
                for b in host_builds.builds
            ]  # fmt: skip
            task = asyncio.create_task(self._dispatch(host_builds))
            self._dispatches.add(task)
            task.add_done_callback(self._dispatch_done)

    # -- planning: a draft on a read snapshot, then one write transaction ---------------

    async def place(self, request_ids: dict[str, str]) -> BatchPlan:
        """Place the waiting instances among ``request_ids`` (uuid -> request id)."""
        now = utcnow()
        draft = await self._db.read(lambda c: self.draft(c, list(request_ids), now))
        if draft is not None and not draft.instances:
            return BatchPlan(skipped=len(request_ids))  # nothing waits: nothing to write
        return await self._db.write(lambda c: self.plan(c, request_ids, now, draft))

    def draft(self, connection: Connection, uuids: Sequence[str], now: datetime) -> Draft | None:
        """Load and choose without the write lock; None when the batch must be placed wholly
        inside the write transaction (server groups and host hints)."""
        waiting = _waiting(connection, instance_repo.load_instances(connection, uuids))
        stored = {i.uuid: StoredSpec.from_json(i.request_spec) for i in waiting}
        if any(s.group or s.same_host or s.different_host for s in stored.values()):
            return None
        instances = {i.uuid: i for i in waiting}
        if not instances:
            return Draft({}, {}, {}, [], 0)
        hosts = placement.load_host_states(connection, now=now, service_down_time=self._down_time)
        specs = [_plain_spec(instances[u], stored[u]) for u in instances]
        return Draft(
            instances=instances,
            stored=stored,
            images=catalog.images_by_id(connection, {i.image_id for i in waiting}),
            decisions=self._scheduler.place(specs, hosts),
            host_count=len(hosts),
        )

    def plan(
        self,
        connection: Connection,
        request_ids: dict[str, str],
        now: datetime,
        draft: Draft | None = None,
    ) -> BatchPlan:
        """The write transaction of a pass: claim the draft's choices (or choose here when
        there is no draft), place again whatever lost its claim, record it all."""
        plan = BatchPlan()
        decisions: list[Decision] | None = None
        if draft is None:
            loaded = instance_repo.load_instances(connection, list(request_ids), for_update=True)
            waiting = _waiting(connection, loaded)
            instances = {i.uuid: i for i in waiting}
            stored = {i.uuid: StoredSpec.from_json(i.request_spec) for i in waiting}
            images = catalog.images_by_id(connection, {i.image_id for i in waiting})
            host_count = 0
        else:
            # Only what still waits now: a delete or another conductor may have come between.
            still = instance_repo.still_scheduling(connection, list(draft.instances))
            unclaimed = still - set(placement.allocated_instances(connection, list(still)))
            instances = {u: i for u, i in draft.instances.items() if u in unclaimed}
            stored = {u: draft.stored[u] for u in instances}
            images = draft.images
            decisions = [d for d in draft.decisions if d.spec.instance_uuid in instances]
            host_count = draft.host_count
        plan.skipped = len(request_ids) - len(instances)
        if not instances:
            return plan
        batch = _Batch(connection, plan, instances, stored, images, request_ids, now)
        pending = list(instances)
        for _ in range(MAX_CLAIM_ROUNDS):
            if decisions is None:
                hosts = placement.load_host_states(
                    connection, now=now, service_down_time=self._down_time
                )
                host_count = len(hosts)
                decisions = self._scheduler.place(self._specs(batch, pending), hosts)
            pending = self._claim(batch, decisions)
            plan.claim_conflicts += len(pending)
            decisions = None
            if not pending:
                break
        for uuid in pending:  # still losing races after every round: give up honestly
            self._fail(batch, uuid, {}, host_count)
        self._enforce_min_count(batch)
        instance_repo.mark_placed(connection, plan.placements, now)
        instance_repo.mark_error(connection, plan.failed, now)
        self._record_actions(batch)
        return plan

    def _specs(self, batch: _Batch, uuids: Sequence[str]) -> list[RequestSpec]:
        """Specs with their groups' and hinted servers' hosts read in this transaction."""
        stored = [batch.stored[u] for u in uuids]
        group_uuids = sorted({s.group for s in stored if s.group})
        found = groups.get_groups(batch.connection, group_uuids, project_id=None)
        policies = {u: g.policy for u, g in found.items()}
        member_hosts = {
            g: dict(c) for g, c in groups.member_hosts(batch.connection, list(policies)).items()
        }
        hinted = sorted({u for s in stored for u in (*s.same_host, *s.different_host)})
        hint_hosts = groups.instance_hosts(batch.connection, hinted)
        return [
            request_spec(
                batch.instances[u],
                batch.stored[u],
                policies=policies,
                member_hosts=member_hosts,
                hint_hosts=hint_hosts,
            )
            for u in uuids
        ]

    def _claim(self, batch: _Batch, decisions: Sequence[Decision]) -> list[str]:
        """Claim each host's share; return the instances whose host was taken meanwhile."""
        per_host: dict[int, list[Decision]] = defaultdict(list)
        for decision in decisions:
            if decision.host is None:
                uuid = decision.spec.instance_uuid
                self._fail(batch, uuid, decision.rejected_by, decision.host_count)
            else:
                per_host[decision.host.node_id].append(decision)
        lost: list[str] = []
        allocations: list[tuple[int, str, Resources]] = []
        # Every chosen host's generation is checked and bumped in one statement: a pass used
        # to spend one round trip per host here, the most of its time on PostgreSQL. Two
        # conductors whose statements lock overlapping rows in different orders deadlock at
        # worst; PostgreSQL breaks that and Database.write runs the pass again.
        chosen_hosts = [d[0].host for d in per_host.values() if d[0].host is not None]
        bumped = placement.bump_generations(batch.connection, chosen_hosts)
        for node_id, chosen in sorted(per_host.items()):
            host = chosen[0].host
            assert host is not None
            if node_id not in bumped:
                lost.extend(d.spec.instance_uuid for d in chosen)
                continue
            for decision in chosen:
                if self._accept(batch, host, decision):
                    spec = decision.spec
                    allocations.append((node_id, spec.instance_uuid, spec.resources))
        placement.insert_allocations(batch.connection, allocations, batch.now)
        return lost

    def _accept(self, batch: _Batch, host: HostState, decision: Decision) -> bool:
        """Plan the build on ``host``; False (and a fault) when it cannot be built at all."""
        instance = batch.instances[decision.spec.instance_uuid]
        image = batch.images.get(instance.image_id)
        if image is None:
            batch.plan.failed.append(
                instance_repo.FaultRecord(
                    instance.uuid, 400, f"image {instance.image_id} no longer exists"
                )
            )
            return False
        stored = replace(
            batch.stored[instance.uuid], alternates=tuple(h.host for h in decision.alternates)
        )
        batch.stored[instance.uuid] = stored
        batch.plan.placements.append(
            instance_repo.Placement(
                instance.uuid, host.host, host.hypervisor_hostname, stored.to_json()
            )
        )
        request_id = batch.request_ids.get(instance.uuid) or instance.request_id
        entry = batch.plan.by_host.setdefault(host.host, HostBuilds(host))
        entry.builds.append(
            BuildRequest(
                replace(instance, host=host.host, node=host.hypervisor_hostname),
                image,
                attempt=len(stored.tried_hosts) + 1,
                request_id=request_id,
                admin_password=self._passwords.get(instance.uuid, ""),
            )
        )
        return True

    def _fail(self, batch: _Batch, uuid: str, rejected: dict[str, int], host_count: int) -> None:
        message, details = no_valid_host_message(rejected, host_count)
        batch.plan.failed.append(instance_repo.FaultRecord(uuid, 500, message, details))

    def _enforce_min_count(self, batch: _Batch) -> None:
        """A multi-create that could not place min_count instances builds none of them."""
        by_reservation: dict[str, list[str]] = defaultdict(list)
        for uuid, instance in batch.instances.items():
            by_reservation[instance.reservation_id].append(uuid)
        placed = {p.uuid for p in batch.plan.placements}
        for reservation, uuids in by_reservation.items():
            wanted = batch.stored[uuids[0]].min_count
            fitted = sum(1 for u in uuids if u in placed)
            if wanted <= 1 or fitted >= wanted:
                continue
            placement.free_allocations(batch.connection, [u for u in uuids if u in placed])
            doomed = set(uuids)
            plan = batch.plan
            plan.placements = [p for p in plan.placements if p.uuid not in doomed]
            for host_builds in plan.by_host.values():
                host_builds.builds = [b for b in host_builds.builds if b.uuid not in doomed]
            plan.failed = [f for f in plan.failed if f.uuid not in doomed]
            message = (
                f"{NO_VALID_HOST}: only {fitted} of the {wanted} servers required "
                f"(min_count) fit, so none of reservation {reservation} is built"
            )
            plan.failed.extend(instance_repo.FaultRecord(u, 500, message) for u in uuids)

    def _record_actions(self, batch: _Batch) -> None:
        events = [
            actions.EventRecord(p.uuid, actions.CREATE, actions.CONDUCTOR_SCHEDULE, None,
                                actions.SUCCESS, f"host {p.host}")
            for p in batch.plan.placements
        ] + [
            actions.EventRecord(f.uuid, actions.CREATE, actions.CONDUCTOR_SCHEDULE, None,
                                actions.ERROR, f"{f.message} ({f.details})")
            for f in batch.plan.failed
        ] + [
            actions.EventRecord(p.uuid, actions.CREATE, actions.COMPUTE_BUILD_AND_RUN, p.host,
                                finish=False)
            for p in batch.plan.placements
        ]  # fmt: skip
        actions.add_events(batch.connection, events, batch.now)
        failed = [f.uuid for f in batch.plan.failed]
        actions.finish_actions(batch.connection, failed, actions.CREATE, batch.now,
                               message=NO_VALID_HOST)  # fmt: skip

    async def redispatch(self, uuids: Sequence[str]) -> int:
        """Send placed builds to their hosts again (idempotent there: a host that has the
        build already answers that it is a duplicate)."""

        def plan(connection: Connection) -> list[HostBuilds]:
            instances = [
                i
                for i in instance_repo.load_instances(connection, uuids)
                if i.vm_state is VmState.BUILDING and i.host and i.task_state is None
            ]
            hosts = {
                h.host: h
                for h in placement.load_host_states(
                    connection, now=utcnow(), service_down_time=self._down_time,
                    hosts=sorted({i.host for i in instances if i.host}),
                )
            }  # fmt: skip
            images = catalog.images_by_id(connection, {i.image_id for i in instances})
            work: dict[str, HostBuilds] = {}
            for instance in instances:
                host, image = hosts.get(instance.host or ""), images.get(instance.image_id)
                if host is None or image is None:
                    continue
                attempt = len(StoredSpec.from_json(instance.request_spec).tried_hosts) + 1
                build = BuildRequest(instance, image, attempt=attempt,
                                     request_id=instance.request_id)  # fmt: skip
                work.setdefault(host.host, HostBuilds(host)).builds.append(build)
            return list(work.values())

        work = await self._db.read(plan)
        self.dispatch(work)
        return sum(len(w.builds) for w in work)

    # -- sending ------------------------------------------------------------------------

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
            log.warning("%s; rescheduling %d builds", reason, len(builds))
            if self.report_failures is None:
                await self.fail_builds([b.uuid for b in builds], reason, host=host.host)
                return
            now = utcnow()
            await self.report_failures(
                [
                    InstanceEvent(b.uuid, host.host, InstanceEventKind.RESCHEDULE, now,
                                  reason=reason, request_id=b.request_id)
                    for b in builds
                ]
            )  # fmt: skip

    async def fail_builds(self, uuids: Sequence[str], reason: str, *, host: str | None) -> None:
        """Free the claims and put the instances in ERROR with the reason as their fault."""
        await self._db.write(lambda c: fail_builds(c, uuids, reason, utcnow(), host=host))

    def _dispatch_done(self, task: asyncio.Task[None]) -> None:
        self._dispatches.discard(task)
        self._progress.set()

    async def drain(self, timeout: float) -> None:
        """Before a stop: place what is queued and hand it to its hosts, for up to
        ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self._queue or self._scheduling or self._dispatches:
                    self._progress.clear()
                    await self._progress.wait()
        if self._queue or self._scheduling:
            log.warning("stopping with %d instances not placed; another conductor's "
                        "reconciler will place them", self._queued)  # fmt: skip

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._dispatches):
            task.cancel()
