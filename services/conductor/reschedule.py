"""What happens after a build fails on its host (Nova's reschedule with alternates).

The failed host's claim is freed and the host is remembered as tried. If the failure may be
the host's fault (RESCHEDULE) and attempts remain, the instance moves to the next alternate
chosen with it at scheduling time: a fresh look at that host, an atomic claim, and a new
BuildAndRunInstance. A failure that no host would fix (FAILED), a forced host, spent
attempts or spent alternates end in ERROR with a fault that says why.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from services.common.domain import (
    Image,
    Instance,
    InstanceEvent,
    InstanceEventKind,
    TaskState,
    VmState,
)
from services.common.instance_actions import ActionEventName, ActionName, ActionResult
from services.common.records import EventRecord
from services.common.request_spec import StoredSpec
from services.common.stores import FaultRecord
from services.conductor.build_path.factory import build_spec
from services.conductor.build_path.ports import EventStore
from services.conductor.build_path.types import NO_VALID_HOST, HostBuilds

log = logging.getLogger(__name__)


@dataclass
class RescheduleOutcome:
    moved: dict[str, HostBuilds] = field(default_factory=dict)
    failed: list[FaultRecord] = field(default_factory=list)


def _still_building_on(instance: Instance | None, host: str) -> bool:
    return (
        instance is not None
        and instance.vm_state is VmState.BUILDING
        and instance.task_state is not TaskState.DELETING
        and instance.host == host
    )


def handle_failed_builds(
    store: EventStore,
    failures: Sequence[InstanceEvent],
    *,
    max_attempts: int,
    service_down_time: timedelta,
    now: datetime,
) -> RescheduleOutcome:
    outcome = RescheduleOutcome()
    current = {
        i.uuid: i
        for i in store.load_instances([e.instance_uuid for e in failures], for_update=True)
    }
    relevant = [e for e in failures if _still_building_on(current.get(e.instance_uuid), e.host)]
    if not relevant:
        return outcome
    store.free_allocations([e.instance_uuid for e in relevant])
    store.note_build_results(failed_on=[e.host for e in relevant], succeeded_on=[])
    store.finish_events(
        [
            EventRecord(
                e.instance_uuid,
                ActionName.CREATE,
                ActionEventName.COMPUTE_BUILD_AND_RUN,
                e.host,
                ActionResult.ERROR,
                e.reason,
            )
            for e in relevant
        ],
        now,
    )
    images = store.images({current[e.instance_uuid].image_id for e in relevant})
    for event in relevant:
        instance = current[event.instance_uuid]
        stored = instance.request_spec.with_attempt_on(event.host)
        why = _no_retry_reason(event, stored, max_attempts)
        if why is None:
            moved = _move_to_alternate(
                store,
                instance,
                stored,
                image=images.get(instance.image_id),
                service_down_time=service_down_time,
                now=now,
                request_id=event.request_id,
                admin_password=event.admin_password,
            )
            if moved is not None:
                outcome.moved.setdefault(moved.host.host, HostBuilds(moved.host)).builds.extend(
                    moved.builds
                )
                continue
            why = (
                f"{NO_VALID_HOST}: no alternate host could take the build after "
                f"{len(stored.tried_hosts)} attempt(s)"
            )
        outcome.failed.append(
            FaultRecord(
                instance.uuid,
                500,
                f"{why}; last error on {event.host}: {event.reason}",
                details=f"tried hosts: {', '.join(stored.tried_hosts)}",
                host=event.host,
            )
        )
    store.mark_error(outcome.failed, now)
    for fault in outcome.failed:
        store.finish_actions([fault.uuid], ActionName.CREATE, now, message=fault.message)
    return outcome


def _no_retry_reason(event: InstanceEvent, stored: StoredSpec, max_attempts: int) -> str | None:
    if event.kind is InstanceEventKind.FAILED:
        return "Build failed"
    if stored.force_host:
        return "Build failed on the forced host (no reschedule)"
    if len(stored.tried_hosts) >= max_attempts:
        return f"Exceeded maximum number of retries ({max_attempts} attempts)"
    return None


def _move_to_alternate(
    store: EventStore,
    instance: Instance,
    stored: StoredSpec,
    *,
    image: Image | None,
    service_down_time: timedelta,
    now: datetime,
    request_id: str,
    admin_password: str,
) -> HostBuilds | None:
    """Claim the first alternate that still takes the instance; record the move."""
    if image is None:
        return None
    resources = instance.resources
    remaining = [h for h in stored.alternates if h not in stored.tried_hosts]
    for position, name in enumerate(remaining):
        found = store.host_states(now=now, service_down_time=service_down_time, hosts=[name])
        if not found:
            continue
        host = found[0]
        if not (host.enabled and host.is_up and host.fits(resources)):
            continue
        if not store.claim(host, [(instance.uuid, resources)], now):
            continue  # taken meanwhile: try the next one
        spec = replace(stored, alternates=tuple(remaining[position + 1 :]))
        store.move_build(
            instance.uuid,
            host=host.host,
            node=host.hypervisor_hostname,
            spec=spec,
            now=now,
        )
        store.add_events(
            [
                EventRecord(
                    instance.uuid,
                    ActionName.CREATE,
                    ActionEventName.COMPUTE_BUILD_AND_RUN,
                    host.host,
                    finish=False,
                    details=f"attempt {len(spec.tried_hosts) + 1}",
                )
            ],
            now,
        )
        log.info(
            "rescheduling %s from %s to %s (attempt %d)",
            instance.uuid,
            stored.tried_hosts[-1],
            host.host,
            len(spec.tried_hosts) + 1,
        )
        build = replace(build_spec(instance, image, request_id=request_id),
                        admin_password=admin_password)  # fmt: skip
        return HostBuilds(host, [build])
    return None
