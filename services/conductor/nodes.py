"""Compute node registration and heartbeats."""

from __future__ import annotations

from typing import Protocol

from services.common.domain import ComputeNodeReport, HostInstance, utcnow
from services.common.stores import InstanceStore, NodeStore, UnitOfWork


class NodesTx(Protocol):
    @property
    def instances(self) -> InstanceStore: ...
    @property
    def nodes(self) -> NodeStore: ...


class ComputeNodes:
    def __init__(self, uow: UnitOfWork[NodesTx]) -> None:
        self._uow = uow

    async def report(self, report: ComputeNodeReport) -> int:
        return await self._uow.write(lambda tx: tx.nodes.upsert(report, utcnow()))

    async def host_instances(self, host: str) -> list[HostInstance]:
        return await self._uow.read(lambda tx: tx.instances.on_host(host))
