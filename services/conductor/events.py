"""Applies the state changes compute reports, in batches (one transaction for many reports).

Every change is guarded by the state it expects, so a late or repeated report is harmless:
an ACTIVE report for an instance no longer building changes nothing, a failure report from a
host the instance is no longer on changes nothing, and nothing a build reports overrides a
delete in progress. Failed builds go through rescheduling (conductor/reschedule.py); the
builds it moves are sent to their new hosts after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from services.common.batching import Batcher
from services.common.domain import (
    InstanceEvent,
    InstanceEventKind,
    PowerState,
    TaskState,
    VmState,
    utcnow,
)
from services.common.instance_actions import (
    ACTION_OF,
    POWER_ACTIONS,
    ActionEventName,
    ActionName,
    ActionResult,
)
from services.common.records import EventRecord
from services.common.stores import FaultRecord
from services.conductor.build_path.ports import EventStore, EventTransactions
from services.conductor.build_path.types import HostBuilds
from services.conductor.metrics import ConductorMetrics
from services.conductor.reschedule import handle_failed_builds

log = logging.getLogger(__name__)

Kind = InstanceEventKind


@dataclass(frozen=True, slots=True)
class EventPolicy:
    max_attempts: int = 3
    service_down_time: timedelta = timedelta(seconds=60)


class EventRecorder:
    """The write half: applies a list of events in one transaction and returns the builds it
    moved to other hosts (not sent yet). Shared by the batched reports below and by dispatch,
    which reschedules the builds it could not send."""

    def __init__(
        self,
        stores: EventTransactions,
        policy: EventPolicy,
        *,
        metrics: ConductorMetrics | None = None,
        servers_came_or_went: Callable[[Sequence[str]], None] = lambda uuids: None,
    ) -> None:
        """``servers_came_or_went``: told of servers that became ACTIVE or were deleted
        (their addresses join or leave their groups' member rules). ``stores``: the database
        as applying events sees it (the service's app gives it SQL)."""
        self._stores = stores
        self._policy = policy
        self._metrics = metrics
        self._servers_came_or_went = servers_came_or_went
        self.applied = 0

    async def record(self, events: Sequence[InstanceEvent]) -> list[HostBuilds]:
        moved: list[HostBuilds] = await self._stores.write(
            lambda s: apply_events(s, events, self._policy)
        )
        self.applied += len(events)
        if self._metrics is not None:
            for event in events:
                self._metrics.events.labels(event.kind.value).inc()
        self._servers_came_or_went(
            [e.instance_uuid for e in events if e.kind in (Kind.ACTIVE, Kind.DELETED)]
        )
        return moved


class InstanceEvents:
    """Compute's reports, batched: one transaction for many reports; the builds they move
    are handed to ``dispatch`` after the commit."""

    def __init__(
        self, recorder: EventRecorder, *, dispatch: Callable[[Sequence[HostBuilds]], None]
    ) -> None:
        self._recorder = recorder
        self._dispatch = dispatch
        self._batcher: Batcher[Sequence[InstanceEvent], int] = Batcher(
            self._apply_batch, max_batch=64, name="instance-events"
        )

    @property
    def applied(self) -> int:
        return self._recorder.applied

    def start(self) -> None:
        self._batcher.start()

    async def close(self) -> None:
        await self._batcher.close()

    async def apply(self, events: Sequence[InstanceEvent]) -> int:
        """Returns once the events are committed."""
        return await self._batcher.submit(events)

    async def _apply_batch(
        self, reports: Sequence[Sequence[InstanceEvent]]
    ) -> list[int | BaseException]:
        moved = await self._recorder.record([event for report in reports for event in report])
        if moved:
            self._dispatch(moved)
        return [len(report) for report in reports]


def apply_events(
    store: EventStore, events: Sequence[InstanceEvent], policy: EventPolicy
) -> list[HostBuilds]:
    """Kinds are applied in the order a build produces them; each update is guarded by the
    state it expects, so the order of kinds inside one batch cannot matter. Returns the builds
    moved to another host, to be sent after the commit."""
    now = utcnow()
    by_kind: dict[Kind, list[InstanceEvent]] = {k: [] for k in Kind}
    for event in events:
        by_kind[event.kind].append(event)
    # A build that finished quickly reports "spawning" and "active" together; ACTIVE clears
    # the task state under the same guard, so the spawning update would be overwritten here.
    active = {e.instance_uuid for e in by_kind[Kind.ACTIVE]}
    spawning = [e.instance_uuid for e in by_kind[Kind.SPAWNING] if e.instance_uuid not in active]
    store.set_task_state(spawning, TaskState.SPAWNING, now)
    _activate(store, by_kind[Kind.ACTIVE])
    moved: list[HostBuilds] = []
    failures = by_kind[Kind.RESCHEDULE] + by_kind[Kind.FAILED]
    if failures:
        outcome = handle_failed_builds(
            store,
            failures,
            max_attempts=policy.max_attempts,
            service_down_time=policy.service_down_time,
            now=now,
        )
        moved = list(outcome.moved.values())
    store.set_power_states(
        [(e.instance_uuid, e.power_state) for e in by_kind[Kind.POWER_STATE]], now
    )
    if by_kind[Kind.LOST]:
        _mark_lost(store, by_kind[Kind.LOST])
    _power_results(store, by_kind, now)
    _guest_readiness(store, events, now)
    deleted = [e.instance_uuid for e in by_kind[Kind.DELETED]]
    if deleted:
        store.free_allocations(deleted)
        store.mark_deleted(deleted, now)
        store.finish_events(
            [
                EventRecord(
                    e.instance_uuid,
                    ActionName.DELETE,
                    ActionEventName.COMPUTE_TERMINATE,
                    e.host,
                    ActionResult.SUCCESS,
                )
                for e in by_kind[Kind.DELETED]
            ],
            now,
        )
        store.finish_actions(deleted, ActionName.DELETE, now)
    return moved


_POWER_TASKS = {
    Kind.STOPPED: (VmState.STOPPED, PowerState.SHUTDOWN, ActionName.STOP),
    Kind.STARTED: (VmState.ACTIVE, PowerState.RUNNING, ActionName.START),
    Kind.REBOOTED: (VmState.ACTIVE, PowerState.RUNNING, ActionName.REBOOT),
}


def _power_results(
    store: EventStore, by_kind: dict[Kind, list[InstanceEvent]], now: datetime
) -> None:
    """A finished start/stop/reboot settles vm_state and power_state and clears the task; a
    failed one clears the task and keeps the error in the action (as Nova)."""
    for kind, (vm_state, power, action) in _POWER_TASKS.items():
        uuids = [e.instance_uuid for e in by_kind[kind]]
        if not uuids:
            continue
        store.settle_power_action(uuids, vm_state=vm_state, power=power, now=now)
        store.finish_actions(uuids, action, now)
    failed = by_kind[Kind.ACTION_FAILED]
    if failed:
        store.settle_power_action(
            [e.instance_uuid for e in failed], vm_state=None, power=None, now=now
        )
        for event in failed:
            # A compute too old to name the action: the instance's one open power action
            # (its task state lets only one run at a time) is the one that failed.
            names = (
                [ACTION_OF[event.power_action]] if event.power_action is not None else POWER_ACTIONS
            )
            for action in names:
                store.finish_actions([event.instance_uuid], action, now, message=event.reason)


_CLEARS_READINESS = (Kind.STOPPED, Kind.REBOOTED)


def _guest_readiness(store: EventStore, events: Sequence[InstanceEvent], now: datetime) -> None:
    """A stop or reboot clears guest_ready; the guest's own report sets it. Per server the
    last of these in the batch wins (they come in order from its one compute)."""
    last: dict[str, InstanceEvent] = {}
    for event in events:
        if event.kind is Kind.GUEST_READY or event.kind in _CLEARS_READINESS:
            last[event.instance_uuid] = event
    store.clear_ready([u for u, e in last.items() if e.kind is not Kind.GUEST_READY], now)
    store.mark_ready(
        [(u, e.host, e.occurred_at) for u, e in last.items() if e.kind is Kind.GUEST_READY],
        now,
    )


def _activate(store: EventStore, events: Sequence[InstanceEvent]) -> None:
    if not events:
        return
    stamp = utcnow()
    store.mark_active([(e.instance_uuid, e.host, e.occurred_at) for e in events], stamp)
    store.note_build_results(failed_on=[], succeeded_on=[e.host for e in events])
    store.finish_events(
        [
            EventRecord(
                e.instance_uuid,
                ActionName.CREATE,
                ActionEventName.COMPUTE_BUILD_AND_RUN,
                e.host,
                ActionResult.SUCCESS,
            )
            for e in events
        ],
        stamp,
    )
    store.finish_actions([e.instance_uuid for e in events], ActionName.CREATE, stamp)


def _mark_lost(store: EventStore, events: Sequence[InstanceEvent]) -> None:
    """The domain of a built instance is gone: ERROR with a fault (its claim stays until the
    user deletes it, as Nova keeps the allocations of an ERROR instance)."""
    current = {i.uuid: i for i in store.load_instances([e.instance_uuid for e in events])}
    lost = [
        e
        for e in events
        if (i := current.get(e.instance_uuid)) is not None
        and i.vm_state in (VmState.ACTIVE, VmState.STOPPED, VmState.ERROR)
        and i.host == e.host
    ]
    store.mark_error(
        [
            FaultRecord(
                e.instance_uuid,
                500,
                f"Instance's domain is gone from {e.host}: {e.reason}",
                host=e.host,
            )
            for e in lost
        ],
        utcnow(),
    )
