"""Ending builds that cannot go on: one unit of work shared by the build task (alternates
exhausted, host refused) and the reconciler (build timeout)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

from services.common.db import actions
from services.common.db.stores import SqlTransaction
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
    now: datetime,
    *,
    host: str | None = None,
) -> None:
    """Free the claims and put the instances in ERROR with the reason as their fault."""
    tx.allocations.free(uuids)
    tx.instances.mark_error([FaultRecord(u, 500, reason, host=host) for u in uuids], now)
    tx.actions.finish(uuids, actions.CREATE, now, message=reason)


def fail_builds(
    connection: Connection,
    uuids: Sequence[str],
    reason: str,
    now: datetime,
    *,
    host: str | None = None,
) -> None:
    """``end_builds`` on a connection: for the build task, which still runs its own
    transactions (#12: it moves to the unit of work with its split)."""
    end_builds(SqlTransaction(connection), uuids, reason, now, host=host)
