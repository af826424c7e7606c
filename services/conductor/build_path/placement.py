"""One placement pass: place a batch of waiting instances and record it in one transaction.

The pass loads every host's state in one query, places the whole batch in memory, claims per
host with the generation check, records the hosts, alternates and the no-valid-host faults and
commits once. Everything is keyed by instance uuid: an instance already placed (or no longer
waiting) is skipped, so a message cast twice builds once.

The reading and the choosing happen before the write transaction (a *draft*, on a read
snapshot): on SQLite every writer waits for the one write lock, and a pass that held it while
it loaded hosts and weighed them kept the api's creates waiting. The generation check makes
this safe: a host whose state moved since the draft loses its claim, and the losers are
placed again inside the transaction. Requests with a server group or same/different-host
hints are placed wholly inside the transaction, where the members' hosts cannot move.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from services.common.domain import (
    GroupPolicy,
    HostState,
    Image,
    Instance,
    Resources,
    TaskState,
    VmState,
    utcnow,
)
from services.common.instance_actions import ActionEventName, ActionName, ActionResult
from services.common.records import EventRecord, Placement
from services.common.request_spec import StoredSpec
from services.common.stores import FaultRecord
from services.conductor.build_path.factory import RecentPasswords, build_spec
from services.conductor.build_path.ports import BuildStore, BuildTransactions
from services.conductor.build_path.types import (
    NO_VALID_HOST,
    BatchPlan,
    HostBuilds,
    no_valid_host_message,
)
from services.conductor.scheduler.request import RequestSpec
from services.conductor.scheduler.scheduler import Decision, Scheduler

# A claim lost to another conductor is retried against freshly loaded host states.
MAX_CLAIM_ROUNDS = 5


@dataclass(kw_only=True)
class Draft:
    """A pass's reads and choices, made on a read snapshot before the write transaction."""

    instances: dict[str, Instance]
    stored: dict[str, StoredSpec]
    images: dict[str, Image]
    decisions: list[Decision]
    host_count: int


@dataclass(kw_only=True)
class _Batch:
    """What one scheduling pass works on, inside its transaction."""

    store: BuildStore
    plan: BatchPlan
    instances: dict[str, Instance]
    stored: dict[str, StoredSpec]
    images: dict[str, Image]
    request_ids: Mapping[str, str]
    now: datetime


def request_spec(
    instance: Instance,
    stored: StoredSpec,
    *,
    policies: Mapping[str, GroupPolicy],
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


def _waiting(store: BuildStore, loaded: Sequence[Instance]) -> list[Instance]:
    """The loaded instances that still wait for a host (building, scheduling, no claim)."""
    allocated = store.allocated([i.uuid for i in loaded])
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


class PlacementPass:
    def __init__(
        self,
        db: BuildTransactions,
        scheduler: Scheduler,
        *,
        service_down_time: timedelta,
        passwords: RecentPasswords | None = None,
    ) -> None:
        self._db = db
        self._scheduler = scheduler
        self._down_time = service_down_time
        self._passwords = passwords

    async def place(self, request_ids: Mapping[str, str]) -> BatchPlan:
        """Place the waiting instances among ``request_ids`` (uuid -> request id)."""
        now = utcnow()
        draft = await self._db.read(lambda c: self.draft(c, list(request_ids), now))
        if draft is not None and not draft.instances:
            return BatchPlan(skipped=len(request_ids))  # nothing waits: nothing to write
        plan: BatchPlan = await self._db.write(
            lambda c: self.plan(c, request_ids, now, draft=draft)
        )
        return plan

    def draft(self, store: BuildStore, uuids: Sequence[str], now: datetime) -> Draft | None:
        """Load and choose without the write lock; None when the batch must be placed wholly
        inside the write transaction (server groups and host hints)."""
        waiting = _waiting(store, store.load_instances(uuids))
        stored = {i.uuid: i.request_spec for i in waiting}
        if any(s.group or s.same_host or s.different_host for s in stored.values()):
            return None
        instances = {i.uuid: i for i in waiting}
        if not instances:
            return Draft(instances={}, stored={}, images={}, decisions=[], host_count=0)
        hosts = store.host_states(now=now, service_down_time=self._down_time)
        specs = [_plain_spec(instances[u], stored[u]) for u in instances]
        return Draft(
            instances=instances,
            stored=stored,
            images=store.images({i.image_id for i in waiting}),
            decisions=self._scheduler.place(specs, hosts),
            host_count=len(hosts),
        )

    def plan(
        self,
        store: BuildStore,
        request_ids: Mapping[str, str],
        now: datetime,
        *,
        draft: Draft | None = None,
    ) -> BatchPlan:
        """The write transaction of a pass: claim the draft's choices (or choose here when
        there is no draft), place again whatever lost its claim, record it all."""
        plan = BatchPlan()
        decisions: list[Decision] | None = None
        if draft is None:
            loaded = store.load_instances(list(request_ids), for_update=True)
            waiting = _waiting(store, loaded)
            instances = {i.uuid: i for i in waiting}
            stored = {i.uuid: i.request_spec for i in waiting}
            images = store.images({i.image_id for i in waiting})
            host_count = 0
        else:
            # Only what still waits now: a delete or another conductor may have come between.
            still = store.still_scheduling(list(draft.instances))
            unclaimed = still - set(store.allocated(list(still)))
            instances = {u: i for u, i in draft.instances.items() if u in unclaimed}
            stored = {u: draft.stored[u] for u in instances}
            images = draft.images
            decisions = [d for d in draft.decisions if d.spec.instance_uuid in instances]
            host_count = draft.host_count
        plan.skipped = len(request_ids) - len(instances)
        if not instances:
            return plan
        batch = _Batch(
            store=store, plan=plan, instances=instances, stored=stored, images=images,
            request_ids=request_ids, now=now,
        )  # fmt: skip
        pending = list(instances)
        for _ in range(MAX_CLAIM_ROUNDS):
            if decisions is None:
                hosts = store.host_states(now=now, service_down_time=self._down_time)
                host_count = len(hosts)
                decisions = self._scheduler.place(self._specs(batch, pending), hosts)
            pending = self._claim(batch, decisions)
            plan.claim_conflicts += len(pending)
            decisions = None
            if not pending:
                break
        for uuid in pending:  # still losing races after every round: give up honestly
            _fail(batch, uuid, {}, host_count=host_count)
        _enforce_min_count(batch)
        store.mark_placed(plan.placements, now)
        store.mark_error(plan.failed, now)
        _record_actions(batch)
        return plan

    def _specs(self, batch: _Batch, uuids: Sequence[str]) -> list[RequestSpec]:
        """Specs with their groups' and hinted servers' hosts read in this transaction."""
        stored = [batch.stored[u] for u in uuids]
        group_uuids = sorted({s.group for s in stored if s.group})
        policies = batch.store.group_policies(group_uuids)
        member_hosts = {g: dict(c) for g, c in batch.store.member_hosts(list(policies)).items()}
        hinted = sorted({u for s in stored for u in (*s.same_host, *s.different_host)})
        hint_hosts = batch.store.instance_hosts(hinted)
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
                _fail(batch, uuid, decision.rejected_by, host_count=decision.host_count)
            else:
                per_host[decision.host.node_id].append(decision)
        lost: list[str] = []
        allocations: list[tuple[int, str, Resources]] = []
        # Every chosen host's generation is checked and bumped in one statement: a pass used
        # to spend one round trip per host here, the most of its time on PostgreSQL. Two
        # conductors whose statements lock overlapping rows in different orders deadlock at
        # worst; PostgreSQL breaks that and Database.write runs the pass again.
        chosen_hosts = [d[0].host for d in per_host.values() if d[0].host is not None]
        bumped = batch.store.bump_generations(chosen_hosts)
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
        batch.store.insert_allocations(allocations, batch.now)
        return lost

    def _accept(self, batch: _Batch, host: HostState, decision: Decision) -> bool:
        """Plan the build on ``host``; False (and a fault) when it cannot be built at all."""
        instance = batch.instances[decision.spec.instance_uuid]
        image = batch.images.get(instance.image_id)
        if image is None:
            batch.plan.failed.append(
                FaultRecord(instance.uuid, 400, f"image {instance.image_id} no longer exists")
            )
            return False
        stored = replace(
            batch.stored[instance.uuid], alternates=tuple(h.host for h in decision.alternates)
        )
        batch.stored[instance.uuid] = stored
        batch.plan.placements.append(
            Placement(instance.uuid, host.host, host.hypervisor_hostname, stored)
        )
        entry = batch.plan.by_host.setdefault(host.host, HostBuilds(host))
        entry.builds.append(
            build_spec(
                instance,
                image,
                request_id=batch.request_ids.get(instance.uuid, ""),
                passwords=self._passwords,
            )
        )
        return True


def _fail(batch: _Batch, uuid: str, rejected: dict[str, int], *, host_count: int) -> None:
    message, details = no_valid_host_message(rejected, host_count)
    batch.plan.failed.append(FaultRecord(uuid, 500, message, details))


def _enforce_min_count(batch: _Batch) -> None:
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
        batch.store.free_allocations([u for u in uuids if u in placed])
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
        plan.failed.extend(FaultRecord(u, 500, message) for u in uuids)


def _record_actions(batch: _Batch) -> None:
    events = [
        EventRecord(p.uuid, ActionName.CREATE, ActionEventName.CONDUCTOR_SCHEDULE, None,
                            ActionResult.SUCCESS, f"host {p.host}")
        for p in batch.plan.placements
    ] + [
        EventRecord(f.uuid, ActionName.CREATE, ActionEventName.CONDUCTOR_SCHEDULE, None,
                            ActionResult.ERROR, f"{f.message} ({f.details})")
        for f in batch.plan.failed
    ] + [
        EventRecord(p.uuid, ActionName.CREATE, ActionEventName.COMPUTE_BUILD_AND_RUN, p.host,
                            finish=False)
        for p in batch.plan.placements
    ]  # fmt: skip
    batch.store.add_events(events, batch.now)
    failed = [f.uuid for f in batch.plan.failed]
    batch.store.finish_actions(failed, ActionName.CREATE, batch.now, message=NO_VALID_HOST)
