"""The conductor's build path, wired: intake → placement pass → dispatch.

Casts queue whole in the intake; one placement pass places each batch and commits;
dispatch sends each host its builds after the commit. The parts live in
services/conductor/build_path/; this module only joins them and keeps the figures the
service reports (metrics, one log line per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta

from services.common.domain import InstanceEvent, VmState, utcnow
from services.common.instance_actions import ActionName
from services.common.stores import FaultRecord
from services.conductor.build_path.dispatch import ComputeBuilder, Dispatcher, Reschedule
from services.conductor.build_path.factory import RecentPasswords, build_spec
from services.conductor.build_path.intake import Intake
from services.conductor.build_path.placement import Draft, PlacementPass
from services.conductor.build_path.ports import BuildStore, BuildTransactions
from services.conductor.build_path.types import NO_VALID_HOST, BatchPlan, Cast, HostBuilds
from services.conductor.metrics import ConductorMetrics
from services.conductor.scheduler.scheduler import Scheduler

log = logging.getLogger(__name__)

# After an idle spell the first cast waits this long for company: creates sent one by one a
# few milliseconds apart then share a pass (its reads, transaction and per-host calls)
# instead of paying for one each. Measured with 50 clients at 200 creates/s: CreateServer
# p99 24 -> 17 ms, as the conductor takes less CPU from the api on a shared machine.
SCHEDULE_LINGER = timedelta(milliseconds=10)


class BuildTask:
    def __init__(
        self,
        stores: BuildTransactions,
        computes: ComputeBuilder,
        scheduler: Scheduler,
        *,
        service_down_time: timedelta,
        reschedule: Reschedule | None = None,
        batch_size: int = 500,
        linger: timedelta = SCHEDULE_LINGER,
        metrics: ConductorMetrics | None = None,
    ) -> None:
        """``reschedule``: where builds go that could not be handed to their host (the
        conductor's EventRecorder.record); without it they fail for good. ``stores``: the
        database as the build path sees it (the service's app gives it SQL)."""
        self._metrics = metrics
        self._down_time = service_down_time
        self._passwords = RecentPasswords()
        self._stores = stores
        self.placement = PlacementPass(
            self._stores,
            scheduler,
            service_down_time=service_down_time,
            passwords=self._passwords,
        )
        self.dispatcher = Dispatcher(
            computes,
            reschedule=reschedule or self._fail_unsent,
            passwords=self._passwords,
            count_error=self._count_error,
        )
        self._intake = Intake(
            self.schedule, batch_size=batch_size, linger=linger, passwords=self._passwords,
            count_error=self._count_error,
        )  # fmt: skip
        self.placed = 0
        self.no_valid_host = 0

    def start(self) -> None:
        self._intake.start()

    def submit(
        self, instance_uuids: Sequence[str], request_id: str = "", admin_password: str = ""
    ) -> None:
        """Queue one cast (kept whole: a multi-create is placed in one pass)."""
        self._intake.submit(Cast(tuple(instance_uuids), request_id, admin_password))

    @property
    def backlog(self) -> int:
        """Instances cast and not yet taken by a pass."""
        return self._intake.backlog

    async def schedule(self, request_ids: dict[str, str]) -> BatchPlan:
        """One pass over ``request_ids`` (uuid -> request id), then its builds sent."""
        started = time.perf_counter()
        plan = await self.place(request_ids)
        self.placed += len(plan.placements)
        self.no_valid_host += len(plan.failed)
        self._observe(plan, time.perf_counter() - started)
        self.dispatch(list(plan.by_host.values()))
        return plan

    # -- the placement pass ----------------------------------------------------------------

    async def place(self, request_ids: dict[str, str]) -> BatchPlan:
        return await self.placement.place(request_ids)

    def draft(self, store: BuildStore, uuids: Sequence[str], now: datetime) -> Draft | None:
        return self.placement.draft(store, uuids, now)

    def plan(
        self,
        store: BuildStore,
        request_ids: dict[str, str],
        now: datetime,
        *,
        draft: Draft | None = None,
    ) -> BatchPlan:
        return self.placement.plan(store, request_ids, now, draft=draft)

    def _observe(self, plan: BatchPlan, seconds: float) -> None:
        """Metrics, and one log line per request (with its request id) saying where its
        servers went: enough to follow a create without a line per instance."""
        now = utcnow()
        per_request: dict[str, Counter[str]] = defaultdict(Counter)
        for host_builds in plan.by_host.values():
            for build in host_builds.builds:
                per_request[build.request_id][host_builds.host.host] += 1
                if self._metrics is not None:
                    delay = (now - build.created_at).total_seconds()
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
            self._metrics.claim_conflicts.inc(plan.claim_conflicts)
            self._metrics.no_valid_host.inc(
                sum(1 for f in plan.failed if f.message.startswith(NO_VALID_HOST))
            )

    # -- dispatch --------------------------------------------------------------------------

    def dispatch(self, work: Sequence[HostBuilds]) -> None:
        """Send each host its builds (after the commit that recorded them)."""
        self.dispatcher.dispatch(work)

    async def redispatch(self, uuids: Sequence[str]) -> int:
        """Send placed builds to their hosts again (idempotent there: a host that has the
        build already answers that it is a duplicate)."""
        work = await self._stores.read(
            lambda s: placed_builds(s, uuids, now=utcnow(), service_down_time=self._down_time)
        )
        self.dispatch(work)
        return sum(len(w.builds) for w in work)

    async def _fail_unsent(self, failures: Sequence[InstanceEvent]) -> list[HostBuilds]:
        """Without a reschedule path: free the claims, ERROR with the reason as the fault
        (the failures of one call share their host and reason)."""
        if failures:
            uuids = [e.instance_uuid for e in failures]
            reason, host = failures[0].reason, failures[0].host
            await self._stores.write(lambda s: _end_builds(s, uuids, reason, host=host))
        return []

    def _count_error(self, where: str) -> None:
        if self._metrics is not None:
            self._metrics.task_errors.labels(f"build-{where}").inc()

    # -- stopping --------------------------------------------------------------------------

    async def drain(self, timeout: float) -> None:
        """Before a stop: place what is queued and hand it to its hosts, for up to
        ``timeout`` seconds."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._intake.wait_idle()
                await self.dispatcher.wait_idle()
        if not self._intake.idle:
            log.warning("stopping with %d instances not placed; another conductor's "
                        "reconciler will place them", self._intake.backlog)  # fmt: skip

    async def close(self) -> None:
        await self._intake.close()
        await self.dispatcher.close()


def placed_builds(
    store: BuildStore,
    uuids: Sequence[str],
    *,
    now: datetime,
    service_down_time: timedelta,
) -> list[HostBuilds]:
    """The builds of placed, unsent instances among ``uuids``, by host (hosts and images that
    are gone leave their instances to the build timeout)."""
    instances = [
        i
        for i in store.load_instances(uuids)
        if i.vm_state is VmState.BUILDING and i.host and i.task_state is None
    ]
    hosts = {
        h.host: h
        for h in store.host_states(
            now=now, service_down_time=service_down_time,
            hosts=sorted({i.host for i in instances if i.host}),
        )
    }  # fmt: skip
    images = store.images({i.image_id for i in instances})
    work: dict[str, HostBuilds] = {}
    for instance in instances:
        host, image = hosts.get(instance.host or ""), images.get(instance.image_id)
        if host is None or image is None:
            continue
        build = build_spec(instance, image)
        work.setdefault(host.host, HostBuilds(host)).builds.append(build)
    return list(work.values())


def _end_builds(store: BuildStore, uuids: Sequence[str], reason: str, *, host: str | None) -> None:
    """What failures.end_builds does, on the build path's store: free the claims, ERROR with
    the reason as the fault, the create action finished."""
    now = utcnow()
    store.free_allocations(uuids)
    store.mark_error([FaultRecord(u, 500, reason, host=host) for u in uuids], now)
    store.finish_actions(uuids, ActionName.CREATE, now, message=reason)
