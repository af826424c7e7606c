"""What a compute host may report on: the instances placed on it, now or at an earlier
attempt (a late report from a host a build was rescheduled away from is legitimate, and the
event guards make it harmless). Anything else from a compute is an attempt to act on another
host's instances."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from services.common.stores import InstanceStore, UnitOfWork


class ScopeTx(Protocol):
    @property
    def instances(self) -> InstanceStore: ...


def instances_not_on(tx: ScopeTx, host: str, uuids: Sequence[str]) -> list[str]:
    """Those of ``uuids`` never placed on ``host`` (unknown ones included)."""
    placed_on = tx.instances.host_history(list(set(uuids)))
    return [u for u in dict.fromkeys(uuids) if host not in placed_on.get(u, ())]


class HostScope:
    def __init__(self, uow: UnitOfWork[ScopeTx]) -> None:
        self._uow = uow

    async def foreign_instances(self, host: str, uuids: Sequence[str]) -> list[str]:
        if not uuids:
            return []
        return await self._uow.read(lambda tx: instances_not_on(tx, host, uuids))
