"""Ending builds that cannot go on: the reconciler's unit of work (build timeout). The build
task does the same on its own store when a build cannot be sent (build_task._end_builds)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from services.common.instance_actions import ActionName
from services.common.stores import ActionStore, AllocationStore, FaultRecord, InstanceStore


class FailureTx(Protocol):
    @property
    def instances(self) -> InstanceStore: ...
    @property
    def allocations(self) -> AllocationStore: ...
    @property
    def actions(self) -> ActionStore: ...


def end_builds(
    tx: FailureTx,
    uuids: Sequence[str],
    reason: str,
    *,
    now: datetime,
    host: str | None = None,
) -> None:
    """Free the claims and put the instances in ERROR with the reason as their fault."""
    tx.allocations.free(uuids)
    tx.instances.mark_error([FaultRecord(u, 500, reason, host=host) for u in uuids], now)
    tx.actions.finish(uuids, ActionName.CREATE, now, message=reason)
